//! Sending one output's entries as they come, retried until the coordinator has them,
//! then terminating its stream.

use super::*;

/// Uploads `pipe`'s entries as they come, then terminates the stream. After a failure
/// that retrying cannot fix, the producer drops what it reads (the command carries on).
pub(super) async fn upload(
    shared: Arc<Shared>,
    pipe: Arc<Pipe>,
    registered: bool,
    batch_bytes: usize,
    max_backoff: Duration,
) -> Result<StreamJson, String> {
    let r = upload_all(&shared, &pipe, registered, batch_bytes, max_backoff).await;
    if let Err(e) = &r {
        eprintln!(
            "logdog: {}: {e}; the rest of its output is not uploaded",
            pipe.name
        );
        pipe.failed.store(true, Ordering::Relaxed);
        pipe.room.notify_one();
    }
    r
}

pub(super) async fn upload_all(
    shared: &Shared,
    pipe: &Pipe,
    registered: bool,
    batch_bytes: usize,
    max_backoff: Duration,
) -> Result<StreamJson, String> {
    let path = shared.path(&pipe.name);
    let secret = shared
        .secret()
        .await
        .map_err(|e| format!("registering prefix {:?}: {e}", shared.prefix))?
        .to_owned();
    if !registered {
        retry(
            &format!("registering {path}"),
            Patience::forever(max_backoff),
            || shared.register_stream_once(&secret, &pipe.name),
        )
        .await
        .map_err(|e| format!("registering {path}: {e}"))?;
    }
    let api = &shared.api;
    let logs = api.project_url(&shared.project, &format!("logs/{path}"));
    loop {
        let ready = pipe.ready.notified();
        let (batch, total) = {
            let mut s = pipe.state.lock().unwrap();
            let batch = s
                .outbox
                .take(batch_bytes)
                .map_err(|e| format!("reading the spool file: {e}"))?;
            (batch, s.total)
        };
        if batch.is_empty() {
            if total.is_some() {
                break;
            }
            ready.await;
            continue;
        }
        pipe.room.notify_one();
        let n = batch.len() as u64;
        let mut body = Vec::with_capacity(batch.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"entries\":[");
        for (i, r) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r);
        }
        body.extend_from_slice(b"]}");
        let body = bytes::Bytes::from(body);
        // The records are serialised LogEntries: this is an AppendRequest, written in place.
        retry(
            &format!("appending to {path}"),
            Patience::forever(max_backoff),
            || {
                api.call::<AppendResult>(
                    api.request(Method::POST, &logs)
                        .header("X-Prefix-Secret", &secret)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone()),
                )
            },
        )
        .await
        .map_err(|e| format!("appending to {path}: {e}"))?;
        pipe.uploaded.fetch_add(n, Ordering::Relaxed);
    }
    let total = pipe.state.lock().unwrap().total.unwrap_or(0);
    let body = TerminateRequest {
        terminal_index: total.checked_sub(1).map(|t| t as i64),
    };
    let url = api.project_url(&shared.project, &format!("streams/{path}"));
    retry(
        &format!("terminating {path}"),
        Patience::forever(max_backoff),
        || {
            api.call::<StreamJson>(
                api.request(Method::PATCH, &url)
                    .header("X-Prefix-Secret", &secret)
                    .json(&body),
            )
        },
    )
    .await
    .map_err(|e| format!("terminating {path}: {e}"))
}

//! The archive deleter: removes the archive objects of purged streams and deleted prefixes.
//!
//! Purge and DeletePrefix queue the stream in `archive_deletions` in the same transaction
//! that removes its data, then wake the deleter. The deleter asks every store to delete
//! the stream's objects (every attempt's); a success forgets the row, a failure (the store
//! away, an error answer, no answer within `DELETE_TIMEOUT`) keeps it with the error and
//! retries with backoff, from `retry_delay` doubling up to `MAX_BACKOFF`, for as long as it
//! takes, across restarts.

use std::sync::Arc;
use std::time::Duration;

use logdog_schema::models::DeletionRow;
use logdog_schema::store::{self as db, Store};
use logdog_schema::wire::now_us;
use tokio::sync::{watch, Notify};

use super::Archives;

/// How often the queue is looked at when nothing wakes the deleter.
const POLL: Duration = Duration::from_secs(5);
/// How long one stream's deletion may take before it counts as failed.
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait between two attempts at one stream.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Rows taken per pass.
const BATCH: i64 = 100;

/// Wakes the deleter (cheap; a wake-up while it works makes it look once more).
#[derive(Clone, Default)]
pub struct DeleterHandle(Arc<Notify>);

impl DeleterHandle {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Starts the deleter on the current runtime; it ends when `shutdown` turns true.
pub fn spawn(
    store: Store,
    archives: Archives,
    retry_delay: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> DeleterHandle {
    let handle = DeleterHandle::default();
    let wake = handle.0.clone();
    actix_rt::spawn(async move {
        loop {
            let more = match pass(&store, &archives, retry_delay).await {
                Ok(n) => n == BATCH as usize,
                Err(e) => {
                    tracing::warn!(error = %e, "archive deleter: cannot read the queue");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    });
    handle
}

/// One pass over the due rows; returns how many it took.
async fn pass(store: &Store, archives: &Archives, retry_delay: Duration) -> Result<usize, String> {
    let s = store.clone();
    let due =
        tokio::task::spawn_blocking(move || s.read(|c| db::due_deletions(c, now_us(), BATCH)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    for row in &due {
        let result = tokio::time::timeout(
            DELETE_TIMEOUT,
            archives.delete(&row.project, &row.stream_id),
        )
        .await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "the store did not answer within {}s",
                DELETE_TIMEOUT.as_secs()
            )),
        };
        if let Some(e) = &error {
            tracing::warn!(project = %row.project, stream = %row.stream_id, attempt = row.attempt + 1,
                error = %e, "archive deletion failed; retrying");
        }
        let (s, row, due_us) = (
            store.clone(),
            row.clone(),
            now_us() + backoff_us(retry_delay, row.attempt),
        );
        tokio::task::spawn_blocking(move || {
            s.write(|c| match &error {
                None => db::finish_deletion(c, &row),
                Some(e) => db::retry_deletion(c, &row, due_us, e),
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    }
    Ok(due.len())
}

/// The wait after a stream's `attempt`th failure (0-based): `retry_delay`, doubling, capped.
fn backoff_us(retry_delay: Duration, attempt: i32) -> i64 {
    let factor = 1u32 << attempt.clamp(0, 20);
    let wait = retry_delay.saturating_mul(factor).min(MAX_BACKOFF);
    wait.as_micros() as i64
}

/// The queued deletions (for the tests and `/metrics`).
pub fn pending(store: &Store) -> Result<Vec<DeletionRow>, db::StoreError> {
    store.read(db::pending_deletions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let d = Duration::from_millis(100);
        assert_eq!(backoff_us(d, 0), 100_000);
        assert_eq!(backoff_us(d, 3), 800_000);
        assert_eq!(backoff_us(d, 40), MAX_BACKOFF.as_micros() as i64);
    }
}

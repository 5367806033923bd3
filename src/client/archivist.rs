//! The Archivist worker: leases archive tasks from a coordinator (long poll), reads each
//! stream through the Logs API page by page (`non_contiguous=true`, so everything stored
//! at sealing is kept), writes its archive, and reports ArchiveStream — or the failure.
//! It renews its lease while it works. `logdog serve` runs one embedded; `logdog
//! archivist` runs the same worker against a remote coordinator.

use std::time::Duration;

use logdog_schema::wire::StreamJson;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::archive::{Archives, Written};
use crate::http::archival::{
    ArchiveTask, CompleteArchived, CompleteFailed, CompleteRequest, LeaseRequest, LeaseResponse,
    RenewRequest,
};
use crate::http::logs::LogsPage;

#[derive(Debug, Clone)]
pub struct ArchivistConfig {
    /// The coordinator's base URL, e.g. `http://127.0.0.1:8080`.
    pub coordinator: String,
    pub token: Option<String>,
    /// Tasks archived at once.
    pub workers: usize,
    pub lease_seconds: f64,
    /// The coordinator's archive stores: each project's archives go to its own.
    pub archive: Archives,
    /// A sparse-index record every this many entries or bytes.
    pub index_every: (u64, u64),
    /// Entries asked for per Get.
    pub page: u64,
    /// The embedded archivist: the coordinator's own database, which it reads the
    /// entries from directly instead of through Gets.
    pub store: Option<logdog_schema::Store>,
}

/// Stops the worker threads when asked (or dropped).
pub struct ArchivistHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArchivistHandle {
    /// Stops leasing; tasks in progress are abandoned (their leases expire).
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ArchivistHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts `config.workers` worker loops on a thread of their own.
pub fn spawn(config: ArchivistConfig) -> ArchivistHandle {
    let (tx, rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("logdog-archivist".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("archivist runtime");
            rt.block_on(run(config, rx));
        })
        .expect("spawn archivist thread");
    ArchivistHandle {
        stop: tx,
        thread: Some(thread),
    }
}

/// Runs the workers until `stop` turns true.
pub async fn run(config: ArchivistConfig, stop: watch::Receiver<bool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client");
    let workers: Vec<_> = (0..config.workers.max(1))
        .map(|_| {
            let (http, config, mut stop) = (http.clone(), config.clone(), stop.clone());
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(100);
                loop {
                    let leased = tokio::select! {
                        _ = stop.changed() => return,
                        r = lease(&http, &config) => r,
                    };
                    match leased {
                        Ok(tasks) => {
                            backoff = Duration::from_millis(100);
                            for task in tasks {
                                tokio::select! {
                                    _ = stop.changed() => return,
                                    _ = work(&http, &config, &task) => {}
                                }
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "archivist: lease failed");
                            tokio::select! {
                                _ = stop.changed() => return,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
}

fn request(
    http: &reqwest::Client,
    config: &ArchivistConfig,
    method: reqwest::Method,
    url: String,
) -> reqwest::RequestBuilder {
    let r = http.request(method, url);
    match &config.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

/// Sends `r` and reads the answer as `T`; an error answer becomes its message.
async fn call<T: DeserializeOwned>(r: reqwest::RequestBuilder) -> Result<T, String> {
    let res = r.send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    let bytes = res.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(super::api::ClientError::from_answer(status, &bytes, None).to_string());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the coordinator's answer: {e}"))
}

/// Every stored entry of the stream into the archive: page by page through binary Gets,
/// or, for the embedded archivist, straight from the coordinator's database.
async fn copy_entries(
    http: &reqwest::Client,
    config: &ArchivistConfig,
    task: &ArchiveTask,
    logs: &str,
    writer: &mut crate::archive::ArchiveWriter,
) -> Result<(), String> {
    match &config.store {
        Some(store) => copy_from_store(store, task, writer).await,
        None => copy_through_gets(http, config, logs, writer).await,
    }
}

/// Every stored entry, page by page through binary Gets (`non_contiguous=true`).
async fn copy_through_gets(
    http: &reqwest::Client,
    config: &ArchivistConfig,
    logs: &str,
    writer: &mut crate::archive::ArchiveWriter,
) -> Result<(), String> {
    // The next page is asked for as soon as this one arrives, so the coordinator reads it
    // while this page is encoded and uploaded.
    let fetch = |index: u64| {
        let url = format!(
            "{logs}?index={index}&count={}&non_contiguous=true",
            config.page
        );
        // The binary form: the entries as stored, no JSON to parse.
        tokio::spawn(entries_page(request(
            http,
            config,
            reqwest::Method::GET,
            url,
        )))
    };
    let mut next = fetch(0);
    loop {
        let (next_index, body) = next.await.map_err(|e| e.to_string())??;
        if body.is_empty() {
            return Ok(());
        }
        next = fetch(next_index);
        // The body is the entries' records, in order: they go into the archive as they
        // came.
        writer
            .push_records(body)
            .map_err(|e| format!("the coordinator sent bad entries: {e}"))?;
        writer.ready().await.map_err(|e| e.to_string())?;
    }
}

/// Entries read from the database per read: whole chunks, up to this many bytes.
const STORE_READ_BYTES: u64 = 8 << 20;

/// Every stored entry, read from the database the coordinator writes (the embedded
/// archivist's way: no HTTP, no copies but the database's). The stream is sealed, so its
/// chunks no longer change; the next read runs while this one's records are written.
async fn copy_from_store(
    store: &logdog_schema::Store,
    task: &ArchiveTask,
    writer: &mut crate::archive::ArchiveWriter,
) -> Result<(), String> {
    let fetch = |from: u64| {
        let (store, project, id) = (store.clone(), task.project.clone(), task.id.clone());
        tokio::task::spawn_blocking(move || {
            let range = logdog_schema::store::ReadRange {
                from,
                end: i64::MAX as u64,
                count: usize::MAX,
                bytes: STORE_READ_BYTES,
                contiguous: false,
            };
            store.read(|c| logdog_schema::store::read_records(c, &project, &id, range))
        })
    };
    let mut next = fetch(0);
    loop {
        let (pieces, last) = next
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the stream's entries: {e}"))?;
        let Some(last) = last else {
            return Ok(());
        };
        next = fetch(last + 1);
        for piece in pieces {
            writer
                .push_records(piece)
                .map_err(|e| format!("the stored entries: {e}"))?;
        }
        writer.ready().await.map_err(|e| e.to_string())?;
    }
}

/// Sends a Get asking for the binary form: the page's next index and its records.
async fn entries_page(r: reqwest::RequestBuilder) -> Result<(u64, bytes::Bytes), String> {
    let r = r.header(
        reqwest::header::ACCEPT,
        logdog_schema::wire::ENTRIES_CONTENT_TYPE,
    );
    let res = r.send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(super::api::ClientError::from_answer(status, &bytes, None).to_string());
    }
    Ok((super::api::EntriesPage::next_index(&headers)?, bytes))
}

async fn lease(
    http: &reqwest::Client,
    config: &ArchivistConfig,
) -> Result<Vec<ArchiveTask>, String> {
    let url = format!("{}/api/v1/archive-tasks/lease", config.coordinator);
    let body = LeaseRequest {
        max_tasks: 1,
        lease_seconds: config.lease_seconds,
        wait_seconds: 20.0,
    };
    let r: LeaseResponse =
        call(request(http, config, reqwest::Method::POST, url).json(&body)).await?;
    Ok(r.tasks)
}

/// Archives one task, renewing its lease meanwhile, and reports the outcome.
async fn work(http: &reqwest::Client, config: &ArchivistConfig, task: &ArchiveTask) {
    let (task_id, lease_id) = (task.task_id.clone(), task.lease_id.clone());
    let renew = {
        let (http, config, task_id, lease_id) = (
            http.clone(),
            config.clone(),
            task_id.clone(),
            lease_id.clone(),
        );
        tokio::spawn(async move {
            let every = Duration::from_secs_f64((config.lease_seconds / 3.0).max(0.2));
            loop {
                tokio::time::sleep(every).await;
                let url = format!(
                    "{}/api/v1/archive-tasks/{task_id}/renew",
                    config.coordinator
                );
                let body = RenewRequest {
                    lease_id: lease_id.clone(),
                    lease_seconds: config.lease_seconds,
                };
                if let Err(e) = call::<ArchiveTask>(
                    request(&http, &config, reqwest::Method::POST, url).json(&body),
                )
                .await
                {
                    tracing::warn!(error = %e, task = %task_id, "archivist: renewing the lease failed");
                }
            }
        })
    };
    let started = std::time::Instant::now();
    let outcome = archive_stream(http, config, task).await;
    let written = started.elapsed();
    renew.abort();
    let body = match &outcome {
        Ok((terminal_index, w)) => CompleteRequest::Archived(CompleteArchived::new(
            lease_id.clone(),
            *terminal_index,
            w.clone(),
        )),
        Err(e) => CompleteRequest::Failed(CompleteFailed {
            lease_id: lease_id.clone(),
            error: e.clone(),
        }),
    };
    let url = format!(
        "{}/api/v1/archive-tasks/{task_id}/complete",
        config.coordinator
    );
    match call::<StreamJson>(request(http, config, reqwest::Method::POST, url).json(&body)).await {
        Ok(_) => match outcome {
            Ok((_, w)) => {
                tracing::info!(
                    task = %task_id,
                    path = %task.path,
                    entries = w.log_entry_count,
                    bytes = w.stream_size + w.data_size,
                    written_ms = written.as_millis() as u64,
                    reported_ms = (started.elapsed() - written).as_millis() as u64,
                    "archived"
                )
            }
            Err(e) => tracing::warn!(task = %task_id, error = %e, "archiving failed; reported"),
        },
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "archivist: reporting the outcome failed")
        }
    }
}

/// Reads the stream through the Logs API and writes its archive; returns the terminal
/// index it archived up to and what was written.
async fn archive_stream(
    http: &reqwest::Client,
    config: &ArchivistConfig,
    task: &ArchiveTask,
) -> Result<(i64, Written), String> {
    let (project, path, id, lease_id) = (
        task.project.as_str(),
        task.path.as_str(),
        task.id.as_str(),
        task.lease_id.as_str(),
    );
    let logs = format!(
        "{}/api/v1/projects/{project}/logs/{path}",
        config.coordinator
    );
    let first: LogsPage = call(request(
        http,
        config,
        reqwest::Method::GET,
        format!("{logs}?state=true&count=1"),
    ))
    .await?;
    let (Some(descriptor), Some(state)) = (first.descriptor, first.state) else {
        return Err("Get with state=true answered without the state".into());
    };
    let terminal_index = state.terminal_index;
    let mut writer = config
        .archive
        .for_project(project)
        .writer(project, id, lease_id, &descriptor, config.index_every)
        .await
        .map_err(|e| e.to_string())?;
    // Straight into the store: each page is pushed into the uploads, which send parts as
    // they fill; an error gives the attempt up (nothing is published).
    let copied = copy_entries(http, config, task, &logs, &mut writer).await;
    if let Err(e) = copied {
        writer.abort().await;
        return Err(e);
    }
    let written = writer.finish().await.map_err(|e| e.to_string())?;
    Ok((terminal_index, written))
}

//! The `Dispatcher` actor: archive tasks. Tasks live in the `archive_tasks` table (written
//! with the transitions that schedule them), so they survive restarts. The dispatcher
//! leases due tasks to archivists (long poll), seals each stream before handing out its
//! task, renews leases, and records completions and failures (retrying with exponential
//! backoff up to the attempt cap). In cluster mode a stream another node owns is sealed
//! by a call to its owner ([`RemoteSeal`]), so any node's dispatcher can hand out any task.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use logdog_schema::models::TaskRow;
use logdog_schema::names::StreamPath;
use logdog_schema::store::{self, TASK_DONE};
use logdog_schema::wire::{now_us, ArchiveInfo, StreamJson};
use tokio::sync::oneshot;

use crate::directory::Directory;
use crate::error::{blocking, ActorError};
use crate::stream::{Load, MarkArchived, MarkFailed, Seal};

/// The longest a failed task waits before its next attempt.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub max_attempts: i32,
    /// The first retry's delay; it doubles with each failed attempt.
    pub retry_delay: Duration,
    /// How often waiting lease requests look for due tasks.
    pub poll_interval: Duration,
}

/// A task handed to an archivist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedTask {
    pub task_id: String,
    pub lease_id: String,
    pub project: String,
    pub path: String,
    pub id: String,
    pub attempt: i32,
    pub reason: logdog_schema::wire::TaskReason,
    pub lease_expires_us: i64,
}

/// Lease up to `max_tasks` due tasks, waiting up to `wait` for one.
#[derive(Message)]
#[rtype(result = "Result<Vec<LeasedTask>, ActorError>")]
pub struct Lease {
    pub max_tasks: usize,
    pub lease: Duration,
    pub wait: Duration,
    /// Only tasks of these projects (the caller's token scope); None: every project.
    pub projects: Option<Vec<String>>,
}

#[derive(Message)]
#[rtype(result = "Result<LeasedTask, ActorError>")]
pub struct Renew {
    pub task_id: String,
    pub lease_id: String,
    pub lease: Duration,
    /// The caller's projects: a task of another project is answered as unknown.
    pub projects: Option<Vec<String>>,
}

/// Checks a reported archive against the store it was written to, before it is believed
/// (that store is the server's; the dispatcher knows only the task). Run once the task's
/// lease is checked.
pub type ArchiveCheck =
    Box<dyn FnOnce(TaskRow) -> futures::future::BoxFuture<'static, Result<(), ActorError>> + Send>;

/// What an archivist reports.
pub enum Outcome {
    Archived {
        terminal_index: i64,
        log_entry_count: u64,
        archive: ArchiveInfo,
        check: ArchiveCheck,
    },
    Failed {
        error: String,
    },
}

/// ArchiveStream: the outcome of a leased task. Answers the stream.
#[derive(Message)]
#[rtype(result = "Result<StreamJson, ActorError>")]
pub struct Complete {
    pub task_id: String,
    pub lease_id: String,
    pub outcome: Outcome,
    /// The caller's projects: a task of another project is answered as unknown.
    pub projects: Option<Vec<String>>,
}

/// Cluster mode: seals a stream through its owner, another node (its advertise URL, the
/// project, the stream's path). `Err(Elsewhere)` when the owner could not do it now (it
/// cannot be reached, or the stream changed hands): the task is given back uncounted.
pub type RemoteSeal = std::sync::Arc<
    dyn Fn(String, String, String) -> futures::future::BoxFuture<'static, Result<(), ActorError>>
        + Send
        + Sync,
>;

/// An archive task falls due at `due_us` (from this node's stream actors, `TaskBell`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskDue {
    pub due_us: i64,
}

/// Shutting down: answer every waiting lease now, and wait no more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

struct Waiter {
    max_tasks: usize,
    lease: Duration,
    projects: Option<Vec<String>>,
    deadline: Instant,
    reply: oneshot::Sender<Result<Vec<LeasedTask>, ActorError>>,
}

pub struct Dispatcher {
    directory: Directory,
    config: DispatchConfig,
    waiters: VecDeque<Waiter>,
    /// A poll for the waiters is under way.
    polling: bool,
    /// A task fell due while a poll was under way: poll again when it ends.
    due_again: bool,
    /// Shutting down: leases do not wait.
    draining: bool,
    remote_seal: Option<RemoteSeal>,
}

impl Dispatcher {
    pub fn new(directory: Directory, config: DispatchConfig) -> Self {
        Self {
            directory,
            config,
            waiters: VecDeque::new(),
            polling: false,
            due_again: false,
            draining: false,
            remote_seal: None,
        }
    }

    /// Cluster mode: streams owned elsewhere are sealed through `seal`.
    pub fn with_remote_seal(mut self, seal: RemoteSeal) -> Self {
        self.remote_seal = Some(seal);
        self
    }

    /// Serves the oldest waiters with whatever is due; answers expired ones with nothing.
    fn poll_waiters(&mut self, ctx: &mut Context<Self>) {
        // Every waiter past its deadline is answered now, wherever it is in the queue: a
        // short poll never waits out a longer one queued before it.
        let now = Instant::now();
        let (expired, waiting): (VecDeque<Waiter>, VecDeque<Waiter>) = self
            .waiters
            .drain(..)
            .partition(|w| w.deadline <= now || w.reply.is_closed());
        self.waiters = waiting;
        for w in expired {
            let _ = w.reply.send(Ok(Vec::new()));
        }
        if self.polling || self.waiters.is_empty() {
            return;
        }
        let Some(w) = self.waiters.pop_front() else {
            return;
        };
        self.polling = true;
        let (dir, config) = (self.directory.clone(), self.config.clone());
        let seal = self.remote_seal.clone();
        ctx.spawn(
            async move {
                let scope = w.projects.as_deref();
                let r = lease_due(&dir, &config, seal, w.max_tasks, w.lease, scope).await;
                (w, r)
            }
            .into_actor(self)
            .map(|(w, r), act, ctx| {
                act.polling = false;
                match r {
                    // To the back: the next tick polls for the next waiter (their scopes
                    // may differ), so none is starved. Unless a stop began meanwhile.
                    Ok(tasks) if tasks.is_empty() && !act.draining => {
                        act.waiters.push_back(w);
                        if std::mem::take(&mut act.due_again) {
                            act.poll_waiters(ctx);
                        }
                    }
                    other => {
                        let _ = w.reply.send(other);
                        // Others may be served by what is due too.
                        act.poll_waiters(ctx);
                    }
                }
            }),
        );
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.poll_interval, |act, ctx| act.poll_waiters(ctx));
        self.directory
            .deps()
            .task_bell
            .connect(ctx.address().recipient());
    }
}

impl Handler<TaskDue> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: TaskDue, ctx: &mut Context<Self>) {
        let wait = Duration::from_micros((msg.due_us - now_us()).max(0) as u64);
        // Later than a poll would look anyway: the poll finds it.
        if wait >= self.config.poll_interval {
            return;
        }
        ctx.run_later(wait, |act, ctx| {
            if act.polling {
                act.due_again = true;
            }
            act.poll_waiters(ctx);
        });
    }
}

fn lease_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Leases up to `max` due tasks: one read finds them (and is all a pass with nothing due
/// costs), one transaction takes the leases, then each stream is sealed through its actor
/// (or its owner, a node of the cluster). Tasks past the attempt cap fail their stream
/// instead.
async fn lease_due(
    dir: &Directory,
    config: &DispatchConfig,
    remote_seal: Option<RemoteSeal>,
    max: usize,
    lease: Duration,
    projects: Option<&[String]>,
) -> Result<Vec<LeasedTask>, ActorError> {
    let store = dir.deps().store.clone();
    let now = now_us();
    let expires = now + lease.as_micros() as i64;
    let projects = projects.map(<[String]>::to_vec);
    let max_attempts = config.max_attempts;
    let s = store.clone();
    let due = blocking(move || {
        let want = store::LeaseWanted {
            now_us: now,
            max_tasks: max,
            projects: projects.as_deref(),
            expires_us: expires,
            max_attempts,
        };
        // A read first: a pass with nothing due takes no write lock.
        let candidates = s.read(|c| store::due_tasks_with_paths(c, &want))?;
        if candidates.is_empty() {
            return Ok(store::DueTasks::default());
        }
        s.write(|c| store::take_leases(c, &want, &candidates, lease_id))
    })
    .await?;
    for (row, path) in due.exhausted {
        let Ok(path) = StreamPath::parse(&path) else {
            continue;
        };
        // Its last lease expired without an answer: that was the last attempt.
        let error = row
            .last_error
            .clone()
            .unwrap_or_else(|| "the archivist's lease expired".into());
        let msg = MarkFailed {
            error: format!("archival failed after {} attempts: {error}", row.attempt),
            task_id: row.task_id.clone(),
        };
        if let Err(e) = dir.send(&row.project, &path, msg).await {
            tracing::warn!(error = %e, task = %row.task_id, "failing a task past its attempt cap");
        }
    }
    let mut out = Vec::new();
    for (row, path) in due.leased {
        let Ok(stream_path) = StreamPath::parse(&path) else {
            continue;
        };
        // Seal before handing out: nothing can be appended that the archive would miss.
        let mut sealed = dir.send(&row.project, &stream_path, Seal).await.map(drop);
        if let (Err(ActorError::Elsewhere(owner)), Some(seal)) = (&sealed, &remote_seal) {
            // Cluster mode: another node owns the stream, and seals it when asked.
            sealed = seal(owner.clone(), row.project.clone(), path.clone()).await;
        }
        if let Err(ActorError::Elsewhere(owner)) = &sealed {
            // The owner could not seal it now (unreachable, or the stream is changing
            // hands): the lease is given back without counting an attempt.
            tracing::debug!(task = %row.task_id, %owner, "task's stream is owned elsewhere");
            let (s, t) = (store.clone(), row.task_id.clone());
            let due = now + config.retry_delay.as_micros() as i64;
            blocking(move || s.write(|c| store::unlease_task(c, &t, due))).await?;
            continue;
        }
        if let Err(e) = sealed {
            tracing::warn!(error = %e, task = %row.task_id, "sealing failed; the task stays due");
            let (s, t, msg) = (store.clone(), row.task_id.clone(), e.to_string());
            let retry = now + config.retry_delay.as_micros() as i64;
            blocking(move || s.write(|c| store::release_task(c, &t, retry, Some(&msg)))).await?;
            continue;
        }
        out.push(LeasedTask {
            task_id: row.task_id,
            lease_id: row.lease_id.unwrap_or_default(),
            project: row.project,
            path,
            id: row.stream_id,
            attempt: row.attempt,
            reason: row.reason,
            lease_expires_us: expires,
        });
    }
    Ok(out)
}

impl Handler<Drain> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        self.draining = true;
        for w in self.waiters.drain(..) {
            let _ = w.reply.send(Ok(Vec::new()));
        }
    }
}

impl Handler<Lease> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<Vec<LeasedTask>, ActorError>>;

    fn handle(&mut self, msg: Lease, _: &mut Context<Self>) -> Self::Result {
        let (dir, config) = (self.directory.clone(), self.config.clone());
        let seal = self.remote_seal.clone();
        let Lease {
            max_tasks,
            lease,
            wait,
            projects,
        } = msg;
        let deadline = Instant::now() + wait;
        let scope = projects.clone();
        Box::pin(
            async move { lease_due(&dir, &config, seal, max_tasks, lease, scope.as_deref()).await }
                .into_actor(self)
                .then(move |r, act, ctx| {
                    let (tx, rx) = oneshot::channel();
                    match r {
                        // A stop has begun: nobody waits (a lease that arrives after
                        // the drain is answered at once, not held for its whole wait).
                        Ok(tasks) if tasks.is_empty() && !wait.is_zero() && !act.draining => {
                            act.waiters.push_back(Waiter {
                                max_tasks,
                                lease,
                                projects,
                                deadline,
                                reply: tx,
                            });
                            act.poll_waiters(ctx);
                        }
                        other => {
                            let _ = tx.send(other);
                        }
                    }
                    async move { rx.await.unwrap_or_else(|_| Ok(Vec::new())) }.into_actor(act)
                }),
        )
    }
}

/// Whether the caller may see a task: tasks of projects outside its scope are unknown to it.
fn visible(row: &TaskRow, projects: Option<&[String]>) -> bool {
    projects.is_none_or(|ps| ps.contains(&row.project))
}

/// The task, if `lease_id` is its live lease.
fn check_lease(row: Option<TaskRow>, lease_id: &str, now: i64) -> Result<TaskRow, ActorError> {
    match row {
        Some(r)
            if r.lease_id.as_deref() == Some(lease_id)
                && r.lease_expires_us.is_some_and(|e| e >= now) =>
        {
            Ok(r)
        }
        Some(r) if r.lease_id.as_deref() == Some(lease_id) => Err(ActorError::FailedPrecondition(
            format!("lease {lease_id} of task {} has expired", r.task_id),
        )),
        _ => Err(ActorError::FailedPrecondition(format!(
            "{lease_id:?} is not the current lease of this task"
        ))),
    }
}

impl Handler<Renew> for Dispatcher {
    type Result = ResponseFuture<Result<LeasedTask, ActorError>>;

    fn handle(&mut self, msg: Renew, _: &mut Context<Self>) -> Self::Result {
        let store = self.directory.deps().store.clone();
        Box::pin(async move {
            let now = now_us();
            let expires = now + msg.lease.as_micros() as i64;
            let (task, lease_id) = (msg.task_id.clone(), msg.lease_id.clone());
            let projects = msg.projects.clone();
            let row = blocking(move || {
                store.write(|c| {
                    let found = store::task_with_path(c, &task)?
                        .filter(|(row, _)| visible(row, projects.as_deref()));
                    let (row, path) = found.unzip();
                    match check_lease(row, &lease_id, now) {
                        Ok(row) => {
                            store::renew_lease(c, &task, expires)?;
                            Ok(Ok((row, path.flatten().unwrap_or_default())))
                        }
                        Err(e) => Ok(Err(e)),
                    }
                })
            })
            .await??;
            let (row, path) = row;
            Ok(LeasedTask {
                task_id: row.task_id,
                lease_id: msg.lease_id,
                project: row.project,
                path,
                id: row.stream_id,
                attempt: row.attempt,
                reason: row.reason,
                lease_expires_us: expires,
            })
        })
    }
}

impl Handler<Complete> for Dispatcher {
    type Result = ResponseFuture<Result<StreamJson, ActorError>>;

    /// One read (the task and its stream's path), the lease checked, the archive checked by
    /// the caller's `check`, then the stream's actor records the outcome (and finishes the
    /// task in the same transaction).
    fn handle(&mut self, msg: Complete, _: &mut Context<Self>) -> Self::Result {
        let (dir, config) = (self.directory.clone(), self.config.clone());
        Box::pin(async move {
            let store = dir.deps().store.clone();
            let now = now_us();
            let Complete {
                task_id,
                lease_id,
                outcome,
                projects,
            } = msg;
            let (s, t) = (store.clone(), task_id.clone());
            let found = blocking(move || s.read(|c| store::task_with_path(c, &t))).await?;
            let (row, path) = match found {
                Some((row, Some(path))) if visible(&row, projects.as_deref()) => (row, path),
                _ => {
                    return Err(ActorError::FailedPrecondition(format!(
                        "no task {task_id:?}"
                    )))
                }
            };
            let path = StreamPath::parse(&path).map_err(|e| ActorError::Internal(e.to_string()))?;
            if row.due_us == TASK_DONE {
                // Done already: a repeat of the completing call is answered the same way.
                if row.lease_id.as_deref() == Some(lease_id.as_str()) {
                    return dir
                        .send(&row.project, &path, Load { see_purged: true })
                        .await;
                }
                return Err(ActorError::FailedPrecondition(
                    "this task is finished".into(),
                ));
            }
            let row = check_lease(Some(row), &lease_id, now)?;
            match outcome {
                Outcome::Archived {
                    terminal_index,
                    log_entry_count,
                    archive,
                    check,
                } => {
                    check(row.clone()).await?;
                    dir.send(
                        &row.project,
                        &path,
                        MarkArchived {
                            archive,
                            terminal_index,
                            log_entry_count,
                            task_id: row.task_id,
                        },
                    )
                    .await
                }
                Outcome::Failed { error } if row.attempt >= config.max_attempts => {
                    let error = format!("archival failed after {} attempts: {error}", row.attempt);
                    dir.send(
                        &row.project,
                        &path,
                        MarkFailed {
                            error,
                            task_id: row.task_id,
                        },
                    )
                    .await
                }
                Outcome::Failed { error } => {
                    let factor = 2u32.saturating_pow((row.attempt - 1).max(0) as u32);
                    let delay = config
                        .retry_delay
                        .saturating_mul(factor)
                        .min(MAX_RETRY_DELAY);
                    let due = now + delay.as_micros() as i64;
                    let (s, t) = (store.clone(), row.task_id.clone());
                    blocking(move || s.write(|c| store::release_task(c, &t, due, Some(&error))))
                        .await?;
                    dir.send(&row.project, &path, Load { see_purged: true })
                        .await
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ActorMetrics;
    use crate::{ArchivalTiming, StreamDeps, Writer};

    /// A dispatcher over a fresh SQLite database in `dir`.
    fn dispatcher(dir: &std::path::Path) -> Addr<Dispatcher> {
        dispatcher_with(dir, Duration::from_millis(10), Duration::from_secs(1)).0
    }

    /// A dispatcher polling every `poll`, its stream actors scheduling archival
    /// `complete_delay` after termination; and its directory.
    fn dispatcher_with(
        dir: &std::path::Path,
        poll: Duration,
        complete_delay: Duration,
    ) -> (Addr<Dispatcher>, Directory) {
        let url = dir.join("logdog.db").display().to_string();
        let store = logdog_schema::Store::open(&url, 2).unwrap();
        store.migrate().unwrap();
        let metrics = ActorMetrics::new(&prometheus::Registry::new());
        let deps = StreamDeps {
            store: store.clone(),
            writer: Writer::start(store, metrics.clone()),
            archival: ArchivalTiming {
                complete_delay,
                incomplete_delay: Duration::from_secs(1),
                pessimistic_delay: Duration::from_secs(1),
            },
            idle_timeout: Duration::from_secs(60),
            metrics,
            cluster: None,
            task_bell: Default::default(),
        };
        let config = DispatchConfig {
            max_attempts: 3,
            retry_delay: Duration::from_secs(1),
            poll_interval: poll,
        };
        let directory = Directory::new(deps, 1);
        let d = Dispatcher::new(directory.clone(), config).start();
        (d, directory)
    }

    fn long_poll() -> Lease {
        Lease {
            max_tasks: 1,
            lease: Duration::from_secs(10),
            wait: Duration::from_secs(20),
            projects: None,
        }
    }

    /// A drain answers the waiting lease at once, and a lease asked for after it is
    /// answered at once too, not held for its 20 s wait (a stop would wait for it).
    #[actix::test]
    async fn no_lease_waits_once_draining() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dispatcher(tmp.path());
        let waiting = d.send(long_poll());
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.send(Drain).await.unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(2), waiting).await;
        assert_eq!(
            answered.expect("answered by the drain").unwrap(),
            Ok(vec![])
        );
        let later = tokio::time::timeout(Duration::from_secs(2), d.send(long_poll())).await;
        assert_eq!(later.expect("answered at once").unwrap(), Ok(vec![]));
    }

    /// A task a stream actor schedules due now reaches the archivist waiting for one at
    /// once, by the bell: this dispatcher's poll would not look for an hour, and the lease
    /// would be answered empty after its 20 s wait.
    #[actix::test]
    async fn a_task_due_now_rings_the_waiting_lease() {
        use crate::registry::RegisterPrefix;
        use crate::stream::{Register, Terminate};
        let tmp = tempfile::tempdir().unwrap();
        let (d, dir) = dispatcher_with(tmp.path(), Duration::from_secs(3600), Duration::ZERO);
        let registry = crate::Registry::new(dir.clone()).start();
        let grant = registry
            .send(RegisterPrefix {
                project: "p".into(),
                prefix: "bell".into(),
                expiration: Duration::from_secs(600),
                op_nonce: None,
                source_info: vec![],
            })
            .await
            .unwrap()
            .unwrap();
        let path = StreamPath::parse("bell/+/s").unwrap();
        let descriptor = logdog_schema::wire::DescriptorRequest::default()
            .resolve(now_us())
            .unwrap();
        let register = Register {
            secret: Some(grant.secret.clone()),
            descriptor: Ok(descriptor),
            terminal_index: None,
        };
        dir.send("p", &path, register).await.unwrap();
        // Waiting before the task exists: only the bell can wake it.
        let waiting = d.send(long_poll());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let terminate = Terminate {
            secret: Some(grant.secret),
            terminal_index: Ok(None),
        };
        dir.send("p", &path, terminate).await.unwrap();
        let tasks = waiting.await.unwrap().unwrap();
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(
            (tasks[0].project.as_str(), tasks[0].path.as_str()),
            ("p", "bell/+/s")
        );
    }
}

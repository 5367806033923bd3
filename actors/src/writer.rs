//! The `Writer`: the store's write executor. One thread takes write operations from every
//! stream actor and commits whatever has queued up in one transaction (group commit), so
//! a burst of appends across many streams costs one fsync, not one each.
//!
//! Every operation is answered only after its transaction committed. If a group fails,
//! its operations are retried one by one, so one bad operation cannot fail the others.

use std::sync::mpsc;
use std::time::Instant;

use logdog_schema::models::ChunkRow;
use logdog_schema::store::{self, AnyConnection, Fence};
use logdog_schema::wire::TaskReason;
use logdog_schema::{Store, StoreError};
use tokio::sync::oneshot;

use crate::error::ActorError;
use crate::metrics::ActorMetrics;

/// Most operations one group commit takes.
const MAX_GROUP_OPS: usize = 1024;
/// Most payload bytes one group commit takes (the first operation always fits).
const MAX_GROUP_BYTES: u64 = 32 << 20;

/// Why a write did not happen. Cloneable: several requests may wait on one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The stream was deleted before its entries could be written.
    StreamGone,
    /// The stream's owner row no longer names this actor's node and epoch (cluster mode).
    Fenced(String),
    Store {
        message: String,
        unavailable: bool,
    },
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Fenced(m) = e {
            return WriteError::Fenced(m);
        }
        WriteError::Store {
            unavailable: e.is_unavailable(),
            message: e.to_string(),
        }
    }
}

impl From<WriteError> for ActorError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::StreamGone => ActorError::NotFound("stream was deleted".into()),
            WriteError::Fenced(m) => ActorError::Deposed(m),
            WriteError::Store {
                message,
                unavailable: true,
            } => ActorError::Unavailable(message),
            WriteError::Store { message, .. } => ActorError::Internal(message),
        }
    }
}

pub type WriteResult = Result<(), WriteError>;

/// An archive task to move in the same transaction as the entries that made it due.
#[derive(Debug, Clone)]
pub struct TaskSchedule {
    pub reason: TaskReason,
    pub due_us: i64,
    pub new_task_id: String,
}

/// New entries of one stream: its chunks and how `next_index` moves.
#[derive(Debug)]
pub struct AppendOp {
    pub project: String,
    pub stream_id: String,
    pub chunks: Vec<ChunkRow>,
    /// (old, new) contiguous end and the sequence at the new end, when this batch
    /// extends it.
    pub advance: Option<(u64, u64, u64)>,
    pub schedule: Option<TaskSchedule>,
    /// Cluster mode: the owner's node and epoch, checked in the same transaction.
    pub fence: Option<std::sync::Arc<Fence>>,
    pub entries: u64,
    pub bytes: u64,
}

type RunFn = Box<dyn Fn(&mut AnyConnection) -> Result<(), StoreError> + Send>;

enum Op {
    Append(AppendOp, oneshot::Sender<WriteResult>),
    /// Any other write that must be ordered after the appends queued before it.
    Run(RunFn, oneshot::Sender<WriteResult>),
}

impl Op {
    fn bytes(&self) -> u64 {
        match self {
            Op::Append(a, _) => a.bytes,
            Op::Run(..) => 0,
        }
    }

    fn apply(&self, conn: &mut AnyConnection, now_us: i64) -> Result<WriteResult, StoreError> {
        match self {
            Op::Append(a, _) => {
                if let Some(fence) = &a.fence {
                    match store::check_fence(conn, &a.project, &a.stream_id, fence) {
                        Err(StoreError::Fenced(m)) => return Ok(Err(WriteError::Fenced(m))),
                        other => other?,
                    }
                }
                if !store::stream_is_live(conn, &a.project, &a.stream_id)? {
                    return Ok(Err(WriteError::StreamGone));
                }
                for chunk in &a.chunks {
                    store::insert_chunk(conn, chunk)?;
                }
                if let Some(advance) = a.advance {
                    store::advance_next_index(conn, &a.project, &a.stream_id, advance, now_us)?;
                }
                if let Some(s) = &a.schedule {
                    store::schedule_task(
                        conn,
                        &a.project,
                        &a.stream_id,
                        s.reason,
                        s.due_us,
                        &s.new_task_id,
                        now_us,
                    )?;
                }
                Ok(Ok(()))
            }
            Op::Run(f, _) => f(conn).map(Ok),
        }
    }

    fn reply(self, result: WriteResult) {
        let tx = match self {
            Op::Append(_, tx) | Op::Run(_, tx) => tx,
        };
        let _ = tx.send(result);
    }
}

/// A handle to the writer thread. Cloning shares the thread; it ends when every handle
/// is dropped, after committing what was queued.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    pub fn start(store: Store, metrics: ActorMetrics) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("logdog-writer".into())
            .spawn(move || run(store, metrics, rx))
            .expect("spawn writer thread");
        Self { tx }
    }

    /// Queues an append; the receiver answers once it is durable (or failed).
    pub fn append(&self, op: AppendOp) -> oneshot::Receiver<WriteResult> {
        let (tx, rx) = oneshot::channel();
        // A send error drops `tx`, which the receiver reports as a failure.
        let _ = self.tx.send(Op::Append(op, tx));
        rx
    }

    /// Queues any write, ordered after everything queued before it.
    pub fn run(
        &self,
        f: impl Fn(&mut AnyConnection) -> Result<(), StoreError> + Send + 'static,
    ) -> oneshot::Receiver<WriteResult> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Op::Run(Box::new(f), tx));
        rx
    }
}

/// Turns a dropped reply (the writer is gone) into an error.
pub fn settle(r: Result<WriteResult, oneshot::error::RecvError>) -> WriteResult {
    r.unwrap_or_else(|_| {
        Err(WriteError::Store {
            message: "writer stopped".into(),
            unavailable: true,
        })
    })
}

fn run(store: Store, metrics: ActorMetrics, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.bytes();
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP_OPS && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op.bytes();
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let now_us = logdog_schema::wire::now_us();
        let group = store.write(|conn| {
            ops.iter()
                .map(|op| op.apply(conn, now_us))
                .collect::<Result<Vec<_>, _>>()
        });
        match group {
            Ok(results) => {
                record(&metrics, &ops, &results, started);
                for (op, r) in ops.into_iter().zip(results) {
                    op.reply(r);
                }
            }
            Err(e) if ops.len() == 1 => {
                tracing::warn!(error = %e, "write failed");
                ops.pop().expect("one op").reply(Err(e.into()));
            }
            Err(e) => {
                tracing::warn!(error = %e, ops = ops.len(), "group commit failed; retrying one by one");
                for op in ops {
                    let started = Instant::now();
                    let r = store.write(|conn| op.apply(conn, now_us));
                    match r {
                        Ok(r) => {
                            record(
                                &metrics,
                                std::slice::from_ref(&op),
                                std::slice::from_ref(&r),
                                started,
                            );
                            op.reply(r);
                        }
                        Err(e) => op.reply(Err(e.into())),
                    }
                }
            }
        }
    }
}

fn record(metrics: &ActorMetrics, ops: &[Op], results: &[WriteResult], started: Instant) {
    metrics.commits.inc();
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.commit_batch_ops.observe(ops.len() as f64);
    let mut entries = 0;
    for (op, r) in ops.iter().zip(results) {
        if let (Op::Append(a, _), Ok(())) = (op, r) {
            entries += a.entries;
            metrics.bytes_ingested.inc_by(a.bytes);
        }
    }
    metrics.entries_ingested.inc_by(entries);
    metrics.commit_batch_entries.observe(entries as f64);
}

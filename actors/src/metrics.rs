//! Metrics the actors keep; the server registers them in its Prometheus registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct ActorMetrics {
    pub entries_ingested: IntCounter,
    pub bytes_ingested: IntCounter,
    pub live_stream_actors: IntGauge,
    pub commits: IntCounter,
    pub commit_batch_ops: Histogram,
    pub commit_batch_entries: Histogram,
    pub commit_seconds: Histogram,
    /// Cluster mode: streams this node claimed, took over from a node that was not live,
    /// and actors it dropped because another node owns their stream now.
    pub claims: IntCounter,
    pub takeovers: IntCounter,
    pub deposed: IntCounter,
}

impl ActorMetrics {
    pub fn new(registry: &Registry) -> Self {
        let m = Self {
            entries_ingested: IntCounter::new(
                "logdog_entries_ingested_total",
                "Log entries committed",
            )
            .unwrap(),
            bytes_ingested: IntCounter::new(
                "logdog_bytes_ingested_total",
                "Payload bytes committed",
            )
            .unwrap(),
            live_stream_actors: IntGauge::new("logdog_live_stream_actors", "Stream actors running")
                .unwrap(),
            commits: IntCounter::new(
                "logdog_commits_total",
                "Write transactions committed by the writer",
            )
            .unwrap(),
            commit_batch_ops: Histogram::with_opts(
                HistogramOpts::new(
                    "logdog_commit_batch_ops",
                    "Append requests per group commit",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
            )
            .unwrap(),
            commit_batch_entries: Histogram::with_opts(
                HistogramOpts::new("logdog_commit_batch_entries", "Entries per group commit")
                    .buckets(prometheus::exponential_buckets(1.0, 4.0, 10).unwrap()),
            )
            .unwrap(),
            commit_seconds: Histogram::with_opts(HistogramOpts::new(
                "logdog_commit_seconds",
                "Time to commit one group",
            ))
            .unwrap(),
            claims: IntCounter::new(
                "logdog_cluster_claims_total",
                "Streams this node claimed before starting their actor",
            )
            .unwrap(),
            takeovers: IntCounter::new(
                "logdog_cluster_takeovers_total",
                "Claims that took a stream over from a node that was dead or stopped",
            )
            .unwrap(),
            deposed: IntCounter::new(
                "logdog_cluster_deposed_total",
                "Stream actors dropped because another node owns their stream (a fenced write, a missed heartbeat)",
            )
            .unwrap(),
        };
        for c in [
            &m.entries_ingested,
            &m.bytes_ingested,
            &m.commits,
            &m.claims,
            &m.takeovers,
            &m.deposed,
        ] {
            let _ = registry.register(Box::new(c.clone()));
        }
        let _ = registry.register(Box::new(m.live_stream_actors.clone()));
        for h in [
            &m.commit_batch_ops,
            &m.commit_batch_entries,
            &m.commit_seconds,
        ] {
            let _ = registry.register(Box::new(h.clone()));
        }
        m
    }
}

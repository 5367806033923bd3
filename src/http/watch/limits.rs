//! The viewer limits: live viewers and followers counted in total and per stream; a
//! request over a limit is answered 429 before the upgrade.

use super::*;

/// Counts of live viewers, in total and per stream (limits answer 429 before the upgrade).
pub struct Viewers {
    total: AtomicUsize,
    per_stream: DashMap<StreamKey, usize>,
    pub(super) next_id: AtomicU64,
    /// `limits.max_viewers_per_stream` and `limits.max_viewers`.
    max_per_stream: usize,
    max_total: usize,
}

/// One viewer's place in the counts; released when the session ends.
pub struct ViewerSlot {
    viewers: Arc<Viewers>,
    key: StreamKey,
}

impl Viewers {
    pub fn new(limits: &crate::config::Limits) -> Self {
        Self {
            total: AtomicUsize::new(0),
            per_stream: DashMap::new(),
            next_id: AtomicU64::new(0),
            max_per_stream: limits.max_viewers_per_stream,
            max_total: limits.max_viewers,
        }
    }

    /// A place for one more viewer (or follower) of stream `id` of `project`; 429 past
    /// either limit.
    pub fn acquire(self: &Arc<Self>, project: &str, id: &str) -> Result<ViewerSlot, ApiError> {
        let (per_stream, total) = (self.max_per_stream, self.max_total);
        let key = StreamKey {
            project: project.to_owned(),
            id: id.to_owned(),
        };
        if self.total.fetch_add(1, Ordering::SeqCst) >= total {
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::exhausted(
                format!("too many viewers (limit {total})"),
                5,
            ));
        }
        let mut n = self.per_stream.entry(key.clone()).or_insert(0);
        if *n >= per_stream {
            drop(n);
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::exhausted(
                format!("too many viewers of this stream (limit {per_stream})"),
                5,
            ));
        }
        *n += 1;
        Ok(ViewerSlot {
            viewers: self.clone(),
            key,
        })
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.viewers.total.fetch_sub(1, Ordering::SeqCst);
        self.viewers.per_stream.remove_if_mut(&self.key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

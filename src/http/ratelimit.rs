//! Per-prefix ingest rate (`limits.prefix_lines_per_second`): a token bucket per
//! (project, prefix), refilled continuously, one second of burst. A request is let through
//! while the bucket is positive and may take it into debt, so a batch larger than the rate
//! still passes once; the next waits for the debt to be repaid (429 with Retry-After).

use std::time::Instant;

use dashmap::DashMap;

use crate::errors::ApiError;

pub struct PrefixRates {
    per_second: f64,
    buckets: DashMap<(String, String), (f64, Instant)>,
}

impl PrefixRates {
    /// `per_second` 0 means unlimited.
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            buckets: DashMap::new(),
        }
    }

    /// Takes `lines` from the prefix's bucket, or answers 429.
    pub fn take(&self, project: &str, prefix: &str, lines: u64) -> Result<(), ApiError> {
        if self.per_second <= 0.0 || lines == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self
            .buckets
            .entry((project.to_owned(), prefix.to_owned()))
            .or_insert((self.per_second, now));
        let (tokens, at) = *b;
        let tokens =
            (tokens + now.duration_since(at).as_secs_f64() * self.per_second).min(self.per_second);
        if tokens <= 0.0 {
            *b = (tokens, now);
            let wait = (-tokens / self.per_second).ceil().max(1.0) as u64;
            return Err(ApiError::exhausted(
                format!(
                    "prefix {prefix:?} is over its ingest rate of {} lines/s",
                    self.per_second
                ),
                wait,
            ));
        }
        *b = (tokens - lines as f64, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_refuses_until_repaid() {
        let r = PrefixRates::new(10.0);
        assert!(r.take("p", "a", 5).is_ok());
        assert!(
            r.take("p", "a", 10).is_ok(),
            "a positive bucket may go into debt"
        );
        let e = r.take("p", "a", 1).unwrap_err();
        assert_eq!(e.code, "resource_exhausted");
        assert_eq!(e.retry_after, Some(1));
        assert!(r.take("p", "other", 1).is_ok(), "buckets are per prefix");
        assert!(
            PrefixRates::new(0.0).take("p", "a", 1_000_000).is_ok(),
            "0 is unlimited"
        );
    }
}

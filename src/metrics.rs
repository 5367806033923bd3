//! HTTP request metrics, registered in the server's own Prometheus registry (no
//! process-wide statics: tests run several servers in one process).

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Websocket viewers connected now.
    pub viewers: IntGauge,
}

impl HttpMetrics {
    pub fn new(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "logdog_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "logdog_http_request_seconds",
                "HTTP request latency by route",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).expect("valid buckets")),
            &["route", "method"],
        )
        .expect("valid metric");
        let viewers = IntGauge::new("logdog_websocket_viewers", "Websocket viewers connected")
            .expect("valid metric");
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(latency.clone()));
        let _ = registry.register(Box::new(viewers.clone()));
        Self {
            requests,
            latency,
            viewers,
        }
    }

    /// Counts one request. Label values come from closed sets: `route` is a route template
    /// of the table (or `unmatched`), `method` one of the known methods (else `other`), so
    /// no client can grow the metrics by sending made-up methods or paths.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }
}

/// The method as a metric label: a standard method, else `other`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_methods_are_one_label() {
        assert_eq!(super::method_label("GET"), "GET");
        assert_eq!(super::method_label(&"X".repeat(1000)), "other");
        assert_eq!(super::method_label("get"), "other");
    }
}

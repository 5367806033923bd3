//! The typed HTTP client the command-line clients share: one coordinator, one optional
//! Bearer token, API errors decoded from the `{"error": {"code", "message"}}` body, and a
//! retry loop for what is worth retrying (network errors, 408, 429 and 5xx).

use std::time::{Duration, Instant};

use logdog_schema::wire::{decode_entries, Entry, ENTRIES_CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::errors::ErrorBody;

/// What a call can end with, other than success.
#[derive(Debug, Clone)]
pub enum ClientError {
    /// The coordinator answered with an error status.
    Status {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, timeout, a body cut short.
    Network(String),
    /// Retried for as long as allowed (`--retry-for`); `last` is the last failure.
    GaveUp {
        what: String,
        after: Duration,
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The error an answer of `status` carries: its `ErrorBody`, or the start of its text
    /// when it has none (answers from something other than the coordinator).
    pub fn from_answer(status: StatusCode, bytes: &[u8], retry_after: Option<Duration>) -> Self {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(b) => ClientError::Status {
                status,
                code: b.error.code.as_str().to_owned(),
                message: b.error.message,
                retry_after,
            },
            Err(_) => ClientError::Status {
                status,
                code: "unknown".into(),
                message: String::from_utf8_lossy(bytes).chars().take(200).collect(),
                retry_after,
            },
        }
    }

    /// Whether the same call may succeed later: the coordinator was unreachable, busy or
    /// failing, as opposed to refusing the request.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Network(_) => true,
            ClientError::GaveUp { .. } => false,
            ClientError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::Network(_) => None,
            ClientError::GaveUp { last, .. } => last.status(),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Status {
                status,
                code,
                message,
                ..
            } => write!(f, "{} {code}: {message}", status.as_u16()),
            ClientError::Network(e) => write!(f, "coordinator unreachable: {e}"),
            ClientError::GaveUp { what, after, last } if after.is_zero() => {
                write!(f, "{what}: {last} (not retried: --retry-for 0)")
            }
            ClientError::GaveUp { what, after, last } => write!(
                f,
                "{what}: {last}; gave up after retrying for {} (--retry-for)",
                seconds(*after)
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// The coordinator at `base` (e.g. `http://127.0.0.1:8080`), called with `token`.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| anyhow::anyhow!("--coordinator {base:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            anyhow::bail!("--coordinator {base:?} must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `{base}/api/v1/projects/{project}/{rest}`.
    pub fn project_url(&self, project: &str, rest: &str) -> String {
        format!("{}/api/v1/projects/{project}/{rest}", self.base)
    }

    /// The websocket form of `project_url`.
    pub fn ws_url(&self, project: &str, rest: &str) -> String {
        let url = self.project_url(project, rest);
        match url.strip_prefix("https://") {
            Some(r) => format!("wss://{r}"),
            None => format!("ws://{}", url.trim_start_matches("http://")),
        }
    }

    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `r` and reads the answer as `T` (the very type the handler sends); an error
    /// answer is read as the API's `ErrorBody`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        r: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.send(r).await?;
        // 204 and other empty answers read as JSON null (for `()` and `Option`s).
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body).map_err(|e| {
            ClientError::Network(format!("the coordinator's answer is not understood: {e}"))
        })
    }

    /// Sends `r`: a success's headers and body, or the error answer as a `ClientError`.
    pub async fn send(
        &self,
        r: reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, bytes::Bytes), ClientError> {
        let res = r
            .send()
            .await
            .map_err(|e| ClientError::Network(describe(&e)))?;
        let status = res.status();
        let headers = res.headers().clone();
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(60.0)));
        let bytes = res
            .bytes()
            .await
            .map_err(|e| ClientError::Network(describe(&e)))?;
        if status.is_success() {
            return Ok((headers, bytes));
        }
        Err(ClientError::from_answer(status, &bytes, retry_after))
    }

    pub async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        self.call(self.request(Method::GET, url)).await
    }

    /// A Get page in the binary form (`Accept: application/x-logdog-entries`): no JSON to
    /// parse, the entries as the server stores them.
    pub async fn get_entries(&self, url: &str) -> Result<EntriesPage, ClientError> {
        let r = self
            .request(Method::GET, url)
            .header(reqwest::header::ACCEPT, ENTRIES_CONTENT_TYPE);
        let (headers, bytes) = self.send(r).await?;
        EntriesPage::read(&headers, &bytes).map_err(ClientError::Network)
    }
}

/// A Get page read in the binary form.
#[derive(Debug, Clone, PartialEq)]
pub struct EntriesPage {
    pub entries: Vec<Entry>,
    pub next_index: u64,
}

impl EntriesPage {
    /// Reads a binary Get answer (its content type, `X-Logdog-Next-Index`, the records).
    pub fn read(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<Self, String> {
        let next_index = Self::next_index(headers)?;
        let entries =
            decode_entries(body).map_err(|e| format!("the coordinator sent bad entries: {e}"))?;
        Ok(Self {
            entries,
            next_index,
        })
    }

    /// Checks a binary Get answer's content type and reads its `X-Logdog-Next-Index`,
    /// for readers that walk the records themselves.
    pub fn next_index(headers: &reqwest::header::HeaderMap) -> Result<u64, String> {
        let ct = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with(ENTRIES_CONTENT_TYPE) {
            return Err(format!(
                "the coordinator answered {ct:?}, not {ENTRIES_CONTENT_TYPE}"
            ));
        }
        headers
            .get(crate::http::logs::NEXT_INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "the binary answer has no X-Logdog-Next-Index".to_owned())
    }
}

/// reqwest's error with its causes, which hold the useful part ("connection refused"); a
/// failed connection says only where to and why.
fn describe(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if e.is_connect() {
        if let (Some(url), Some(root)) = (e.url(), causes.last()) {
            return format!(
                "cannot connect to {}: {root}",
                url.origin().ascii_serialization()
            );
        }
    }
    std::iter::once(e.to_string())
        .chain(causes)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Exponential backoff for retries: 100 ms doubling to `max`, or what Retry-After says.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(100),
            max,
        }
    }

    /// The wait before the next attempt after `err`.
    pub fn delay(&mut self, err: &ClientError) -> Duration {
        let d = match err {
            ClientError::Status {
                retry_after: Some(r),
                ..
            } => (*r).max(self.next),
            _ => self.next,
        };
        self.next = (self.next * 2).min(self.max);
        d.min(self.max.max(Duration::from_millis(100)))
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
}

/// How long a client keeps retrying what is worth retrying.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// Give up once this long has passed since the first failure (None: never).
    pub give_up_after: Option<Duration>,
    /// Say so at every attempt, not only at the first failure and the recovery.
    pub each_attempt: bool,
}

impl Patience {
    /// Retries until it works (uploads: nothing acknowledged may be dropped).
    pub fn forever(max_backoff: Duration) -> Self {
        Self {
            max_backoff,
            give_up_after: None,
            each_attempt: false,
        }
    }

    /// Retries for `limit` at most (`--retry-for`), then fails.
    pub fn bounded(max_backoff: Duration, limit: Duration) -> Self {
        Self {
            max_backoff,
            give_up_after: Some(limit),
            each_attempt: false,
        }
    }
}

/// One retry loop's state: the backoff, when failing started, how often it failed; what
/// it says on stderr as `what`.
pub struct Retrier {
    what: String,
    pub patience: Patience,
    backoff: Backoff,
    failing_since: Option<Instant>,
    failures: u32,
}

impl Retrier {
    pub fn new(what: impl Into<String>, patience: Patience) -> Self {
        Self {
            what: what.into(),
            patience,
            backoff: Backoff::new(patience.max_backoff),
            failing_since: None,
            failures: 0,
        }
    }

    /// After a retryable failure: waits before the next attempt, or, when the patience is
    /// spent, gives up with `ClientError::GaveUp`.
    pub async fn wait(&mut self, err: ClientError) -> Result<(), ClientError> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        self.failures += 1;
        let mut delay = self.backoff.delay(&err);
        let what = &self.what;
        match self.patience.give_up_after {
            Some(limit) => {
                let spent = since.elapsed();
                if spent >= limit {
                    return Err(ClientError::GaveUp {
                        what: what.clone(),
                        after: limit,
                        last: Box::new(err),
                    });
                }
                delay = delay.min(limit - spent);
                if self.failures == 1 {
                    eprintln!(
                        "logdog: {what}: {err}; retrying for up to {} (--retry-for)",
                        seconds(limit)
                    );
                } else if self.patience.each_attempt {
                    eprintln!("logdog: {what}: {err}; attempt {}", self.failures + 1);
                }
            }
            None if self.failures == 1 || self.patience.each_attempt => {
                eprintln!(
                    "logdog: {what}: {err}; retrying in {} (attempt {})",
                    seconds(delay),
                    self.failures + 1
                );
            }
            None => {}
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// After a success: reports the recovery and starts afresh.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            let n = self.failures;
            let what = &self.what;
            eprintln!(
                "logdog: {what}: succeeded after {n} {}",
                if n == 1 { "retry" } else { "retries" }
            );
        }
        self.failures = 0;
        self.failing_since = None;
        self.backoff.reset();
    }
}

/// `1.5 s`, `30 s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Calls `f` until it succeeds, fails in a way retrying cannot fix, or `patience` is
/// spent. The first failure and the recovery are reported on stderr as `what`.
pub async fn retry<T, F, Fut>(what: &str, patience: Patience, mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut r = Retrier::new(what, patience);
    loop {
        match f().await {
            Ok(v) => {
                r.succeeded();
                return Ok(v);
            }
            Err(e) if e.retryable() => r.wait(e).await?,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_secs(1));
        let net = ClientError::Network("refused".into());
        let waits: Vec<_> = (0..6).map(|_| b.delay(&net).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        let busy = ClientError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "resource_exhausted".into(),
            message: String::new(),
            retry_after: Some(Duration::from_millis(700)),
        };
        assert_eq!(b.delay(&busy).as_millis(), 700);
        assert!(busy.retryable());
        let refused = ClientError::Status {
            status: StatusCode::CONFLICT,
            code: "conflict".into(),
            message: String::new(),
            retry_after: None,
        };
        assert!(!refused.retryable());
    }

    #[test]
    fn coordinator_urls_are_checked() {
        assert!(Api::new("http://127.0.0.1:8080/", None).is_ok());
        assert!(Api::new("127.0.0.1:8080", None).is_err());
        assert!(Api::new("ftp://host", None).is_err());
        let api = Api::new("https://logs.example.com", None).unwrap();
        assert_eq!(
            api.ws_url("p", "watch/a/+/b"),
            "wss://logs.example.com/api/v1/projects/p/watch/a/+/b"
        );
    }
}

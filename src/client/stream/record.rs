//! The run record (docs/CLI.md, "The run record"): the command and its start as tags on
//! the outputs, and its end, duration and exit code on `{name}/result`.

use super::*;

/// The run record's tags (docs/CLI.md, "The run record"): on `{name}/stdout` and
/// `{name}/stderr` from the start, and with the end on `{name}/result`.
pub const RUN_COMMAND: &str = "run.command";
pub const RUN_STARTED: &str = "run.started";
pub const RUN_ENDED: &str = "run.ended";
pub const RUN_DURATION: &str = "run.duration";
pub const RUN_EXIT_CODE: &str = "run.exit_code";

/// How long recording the result may take when the coordinator is away.
pub(super) const RESULT_PATIENCE: Duration = Duration::from_secs(30);

pub(super) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The command line as a shell would take it back (arguments quoted where needed).
pub fn shell_line(args: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b))
    };
    args.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tag value within the server's limit (4096 bytes), cut with "…" when longer.
pub(super) fn tag_value(s: &str) -> String {
    const MAX: usize = logdog_schema::names::MAX_TAG_VALUE_BYTES;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `12.4 s`, `3 min 05 s`.
pub(super) fn duration_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let whole = d.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// Records how the run ended as the one-line stream `{name}/result`, whose tags hold the
/// command, start, end, duration (seconds) and exit code. Best effort: a failure is
/// reported and does not change the exit code.
pub(super) async fn record_result(
    shared: &Shared,
    name: &str,
    code: i32,
    ended_at: chrono::DateTime<chrono::Utc>,
) {
    let duration = (ended_at - shared.started_at).to_std().unwrap_or_default();
    let mut tags = shared.tags.clone();
    tags.insert(RUN_ENDED.into(), rfc3339(ended_at));
    tags.insert(
        RUN_DURATION.into(),
        format!("{:.3}", duration.as_secs_f64()),
    );
    tags.insert(RUN_EXIT_CODE.into(), code.to_string());
    let line = format!("exit code {code} after {}", duration_text(duration));
    let stream = format!("{name}/result");
    let path = shared.path(&stream);
    let patience = Patience::bounded(shared.max_backoff, RESULT_PATIENCE);
    let recorded = async {
        let secret = shared.secret().await?.to_owned();
        let url = shared
            .api
            .project_url(&shared.project, &format!("streams/{path}"));
        let register = RegisterStreamRequest {
            descriptor: Some(DescriptorRequest {
                stream_type: Some(StreamType::Text),
                timestamp: Some(shared.started_at),
                tags: Some(tags),
                ..DescriptorRequest::default()
            }),
            terminal_index: Some(0),
        };
        let what = format!("recording {path}");
        let send = |method: Method, url: &str| {
            shared
                .api
                .request(method, url)
                .header("X-Prefix-Secret", &secret)
        };
        retry(&what, patience, || {
            shared
                .api
                .call::<StreamJson>(send(Method::PUT, &url).json(&register))
        })
        .await?;
        let entry = LogEntry {
            time_offset: Some(duration.as_secs_f64()),
            ..LogEntry::text(0, [(line.clone(), Delimiter::Lf)])
        };
        let append = AppendRequest {
            entries: vec![entry],
        };
        let logs = shared
            .api
            .project_url(&shared.project, &format!("logs/{path}"));
        retry(&what, patience, || {
            shared
                .api
                .call::<AppendResult>(send(Method::POST, &logs).json(&append))
        })
        .await?;
        Ok::<(), ClientError>(())
    };
    match recorded.await {
        Ok(()) => eprintln!("logdog: {stream}: {line}"),
        Err(e) => eprintln!("logdog: {stream}: the run's result was not recorded: {e}"),
    }
}

/// `1 line`, `3 lines`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

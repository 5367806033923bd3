//! Stream a file into a LogDog stream through the HTTP API: register a prefix, register a
//! text stream, append the file's lines in batches (each entry numbered, so a retried batch
//! is never stored twice), terminate at the last entry, and print the viewer URL.
//!
//! ```sh
//! cargo run --example pipe_file -- FILE PROJECT PREFIX [NAME]
//! cargo run --example pipe_file -- /var/log/dpkg.log demo files/1 dpkg.log
//! ```
//! The coordinator is `$LOGDOG_COORDINATOR` (default `http://127.0.0.1:8080`), the token
//! `$LOGDOG_TOKEN` (none in local mode). `logdog stream` does the same for a live command.

use std::io::BufRead as _;

use serde_json::{json, Value};

const LINES_PER_ENTRY: usize = 100;
const ENTRIES_PER_REQUEST: usize = 100;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: pipe_file FILE PROJECT PREFIX [NAME]");
        std::process::exit(2);
    }
    let (file, project, prefix) = (&args[0], &args[1], &args[2]);
    let name = args.get(3).cloned().unwrap_or_else(|| "file".into());
    let base = std::env::var("LOGDOG_COORDINATOR").unwrap_or("http://127.0.0.1:8080".into());
    let base = base.trim_end_matches('/');
    let api = format!("{base}/api/v1/projects/{project}");
    let path = format!("{prefix}/+/{name}");
    let http = reqwest::Client::new();
    let token = std::env::var("LOGDOG_TOKEN").ok();
    let call = |method: reqwest::Method, url: String, secret: Option<&str>, body: Value| {
        let mut r = http.request(method, url).json(&body);
        if let Some(t) = &token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = secret {
            r = r.header("X-Prefix-Secret", s);
        }
        async move {
            let res = r.send().await.unwrap_or_else(|e| fail(&e.to_string()));
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                fail(&format!("{status}: {}", body["error"]["message"]));
            }
            body
        }
    };

    let reg = call(
        reqwest::Method::POST,
        format!("{api}/prefixes"),
        None,
        json!({"prefix": prefix}),
    )
    .await;
    let secret = reg["secret"].as_str().expect("a secret").to_owned();
    let descriptor = json!({"stream_type": "text", "tags": {"source": file}});
    call(
        reqwest::Method::PUT,
        format!("{api}/streams/{path}"),
        Some(&secret),
        json!({ "descriptor": descriptor }),
    )
    .await;
    println!("{base}/logs/{project}/{path}");

    let reader = std::io::BufReader::new(
        std::fs::File::open(file).unwrap_or_else(|e| fail(&format!("{file}: {e}"))),
    );
    let (mut entries, mut lines, mut index, mut sequence) = (Vec::new(), Vec::new(), 0u64, 0u64);
    let mut total_lines = 0u64;
    let mut pending = reader.split(b'\n').peekable();
    while let Some(line) = pending.next() {
        let mut bytes = line.unwrap_or_else(|e| fail(&e.to_string()));
        let last = pending.peek().is_none();
        // `split` drops the newline; the file's last line may not have had one.
        let mut delimiter = "\n";
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
            delimiter = "\r\n";
        }
        if last && !file_ends_with_newline(file) {
            delimiter = "";
        }
        lines.push(json!({"value": String::from_utf8_lossy(&bytes), "delimiter": delimiter}));
        if lines.len() == LINES_PER_ENTRY || last {
            let n = lines.len() as u64;
            entries.push(json!({"stream_index": index, "sequence": sequence,
                                "text": {"lines": std::mem::take(&mut lines)}}));
            index += 1;
            sequence += n;
            total_lines += n;
        }
        if entries.len() == ENTRIES_PER_REQUEST || (last && !entries.is_empty()) {
            call(
                reqwest::Method::POST,
                format!("{api}/logs/{path}"),
                Some(&secret),
                json!({ "entries": std::mem::take(&mut entries) }),
            )
            .await;
        }
    }
    let terminal = json!({"terminal_index": index as i64 - 1});
    let done = call(
        reqwest::Method::PATCH,
        format!("{api}/streams/{path}"),
        Some(&secret),
        if index == 0 { json!({}) } else { terminal },
    )
    .await;
    eprintln!(
        "pipe_file: {total_lines} lines in {index} entries; stream {}",
        done["state"]["status"]
    );
}

fn file_ends_with_newline(file: &str) -> bool {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(file).unwrap_or_else(|e| fail(&e.to_string()));
    if f.seek(SeekFrom::End(-1)).is_err() {
        return false;
    }
    let mut b = [0u8];
    f.read_exact(&mut b).is_ok() && b[0] == b'\n'
}

fn fail(msg: &str) -> ! {
    eprintln!("pipe_file: {msg}");
    std::process::exit(1);
}

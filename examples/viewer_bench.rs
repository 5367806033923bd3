//! The stream viewer on a 1,000,000-line stream, in headless Chromium (Debian's `chromium`
//! and `chromium-driver`): the time from navigation to the first lines drawn (tail=2000
//! entries = 200,000 lines), the time each redraw takes while scrolling through them, the
//! rows in the DOM, and the time to load an older page (1,000 entries through Get).
//!
//! ```sh
//! cargo run --release --example viewer_bench [-- --database postgres://postgres@127.0.0.1:5432/test]
//! ```

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use serde_json::{json, Value};
use support::{percentile, register_prefix, register_stream, BenchDb};

const ENTRIES: u64 = 10_000;
const LINES_PER_ENTRY: u64 = 100;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(v, 0.5)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let database = args
        .iter()
        .position(|a| a == "--database")
        .map(|i| args[i + 1].clone());
    let db = BenchDb::new(database.as_deref(), "viewer");
    let mut config = db.config();
    config.archival.embedded_archivist = false;
    let server = logdog::server::Background::start(config).expect("server");
    let base = server.base();
    let api = format!("{base}/api/v1/projects/bench");
    let http = reqwest::Client::new();
    let secret = register_prefix(&http, &api, "v").await;
    register_stream(&http, &api, "v/+/log", &secret).await;
    for chunk in 0..ENTRIES / 100 {
        let entries: Vec<Value> = (0..100)
            .map(|k| {
                let idx = chunk * 100 + k;
                let lines: Vec<String> = (0..LINES_PER_ENTRY)
                    .map(|j| {
                        let n = idx * LINES_PER_ENTRY + j + 1;
                        format!("\u{1b}[32m{n:>8}\u{1b}[0m compiling module_{n}.rs \u{1b}[1mok\u{1b}[0m in {}ms", n % 97)
                    })
                    .collect();
                json!({"stream_index": idx, "sequence": idx * LINES_PER_ENTRY, "text": {"lines": lines}})
            })
            .collect();
        let r = http
            .post(format!("{api}/logs/v/+/log"))
            .header("X-Prefix-Secret", &secret)
            .json(&json!({ "entries": entries }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    println!(
        "viewer_bench: {} lines in {ENTRIES} entries ({}), headless Chromium",
        ENTRIES * LINES_PER_ENTRY,
        db.backend()
    );
    let b = webdriver::Browser::start().await.expect("a browser");
    let url = format!("{base}/logs/bench/v/+/log");

    // Opening: navigation to the first lines drawn, five times.
    let mut open = Vec::new();
    for _ in 0..5 {
        b.goto("about:blank").await;
        b.goto(&url).await;
        let t = b
            .until(
                "the tail drawn",
                "const v = window.__viewer; return v && v.nextIndex === 10000 && v.firstPaint",
            )
            .await;
        open.push(t.as_f64().unwrap());
    }
    println!(
        "  open (navigation to the first lines drawn; the 2,000-entry tail then streams in): median {:.0} ms (runs {:?})",
        median(&mut open),
        open.iter().map(|t| t.round()).collect::<Vec<_>>()
    );

    // Scrolling: 300 jumps up through the loaded lines, one redraw each.
    let times = b
        .js_async(
            "const v = window.__viewer, sc = document.getElementById('scroller');
             v.drawTimes.length = 0;
             const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
             (async () => {
               let rows = 0;
               for (let i = 0; i < 300; i++) {
                 sc.scrollTop = sc.scrollHeight - sc.clientHeight - (i + 1) * 37 * v.lineHeight * 3;
                 await frame();
                 rows = Math.max(rows, document.querySelectorAll('#rows .line').length);
               }
               done({ draws: v.drawTimes.slice(), rows });
             })();",
            json!([]),
        )
        .await;
    let mut draws: Vec<f64> = times["draws"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    draws.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  scroll: {} redraws, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; at most {} rows in the DOM",
        draws.len(),
        percentile(&draws, 0.5),
        percentile(&draws, 0.99),
        percentile(&draws, 1.0),
        times["rows"]
    );

    // An older page: from reaching the top to 100,000 more lines loaded, five times.
    let mut older = Vec::new();
    for _ in 0..5 {
        let ms = b
            .js_async(
                "const v = window.__viewer, sc = document.getElementById('scroller');
                 const before = v.firstIndex, t0 = performance.now();
                 sc.scrollTop = 0;
                 const check = () => v.firstIndex < before ? done(performance.now() - t0) : requestAnimationFrame(check);
                 check();",
                json!([]),
            )
            .await;
        older.push(ms.as_f64().unwrap());
    }
    println!(
        "  older page (1,000 entries = 100,000 lines through Get): median {:.0} ms (runs {:?})",
        median(&mut older),
        older.iter().map(|t| t.round()).collect::<Vec<_>>()
    );
    drop(b);
    server.stop().await;
}

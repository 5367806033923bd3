//! The stream viewer on a big stream (10,000,000 lines, about 1 GB, by default), in headless
//! Chromium (Debian's `chromium` and `chromium-driver`): the time from navigation to the
//! first lines drawn (tail=2000 entries = 200,000 lines), the time each redraw takes while
//! scrolling, the rows in the DOM, the time to load an older page (about 2 MiB through
//! Get), the outline (a GitLab section every 100,000 lines) read through the API, a jump to
//! a line in the middle, a whole-log search and the jumps to its matches, and the browser's
//! JS heap. Then the search route's own cost: the whole stream scanned for a string that is
//! not there (literal, case-insensitive and regex).
//!
//! ```sh
//! cargo run --release --example viewer_bench [-- --lines 1000000] [-- --database postgres://postgres@127.0.0.1:5432/test]
//! ```

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use serde_json::{json, Value};
use support::{percentile, register_prefix, register_stream, BenchDb};

const LINES_PER_ENTRY: u64 = 100;
/// A GitLab section every this many entries (100,000 lines).
const SECTION_ENTRIES: u64 = 1000;

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
    let lines: u64 = args
        .iter()
        .position(|a| a == "--lines")
        .map_or(10_000_000, |i| args[i + 1].parse().expect("--lines N"));
    let entries_total = lines / LINES_PER_ENTRY;
    let db = BenchDb::new(database.as_deref(), "viewer");
    let mut config = db.config();
    config.archival.embedded_archivist = false;
    let server = logdog::server::Background::start(config).expect("server");
    let base = server.base();
    let api = format!("{base}/api/v1/projects/bench");
    let http = reqwest::Client::new();
    let secret = register_prefix(&http, &api, "v").await;
    register_stream(&http, &api, "v/+/log", &secret).await;
    let ingest = std::time::Instant::now();
    for chunk in 0..entries_total / 100 {
        let entries: Vec<Value> = (0..100)
            .map(|k| {
                let idx = chunk * 100 + k;
                let lines: Vec<String> = (0..LINES_PER_ENTRY)
                    .map(|j| {
                        let n = idx * LINES_PER_ENTRY + j + 1;
                        let ts = 1_700_000_000 + idx;
                        if j == 0 && idx % SECTION_ENTRIES == 0 {
                            format!("\u{1b}[0Ksection_start:{ts}:part_{}\r\u{1b}[0KPart {}", idx / SECTION_ENTRIES, idx / SECTION_ENTRIES)
                        } else if j == LINES_PER_ENTRY - 1 && idx % SECTION_ENTRIES == SECTION_ENTRIES - 1 {
                            format!("\u{1b}[0Ksection_end:{ts}:part_{}\r\u{1b}[0K", idx / SECTION_ENTRIES)
                        } else if n % (lines / 4) == lines / 8 {
                            // four needles, spread over the log
                            format!("{n:>8} NEEDLE in the haystack")
                        } else {
                            format!("\u{1b}[32m{n:>8}\u{1b}[0m compiling module_{n}.rs \u{1b}[1mok\u{1b}[0m in {}ms", n % 97)
                        }
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
    let ingest = ingest.elapsed().as_secs_f64();
    println!(
        "viewer_bench: {lines} lines in {entries_total} entries ({}), written in {ingest:.1} s, headless Chromium",
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
                &format!("const v = window.__viewer; return v && v.nextIndex === {entries_total} && v.firstPaint"),
            )
            .await;
        open.push(t.as_f64().unwrap());
    }
    println!(
        "  open (navigation to the first lines drawn; the 2,000-entry tail then streams in): median {:.0} ms (runs {:?})",
        median(&mut open),
        open.iter().map(|t| t.round()).collect::<Vec<_>>()
    );

    let heap = b
        .js("if (window.gc) gc(); return [performance.memory ? performance.memory.usedJSHeapSize : null, window.__viewer.lines.length]", json!([]))
        .await;
    println!(
        "  browser JS heap after opening: {:.0} MB with {} lines held",
        heap[0].as_f64().unwrap_or(0.0) / 1e6,
        heap[1]
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
        "  older page (about 2 MiB, at most 1,000 entries, through Get): median {:.0} ms (runs {:?})",
        median(&mut older),
        older.iter().map(|t| t.round()).collect::<Vec<_>>()
    );

    // The outline: read through the API as the viewer does (the server keeps it as entries
    // arrive; a read catches up only what it has not seen).
    let sections = format!("{api}/sections/v/+/log");
    let mut outline = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let o: Value = http
            .get(&sections)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        outline.push(t.elapsed().as_secs_f64() * 1000.0);
        count = o["sections"].as_array().unwrap().len();
        assert_eq!(o["next_index"], entries_total, "{}", o["next_index"]);
    }
    println!(
        "  outline ({count} sections of a {lines}-line stream, GET …/sections): median {:.1} ms (runs {:?})",
        median(&mut outline),
        outline.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>()
    );

    // Jumps to lines far apart: each line's entry found by binary search over Get, then the
    // pages around it.
    let mut jumps = Vec::new();
    // each far from the last: never in the window already
    for eighths in [4, 2, 6, 1, 5] {
        let no = lines / 8 * eighths + 1;
        let ms = b
            .js_async(
                &format!("const v = window.__viewer, t0 = performance.now();
                 location.hash = '#L{no}';
                 const check = () => {{ const r = document.querySelector('#rows .line.selected');
                   return r && r.dataset.no === '{no}' ? done(performance.now() - t0) : setTimeout(check, 5); }};
                 check();"),
                json!([]),
            )
            .await;
        jumps.push(ms.as_f64().unwrap());
    }
    let held = b.js("return window.__viewer.lines.length", json!([])).await;
    println!(
        "  jump to a line far away (#L{}, …): median {:.0} ms (runs {:?}); {held} lines held",
        lines / 2 + 1,
        median(&mut jumps),
        jumps.iter().map(|t| t.round()).collect::<Vec<_>>()
    );

    // A whole-log search: until the count is final, then next/previous to each match.
    let search = b
        .js_async(
            "const v = window.__viewer, t0 = performance.now(), input = document.getElementById('search');
             input.value = 'NEEDLE';
             input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
             const check = () => v.search.done && v.search.matches.length ? done([performance.now() - t0, v.search.matches.length]) : setTimeout(check, 5);
             check();",
            json!([]),
        )
        .await;
    let mut to_match = Vec::new();
    for k in 0..6 {
        let ms = b
            .js_async(
                &format!("const v = window.__viewer, t0 = performance.now(), n = v.jumpTimes.length;
                 document.getElementById('{}').click();
                 const check = () => {{ const x = v.search.matches[v.search.current];
                   const r = document.querySelector('#rows .line.current');
                   return v.jumpTimes.length > n && r && r.dataset.no === String(x.line + 1) ? done(performance.now() - t0) : setTimeout(check, 5); }};
                 check();", if k % 2 == 0 { "next" } else { "prev" }),
                json!([]),
            )
            .await;
        to_match.push(ms.as_f64().unwrap());
    }
    println!(
        "  search 'NEEDLE' over the whole log: {} matches counted in {:.0} ms; jump to a match: median {:.0} ms (runs {:?})",
        search[1],
        search[0].as_f64().unwrap(),
        median(&mut to_match),
        to_match.iter().map(|t| t.round()).collect::<Vec<_>>()
    );
    let heap = b
        .js(
            "if (window.gc) gc(); return [performance.memory ? performance.memory.usedJSHeapSize : null, !!window.gc]",
            json!([]),
        )
        .await;
    let held = b.js("return window.__viewer.lines.length", json!([])).await;
    println!(
        "  browser JS heap: {:.0} MB with {held} lines held (of {lines}){}",
        heap[0].as_f64().unwrap_or(0.0) / 1e6,
        if heap[1] == true {
            ""
        } else {
            " (no gc() to call first)"
        }
    );
    drop(b);

    // The search route alone: the whole stream for a string it does not hold.
    for (what, query) in [
        ("literal", "q=no+such+text"),
        ("case=false", "q=No+Such+Text&case=false"),
        ("regex", "q=no%5Cs%2Bsuch%5Cd&regex=true"),
    ] {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let mut from = 0u64;
            loop {
                let r: Value = http
                    .get(format!(
                        "{api}/search/v/+/log?{query}&from={from}&max_ms=10000"
                    ))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["matches"], json!([]));
                from = r["next_index"].as_u64().unwrap();
                if r["more"] == false {
                    break;
                }
            }
            assert_eq!(from, entries_total);
            runs.push(t.elapsed().as_secs_f64());
        }
        let m = median(&mut runs);
        println!(
            "  search route, {lines} lines, no match, {what}: median {:.2} s = {:.1} M lines/s (runs {:?})",
            m,
            lines as f64 / m / 1e6,
            runs.iter().map(|t| (t * 100.0).round() / 100.0).collect::<Vec<_>>()
        );
    }
    server.stop().await;
}

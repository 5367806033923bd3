//! The web app in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! against a real server. Without chromedriver these tests are ignored (build.rs), except
//! in CI (`CI` set), where a missing browser fails them. No browser process outlives its
//! test: the harness kills ChromeDriver's process group and fails if any of it survives.

use serde_json::{json, Value};

use crate::common::*;

#[path = "../../examples/support/webdriver.rs"]
mod webdriver;
use webdriver::Browser;

/// The browser. These tests are built as ignored when ChromeDriver is not installed
/// (build.rs), except in CI (`CI` set), where a missing browser fails them.
async fn browser() -> Browser {
    Browser::start()
        .await
        .unwrap_or_else(|e| panic!("the browser tests need chromium and chromium-driver: {e}"))
}

const ESC: &str = "\u{1b}";

fn ansi_lines(from: u64, to: u64) -> Value {
    Value::Array(
        (from..to)
            .map(|i| {
                json!({"stream_index": i, "text": {"lines": [format!(
                    "{ESC}[1;31merror{ESC}[0m line {} {ESC}[38;5;82mgreen{ESC}[0m {ESC}[38;2;255;128;0mtrue{ESC}[0m {ESC}[3mitalic{ESC}[0m",
                    i + 1
                )]}})
            })
            .collect(),
    )
}

const VIEW: &str = "window.__viewer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn viewer_in_a_real_browser() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let port = free_port();
    let mut config = db.config();
    config.listen = format!("127.0.0.1:{port}");
    let server = TestServer::start(config.clone());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("web/1").await;
    c.register("web/1/+/log", &secret, json!({"tags": {"step": "compile"}}))
        .await
        .expect(201);
    c.append("web/1/+/log", &secret, ansi_lines(0, 100))
        .await
        .expect(200);

    // The backlog, rendered: colours applied, no escape codes on screen.
    b.goto(&format!("{base}/logs/p/web/1/+/log")).await;
    b.until(
        "100 lines",
        &format!("{VIEW} && {VIEW}.lines.length === 100"),
    )
    .await;
    // The rows are drawn on the next frame after the lines arrive.
    b.until(
        "the last line drawn",
        "document.getElementById('rows').textContent.includes('error line 100 green true italic')",
    )
    .await;
    let text = b
        .js(
            "return document.getElementById('rows').textContent",
            json!([]),
        )
        .await;
    let text = text.as_str().unwrap();
    assert!(
        !text.contains(ESC) && !text.contains("[1;31m"),
        "raw escapes: {text}"
    );
    assert!(text.contains("error line 100 green true italic"));
    let styles = b
        .js(
            "const s = [...document.querySelectorAll('#rows .line:last-child .tx span')];
             return s.map(e => [e.textContent, e.style.color, e.style.fontWeight, e.style.fontStyle]);",
            json!([]),
        )
        .await;
    assert_eq!(
        styles,
        json!([
            ["error", "rgb(205, 49, 49)", "bold", ""],
            ["green", "rgb(95, 255, 0)", "", ""],
            ["true", "rgb(255, 128, 0)", "", ""],
            ["italic", "", "", "italic"]
        ])
    );
    // Following the bottom: the last line is on screen, live lines arrive.
    c.append("web/1/+/log", &secret, ansi_lines(100, 150))
        .await
        .expect(200);
    b.until("live lines", &format!("{VIEW}.lines.length === 150"))
        .await;
    b.until(
        "line 150 on screen",
        "const r = [...document.querySelectorAll('#rows .line')].find(l => l.dataset.no === '150');
         if (!r) return false;
         const box = r.getBoundingClientRect(), sc = document.getElementById('scroller').getBoundingClientRect();
         return box.bottom <= sc.bottom + 1 && box.top >= sc.top;",
    )
    .await;
    assert_eq!(
        b.js(
            "return document.getElementById('status').textContent",
            json!([])
        )
        .await,
        "streaming"
    );
    // Tags and descriptor.
    assert_eq!(
        b.js(
            "return document.querySelector('#meta dd[data-key=\"tag step\"]').textContent",
            json!([])
        )
        .await,
        "compile"
    );

    // Scrolling up stops following; "jump to latest" resumes.
    b.js(
        "document.getElementById('scroller').scrollTop = 0",
        json!([]),
    )
    .await;
    b.until(
        "following off",
        &format!("{VIEW}.following === false && !document.getElementById('jump').hidden"),
    )
    .await;
    c.append("web/1/+/log", &secret, ansi_lines(150, 160))
        .await
        .expect(200);
    b.until("160 lines", &format!("{VIEW}.lines.length === 160"))
        .await;
    assert_eq!(
        b.js(
            "return document.getElementById('scroller').scrollTop",
            json!([])
        )
        .await,
        0,
        "stays put"
    );
    b.click("#jump").await;
    b.until(
        "following again",
        &format!("{VIEW}.following && document.getElementById('jump').hidden"),
    )
    .await;

    // Search: count, next.
    b.type_into("#search", "line 15").await;
    b.until(
        "matches",
        "return document.getElementById('count').textContent === '1/11'",
    )
    .await;
    b.click("#next").await;
    assert_eq!(
        b.js(
            "return document.getElementById('count').textContent",
            json!([])
        )
        .await,
        "2/11"
    );
    b.until(
        "the second match is current",
        "const r = document.querySelector('#rows .line.current'); return r && r.dataset.no === '150'",
    )
    .await;
    b.click("#prev").await;
    b.click("#prev").await;
    b.until(
        "previous wraps around to the last match",
        "const r = document.querySelector('#rows .line.current');
         return document.getElementById('count').textContent === '11/11' && r && r.dataset.no === '159'",
    )
    .await;

    // Timestamps and wrapping.
    b.js("const s = document.getElementById('ts'); s.value = 'rel'; s.dispatchEvent(new Event('change'))", json!([])).await;
    let ts = b
        .until(
            "timestamps",
            "const t = document.querySelector('#rows .ts'); return t && t.textContent",
        )
        .await;
    let ts = ts.as_str().unwrap();
    assert!(
        ts.len() == 12 && ts.trim_start().starts_with('+') && ts.ends_with('s'),
        "fixed width, right-aligned: {ts:?}"
    );
    b.js("const s = document.getElementById('ts'); s.value = 'abs'; s.dispatchEvent(new Event('change'))", json!([])).await;
    let ts = b
        .until(
            "absolute",
            "const t = document.querySelector('#rows .ts'); return t && !t.textContent.startsWith('+') && t.textContent",
        )
        .await;
    assert_eq!(ts.as_str().unwrap().len(), "12:34:56.789".len(), "{ts}");
    b.click("#wrap").await;
    assert_eq!(
        b.js(
            "return document.getElementById('scroller').classList.contains('wrap')",
            json!([])
        )
        .await,
        true
    );

    // A dropped connection (the server restarts): the viewer resumes from its last index.
    server.stop().await;
    b.until(
        "reconnecting",
        "return document.getElementById('conn').textContent === 'reconnecting…'",
    )
    .await;
    let server = TestServer::start(config);
    let c = server.client("p");
    c.append("web/1/+/log", &secret, ansi_lines(160, 170))
        .await
        .expect(200);
    c.terminate("web/1/+/log", &secret, json!({}))
        .await
        .expect(200);
    b.until(
        "complete",
        "return document.getElementById('conn').textContent === 'complete'",
    )
    .await;
    let nos = b
        .js(&format!("return {VIEW}.lines.map(l => l.no)"), json!([]))
        .await;
    assert_eq!(
        nos,
        json!((1..=170).collect::<Vec<_>>()),
        "no gap, no duplicate"
    );
    assert_eq!(
        b.js(
            "return document.getElementById('status').textContent",
            json!([])
        )
        .await,
        "terminated"
    );

    // Permalinks: #L20 selects and shows line 20; shift-click makes a range.
    b.goto(&format!("{base}/logs/p/web/1/+/log#L20")).await;
    b.until("line 20 selected", "const r = document.querySelector('#rows .line.selected'); return r && r.dataset.no === '20'").await;
    b.js(
        "const ln = [...document.querySelectorAll('#rows .line')].find(l => l.dataset.no === '25').querySelector('.ln');
         ln.dispatchEvent(new MouseEvent('click', {bubbles: true, shiftKey: true}));",
        json!([]),
    )
    .await;
    b.until("range", "return location.hash === '#L20-L25'")
        .await;
    let sel = b.until("six selected", "const s = document.querySelectorAll('#rows .line.selected'); return s.length === 6 && [...s].map(e => e.dataset.no)").await;
    assert_eq!(sel, json!(["20", "21", "22", "23", "24", "25"]));

    // A range permalink opened directly.
    b.goto("about:blank").await;
    b.goto(&format!("{base}/logs/p/web/1/+/log#L30-L32")).await;
    let sel = b
        .until(
            "range on load",
            "const s = document.querySelectorAll('#rows .line.selected'); return s.length === 3 && [...s].map(e => e.dataset.no)",
        )
        .await;
    assert_eq!(sel, json!(["30", "31", "32"]));

    // Raw download: the link gives the stream's bytes, escape codes and all.
    let raw = b
        .js_async(
            "fetch(document.getElementById('raw').href).then(r => r.text()).then(done)",
            json!([]),
        )
        .await;
    let want: String = (1..=170)
        .map(|i| {
            format!("{ESC}[1;31merror{ESC}[0m line {i} {ESC}[38;5;82mgreen{ESC}[0m {ESC}[38;2;255;128;0mtrue{ESC}[0m {ESC}[3mitalic{ESC}[0m\n")
        })
        .collect();
    assert_eq!(raw.as_str().unwrap(), want);
    // Raw download link and content negotiation.
    assert_eq!(
        b.js(
            "return document.getElementById('raw').getAttribute('href')",
            json!([])
        )
        .await,
        "/logs/p/web/1/+/log?format=raw"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn a_million_lines_stay_virtual() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("big").await;
    c.register("big/+/log", &secret, json!({}))
        .await
        .expect(201);
    // 10,000 entries of 100 lines each.
    let mut seq = 0u64;
    for chunk in 0..100u64 {
        let entries: Vec<Value> = (0..100u64)
            .map(|k| {
                let idx = chunk * 100 + k;
                let lines: Vec<String> = (0..100)
                    .map(|j| format!("row {}", idx * 100 + j + 1))
                    .collect();
                let e = json!({"stream_index": idx, "sequence": seq, "text": {"lines": lines}});
                seq += 100;
                e
            })
            .collect();
        c.append("big/+/log", &secret, Value::Array(entries))
            .await
            .expect(200);
    }
    b.goto(&format!("{base}/logs/p/big/+/log")).await;
    b.until("the tail", &format!("{VIEW} && {VIEW}.nextIndex === 10000"))
        .await;
    let (loaded, rows, last) = {
        let v = b
            .js(&format!("return [{VIEW}.lines.length, document.querySelectorAll('#rows .line').length, {VIEW}.lines[{VIEW}.lines.length - 1].no]"), json!([]))
            .await;
        (
            v[0].as_u64().unwrap(),
            v[1].as_u64().unwrap(),
            v[2].as_u64().unwrap(),
        )
    };
    assert_eq!(last, 1_000_000);
    assert_eq!(
        loaded, 200_000,
        "the viewer opened with the last 2,000 entries"
    );
    assert!(rows < 200, "the DOM holds only the visible rows: {rows}");
    // Scrolling to the top loads the older range through Get, and still only visible rows.
    b.js(
        "document.getElementById('scroller').scrollTop = 0",
        json!([]),
    )
    .await;
    b.until("older lines", &format!("{VIEW}.firstIndex === 7000"))
        .await;
    let v = b
        .js(&format!("return [{VIEW}.lines.length, document.querySelectorAll('#rows .line').length, {VIEW}.lines[0].no]"), json!([]))
        .await;
    assert_eq!(v[0], 300_000);
    assert!(v[1].as_u64().unwrap() < 200, "{v}");
    assert_eq!(v[2], 700_001);
    // A permalink deep into the log finds its entry by binary search and loads only the
    // pages around it.
    b.goto(&format!("{base}/logs/p/big/+/log#L123456")).await;
    b.until("line 123456", "const r = document.querySelector('#rows .line.selected'); return r && r.dataset.no === '123456'").await;
    let v = b
        .js(
            &format!("return [{VIEW}.lines.length, {VIEW}.firstIndex, {VIEW}.live]"),
            json!([]),
        )
        .await;
    assert!(v[0].as_u64().unwrap() <= 200_000, "{v}");
    assert_eq!(v[2], false, "the window does not reach the end: {v}");

    // Search covers the whole log: the count, and next/previous jump anywhere.
    b.goto("about:blank").await;
    b.goto(&format!("{base}/logs/p/big/+/log")).await;
    b.until("the tail", &format!("{VIEW} && {VIEW}.nextIndex === 10000"))
        .await;
    b.click("#regex").await;
    b.type_into("#search", r"^row \d+0000$").await;
    b.until(
        "the whole-log count",
        "return document.getElementById('count').textContent === '1/100'",
    )
    .await;
    // The match is shown as soon as its page arrives; the page before it follows.
    b.until("the first match", &format!("const r = document.querySelector('#rows .line.current'); return r && r.dataset.no === '10000' && {VIEW}.firstIndex === 0")).await;
    let v = b
        .js(
            &format!("return [{VIEW}.lines.length, {VIEW}.firstIndex]"),
            json!([]),
        )
        .await;
    assert!(v[0].as_u64().unwrap() <= 400_000, "{v}");
    assert_eq!(v[1], 0, "{v}");
    b.click("#next").await;
    b.until("the second match", "const r = document.querySelector('#rows .line.current'); return document.getElementById('count').textContent === '2/100' && r && r.dataset.no === '20000'").await;
    b.click("#prev").await;
    b.click("#prev").await;
    b.until("the last match, at the end", "const r = document.querySelector('#rows .line.current'); return document.getElementById('count').textContent === '100/100' && r && r.dataset.no === '1000000'").await;
    b.until("live again", &format!("{VIEW}.live")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn browser_lists_and_filters_streams() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("b/1").await;
    for (name, tag) in [("a", "x"), ("b", "y"), ("c", "x")] {
        c.register(
            &format!("b/1/+/{name}"),
            &secret,
            json!({"tags": {"k": tag}}),
        )
        .await
        .expect(201);
    }
    c.append("b/1/+/a", &secret, lines(0, 3)).await.expect(200);
    c.terminate("b/1/+/a", &secret, json!({})).await.expect(200);
    let paths = "return [...document.querySelectorAll('#streams tr')].map(r => r.dataset.path + ' ' + r.querySelector('.status').textContent + ' ' + r.querySelector('.length').textContent)";
    b.goto(&format!("{base}/?project=p")).await;
    b.until("streams", "return window.__indexReady").await;
    assert_eq!(
        b.js(paths, json!([])).await,
        json!([
            "b/1/+/a terminated 3 lines",
            "b/1/+/b streaming 0 lines",
            "b/1/+/c streaming 0 lines"
        ])
    );
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll('#prefixes li')].map(l => l.textContent)",
            json!([])
        )
        .await,
        json!(["b/1"])
    );
    // Live state: the table follows changes.
    c.append("b/1/+/b", &secret, lines(0, 5)).await.expect(200);
    b.until("live", "return [...document.querySelectorAll('#streams tr')].some(r => r.dataset.path === 'b/1/+/b' && r.querySelector('.length').textContent === '5 lines')").await;
    // Filters: tag, status, name glob.
    b.goto(&format!("{base}/?project=p&tag=k%3Dx&status=streaming"))
        .await;
    b.until("filtered", "return window.__indexReady").await;
    assert_eq!(
        b.js(paths, json!([])).await,
        json!(["b/1/+/c streaming 0 lines"])
    );
    b.goto(&format!("{base}/?project=p&name=a")).await;
    b.until("glob", "return window.__indexReady").await;
    assert_eq!(
        b.js(paths, json!([])).await,
        json!(["b/1/+/a terminated 3 lines"])
    );
    // A stream that does not exist: the viewer says so.
    b.goto(&format!("{base}/logs/p/b/1/+/missing")).await;
    let err = b
        .until(
            "the error",
            "const e = document.getElementById('error'); return !e.hidden && e.textContent",
        )
        .await;
    assert_eq!(err, "404 not_found: stream \"b/1/+/missing\" not found");
    // A path that is not a stream path (here one that would climb into another project once
    // decoded) is refused by the viewer before it makes any request with it.
    b.goto(&format!("{base}/logs/victim/..%2F..%2Fdemo%2Fx/+/s"))
        .await;
    let err = b
        .until(
            "the refusal",
            "const e = document.getElementById('error'); return !e.hidden && e.textContent",
        )
        .await;
    assert!(
        err.as_str().unwrap().starts_with("not a stream path"),
        "{err}"
    );
    assert_eq!(
        b.js(
            "return document.getElementById('title').textContent",
            json!([])
        )
        .await,
        "invalid stream path"
    );
    assert_eq!(
        b.js(
            "return performance.getEntriesByType('resource').filter(r => r.name.includes('/api/')).length",
            json!([])
        )
        .await,
        0,
        "no API request was made with the bad path"
    );
    b.goto(&format!("{base}/?project=p")).await;
    b.until("streams", "return window.__indexReady").await;
    // A stream's link opens its viewer.
    b.click("#streams a").await;
    b.until(
        "viewer",
        "return window.__viewer && window.__viewer.lines.length === 3",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn explorer_sends_a_call() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("e/1").await;
    c.register("e/1/+/s", &secret, json!({})).await.expect(201);
    b.goto(&format!("{base}/explorer")).await;
    b.until("operations", "return window.__explorerReady").await;
    let ops = b
        .js(
            "return document.querySelectorAll('#ops a').length",
            json!([]),
        )
        .await;
    assert!(ops.as_u64().unwrap() >= 20, "{ops}");
    // Paths wrap in their own column, never under their method.
    let layout = b
        .js(
            "return [...document.querySelectorAll('#ops a')].every(a => { const m = a.querySelector('.method').getBoundingClientRect(), p = a.querySelector('.op-path').getBoundingClientRect(); return p.left >= m.right && Math.abs(p.top - m.top) < 2; })",
            json!([]),
        )
        .await;
    assert_eq!(layout, json!(true));
    b.click("a[data-op='get /api/v1/projects/{project}/streams']")
        .await;
    // Descriptions are rendered: `code` becomes <code>, no backtick is left.
    let text = b
        .js(
            "const op = document.getElementById('op'); return [op.querySelectorAll('code').length, op.textContent.includes('`')]",
            json!([]),
        )
        .await;
    assert!(text[0].as_u64().unwrap() >= 1, "{text}");
    assert_eq!(text[1], json!(false), "no raw backticks");
    b.type_into("input[name='project']", "p").await;
    b.type_into("input[name='prefix']", "e/1").await;
    b.click("#send").await;
    let out = b
        .until(
            "the answer",
            "const r = document.getElementById('response'); return r.dataset.status && r.textContent",
        )
        .await;
    let out = out.as_str().unwrap();
    assert!(out.starts_with("200 OK\napplication/json"), "{out}");
    assert!(out.contains("\"path\": \"e/1/+/s\""), "{out}");
    // A call that fails shows the API's error.
    b.click("a[data-op='post /api/v1/projects/{project}/prefixes']")
        .await;
    b.type_into("input[name='project']", "p").await;
    b.js(
        "document.getElementById('body').value = JSON.stringify({prefix: 'e/1'})",
        json!([]),
    )
    .await;
    b.click("#send").await;
    let out = b
        .until(
            "the error",
            "const r = document.getElementById('response'); return r.dataset.status === '409' && r.textContent",
        )
        .await;
    assert!(out.as_str().unwrap().contains("already_exists"), "{out}");
    server.stop().await;
}

/// The SGR renderer, run in the browser on inputs covering what it claims to handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn ansi_renderer_cases() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    b.goto(&format!("{}/explorer", server.base())).await;
    let e = ESC;
    let cases: Vec<(String, &str)> = vec![
        ("plain".into(), "plain"),
        (format!("{e}[31mred{e}[0m"), "red"),
        (format!("{e}[91mbright{e}[39m"), "bright"),
        (format!("{e}[44mbg{e}[49m"), "bg"),
        (format!("{e}[38;5;196mx"), "x"),
        (format!("{e}[38;5;244mgrey"), "grey"),
        (format!("{e}[48;2;1;2;3mtc"), "tc"),
        (format!("{e}[1;3;4mall{e}[22;23;24mnone"), "allnone"),
        (format!("{e}]0;title\u{7}after"), "after"),
        (format!("{e}]8;;http://x{e}\\link{e}]8;;{e}\\"), "link"),
        (format!("{e}[2K{e}[1Gcleared"), "cleared"),
        ("a\rb\u{8}c".into(), "abc"),
        (format!("{e}[mreset"), "reset"),
    ];
    let inputs: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let got = b
        .js_async(
            "const inputs = arguments[0];
             import('/static/ansi.js').then(a => done(inputs.map(input => {
               const p = a.parse(input);
               return [p.runs.map(r => r.text).join(''), p.runs.map(r => Object.assign({}, r.style))];
             })));",
            json!([inputs]),
        )
        .await;
    let texts: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    let want: Vec<&str> = cases.iter().map(|c| c.1).collect();
    assert_eq!(texts, want, "no escape code reaches the screen");
    let style = |i: usize, run: usize| got[i][1][run].clone();
    assert_eq!(style(1, 0), json!({"fg": "#cd3131"}));
    assert_eq!(style(2, 0), json!({"fg": "#f14c4c"}));
    assert_eq!(style(3, 0), json!({"bg": "#2472c8"}));
    assert_eq!(style(4, 0), json!({"fg": "rgb(255,0,0)"}));
    assert_eq!(style(5, 0), json!({"fg": "rgb(128,128,128)"}));
    assert_eq!(style(6, 0), json!({"bg": "rgb(1,2,3)"}));
    assert_eq!(
        style(7, 0),
        json!({"bold": true, "italic": true, "underline": true})
    );
    assert_eq!(style(7, 1), json!({}));
    // The style carries into the next line, as in a terminal.
    let carried = b
        .js_async(
            "const first = arguments[0];
             import('/static/ansi.js').then(a => {
               const p = a.parse(first);
               done(a.parse('still green', p.style).runs[0].style.fg);
             });",
            json!([format!("{e}[32mgreen starts")]),
        )
        .await;
    assert_eq!(carried, "#0dbc79");
    server.stop().await;
}

/// The browser's processes live in ChromeDriver's process group, and none is left once the
/// session ends — neither after `quit` nor after a drop (a test that panics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn no_browser_outlives_its_test() {
    for quit in [true, false] {
        let b = browser().await;
        b.goto("about:blank").await;
        let processes = b.processes();
        let chromium = processes
            .iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim().starts_with("chrom") && c.trim() != "chromedriver")
            })
            .count();
        assert!(
            chromium >= 2,
            "the browser's processes are found: {processes:?}"
        );
        if quit {
            b.quit().await;
        } else {
            drop(b);
        }
        let left: Vec<i32> = processes
            .into_iter()
            .filter(|pid| webdriver::is_alive(*pid))
            .collect();
        assert_eq!(left, Vec::<i32>::new(), "nothing survives");
    }
}

/// `logdog stream`'s run in the run view: stdout and stderr interleaved by time, each line
/// marked by its stream, either hideable; the header holds the command, the times and the
/// exit code; the breadcrumb links the project, the prefix and the run; each stream's own
/// viewer shows the same header with a link back to the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn a_run_on_one_page() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let script = "echo out 1; sleep 0.3; echo err 1 >&2; sleep 0.3; echo out 2; sleep 0.3; echo err 2 >&2; exit 3";
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_logdog"))
        .args([
            "stream",
            "--project",
            "p",
            "--prefix",
            "ci/7",
            "--quiet",
            "--flush-interval",
            "0.05",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("LOGDOG_COORDINATOR", &base)
        .env_remove("LOGDOG_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap();
    assert_eq!(
        first,
        format!("logdog: run: {base}/logs/p/ci/7/+/run"),
        "the run view comes first"
    );
    b.goto(&format!("{base}/logs/p/ci/7/+/run")).await;
    b.until(
        "the run",
        &format!("{VIEW}.run && {VIEW}.lines.length === 4"),
    )
    .await;
    b.until(
        "drawn",
        "document.querySelectorAll('#rows .line').length === 4",
    )
    .await;
    let rows = "return [...document.querySelectorAll('#rows .line')].map(r => r.querySelector('.src').textContent + ' ' + r.querySelector('.tx').textContent)";
    assert_eq!(
        b.js(rows, json!([])).await,
        json!([
            "stdout out 1",
            "stderr err 1",
            "stdout out 2",
            "stderr err 2"
        ]),
        "interleaved by time"
    );
    let header = b
        .until(
            "the header",
            "const r = document.querySelector('#run .run-exit'); return r && r.dataset.code !== undefined && document.getElementById('run').textContent",
        )
        .await;
    let header = header.as_str().unwrap();
    assert!(header.contains(&format!("$ sh -c '{script}'")), "{header}");
    assert!(header.contains("exit code 3"), "{header}");
    assert!(
        header.contains("started ") && header.contains("ended "),
        "{header}"
    );
    // Hide stderr, then stdout.
    b.click("#sources input[data-src='stderr']").await;
    // The rows are drawn after the model changes: wait for both.
    b.until(
        "stdout only",
        &format!("{VIEW}.lines.length === 2 && document.querySelectorAll('#rows .line').length === 2 && [...document.querySelectorAll('#rows .line .src')].every(s => s.textContent === 'stdout')"),
    )
    .await;
    assert_eq!(
        b.js(rows, json!([])).await,
        json!(["stdout out 1", "stdout out 2"])
    );
    b.click("#sources input[data-src='stderr']").await;
    b.click("#sources input[data-src='stdout']").await;
    b.until(
        "stderr only",
        &format!("{VIEW}.lines.length === 2 && {VIEW}.lines[0].src.name === 'stderr' && document.querySelectorAll('#rows .line').length === 2 && [...document.querySelectorAll('#rows .line .src')].every(s => s.textContent === 'stderr')"),
    )
    .await;
    // Relative times keep one width.
    b.js("const s = document.getElementById('ts'); s.value = 'rel'; s.dispatchEvent(new Event('change'))", json!([]))
        .await;
    b.until(
        "times",
        "document.querySelectorAll('#rows .ts').length === 2",
    )
    .await;
    let widths = b
        .js(
            "return [...document.querySelectorAll('#rows .ts')].map(t => t.getBoundingClientRect().width)",
            json!([]),
        )
        .await;
    assert_eq!(widths[0], widths[1], "{widths}");
    // The breadcrumb's parts are links.
    let crumbs = b
        .js(
            "return [...document.querySelectorAll('#title a')].map(a => a.textContent + ' ' + new URL(a.href).pathname + new URL(a.href).search)",
            json!([]),
        )
        .await;
    assert_eq!(
        crumbs,
        json!([
            "p /?project=p",
            "ci /?project=p&prefix=ci",
            "7 /?project=p&prefix=ci%2F7"
        ])
    );
    // A line number opens the line in its own stream.
    let href = b
        .js(
            "return document.querySelector('#rows .line .ln').getAttribute('href')",
            json!([]),
        )
        .await;
    assert_eq!(href, "/logs/p/ci/7/+/run/stderr#L1");
    // The stream viewer shows the run's header and links back.
    b.goto(&format!("{base}/logs/p/ci/7/+/run/stdout")).await;
    let header = b
        .until(
            "the stream's run header",
            "const r = document.querySelector('#run .run-exit'); return r && r.dataset.code && document.getElementById('run').textContent",
        )
        .await;
    assert!(header.as_str().unwrap().contains("exit code 3"), "{header}");
    let crumbs = b
        .js(
            "return [...document.querySelectorAll('#title a')].map(a => new URL(a.href).pathname)",
            json!([]),
        )
        .await;
    assert_eq!(crumbs[3], "/logs/p/ci/7/+/run", "{crumbs}");
    let link = b
        .js(
            "return document.querySelector('#run .run-link').getAttribute('href')",
            json!([]),
        )
        .await;
    assert_eq!(link, "/logs/p/ci/7/+/run");
    // Nothing below: no "Jump to latest".
    assert_eq!(
        b.js("return document.getElementById('jump').hidden", json!([]))
            .await,
        json!(true)
    );
    // A path that is neither a stream nor a run: the error, no "loading" badge.
    b.goto(&format!("{base}/logs/p/ci/7/+/nothing")).await;
    b.until("the 404", "!document.getElementById('error').hidden")
        .await;
    assert_eq!(
        b.js("return document.getElementById('status').hidden", json!([]))
            .await,
        json!(true)
    );
    b.quit().await;
    server.stop().await;
}

/// Saves a screenshot for the docs when `LOGDOG_SCREENSHOTS` names a directory.
async fn screenshot(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("LOGDOG_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), b.screenshot().await).unwrap();
    }
}

/// A CI job's log: GitLab sections (one collapsed, one expanded holding a collapsed one)
/// and a GitHub Actions group.
fn job_log() -> Vec<String> {
    let gl = |kind: &str, ts: u64, name: &str, rest: &str| {
        format!("{ESC}[0Ksection_{kind}:{ts}:{name}\r{ESC}[0K{rest}")
    };
    let mut l = vec!["Running with gitlab-runner".to_owned()];
    l.push(gl(
        "start",
        1_700_000_000,
        "build[collapsed=true]",
        &format!("{ESC}[36;1mBuild step{ESC}[0;m"),
    ));
    l.extend((1..=50).map(|i| format!("compiling {i}")));
    l.push(gl("end", 1_700_000_004, "build", ""));
    l.push(gl("start", 1_700_000_005, "test", "Tests"));
    l.extend((1..=5).map(|i| format!("ok {i}")));
    l.push(gl("start", 1_700_000_006, "inner[collapsed=true]", "Inner"));
    l.extend((1..=3).map(|i| format!("inner {i}")));
    l.push(gl("end", 1_700_000_008, "inner", ""));
    l.push(gl("end", 1_700_000_069, "test", ""));
    l.extend([
        "::group::Lint".to_owned(),
        "eslint .".to_owned(),
        "::endgroup::".to_owned(),
        "done".to_owned(),
    ]);
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn sections_fold_in_a_real_browser() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("ci/7").await;
    c.register("ci/7/+/job", &secret, json!({}))
        .await
        .expect(201);
    let log = job_log();
    c.append(
        "ci/7/+/job",
        &secret,
        json!([{"stream_index": 0, "text": {"lines": log}}]),
    )
    .await
    .expect(200);
    c.terminate("ci/7/+/job", &secret, json!({}))
        .await
        .expect(200);
    let no = |text: &str| log.iter().position(|l| l == text).unwrap() + 1;

    b.goto(&format!("{base}/logs/p/ci/7/+/job")).await;
    b.until(
        "the outline",
        &format!("{VIEW} && {VIEW}.sections.length === 4 && document.querySelectorAll('#rows .line.section').length === 4"),
    )
    .await;
    // Headers: titles without markers, folded or not as the markup says, durations.
    let headers = b
        .js(
            "return [...document.querySelectorAll('#rows .line.section')].map(r =>
               [r.dataset.no, r.querySelector('.title').textContent, r.classList.contains('collapsed'),
                (r.querySelector('.dur') || {}).textContent || null])",
            json!([]),
        )
        .await;
    assert_eq!(
        headers,
        json!([
            ["2", "Build step", true, "4.0s"],
            ["54", "Tests", false, "1m 04s"],
            ["60", "Inner", true, "2.0s"],
            ["66", "Lint", true, "0.0s"]
        ])
    );
    let shown = "return [...document.querySelectorAll('#rows .line')].map(r => r.dataset.no)";
    let visible: Vec<String> = serde_json::from_value(b.js(shown, json!([])).await).unwrap();
    let want: Vec<String> = [1, 2, 54, 55, 56, 57, 58, 59, 60, 66, 69]
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(visible, want, "folded lines and end markers are not shown");
    let text = b
        .js(
            "return document.getElementById('rows').textContent",
            json!([]),
        )
        .await;
    let text = text.as_str().unwrap();
    for raw in [
        "section_start",
        "section_end",
        "::group::",
        "::endgroup::",
        "\r",
    ] {
        assert!(!text.contains(raw), "{raw:?} shown: {text:?}");
    }
    // The outline panel lists the sections, nested.
    let outline = b
        .js(
            "return [...document.querySelectorAll('#outline li')].map(li => [li.querySelector('a').textContent, li.style.paddingLeft])",
            json!([]),
        )
        .await;
    assert_eq!(
        outline,
        json!([
            ["Build step", "4px"],
            ["Tests", "4px"],
            ["Inner", "18px"],
            ["Lint", "4px"]
        ])
    );
    assert_eq!(
        b.js(
            "return document.getElementById('outline').hidden",
            json!([])
        )
        .await,
        false
    );
    screenshot(&b, "viewer-sections").await;

    // Unfolding and folding again.
    b.click("#rows .line.section[data-no='2'] .title").await;
    b.until(
        "build unfolded",
        "return [...document.querySelectorAll('#rows .line')].some(r => r.dataset.no === '3')",
    )
    .await;
    assert_eq!(
        b.js(
            "return document.querySelector(\"#rows .line[data-no='2'] .fold\").textContent",
            json!([])
        )
        .await,
        "▾"
    );
    b.click("#rows .line.section[data-no='2'] .title").await;
    b.until(
        "build folded",
        "return ![...document.querySelectorAll('#rows .line')].some(r => r.dataset.no === '3')",
    )
    .await;

    // A permalink inside a folded section opens it (and only what holds the line).
    let inner2 = no("inner 2");
    b.goto("about:blank").await;
    b.goto(&format!("{base}/logs/p/ci/7/+/job#L{inner2}")).await;
    b.until(
        "the line, its section open",
        &format!("const r = document.querySelector('#rows .line.selected'); return r && r.dataset.no === '{inner2}'"),
    )
    .await;
    let folds = b
        .js(
            "return [...document.querySelectorAll('#rows .line.section')].map(r => [r.dataset.no, r.classList.contains('collapsed')])",
            json!([]),
        )
        .await;
    assert_eq!(
        folds,
        json!([["2", true], ["54", false], ["60", false], ["66", true]])
    );

    // A group still running at the end of a live log stays open; once it ends (and the
    // log with it) it folds as GitHub groups do.
    c.register("ci/7/+/live", &secret, json!({}))
        .await
        .expect(201);
    c.append(
        "ci/7/+/live",
        &secret,
        json!([{"stream_index": 0, "text": {"lines": ["start", "::group::Running", "step 1"]}}]),
    )
    .await
    .expect(200);
    b.goto("about:blank").await;
    b.goto(&format!("{base}/logs/p/ci/7/+/live")).await;
    b.until(
        "the running group, open",
        "const h = document.querySelector(\"#rows .line.section[data-no='2']\");
         return h && h.classList.contains('expanded') && h.querySelector('.dur').textContent === 'running'
           && [...document.querySelectorAll('#rows .line')].some(r => r.dataset.no === '3')",
    )
    .await;
    c.append(
        "ci/7/+/live",
        &secret,
        json!([{"stream_index": 1, "text": {"lines": ["step 2", "::endgroup::", "after"]}}]),
    )
    .await
    .expect(200);
    c.terminate("ci/7/+/live", &secret, json!({}))
        .await
        .expect(200);
    b.until(
        "the ended group, folded",
        "const h = document.querySelector(\"#rows .line.section[data-no='2']\");
         const nos = [...document.querySelectorAll('#rows .line')].map(r => r.dataset.no);
         return h && h.classList.contains('collapsed') && nos.join(',') === '1,2,6'",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(logdog_browser), ignore = "needs chromium and chromium-driver")]
async fn a_build_searched_in_the_browser() {
    let b = browser().await;
    let db = TestDb::sqlite();
    let server = TestServer::start(db.config());
    let base = server.base();
    let c = server.client("p");
    let secret = c.prefix("b/9").await;
    for (name, log) in [
        ("compile", vec!["cc a.c", "error: a.c:3: bad", "ok"]),
        ("lint", vec!["clean"]),
        (
            "test",
            vec!["test 1 ok", "test 2 \u{1b}[31mERROR\u{1b}[0m", "done"],
        ),
    ] {
        let path = format!("b/9/+/{name}");
        c.register(&path, &secret, json!({})).await.expect(201);
        c.append(
            &path,
            &secret,
            json!([{"stream_index": 0, "text": {"lines": log}}]),
        )
        .await
        .expect(200);
    }
    let results = "return window.__searchDone && [document.getElementById('results-summary').textContent,
        [...document.querySelectorAll('.result-stream')].map(g => [g.dataset.path,
          [...g.querySelectorAll('.result-line')].map(r => [r.querySelector('.ln').textContent, r.querySelector('.tx').textContent])])]";

    // Typed into the form: case ignored by default.
    b.goto(&format!("{base}/?project=p&prefix=b/9")).await;
    b.until("the page", "return window.__indexReady").await;
    b.type_into("#f-q", "error").await;
    b.click("#filters button[type=submit]").await;
    let got = b.until("the matches", results).await;
    assert_eq!(
        got,
        json!([
            "2 matches in 2 streams (b/9: “error”)",
            [
                ["b/9/+/compile", [["2", "error: a.c:3: bad"]]],
                ["b/9/+/test", [["2", "test 2 ERROR"]]]
            ]
        ])
    );
    assert_eq!(
        b.js("return location.search", json!([])).await,
        "?project=p&prefix=b%2F9&q=error"
    );
    screenshot(&b, "build-search").await;

    // Matching case, from the URL.
    b.goto(&format!("{base}/?project=p&prefix=b/9&q=ERROR&case=1"))
        .await;
    let got = b.until("the matches", results).await;
    assert_eq!(got[1], json!([["b/9/+/test", [["2", "test 2 ERROR"]]]]));

    // A match opens its line in the viewer.
    b.click(".result-stream[data-path='b/9/+/test'] .ln").await;
    b.until(
        "the line in the viewer",
        "const r = document.querySelector('#rows .line.selected'); return location.pathname === '/logs/p/b/9/+/test' && r && r.dataset.no === '2'",
    )
    .await;
    server.stop().await;
}

//! Search on the server (`GET …/search/{prefix}/+/{name}` and `GET …/search?prefix=`):
//! literal and regex, case, lines joined over partial pieces with ANSI codes removed,
//! paging by `limit` and by the time budget giving exactly the matches of one search,
//! the same answers before and after archival, and a prefix searched stream by stream.

use serde_json::{json, Value};

use crate::archivist::{archived, archiving};
use crate::both;
use crate::common::*;

/// GET …/{route}?{params} (parameters URL-encoded).
async fn get(c: &Client, route: &str, params: &[(&str, &str)]) -> Answer {
    let mut url = reqwest::Url::parse(&c.url(route)).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    c.raw(reqwest::Method::GET, url.as_str(), None, None, vec![])
        .await
}

/// The matches of one answer as (stream_index, line, text).
fn found(v: &Value) -> Vec<(u64, u64, String)> {
    v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["stream_index"].as_u64().unwrap(),
                m["line"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every match of a search from entry `from`, asked page after page from `next_index`
/// until `more` is false; also the number of pages.
async fn all_pages(
    c: &Client,
    path: &str,
    params: &[(&str, &str)],
    mut from: u64,
) -> (Vec<(u64, u64, String)>, usize) {
    let (mut all, mut pages) = (Vec::new(), 0);
    loop {
        let f = from.to_string();
        let mut p = params.to_vec();
        p.push(("from", &f));
        let v = get(c, &format!("search/{path}"), &p)
            .await
            .expect(200)
            .clone();
        pages += 1;
        assert!(pages < 1000, "no end: {v}");
        all.extend(found(&v));
        let next = v["next_index"].as_u64().unwrap();
        if v["more"] == false {
            return (all, pages);
        }
        assert!(next > from, "{v}");
        from = next;
    }
}

/// Bulk lines: entry 3 + k holds lines `row {n} …`, every 97th a needle.
const BULK_ENTRIES: u64 = 100;
const BULK_LINES: u64 = 10;

fn row(n: u64) -> String {
    if n.is_multiple_of(97) {
        format!("row {n} \u{1b}[1mNeedle\u{1b}[0m found")
    } else {
        format!("row {n} ok")
    }
}

/// The entries: colour codes, a line split over two entries, bulk rows, and a last line
/// without a delimiter.
fn entries() -> Value {
    let mut e = vec![
        json!({"stream_index": 0, "text": {"lines": [
            "alpha one", "Beta two", "\u{1b}[31merror:\u{1b}[0m red",
        ]}}),
        json!({"stream_index": 1, "text": {"lines": [
            {"value": "split err", "delimiter": ""},
        ]}}),
        json!({"stream_index": 2, "text": {"lines": ["or here", "gamma"]}}),
    ];
    for k in 0..BULK_ENTRIES {
        let lines: Vec<String> = (0..BULK_LINES).map(|i| row(k * BULK_LINES + i)).collect();
        e.push(json!({"stream_index": 3 + k, "text": {"lines": lines}}));
    }
    e.push(json!({"stream_index": 3 + BULK_ENTRIES, "text": {"lines": [
        {"value": "final error", "delimiter": ""},
    ]}}));
    Value::Array(e)
}

/// Line numbers are the entries' (`sequence` + position): entry 0 holds lines 0–2, the
/// split line is 3 (its pieces count one each: entry 2 starts at 4), `gamma` is 5, then
/// row n is line 6 + n.
fn needles() -> Vec<(u64, u64, String)> {
    (0..BULK_ENTRIES * BULK_LINES)
        .filter(|n| n.is_multiple_of(97))
        .map(|n| (3 + n / BULK_LINES, 6 + n, format!("row {n} Needle found")))
        .collect()
}

async fn one_stream_before_and_after_archival(db: TestDb) {
    let server = TestServer::start(archiving(&db, true));
    let c = server.client("p");
    let secret = c.prefix("s").await;
    c.register("s/+/log", &secret, json!({})).await.expect(201);
    c.append("s/+/log", &secret, entries()).await.expect(200);
    let last_line = 6 + BULK_ENTRIES * BULK_LINES;
    let last_index = 3 + BULK_ENTRIES;

    // Live: the split line is joined, colour codes are gone; the last line has no
    // delimiter yet, so it is not a line: the search resumes before it.
    let v = get(&c, "search/s/+/log", &[("q", "error")])
        .await
        .expect(200)
        .clone();
    assert_eq!(v["project"], "p");
    assert_eq!(v["path"], "s/+/log");
    assert_eq!(
        found(&v),
        vec![
            (0, 2, "error: red".to_owned()),
            (1, 3, "split error here".to_owned())
        ]
    );
    assert_eq!(v["next_index"], last_index);
    assert_eq!(v["more"], false);
    // From where it stopped, later: nothing new yet.
    let again = get(
        &c,
        "search/s/+/log",
        &[("q", "error"), ("from", &last_index.to_string())],
    )
    .await
    .expect(200)
    .clone();
    assert_eq!(found(&again), vec![]);
    assert_eq!(again["next_index"], last_index);

    // Case: exact by default, ignored with case=false.
    let exact = get(&c, "search/s/+/log", &[("q", "needle")]).await;
    assert_eq!(found(exact.expect(200)), vec![]);
    let loose = get(
        &c,
        "search/s/+/log",
        &[("q", "NEEDLE"), ("case", "false"), ("limit", "10000")],
    )
    .await;
    assert_eq!(found(loose.expect(200)), needles());
    // A regex, over the text as shown (the bold codes are gone).
    let re = get(
        &c,
        "search/s/+/log",
        &[("q", r"^row \d+ Needle found$"), ("regex", "true")],
    )
    .await;
    assert_eq!(found(re.expect(200)), needles());
    // A literal is not a regex.
    let lit = get(&c, "search/s/+/log", &[("q", r"row \d+")]).await;
    assert_eq!(found(lit.expect(200)), vec![]);

    // Paging by limit gives exactly the whole answer.
    let (paged, pages) = all_pages(&c, "s/+/log", &[("q", "Needle"), ("limit", "3")], 0).await;
    assert_eq!(paged, needles());
    assert_eq!(pages, needles().len().div_ceil(3));
    let first = get(&c, "search/s/+/log", &[("q", "Needle"), ("limit", "3")])
        .await
        .expect(200)
        .clone();
    assert_eq!(first["more"], true);
    assert_eq!(found(&first), needles()[..3].to_vec());
    assert_eq!(first["next_index"], needles()[2].0 + 1);
    // And paging by a 1 ms budget too.
    let (timed, _) = all_pages(
        &c,
        "s/+/log",
        &[("q", r"Needle|error"), ("regex", "true"), ("max_ms", "1")],
        0,
    )
    .await;
    let mut want = vec![
        (0, 2, "error: red".to_owned()),
        (1, 3, "split error here".to_owned()),
    ];
    want.extend(needles());
    assert_eq!(timed, want);

    // Refusals.
    let paren = get(&c, "search/s/+/log", &[("q", "(")]).await;
    assert_eq!(found(paren.expect(200)), vec![]);
    get(&c, "search/s/+/log", &[("q", "(x"), ("regex", "true")])
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "search/s/+/log", &[("q", "")])
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "search/s/+/log", &[])
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "search/s/+/log", &[("q", "x"), ("limit", "0")])
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "search/s/+/log", &[("q", "x"), ("max_ms", "10001")])
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "search/s/+/log", &[("q", "x"), ("colour", "1")])
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "search/s/+/nope", &[("q", "x")])
        .await
        .expect_error(404, "not_found");

    // Terminated: the last line is a line now.
    c.terminate("s/+/log", &secret, json!({})).await.expect(200);
    let done = get(&c, "search/s/+/log", &[("q", "error")])
        .await
        .expect(200)
        .clone();
    assert_eq!(
        found(&done),
        vec![
            (0, 2, "error: red".to_owned()),
            (1, 3, "split error here".to_owned()),
            (last_index, last_line, "final error".to_owned()),
        ]
    );
    assert_eq!(done["next_index"], last_index + 1);
    assert_eq!(done["more"], false);

    // Archived: the same answers from the archive.
    let queries: Vec<Vec<(&str, &str)>> = vec![
        vec![("q", "error")],
        vec![("q", "NEEDLE"), ("case", "false"), ("limit", "10000")],
        vec![("q", "Needle"), ("limit", "3"), ("from", "20")],
        vec![("q", r"^(alpha|gamma)"), ("regex", "true")],
    ];
    let mut before = Vec::new();
    for q in &queries {
        before.push(get(&c, "search/s/+/log", q).await.expect(200).clone());
    }
    archived(&c, "s/+/log", &["complete"]).await;
    assert!(stored_entries(&db.url, "p", "s/+/log").is_empty());
    for (q, want) in queries.iter().zip(&before) {
        let after = get(&c, "search/s/+/log", q).await.expect(200).clone();
        assert_eq!(&after, want, "{q:?}");
    }
    assert_eq!(
        found(&before[3]),
        vec![(0, 0, "alpha one".to_owned()), (2, 5, "gamma".to_owned())]
    );
    let (timed_after, _) = all_pages(
        &c,
        "s/+/log",
        &[("q", r"Needle|error"), ("regex", "true"), ("max_ms", "1")],
        0,
    )
    .await;
    want.push((last_index, last_line, "final error".to_owned()));
    assert_eq!(timed_after, want);
    server.stop().await;
}
both!(one_stream_before_and_after_archival);

/// The matches of a prefix answer as (path, stream_index, text).
fn by_stream(v: &Value) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for s in v["streams"].as_array().unwrap() {
        let m = s["matches"].as_array().unwrap();
        assert!(!m.is_empty(), "a stream listed without matches: {v}");
        for x in m {
            out.push((
                s["path"].as_str().unwrap().to_owned(),
                x["stream_index"].as_u64().unwrap(),
                x["text"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

async fn a_prefix_searched_stream_by_stream(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("b").await;
    let other = c.prefix("other").await;
    // Four text streams (one without matches), a binary one holding the word, and a
    // stream of another prefix.
    for name in ["compile", "lint", "test", "upload"] {
        let path = format!("b/+/{name}");
        c.register(&path, &secret, json!({})).await.expect(201);
        let entries: Vec<Value> = (0..5u64)
            .map(|i| {
                let line = if name == "lint" {
                    format!("{name} {i} clean")
                } else {
                    format!("{name} {i} FAILED")
                };
                json!({"stream_index": i, "text": {"lines": [line]}})
            })
            .collect();
        c.append(&path, &secret, Value::Array(entries))
            .await
            .expect(200);
    }
    c.register("b/+/bin", &secret, json!({"stream_type": "binary"}))
        .await
        .expect(201);
    c.append(
        "b/+/bin",
        &secret,
        json!([{"stream_index": 0, "binary": {"data": "RkFJTEVE"}}]),
    )
    .await
    .expect(200);
    c.register("other/+/x", &other, json!({})).await.expect(201);
    c.append(
        "other/+/x",
        &other,
        json!([{"stream_index": 0, "text": {"lines": ["FAILED"]}}]),
    )
    .await
    .expect(200);

    let mut want = Vec::new();
    for name in ["compile", "test", "upload"] {
        for i in 0..5u64 {
            want.push((format!("b/+/{name}"), i, format!("{name} {i} FAILED")));
        }
    }
    let whole = get(&c, "search", &[("prefix", "b"), ("q", "FAILED")])
        .await
        .expect(200)
        .clone();
    assert_eq!(whole["project"], "p");
    assert_eq!(whole["prefix"], "b");
    assert_eq!(by_stream(&whole), want);
    assert_eq!(whole["streams_searched"], 4);
    assert_eq!(whole.get("next_cursor"), None, "{whole}");
    assert_eq!(whole["streams"][0]["matches"][0]["line"], 0);
    assert_eq!(whole["streams"][0]["matches"][4]["line"], 4);

    // Pages of 4 matches: the cursor goes on inside a stream and after it.
    let (mut paged, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut p = vec![("prefix", "b"), ("q", "failed"), ("case", "false")];
        p.push(("limit", "4"));
        if let Some(c) = &cursor {
            p.push(("cursor", c));
        }
        let v = get(&c, "search", &p).await.expect(200).clone();
        pages += 1;
        assert!(pages < 20, "{v}");
        let got = by_stream(&v);
        assert!(got.len() <= 4, "{v}");
        paged.extend(got);
        match v.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, want);
    assert!(pages >= 4, "{pages}");

    // Refusals: no prefix, a bad prefix, a cursor of another prefix, a bad cursor.
    get(&c, "search", &[("q", "x")])
        .await
        .expect_error(400, "invalid_argument");
    get(&c, "search", &[("prefix", "b/../c"), ("q", "x")])
        .await
        .expect_error(400, "invalid_argument");
    let first = get(
        &c,
        "search",
        &[("prefix", "b"), ("q", "FAILED"), ("limit", "2")],
    )
    .await
    .expect(200)
    .clone();
    let cursor = first["next_cursor"].as_str().unwrap();
    get(
        &c,
        "search",
        &[("prefix", "other"), ("q", "FAILED"), ("cursor", cursor)],
    )
    .await
    .expect_error(400, "invalid_argument");
    get(
        &c,
        "search",
        &[("prefix", "b"), ("q", "FAILED"), ("cursor", "!!")],
    )
    .await
    .expect_error(400, "invalid_argument");
    server.stop().await;
}
both!(a_prefix_searched_stream_by_stream);

/// A search that cannot finish in its time budget stops on it, says where to go on, and
/// its pages joined are the whole answer.
async fn a_slow_search_stops_on_its_budget(db: TestDb) {
    let server = TestServer::start(db.config());
    let c = server.client("p");
    let secret = c.prefix("slow").await;
    c.register("slow/+/log", &secret, json!({}))
        .await
        .expect(201);
    // 2,000 entries of 50 lines; a needle at the end of every 999th line.
    const ENTRIES: u64 = 2000;
    for batch in 0..ENTRIES / 500 {
        let entries: Vec<Value> = (batch * 500..(batch + 1) * 500)
            .map(|i| {
                let lines: Vec<String> = (0..50)
                    .map(|j| {
                        let n = i * 50 + j;
                        if n % 999 == 0 {
                            format!("line {n} with some words and a needle")
                        } else {
                            format!("line {n} with some words and no pin")
                        }
                    })
                    .collect();
                json!({"stream_index": i, "text": {"lines": lines}})
            })
            .collect();
        c.append("slow/+/log", &secret, Value::Array(entries))
            .await
            .expect(200);
    }
    let re = r"^(\w+\s)+needle$";
    let whole = get(
        &c,
        "search/slow/+/log",
        &[
            ("q", re),
            ("regex", "true"),
            ("max_ms", "10000"),
            ("limit", "10000"),
        ],
    )
    .await
    .expect(200)
    .clone();
    assert_eq!(whole["more"], false, "{whole}");
    assert_eq!(whole["next_index"], ENTRIES);
    let want = found(&whole);
    assert_eq!(want.len() as u64, (ENTRIES * 50).div_ceil(999));
    // A millisecond is less than reading the first page takes: the first answer stops
    // on the budget after at least one entry.
    let first = get(
        &c,
        "search/slow/+/log",
        &[("q", re), ("regex", "true"), ("max_ms", "1")],
    )
    .await
    .expect(200)
    .clone();
    assert_eq!(first["more"], true, "{first}");
    let next = first["next_index"].as_u64().unwrap();
    assert!((1..ENTRIES).contains(&next), "{first}");
    // Going on from there (with a budget it can finish in), the pages joined are the
    // whole answer.
    let mut paged = found(&first);
    let params = [
        ("q", re),
        ("regex", "true"),
        ("max_ms", "10000"),
        ("limit", "10000"),
    ];
    paged.extend(all_pages(&c, "slow/+/log", &params, next).await.0);
    assert_eq!(paged, want);
    server.stop().await;
}
both!(a_slow_search_stops_on_its_budget);

//! Cluster mode: real `logdog serve` processes on loopback ports over one fresh PostgreSQL
//! database.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, metric_at, serve_command, Client, Node, TestDb};
use crate::postgres_only;

const SECRET: &str = "cluster-test-secret-0123456789";

/// `logdog serve` in cluster mode (a short heartbeat and node timeout), advertising
/// `advertise_port`.
fn serve(database: &str, port: u16, advertise_port: u16) -> Command {
    let mut c = serve_command(database, port);
    c.env(
        "LOGDOG_CLUSTER_ADVERTISE",
        format!("http://127.0.0.1:{advertise_port}"),
    )
    .env("LOGDOG_CLUSTER_SECRET", SECRET)
    .env("LOGDOG_CLUSTER_HEARTBEAT_INTERVAL", "0.2")
    .env("LOGDOG_CLUSTER_NODE_TIMEOUT", "1");
    c
}

/// A node on `port` (advertising it) with more environment variables (config keys),
/// once it is ready.
async fn start_node(db: &TestDb, port: u16, env: &[(&str, String)]) -> Node {
    let mut c = serve(&db.url, port, port);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    Node::spawn(c, None).await
}

/// A node's view of the cluster.
trait ClusterView {
    async fn cluster(&self) -> Value;
}

impl ClusterView for Node {
    async fn cluster(&self) -> Value {
        let c = Client::new(&self.base(), "p");
        let r = c
            .http
            .get(format!("{}/api/v1/cluster", self.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.json().await.unwrap()
    }
}

/// Appends `entries` through `client` until acknowledged, retrying each 503 (the owner
/// is changing) after 50 ms; any other answer, or no acknowledgement `within_secs` after
/// `since`, fails the test. The acknowledgement's body.
async fn append_until_acked(
    client: &Client,
    path: &str,
    secret: &str,
    entries: Value,
    since: Instant,
    within_secs: u64,
) -> Value {
    loop {
        let a = client.append(path, secret, entries.clone()).await;
        if a.status == 200 {
            return a.body;
        }
        assert_eq!(a.status, 503, "{path}: {:?}", a.body);
        assert!(
            since.elapsed() < Duration::from_secs(within_secs),
            "{path}: not writable through {} within {within_secs} s",
            client.base
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three nodes on free ports with `env` (config keys): their ports, the nodes, and a
/// client of project `p` for each.
async fn three_nodes(db: &TestDb, env: &[(&str, String)]) -> ([u16; 3], Vec<Node>, Vec<Client>) {
    let ports = [free_port(), free_port(), free_port()];
    let mut nodes = Vec::new();
    for p in ports {
        nodes.push(start_node(db, p, env).await);
    }
    let clients = nodes.iter().map(|n| Client::new(&n.base(), "p")).collect();
    (ports, nodes, clients)
}

/// The states of the nodes `node` lists, by advertise URL's port, sorted.
fn states(cluster: &Value) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let port = n["advertise"].as_str().unwrap().rsplit(':').next().unwrap();
            (
                port.parse().unwrap(),
                n["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Polls `node`'s view until it equals `want` (sorted by port); panics after 10 s.
async fn until_states(node: &Node, want: &[(u16, &str)]) -> Value {
    let mut want: Vec<(u16, String)> = want.iter().map(|(p, s)| (*p, s.to_string())).collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = node.cluster().await;
        if states(&c) == want {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{} never saw {want:?}: {c}",
            node.port
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three nodes see each other live; a node killed with SIGKILL is dead within the node
/// timeout; one stopped with SIGTERM has left; a node restarted with its advertise URL
/// replaces its old row; a second process cannot take a live node's advertise URL.
async fn membership(db: TestDb) {
    let (ports, mut nodes, _) = three_nodes(&db, &[]).await;
    let all_live: Vec<(u16, &str)> = ports.iter().map(|p| (*p, "live")).collect();
    for n in &nodes {
        let c = until_states(n, &all_live).await;
        // The answering node names itself, one of the rows.
        let me = c["node_id"].as_str().unwrap();
        let mine: Vec<&Value> = c["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["node_id"] == me)
            .collect();
        assert_eq!(mine.len(), 1, "{c}");
        assert_eq!(mine[0]["advertise"], n.base());
        assert_eq!(c["node_timeout"], 1.0);
        assert!(mine[0]["heartbeat_age_ms"].as_i64().unwrap() < 1000, "{c}");
    }
    // A second process with node 0's advertise URL is refused while node 0 lives.
    let dup = serve(&db.url, free_port(), ports[0])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        err.contains("already advertises") && err.contains(&ports[0].to_string()),
        "{err}"
    );

    // kill -9: dead (no heartbeat for node_timeout) in the others' eyes.
    let killed_at = Instant::now();
    nodes[2].signal(libc::SIGKILL);
    nodes[2].wait().await;
    until_states(
        &nodes[0],
        &[(ports[0], "live"), (ports[1], "live"), (ports[2], "dead")],
    )
    .await;
    let seen = killed_at.elapsed();
    assert!(
        seen >= Duration::from_millis(800),
        "dead after {seen:?}, before the timeout"
    );
    // SIGTERM: a graceful stop leaves the cluster.
    nodes[1].signal(libc::SIGTERM);
    assert!(nodes[1].wait().await.success());
    until_states(
        &nodes[0],
        &[
            (ports[0], "live"),
            (ports[1], "stopped"),
            (ports[2], "dead"),
        ],
    )
    .await;
    let metrics = Client::new(&nodes[0].base(), "p")
        .text(format!("{}/metrics", nodes[0].base()))
        .await;
    for line in [
        "logdog_cluster_nodes{state=\"live\"} 1",
        "logdog_cluster_nodes{state=\"dead\"} 1",
        "logdog_cluster_nodes{state=\"stopped\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // Node 2 comes back on its URL: its old row is replaced by the new run's.
    let old = nodes[0].cluster().await;
    let old_id = old["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["advertise"] == nodes[2].base())
        .unwrap()["node_id"]
        .clone();
    nodes[2] = start_node(&db, ports[2], &[]).await;
    let c = until_states(
        &nodes[0],
        &[
            (ports[0], "live"),
            (ports[1], "stopped"),
            (ports[2], "live"),
        ],
    )
    .await;
    assert!(
        c["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["node_id"] != old_id),
        "{c}"
    );
    assert_eq!(
        nodes[2].cluster().await["nodes"].as_array().unwrap().len(),
        3
    );
}

postgres_only!(three_nodes_share_membership, membership);

/// `[cluster]` on SQLite is refused at start-up, naming the key and the way out.
#[test]
fn cluster_mode_on_sqlite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("one.db");
    let out = serve(db.to_str().unwrap(), free_port(), 8080)
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.advertise") && err.contains("cluster mode needs PostgreSQL"),
        "{err}"
    );
    assert!(!db.exists(), "nothing was opened");
}

/// A single node (no `[cluster]`) answers the cluster route 412.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_has_no_cluster() {
    let db = TestDb::sqlite();
    let server = crate::common::TestServer::start(db.config());
    let c = server.client("p");
    c.raw(
        reqwest::Method::GET,
        &format!("{}/api/v1/cluster", server.base()),
        None,
        None,
        vec![],
    )
    .await
    .expect_error(412, "failed_precondition");
    server.stop().await;
}

/// The owner rows of streams: (stream id, node id, epoch, released), for those that have one.
fn owner_rows(db: &TestDb, project: &str, paths: &[String]) -> Vec<(String, String, i64, bool)> {
    let s = logdog_schema::Store::open(&db.url, 1).unwrap();
    paths
        .iter()
        .filter_map(|p| {
            let id = logdog_schema::names::stream_id(p);
            let row = s
                .read(|c| logdog_schema::store::stream_owner(c, project, &id))
                .unwrap()?;
            Some((id, row.0, row.1, row.2))
        })
        .collect()
}

/// Every route works on every node: streams registered and appended through whichever
/// node a request reaches, each batch to a random node, land once each with next_index
/// exact, one owner per stream; 32 concurrent appends spread over the three nodes for a
/// stream nobody owns yet leave exactly one owner and every entry once.
async fn any_node_takes_any_request(db: TestDb) {
    use rand::Rng as _;
    // No node dies here, and none may look dead: the default node timeout (a loaded
    // machine can hold a heartbeat up past the other tests' 1 s).
    let (_, nodes, clients) =
        three_nodes(&db, &[("LOGDOG_CLUSTER_NODE_TIMEOUT", "3".to_owned())]).await;
    let secret = clients[0].prefix("build").await;
    const STREAMS: u64 = 100;
    const BATCHES: u64 = 20;
    const PER_BATCH: u64 = 500;
    let paths: Vec<String> = (0..STREAMS).map(|s| format!("build/+/s{s}")).collect();
    // One owner per stream at every moment: while the writers run, the owner rows are
    // sampled; a stream changes hands only after its owner released it (no node dies
    // here), each claim with a higher epoch.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (db_url, paths, done) = (db.url.clone(), paths.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let s = logdog_schema::Store::open(&db_url, 1).unwrap();
            let ids: Vec<String> = paths
                .iter()
                .map(|p| logdog_schema::names::stream_id(p))
                .collect();
            let mut last: std::collections::HashMap<String, (String, i64, bool)> =
                Default::default();
            let mut samples = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for id in &ids {
                    let Some(now) = s
                        .read(|c| logdog_schema::store::stream_owner(c, "p", id))
                        .unwrap()
                    else {
                        continue;
                    };
                    if let Some(before) = last.get(id) {
                        if (&before.0, before.1) != (&now.0, now.1) {
                            assert!(
                                now.1 > before.1,
                                "{id}: epoch went from {before:?} to {now:?}"
                            );
                            assert!(
                                before.2,
                                "{id}: taken from a live owner: {before:?} -> {now:?}"
                            );
                        }
                    }
                    last.insert(id.clone(), now);
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };
    let mut work = Vec::new();
    // 20 streams written at a time: the whole run is 1,000,000 entries on two cores.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(20));
    for s in 0..STREAMS {
        let (clients, secret, slots) = (clients.clone(), secret.clone(), slots.clone());
        work.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            let path = format!("build/+/s{s}");
            let pick = || rand::thread_rng().gen_range(0..3usize);
            clients[pick()]
                .register(&path, &secret, serde_json::json!({}))
                .await
                .expect(201);
            for b in 0..BATCHES {
                let entries = crate::common::lines(b * PER_BATCH, (b + 1) * PER_BATCH);
                let a = clients[pick()].append(&path, &secret, entries).await;
                assert_eq!(a.expect(200)["next_index"], (b + 1) * PER_BATCH, "{path}");
            }
        }));
    }
    for w in work {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(sampler.await.unwrap() > 0);
    let total = BATCHES * PER_BATCH;
    for s in 0..STREAMS {
        let path = format!("build/+/s{s}");
        let idx = crate::common::stored_indices(&db.url, "p", &path);
        assert_eq!(idx, (0..total).collect::<Vec<_>>(), "{path}");
        for c in &clients {
            assert_eq!(
                c.load(&path).await.expect(200)["state"]["next_index"],
                total
            );
        }
    }
    let owners = owner_rows(&db, "p", &paths);
    assert_eq!(owners.len() as u64, STREAMS, "{owners:?}");
    // Requests were forwarded: two of three nodes did not own a given stream.
    let mut forwarded = 0;
    for n in &nodes {
        forwarded += metric_at(&n.base(), "logdog_cluster_forwards_total{outcome=\"ok\"}").await;
    }
    assert!(forwarded > 0, "no request was forwarded");
    // The cluster route counts the owned streams per node.
    let c = nodes[0].cluster().await;
    let counted: i64 = c["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["streams"].as_i64().unwrap())
        .sum();
    let unreleased = owners.iter().filter(|o| !o.3).count() as i64;
    assert_eq!(counted, unreleased, "{c} vs {owners:?}");

    // Racing claims: 32 bundles at once, spread over the nodes, for a stream nobody owns
    // (nor has registered) yet: each registers it on first sight and appends its own entries.
    let mut racers = Vec::new();
    for i in 0..32u64 {
        let (c, secret) = (clients[(i % 3) as usize].clone(), secret.clone());
        racers.push(tokio::spawn(async move {
            let bundle = serde_json::json!({"prefix": "build", "streams": [{
                "name": "race",
                "descriptor": {},
                // Out of order across racers: each entry carries its sequence.
                "entries": (i * 10..i * 10 + 10)
                    .map(|k| serde_json::json!({"stream_index": k, "sequence": k, "text": {"lines": [format!("line {k}")]}}))
                    .collect::<Vec<_>>(),
            }]});
            for _ in 0..100 {
                let a = c
                    .json(reqwest::Method::POST, "bundles", Some(&secret), &bundle)
                    .await;
                let r = &a.expect(200)["streams"][0];
                if r["error"].is_null() {
                    assert_eq!(r["accepted"], 10, "{r}");
                    return;
                }
                assert_eq!(r["error"]["code"], "unavailable", "{r}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("bundle {i} never went through");
        }));
    }
    for r in racers {
        r.await.unwrap();
    }
    let idx = crate::common::stored_indices(&db.url, "p", "build/+/race");
    assert_eq!(idx, (0..320).collect::<Vec<_>>());
    let race = owner_rows(&db, "p", &["build/+/race".to_owned()]);
    assert_eq!(race.len(), 1, "{race:?}");
    assert_eq!(race[0].2, 1, "one claim, never taken over: {race:?}");
    assert_eq!(
        clients[2].load("build/+/race").await.expect(200)["state"]["next_index"],
        320
    );
}

postgres_only!(
    any_node_takes_any_request_on_postgres,
    any_node_takes_any_request
);

/// Failover and fencing: the node owning a stream is paused (SIGSTOP) past the node
/// timeout; another node takes the stream over and writes; the paused node resumes and
/// its stale actor never commits: the entries are exactly the new owner's, and the
/// resumed node drops its actors. Then the owner is killed with SIGKILL and the stream is
/// writable through a survivor within 5 s, every acknowledged entry kept.
async fn fencing_and_failover(db: TestDb) {
    let (_, mut nodes, clients) = three_nodes(&db, &[]).await;
    let secret = clients[0].text_stream("ci", "log").await;
    let path = "ci/+/log";
    clients[0]
        .append(path, &secret, crate::common::lines(0, 10))
        .await
        .expect(200);
    let id = logdog_schema::names::stream_id(path);
    let owner_of = || {
        let s = logdog_schema::Store::open(&db.url, 1).unwrap();
        s.read(|c| logdog_schema::store::stream_owner(c, "p", &id))
            .unwrap()
            .unwrap()
    };
    let (first_owner, first_epoch, _) = owner_of();
    let node_ids: Vec<String> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(n.cluster().await["node_id"].as_str().unwrap().to_owned());
        }
        v
    };
    let owner = node_ids.iter().position(|n| *n == first_owner).unwrap();
    let other = (owner + 1) % 3;

    nodes[owner].signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Another node takes over (the paused owner is dead) and writes.
    let started = Instant::now();
    let entries = crate::common::lines(10, 20);
    append_until_acked(&clients[other], path, &secret, entries, started, 5).await;
    let (new_owner, new_epoch, _) = owner_of();
    assert_eq!(new_owner, node_ids[other]);
    assert!(new_epoch > first_epoch);
    nodes[owner].signal(libc::SIGCONT);
    // The resumed node's next write: its old actor cannot commit (fenced, or dropped on
    // waking), so the lines land after the new owner's, through the new owner.
    let body = "late 1\nlate 2\n";
    let late = loop {
        let a = clients[owner]
            .http
            .post(clients[owner].url(&format!("logs/{path}")))
            .header("x-prefix-secret", &secret)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        if a.status() == 503 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(a.status(), 200);
        break a.json::<Value>().await.unwrap();
    };
    assert_eq!(late["next_index"], 22, "{late}");
    let stored = crate::common::stored_entries(&db.url, "p", path);
    let texts: Vec<String> = stored
        .iter()
        .map(|e| match &e.content {
            logdog_schema::wire::Content::Text(l) => l[0].value.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut want: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    want.extend(["late 1".to_owned(), "late 2".to_owned()]);
    assert_eq!(texts, want);
    assert_eq!(
        owner_of().0,
        node_ids[other],
        "the stale node took nothing back"
    );

    // kill -9 of the owner: writable through a survivor within 5 s, nothing lost.
    let survivor = (other + 1) % 3;
    nodes[other].signal(libc::SIGKILL);
    nodes[other].wait().await;
    let killed = Instant::now();
    let entries = crate::common::lines(22, 30);
    let a = append_until_acked(&clients[survivor], path, &secret, entries, killed, 5).await;
    assert_eq!(a["next_index"], 30);
    eprintln!("failover: writable again after {:?}", killed.elapsed());
    assert_eq!(
        crate::common::stored_indices(&db.url, "p", path),
        (0..30).collect::<Vec<_>>()
    );
    let m = Client::new(&nodes[survivor].base(), "p")
        .text(format!("{}/metrics", nodes[survivor].base()))
        .await;
    assert!(
        m.lines().any(|l| l == "logdog_cluster_takeovers_total 1"),
        "{m}"
    );
}

postgres_only!(
    a_paused_owner_is_fenced_and_a_killed_one_replaced,
    fencing_and_failover
);

/// What one websocket viewer saw until the server closed: the indices in order, the
/// first frame's type, the `end` frame's terminal index and the close code.
#[derive(Debug, PartialEq)]
struct Watched {
    indices: Vec<u64>,
    first: String,
    end: Option<i64>,
    close: Option<u16>,
}

async fn watch(base: &str, path: &str, from: u64, limit: Duration) -> Watched {
    let url = format!(
        "{}/api/v1/projects/p/watch/{path}?from={from}",
        base.replace("http://", "ws://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    let seen = crate::common::read_all(ws, limit).await;
    let kind = |f: &Value| f["type"].as_str().unwrap_or_default().to_owned();
    Watched {
        first: seen.frames.first().map(kind).unwrap_or_default(),
        end: seen
            .frames
            .iter()
            .find(|f| f["type"] == "end")
            .and_then(|f| f["terminal_index"].as_i64()),
        close: seen.close.map(|(code, _)| code),
        indices: seen.indices,
    }
}

/// Live tail on every node: viewers on all three nodes (websockets and `follow=true`
/// text) of one stream while each batch goes to a random node; every viewer gets the same
/// complete, contiguous sequence, `end` after the terminal entry.
async fn viewers_on_every_node(db: TestDb) {
    use rand::Rng as _;
    let (_, nodes, clients) = three_nodes(&db, &[]).await;
    let secret = clients[0].prefix("live").await;
    let path = "live/+/s";
    clients[0]
        .register(path, &secret, serde_json::json!({}))
        .await
        .expect(201);
    const BATCHES: u64 = 100;
    const PER_BATCH: u64 = 30;
    let total = BATCHES * PER_BATCH;
    let mut viewers = Vec::new();
    let mut followers = Vec::new();
    for n in &nodes {
        for from in [0, 0] {
            let base = n.base();
            viewers.push(tokio::spawn(async move {
                watch(&base, path, from, Duration::from_secs(60)).await
            }));
        }
        let c = Client::new(&n.base(), "p");
        followers.push(tokio::spawn(async move {
            c.text(c.url(&format!("logs/{path}?format=text&follow=true")))
                .await
        }));
    }
    // Let the viewers subscribe before the first write, then write to random nodes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for b in 0..BATCHES {
        let entries = crate::common::lines(b * PER_BATCH, (b + 1) * PER_BATCH);
        let pick = rand::thread_rng().gen_range(0..3usize);
        let a = clients[pick].append(path, &secret, entries).await;
        assert_eq!(a.expect(200)["next_index"], (b + 1) * PER_BATCH);
    }
    let pick = rand::thread_rng().gen_range(0..3usize);
    clients[pick]
        .terminate(path, &secret, serde_json::json!({}))
        .await
        .expect(200);
    let want = Watched {
        indices: (0..total).collect(),
        first: "state".into(),
        end: Some(total as i64 - 1),
        close: Some(1000),
    };
    for v in viewers {
        assert_eq!(v.await.unwrap(), want);
    }
    let text: String = (0..total).map(|i| format!("line {i}\n")).collect();
    for f in followers {
        assert_eq!(f.await.unwrap(), text);
    }
    // The non-owners' replicas were woken by the owner's notifications.
    let mut wakeups = 0;
    for n in &nodes {
        wakeups += metric_at(&n.base(), "logdog_cluster_wakeups_total").await;
    }
    assert!(wakeups > 0, "no notification reached a node");
    // DeletePrefix on one node: the viewers of the other nodes are told at once, the
    // owner (elsewhere) writes nothing more, and the stream reads 404 on every node.
    let secret = clients[0].text_stream("gone", "s").await;
    clients[0]
        .append("gone/+/s", &secret, crate::common::lines(0, 5))
        .await
        .expect(200);
    let mut gone_viewers = Vec::new();
    for n in &nodes[1..] {
        let base = n.base();
        gone_viewers.push(tokio::spawn(async move {
            watch(&base, "gone/+/s", 0, Duration::from_secs(10)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        clients[2].delete("prefixes/gone").await.status.as_u16(),
        204
    );
    for v in gone_viewers {
        let v = v.await.unwrap();
        assert_eq!(
            (v.indices, v.end, v.close),
            ((0..5).collect(), None, Some(1001))
        );
    }
    let late = clients[0]
        .append("gone/+/s", &secret, crate::common::lines(5, 6))
        .await;
    assert_ne!(late.status, 200, "{:?}", late.body);
    assert!(crate::common::stored_entries(&db.url, "p", "gone/+/s").is_empty());
    // A node whose owner record still names the deleting owner for a moment may answer
    // 503 "retry" (as the contract allows); retried, every node answers 404.
    for c in &clients {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut answer = c.load("gone/+/s").await;
        while answer.status.as_u16() == 503 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = c.load("gone/+/s").await;
        }
        answer.expect_error(404, "not_found");
    }
    // The node-to-node route wants the cluster secret.
    for secret in [None, Some("not-the-cluster-secret")] {
        let mut r = clients[1].http.post(format!(
            "{}/internal/v1/forward/api/v1/projects/p/prefixes",
            nodes[1].base()
        ));
        if let Some(s) = secret {
            r = r.header("x-logdog-cluster-secret", s);
        }
        let r = r
            .json(&serde_json::json!({"prefix": "sneaky"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "permission_denied", "{body}");
    }
}

postgres_only!(
    viewers_on_every_node_see_the_same_stream,
    viewers_on_every_node
);

/// kill -9 of the node owning the streams under load, five times: writes go on through
/// the survivors within 5 s with every acknowledged entry kept, the viewers on the
/// surviving nodes receive every entry and `end`, each stream is archived once, and the
/// killed node, restarted on its address, rejoins and owns streams again.
async fn kills_under_load(db: TestDb) {
    use rand::Rng as _;
    let archive = tempfile::tempdir().unwrap();
    let env = [
        // One archive every node reads, as an object store would be.
        ("LOGDOG_ARCHIVE", archive.path().display().to_string()),
        ("LOGDOG_ARCHIVAL_COMPLETE_DELAY", "0.2".to_owned()),
        ("LOGDOG_ARCHIVAL_RETRY_DELAY", "0.5".to_owned()),
    ];
    let (ports, mut nodes, clients) = three_nodes(&db, &env).await;
    const STREAMS: u64 = 3;
    const BATCHES: u64 = 20;
    const PER_BATCH: u64 = 25;
    let total = BATCHES * PER_BATCH;
    let mut failovers = Vec::new();
    for round in 0..5usize {
        let owner = round % 3;
        let others = [(owner + 1) % 3, (owner + 2) % 3];
        let owner_id = nodes[owner].cluster().await["node_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let prefix = format!("k{round}");
        let secret = clients[owner].prefix(&prefix).await;
        let paths: Vec<String> = (0..STREAMS).map(|k| format!("{prefix}/+/s{k}")).collect();
        for path in &paths {
            clients[owner]
                .register(path, &secret, serde_json::json!({}))
                .await
                .expect(201);
        }
        // Registered through the owner: it claimed them (a restarted node too).
        for o in owner_rows(&db, "p", &paths) {
            assert_eq!(o.1, owner_id, "round {round}: {o:?}");
        }
        let mut viewers = Vec::new();
        for path in &paths {
            for &o in &others {
                let (base, path) = (nodes[o].base(), path.clone());
                viewers.push(tokio::spawn(async move {
                    watch(&base, &path, 0, Duration::from_secs(60)).await
                }));
            }
        }
        // A viewer on the node about to die: it reconnects to a survivor with from=N.
        let resumed = {
            let (dead, alive, path) = (
                nodes[owner].base(),
                nodes[others[0]].base(),
                paths[0].clone(),
            );
            tokio::spawn(async move {
                let before = watch(&dead, &path, 0, Duration::from_secs(60)).await;
                assert_eq!(
                    before.close, None,
                    "the dead node closed the viewer: {before:?}"
                );
                let from = before.indices.len() as u64;
                let after = watch(&alive, &path, from, Duration::from_secs(60)).await;
                let mut all = before.indices;
                all.extend(after.indices);
                (all, after.end, after.close)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let mut writers = Vec::new();
        for path in paths.clone() {
            let (clients, secret) = (clients.clone(), secret.clone());
            writers.push(tokio::spawn(async move {
                // When each acknowledged batch came back, since `started`.
                let mut acked = Vec::new();
                for b in 0..BATCHES {
                    let entries = crate::common::lines(b * PER_BATCH, (b + 1) * PER_BATCH);
                    loop {
                        let c = &clients[others[rand::thread_rng().gen_range(0..2usize)]];
                        let r = c
                            .http
                            .post(c.url(&format!("logs/{path}")))
                            .header("x-prefix-secret", &secret)
                            .json(&serde_json::json!({ "entries": entries }))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == 200 => {
                                let v: Value = r.json().await.unwrap();
                                assert_eq!(v["next_index"], (b + 1) * PER_BATCH, "{path}: {v}");
                                acked.push(started.elapsed());
                                break;
                            }
                            Ok(r) => assert_eq!(r.status(), 503, "{path}: {:?}", r.text().await),
                            Err(e) => panic!("{path}: a survivor did not answer: {e}"),
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                acked
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes[owner].signal(libc::SIGKILL);
        nodes[owner].wait().await;
        let killed = started.elapsed();
        let mut back = Duration::ZERO;
        for w in writers {
            let acked = w.await.unwrap();
            assert_eq!(acked.len() as u64, BATCHES);
            // The first acknowledgement after the kill.
            let first = acked
                .iter()
                .find(|t| **t > killed)
                .copied()
                .unwrap_or(killed);
            back = back.max(first - killed);
        }
        assert!(
            back < Duration::from_secs(5),
            "round {round}: writable again after {back:?}"
        );
        failovers.push(back);
        for path in &paths {
            loop {
                let c = &clients[others[0]];
                let t = c.terminate(path, &secret, serde_json::json!({})).await;
                if t.status == 200 {
                    break;
                }
                assert_eq!(t.status, 503, "{:?}", t.body);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let want = Watched {
            indices: (0..total).collect(),
            first: "state".into(),
            end: Some(total as i64 - 1),
            close: Some(1000),
        };
        for v in viewers {
            assert_eq!(v.await.unwrap(), want, "round {round}");
        }
        assert_eq!(
            resumed.await.unwrap(),
            (want.indices.clone(), want.end, want.close),
            "round {round}: the viewer of the killed node, resumed elsewhere"
        );
        for path in &paths {
            assert_eq!(
                crate::common::stored_indices(&db.url, "p", path),
                (0..total).collect::<Vec<_>>()
            );
        }
        // Archived once each: one task, done on its first attempt, readable on a survivor.
        for path in &paths {
            archived_once(&db, &clients[others[1]], &clients[others[0]], path, total).await;
        }
        // The killed node comes back on its address, as a new member.
        nodes[owner] = start_node(&db, ports[owner], &env).await;
        let c = nodes[owner].cluster().await;
        let me = c["node_id"].as_str().unwrap();
        assert_ne!(me, owner_id);
        let live: Vec<&str> = c["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "live")
            .map(|n| n["node_id"].as_str().unwrap())
            .collect();
        assert_eq!(live.len(), 3, "{c}");
        assert!(live.contains(&me), "{c}");
    }
    failovers.sort();
    eprintln!(
        "failover after kill -9 under load, 5 runs: min {:?}, median {:?}, max {:?}",
        failovers[0], failovers[2], failovers[4]
    );
}

postgres_only!(killing_the_owner_under_load_five_times, kills_under_load);

/// Waits (up to 30 s) until `path` is archived as `loads` sees it, then checks it was
/// archived once: one task, done on its first attempt, and `reads` serves its `lines`.
async fn archived_once(db: &TestDb, loads: &Client, reads: &Client, path: &str, lines: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = loads.load(path).await.expect(200).clone();
        if s["state"]["archival"] == "complete" {
            break;
        }
        assert!(Instant::now() < deadline, "{path} not archived: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = logdog_schema::names::stream_id(path);
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    let task = store
        .read(|c| logdog_schema::store::get_task(c, "p", &id))
        .unwrap()
        .expect("an archive task");
    assert_eq!(
        (task.attempt, task.due_us, task.last_error.as_deref()),
        (1, logdog_schema::store::TASK_DONE, None),
        "{path}"
    );
    let text = reads
        .text(reads.url(&format!("logs/{path}?format=text")))
        .await;
    assert_eq!(text.lines().count() as u64, lines, "{path}");
}

/// Sealing is a call to the owner: the only archivist runs on a node that owns none of the
/// streams; its dispatcher leases their tasks, asks the owner to seal each one, and each
/// stream is archived once, on its first attempt, without changing hands.
async fn seal_through_the_owner(db: TestDb) {
    let archive = tempfile::tempdir().unwrap();
    let shared = [
        ("LOGDOG_ARCHIVE", archive.path().display().to_string()),
        ("LOGDOG_ARCHIVAL_COMPLETE_DELAY", "0.2".to_owned()),
        ("LOGDOG_ARCHIVAL_RETRY_DELAY", "0.5".to_owned()),
    ];
    let mut no_archivist = shared.to_vec();
    no_archivist.push(("LOGDOG_ARCHIVAL_EMBEDDED_ARCHIVIST", "false".to_owned()));
    let owner = start_node(&db, free_port(), &no_archivist).await;
    let archiving = start_node(&db, free_port(), &shared).await;
    let owner_id = owner.cluster().await["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = Client::new(&owner.base(), "p");
    let secret = c.prefix("seal").await;
    let paths: Vec<String> = (0..3).map(|k| format!("seal/+/s{k}")).collect();
    for path in &paths {
        c.register(path, &secret, serde_json::json!({}))
            .await
            .expect(201);
        c.append(path, &secret, crate::common::lines(0, 100))
            .await
            .expect(200);
        c.terminate(path, &secret, serde_json::json!({}))
            .await
            .expect(200);
    }
    let other = Client::new(&archiving.base(), "p");
    for path in &paths {
        archived_once(&db, &other, &other, path, 100).await;
    }
    // Every stream still the owner's, sealed there at the archiving node's request (and
    // its completions forwarded there).
    for o in owner_rows(&db, "p", &paths) {
        assert_eq!(
            (o.1.as_str(), o.2, o.3),
            (owner_id.as_str(), 1, false),
            "{o:?}"
        );
    }
    let seals = |node: &Node, outcome: &str| {
        let series = format!("logdog_cluster_remote_seals_total{{outcome=\"{outcome}\"}}");
        let base = node.base();
        async move { metric_at(&base, &series).await }
    };
    assert_eq!(seals(&archiving, "ok").await, 3);
    assert_eq!(seals(&archiving, "failed").await, 0);
    assert_eq!(seals(&owner, "ok").await, 0);
    // The seal route is the cluster's own: refused without the secret.
    let r = reqwest::Client::new()
        .post(format!("{}/internal/v1/seal", owner.base()))
        .json(&serde_json::json!({"project": "p", "path": paths[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

postgres_only!(sealing_is_a_call_to_the_owner, seal_through_the_owner);

/// A TCP proxy to PostgreSQL that the test can cut: every connection through it is closed
/// and new ones are refused (as when the database goes away), until restored.
struct PgProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, l, target) = (cut.clone(), links.clone(), target.to_owned());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let target = target.clone();
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                }));
            }
        });
        PgProxy {
            port,
            cut,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// When a node's log (RFC 3339 timestamps, no colours) first has a line containing
/// `text`, in microseconds since the epoch.
fn logged_at(log: &std::path::Path, text: &str) -> Option<i64> {
    let log = std::fs::read_to_string(log).unwrap();
    let line = log.lines().find(|l| l.contains(text))?;
    let stamp = line.split_whitespace().next()?;
    Some(
        chrono::DateTime::parse_from_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("{stamp:?} in {line:?}: {e}"))
            .timestamp_micros(),
    )
}

/// A node cut off from PostgreSQL drops its stream actors before its leases lapse (its
/// log says when; the lapse is its last committed heartbeat plus node_timeout, read from
/// the database), another node takes the streams over and writes within 5 s, and when the
/// database is back the cut-off node rejoins and forwards writes to the new owner.
async fn cut_off(db: TestDb) {
    let direct = db
        .url
        .strip_prefix("postgres://postgres@")
        .and_then(|r| r.split_once('/'))
        .map(|(host, name)| (host.to_owned(), name.to_owned()));
    let Some((host, name)) = direct else {
        panic!("unexpected test database URL {}", db.url);
    };
    let proxy = PgProxy::start(&host).await;
    let via_proxy = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("a.log");
    let a_port = free_port();
    let a = Node::spawn(serve(&via_proxy, a_port, a_port), Some(&log)).await;
    let b = start_node(&db, free_port(), &[]).await;
    let a_id = a.cluster().await["node_id"].as_str().unwrap().to_owned();
    let (ca, cb) = (Client::new(&a.base(), "p"), Client::new(&b.base(), "p"));
    let secret = ca.text_stream("cut", "log").await;
    let path = "cut/+/log";
    ca.append(path, &secret, crate::common::lines(0, 10))
        .await
        .expect(200);
    let id = logdog_schema::names::stream_id(path);
    let store = logdog_schema::Store::open(&db.url, 1).unwrap();
    let owner = || {
        store
            .read(|c| logdog_schema::store::stream_owner(c, "p", &id))
            .unwrap()
            .unwrap()
    };
    assert_eq!((owner().0, owner().1), (a_id.clone(), 1));
    assert!(metric_at(&a.base(), "logdog_live_stream_actors").await >= 1);

    proxy.cut();
    let cut_at = Instant::now();
    // Another node takes over once A's lease has lapsed, and writes.
    let entries = crate::common::lines(10, 20);
    let r = append_until_acked(&cb, path, &secret, entries, cut_at, 5).await;
    assert_eq!(r["next_index"], 20);
    eprintln!("cut off: writable through B after {:?}", cut_at.elapsed());
    let (new_owner, epoch, _) = owner();
    assert_eq!(epoch, 2);
    assert_ne!(new_owner, a_id);
    let last_beat = store
        .read(logdog_schema::store::cluster_nodes)
        .unwrap()
        .into_iter()
        .find(|n| n.node_id == a_id)
        .expect("A's membership row")
        .heartbeat_us;
    let dropped = logged_at(&log, "dropped this node's stream actors")
        .expect("A logged that it dropped its stream actors");
    let lapse = last_beat + 1_000_000;
    assert!(
        dropped < lapse,
        "A dropped its actors {} ms after its lease lapsed",
        (dropped - lapse) / 1000
    );
    // Nothing runs on A now (the page answers without the database).
    assert_eq!(metric_at(&a.base(), "logdog_live_stream_actors").await, 0);

    proxy.restore();
    // A is back: its writes go to the new owner, after B's entries.
    let entries = crate::common::lines(20, 25);
    let r = append_until_acked(&ca, path, &secret, entries, cut_at, 30).await;
    assert_eq!(r["next_index"], 25, "{r}");
    assert_eq!(owner().1, 2, "A took nothing back");
    assert_eq!(
        crate::common::stored_indices(&db.url, "p", path),
        (0..25).collect::<Vec<_>>()
    );
}

postgres_only!(a_node_cut_off_from_postgresql_stops_its_actors, cut_off);

//! Cluster mode: real `logdog serve` processes on loopback ports over one fresh PostgreSQL
//! database.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, Client, TestDb};

/// A `logdog serve` process in cluster mode.
struct Node {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

const SECRET: &str = "cluster-test-secret-0123456789";

fn serve(database: &str, port: u16, advertise_port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logdog"));
    c.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database",
        database,
    ])
    .env(
        "LOGDOG_CLUSTER_ADVERTISE",
        format!("http://127.0.0.1:{advertise_port}"),
    )
    .env("LOGDOG_CLUSTER_SECRET", SECRET)
    .env("LOGDOG_CLUSTER_HEARTBEAT_INTERVAL", "0.2")
    .env("LOGDOG_CLUSTER_NODE_TIMEOUT", "1")
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    c
}

impl Node {
    /// Starts a node on `port` (advertising it) and waits until it is ready.
    async fn start(db: &TestDb, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = serve(&db.url, port, port)
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = Node {
            child: Some(child),
            port,
            _dir: dir,
        };
        assert!(
            crate::common::ready(&node.base(), Duration::from_secs(30)).await,
            "node on {port} did not become ready"
        );
        node
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&mut self, signal: i32) {
        let child = self.child.as_mut().unwrap();
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit; its exit status.
    async fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    }

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

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
    let ports = [free_port(), free_port(), free_port()];
    let mut nodes = Vec::new();
    for p in ports {
        nodes.push(Node::start(&db, p).await);
    }
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
    nodes[2] = Node::start(&db, ports[2]).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(logdog_postgres),
    ignore = "needs LOGDOG_TEST_DATABASE_URL (PostgreSQL)"
)]
async fn three_nodes_share_membership() {
    membership(TestDb::postgres()).await;
}

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

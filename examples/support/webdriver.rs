//! A small WebDriver client: one ChromeDriver process and one headless Chromium session,
//! for the browser tests and the viewer benchmark (Debian's `chromium` and
//! `chromium-driver`; the flags keep Chromium off the network).

// The tests and the benchmark each compile this file and use part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A chromedriver process and one browser session. ChromeDriver runs in a process group
/// of its own, with the browser it starts: ending a `Browser` (`quit`, or dropping it)
/// kills the group and every process ChromeDriver started, and fails when one survives.
pub struct Browser {
    driver: std::process::Child,
    /// ChromeDriver's process group (its pid), which the browser's processes share.
    pub group: i32,
    ended: bool,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Err when ChromeDriver is not installed.
    pub async fn start() -> Result<Self, String> {
        let exe = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("no chromedriver (apt-get install chromium chromium-driver)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        use std::os::unix::process::CommandExt as _;
        let driver = std::process::Command::new(exe)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1200,800",
                         // `gc()` and exact heap figures for the viewer benchmark
                         "--js-flags=--expose-gc", "--enable-precise-memory-info",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_owned();
        Ok(Self {
            group: driver.id() as i32,
            ended: false,
            driver,
            base,
            session,
            http,
            _profile: profile,
        })
    }

    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let request = if method == reqwest::Method::GET {
            self.http.get(url)
        } else {
            self.http.request(method, url).json(&body)
        };
        let res: Value = request.send().await.unwrap().json().await.unwrap();
        if res["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", res["value"]);
        }
        res["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Runs `script`, which calls `done(value)` (the last argument) when it has an answer.
    pub async fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "execute/async",
            json!({"script": format!("const done = arguments[arguments.length - 1]; {script}"), "args": args}),
        )
        .await
    }

    /// Waits until `script` returns something truthy; returns it.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let script = if script.contains("return") {
            script.to_owned()
        } else {
            format!("return {script}")
        };
        loop {
            let v = self.js(&script, json!([])).await;
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    pub async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("element/{e}/click"),
            json!({}),
        )
        .await;
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self
            .cmd(reqwest::Method::GET, "screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .unwrap()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }
}

impl Browser {
    /// Ends the session (the browser closes), then the process group.
    pub async fn quit(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.http.delete(url).send()).await;
        self.end();
    }

    /// ChromeDriver and every live process it started, directly or not (Chromium's crash
    /// handler leaves the group with a session of its own), and the rest of its group.
    pub fn processes(&self) -> Vec<i32> {
        let procs = live_processes();
        let mut tree = vec![self.group];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
            i += 1;
        }
        let rest: Vec<i32> = procs
            .iter()
            .filter(|p| p.2 == self.group && !tree.contains(&p.0))
            .map(|p| p.0)
            .collect();
        tree.extend(rest);
        tree.retain(|pid| procs.iter().any(|p| p.0 == *pid));
        tree
    }

    /// Kills ChromeDriver's processes and waits until none is left, panicking (the test
    /// fails) when one survives.
    fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let started = self.processes();
        // SAFETY: kill(2) only sends signals (a negative pid is the process group).
        unsafe {
            libc::kill(-self.group, libc::SIGKILL);
            for pid in &started {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        let _ = self.driver.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive = live_processes();
            let left: Vec<i32> = started
                .iter()
                .copied()
                .filter(|pid| alive.iter().any(|p| p.0 == *pid))
                .collect();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                if !std::thread::panicking() {
                    panic!("browser processes survived their test: {left:?}");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `pid` is alive (not a zombie), by /proc.
pub fn is_alive(pid: i32) -> bool {
    live_processes().iter().any(|p| p.0 == pid)
}

/// (pid, parent, process group) of every live (not zombie) process, from /proc.
fn live_processes() -> Vec<(i32, i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
        let state = fields.next()?;
        let ppid: i32 = fields.next()?.parse().ok()?;
        let pgrp: i32 = fields.next()?.parse().ok()?;
        (state != "Z" && state != "X").then_some((pid, ppid, pgrp))
    })
    .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.end();
    }
}

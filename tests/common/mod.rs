//! The test harness: each test gets a fresh temporary directory holding a data directory
//! (`home/`) and a config root (`root/`, with `workflows/`), and runs the real `claw` binary in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub root: PathBuf,
    /// The PostgreSQL database the store is in (`CLAW_STORE_URL`), when the test runs on
    /// PostgreSQL: [`Env::on_postgres`], or every test with `CLAW_TEST_STORE=postgres`.
    pub pg: Option<claw::store::postgres::ScratchDb>,
}

/// A process a test started (a `claw serve`), killed and reaped when dropped: a test that fails
/// while it runs does not leave it running beside every later test. One already waited for is
/// not signalled again.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a finished `claw` command printed, and how it exited.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Ran {
    /// Panics with everything printed unless the exit status is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("workflows")).expect("mkdir");
        let mut env = Self {
            dir,
            home,
            root,
            pg: None,
        };
        if std::env::var("CLAW_TEST_STORE").is_ok_and(|v| v == "postgres") {
            env.pg = Some(scratch_db());
        }
        env
    }

    /// A test environment whose store is a PostgreSQL database of its own (dropped after).
    pub fn on_postgres() -> Self {
        let mut env = Self::new();
        if env.pg.is_none() {
            env.pg = Some(scratch_db());
        }
        env
    }

    /// The store URL when on PostgreSQL.
    pub fn store_url(&self) -> Option<&str> {
        self.pg.as_ref().map(|d| d.url.as_str())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `root/workflows/<name>.yaml`.
    pub fn workflow(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.root.join("workflows").join(format!("{name}.yaml"));
        std::fs::write(&p, yaml).expect("write workflow");
        p
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// A `claw` command with this environment's directories, run from the temp dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_claw"));
        c.args(args)
            .env("CLAW_HOME", &self.home)
            .env("CLAW_ROOT", &self.root)
            .env_remove("SUPERPOWERS_DATA_DIR")
            .env_remove("CLAUDE_SUPERPOWERS_DATA_DIR")
            .env("CLAW_KILL_GRACE", "1s")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        match self.store_url() {
            Some(url) => c.env("CLAW_STORE_URL", url),
            None => c.env_remove("CLAW_STORE_URL"),
        };
        c
    }

    pub fn claw(&self, args: &[&str]) -> Ran {
        self.command(args).output().expect("run claw").into()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn claw")
    }

    /// `claw run show RUN --json`.
    pub fn show(&self, run: &str) -> serde_json::Value {
        self.claw(&["run", "show", run, "--json"])
            .expect_code(0)
            .json()
    }

    /// The newest run's id, if any.
    pub fn last_run(&self) -> Option<String> {
        let list = self.claw(&["run", "list", "--json", "--limit", "1"]);
        list.json().as_array()?.first()?["id"]
            .as_str()
            .map(str::to_owned)
    }

    /// The status of each step of a run, by name.
    pub fn step_statuses(&self, run: &str) -> Vec<(String, String)> {
        self.show(run)["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| {
                        (
                            s["name"].as_str().unwrap_or("").to_owned(),
                            s["status"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A database of its own on the test server (`CLAW_TEST_PG`, default the local `test` one).
pub fn scratch_db() -> claw::store::postgres::ScratchDb {
    claw::store::postgres::ScratchDb::create("it").unwrap_or_else(|e| {
        panic!("cannot create a PostgreSQL database for the test (is PostgreSQL running? CLAW_TEST_PG): {e}")
    })
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The record of step `name` in a shown run (`claw run show --json` or `workflow run --json`).
#[track_caller]
pub fn step<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step `{name}` in {run:#}"))
}

/// The status of step `name` in a shown run, if the step has a record yet (for polling: a run
/// is shown before its first step is recorded).
pub fn step_status<'a>(run: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    run["steps"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?["status"]
        .as_str()
}

/// `(step name, its needs)` from `claw workflow show --json`, in order.
pub fn needs_of(shown: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["needs"].clone(),
            )
        })
        .collect()
}

pub fn pty_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pty_answer.py").to_owned()
}

/// `base` (a claw command from `Env::command`), run as `program` would run it: its arguments,
/// environment and directory, with `wrapper` in front.
pub fn wrapped(wrapper: &[&str], base: &Command) -> Command {
    let mut c = Command::new(wrapper[0]);
    c.args(&wrapper[1..])
        .arg(base.get_program())
        .args(base.get_args());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = base.get_current_dir() {
        c.current_dir(d);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` on a pseudo-terminal, typing `answers` at its passphrase prompts.
pub fn on_pty(cmd: &Command, answers: &[&str]) -> Ran {
    on_pty_prompt(cmd, answers, None)
}

/// [`on_pty`], answering at prompts matching `prompt` (a Python regular expression) too.
pub fn on_pty_prompt(cmd: &Command, answers: &[&str], prompt: Option<&str>) -> Ran {
    let script = pty_script();
    let mut c = wrapped(&["python3", &script], cmd);
    c.env("PTY_ANSWERS", answers.join("\n"));
    if let Some(p) = prompt {
        c.env("PTY_PROMPT", p);
    }
    c.output().expect("python3 pty_answer.py").into()
}

/// Serves `router` on a loopback port from a thread of its own (a runtime with two workers);
/// its address. The loopback doubles of the chat services (tests/messaging.rs, telegram.rs,
/// notify.rs) are routers served this way.
pub fn serve_router(router: axum::Router) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, router).await.expect("serve");
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("address")
}

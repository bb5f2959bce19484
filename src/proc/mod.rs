//! The one process supervisor: every process claw starts for a step, a skill, a cron job or a
//! watcher action runs through [`run`].
//!
//! The process gets a process group of its own. stdout and stderr go through pipes, through the
//! redactor, into a capped log file (rotated once) while the end of each is kept in memory. On
//! timeout or cancellation the whole group gets SIGTERM, then SIGKILL after the grace period, so
//! a command's children die with it. When the process exits, whatever it left running in its
//! group is stopped the same way: nothing is left behind.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::redact::{Redactor, StreamRedactor};

mod spawn;
pub use spawn::Command;

/// How much of stdout is kept in memory by default (for `outputs: json` and `steps.<name>.stdout`).
pub const STDOUT_CAPTURE: usize = 1024 * 1024;
/// How much of stderr is kept by default.
pub const STDERR_TAIL: usize = 16 * 1024;

/// What a process waits for just before it starts. The engine commits a step's `running` record
/// and starts its sync (the writeback on the run's own thread, or the whole sync on a blocking
/// thread in the daemon); the step's preparation (its policy check, its files, its command) goes
/// on meanwhile, and only the start itself waits: after a power cut, claw then knows the attempt
/// may have run. Open (no wait) by default.
#[derive(Clone, Default)]
pub struct StartGate(Option<std::sync::Arc<Gate>>);

/// Where the start waits for the sync that [`StartGate::after`] began.
enum Gate {
    /// On the caller's thread (a process driving one run): the writeback began when the gate
    /// was made ([`crate::store::SyncWait::start`]), and the wait makes the sync itself. A
    /// blocking thread would wake too late to overlap anything with the preparation.
    Inline(crate::store::SyncWait),
    /// By awaiting the blocking thread (the daemon's thread drives every run and never waits
    /// for the disk).
    Behind(tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>),
}

impl StartGate {
    /// A gate that opens once `sync` returns. `inline`: the writeback starts now and the gate's
    /// wait syncs on the caller's thread; else the sync starts now on a blocking thread.
    pub fn after(sync: crate::store::SyncWait, inline: bool) -> Self {
        if inline {
            sync.start();
            return Self(Some(std::sync::Arc::new(Gate::Inline(sync))));
        }
        let handle = tokio::task::spawn_blocking(move || sync.wait());
        Self(Some(std::sync::Arc::new(Gate::Behind(
            tokio::sync::Mutex::new(Some(handle)),
        ))))
    }

    /// Returns once the gate is open (at once when it already is).
    pub async fn passed(&self) {
        match self.0.as_deref() {
            None => {}
            Some(Gate::Inline(sync)) => sync.wait(),
            Some(Gate::Behind(handle)) => {
                let mut handle = handle.lock().await;
                if let Some(sync) = handle.as_mut() {
                    // A waiter dropped here leaves the handle for the next one.
                    let _ = sync.await;
                    *handle = None;
                }
            }
        }
    }
}

impl std::fmt::Debug for StartGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "StartGate(after a sync)"
        } else {
            "StartGate(open)"
        })
    }
}

/// How to supervise one process.
#[derive(Debug, Clone)]
pub struct Spec {
    /// What it is, for messages (`/bin/sh`, `skill backup`).
    pub what: String,
    /// Written to its stdin (else stdin is `/dev/null`).
    pub stdin: Option<String>,
    /// Its working directory as set on the command (only to explain a failed start).
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The log file and its cap (rotated once to `<name>.1` when reached); `None`: no log.
    pub log: Option<(PathBuf, u64)>,
    /// Masks secret values in everything the output turns into.
    pub redactor: Redactor,
    /// Also copy the (masked) output to claw's own stdout and stderr as it arrives.
    pub echo: bool,
    pub stdout_capture: usize,
    pub stderr_tail: usize,
    /// Passed just before the process starts.
    pub start_gate: StartGate,
    /// Once the process has started, a spare file is made here while it runs, for the next
    /// step's `$CLAW_OUTPUT` ([`crate::fsutil::make_spare`]).
    pub spare_dir: Option<PathBuf>,
}

impl Spec {
    /// A spec with the default capture sizes, no log, no stdin and no echo.
    pub fn new(what: impl Into<String>, timeout: Duration, kill_grace: Duration) -> Self {
        Self {
            what: what.into(),
            stdin: None,
            cwd: None,
            timeout,
            kill_grace,
            log: None,
            redactor: Redactor::default(),
            echo: false,
            stdout_capture: STDOUT_CAPTURE,
            stderr_tail: STDERR_TAIL,
            start_gate: StartGate::default(),
            spare_dir: None,
        }
    }
}

/// How a supervised process ended.
#[derive(Debug)]
pub enum End {
    /// It exited (or was killed by a signal it was not sent by claw).
    Exited(ExitStatus),
    /// Stopped at its timeout.
    TimedOut,
    /// Stopped because the cancellation token fired.
    Cancelled,
    /// It could not be started (the reason).
    NotStarted(String),
    /// Its status could not be read.
    Lost,
}

/// What a supervised process left.
#[derive(Debug)]
pub struct Finished {
    pub end: End,
    /// The end of stdout (masked), up to [`Spec::stdout_capture`] bytes.
    pub stdout: String,
    /// The end of stderr (masked), up to [`Spec::stderr_tail`] bytes.
    pub stderr_tail: String,
    /// Why the log could not be written, if it could not.
    pub log_error: Option<String>,
}

impl Finished {
    /// The exit code, when it exited with one.
    pub fn exit_code(&self) -> Option<i32> {
        match &self.end {
            End::Exited(s) => s.code(),
            _ => None,
        }
    }

    /// Why this is a failure, or `None` for exit status 0 (`timeout` names the limit).
    pub fn failure(&self, timeout: Duration) -> Option<String> {
        match &self.end {
            End::Exited(s) => match s.code() {
                Some(0) => None,
                Some(code) => Some(format!("exited with code {code}")),
                None => Some(signal_text(s)),
            },
            End::TimedOut => Some(format!(
                "timed out after {}",
                crate::time::duration::format(timeout)
            )),
            End::Cancelled => Some("cancelled".to_owned()),
            End::NotStarted(why) => Some(why.clone()),
            End::Lost => Some("lost track of the process".to_owned()),
        }
    }
}

/// A log file that rotates to `<name>.1` when it reaches its cap.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    cap: u64,
    error: Option<String>,
}

impl LogFile {
    /// The file is created on the first write: a step that prints nothing leaves no log file
    /// (and costs no file creation).
    fn open(path: &Path, cap: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
            written: 0,
            cap,
            error: None,
        }
    }

    fn ensure_open(&mut self) {
        if self.file.is_some() || self.error.is_some() {
            return;
        }
        match crate::fsutil::open_append_private(&self.path) {
            Ok(f) => {
                self.written = f.metadata().map_or(0, |m| m.len());
                self.file = Some(f);
            }
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&mut self, e: &std::io::Error) {
        self.file = None;
        if self.error.is_none() {
            self.error = Some(format!(
                "cannot write the step log {}: {e}",
                self.path.display()
            ));
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            // The end of a stream flushes what the redactor held back, often nothing: that
            // must not create the file.
            return;
        }
        self.ensure_open();
        if self.file.is_none() {
            return;
        }
        if self.written + bytes.len() as u64 > self.cap && self.written > 0 {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            match f.write_all(bytes) {
                Ok(()) => self.written += bytes.len() as u64,
                Err(e) => self.fail(&e),
            }
        }
    }

    fn rotate(&mut self) {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        self.file = None;
        let result = std::fs::rename(&self.path, &old)
            .and_then(|()| crate::fsutil::open_append_private(&self.path));
        match result {
            Ok(f) => {
                self.file = Some(f);
                self.written = 0;
            }
            Err(e) => self.fail(&e),
        }
    }
}

/// Keeps the last `cap` bytes written to it.
#[derive(Debug)]
struct Tail {
    buf: Vec<u8>,
    cap: usize,
    dropped: bool,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            dropped: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
            self.dropped = true;
        }
    }

    fn into_string(self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// The variable that marks every process of one supervised command's tree.
pub const TREE_VAR: &str = "CLAW_PROCESS_TREE";

/// Signals every process (of those claw may read) whose environment carries `tree`'s mark:
/// what a timed-out or cancelled command started, including those that left its process group.
/// Read from `/proc/<pid>/environ`, so a process that rewrote its environment is not found.
fn signal_marked(tree: &str, signal: Signal) {
    let needle = format!("{TREE_VAR}={tree}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|var| var == needle.as_bytes())
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
}

fn signal_group(pgid: Pid, signal: Signal) {
    // ESRCH (nobody left in the group) is the normal case after a clean exit.
    let _ = killpg(pgid, signal);
}

fn write_log(log: &mut Option<LogFile>, bytes: &[u8]) {
    if let Some(l) = log.as_mut() {
        l.write(bytes);
    }
}

/// Runs a prepared command (program, arguments, environment and directory already set) under
/// supervision, until it ends, times out or `cancel` fires.
pub async fn run(mut cmd: Command, spec: &Spec, cancel: &CancellationToken) -> Finished {
    // Every process this command starts inherits the mark, even one that leaves the process
    // group (`setsid`, a double fork): on a timeout or cancel those are found and stopped too.
    let tree = uuid::Uuid::new_v4().simple().to_string();
    cmd.env(TREE_VAR, &tree);
    // It gets a process group of its own (see `spawn`), so that the step and everything it
    // starts can be signalled at once (and a Ctrl-C on claw's terminal reaches claw, which then
    // stops the step cleanly).
    let mut log = spec
        .log
        .as_ref()
        .map(|(path, cap)| LogFile::open(path, *cap));
    spec.start_gate.passed().await;
    let mut child = match spawn::spawn(&cmd, spec.stdin.is_some()) {
        Ok(c) => c,
        Err(e) => {
            let why = match &spec.cwd {
                Some(cwd) if !cwd.is_dir() => {
                    format!("working directory {} does not exist", cwd.display())
                }
                _ => format!("cannot start {}: {e}", spec.what),
            };
            // The directory and the program come from the workflow and may hold a secret: this
            // line goes to the log and the run's error like the process's own output would.
            let why = spec.redactor.redact(&why).into_owned();
            write_log(&mut log, format!("claw: {why}\n").as_bytes());
            return Finished {
                end: End::NotStarted(why),
                stdout: String::new(),
                stderr_tail: String::new(),
                log_error: log.and_then(|l| l.error),
            };
        }
    };
    if let Some(dir) = &spec.spare_dir {
        crate::fsutil::make_spare(dir);
    }
    let pgid = child.id();

    if let (Some(mut stdin), Some(text)) = (child.stdin.take(), spec.stdin.clone()) {
        tokio::spawn(async move {
            // A command that does not read its input closes the pipe: that is not an error.
            let _ = stdin.write_all(text.as_bytes()).await;
        });
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_mask = StreamRedactor::new(spec.redactor.clone());
    let mut err_mask = StreamRedactor::new(spec.redactor.clone());
    let mut out_capture = Tail::new(spec.stdout_capture);
    let mut err_tail = Tail::new(spec.stderr_tail);
    // Read into spare capacity: nothing is zeroed first.
    let mut out_buf = Vec::with_capacity(16 * 1024);
    let mut err_buf = Vec::with_capacity(16 * 1024);

    let deadline = Instant::now() + spec.timeout;
    let far = Instant::now() + Duration::from_secs(100 * 365 * 86400);
    let mut kill_at = far;
    let mut give_up_at = far;
    let mut status = None;
    let mut timed_out = false;
    let mut cancelled = false;
    let mut killed = false;

    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            // Fixed order. Timers and cancellation first: they are rarely ready, and a command
            // that floods its output must not starve them. Then stdout before stderr, so that
            // `echo out; echo err >&2` reaches the log in that order, and output before the exit.
            biased;
            () = sleep_until(deadline), if !timed_out && status.is_none() && !cancelled => {
                timed_out = true;
                signal_group(pgid, Signal::SIGTERM);
                signal_marked(&tree, Signal::SIGTERM);
                kill_at = Instant::now() + spec.kill_grace;
            },
            () = cancel.cancelled(), if !cancelled && !timed_out && status.is_none() => {
                cancelled = true;
                signal_group(pgid, Signal::SIGTERM);
                signal_marked(&tree, Signal::SIGTERM);
                kill_at = Instant::now() + spec.kill_grace;
            },
            () = sleep_until(kill_at), if kill_at != far && !killed => {
                killed = true;
                signal_group(pgid, Signal::SIGKILL);
                if timed_out || cancelled {
                    signal_marked(&tree, Signal::SIGKILL);
                }
                // A process that left our group but kept our pipes cannot hold the step forever.
                give_up_at = Instant::now() + Duration::from_secs(2);
            },
            () = sleep_until(give_up_at), if give_up_at != far => {
                for (mask, tail) in [(&mut out_mask, &mut out_capture), (&mut err_mask, &mut err_tail)] {
                    let rest = mask.finish();
                    write_log(&mut log, &rest);
                    tail.push(&rest);
                }
                stdout = None;
                stderr = None;
                if status.is_none() {
                    status = Some(child.wait().await);
                }
            },
            r = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match r {
                Some(n) => {
                    let clean = out_mask.push(&out_buf[..n]);
                    write_log(&mut log, &clean);
                    echo_to(spec.echo, &clean, false);
                    out_capture.push(&clean);
                }
                None => {
                    let rest = out_mask.finish();
                    write_log(&mut log, &rest);
                    echo_to(spec.echo, &rest, false);
                    out_capture.push(&rest);
                    stdout = None;
                }
            },
            r = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match r {
                Some(n) => {
                    let clean = err_mask.push(&err_buf[..n]);
                    write_log(&mut log, &clean);
                    echo_to(spec.echo, &clean, true);
                    err_tail.push(&clean);
                }
                None => {
                    let rest = err_mask.finish();
                    write_log(&mut log, &rest);
                    echo_to(spec.echo, &rest, true);
                    err_tail.push(&rest);
                    stderr = None;
                }
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                // Stop what the command left running in its group; it would hold our pipes open.
                signal_group(pgid, Signal::SIGTERM);
                if kill_at == far {
                    kill_at = Instant::now() + spec.kill_grace;
                }
            },
        }
    }

    let end = if cancelled {
        End::Cancelled
    } else if timed_out {
        End::TimedOut
    } else {
        match status {
            Some(Ok(s)) => End::Exited(s),
            _ => End::Lost,
        }
    };
    Finished {
        end,
        stdout: out_capture.into_string(),
        stderr_tail: err_tail.into_string(),
        log_error: log.and_then(|l| l.error),
    }
}

/// Copies output to claw's own stdout or stderr (a closed stdout is not an error here).
fn echo_to(echo: bool, bytes: &[u8], to_stderr: bool) {
    if !echo || bytes.is_empty() {
        return;
    }
    if to_stderr {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(bytes).and_then(|()| e.flush());
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(bytes).and_then(|()| o.flush());
    }
}

async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut Vec<u8>,
) -> Option<usize> {
    let p = pipe.as_mut()?;
    buf.clear();
    match p.read_buf(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

fn signal_text(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => "ended without an exit code".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_at_cap() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("s.log");
        let mut log = LogFile::open(&path, 10);
        log.write(b"");
        assert!(!path.exists(), "an empty write creates no log file");
        log.write(b"0123456789");
        log.write(b"abc");
        assert!(log.error.is_none());
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"abc");
        assert_eq!(
            std::fs::read(dir.path().join("s.log.1")).unwrap_or_default(),
            b"0123456789"
        );
    }

    /// The process starts only after the gate's sync has returned, whether the wait happens on
    /// the caller's thread or on the blocking thread's.
    #[test]
    fn a_process_starts_after_its_gate() {
        for inline in [true, false] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let marker = dir.path().join("synced");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            let done = rt.block_on(async {
                let synced = marker.clone();
                let wait = crate::store::SyncWait::new(move || {
                    // A slow disk: the marker exists once the "sync" is over.
                    std::thread::sleep(Duration::from_millis(300));
                    let _ = std::fs::write(&synced, b"");
                });
                #[allow(clippy::disallowed_methods, reason = "the process under test")]
                let mut cmd = Command::new("/bin/sh");
                cmd.arg("-c").arg(format!("test -f '{}'", marker.display()));
                let mut spec = Spec::new("sh", Duration::from_secs(10), Duration::from_secs(1));
                spec.start_gate = StartGate::after(wait, inline);
                run(cmd, &spec, &CancellationToken::new()).await
            });
            assert_eq!(
                done.exit_code(),
                Some(0),
                "inline: {inline}: {:?}",
                done.end
            );
        }
    }
}

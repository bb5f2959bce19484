//! Starting and stopping Chromium.
//!
//! Chromium is started through `claw __chromium --parent PID -- CHROMIUM ARGS…`, a launcher that
//! asks the kernel to kill it when its parent (claw) dies, checks that the parent is still the
//! one that started it, and executes Chromium in its place. It runs in its own process group
//! (its pid is the group's id), so a timeout, a cancel or the end of claw stops it and every
//! renderer it started with one signal, and a Ctrl-C on claw's terminal reaches claw only.
//! The DevTools endpoint is read from `DevToolsActivePort` in the profile folder; Chromium's
//! own output goes to `<data>/browser/chromium-<profile>.log`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::config::env;

/// How long Chromium gets to open its DevTools port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Chromium is: `CHROME_PATH`, else `/usr/bin/chromium`, `chromium-browser`,
/// `google-chrome` (on `PATH`).
pub fn find_chromium() -> Result<PathBuf, String> {
    if let Some(p) = env::var_os("CHROME_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "CHROME_PATH names {}, which is not a file; point it at a Chromium executable or unset it to use Debian's `chromium` package",
                p.display()
            ))
        };
    }
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Ok(fixed.to_path_buf());
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(p) = which::which(name) {
            return Ok(p);
        }
    }
    Err(not_found())
}

/// The error of a machine without Chromium.
pub fn not_found() -> String {
    "Chromium not found: install Debian's `chromium` package (apt-get install chromium) or set CHROME_PATH to a Chromium or Chrome executable".to_owned()
}

/// Whether claw runs as root (Chromium's sandbox cannot run then: `--no-sandbox`).
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    pub chromium: PathBuf,
    pub profile_dir: PathBuf,
    pub headed: bool,
    /// Chromium's stdout and stderr.
    pub log: PathBuf,
}

/// A running Chromium (the leader of its own process group).
#[derive(Debug)]
pub struct Process {
    child: Child,
    pub pid: i32,
    pub profile_dir: PathBuf,
}

/// The command line flags of a headless, quiet Chromium with a persistent profile.
pub fn flags(spec: &Spec) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        format!("--user-data-dir={}", spec.profile_dir.display()).into(),
        "--remote-debugging-port=0".into(),
        "--remote-debugging-address=127.0.0.1".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-default-apps".into(),
        "--disable-extensions".into(),
        "--disable-breakpad".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-features=Translate,MediaRouter,OptimizationHints".into(),
        "--password-store=basic".into(),
        "--use-mock-keychain".into(),
        "--metrics-recording-only".into(),
        "--mute-audio".into(),
        "--hide-scrollbars".into(),
    ];
    if !spec.headed {
        args.push("--headless=new".into());
    }
    if running_as_root() {
        args.push("--no-sandbox".into());
    }
    args.push("about:blank".into());
    args
}

/// Starts Chromium and waits for its DevTools endpoint; returns the process and the browser's
/// WebSocket URL. A Chromium left running on the profile by a claw that was killed is stopped
/// first (it would hold the profile's lock).
///
/// The spawn happens on the calling thread, which must live as long as Chromium should: the
/// kernel kills Chromium when the thread that started it ends (a runtime's worker or main
/// thread, never a blocking-pool thread).
pub async fn start(spec: &Spec) -> Result<(Process, String), String> {
    let mut process = spawn(spec)?;
    let port_file = spec.profile_dir.join("DevToolsActivePort");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(url) = read_port_file(&port_file) {
            return Ok((process, url));
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            process.kill_now();
            return Err(format!(
                "Chromium ({}) exited at start ({status}): {}",
                spec.chromium.display(),
                log_tail(&spec.log)
            ));
        }
        if Instant::now() > deadline {
            process.kill_now();
            return Err(format!(
                "Chromium did not open its DevTools port within {}s: {}",
                START_TIMEOUT.as_secs(),
                log_tail(&spec.log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn(spec: &Spec) -> Result<Process, String> {
    crate::fsutil::create_dirs_private(&spec.profile_dir)
        .map_err(|e| format!("cannot create {}: {e}", spec.profile_dir.display()))?;
    stop_stale(&spec.profile_dir);
    let _ = std::fs::remove_file(spec.profile_dir.join("DevToolsActivePort"));
    if let Some(dir) = spec.log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let log = std::fs::File::create(&spec.log)
        .map_err(|e| format!("cannot create {}: {e}", spec.log.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", spec.log.display()))?;
    if running_as_root() {
        tracing::info!("claw runs as root: Chromium is started with --no-sandbox");
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find claw's binary: {e}"))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "Chromium is a long-lived helper, not a step: started through claw's launcher in its own process group and reaped by browser::launch"
    )]
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__chromium")
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(&spec.chromium)
        .args(flags(spec))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.chromium.display()))?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    Ok(Process {
        child,
        pid,
        profile_dir: spec.profile_dir.clone(),
    })
}

fn read_port_file(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let port: u16 = lines.next()?.trim().parse().ok()?;
    let path = lines.next()?.trim();
    path.starts_with("/devtools/browser/")
        .then(|| format!("ws://127.0.0.1:{port}{path}"))
}

/// The last lines Chromium wrote (for an error).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        "(it wrote nothing)".to_owned()
    } else {
        tail
    }
}

impl Process {
    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Kills the whole process group at once and reaps the leader.
    pub fn kill_now(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits for a Chromium `asked` to close over DevTools (which writes its profile: cookies),
    /// then SIGTERM, up to `grace` in all, then kills whatever is left in its group.
    pub fn close(&mut self, grace: Duration, asked: bool) {
        let deadline = Instant::now() + grace;
        // Asked to close over DevTools already: give it a moment on its own first.
        let own = Instant::now() + if asked { grace / 2 } else { Duration::ZERO };
        while self.exited().is_none() && Instant::now() < own {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.exited().is_none() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The network service (which writes the cookies) may finish after the main process.
        while killpg(Pid::from_raw(self.pid), None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_now();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The pid of a Chromium using `profile_dir`, if one runs (found by its `--user-data-dir`).
pub fn running_chromium(profile_dir: &Path) -> Option<i32> {
    processes_using(profile_dir).into_iter().next()
}

fn processes_using(profile_dir: &Path) -> Vec<i32> {
    let flag = format!("--user-data-dir={}", profile_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == flag.as_bytes()))
        })
        .collect()
}

/// Stops a Chromium left on the profile (by a claw that was killed before it could close it).
fn stop_stale(profile_dir: &Path) {
    let pids = processes_using(profile_dir);
    if pids.is_empty() {
        return;
    }
    tracing::warn!(
        profile = %profile_dir.display(),
        "stopping a Chromium left running on the profile"
    );
    for pid in &pids {
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_using(profile_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(profile_dir.join("SingletonLock"));
}

/// The launcher (`claw __chromium --parent PID -- PROGRAM ARGS…`): dies with its parent, then
/// executes `program`. Returns only on failure, with the exit status to use.
pub fn exec_launcher(parent: i32, program: &OsString, args: &[OsString]) -> u8 {
    use std::os::unix::process::CommandExt as _;
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln!("claw: cannot tie Chromium to claw's lifetime: {e}");
        return 126;
    }
    // The parent may have died before the line above: then nobody would reap Chromium.
    if nix::unistd::getppid().as_raw() != parent {
        return 125;
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the Chromium launcher execs Chromium after tying it to claw's lifetime"
    )]
    let err = std::process::Command::new(program).args(args).exec();
    eprintln!("claw: cannot start {}: {err}", Path::new(program).display());
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

//! The shell step: `/bin/sh -c COMMAND` in a process group of its own.
//!
//! stdout and stderr go through pipes into the step's log file (capped, rotated once) while the
//! end of each is kept for the store. On timeout or cancellation the whole group gets SIGTERM,
//! then SIGKILL after the grace period, so a command's children die with it. When the shell
//! exits, whatever it left running in its group is stopped the same way: a step leaves nothing
//! behind.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{StepInput, StepOutcome, StepReport};
use crate::redact::StreamRedactor;

/// How much of stdout is kept in memory (for `outputs: json` and `steps.<name>.stdout`).
pub const STDOUT_CAPTURE: usize = 1024 * 1024;
/// How much of stderr is kept for the store.
pub const STDERR_TAIL: usize = 16 * 1024;

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
        match File::options().create(true).append(true).open(&self.path) {
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
        let result = std::fs::rename(&self.path, &old).and_then(|()| {
            File::options()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&self.path)
        });
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

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (nobody left in the group) is the normal case after a clean exit.
        let _ = killpg(pgid, signal);
    }
}

/// Runs `program -c command` and reports how it went.
pub async fn run(
    program: &str,
    input: &StepInput,
    json_outputs: bool,
    cancel: &CancellationToken,
) -> StepReport {
    let mut cmd = Command::new(program);
    cmd.arg("-c").arg(&input.command);
    cmd.envs(input.env.iter().map(|(k, v)| (k, v)));
    // A step gets the secrets it names, never the key that opens all of them.
    cmd.env_remove(crate::vault::passphrase::PASSPHRASE_ENV);
    if let Some(cwd) = &input.cwd {
        cmd.current_dir(cwd);
    }
    supervise(cmd, program, input, json_outputs, cancel, false).await
}

/// Runs a prepared command (program, arguments, environment and directory set) the way a shell
/// step runs: its own process group, piped and capped output through the redactor, timeout and
/// cancellation, outputs. With `echo`, the (masked) output is also copied to claw's own stdout and
/// stderr as it arrives (`claw skill run`).
pub(crate) async fn supervise(
    mut cmd: Command,
    program: &str,
    input: &StepInput,
    json_outputs: bool,
    cancel: &CancellationToken,
    echo: bool,
) -> StepReport {
    cmd.stdin(if input.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so that the step and everything it starts can be signalled at once
    // (and a Ctrl-C on claw's terminal reaches claw, which then stops the step cleanly).
    cmd.process_group(0);
    let mut log = LogFile::open(&input.log_path, input.max_log_bytes);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = match &input.cwd {
                Some(cwd) if !cwd.is_dir() => {
                    format!("working directory {} does not exist", cwd.display())
                }
                _ => format!("cannot start {program}: {e}"),
            };
            log.write(format!("claw: {why}\n").as_bytes());
            return StepReport::failed(why);
        }
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);

    if let (Some(mut stdin), Some(text)) = (child.stdin.take(), input.stdin.clone()) {
        tokio::spawn(async move {
            // A command that does not read its input closes the pipe: that is not an error.
            let _ = stdin.write_all(text.as_bytes()).await;
        });
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_mask = StreamRedactor::new(input.redactor.clone());
    let mut err_mask = StreamRedactor::new(input.redactor.clone());
    let mut out_capture = Tail::new(STDOUT_CAPTURE);
    let mut err_tail = Tail::new(STDERR_TAIL);
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];

    let deadline = Instant::now() + input.timeout;
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
                kill_at = Instant::now() + input.kill_grace;
            },
            () = cancel.cancelled(), if !cancelled && !timed_out && status.is_none() => {
                cancelled = true;
                signal_group(pgid, Signal::SIGTERM);
                kill_at = Instant::now() + input.kill_grace;
            },
            () = sleep_until(kill_at), if kill_at != far && !killed => {
                killed = true;
                signal_group(pgid, Signal::SIGKILL);
                // A process that left our group but kept our pipes cannot hold the step forever.
                give_up_at = Instant::now() + Duration::from_secs(2);
            },
            () = sleep_until(give_up_at), if give_up_at != far => {
                for (mask, tail) in [(&mut out_mask, &mut out_capture), (&mut err_mask, &mut err_tail)] {
                    let rest = mask.finish();
                    log.write(&rest);
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
                    log.write(&clean);
                    echo_to(echo, &clean, false);
                    out_capture.push(&clean);
                }
                None => {
                    let rest = out_mask.finish();
                    log.write(&rest);
                    echo_to(echo, &rest, false);
                    out_capture.push(&rest);
                    stdout = None;
                }
            },
            r = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match r {
                Some(n) => {
                    let clean = err_mask.push(&err_buf[..n]);
                    log.write(&clean);
                    echo_to(echo, &clean, true);
                    err_tail.push(&clean);
                }
                None => {
                    let rest = err_mask.finish();
                    log.write(&rest);
                    echo_to(echo, &rest, true);
                    err_tail.push(&rest);
                    stderr = None;
                }
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                // Stop what the command left running in its group; it would hold our pipes open.
                signal_group(pgid, Signal::SIGTERM);
                if kill_at == far {
                    kill_at = Instant::now() + input.kill_grace;
                }
            },
        }
    }

    let status = status.and_then(Result::ok);
    let exit_code = status.as_ref().and_then(std::process::ExitStatus::code);
    let stdout_text = out_capture.into_string();
    let mut report = StepReport {
        outcome: StepOutcome::Succeeded,
        exit_code,
        stdout: stdout_text,
        stderr_tail: err_tail.into_string(),
        outputs: serde_json::Map::new(),
        note: None,
        finished_at: None,
        retryable: true,
        retry_after: None,
    };
    if cancelled {
        report.outcome = StepOutcome::Cancelled;
        return report;
    }
    let failure = if timed_out {
        Some(format!(
            "timed out after {}",
            crate::workflow::duration::format(input.timeout)
        ))
    } else {
        match &status {
            None => Some("lost track of the process".to_owned()),
            Some(s) => match s.code() {
                Some(0) => None,
                Some(code) => Some(format!("exited with code {code}")),
                None => Some(signal_text(s)),
            },
        }
    };
    if let Some(reason) = failure {
        report.outcome = StepOutcome::Failed { reason };
        return report;
    }
    if let Some(err) = log.error.take() {
        report.outcome = StepOutcome::Failed { reason: err };
        return report;
    }
    let outputs = if json_outputs {
        parse_json_outputs(&report.stdout)
    } else {
        read_outputs_file(&input.outputs_path)
    };
    match outputs {
        Ok(o) => {
            report.outputs = match input.redactor.redact_json(&serde_json::Value::Object(o)) {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
        }
        Err(reason) => report.outcome = StepOutcome::Failed { reason },
    }
    report
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
    buf: &mut [u8],
) -> Option<usize> {
    let p = pipe.as_mut()?;
    match p.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

fn signal_text(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => "ended without an exit code".to_owned(),
    }
}

/// `outputs: json`: stdout must be one JSON object.
pub fn parse_json_outputs(
    stdout: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(stdout.trim()) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "`outputs: json` needs stdout to be a JSON object, but it is {}",
            match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!(
            "`outputs: json` needs stdout to be a JSON object: {e}"
        )),
    }
}

/// Reads `$CLAW_OUTPUT`: `key=value` lines, or `key<<DELIM` … `DELIM` for multi-line values
/// (the same format as GitHub Actions' `$GITHUB_OUTPUT`). A missing file means no outputs.
pub fn read_outputs_file(
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(serde_json::Map::new()),
        Err(e) => return Err(format!("cannot read $CLAW_OUTPUT: {e}")),
    };
    // Consumed: the outputs live (masked) in the store; the raw file must not stay behind.
    let _ = std::fs::remove_file(path);
    parse_outputs(&text)
}

pub fn parse_outputs(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some((key, delim)) = line.split_once("<<")
            && !key.contains('=')
            && !key.trim().is_empty()
            && !delim.trim().is_empty()
        {
            let mut value = Vec::new();
            let mut closed = false;
            for (_, l) in lines.by_ref() {
                if l == delim {
                    closed = true;
                    break;
                }
                value.push(l);
            }
            if !closed {
                return Err(format!(
                    "$CLAW_OUTPUT line {}: `{key}<<{delim}` is never closed by a line `{delim}`",
                    n + 1
                ));
            }
            out.insert(key.trim().to_owned(), value.join("\n").into());
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                out.insert(key.trim().to_owned(), value.into());
            }
            _ => {
                return Err(format!(
                    "$CLAW_OUTPUT line {}: expected `key=value` or `key<<DELIMITER`, found `{line}`",
                    n + 1
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_lines_and_heredocs() {
        let o = parse_outputs("a=1\nb=x=y\n\nmsg<<EOF\nline one\nline two\nEOF\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o["a"], "1");
        assert_eq!(o["b"], "x=y");
        assert_eq!(o["msg"], "line one\nline two");
        assert!(parse_outputs("novalue\n").is_err());
        assert!(parse_outputs("k<<EOF\nnever closed\n").is_err());
    }

    #[test]
    fn json_outputs_need_an_object() {
        assert!(parse_json_outputs("{\"v\": 1}").is_ok());
        assert!(parse_json_outputs("[1]").is_err());
        assert!(parse_json_outputs("nope").is_err());
    }

    #[test]
    fn log_rotates_at_cap() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("s.log");
        let mut log = LogFile::open(&path, 10);
        log.write(b"0123456789");
        log.write(b"abc");
        assert!(log.error.is_none());
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"abc");
        assert_eq!(
            std::fs::read(dir.path().join("s.log.1")).unwrap_or_default(),
            b"0123456789"
        );
    }
}

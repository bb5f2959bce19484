//! The shell step: `/bin/sh -c COMMAND` (or `shell: bash`) under the process supervisor
//! ([`crate::proc`]); outputs from `$CLAW_OUTPUT` lines or, with `outputs: json`, from stdout.
//!
//! ```yaml
//! - name: archive
//!   command: tar -czf /tmp/b.tgz -C ${{ params.source }} .   # every value quoted for the shell
//!   shell: bash            # optional: another interpreter, run as `<shell> -c`
//!   cwd: /srv/app          # optional
//!   stdin: "some input"    # optional
//!   outputs: json          # optional: stdout is a JSON object of outputs
//! ```

use std::path::{Path, PathBuf};

use crate::proc::Command;
use tokio_util::sync::CancellationToken;

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepOutcome, StepReport};
use crate::config::Dirs;
use crate::proc;
use crate::yaml::Node;

#[derive(Debug, Clone)]
pub struct ShellStep {
    /// The command, run by `/bin/sh -c` (or by `shell`).
    pub command: String,
    /// An interpreter other than `/bin/sh` (`bash`, `zsh`, …), invoked as `<shell> -c`.
    pub shell: Option<String>,
    pub cwd: Option<String>,
    pub stdin: Option<String>,
    pub outputs: OutputMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// `key=value` lines written to `$CLAW_OUTPUT`.
    File,
    /// stdout is a JSON object.
    Json,
}

impl ShellStep {
    /// A plain `/bin/sh -c command` step (a compensation written as a string).
    pub fn from_command(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            shell: None,
            cwd: None,
            stdin: None,
            outputs: OutputMode::File,
        }
    }

    fn program(&self) -> &str {
        self.shell.as_deref().unwrap_or("/bin/sh")
    }
}

/// Whether `shell:` names a POSIX shell (whose quoting claw applies to `${{ }}` values): `sh`,
/// `bash`, `dash`, `zsh`, `ksh`, `mksh`, `ash`, `busybox sh`, by name or path.
fn is_posix_shell(program: &str) -> bool {
    let mut words = program.split_whitespace();
    let first = words.next().unwrap_or("");
    let base = first.rsplit('/').next().unwrap_or(first);
    match base {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ksh93" | "mksh" | "ash" | "posh" | "yash" => true,
        "busybox" => words.next().is_some_and(|w| matches!(w, "sh" | "ash")),
        _ => false,
    }
}

impl Kind for ShellStep {
    const NAMES: &'static [&'static str] = &["shell"];
    const KEYS: &'static [&'static str] = &["shell", "cwd", "stdin", "outputs"];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let mut step = Self::from_command("");
        if let Some(v) = node.get("shell") {
            step.shell = cx.string(v, "shell");
        }
        if let Some(v) = node.get("cwd") {
            step.cwd = cx.string(v, "cwd");
            cx.templates_in(v);
        }
        if let Some(v) = node.get("stdin") {
            step.stdin = cx.string(v, "stdin");
            cx.templates_in(v);
        }
        if let Some(v) = node.get("outputs") {
            let s = cx.string(v, "outputs").unwrap_or_default();
            step.outputs = match s.as_str() {
                "json" => OutputMode::Json,
                "file" | "lines" => OutputMode::File,
                other => {
                    cx.err(
                        v.pos,
                        format!("unknown `outputs` mode `{other}` (expected `json`, or leave it out to use $CLAW_OUTPUT)"),
                    );
                    OutputMode::File
                }
            };
        }
        let command = node.get("command").and_then(|c| {
            let text = cx.string(c, "command")?;
            match step.shell.as_deref().filter(|p| !is_posix_shell(p)) {
                // claw quotes values for POSIX shells only: in Python or Perl a quoted value is
                // still code (`print(f"…")`).
                Some(program) if crate::expr::has_expressions(&text) => cx.err(
                    c.pos,
                    format!(
                        "`shell: {program}` is not a POSIX shell, so claw cannot quote `${{{{ … }}}}` values for it: \
                         pass each value through `env:` (`env: {{V: \"${{{{ params.v }}}}\"}}`) and read it from the \
                         environment in the command"
                    ),
                ),
                _ => cx.shell_template(c, &text),
            }
            Some(text)
        });
        match command {
            Some(c) if !c.trim().is_empty() => step.command = c,
            _ => {
                let name = cx.step.to_owned();
                cx.err(node.pos, format!("step `{name}` has no `command`"));
                return None;
            }
        }
        Some(step)
    }

    fn describe(&self) -> String {
        self.command.clone()
    }

    fn templates(&self) -> Vec<&str> {
        let mut out = vec![self.command.as_str()];
        out.extend(self.cwd.as_deref());
        out.extend(self.stdin.as_deref());
        out
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        Ok(Self {
            command: cx
                .shell(&self.command)
                .map_err(|e| format!("cannot render the command: {e}"))?,
            shell: self.shell.clone(),
            cwd: self.cwd.as_deref().map(|c| cx.plain(c)).transpose()?,
            stdin: self.stdin.as_deref().map(|s| cx.plain(s)).transpose()?,
            outputs: self.outputs,
        })
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let program = self.program();
        #[allow(
            clippy::disallowed_methods,
            reason = "the shell step's command; the supervisor runs it"
        )]
        let mut cmd = Command::new(program);
        cmd.arg("-c").arg(&self.command);
        cmd.envs(input.env.iter().map(|(k, v)| (k, v)));
        // A step gets the secrets it names, never the key that opens all of them.
        cmd.env_remove(crate::config::env::VAULT_PASSPHRASE);
        let cwd = self.cwd.as_ref().map(PathBuf::from);
        if let Some(cwd) = &cwd {
            cmd.current_dir(cwd);
        }
        let mut spec = spec(program, input, false);
        spec.stdin.clone_from(&self.stdin);
        spec.cwd = cwd;
        spec.start_gate = rt.start_gate.clone();
        spec.spare_dir.clone_from(&rt.spare_dir);
        let done = proc::run(cmd, &spec, &rt.cancel).await;
        report(done, input, self.outputs == OutputMode::Json)
    }

    fn environment_problems(&self, _dirs: &Dirs) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(prog) = &self.shell
            && !on_path(prog)
        {
            out.push(format!("shell `{prog}` is not on PATH"));
        }
        if let Some(cwd) = &self.cwd
            && !crate::expr::has_expressions(cwd)
            && !Path::new(cwd).is_dir()
        {
            out.push(format!("working directory `{cwd}` does not exist"));
        }
        out
    }

    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![("command", self.command.clone().into())]
    }

    fn policy_subjects(&self) -> Vec<crate::policy::Subject> {
        vec![crate::policy::Subject::Command(self.command.clone())]
    }

    /// Its process starts after the gate; its `$CLAW_OUTPUT` file and command are made before.
    fn passes_start_gate(&self) -> bool {
        true
    }
}

/// Whether `prog` (a path, or a name looked up in `PATH`) is an executable file.
pub fn on_path(prog: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).is_file();
    }
    crate::config::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| !d.is_empty() && Path::new(d).join(prog).is_file())
}

/// The supervision spec of a step's process: its log, limits, stdin and redactor. Creates the
/// step's `$CLAW_OUTPUT` file, private to its owner (a command appending to it keeps that mode);
/// [`report`] removes it however the step ends.
pub fn spec(what: &str, input: &StepInput, echo: bool) -> proc::Spec {
    if !input.outputs_path.as_os_str().is_empty() {
        // A failure shows as a read error in `report` when the command could not write it.
        let _ = crate::fsutil::create_private_from_spare(&input.outputs_path);
    }
    proc::Spec {
        log: Some((input.log_path.clone(), input.max_log_bytes)),
        redactor: input.redactor.clone(),
        echo,
        ..proc::Spec::new(what, input.timeout, input.kill_grace)
    }
}

/// Runs a prepared command (program, arguments, environment and directory set) the way a shell
/// step runs (log, limits and outputs of `input`) and reports how it went; `cwd` is the
/// directory set on the command (to explain a failed start).
pub async fn run_command(
    cmd: Command,
    what: &str,
    cwd: Option<PathBuf>,
    input: &StepInput,
    cancel: &CancellationToken,
) -> StepReport {
    let mut spec = spec(what, input, false);
    spec.cwd = cwd;
    let done = proc::run(cmd, &spec, cancel).await;
    report(done, input, false)
}

/// A step's report from a finished process: its outcome, streams and outputs.
pub fn report(done: proc::Finished, input: &StepInput, json_outputs: bool) -> StepReport {
    let report = report_outcome(done, input, json_outputs);
    // Read or not (a failed, timed-out or cancelled step), the raw file holds what the step wrote
    // unmasked: it never stays behind.
    if !input.outputs_path.as_os_str().is_empty() {
        let _ = std::fs::remove_file(&input.outputs_path);
    }
    report
}

fn report_outcome(done: proc::Finished, input: &StepInput, json_outputs: bool) -> StepReport {
    let mut report = StepReport {
        outcome: StepOutcome::Succeeded,
        exit_code: done.exit_code(),
        stdout: done.stdout.clone(),
        stderr_tail: done.stderr_tail.clone(),
        outputs: serde_json::Map::new(),
        note: None,
        finished_at: None,
        retryable: true,
        retry_after: None,
    };
    if matches!(done.end, proc::End::Cancelled) {
        report.outcome = StepOutcome::Cancelled;
        return report;
    }
    if let Some(reason) = done.failure(input.timeout) {
        report.outcome = StepOutcome::Failed { reason };
        return report;
    }
    if let Some(err) = done.log_error {
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
/// [`report`] removes the file after this, however the step ended.
fn read_outputs_file(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(serde_json::Map::new()),
        Err(e) => return Err(format!("cannot read $CLAW_OUTPUT: {e}")),
    };
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
}

//! The shell step: `/bin/sh -c COMMAND` (or `shell: bash`) under the process supervisor
//! ([`crate::proc`]); outputs from `$CLAW_OUTPUT` lines or, with `outputs: json`, from stdout.

use std::path::Path;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::{StepInput, StepOutcome, StepReport};
use crate::proc;

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
    cmd.env_remove(crate::config::env::VAULT_PASSPHRASE);
    if let Some(cwd) = &input.cwd {
        cmd.current_dir(cwd);
    }
    supervise(cmd, program, input, json_outputs, cancel, false).await
}

/// The supervision spec of a step's process: its log, limits, stdin and redactor.
pub fn spec(what: &str, input: &StepInput, echo: bool) -> proc::Spec {
    proc::Spec {
        stdin: input.stdin.clone(),
        cwd: input.cwd.clone(),
        log: Some((input.log_path.clone(), input.max_log_bytes)),
        redactor: input.redactor.clone(),
        echo,
        ..proc::Spec::new(what, input.timeout, input.kill_grace)
    }
}

/// Runs a prepared command (program, arguments, environment and directory set) the way a shell
/// step runs ([`proc::run`]) and turns the result into a report, outputs read. With `echo`, the
/// (masked) output is also copied to claw's own stdout and stderr as it arrives
/// (`claw skill run`).
pub(crate) async fn supervise(
    cmd: Command,
    program: &str,
    input: &StepInput,
    json_outputs: bool,
    cancel: &CancellationToken,
    echo: bool,
) -> StepReport {
    let done = proc::run(cmd, &spec(program, input, echo), cancel).await;
    report(done, input, json_outputs)
}

/// A step's report from a finished process: its outcome, streams and outputs.
pub fn report(done: proc::Finished, input: &StepInput, json_outputs: bool) -> StepReport {
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
}

//! The `ssh` step: one command on every host of a target from hosts.yaml, over the process's
//! pooled, host-key-verified connections ([`crate::ssh`]).
//!
//! ```yaml
//! - name: restart
//!   type: ssh
//!   hosts: web                 # an alias, a group, or a comma list; `all` is every host
//!   command: systemctl restart ${{ params.unit }}   # values quoted for the remote shell
//!   env: {MODE: fast}          # exported on the host (sent on stdin, not the command line)
//!   timeout: 60s               # per host; the command is stopped there when it passes
//!   parallel: 10               # hosts at once (default 10)
//!   fail_fast: false           # after a failed host, start no more
//!   min_success: 50%           # hosts that must succeed: a count or a percentage (default all)
//! ```
//!
//! Outputs: `hosts.<alias>.{exit_code, stdout, stderr, ok, error}`, `ok_hosts`, `failed_hosts`.
//! The step's log has each line prefixed by its host. Not idempotent unless the step says so.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Kind, LoadCx, PrepareCx, Runtime, StepInput, StepOutcome, StepReport};
use crate::config::Dirs;
use crate::ssh::{self, FanOut, Host, MinSuccess};
use crate::yaml::{Node, Value};

#[derive(Debug, Clone)]
pub struct SshStep {
    /// The target as written (rendered at prepare).
    pub target: String,
    pub command: String,
    pub parallel: usize,
    pub fail_fast: bool,
    pub min_success: MinSuccess,
    /// The hosts, resolved when the attempt is prepared.
    pub resolved: Vec<Host>,
    /// The data directory (known_hosts, vault, audit log), set when the attempt is prepared.
    pub home: PathBuf,
}

impl Kind for SshStep {
    const NAMES: &'static [&'static str] = &["ssh"];
    const KEYS: &'static [&'static str] = &["hosts", "parallel", "fail_fast", "min_success"];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let mut step = Self {
            target: String::new(),
            command: String::new(),
            parallel: 10,
            fail_fast: false,
            min_success: MinSuccess::All,
            resolved: Vec::new(),
            home: PathBuf::new(),
        };
        let name = cx.step.to_owned();
        match node.get("hosts") {
            Some(v) => {
                step.target = match &v.value {
                    Value::Seq(_) => {
                        cx.r.string_list(v, "hosts")
                            .into_iter()
                            .map(|(s, _)| s)
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                    _ => cx.template_string(v, "hosts").unwrap_or_default(),
                };
                if step.target.trim().is_empty() {
                    cx.err(
                        v.pos,
                        "`hosts` is empty: name a host alias, a group, or `all`",
                    );
                }
            }
            None => {
                cx.err(
                    node.pos,
                    format!("ssh step `{name}` has no `hosts` (an alias, a group, or `all`)"),
                );
                return None;
            }
        }
        if let Some(v) = node.get("parallel")
            && let Some(n) = cx.r.positive_int(v, "parallel")
        {
            step.parallel = n as usize;
        }
        if let Some(v) = node.get("fail_fast")
            && let Some(b) = cx.r.boolean(v, "fail_fast")
        {
            step.fail_fast = b;
        }
        if let Some(v) = node.get("min_success")
            && let Some(text) = cx.r.string(v, "min_success")
        {
            match MinSuccess::parse(&text) {
                Ok(m) => step.min_success = m,
                Err(e) => cx.err(v.pos, e),
            }
        }
        let command = node.get("command").and_then(|c| {
            let text = cx.string(c, "command")?;
            cx.shell_template(c, &text);
            Some(text)
        });
        match command {
            Some(c) if !c.trim().is_empty() => step.command = c,
            _ => {
                cx.err(node.pos, format!("ssh step `{name}` has no `command`"));
                return None;
            }
        }
        Some(step)
    }

    fn describe(&self) -> String {
        format!("on {}: {}", self.target, self.command)
    }

    fn templates(&self) -> Vec<&str> {
        vec![self.command.as_str(), self.target.as_str()]
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let target = cx.plain(&self.target)?;
        let registry = ssh::Registry::find(&cx.dirs.root, &cx.dirs.home).map_err(|e| e.render())?;
        let resolved = registry
            .resolve(&target)
            .map_err(|e| e.0)?
            .into_iter()
            .cloned()
            .collect();
        Ok(Self {
            target,
            command: cx
                .shell(&self.command)
                .map_err(|e| format!("cannot render the command: {e}"))?,
            parallel: self.parallel,
            fail_fast: self.fail_fast,
            min_success: self.min_success,
            resolved,
            home: cx.dirs.home.clone(),
        })
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let pool = ssh::shared_pool(&self.home);
        let env: Vec<(String, String)> = input
            .env
            .iter()
            .filter(|(k, _)| k != crate::config::env::VAULT_PASSPHRASE)
            .cloned()
            .collect();
        let cmd = ssh::Command {
            command: self.command.clone(),
            env,
            timeout: input.timeout,
        };
        let results = ssh::fan_out(
            &pool,
            &self.resolved,
            &cmd,
            FanOut {
                parallel: self.parallel,
                fail_fast: self.fail_fast,
            },
            &rt.cancel,
            Arc::new(|_: &str, _: bool, _: &[u8]| {}),
        )
        .await;
        report(self, &results, input, rt.cancel.is_cancelled())
    }

    fn environment_problems(&self, dirs: &Dirs) -> Vec<String> {
        match ssh::Registry::find(&dirs.root, &dirs.home) {
            Err(e) => vec![e.render()],
            Ok(r) if !crate::expr::has_expressions(&self.target) => match r.resolve(&self.target) {
                Err(e) => vec![e.0],
                Ok(_) => Vec::new(),
            },
            Ok(_) => Vec::new(),
        }
    }

    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("hosts", self.target.clone().into()),
            ("command", self.command.clone().into()),
        ]
    }
}

fn report(
    step: &SshStep,
    results: &[(Host, ssh::Output)],
    input: &StepInput,
    cancelled: bool,
) -> StepReport {
    let red = &input.redactor;
    let mut log = String::new();
    let mut hosts = serde_json::Map::new();
    let (mut ok_hosts, mut failed_hosts) = (Vec::new(), Vec::new());
    for (h, o) in results {
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        for l in stdout.lines() {
            let _ = writeln!(log, "[{}] {l}", h.alias);
        }
        for l in stderr.lines() {
            let _ = writeln!(log, "[{}] stderr: {l}", h.alias);
        }
        match (&o.error, o.exit_code) {
            (Some(e), _) => {
                let _ = writeln!(log, "[{}] FAILED: {e}", h.alias);
            }
            (None, Some(c)) => {
                let _ = writeln!(
                    log,
                    "[{}] exit {c} ({:.2}s)",
                    h.alias,
                    o.duration.as_secs_f64()
                );
            }
            _ => {}
        }
        if o.dropped > 0 {
            let _ = writeln!(
                log,
                "[{}] ({} bytes of output not kept)",
                h.alias, o.dropped
            );
        }
        hosts.insert(
            h.alias.clone(),
            serde_json::json!({
                "exit_code": o.exit_code,
                "stdout": stdout,
                "stderr": stderr,
                "ok": o.ok(),
                "error": o.error,
            }),
        );
        if o.ok() {
            ok_hosts.push(h.alias.clone());
        } else {
            failed_hosts.push(h.alias.clone());
        }
    }
    let log = red.redact(&log).into_owned();
    if let Some(dir) = input.log_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&input.log_path, cap(&log, input.max_log_bytes));
    let outputs = serde_json::json!({
        "hosts": hosts,
        "ok_hosts": ok_hosts,
        "failed_hosts": failed_hosts,
    });
    let outputs = match red.redact_json(&outputs) {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let needed = step.min_success.needed(results.len());
    let outcome = if cancelled {
        StepOutcome::Cancelled
    } else if ok_hosts.len() >= needed {
        StepOutcome::Succeeded
    } else {
        StepOutcome::Failed {
            reason: format!(
                "{} of {} hosts succeeded, {needed} needed; failed: {}",
                ok_hosts.len(),
                results.len(),
                failed_hosts.join(", ")
            ),
        }
    };
    let single_exit = match results {
        [(_, o)] => o.exit_code,
        _ => None,
    };
    StepReport {
        outcome,
        exit_code: single_exit,
        stdout: cap(&log, crate::proc::STDOUT_CAPTURE as u64),
        stderr_tail: String::new(),
        outputs,
        note: None,
        finished_at: None,
        retryable: true,
        retry_after: None,
    }
}

/// At most `max` bytes of `text` (its end kept, on a character boundary).
fn cap(text: &str, max: u64) -> String {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cap_keeps_the_end_on_a_character_boundary() {
        assert_eq!(super::cap("abc", 10), "abc");
        assert_eq!(super::cap("aéb", 2), "b");
        assert_eq!(super::cap("abcdef", 3), "def");
    }
}

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
//!   sudo: true                 # as root through sudo (password: vault ssh:<alias>:sudo_password)
//! ```
//!
//! Outputs: `hosts.<alias>.{exit_code, stdout, stderr, ok, error}`, `ok_hosts`, `failed_hosts`.
//! The step's log has each line prefixed by its host. Not idempotent unless the step says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};
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
    /// Run the command as root through sudo on each host.
    pub sudo: bool,
    /// The hosts, resolved when the attempt is prepared.
    pub resolved: Vec<Host>,
    /// The data directory (known_hosts, vault, audit log), set when the attempt is prepared.
    pub home: PathBuf,
    /// Files copied to each host before the command.
    pub uploads: Vec<FileCopy>,
    /// Files copied from each host after the command (to `<dest>/<alias>/<file name>`).
    pub downloads: Vec<FileCopy>,
}

/// One `upload:` or `download:` entry.
#[derive(Debug, Clone)]
pub struct FileCopy {
    pub src: String,
    pub dest: String,
    /// The uploaded file's mode.
    pub mode: u32,
}

fn read_copies(cx: &mut LoadCx<'_>, node: &Node, field: &str) -> Vec<FileCopy> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        let allowed: &[&str] = if field == "upload" {
            &["src", "dest", "mode"]
        } else {
            &["src", "dest"]
        };
        let entries = cx.r.entries(item, allowed, &format!("`{field}`"));
        let mut copy = FileCopy {
            src: String::new(),
            dest: String::new(),
            mode: 0o644,
        };
        for (k, v) in entries {
            match k {
                "src" => copy.src = cx.template_string(v, "src").unwrap_or_default(),
                "dest" => copy.dest = cx.template_string(v, "dest").unwrap_or_default(),
                "mode" => {
                    let text = v.scalar_text().unwrap_or_default();
                    match u32::from_str_radix(&text, 8) {
                        Ok(m) if m <= 0o7777 => copy.mode = m,
                        _ => cx.err(
                            v.pos,
                            format!("`mode` `{text}` must be an octal mode like 644 or \"0755\""),
                        ),
                    }
                }
                _ => {}
            }
        }
        if matches!(item.value, Value::Map(_)) && (copy.src.is_empty() || copy.dest.is_empty()) {
            cx.err(item.pos, format!("each `{field}` needs `src` and `dest`"));
        }
        out.push(copy);
    }
    out
}

impl Kind for SshStep {
    const NAMES: &'static [&'static str] = &["ssh"];
    const KEYS: &'static [&'static str] = &[
        "hosts",
        "parallel",
        "fail_fast",
        "min_success",
        "upload",
        "download",
        "sudo",
    ];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let mut step = Self {
            target: String::new(),
            command: String::new(),
            parallel: 10,
            fail_fast: false,
            min_success: MinSuccess::All,
            sudo: false,
            resolved: Vec::new(),
            home: PathBuf::new(),
            uploads: Vec::new(),
            downloads: Vec::new(),
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
        if let Some(v) = node.get("sudo")
            && let Some(b) = cx.r.boolean(v, "sudo")
        {
            step.sudo = b;
        }
        if let Some(v) = node.get("min_success")
            && let Some(text) = cx.r.string(v, "min_success")
        {
            match MinSuccess::parse(&text) {
                Ok(m) => step.min_success = m,
                Err(e) => cx.err(v.pos, e),
            }
        }
        if let Some(v) = node.get("upload") {
            step.uploads = read_copies(cx, v, "upload");
        }
        if let Some(v) = node.get("download") {
            step.downloads = read_copies(cx, v, "download");
        }
        let command = node.get("command").and_then(|c| {
            let text = cx.string(c, "command")?;
            cx.shell_template(c, &text);
            Some(text)
        });
        match command {
            Some(c) if !c.trim().is_empty() => step.command = c,
            None if !step.uploads.is_empty() || !step.downloads.is_empty() => {}
            _ => {
                cx.err(
                    node.pos,
                    format!("ssh step `{name}` has no `command` (nor `upload`/`download`)"),
                );
                return None;
            }
        }
        Some(step)
    }

    fn describe(&self) -> String {
        let sudo = if self.sudo { "sudo " } else { "" };
        format!("on {}: {sudo}{}", self.target, self.command)
    }

    fn templates(&self) -> Vec<&str> {
        let mut v = vec![self.command.as_str(), self.target.as_str()];
        for c in self.uploads.iter().chain(&self.downloads) {
            v.push(&c.src);
            v.push(&c.dest);
        }
        v
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
            sudo: self.sudo,
            resolved,
            home: cx.dirs.home.clone(),
            uploads: render_copies(cx, &self.uploads)?,
            downloads: render_copies(cx, &self.downloads)?,
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
            sudo: self.sudo,
        };
        // Uploads first: a host whose upload failed runs nothing more.
        let mut failed: Vec<(Host, String)> = Vec::new();
        let mut ready = self.resolved.clone();
        if !self.uploads.is_empty() {
            let pool = &pool;
            let outcomes: Vec<(Host, Result<(), String>)> =
                stream::iter(self.resolved.iter().cloned())
                    .map(|h| async move {
                        for u in &self.uploads {
                            let r =
                                ssh::transfer::upload(pool, &h, Path::new(&u.src), &u.dest, u.mode)
                                    .await;
                            if let Err(e) = r {
                                return (h, Err(format!("upload of {} failed: {e}", u.src)));
                            }
                        }
                        (h, Ok(()))
                    })
                    .buffer_unordered(self.parallel.max(1))
                    .collect()
                    .await;
            ready = Vec::new();
            for (h, r) in outcomes {
                match r {
                    Ok(()) => ready.push(h),
                    Err(e) => failed.push((h, e)),
                }
            }
            ready.sort_by_key(|h| self.resolved.iter().position(|x| x.alias == h.alias));
        }
        let mut results = if self.command.trim().is_empty() {
            ready
                .into_iter()
                .map(|h| {
                    let out = ssh::Output {
                        exit_code: Some(0),
                        ..ssh::Output::default()
                    };
                    (h, out)
                })
                .collect()
        } else {
            // The hosts as they finish, for the decision after a crash (see interrupted_note).
            let journal = ssh::journal::Journal::create(
                &ssh::journal::path_for(&input.log_path),
                &self.resolved,
            )
            .ok()
            .map(Arc::new);
            if let Some(j) = &journal {
                for (h, e) in &failed {
                    j.record(
                        &h.alias,
                        &ssh::Output {
                            error: Some(e.clone()),
                            ..ssh::Output::default()
                        },
                    );
                }
            }
            ssh::fan_out_journaled(
                &pool,
                &ready,
                &cmd,
                FanOut {
                    parallel: self.parallel,
                    fail_fast: self.fail_fast,
                },
                &rt.cancel,
                Arc::new(|_: &str, _: bool, _: &[u8]| {}),
                journal,
            )
            .await
        };
        for (h, out) in results.iter_mut().filter(|(_, o)| o.ok()) {
            for d in &self.downloads {
                let name = Path::new(&d.src)
                    .file_name()
                    .map_or_else(|| "download".into(), |n| n.to_string_lossy().into_owned());
                let dir = Path::new(&d.dest).join(&h.alias);
                if let Err(e) = crate::fsutil::create_dirs_private(&dir) {
                    out.error = Some(format!("cannot create {}: {e}", dir.display()));
                    break;
                }
                if let Err(e) = ssh::transfer::download(&pool, h, &d.src, &dir.join(&name)).await {
                    out.error = Some(format!("download of {} failed: {e}", d.src));
                    break;
                }
            }
        }
        for (h, e) in failed {
            let out = ssh::Output {
                error: Some(e),
                ..ssh::Output::default()
            };
            results.push((h, out));
        }
        results.sort_by_key(|(h, _)| self.resolved.iter().position(|x| x.alias == h.alias));
        report(self, &results, input, rt.cancel.is_cancelled())
    }

    fn interrupted_note(&self, log_path: &Path) -> Option<String> {
        ssh::journal::summary(&ssh::journal::path_for(log_path))
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

    fn policy_subjects(&self) -> Vec<crate::policy::Subject> {
        let mut out = vec![crate::policy::Subject::Command(self.command.clone())];
        out.extend(
            self.uploads
                .iter()
                .map(|u| crate::policy::Subject::File(u.src.clone().into())),
        );
        out
    }

    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("hosts", self.target.clone().into()),
            ("command", self.command.clone().into()),
            ("sudo", self.sudo.into()),
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

fn render_copies(cx: &PrepareCx<'_>, copies: &[FileCopy]) -> Result<Vec<FileCopy>, String> {
    copies
        .iter()
        .map(|c| {
            Ok(FileCopy {
                src: cx.plain(&c.src)?,
                dest: cx.plain(&c.dest)?,
                mode: c.mode,
            })
        })
        .collect()
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

//! What a rule does with an event: `shell`, `move`, `copy`, `workflow`, `skill`. Every action run
//! is written to the audit log (`watcher.action`, actor `watcher:<rule>`).

use crate::steps::shell::ShellStep;
use crate::steps::{self, Runtime, StepInput, StepKind};
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::rules::{ACTION_TIMEOUT, ActionKind, Rule};
use super::watcher::FsEvent;
use crate::audit::{AuditLog, Event};
use crate::config::{Dirs, Settings};
use crate::store::RunRecord;
use crate::triggers::launch::Launcher;

/// How an action went.
#[derive(Debug)]
pub enum Outcome {
    /// Done: what it did.
    Done(String),
    Failed(String),
    /// A workflow run was created; `finished` reports its end when this process drives it.
    Started {
        run_id: String,
        finished: Option<tokio::sync::oneshot::Receiver<Result<RunRecord, String>>>,
    },
}

impl Outcome {
    fn audit_outcome(&self) -> &'static str {
        match self {
            Self::Done(_) => "ok",
            Self::Failed(_) => "failed",
            Self::Started { .. } => "started",
        }
    }
}

/// Runs rules' actions. The daemon holds one and calls [`Dispatcher::dispatch`] for each event.
#[derive(Debug)]
pub struct Dispatcher {
    pub dirs: Dirs,
    pub settings: Settings,
    audit: AuditLog,
    /// For `workflow` actions; without one they fail, saying so.
    pub launcher: Option<Launcher>,
    pub cancel: CancellationToken,
}

impl Dispatcher {
    pub fn new(
        dirs: Dirs,
        settings: Settings,
        launcher: Option<Launcher>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            audit: AuditLog::in_dir(&dirs.home),
            dirs,
            settings,
            launcher,
            cancel,
        }
    }

    /// Runs `rule`'s action for `event` and audits it. A failed action is an [`Outcome`], and a
    /// failure to write the audit log is appended to its text (it never stops the watcher).
    pub async fn dispatch(&self, rule: &Rule, event: &FsEvent) -> Outcome {
        let mut outcome = match rule.action {
            ActionKind::Shell => self.shell(rule, event).await,
            ActionKind::Move => transfer(rule, event, true),
            ActionKind::Copy => transfer(rule, event, false),
            ActionKind::Workflow => self.workflow(rule, event),
            ActionKind::Skill => self.skill(rule, event).await,
        };
        let mut detail = serde_json::json!({
            "rule": rule.name,
            "event": event.kind.as_str(),
            "action": rule.action.as_str(),
        });
        match &outcome {
            Outcome::Started { run_id, .. } => detail["run_id"] = run_id.clone().into(),
            Outcome::Failed(why) => detail["error"] = why.clone().into(),
            Outcome::Done(_) => {}
        }
        let entry = Event::new(
            &format!("watcher:{}", rule.name),
            crate::audit::Action::WatcherAction,
            &event.path.display().to_string(),
            outcome.audit_outcome(),
            detail,
        );
        if let Err(e) = self.audit.record(&entry) {
            match &mut outcome {
                Outcome::Done(s) | Outcome::Failed(s) => {
                    s.push_str(&format!(" (warning: not audited: {e})"));
                }
                Outcome::Started { .. } => {}
            }
        }
        outcome
    }

    /// The step input an action's process runs with (its log in `logs/watchers/<rule>.log`).
    fn action_input(&self, rule: &Rule, event: &FsEvent) -> Result<StepInput, Outcome> {
        let log_dir = self.dirs.home.join("logs").join("watchers");
        if let Err(e) = crate::fsutil::create_dirs_private(&log_dir) {
            return Err(Outcome::Failed(format!(
                "cannot create {}: {e}",
                log_dir.display()
            )));
        }
        let mut shell = ShellStep::from_command(rule.command.clone());
        shell.cwd = rule.dir.is_dir().then(|| rule.dir.display().to_string());
        Ok(StepInput {
            kind: StepKind::Shell(shell),
            run_id: format!("watcher:{}", rule.name),
            step: rule.name.clone(),
            attempt: 1,
            env: shell_env(rule, event),
            timeout: ACTION_TIMEOUT,
            kill_grace: self.settings.kill_grace,
            log_path: log_dir.join(format!("{}.log", rule.name)),
            max_log_bytes: self.settings.max_step_log_bytes,
            outputs_path: log_dir.join(format!("{}.out", rule.name)),
            redactor: crate::redact::Redactor::new(std::iter::empty::<&str>()),
        })
    }

    async fn shell(&self, rule: &Rule, event: &FsEvent) -> Outcome {
        let input = match self.action_input(rule, event) {
            Ok(i) => i,
            Err(o) => return o,
        };
        let report = steps::run(&input, &Runtime::detached(self.cancel.clone())).await;
        let _ = std::fs::remove_file(&input.outputs_path);
        report_outcome(&report)
    }

    /// The seed's skill action: the skill named by `command` with the rule's `args` plus
    /// `file=<path>`, run as `claw skill run` runs it (its own environment, vault grants,
    /// Landlock, `skill.run` audit entry).
    async fn skill(&self, rule: &Rule, event: &FsEvent) -> Outcome {
        let input = match self.action_input(rule, event) {
            Ok(i) => i,
            Err(o) => return o,
        };
        let args = rule
            .args
            .iter()
            .map(|(k, v)| (k.clone(), scalar_text(v)))
            .chain([("file".to_owned(), event.path.display().to_string())]);
        let mut cmd = match crate::skills::runner::cli_command(&self.dirs, &rule.command, args) {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("cannot find the claw binary: {e}")),
        };
        let cwd = rule.dir.is_dir().then(|| rule.dir.clone());
        if let Some(cwd) = &cwd {
            cmd.current_dir(cwd);
        }
        let what = format!("skill {}", rule.command.trim());
        let report = steps::shell::run_command(cmd, &what, cwd, &input, &self.cancel).await;
        let _ = std::fs::remove_file(&input.outputs_path);
        report_outcome(&report)
    }

    fn workflow(&self, rule: &Rule, event: &FsEvent) -> Outcome {
        let Some(launcher) = &self.launcher else {
            return Outcome::Failed("workflow actions need the engine (not available here)".into());
        };
        let mut trigger = serde_json::json!({
            "type": "watcher",
            "rule": rule.name,
            "path": event.path.display().to_string(),
            "event": event.kind.as_str(),
        });
        if let Some(from) = &event.from {
            trigger["from"] = from.display().to_string().into();
        }
        let given: Vec<(String, String)> = rule
            .args
            .iter()
            .map(|(k, v)| (k.clone(), scalar_text(v)))
            .collect();
        match launcher.start_named(rule.command.trim(), &given, trigger) {
            Ok(started) => Outcome::Started {
                run_id: started.run.id,
                finished: started.finished,
            },
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// The single call site of skills from watchers: the skills subsystem is not in this build yet.
/// An action's process, as an [`Outcome`] (the last line of its output or error).
fn report_outcome(report: &crate::steps::StepReport) -> Outcome {
    let out = report.stdout.trim_end();
    match &report.outcome {
        crate::steps::StepOutcome::Succeeded => Outcome::Done(if out.is_empty() {
            "exit 0".to_owned()
        } else {
            format!("exit 0: {}", last_line(out))
        }),
        crate::steps::StepOutcome::Failed { reason } => {
            let err = report.stderr_tail.trim_end();
            Outcome::Failed(if err.is_empty() {
                reason.clone()
            } else {
                format!("{reason}: {}", last_line(err))
            })
        }
        crate::steps::StepOutcome::Cancelled => Outcome::Failed("cancelled".into()),
    }
}

/// The environment of a shell action: the seed's `WATCHER_FILE` and `WATCHER_<ARG>`, plus
/// `WATCHER_EVENT`, `WATCHER_RULE` and, for a move, `WATCHER_FROM`.
pub fn shell_env(rule: &Rule, event: &FsEvent) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = rule
        .args
        .iter()
        .map(|(k, v)| {
            (
                format!("WATCHER_{}", k.to_ascii_uppercase()),
                scalar_text(v),
            )
        })
        .collect();
    env.push(("WATCHER_FILE".into(), event.path.display().to_string()));
    env.push(("WATCHER_EVENT".into(), event.kind.as_str().into()));
    env.push(("WATCHER_RULE".into(), rule.name.clone()));
    if let Some(from) = &event.from {
        env.push(("WATCHER_FROM".into(), from.display().to_string()));
    }
    env
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or_default()
}

/// The destination directory of a move or copy (`command:`, as in the seed; `~` expanded).
pub fn destination(rule: &Rule) -> PathBuf {
    let c = rule.command.trim();
    match (c.strip_prefix("~/"), crate::config::env::var("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ if Path::new(c).is_relative() => rule.dir.join(c),
        _ => PathBuf::from(c),
    }
}

/// Moves or copies the event's file into the destination directory, keeping its name. A move
/// refuses to replace a file already there (as the seed's `shutil.move` does); a copy replaces it.
fn transfer(rule: &Rule, event: &FsEvent, is_move: bool) -> Outcome {
    let verb = if is_move { "move" } else { "copy" };
    let dest_dir = destination(rule);
    let Some(name) = event.path.file_name() else {
        return Outcome::Failed(format!("{} has no file name", event.path.display()));
    };
    if !event.path.is_file() {
        return Outcome::Failed(format!(
            "cannot {verb} {}: it is not a file (any more)",
            event.path.display()
        ));
    }
    if let Err(e) = std::fs::create_dir_all(&dest_dir) {
        return Outcome::Failed(format!("cannot create {}: {e}", dest_dir.display()));
    }
    let dest = dest_dir.join(name);
    let result = if is_move {
        if dest.exists() {
            return Outcome::Failed(format!(
                "cannot move {}: {} already exists",
                event.path.display(),
                dest.display()
            ));
        }
        std::fs::rename(&event.path, &dest).or_else(|e| {
            // Another file system: copy, then remove the original.
            if e.raw_os_error() == Some(nix::libc::EXDEV) {
                copy_with_metadata(&event.path, &dest)?;
                std::fs::remove_file(&event.path)
            } else {
                Err(e)
            }
        })
    } else {
        copy_with_metadata(&event.path, &dest)
    };
    match result {
        Ok(()) => Outcome::Done(format!("{verb}d to {}", dest.display())),
        Err(e) => Outcome::Failed(format!(
            "cannot {verb} {} to {}: {e}",
            event.path.display(),
            dest.display()
        )),
    }
}

/// `shutil.copy2`: contents, permissions, and access and modification times.
fn copy_with_metadata(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    let meta = std::fs::metadata(from)?;
    let times = std::fs::FileTimes::new()
        .set_accessed(meta.accessed()?)
        .set_modified(meta.modified()?);
    std::fs::File::options()
        .write(true)
        .open(to)?
        .set_times(times)
}

/// What `rule` would do for `event`, in words (`claw watcher test` without `--run`).
pub fn describe(rule: &Rule, event: &FsEvent) -> String {
    match rule.action {
        ActionKind::Shell => {
            let env: Vec<String> = shell_env(rule, event)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("run `/bin/sh -c {}` with {}", rule.command, env.join(" "))
        }
        ActionKind::Move | ActionKind::Copy => format!(
            "{} {} into {}",
            rule.action.as_str(),
            event.path.display(),
            destination(rule).display()
        ),
        ActionKind::Workflow => format!(
            "start workflow `{}` with trigger.path={} trigger.event={}",
            rule.command.trim(),
            event.path.display(),
            event.kind
        ),
        ActionKind::Skill => format!(
            "run skill `{}` with its args and file={}",
            rule.command.trim(),
            event.path.display()
        ),
    }
}

//! The skill step: runs a skill from `skills/` (`type: skill`, `skill: NAME` or the seed's
//! `command: NAME`; the step's `args` are the skill's arguments, reaching the script as
//! `SKILL_<KEY>`).
//!
//! ```yaml
//! - name: backup
//!   type: skill
//!   skill: backup-postgres
//!   args: {database: app}
//! ```
//!
//! Before each attempt the skill is looked up and checked (script, dependencies, arguments,
//! vault grants) into a [`Launch`]: what cannot work fails the step before anything starts. It
//! then runs the way a shell step runs (own process group, capped log, masked output, timeout
//! and cancellation that stop the whole group, `$CLAW_OUTPUT` outputs), but with the skill's
//! stripped environment and, when it declares `paths:`, under Landlock. Whether the skill exists
//! is not checked when the file is validated (that is pure), but by `workflow validate --env`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    AttemptAudit, Kind, LoadCx, PrepareCx, Runtime, StepInput, StepOutcome, StepReport, shell,
};
use crate::config::Dirs;
use crate::skills::runner::Launch;
use crate::yaml::Node;

/// A skill step: the skill's name; its arguments are the step's `args`.
#[derive(Debug, Clone)]
pub struct SkillStep {
    pub name: String,
    /// The step's own `timeout:`, which overrides the skill's; without one the manifest decides.
    pub timeout: Option<Duration>,
    /// The prepared launch (set by [`Kind::prepare`] for an attempt).
    pub launch: Option<Box<Launch>>,
}

impl Kind for SkillStep {
    const NAMES: &'static [&'static str] = &["skill"];
    const KEYS: &'static [&'static str] = &["skill"];

    fn load(cx: &mut LoadCx<'_>, node: &Node) -> Option<Self> {
        let Some(field) = node.get("skill").or_else(|| node.get("command")) else {
            let step = cx.step.to_owned();
            cx.err(
                node.pos,
                format!("step `{step}` (skill) needs `skill: NAME` (the skill to run)"),
            );
            return None;
        };
        let name = cx.string(field, "skill")?;
        if name.contains("${{") {
            cx.err(
                field.pos,
                "the skill must be named literally (it is looked up before the run), not with an expression",
            );
            return None;
        }
        if !crate::skills::manifest::valid_name(name.trim()) {
            cx.err(
                field.pos,
                format!("`{name}` is not a skill name (letters, digits, `-`, `_`, `.`)"),
            );
            return None;
        }
        Some(Self {
            name: name.trim().to_owned(),
            timeout: cx.timeout,
            launch: None,
        })
    }

    fn describe(&self) -> String {
        format!("run skill {}", self.name)
    }

    fn templates(&self) -> Vec<&str> {
        Vec::new()
    }

    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Self, String> {
        let launch = crate::skills::runner::prepare_step(
            cx.dirs,
            &self.name,
            self.timeout,
            cx.args,
            cx.outputs_path,
        )?;
        cx.new_secrets
            .extend(launch.secret_values().map(str::to_owned));
        Ok(Self {
            name: self.name.clone(),
            timeout: self.timeout,
            launch: Some(Box::new(launch)),
        })
    }

    fn timeout(&self) -> Option<Duration> {
        self.launch.as_ref().map(|l| l.timeout)
    }

    fn audit(&self, a: &AttemptAudit<'_>) -> Option<crate::audit::Event> {
        let detail = serde_json::json!({
            "run": a.run_id,
            "workflow": a.workflow,
            "step": a.step,
            "exit_code": a.exit_code,
            "reason": a.reason,
        });
        Some(crate::skills::audit_event(
            a.actor, &self.name, a.outcome, detail,
        ))
    }

    async fn run(&self, input: &StepInput, rt: &Runtime) -> StepReport {
        let Some(launch) = self.launch.as_deref() else {
            return StepReport::failed("the skill was not prepared (an engine fault)");
        };
        run_launch(launch, input, &rt.cancel, false).await
    }

    fn environment_problems(&self, dirs: &Dirs) -> Vec<String> {
        crate::skills::runner::environment_problems(dirs, &self.name)
    }

    fn show(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![("skill", self.name.clone().into())]
    }

    fn policy_subjects(&self) -> Vec<crate::policy::Subject> {
        self.launch
            .as_deref()
            .map(|l| vec![crate::policy::Subject::Command(launch_text(l))])
            .unwrap_or_default()
    }
}

/// A skill's launch as the policies see it: `skill NAME: PROGRAM ARGS…`.
pub fn launch_text(l: &Launch) -> String {
    let mut text = format!("skill {}: {}", l.skill, l.program.to_string_lossy());
    for a in &l.args {
        text.push(' ');
        text.push_str(&a.to_string_lossy());
    }
    text
}

/// Runs `launch` with the log, timeout and outputs of `input`. With `echo`, output is also
/// copied to claw's own stdout and stderr (`claw skill run`).
pub async fn run_launch(
    launch: &Launch,
    input: &StepInput,
    cancel: &CancellationToken,
    echo: bool,
) -> StepReport {
    let launcher = if launch.confinement.is_some() {
        match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                return StepReport::failed(format!(
                    "cannot find claw's own executable to confine the skill: {e}"
                ));
            }
        }
    } else {
        std::path::PathBuf::new()
    };
    let cmd = launch.command(&launcher);
    let what = format!("skill {}", launch.skill);
    let mut spec = shell::spec(&what, input, echo);
    spec.cwd = Some(launch.cwd.clone());
    let done = crate::proc::run(cmd, &spec, cancel).await;
    let mut report = shell::report(done, input, false);
    // The launcher's own refusals (exit 126/127 before the script ran) read better with a name.
    if let StepOutcome::Failed { reason } = &mut report.outcome
        && launch.confinement.is_some()
        && matches!(report.exit_code, Some(126 | 127))
        && report.stderr_tail.starts_with("claw: ")
    {
        *reason = format!(
            "{reason}: {}",
            report.stderr_tail.trim().trim_start_matches("claw: ")
        );
    }
    report
}

/// Runs a skill because a person asked (`claw skill run`, a dashboard button), the way a step
/// runs it (prepared and checked first, its stripped environment, Landlock where it declares
/// `paths:`, the supervisor), with its output also on claw's own stdout and stderr and its log
/// in `logs/skills/<name>/`. Audited as `skill.run` by `actor`: refused before it starts, or with
/// how it ended. A refusal is the `Err`; a run that fails is a report.
pub async fn run_by_hand(
    dirs: &Dirs,
    settings: &crate::config::Settings,
    skill: &crate::skills::Skill,
    args: &[(String, String)],
    timeout: Option<Duration>,
    actor: &str,
    cancel: &CancellationToken,
) -> Result<StepReport, crate::skills::SkillError> {
    run_by_hand_echo(dirs, settings, skill, args, timeout, actor, cancel, true).await
}

/// [`run_by_hand`], with the skill's output on claw's own stdout and stderr only when `echo`
/// (intake runs several at once and reports their output itself).
#[allow(clippy::too_many_arguments)]
pub async fn run_by_hand_echo(
    dirs: &Dirs,
    settings: &crate::config::Settings,
    skill: &crate::skills::Skill,
    args: &[(String, String)],
    timeout: Option<Duration>,
    actor: &str,
    cancel: &CancellationToken,
    echo: bool,
) -> Result<StepReport, crate::skills::SkillError> {
    let name = skill.name().to_owned();
    let arg_names: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
    let audit = |outcome: &str, detail: serde_json::Value| {
        let event = crate::skills::audit_event(actor, &name, outcome, detail);
        if let Err(e) = crate::audit::AuditLog::in_dir(&dirs.home).record(&event) {
            tracing::warn!(skill = %name, "not audited: {e}");
        }
    };
    let stamp = crate::time::compact_local_millis(chrono::Utc::now());
    let log_dir = dirs.home.join("logs").join("skills").join(&name);
    if let Err(e) = dirs
        .ensure_home()
        .and_then(|()| crate::fsutil::create_dirs_private(&log_dir))
    {
        return Ok(StepReport::failed_for_good(format!(
            "cannot create {}: {e}",
            log_dir.display()
        )));
    }
    let outputs_path = log_dir.join(format!("{stamp}.out"));
    let mut cx = crate::skills::runner::LaunchContext::from_process(&dirs.home);
    cx.outputs_path = Some(outputs_path.clone());
    cx.timeout = timeout;
    let launch = match crate::skills::runner::prepare(skill, args, &cx) {
        Ok(l) => l,
        Err(e) => {
            audit(
                "refused",
                serde_json::json!({"args": arg_names, "reason": e.to_string()}),
            );
            return Err(e);
        }
    };
    // The command policies: no run to hold a gate here, so approval means refused.
    let subjects = [crate::policy::Subject::Command(launch_text(&launch))];
    let refused = match crate::policy::gate("skill", actor, &format!("skill:{name}"), &subjects) {
        crate::policy::Gate::Allow => None,
        crate::policy::Gate::Deny(why) => Some(why),
        crate::policy::Gate::RequireApproval { rule, message } => {
            Some(crate::policy::refuse_without_run(&rule, &message))
        }
    };
    if let Some(why) = refused {
        audit(
            "refused",
            serde_json::json!({"args": arg_names, "reason": "policy"}),
        );
        return Ok(StepReport::failed_for_good(why));
    }
    let input = StepInput {
        timeout: launch.timeout,
        redactor: launch.redactor(),
        kind: super::StepKind::Skill(SkillStep {
            name: name.clone(),
            timeout,
            launch: None,
        }),
        run_id: format!("skill:{stamp}"),
        step: name.clone(),
        attempt: 1,
        env: Vec::new(),
        kill_grace: settings.kill_grace,
        log_path: log_dir.join(format!("{stamp}.log")),
        max_log_bytes: settings.max_step_log_bytes,
        outputs_path,
    };
    let report = run_launch(&launch, &input, cancel, echo).await;
    let outcome = match &report.outcome {
        StepOutcome::Succeeded => "ok",
        StepOutcome::Cancelled => "cancelled",
        StepOutcome::Failed { .. } => "failed",
    };
    audit(
        outcome,
        serde_json::json!({"args": arg_names, "exit_code": report.exit_code}),
    );
    Ok(report)
}

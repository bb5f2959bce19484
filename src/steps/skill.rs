//! The skill step: runs a skill prepared by the engine ([`crate::skills::runner::Launch`]) the way
//! a shell step runs a command (own process group, capped log, masked output, timeout and
//! cancellation that stop the whole group, `$CLAW_OUTPUT` outputs), but with the skill's stripped
//! environment and, when it declares `paths:`, under Landlock.

use tokio_util::sync::CancellationToken;

use super::{StepInput, StepReport, shell};
use crate::skills::runner::Launch;

/// Runs one attempt of a skill step.
pub async fn run(input: &StepInput, cancel: &CancellationToken) -> StepReport {
    let Some(launch) = input.skill.as_deref() else {
        return StepReport::failed("the skill was not prepared (an engine fault)");
    };
    run_launch(launch, input, cancel, false).await
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
    let mut report = shell::supervise(cmd, &what, input, false, cancel, echo).await;
    // The launcher's own refusals (exit 126/127 before the script ran) read better with a name.
    if let super::StepOutcome::Failed { reason } = &mut report.outcome
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

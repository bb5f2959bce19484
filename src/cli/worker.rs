//! `claw worker`: execute queued runs from the shared PostgreSQL store (docs/scale-out.md).

use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx};
use crate::worker::{self, Options};

#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    /// Runs executed at once.
    #[arg(long, value_name = "N", default_value_t = worker::DEFAULT_SLOTS)]
    slots: usize,
    /// This worker's labels (comma-separated): it claims only runs whose workflow's `runs_on:`
    /// labels are all among them (a workflow without `runs_on` runs on any worker).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    labels: Vec<String>,
    /// How long a claim lasts without renewal; renewed every third of it. Another worker takes
    /// over a run whose worker died once its lease has expired (e.g. 30s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    lease: String,
    /// How long running runs may take to finish after SIGTERM/SIGINT before their steps are
    /// stopped and recorded interrupted (the runs are then released to other workers).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    grace: String,
}

pub(crate) fn run(ctx: &Ctx, args: WorkerArgs) -> CliResult {
    let parse = |flag: &str, v: &str| {
        crate::time::duration::parse(v)
            .map_err(|e| CliError::usage(format!("invalid --{flag} `{v}`: {e}")))
    };
    let lease = parse("lease", &args.lease)?;
    if lease < std::time::Duration::from_secs(3) {
        return Err(CliError::usage(format!(
            "invalid --lease `{}`: at least 3s (it is renewed every third of it)",
            args.lease
        )));
    }
    if args.slots == 0 {
        return Err(CliError::usage("invalid --slots 0: at least 1"));
    }
    let labels: Vec<String> = args
        .labels
        .iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let opts = Options {
        slots: args.slots,
        labels,
        lease,
        grace: parse("grace", &args.grace)?,
    };
    Ok(worker::run(
        ctx.dirs.clone(),
        ctx.settings()?,
        &opts,
        CancellationToken::new(),
    )?)
}

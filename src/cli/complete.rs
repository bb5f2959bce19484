//! Shell completion: `claw completions SHELL` prints a script that asks claw itself for the
//! candidates on every Tab press (clap_complete's dynamic engine, through `CLAW_COMPLETE`), so
//! workflow names, run ids, job names and skill names come from the data directory and config
//! root as they are now, not as they were when the script was written.

use std::io::Write as _;

use clap::CommandFactory as _;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{CompleteEnv, Shells};

use super::{Cli, CliError, CliResult};
use crate::config::paths::Dirs;

/// The environment variable the completion script sets when it calls claw.
const VAR: &str = "CLAW_COMPLETE";

/// The shells `claw completions` writes a script for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

impl Shell {
    fn name(self) -> &'static str {
        match self {
            Self::Bash => "bash",
            Self::Zsh => "zsh",
            Self::Fish => "fish",
            Self::Elvish => "elvish",
            Self::Powershell => "powershell",
        }
    }
}

/// Answers a completion request when `CLAW_COMPLETE` is set (the script's call); `true` when it
/// did and claw should exit.
pub(crate) fn answer(args: &[std::ffi::OsString]) -> bool {
    let cwd = std::env::current_dir().ok();
    match CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .try_complete(args.iter().cloned(), cwd.as_deref())
    {
        Ok(done) => done,
        Err(e) => {
            let _ = e.print();
            true
        }
    }
}

/// `claw completions SHELL`: the registration script, calling `claw` from PATH.
pub(crate) fn script(shell: Shell) -> CliResult {
    let shells = Shells::builtins();
    let completer = shells
        .completer(shell.name())
        .ok_or_else(|| CliError::internal(format!("no completion support for {}", shell.name())))?;
    let mut buf = Vec::new();
    completer
        .write_registration(VAR, "claw", "claw", "claw", &mut buf)
        .map_err(|e| CliError::internal(format!("cannot write the completion script: {e}")))?;
    // A closed pipe (`claw completions bash | head`) is not an error.
    let _ = std::io::stdout().write_all(&buf);
    Ok(())
}

/// `claw man`: the manual page (roff).
pub(crate) fn man() -> CliResult {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| CliError::internal(format!("cannot write the manual page: {e}")))?;
    let _ = std::io::stdout().write_all(&buf);
    Ok(())
}

/// The directories as a plain `claw` would use them (flags on the line being completed are not
/// seen; CLAW_HOME and CLAW_ROOT are).
fn dirs() -> Option<Dirs> {
    Dirs::resolve(None, None).ok()
}

fn workflows() -> Vec<CompletionCandidate> {
    let Some(dirs) = dirs() else {
        return Vec::new();
    };
    let mut names: Vec<String> = crate::workflow::catalogue::Catalogue::new(&dirs)
        .files()
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

fn runs() -> Vec<CompletionCandidate> {
    let Some(dirs) = dirs() else {
        return Vec::new();
    };
    // Only an existing store: completing must never create a data directory.
    if !dirs.db_path().is_file() {
        return Vec::new();
    }
    let Ok(store) = crate::store::SqliteStore::open(&dirs.db_path()) else {
        return Vec::new();
    };
    let filter = crate::store::RunFilter {
        limit: Some(50),
        ..Default::default()
    };
    use crate::store::Store as _;
    store
        .list_runs(&filter)
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            CompletionCandidate::new(r.id).help(Some(format!("{} {}", r.workflow, r.status).into()))
        })
        .collect()
}

fn jobs() -> Vec<CompletionCandidate> {
    let Some(dirs) = dirs() else {
        return Vec::new();
    };
    crate::triggers::cron::jobs::JobsFile::in_home(&dirs.home)
        .load()
        .unwrap_or_default()
        .into_iter()
        .map(|j| CompletionCandidate::new(j.name).help(Some(j.schedule.into())))
        .collect()
}

fn skills() -> Vec<CompletionCandidate> {
    let Some(dirs) = dirs() else {
        return Vec::new();
    };
    crate::skills::discover(&dirs)
        .skills
        .iter()
        .map(|s| CompletionCandidate::new(s.name()))
        .collect()
}

/// Candidates for a workflow argument.
pub(crate) fn workflow_names() -> ArgValueCandidates {
    ArgValueCandidates::new(workflows)
}

/// Candidates for a run argument (the newest 50 runs).
pub(crate) fn run_ids() -> ArgValueCandidates {
    ArgValueCandidates::new(runs)
}

/// Candidates for a cron job argument (by name).
pub(crate) fn job_names() -> ArgValueCandidates {
    ArgValueCandidates::new(jobs)
}

/// Candidates for a skill argument.
pub(crate) fn skill_names() -> ArgValueCandidates {
    ArgValueCandidates::new(skills)
}

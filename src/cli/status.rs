//! `claw status`: one screen on every subsystem, as the seed's `claw status` gave (and its
//! dashboard's `GET /api/status`: `{subsystems: [{name, ok, detail, count}]}`).

use chrono::Utc;

use super::output;
use super::{CliResult, Ctx};
use crate::store::{RunFilter, RunStatus};

/// One line of the summary.
#[derive(Debug, serde::Serialize)]
struct Subsystem {
    name: &'static str,
    ok: bool,
    detail: String,
    count: Option<usize>,
}

impl Subsystem {
    fn new(name: &'static str, ok: bool, detail: impl Into<String>, count: Option<usize>) -> Self {
        Self {
            name,
            ok,
            detail: detail.into(),
            count,
        }
    }
}

pub(crate) fn run(ctx: &Ctx, json: bool) -> CliResult {
    let dirs = &ctx.dirs;
    let mut out = Vec::new();

    let daemon = crate::serve::lease::holder(&dirs.home);
    let seed = crate::serve::lease::seed_daemon(&dirs.home);
    out.push(match (&daemon, &seed) {
        (Some(pid), _) => Subsystem::new(
            "daemon",
            true,
            format!(
                "running{}",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
            None,
        ),
        (None, Some((pid, _))) => Subsystem::new(
            "daemon",
            false,
            format!("not running; the seed's cron daemon is (pid {pid}): `claw serve --take-over`"),
            None,
        ),
        (None, None) => Subsystem::new("daemon", false, "not running (`claw serve`)", None),
    });

    let files = super::workflow::all_files(ctx);
    let broken = files
        .iter()
        .filter(|f| crate::workflow::load::load_file(f).is_err())
        .count();
    out.push(Subsystem::new(
        "workflows",
        broken == 0,
        if broken == 0 {
            format!("{} valid", files.len())
        } else {
            format!(
                "{broken} of {} invalid (`claw workflow validate`)",
                files.len()
            )
        },
        Some(files.len()),
    ));

    let engine = ctx.engine()?;
    let unfinished = engine.store.unfinished_runs(None)?;
    let count = |s: RunStatus| unfinished.iter().filter(|r| r.status == s).count();
    let day_ago = crate::time::ms(Utc::now()) - 24 * 3600 * 1000;
    let failed = engine
        .store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            limit: Some(1000),
            ..Default::default()
        })?
        .into_iter()
        .filter(|r| r.created_at >= day_ago)
        .count();
    let waiting = count(RunStatus::Waiting);
    out.push(Subsystem::new(
        "runs",
        failed == 0,
        format!(
            "{} running, {} queued, {waiting} waiting for a decision, {failed} failed in 24 h",
            count(RunStatus::Running),
            count(RunStatus::Queued)
        ),
        Some(unfinished.len()),
    ));

    let jobs = crate::triggers::cron::jobs::JobsFile::in_home(&dirs.home).load();
    let sources = crate::triggers::cron::sources::load_sources(dirs);
    let next = sources
        .entries
        .iter()
        .filter_map(|e| {
            e.schedule
                .next_after(Utc::now())
                .map(|t| (t, e.label.clone()))
        })
        .min_by_key(|(t, _)| *t);
    out.push(match jobs {
        Ok(jobs) => {
            let enabled = jobs.iter().filter(|j| j.is_enabled()).count();
            let mut detail = format!(
                "{} job(s), {enabled} enabled; {} schedule(s)",
                jobs.len(),
                sources.entries.len()
            );
            if let Some((t, label)) = next {
                detail.push_str(&format!("; next: {label} at {}", crate::time::local(t)));
            }
            Subsystem::new(
                "cron",
                sources.problems.is_empty(),
                detail,
                Some(jobs.len()),
            )
        }
        Err(e) => Subsystem::new("cron", false, e.to_string(), None),
    });

    let watchers = match crate::triggers::watch::rules::load(dirs) {
        Ok(set) => {
            let n = set.rules.len();
            let on = set.enabled().count();
            Subsystem::new(
                "watchers",
                true,
                format!("{n} rule(s), {on} enabled"),
                Some(n),
            )
        }
        Err(e) => Subsystem::new("watchers", false, e.render(), None),
    };
    out.push(watchers);

    let skills = crate::skills::discover(dirs);
    out.push(Subsystem::new(
        "skills",
        skills.broken.is_empty(),
        if skills.broken.is_empty() {
            format!("{} skill(s)", skills.skills.len())
        } else {
            format!(
                "{} skill(s), {} broken manifest(s) (`claw skill list`)",
                skills.skills.len(),
                skills.broken.len()
            )
        },
        Some(skills.skills.len()),
    ));

    let vault = crate::vault::Vault::new(&dirs.home).with_unlock(crate::vault::Unlock::EnvOnly);
    out.push(match vault.protection() {
        None => Subsystem::new("vault", true, "not initialized (`claw vault init`)", None),
        Some(_) => match vault.list() {
            Ok(keys) => Subsystem::new(
                "vault",
                true,
                format!("{} secret(s)", keys.len()),
                Some(keys.len()),
            ),
            Err(crate::vault::VaultError::NoPassphrase { .. }) => Subsystem::new(
                "vault",
                true,
                "protected by a passphrase (not asked here)",
                None,
            ),
            Err(e) => Subsystem::new("vault", false, e.to_string(), None),
        },
    });

    let audit = crate::audit::AuditLog::in_dir(&dirs.home);
    out.push(match audit.verify() {
        Ok(r) => match r.problem {
            None => Subsystem::new(
                "audit",
                true,
                format!("{} entries, chain intact", r.entries),
                Some(r.entries),
            ),
            Some(p) => Subsystem::new(
                "audit",
                false,
                format!("{} (`claw audit verify`)", p.message),
                Some(r.entries),
            ),
        },
        Err(e) => Subsystem::new("audit", false, e.to_string(), None),
    });

    if json {
        output::print_json(&serde_json::json!({ "subsystems": out }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|s| {
            vec![
                s.name.to_owned(),
                if s.ok { "ok" } else { "!!" }.to_owned(),
                output::first_line(&s.detail, 100),
            ]
        })
        .collect();
    print!("{}", output::table(&["SUBSYSTEM", "", "DETAIL"], &rows));
    Ok(())
}

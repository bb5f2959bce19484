//! `claw doctor`: checks the machine and shows every setting with where it came from.

use std::os::unix::fs::PermissionsExt as _;

use super::{CliError, CliResult, Ctx, output};

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str, detail: &str) {
        println!("  ok       {what}: {detail}");
    }
    fn warn(&self, what: &str, detail: &str) {
        println!("  warning  {what}: {detail}");
    }
    fn bad(&mut self, what: &str, detail: &str) {
        self.problems += 1;
        println!("  PROBLEM  {what}: {detail}");
    }
}

/// The settings this version of claw reads (the others are recognised for the seed's sake).
const USED_SETTINGS: &[&str] = &["CLAW_SKILL_HUB"];

fn on_path(prog: &str) -> Option<std::path::PathBuf> {
    crate::config::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

pub(crate) fn run(ctx: &Ctx) -> CliResult {
    let mut r = Report { problems: 0 };
    let dirs = &ctx.dirs;
    println!("claw {}", env!("CARGO_PKG_VERSION"));
    println!("\nplaces:");
    match std::fs::metadata(&dirs.home) {
        Ok(meta) if meta.permissions().mode() & 0o022 != 0 => r.bad(
            "data directory",
            &format!(
                "{} is mode {:o}: others can write in it (claw makes it 0700 the next time it \
                 writes there; or run chmod 700)",
                dirs.home.display(),
                meta.permissions().mode() & 0o777
            ),
        ),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => r.warn(
            "data directory",
            &format!(
                "{} is mode {:o}: others can read it (run chmod 700)",
                dirs.home.display(),
                meta.permissions().mode() & 0o777
            ),
        ),
        _ => r.ok("data directory", &dirs.home.display().to_string()),
    }
    r.ok("config root", &dirs.root.display().to_string());

    println!("\nmachine:");
    for (prog, needed) in [("sh", true), ("bash", false), ("age", false)] {
        match on_path(prog) {
            Some(p) => r.ok(prog, &p.display().to_string()),
            None if needed => r.bad(prog, "not on PATH: shell steps need it"),
            None => r.warn(prog, "not on PATH (optional)"),
        }
    }

    for (bad, what, detail) in super::skill::doctor_lines(ctx) {
        if bad {
            r.bad(&what, &detail);
        } else if what == "landlock" && detail.starts_with("not available") {
            r.warn(&what, &detail);
        } else {
            r.ok(&what, &detail);
        }
    }

    println!("\nstate:");
    match ctx.settings() {
        Ok(s) => r.ok(
            "claw.yaml",
            &format!(
                "retention {} / {} runs, step logs {} bytes, kill grace {}",
                crate::time::duration::format(s.retention_max_age),
                s.retention_max_runs,
                s.max_step_log_bytes,
                crate::time::duration::format(s.kill_grace)
            ),
        ),
        Err(e) => r.bad("claw.yaml", &e.message),
    }
    let shared = ctx.settings().ok().and_then(|s| s.store);
    if let Some(url) = shared {
        // Scale-out: the shared PostgreSQL store, its schema version and the workers alive.
        match crate::store::PgStore::open(url.as_str()) {
            Ok(store) => {
                let version = store
                    .schema_version()
                    .map_or_else(|e| e.to_string(), |v| v.to_string());
                r.ok(
                    "store",
                    &format!(
                        "postgresql {} (schema version {version})",
                        store.url_shown()
                    ),
                );
                match store.workers_alive(crate::time::now_ms()) {
                    Ok(w) if w.is_empty() => {
                        r.warn("workers", "none alive (queued runs wait for `claw worker`)");
                    }
                    Ok(w) => r.ok(
                        "workers",
                        &format!(
                            "{} alive: {}",
                            w.len(),
                            w.iter()
                                .map(|w| format!(
                                    "{} ({} slots{})",
                                    w.id,
                                    w.slots,
                                    if w.labels.is_empty() {
                                        String::new()
                                    } else {
                                        format!(", labels {}", w.labels.join(","))
                                    }
                                ))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    ),
                    Err(e) => r.bad("workers", &e.to_string()),
                }
            }
            Err(e) => r.bad("store", &e.to_string()),
        }
    } else if dirs.db_path().exists() {
        match crate::store::SqliteStore::open(&dirs.db_path()) {
            Ok(store) => {
                use crate::store::Store as _;
                let runs = store
                    .list_runs(&crate::store::RunFilter::default())
                    .map_or(0, |v| v.len());
                match store.quick_check() {
                    Ok(found) if found.is_empty() => r.ok(
                        "store",
                        &format!("{} ({runs} runs, quick_check ok)", dirs.db_path().display()),
                    ),
                    Ok(found) => r.bad(
                        "store",
                        &format!(
                            "{} is damaged: {}; restore it from a backup",
                            dirs.db_path().display(),
                            found.join("; ")
                        ),
                    ),
                    Err(e) => r.bad("store", &e.to_string()),
                }
            }
            Err(e) => r.bad("store", &e.to_string()),
        }
    } else {
        r.ok("store", "not created yet (made by the first run)");
    }
    let files = super::workflow::all_files(ctx);
    let invalid = files
        .iter()
        .filter(|f| crate::workflow::load::load_file(f).is_err())
        .count();
    if invalid > 0 {
        r.bad(
            "workflows",
            &format!(
                "{invalid} of {} invalid: run `claw workflow validate`",
                files.len()
            ),
        );
    } else {
        r.ok("workflows", &format!("{} valid", files.len()));
    }
    // Never prompts: a protected identity is opened only with CLAW_VAULT_PASSPHRASE.
    let vault = crate::vault::Vault::new(&dirs.home).with_unlock(crate::vault::Unlock::EnvOnly);
    if let Some(protection) = vault.protection() {
        let id_path = vault.identity_in_use_path();
        let mode = std::fs::metadata(&id_path).map_or(0, |m| m.permissions().mode() & 0o777);
        if mode & 0o077 != 0 {
            r.bad(
                "vault identity",
                &format!("{} is mode {mode:o}: run chmod 600", id_path.display()),
            );
        }
        let what = format!("{}: {}", id_path.display(), protection.describe());
        match protection {
            crate::vault::Protection::Both => r.bad("vault identity", &what),
            _ => r.ok("vault identity", &what),
        }
        match vault.list() {
            Ok(keys) => r.ok("vault", &format!("{} secret(s)", keys.len())),
            Err(crate::vault::VaultError::NoPassphrase { .. }) => r.warn(
                "vault",
                "locked: set CLAW_VAULT_PASSPHRASE to check that it opens",
            ),
            Err(e) => r.bad("vault", &e.to_string()),
        }
    } else {
        r.warn("vault", "not initialized (`claw vault init`)");
    }
    let audit = crate::audit::AuditLog::in_dir(&dirs.home);
    // Writable as claw writes it (no symlink followed): vault reveals and decisions refuse to
    // act without their entry.
    if std::fs::symlink_metadata(audit.path()).is_ok_and(|m| m.file_type().is_symlink()) {
        r.bad(
            "audit log",
            &format!(
                "{} is a symlink: claw does not write through it, so vault reveals, vault \
                 changes and decisions are refused until it is a plain file",
                audit.path().display()
            ),
        );
    } else if audit.path().exists() {
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Err(e) = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(audit.path())
        {
            r.bad(
                "audit log",
                &format!(
                    "{} cannot be written ({e}): vault reveals, vault changes and decisions are \
                     refused until it can",
                    audit.path().display()
                ),
            );
        }
    }
    match audit.verify() {
        Ok(rep) => match rep.problem {
            None => r.ok(
                "audit log",
                &format!("{} entries, chain intact", rep.entries),
            ),
            Some(p) => r.bad(
                "audit log",
                &format!("broken at line {}: {}", p.line, p.message),
            ),
        },
        Err(e) => r.bad("audit log", &e.to_string()),
    }

    println!("\nsettings (flag > environment > vault > .env > claw.yaml settings: > default):");
    let (layers, notes) = crate::vault::settings(&dirs.root, &dirs.home, Default::default());
    for n in notes {
        r.warn("settings", &n);
    }
    // Only what this claw uses, and settings someone set (a seed user sees that they are read);
    // the rest belong to features not built yet and would only be noise.
    let all = layers.all();
    let shown = |s: &crate::config::resolve::Resolved| {
        USED_SETTINGS.contains(&s.def.name)
            || !matches!(
                s.source,
                crate::config::resolve::Source::Default | crate::config::resolve::Source::Unset
            )
    };
    let hidden = all.iter().filter(|s| !shown(s)).count();
    let rows: Vec<Vec<String>> = all
        .into_iter()
        .filter(|s| shown(s))
        .map(|s| {
            let value = match (&s.value, s.def.secret) {
                (None, _) => "-".to_owned(),
                (Some(v), true) => crate::vault::mask(v),
                (Some(v), false) if v.is_empty() => "(empty)".to_owned(),
                (Some(v), false) => output::first_line(v, 40),
            };
            vec![s.def.name.to_owned(), value, s.source.describe()]
        })
        .collect();
    for line in output::table(&["SETTING", "VALUE", "FROM"], &rows).lines() {
        println!("  {line}");
    }
    if hidden > 0 {
        println!(
            "  ({hidden} more settings, for features not in this version (LLM providers, Telegram, \
             Slack, Discord, email, the dashboard), are at their defaults and not shown)"
        );
    }
    if r.problems > 0 {
        println!("\n{} problem(s) found", r.problems);
        return Err(CliError::failed());
    }
    println!("\nno problems found");
    Ok(())
}

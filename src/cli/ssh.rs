//! `claw ssh`: the fleet in hosts.yaml — list hosts and groups, run a command on a target, test
//! connections, pin host keys, check health.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx};
use crate::ssh::{self, Command, FanOut, Pool, Registry, Settings, known_hosts};

#[derive(Debug, Subcommand)]
pub(super) enum SshCommand {
    /// List the hosts of hosts.yaml.
    Hosts {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the groups and their hosts (every host is in `all`).
    Groups {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command on a target: an alias, a group, or a comma list of both
    /// (`claw ssh run web -- uptime`).
    Run {
        /// An alias, a group, a comma list of both, or `all`.
        target: String,
        /// The command (several words are joined with spaces, as ssh does).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        /// Per-host limit in seconds (the seed's default: 30).
        #[arg(short = 't', long, default_value_t = 30)]
        timeout: u64,
        /// Hosts at once.
        #[arg(long, default_value_t = 10)]
        parallel: usize,
        /// One JSON array of per-host results instead of text.
        #[arg(long)]
        json: bool,
        /// Run it as root through sudo (the password, if sudo asks, is the vault's
        /// `ssh:<alias>:sudo_password`, else `ssh:<alias>:password`).
        #[arg(long)]
        sudo: bool,
    },
    /// Connect and authenticate to each host of a target (host key checked), run nothing.
    Test {
        /// An alias, a group, a comma list of both, or `all`.
        target: String,
    },
    /// Pin a host's key in the data directory's known_hosts: shows its fingerprint and asks,
    /// or pins it without asking when --fingerprint matches.
    Trust {
        /// The host's alias in hosts.yaml.
        alias: String,
        /// The SHA256 fingerprint expected (`SHA256:…`, as `ssh-keygen -lf` prints it).
        #[arg(long, value_name = "SHA256:…")]
        fingerprint: Option<String>,
    },
    /// Copy a local file to every host of a target (SFTP): written beside REMOTE, given its
    /// mode, checked with sha256sum on the host, then renamed over REMOTE.
    Upload {
        /// An alias, a group, a comma list of both, or `all`.
        target: String,
        /// The local file.
        local: std::path::PathBuf,
        /// Its path on each host.
        remote: String,
        /// The file's mode on the host (octal).
        #[arg(long, default_value = "644")]
        mode: String,
    },
    /// Copy a file from one host to a local path (SFTP), checked with sha256sum, then renamed
    /// into place.
    Download {
        /// The host's alias in hosts.yaml.
        alias: String,
        /// The file's path on the host.
        remote: String,
        /// Where it goes here (replaced atomically).
        local: std::path::PathBuf,
    },
    /// Ping (TCP connect to the SSH port) and an `uptime` probe on every host; writes
    /// `<data>/ssh/health.json`.
    Health {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn registry(ctx: &Ctx) -> Result<Registry, CliError> {
    Registry::find(&ctx.dirs.root, &ctx.dirs.home).map_err(|e| CliError::usage(e.render()))
}

fn settings(ctx: &Ctx) -> Settings {
    Settings::from_env(&ctx.dirs.home, &crate::config::env::cli_actor())
}

pub(super) fn run(ctx: &Ctx, cmd: SshCommand) -> CliResult {
    match cmd {
        SshCommand::Hosts { json } => hosts(ctx, json),
        SshCommand::Groups { json } => groups(ctx, json),
        SshCommand::Run {
            target,
            command,
            timeout,
            parallel,
            json,
            sudo,
        } => run_command(
            ctx,
            &target,
            &command.join(" "),
            timeout,
            parallel,
            json,
            sudo,
        ),
        SshCommand::Test { target } => test(ctx, &target),
        SshCommand::Trust { alias, fingerprint } => trust(ctx, &alias, fingerprint.as_deref()),
        SshCommand::Health { json } => health(ctx, json),
        SshCommand::Upload {
            target,
            local,
            remote,
            mode,
        } => upload(ctx, &target, &local, &remote, &mode),
        SshCommand::Download {
            alias,
            remote,
            local,
        } => download(ctx, &alias, &remote, &local),
    }
}

fn hosts(ctx: &Ctx, json: bool) -> CliResult {
    let reg = registry(ctx)?;
    if json {
        let v: Vec<_> = reg.hosts.iter().map(ssh::Host::json).collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    if reg.hosts.is_empty() {
        println!(
            "No hosts (write hosts.yaml in the config root or the data directory; see docs/ssh.md)."
        );
        return Ok(());
    }
    println!("{:<16} {:<28} {:<9} GROUPS", "ALIAS", "ADDRESS", "AUTH");
    for h in &reg.hosts {
        println!(
            "{:<16} {:<28} {:<9} {}",
            h.alias,
            h.address(),
            h.auth.as_str(),
            h.groups.join(",")
        );
    }
    Ok(())
}

fn groups(ctx: &Ctx, json: bool) -> CliResult {
    let reg = registry(ctx)?;
    let groups = reg.groups();
    if json {
        println!("{}", serde_json::json!(groups));
        return Ok(());
    }
    for (g, members) in &groups {
        println!("{g}: {}", members.join(", "));
    }
    Ok(())
}

fn resolve(reg: &Registry, target: &str) -> Result<Vec<ssh::Host>, CliError> {
    reg.resolve(target)
        .map(|hs| hs.into_iter().cloned().collect())
        .map_err(|e| CliError::usage(e.0))
}

fn run_command(
    ctx: &Ctx,
    target: &str,
    command: &str,
    timeout: u64,
    parallel: usize,
    json: bool,
    sudo: bool,
) -> CliResult {
    if command.trim().is_empty() {
        return Err(CliError::usage("the command is empty"));
    }
    if timeout == 0 || parallel == 0 {
        return Err(CliError::usage("-t and --parallel must be at least 1"));
    }
    let reg = registry(ctx)?;
    let hosts = resolve(&reg, target)?;
    let pool = Pool::new(settings(ctx));
    let cmd = Command {
        command: command.to_owned(),
        env: Vec::new(),
        timeout: Duration::from_secs(timeout),
        sudo,
    };
    let cancel = CancellationToken::new();
    let rt = super::runtime()?;
    let results = rt.block_on(async {
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c.cancel();
            }
        });
        let r = ssh::fan_out(
            &pool,
            &hosts,
            &cmd,
            FanOut {
                parallel,
                fail_fast: false,
            },
            &cancel,
            Arc::new(|_: &str, _: bool, _: &[u8]| {}),
        )
        .await;
        pool.close_all().await;
        r
    });
    let redact = crate::redact::global();
    let failed = results.iter().filter(|(_, o)| !o.ok()).count();
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|(h, o)| {
                serde_json::json!({
                    "host": h.alias,
                    "command": redact.redact(command),
                    "stdout": redact.redact(&String::from_utf8_lossy(&o.stdout)),
                    "stderr": redact.redact(&String::from_utf8_lossy(&o.stderr)),
                    "exit_code": o.exit_code,
                    "ok": o.ok(),
                    "error": o.error,
                    "duration_ms": o.duration.as_millis() as u64,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let mut out = std::io::stdout().lock();
        for (h, o) in &results {
            let status = match (&o.error, o.exit_code) {
                (Some(e), _) => format!("FAILED: {e}"),
                (None, Some(0)) => "ok".to_owned(),
                (None, Some(c)) => format!("exit {c}"),
                (None, None) => "no exit status".to_owned(),
            };
            let _ = writeln!(
                out,
                "── {} ({:.2}s): {status}",
                h.alias,
                o.duration.as_secs_f64()
            );
            let stdout = String::from_utf8_lossy(&o.stdout);
            let _ = write!(out, "{}", redact.redact(&stdout));
            if !stdout.is_empty() && !stdout.ends_with('\n') {
                let _ = writeln!(out);
            }
            let stderr = String::from_utf8_lossy(&o.stderr);
            if !stderr.is_empty() {
                eprint!("{}", redact.redact(&stderr));
            }
            if o.dropped > 0 {
                let _ = writeln!(out, "({} bytes of output not kept)", o.dropped);
            }
        }
        if results.len() > 1 {
            let _ = writeln!(
                out,
                "{} of {} hosts ok",
                results.len() - failed,
                results.len()
            );
        }
    }
    if failed > 0 {
        Err(CliError::failed())
    } else {
        Ok(())
    }
}

fn test(ctx: &Ctx, target: &str) -> CliResult {
    let reg = registry(ctx)?;
    let hosts = resolve(&reg, target)?;
    let pool = Pool::new(settings(ctx));
    let rt = super::runtime()?;
    let results = rt.block_on(async {
        let pool = &pool;
        let checks = hosts.iter().map(|h| async move {
            let started = std::time::Instant::now();
            (h, pool.check(h).await, started.elapsed())
        });
        let r = futures_util::future::join_all(checks).await;
        pool.close_all().await;
        r
    });
    per_host(
        results
            .into_iter()
            .map(|(h, r, took)| (h, r.map(|()| took))),
        |h, took| format!("ok ({}, {:.2}s)", h.address(), took.as_secs_f64()),
    )
}

/// One line per host (`alias: …` or `alias: FAILED: why`); exit status 1 when one failed.
fn per_host<'h, T, E: std::fmt::Display>(
    results: impl IntoIterator<Item = (&'h ssh::Host, Result<T, E>)>,
    ok: impl Fn(&ssh::Host, &T) -> String,
) -> CliResult {
    let mut failed = 0;
    for (h, r) in results {
        match r {
            Ok(t) => println!("{}: {}", h.alias, ok(h, &t)),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {e}", h.alias);
            }
        }
    }
    if failed > 0 {
        Err(CliError::failed())
    } else {
        Ok(())
    }
}

fn trust(ctx: &Ctx, alias: &str, expected: Option<&str>) -> CliResult {
    let reg = registry(ctx)?;
    let Some(host) = reg.get(alias).cloned() else {
        let known: Vec<&str> = reg.hosts.iter().map(|h| h.alias.as_str()).collect();
        return Err(CliError::usage(format!(
            "no host `{alias}` in hosts.yaml (hosts: {})",
            known.join(", ")
        )));
    };
    let st = settings(ctx);
    let _ = crate::fsutil::create_dirs_private(&st.home);
    let rt = super::runtime()?;
    let presented = rt
        .block_on(ssh::client::probe_key(&host, &st))
        .map_err(|e| CliError {
            code: 1,
            message: e.to_string(),
        })?;
    let name = known_hosts::host_name(&host.hostname, host.port);
    match &presented.verdict {
        known_hosts::Verdict::Known { file } => {
            println!(
                "{alias} ({name}) {} {} is already pinned in {}",
                presented.keytype,
                presented.fingerprint,
                file.display()
            );
            return Ok(());
        }
        known_hosts::Verdict::Changed { file, line, .. }
        | known_hosts::Verdict::Revoked { file, line } => {
            return Err(CliError {
                code: 1,
                message: format!(
                    "{alias} ({name}) offers {} {}, which {}:{line} contradicts (a changed or revoked key): not pinned. \
                     If the host really changed its key, remove that line first",
                    presented.keytype,
                    presented.fingerprint,
                    file.display()
                ),
            });
        }
        known_hosts::Verdict::CertAuthorityOnly { file, line } => println!(
            "note: {}:{line} trusts a certificate authority for {name}, but claw does not verify host \
             certificates: pinning the host's plain key is how claw can reach it",
            file.display()
        ),
        known_hosts::Verdict::Unknown => {}
    }
    let audit = |outcome: &str, how: &str| {
        let _ = crate::audit::AuditLog::in_dir(&ctx.dirs.home).record(&crate::audit::Event::new(
            &st.actor,
            crate::audit::Action::SshTrust,
            alias,
            outcome,
            serde_json::json!({"fingerprint": presented.fingerprint, "keytype": presented.keytype, "how": how}),
        ));
    };
    println!(
        "{alias} ({name}) offers {} {}",
        presented.keytype, presented.fingerprint
    );
    match expected {
        Some(fp) if fp.trim() == presented.fingerprint => {}
        Some(fp) => {
            audit("refused", "--fingerprint mismatch");
            return Err(CliError {
                code: 1,
                message: format!(
                    "the fingerprint given ({fp}) is not the host's ({}): not pinned",
                    presented.fingerprint
                ),
            });
        }
        None => {
            if !crate::vault::passphrase::terminal_available() {
                return Err(CliError::usage(
                    "no terminal to ask on: pass --fingerprint SHA256:… (compare it with `ssh-keygen -lf` of the host's key)",
                ));
            }
            eprint!("Pin this key for {alias}? [y/N] ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                audit("refused", "declined at the prompt");
                return Err(CliError::failed());
            }
        }
    }
    known_hosts::pin(
        &st.pin_file(),
        &host.hostname,
        host.port,
        &presented.keytype,
        &presented.blob,
        &format!("claw:{alias}"),
    )
    .map_err(|e| CliError::internal(format!("cannot write {}: {e}", st.pin_file().display())))?;
    audit(
        "ok",
        if expected.is_some() {
            "--fingerprint"
        } else {
            "prompt"
        },
    );
    println!("pinned in {}", st.pin_file().display());
    Ok(())
}

fn health(ctx: &Ctx, json: bool) -> CliResult {
    let reg = registry(ctx)?;
    let pool = Pool::new(settings(ctx));
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let r = ssh::health::check(&pool, &reg.hosts).await;
        pool.close_all().await;
        r
    });
    let path = ssh::health::write(&ctx.dirs.home, &report).map_err(CliError::internal)?;
    if json {
        println!("{report}");
    } else {
        for h in report["hosts"].as_array().into_iter().flatten() {
            let ok = h["ping_ok"] == true && h["ssh_ok"] == true;
            println!(
                "{:<16} {:<4} ping {:<5} ssh {:<5} {}{}",
                h["alias"].as_str().unwrap_or_default(),
                if ok { "ok" } else { "DOWN" },
                h["ping_ok"],
                h["ssh_ok"],
                h["latency_ms"]
                    .as_f64()
                    .map(|l| format!("{l:.1} ms "))
                    .unwrap_or_default(),
                h["error"]
                    .as_str()
                    .or(h["load_avg"].as_str())
                    .unwrap_or_default(),
            );
        }
        println!("written to {}", path.display());
    }
    if report["all_ok"] == true {
        Ok(())
    } else {
        Err(CliError::failed())
    }
}

fn upload(ctx: &Ctx, target: &str, local: &std::path::Path, remote: &str, mode: &str) -> CliResult {
    let mode = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            CliError::usage(format!(
                "--mode `{mode}` must be an octal mode like 644 or 0755"
            ))
        })?;
    if !local.is_file() {
        return Err(CliError::usage(format!(
            "{} is not a file",
            local.display()
        )));
    }
    let reg = registry(ctx)?;
    let hosts = resolve(&reg, target)?;
    let pool = Pool::new(settings(ctx));
    let rt = super::runtime()?;
    let results = rt.block_on(async {
        let pool = &pool;
        let each = hosts
            .iter()
            .map(|h| async move { (h, ssh::transfer::upload(pool, h, local, remote, mode).await) });
        let r = futures_util::future::join_all(each).await;
        pool.close_all().await;
        r
    });
    per_host(results, |_, t| {
        format!("{} bytes, sha256 {}", t.bytes, t.sha256)
    })
}

fn download(ctx: &Ctx, alias: &str, remote: &str, local: &std::path::Path) -> CliResult {
    let reg = registry(ctx)?;
    let Some(host) = reg.get(alias).cloned() else {
        return Err(CliError::usage(format!("no host `{alias}` in hosts.yaml")));
    };
    let pool = Pool::new(settings(ctx));
    let rt = super::runtime()?;
    let r = rt.block_on(async {
        let r = ssh::transfer::download(&pool, &host, remote, local).await;
        pool.close_all().await;
        r
    });
    match r {
        Ok(t) => {
            println!("{}: {} bytes, sha256 {}", host.alias, t.bytes, t.sha256);
            Ok(())
        }
        Err(e) => Err(CliError {
            code: 1,
            message: e,
        }),
    }
}

//! `claw bench engine`: the full engine (store included) against direct process spawns.

use std::time::{Duration, Instant};

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, Ctx};
use crate::config::Dirs;
use crate::engine::{Engine, NewRun, Silent};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// `claw audit verify` on a log of N entries, against reading and parsing the same lines
    /// without checking them.
    Audit {
        /// How many audit entries.
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A workflow of N sequential `true` steps through the engine, against N direct
    /// `/bin/sh -c true` spawns measured in the same process run.
    Engine {
        /// How many steps in the workflow.
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// How many times to measure each side (the median is reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daemon's scheduler: N schedules with fires spread over a period, run for some
    /// periods; the lateness of each fire (p50/p99) against a bare timer loop waking at the same
    /// instants; then `claw serve` at rest on N schedules and on none (resident memory, CPU).
    Cron {
        /// How many schedules.
        #[arg(long, default_value_t = 10_000)]
        schedules: usize,
        /// Each schedule is `every <period>` (whole seconds).
        #[arg(long, default_value = "10s")]
        period: String,
        /// How many periods to measure.
        #[arg(long, default_value_t = 2)]
        periods: u32,
        /// Skip the idle daemon measurement.
        #[arg(long)]
        no_idle: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// N sequential `true` commands on one host of hosts.yaml through the connection pool,
    /// against N `ssh` CLI invocations (no ControlMaster) measured in the same run. The host
    /// must use key authentication with a `key_file` and have its key pinned.
    Ssh {
        /// An alias (or a target: its first host is used).
        target: String,
        /// How many commands each way.
        #[arg(long, default_value_t = 100)]
        commands: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Webhooks through a real `claw serve`: authenticated `POST /hooks/<name>` (each creates a
    /// run the daemon executes meanwhile) against `GET /healthz` on the same daemon.
    Web {
        /// How many requests.
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// How many requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The dashboard: with --runs runs in the store, `GET /api/v1/runs` and the runs page of a
    /// real `claw serve` (API token) against `GET /healthz` on the same daemon.
    Dashboard {
        /// Runs put in the store first.
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        /// Requests per endpoint.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// How many requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn cron(schedules: usize, period: &str, periods: u32, idle: bool, json: bool) -> CliResult {
    let period = crate::time::duration::parse(period)
        .map_err(|e| CliError::usage(format!("invalid --period `{period}`: {e}")))?;
    let r =
        crate::serve::bench::cron(schedules, period, periods, idle).map_err(CliError::internal)?;
    if json {
        super::output::print_json(&serde_json::to_value(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "cron: {} schedules, fires spread over {} s, {} periods ({} fires in {} passes)",
        r.schedules, r.period_s, r.periods, r.claw.count, r.passes
    );
    println!(
        "  fire lateness            p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        r.claw.p50_ms, r.claw.p99_ms, r.claw.max_ms
    );
    println!(
        "  bare timer (baseline)    p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        r.baseline.p50_ms, r.baseline.p99_ms, r.baseline.max_ms
    );
    println!("  p99 ratio                {:>8.2}x", r.p99_ratio);
    if let Some(i) = r.idle {
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "  idle daemon, {:>6} schedules  RSS {:>6.1} MiB (private {:>5.1} MiB)   CPU {:>5.2}% over {:.0} s",
            r.schedules,
            mib(i.rss_kib),
            mib(i.private_kib),
            i.cpu_percent,
            i.window_s
        );
        println!(
            "  idle daemon, no schedule       RSS {:>6.1} MiB (private {:>5.1} MiB)   CPU {:>5.2}%",
            mib(i.baseline_rss_kib),
            mib(i.baseline_private_kib),
            i.baseline_cpu_percent
        );
        println!("  RSS ratio                {:>8.2}x", i.rss_ratio);
    }
    Ok(())
}

fn web(requests: usize, concurrency: usize, json: bool) -> CliResult {
    let r = crate::serve::bench::web(requests, concurrency).map_err(CliError::internal)?;
    if json {
        super::output::print_json(&serde_json::to_value(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "web: {} requests, {} concurrent clients",
        r.requests, r.concurrency
    );
    println!(
        "  GET /healthz (baseline)      {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        r.baseline_rps, r.baseline_latency.p50_ms, r.baseline_latency.p99_ms
    );
    println!(
        "  POST /hooks/<name> (bearer)  {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} accepted)",
        r.hook_rps, r.hook_latency.p50_ms, r.hook_latency.p99_ms, r.accepted
    );
    println!("  throughput ratio             {:>9.2}x", r.rps_ratio);
    println!(
        "  runs: {} finished while deliveries came in; all {} accepted ran {:.1} s after the last ({} succeeded)",
        r.runs_done_during, r.accepted, r.drain_s, r.runs_succeeded
    );
    println!(
        "  (a real `claw serve` child: its listener, queue and run slots, runs executing; the client is this process)"
    );
    Ok(())
}

fn dashboard(runs: usize, requests: usize, concurrency: usize, json: bool) -> CliResult {
    let r = crate::web::bench::run(runs, requests, concurrency).map_err(CliError::internal)?;
    if json {
        super::output::print_json(&serde_json::to_value(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "dashboard: {} runs in the store, {} requests per endpoint, {} concurrent clients",
        r.runs, r.requests, r.concurrency
    );
    for (name, s) in [
        ("GET /healthz (baseline)", &r.baseline),
        ("GET /api/v1/runs       ", &r.api_runs),
        ("GET /runs (page)       ", &r.runs_page),
    ] {
        println!(
            "  {name}   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    println!(
        "  p99 ratio to /healthz: API {:.2}x, page {:.2}x; {} non-200 answers",
        r.api_p99_ratio, r.page_p99_ratio, r.errors
    );
    Ok(())
}

pub(crate) fn run(ctx: &Ctx, cmd: BenchCommand) -> CliResult {
    match cmd {
        BenchCommand::Dashboard {
            runs,
            requests,
            concurrency,
            json,
        } => dashboard(runs.max(1), requests.max(1), concurrency.max(1), json),
        BenchCommand::Cron {
            schedules,
            period,
            periods,
            no_idle,
            json,
        } => cron(schedules.max(1), &period, periods.max(1), !no_idle, json),
        BenchCommand::Web {
            requests,
            concurrency,
            json,
        } => web(requests.max(1), concurrency.max(1), json),
        BenchCommand::Audit { entries, json } => audit(entries.max(1), json),
        BenchCommand::Ssh {
            target,
            commands,
            json,
        } => ssh_bench(ctx, &target, commands.max(1), json),
        BenchCommand::Engine {
            steps,
            rounds,
            json,
        } => engine(steps.max(1), rounds.max(1), json),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn engine(steps: usize, rounds: usize, json: bool) -> CliResult {
    // A scratch data directory: the benchmark must not fill the user's run history.
    let scratch = scratch_dir()?;
    let dirs = Dirs {
        home: scratch.clone(),
        root: scratch.clone(),
    };
    let mut yaml = String::from("name: bench\nsteps:\n");
    for i in 0..steps {
        yaml.push_str(&format!("  - name: s{i}\n    command: \"true\"\n"));
    }
    let wf = crate::workflow::load::load_str(&scratch.join("bench.yaml"), yaml)
        .map_err(|e| CliError::internal(e.render()))?;
    let settings = crate::config::Settings::default();
    let engine = Engine::open(dirs, settings)?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    let one_run = || -> Result<crate::store::RunRecord, CliError> {
        let run = engine.create_run(&NewRun {
            workflow: &wf,
            params: serde_json::json!({}),
            trigger: serde_json::json!({"type": "bench"}),
            dry_run: false,
            claim: true,
        })?;
        Ok(rt.block_on(engine.drive_loaded(&run.id, Some(&wf), &cancel, &Silent))?)
    };

    // The first run on a new database is measured on its own; then the store is brought to the
    // state of a data directory in use (its WAL file at full size, overwritten in place, which
    // makes each commit's fsync cheaper) before the measured rounds.
    let first = {
        let t = Instant::now();
        one_run()?;
        t.elapsed()
    };
    let wal = scratch.join("claw.db-wal");
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let mut warmup = 0;
    let mut last = wal_size();
    while warmup < 60 {
        one_run()?;
        warmup += 1;
        let now = wal_size();
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let mut direct = Vec::new();
    let mut through = Vec::new();
    for round in 0..=rounds {
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..steps {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "the engine benchmark's baseline: the same spawns, made directly"
                )]
                let status = tokio::process::Command::new("/bin/sh")
                    .args(["-c", "true"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .output()
                    .await;
                if status.is_err() {
                    return Err(CliError::internal("cannot spawn /bin/sh"));
                }
            }
            Ok(())
        })?;
        let d = t.elapsed();
        let t = Instant::now();
        let done = one_run()?;
        let e = t.elapsed();
        if done.status != crate::store::RunStatus::Succeeded {
            return Err(CliError::internal(format!(
                "benchmark run {} {}",
                done.id, done.status
            )));
        }
        // Round 0 warms caches up and is not counted.
        if round > 0 {
            direct.push(d);
            through.push(e);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let d = median(direct);
    let e = median(through);
    let ratio = e.as_secs_f64() / d.as_secs_f64().max(1e-9);
    if json {
        super::output::print_json(&serde_json::json!({
            "benchmark": "engine",
            "steps": steps,
            "rounds": rounds,
            "baseline_ms": d.as_secs_f64() * 1000.0,
            "engine_ms": e.as_secs_f64() * 1000.0,
            "ratio": ratio,
            "per_step_overhead_ms": (e.as_secs_f64() - d.as_secs_f64()) * 1000.0 / steps as f64,
            "first_run_on_new_store_ms": first.as_secs_f64() * 1000.0,
            "first_run_ratio": first.as_secs_f64() / d.as_secs_f64().max(1e-9),
            "warmup_runs": warmup,
        }));
    } else {
        println!("engine: {steps} sequential `true` steps, median of {rounds} rounds");
        println!(
            "  direct spawns (baseline)  {:>9.2} ms",
            d.as_secs_f64() * 1000.0
        );
        println!(
            "  claw engine (with store)  {:>9.2} ms",
            e.as_secs_f64() * 1000.0
        );
        println!("  ratio                     {ratio:>9.2}x");
        println!(
            "  (first run on a new database: {:.2} ms, {:.2}x; then {warmup} warm-up runs)",
            first.as_secs_f64() * 1000.0,
            first.as_secs_f64() / d.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

fn scratch_dir() -> Result<std::path::PathBuf, CliError> {
    crate::serve::bench::scratch()
        .map_err(|e| CliError::internal(format!("cannot create a scratch directory: {e}")))
}

fn audit(entries: usize, json: bool) -> CliResult {
    use crate::audit::{AuditLog, Event, write_chain};
    let scratch = scratch_dir()?;
    let path = scratch.join("audit.log");
    let events = (0..entries).map(|i| {
        Event::new(
            "cli:bench",
            if i % 2 == 0 {
                crate::audit::Action::WorkflowStepStarted
            } else {
                crate::audit::Action::WorkflowStepFinished
            },
            &format!("01jdzbenchrun{:08}/step-{}", i / 40, i % 40),
            "ok",
            serde_json::json!({"attempt": 1, "exit_code": 0}),
        )
    });
    write_chain(&path, events).map_err(|e| CliError::internal(e.to_string()))?;
    let log = AuditLog::new(&path);
    let mut verify_times = Vec::new();
    let mut parse_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let report = log
            .verify()
            .map_err(|e| CliError::internal(e.to_string()))?;
        verify_times.push(t.elapsed());
        if report.problem.is_some() || report.entries != entries {
            return Err(CliError::internal(format!(
                "benchmark log did not verify: {report:?}"
            )));
        }
        // Baseline: what any reader pays, reading and parsing every line.
        let t = Instant::now();
        let text = std::fs::read(&path).map_err(|e| CliError::internal(e.to_string()))?;
        let mut n = 0usize;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if serde_json::from_slice::<serde_json::Value>(line).is_ok() {
                n += 1;
            }
        }
        parse_times.push(t.elapsed());
        if n != entries {
            return Err(CliError::internal("baseline parse lost lines"));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let v = median(verify_times);
    let p = median(parse_times);
    let ratio = v.as_secs_f64() / p.as_secs_f64().max(1e-9);
    if json {
        super::output::print_json(&serde_json::json!({
            "benchmark": "audit",
            "entries": entries,
            "verify_ms": v.as_secs_f64() * 1000.0,
            "baseline_parse_ms": p.as_secs_f64() * 1000.0,
            "ratio": ratio,
        }));
    } else {
        println!("audit verify: {entries} entries, median of 3");
        println!(
            "  read + parse every line (baseline)  {:>9.1} ms",
            p.as_secs_f64() * 1000.0
        );
        println!(
            "  claw audit verify                   {:>9.1} ms",
            v.as_secs_f64() * 1000.0
        );
        println!("  ratio                               {ratio:>9.2}x");
    }
    Ok(())
}

fn ssh_bench(ctx: &Ctx, target: &str, n: usize, json: bool) -> CliResult {
    use crate::ssh::{Command as SshCommand, Pool, Registry, Settings};
    let reg =
        Registry::find(&ctx.dirs.root, &ctx.dirs.home).map_err(|e| CliError::usage(e.render()))?;
    let host = reg
        .resolve(target)
        .map_err(|e| CliError::usage(e.0))?
        .first()
        .map(|h| (*h).clone())
        .ok_or_else(|| CliError::usage("the target has no hosts"))?;
    let Some(key) = host.key_file.clone() else {
        return Err(CliError::usage(format!(
            "{} has no key_file: the ssh CLI baseline needs one",
            host.alias
        )));
    };
    let settings = Settings::from_env(&ctx.dirs.home, "bench");
    let pool = Pool::new(settings.clone());
    let cmd = SshCommand {
        command: "true".into(),
        env: Vec::new(),
        timeout: Duration::from_secs(30),
    };
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let failures = rt.block_on(async {
        let mut failed = 0;
        for _ in 0..n {
            let out = pool.run(&host, &cmd, &cancel, &mut |_, _| {}).await;
            if !out.ok() {
                failed += 1;
                if failed == 1 {
                    eprintln!("{}: {:?}", host.alias, out.error);
                }
            }
        }
        pool.close_all().await;
        failed
    });
    let pooled = started.elapsed();
    if failures > 0 {
        return Err(CliError::internal(format!(
            "{failures} of {n} pooled commands failed"
        )));
    }
    let known: Vec<String> = settings
        .known_hosts_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let started = Instant::now();
    for _ in 0..n {
        #[allow(
            clippy::disallowed_methods,
            reason = "the benchmark's baseline is the ssh CLI itself"
        )]
        let status = std::process::Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", known.join(" ")))
            .args(["-o", "LogLevel=ERROR", "-p"])
            .arg(host.port.to_string())
            .arg("-i")
            .arg(&key)
            .arg(format!("{}@{}", host.username, host.hostname))
            .arg("true")
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(|e| CliError::internal(format!("cannot start ssh: {e}")))?;
        if !status.success() {
            return Err(CliError::internal(format!(
                "ssh {} failed: {status}",
                host.alias
            )));
        }
    }
    let cli = started.elapsed();
    let ratio = cli.as_secs_f64() / pooled.as_secs_f64().max(1e-9);
    if json {
        super::output::print_json(&serde_json::json!({
            "host": host.alias,
            "commands": n,
            "pool_ms": pooled.as_millis() as u64,
            "ssh_cli_ms": cli.as_millis() as u64,
            "pool_per_command_ms": pooled.as_secs_f64() * 1000.0 / n as f64,
            "ssh_cli_per_command_ms": cli.as_secs_f64() * 1000.0 / n as f64,
            "speedup": ratio,
            "connections_opened": pool.opened(),
        }));
        return Ok(());
    }
    println!(
        "ssh: {n} sequential `true` on {} ({})",
        host.alias,
        host.address()
    );
    println!(
        "  claw pool (1 connection)   {:>8.1} ms total  {:>7.2} ms/command",
        pooled.as_secs_f64() * 1000.0,
        pooled.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "  ssh CLI, no ControlMaster  {:>8.1} ms total  {:>7.2} ms/command",
        cli.as_secs_f64() * 1000.0,
        cli.as_secs_f64() * 1000.0 / n as f64
    );
    println!("  speedup                    {ratio:>8.1}x");
    Ok(())
}

//! `claw bench cron` and `claw bench web`: the daemon's scheduler and its webhook listener,
//! each measured against a baseline taken in the same run.
//!
//! - **cron**: N `jobs.json` schedules whose fires are spread evenly over a period run through
//!   the daemon's own [`Scheduler`] (plan, one store transaction per pass, dispatch) for a number
//!   of periods; the lateness of each dispatch against its intended instant is compared with a
//!   bare tokio timer loop sleeping to the same instants. Then `claw serve` itself is started
//!   on the N schedules and on none, and its resident memory and CPU while idle are read from
//!   `/proc`.
//! - **web**: a real `claw serve` child: `POST /hooks/<name>` (bearer check, dedupe, run created
//!   in the store, then executed by the daemon) against `GET /healthz` on the same daemon, with
//!   the same concurrent client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use super::cron::{Dispatch, Scheduler};
use crate::config::{Dirs, Settings};
use crate::engine::Engine;
use crate::triggers::cron::jobs::{Job, JobType, JobsFile};
use crate::triggers::cron::sources::load_sources;

/// Percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((ms.len() as f64 - 1.0) * q).round() as usize;
            ms[i.min(ms.len() - 1)]
        };
        Self {
            count: ms.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// What `claw bench cron` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CronBench {
    pub schedules: usize,
    pub period_s: u64,
    pub periods: u32,
    /// Lateness of each fire's dispatch (its store transaction committed) after its instant.
    pub claw: Spread,
    /// Lateness of a bare timer loop waking at the same instants.
    pub baseline: Spread,
    pub p99_ratio: f64,
    /// Passes the scheduler made (fires are committed in batches).
    pub passes: usize,
    pub idle: Option<Idle>,
}

/// The daemon at rest.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Idle {
    pub rss_kib: u64,
    /// Anonymous (private) resident memory: what the daemon allocated, without the binary's
    /// shared, clean code pages.
    pub private_kib: u64,
    pub baseline_private_kib: u64,
    pub cpu_percent: f64,
    pub baseline_rss_kib: u64,
    pub baseline_cpu_percent: f64,
    pub rss_ratio: f64,
    pub window_s: f64,
}

/// A fresh `claw-bench-<ulid>` directory (with `workflows/`) in the temp dir: benchmarks never
/// touch the user's data directory.
pub fn scratch() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "claw-bench-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    ));
    std::fs::create_dir_all(dir.join("workflows"))?;
    Ok(dir)
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `n` jobs of `every <period>`, anchored so that their fires are spread evenly over the period
/// starting `lead` from now.
fn write_jobs(home: &Path, n: usize, period: Duration, lead: Duration) -> Result<(), String> {
    let start = Utc::now() + TimeDelta::from_std(lead).map_err(io)?
        - TimeDelta::from_std(period).map_err(io)?;
    let step = period.as_secs_f64() * 1000.0 / n.max(1) as f64;
    let jobs: Vec<Job> = (0..n)
        .map(|i| {
            let mut j = Job::new(
                &format!("bench-{i}"),
                &format!("every {}s", period.as_secs()),
                JobType::Shell,
                "true",
            );
            j.created_at =
                crate::time::iso_utc(start + TimeDelta::milliseconds((i as f64 * step) as i64));
            j.tz = Some("UTC".into());
            // The measured path is plan + commit + dispatch; the bench runs no job.
            j.extra.insert("overlap".into(), "allow".into());
            j
        })
        .collect();
    JobsFile::in_home(home)
        .update(|all| {
            *all = jobs;
            Ok::<_, crate::triggers::cron::jobs::JobsError>(())
        })
        .map_err(io)
}

/// Runs the cron benchmark.
pub fn cron(
    schedules: usize,
    period: Duration,
    periods: u32,
    idle: bool,
) -> Result<CronBench, String> {
    let period = Duration::from_secs(period.as_secs().max(1));
    let dir = scratch().map_err(io)?;
    let dirs = Dirs {
        home: dir.join("home"),
        root: dir.clone(),
    };
    dirs.ensure_home().map_err(io)?;
    let lead = Duration::from_secs(2);
    write_jobs(&dirs.home, schedules, period, lead)?;
    let engine = Arc::new(
        Engine::open(dirs.clone(), Settings::default())
            .map_err(io)?
            .with_shared_thread(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    let mut sched = Scheduler::new(engine);
    let sources = load_sources(&dirs);
    if !sources.problems.is_empty() {
        return Err(sources.problems.join("; "));
    }
    sched.set_entries(sources, Utc::now()).map_err(io)?;
    let end = Utc::now() + TimeDelta::from_std(lead + period * periods).map_err(io)?;
    let mut late: Vec<f64> = Vec::with_capacity(schedules * periods as usize);
    let mut instants: Vec<i64> = Vec::with_capacity(schedules * periods as usize);
    let mut passes = 0usize;
    rt.block_on(async {
        loop {
            let now = Utc::now();
            if now >= end {
                break;
            }
            let tick = sched.tick(now).map_err(io)?;
            if !tick.dispatch.is_empty() {
                passes += 1;
                let done = Utc::now().timestamp_micros();
                for d in &tick.dispatch {
                    if let Dispatch::Job { scheduled_for, .. } = d {
                        late.push((done - scheduled_for * 1000) as f64 / 1000.0);
                        instants.push(*scheduled_for);
                    }
                }
            }
            let wait = sched
                .next_due()
                .map_or(Duration::from_secs(1), |d| {
                    (d - Utc::now()).to_std().unwrap_or(Duration::ZERO)
                })
                .min(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
        }
        Ok::<_, String>(())
    })?;
    // Baseline: a bare timer loop waking at the same instants (shifted to now), handling every
    // instant that is due at each wake-up, as the scheduler does.
    instants.sort_unstable();
    let shift = crate::time::now_ms() + 500 - instants.first().copied().unwrap_or(0);
    let replay: Vec<i64> = instants.iter().map(|t| t + shift).collect();
    let base: Vec<f64> = rt.block_on(async {
        let mut out = Vec::with_capacity(replay.len());
        let mut i = 0;
        while i < replay.len() {
            let wait = (replay[i] * 1000 - Utc::now().timestamp_micros()).max(0);
            tokio::time::sleep(Duration::from_micros(u64::try_from(wait).unwrap_or(0))).await;
            let now = Utc::now().timestamp_micros();
            while i < replay.len() && replay[i] * 1000 <= now {
                out.push((now - replay[i] * 1000) as f64 / 1000.0);
                i += 1;
            }
        }
        out
    });
    let claw = Spread::of(late);
    let baseline = Spread::of(base);
    let idle = if idle {
        Some(idle_daemon(schedules)?)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(CronBench {
        schedules,
        period_s: period.as_secs(),
        periods,
        p99_ratio: claw.p99_ms / baseline.p99_ms.max(0.001),
        claw,
        baseline,
        passes,
        idle,
    })
}

/// Resident set and its anonymous part (KiB), and CPU ticks (user + system) of a process.
pub(super) fn proc_stats(pid: u32) -> Option<((u64, u64), u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let rss = (field("VmRSS:")?, field("RssAnon:")?);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// This `claw` binary with a data directory and config root of its own, its input closed: the
/// processes the benchmarks drive (`claw serve`, `claw worker`, `claw workflow run`).
pub(crate) fn claw_at(home: &Path, root: &Path) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(io)?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the benchmarks drive real claw processes, as a user deploys them"
    )]
    let mut c = std::process::Command::new(exe);
    c.arg("--home")
        .arg(home)
        .arg("--root")
        .arg(root)
        .stdin(std::process::Stdio::null());
    Ok(c)
}

/// Starts `claw serve --no-http` on `home`, lets it settle, and measures it at rest.
fn measure_daemon(home: &Path, root: &Path) -> Result<((u64, u64), f64, f64), String> {
    let mut child = claw_at(home, root)?
        .args(["serve", "--no-http"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(io)?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(3));
    let window = Duration::from_secs(5);
    let before = proc_stats(pid);
    std::thread::sleep(window);
    let after = proc_stats(pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).map_err(io)?),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let (Some((_, t0)), Some((rss, t1))) = (before, after) else {
        return Err("the daemon exited during the measurement".into());
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let cpu = (t1.saturating_sub(t0)) as f64 / hz / window.as_secs_f64() * 100.0;
    Ok((rss, cpu, window.as_secs_f64()))
}

fn idle_daemon(schedules: usize) -> Result<Idle, String> {
    // The same number of schedules, due in a day: the daemon holds them all and sleeps.
    let busy = scratch().map_err(io)?;
    write_jobs(
        &busy.join("home"),
        schedules,
        Duration::from_secs(86_400),
        Duration::from_secs(3600),
    )?;
    let ((rss, private), cpu, window) = measure_daemon(&busy.join("home"), &busy)?;
    let empty = scratch().map_err(io)?;
    let ((base_rss, base_private), base_cpu, _) = measure_daemon(&empty.join("home"), &empty)?;
    let _ = std::fs::remove_dir_all(&busy);
    let _ = std::fs::remove_dir_all(&empty);
    Ok(Idle {
        rss_kib: rss,
        private_kib: private,
        baseline_private_kib: base_private,
        cpu_percent: cpu,
        baseline_rss_kib: base_rss,
        baseline_cpu_percent: base_cpu,
        rss_ratio: rss as f64 / base_rss.max(1) as f64,
        window_s: window,
    })
}

/// What `claw bench web` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebBench {
    pub requests: usize,
    pub concurrency: usize,
    pub hook_rps: f64,
    pub hook_latency: Spread,
    pub baseline_rps: f64,
    pub baseline_latency: Spread,
    /// Hook throughput as a fraction of the baseline's.
    pub rps_ratio: f64,
    /// Deliveries answered 202.
    pub accepted: usize,
    /// Runs the daemon finished while the deliveries came in.
    pub runs_done_during: usize,
    /// From the last delivery until the daemon had run every accepted delivery's run.
    pub drain_s: f64,
    /// Runs that succeeded in the end (each accepted delivery makes exactly one).
    pub runs_succeeded: usize,
}

/// A real `claw serve` child on a scratch data directory (what the daemon benchmarks drive, as
/// deployed), stopped with SIGTERM and waited for when dropped.
#[derive(Debug)]
pub struct BenchDaemon {
    child: std::process::Child,
}

impl BenchDaemon {
    /// `claw --home HOME --root ROOT serve ARGS`, with `env` set (`None`: removed).
    pub fn start(
        home: &Path,
        root: &Path,
        args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Result<Self, String> {
        let mut cmd = claw_at(home, root)?;
        cmd.arg("serve")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        Ok(Self {
            child: cmd.spawn().map_err(io)?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns once `GET http://ADDR/healthz` answers (at most 30 s).
    pub async fn wait_listening(client: &reqwest::Client, addr: &str) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the daemon did not start listening within 30 s".into())
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// A port free now on 127.0.0.1 (the daemon binds it a moment later).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(l.local_addr().map_err(io)?.port())
}

/// Runs the webhook benchmark against a real `claw serve` (a child process with its listener,
/// queue and run slots, as deployed): authenticated `POST /hooks/<name>` deliveries, each
/// creating a run of a one-step workflow that the daemon executes meanwhile, against `GET
/// /healthz` on the same daemon with the same client.
pub fn web(requests: usize, concurrency: usize) -> Result<WebBench, String> {
    let dir = scratch().map_err(io)?;
    let home = dir.join("home");
    let token = "bench-token-0123456789abcdef";
    std::fs::write(
        dir.join("workflows/hook.yaml"),
        format!(
            "name: hook\ntriggers:\n  - webhook:\n      name: bench\n      verify: bearer\n      secret: {token}\nsteps:\n  - name: a\n    command: \"true\"\n"
        ),
    )
    .map_err(io)?;
    // Every run kept, so that the bench can count one run per accepted delivery (the default
    // keeps a workflow's newest 200; the prune check after each run is made either way).
    std::fs::write(
        dir.join("claw.yaml"),
        format!(
            "retention:\n  max_runs: {}\n",
            requests.saturating_mul(2).max(1000)
        ),
    )
    .map_err(io)?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let daemon = BenchDaemon::start(&home, &dir, &["--bind", &addr], &[])?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    // reqwest is built without a default TLS provider (plain HTTP here, but the builder asks).
    crate::steps::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(io)?;
    rt.block_on(BenchDaemon::wait_listening(&client, &addr))?;
    let load = |hook: bool| -> Result<(f64, Spread, usize), String> {
        rt.block_on(async {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let client = client.clone();
                let next = next.clone();
                let addr = addr.clone();
                tasks.spawn(async move {
                    let mut lat = Vec::new();
                    let mut ok = 0usize;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= requests {
                            break;
                        }
                        let t = Instant::now();
                        let resp = if hook {
                            client
                                .post(format!("http://{addr}/hooks/bench"))
                                .header("authorization", format!("Bearer {token}"))
                                .header("content-type", "application/json")
                                .body(format!("{{\"n\":{i}}}"))
                                .send()
                                .await
                        } else {
                            client.get(format!("http://{addr}/healthz")).send().await
                        };
                        if let Ok(r) = resp {
                            let good = r.status().is_success();
                            let _ = r.bytes().await;
                            ok += usize::from(good);
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    (lat, ok)
                });
            }
            let mut lat = Vec::new();
            let mut ok = 0;
            while let Some(r) = tasks.join_next().await {
                let (l, n) = r.map_err(io)?;
                lat.extend(l);
                ok += n;
            }
            let secs = started.elapsed().as_secs_f64();
            Ok((requests as f64 / secs.max(1e-9), Spread::of(lat), ok))
        })
    };
    let counts = || -> Result<(usize, usize), String> {
        let store = crate::store::SqliteStore::open(&home.join("claw.db")).map_err(io)?;
        use crate::store::Store as _;
        let done = |status| {
            store
                .list_runs(&crate::store::RunFilter {
                    status: Some(status),
                    limit: Some(u32::MAX),
                    ..Default::default()
                })
                .map(|r| r.len())
                .map_err(io)
        };
        Ok((
            done(crate::store::RunStatus::Succeeded)?,
            done(crate::store::RunStatus::Failed)?,
        ))
    };
    let measured = (|| {
        // Warm-up, then the baseline, then the hooks.
        let _ = load(false)?;
        let (base_rps, base_lat, _) = load(false)?;
        let (hook_rps, hook_lat, accepted) = load(true)?;
        let ended = Instant::now();
        let (during, _) = counts()?;
        // The daemon runs every accepted delivery (at most 10 minutes).
        let mut last = (during, 0);
        while ended.elapsed() < Duration::from_secs(600) {
            last = counts()?;
            if last.0 + last.1 >= accepted {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok::<_, String>(WebBench {
            requests,
            concurrency,
            hook_rps,
            hook_latency: hook_lat,
            baseline_rps: base_rps,
            baseline_latency: base_lat,
            rps_ratio: hook_rps / base_rps.max(1e-9),
            accepted,
            runs_done_during: during,
            drain_s: ended.elapsed().as_secs_f64(),
            runs_succeeded: last.0,
        })
    })();
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

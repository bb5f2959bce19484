//! `claw bench dashboard`: the runs page and `/api/v1/runs` of a real `claw serve` with many runs
//! in its store, against `GET /healthz` on the same daemon with the same client.

use std::sync::Arc;

use super::bench::{BenchDaemon, free_port, proc_stats, scratch};
use std::time::{Duration, Instant};

use crate::store::{RunRecord, RunStatus, SqliteStore, Store as _};

/// Lines the benchmark's step writes, one every [`TICK`].
const TICKS: usize = 150;
const TICK: &str = "0.04";

/// Latency percentiles of one endpoint.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[(((ms.len() - 1) as f64) * q).round() as usize];
        Self {
            count: ms.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// What `claw bench dashboard` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DashboardBench {
    pub runs: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub baseline: Spread,
    pub api_runs: Spread,
    pub runs_page: Spread,
    /// p99 of `/api/v1/runs` over p99 of `/healthz`.
    pub api_p99_ratio: f64,
    pub page_p99_ratio: f64,
    /// Answers that were not 200.
    pub errors: usize,
    /// A running step's log lines followed over SSE.
    pub sse: SseBench,
    /// The daemon at rest, with and without the dashboard.
    pub idle: IdleRss,
}

/// From a line's write by a running step to its receipt, over the dashboard's SSE stream and,
/// as the baseline, by a reader looking at the log file itself every millisecond.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SseBench {
    pub lines: usize,
    pub sse: Spread,
    pub baseline_tail: Spread,
    /// Lines written that the SSE client never received.
    pub missed: usize,
}

/// Resident memory (KiB) of an idle `claw serve`: started with `--no-dashboard`; with the
/// dashboard, unused; and with the dashboard after it has served each page and API once.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IdleRss {
    pub no_dashboard_rss_kib: u64,
    pub no_dashboard_anon_kib: u64,
    pub unused_rss_kib: u64,
    pub unused_anon_kib: u64,
    pub dashboard_rss_kib: u64,
    pub dashboard_anon_kib: u64,
    /// Dashboard (unused) minus no dashboard, VmRSS.
    pub unused_delta_kib: i64,
    /// Dashboard (after serving) minus no dashboard, VmRSS.
    pub delta_kib: i64,
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Fills a store with `runs` finished runs of a few workflows, a user and an API token.
fn fill(home: &std::path::Path, runs: usize) -> Result<String, String> {
    std::fs::create_dir_all(home).map_err(io)?;
    let store = SqliteStore::open(&home.join("claw.db")).map_err(io)?;
    let now = crate::time::now_ms();
    for i in 0..runs {
        let created = now - i64::try_from(runs - i).unwrap_or(0) * 1000;
        let status = if i % 7 == 0 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        store
            .create_run(&RunRecord {
                params: serde_json::json!({"n": i}),
                trigger: serde_json::json!({"type": "bench"}),
                status,
                started_at: Some(created),
                finished_at: Some(created + 250),
                ..RunRecord::queued(&format!("{i:026}"), &format!("wf{}", i % 5), created)
            })
            .map_err(io)?;
    }
    let token = crate::web::auth::random_token()?;
    let hash = crate::web::auth::hash_password("bench-password-1234")?;
    store.add_dashboard_user("bench", &hash, now).map_err(io)?;
    store
        .add_api_token(&crate::web::auth::token_hash(&token), "bench", "bench", now)
        .map_err(io)?;
    Ok(token)
}

/// Runs the benchmark: `runs` runs in the store, `requests` requests per endpoint with
/// `concurrency` in flight.
pub fn run(runs: usize, requests: usize, concurrency: usize) -> Result<DashboardBench, String> {
    let dir = scratch().map_err(io)?;
    let home = dir.join("home");
    let token = fill(&home, runs)?;
    // The step whose log the SSE client follows: each line carries the wall clock at its write.
    std::fs::write(
        dir.join("workflows/tick.yaml"),
        format!(
            "name: tick\nsteps:\n  - name: tick\n    command: |\n      for i in $(seq {TICKS}); do echo \"tick $(date +%s%N)\"; sleep {TICK}; done\n"
        ),
    )
    .map_err(io)?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let daemon = BenchDaemon::start(&home, &dir, &["--bind", &addr], &[])?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    crate::steps::http::install_crypto_provider();
    let measured = (|| -> Result<DashboardBench, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(concurrency)
            .build()
            .map_err(io)?;
        rt.block_on(BenchDaemon::wait_listening(&client, &addr))?;
        let load = |path: &str| -> Result<(Spread, usize), String> {
            let url = format!("http://{addr}{path}");
            rt.block_on(async {
                let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..concurrency.max(1) {
                    let client = client.clone();
                    let next = next.clone();
                    let url = url.clone();
                    let bearer = format!("Bearer {token}");
                    tasks.spawn(async move {
                        let mut lat = Vec::new();
                        let mut bad = 0usize;
                        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                            let t = Instant::now();
                            match client
                                .get(&url)
                                .header("authorization", &bearer)
                                .send()
                                .await
                            {
                                Ok(r) => {
                                    bad += usize::from(!r.status().is_success());
                                    let _ = r.bytes().await;
                                }
                                Err(_) => bad += 1,
                            }
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        (lat, bad)
                    });
                }
                let mut lat = Vec::new();
                let mut bad = 0;
                while let Some(r) = tasks.join_next().await {
                    let (l, b) = r.map_err(io)?;
                    lat.extend(l);
                    bad += b;
                }
                Ok((Spread::of(lat), bad))
            })
        };
        // Warm-up, then each endpoint.
        let _ = load("/healthz")?;
        let (baseline, e0) = load("/healthz")?;
        let (api_runs, e1) = load("/api/v1/runs")?;
        let (runs_page, e2) = load("/runs")?;
        let sse = rt.block_on(follow(&client, &addr, &token, &home))?;
        Ok(DashboardBench {
            runs,
            requests,
            concurrency,
            api_p99_ratio: api_runs.p99_ms / baseline.p99_ms.max(1e-9),
            page_p99_ratio: runs_page.p99_ms / baseline.p99_ms.max(1e-9),
            baseline,
            api_runs,
            runs_page,
            errors: e0 + e1 + e2,
            sse,
            idle: IdleRss::default(),
        })
    })();
    drop(daemon);
    let idle = measured.is_ok().then(|| idle_rss(&rt, &home, &dir, &token));
    let _ = std::fs::remove_dir_all(&dir);
    let mut measured = measured?;
    measured.idle = idle.unwrap_or_else(|| Ok(IdleRss::default()))?;
    Ok(measured)
}

fn wall_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// The delay of each `tick <ns>` line in `text`, in milliseconds.
fn delays(text: &str, now: i64, out: &mut Vec<f64>) {
    for line in text.lines() {
        let line = line.strip_prefix("data:").unwrap_or(line).trim();
        if let Some(ns) = line
            .strip_prefix("tick ")
            .and_then(|n| n.trim().parse::<i64>().ok())
        {
            out.push((now - ns) as f64 / 1e6);
        }
    }
}

/// Starts the `tick` workflow, follows its step's log over SSE and, at the same time, tails the
/// log file directly from another thread (the baseline).
async fn follow(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    home: &std::path::Path,
) -> Result<SseBench, String> {
    let bearer = format!("Bearer {token}");
    let body = client
        .post(format!("http://{addr}/api/v1/workflows/tick/run"))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .map_err(io)?
        .bytes()
        .await
        .map_err(io)?;
    let started: serde_json::Value = serde_json::from_slice(&body).map_err(io)?;
    let id = started["id"]
        .as_str()
        .ok_or_else(|| format!("the run was not started: {started}"))?
        .to_owned();
    // The step's log exists once its first line is written.
    let dir = home.join("logs").join("runs").join(&id);
    let end = Instant::now() + Duration::from_secs(30);
    let path = loop {
        let found = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "log"))
        });
        if let Some(p) = found {
            break p;
        }
        if Instant::now() > end {
            return Err("the tick step wrote no log within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tail = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut offset = 0usize;
            let mut lat = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(bytes) = std::fs::read(&path)
                    && bytes.len() > offset
                    && let Some(nl) = bytes[offset..].iter().rposition(|b| *b == b'\n')
                {
                    let now = wall_ns();
                    delays(
                        &String::from_utf8_lossy(&bytes[offset..=offset + nl]),
                        now,
                        &mut lat,
                    );
                    offset += nl + 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            lat
        })
    };
    let mut resp = client
        .get(format!("http://{addr}/runs/{id}/steps/tick/stream"))
        .header("authorization", &bearer)
        .send()
        .await
        .map_err(io)?;
    let mut lat = Vec::new();
    let mut pending = String::new();
    let mut ended = false;
    while !ended {
        let chunk = tokio::time::timeout(Duration::from_secs(60), resp.chunk())
            .await
            .map_err(|_| "the SSE stream was silent for 60 s".to_owned())?
            .map_err(io)?;
        let Some(chunk) = chunk else { break };
        let now = wall_ns();
        pending.push_str(&String::from_utf8_lossy(&chunk));
        // Whole lines only; the rest waits for the next chunk.
        if let Some(nl) = pending.rfind('\n') {
            let whole: String = pending.drain(..=nl).collect();
            ended = whole.lines().any(|l| l.trim() == "event: end");
            delays(&whole, now, &mut lat);
        }
    }
    // The tail may still be a millisecond behind.
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let base = tail
        .join()
        .map_err(|_| "the tail thread panicked".to_owned())?;
    Ok(SseBench {
        lines: base.len(),
        missed: base.len().saturating_sub(lat.len()),
        sse: Spread::of(lat),
        baseline_tail: Spread::of(base),
    })
}

/// The same data directory served three times, at rest: with `--no-dashboard` (webhooks and
/// `/healthz` only), with the dashboard unused (both asked `/healthz` a few times), and with the
/// dashboard after each page and API has answered once. Each daemon settles for 3 s before it is
/// read.
fn idle_rss(
    rt: &tokio::runtime::Runtime,
    home: &std::path::Path,
    root: &std::path::Path,
    token: &str,
) -> Result<IdleRss, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(io)?;
    // (dashboard enabled, pages served)
    let measure = |dashboard: bool, served: bool| -> Result<(u64, u64), String> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut args = vec!["--bind", addr.as_str()];
        if !dashboard {
            args.push("--no-dashboard");
        }
        let daemon = BenchDaemon::start(home, root, &args, &[])?;
        rt.block_on(async {
            BenchDaemon::wait_listening(&client, &addr).await?;
            let paths: &[&str] = if served {
                &[
                    "/",
                    "/runs",
                    "/workflows",
                    "/workflows/tick",
                    "/approvals",
                    "/audit",
                    "/vault",
                    "/cron",
                    "/api/v1/overview",
                    "/api/v1/runs",
                    "/api/v1/workflows",
                    "/api/v1/openapi.json",
                    "/metrics",
                    "/static/htmx.min.js",
                    "/static/app.css",
                ]
            } else {
                &["/healthz", "/healthz", "/healthz"]
            };
            for p in paths {
                let r = client
                    .get(format!("http://{addr}{p}"))
                    .header("authorization", format!("Bearer {token}"))
                    .send()
                    .await
                    .map_err(io)?;
                if !r.status().is_success() {
                    return Err(format!("GET {p} answered {}", r.status()));
                }
                let _ = r.bytes().await;
            }
            Ok::<_, String>(())
        })?;
        std::thread::sleep(Duration::from_secs(3));
        let got = proc_stats(daemon.pid())
            .map(|(rss, _)| rss)
            .ok_or("the daemon exited while idle")?;
        drop(daemon);
        Ok(got)
    };
    let (base, base_anon) = measure(false, false)?;
    let (unused, unused_anon) = measure(true, false)?;
    let (dash, dash_anon) = measure(true, true)?;
    let minus = |a: u64, b: u64| i64::try_from(a).unwrap_or(0) - i64::try_from(b).unwrap_or(0);
    Ok(IdleRss {
        no_dashboard_rss_kib: base,
        no_dashboard_anon_kib: base_anon,
        unused_rss_kib: unused,
        unused_anon_kib: unused_anon,
        dashboard_rss_kib: dash,
        dashboard_anon_kib: dash_anon,
        unused_delta_kib: minus(unused, base),
        delta_kib: minus(dash, base),
    })
}

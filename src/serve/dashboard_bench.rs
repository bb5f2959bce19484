//! `claw bench dashboard`: the runs page and `/api/v1/runs` of a real `claw serve` with many runs
//! in its store, against `GET /healthz` on the same daemon with the same client.

use std::sync::Arc;

use super::bench::{BenchDaemon, free_port, scratch};
use std::time::{Duration, Instant};

use crate::store::{RunRecord, RunStatus, SqliteStore, Store as _};

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
                id: format!("{i:026}"),
                workflow: format!("wf{}", i % 5),
                workflow_path: String::new(),
                definition: String::new(),
                params: serde_json::json!({"n": i}),
                trigger: serde_json::json!({"type": "bench"}),
                status,
                owner: None,
                lease_until: None,
                dry_run: false,
                cancel_requested: false,
                parent_run: None,
                outputs: serde_json::json!({}),
                error: None,
                created_at: created,
                started_at: Some(created),
                finished_at: Some(created + 250),
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
    let addr = format!("127.0.0.1:{}", free_port()?);
    let daemon = BenchDaemon::start(&home, &dir, &["--bind", &addr], &[])?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io)?;
    crate::steps::http::install_crypto_provider();
    let measured = (|| {
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
        })
    })();
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

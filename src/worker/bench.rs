//! `claw bench pg`: the cost of a worker's claim on PostgreSQL with a long queue; the throughput
//! of real `claw worker` processes; a sequential workflow on PostgreSQL against SQLite.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Dirs, Settings};
use crate::engine::{Engine, NewRun};
use crate::store::postgres::{PgStore, ScratchDb};
use crate::store::{RunRecord, RunStatus, Store as _};

/// What `claw bench pg` measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub queued: usize,
    pub claims: usize,
    /// `claim_queued` of one run (`FOR UPDATE SKIP LOCKED`, epoch bumped), ms.
    pub claim_p50_ms: f64,
    pub claim_p99_ms: f64,
    /// One primary-key read of a run on the same connection pool (the round trip), ms.
    pub baseline_p50_ms: f64,
    pub baseline_p99_ms: f64,
    pub p50_ratio: f64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// Queues `queued` runs in a scratch database (`CLAW_TEST_PG`), then times `claims` claims of
/// one run each against as many reads of one run.
pub fn run(queued: usize, claims: usize) -> Result<Report, String> {
    let db = ScratchDb::create("bench").map_err(|e| e.to_string())?;
    let store = PgStore::open(&db.url).map_err(|e| e.to_string())?;
    let sql: String = format!(
        "INSERT INTO runs (id, workflow, workflow_path, definition, status, created_at) \
         SELECT 'r' || lpad(g::text, 8, '0'), 'bench', 'bench.yaml', 'steps: []', 'queued', g \
         FROM generate_series(1, {queued}) g; ANALYZE runs;"
    );
    store.execute_batch(&sql).map_err(|e| e.to_string())?;
    let mut claim = Vec::with_capacity(claims);
    let mut base = Vec::with_capacity(claims);
    for _ in 0..claims {
        let t = Instant::now();
        let got = store
            .claim_queued("bench", &[], 1, i64::MAX / 2, 1)
            .map_err(|e| e.to_string())?;
        claim.push(t.elapsed().as_secs_f64() * 1e3);
        if got.is_empty() {
            return Err("the queue ran dry".into());
        }
        let t = Instant::now();
        let r: Option<RunRecord> = store.get_run(&got[0]).map_err(|e| e.to_string())?;
        base.push(t.elapsed().as_secs_f64() * 1e3);
        if r.map(|r| r.status) != Some(RunStatus::Queued) {
            return Err("a claimed run changed status".into());
        }
    }
    let (c50, c99) = (pct(&mut claim, 0.5), pct(&mut claim, 0.99));
    let (b50, b99) = (pct(&mut base, 0.5), pct(&mut base, 0.99));
    Ok(Report {
        queued,
        claims,
        claim_p50_ms: c50,
        claim_p99_ms: c99,
        baseline_p50_ms: b50,
        baseline_p99_ms: b99,
        p50_ratio: if b50 > 0.0 { c50 / b50 } else { 0.0 },
    })
}

/// Throughput of real `claw worker` processes on one queue.
#[derive(Debug, serde::Serialize)]
pub struct Throughput {
    pub workers: usize,
    /// `--slots` of each worker.
    pub slots: usize,
    pub runs: usize,
    /// From the first run's start to the last run's end (the store's timestamps), s.
    pub seconds: f64,
    pub runs_per_s: f64,
    /// `runs_per_s` against that of one worker measured in the same invocation.
    pub ratio_vs_one: f64,
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Queues `runs` runs of a one-step `sleep 0.05` workflow in a scratch database, starts
/// `workers` `claw worker --slots <slots>` processes, and waits until every run succeeded; the
/// time from the first run's start to the last one's end, in seconds.
pub fn throughput(runs: usize, workers: usize, slots: usize) -> Result<f64, String> {
    let db = ScratchDb::create("bench_tp").map_err(io)?;
    let store = Arc::new(PgStore::open(&db.url).map_err(io)?);
    let scratch = crate::serve::bench::scratch().map_err(io)?;
    let result = drive_workers(&db.url, &store, &scratch, runs, workers, slots);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn drive_workers(
    url: &str,
    store: &Arc<PgStore>,
    scratch: &Path,
    runs: usize,
    workers: usize,
    slots: usize,
) -> Result<f64, String> {
    // Every run kept, so that the bench counts them and reads their times (the default keeps a
    // workflow's newest 200).
    std::fs::write(
        scratch.join("claw.yaml"),
        format!(
            "retention:\n  max_runs: {}\n",
            runs.saturating_mul(2).max(1000)
        ),
    )
    .map_err(io)?;
    let path = scratch.join("workflows").join("sleep.yaml");
    let yaml = "name: sleep\nsteps:\n  - name: nap\n    command: sleep 0.05\n";
    std::fs::write(&path, yaml).map_err(io)?;
    let wf = crate::workflow::load::load_str(&path, yaml.to_owned()).map_err(|e| e.render())?;
    let dirs = Dirs {
        home: scratch.join("queue"),
        root: scratch.to_path_buf(),
    };
    let engine = Engine::with_store(dirs, Settings::default(), store.clone());
    for _ in 0..runs {
        engine
            .create_run(&NewRun {
                workflow: &wf,
                params: serde_json::json!({}),
                trigger: serde_json::json!({"type": "bench"}),
                dry_run: false,
                claim: false,
            })
            .map_err(io)?;
    }
    let mut children = Vec::new();
    for i in 0..workers {
        let log = std::fs::File::create(scratch.join(format!("worker-{i}.log"))).map_err(io)?;
        let log2 = log.try_clone().map_err(io)?;
        let child = crate::serve::bench::claw_at(&scratch.join(format!("worker-{i}")), scratch)?
            .args(["worker", "--slots", &slots.to_string()])
            .env("CLAW_STORE_URL", url)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(io)?;
        children.push(child);
    }
    // Generous: a run sleeps 50 ms; a loaded debug build may spend more than that around it.
    let deadline =
        Instant::now() + Duration::from_secs(120) + Duration::from_millis(200) * runs as u32;
    let outcome = loop {
        let counts = store
            .query_i64s(
                "SELECT count(*) FILTER (WHERE status = 'succeeded'), \
                 count(*) FILTER (WHERE status IN ('failed', 'cancelled', 'waiting')) FROM runs",
            )
            .map_err(io)?;
        if counts[1] > 0 {
            break Err(format!("{} run(s) did not succeed", counts[1]));
        }
        if usize::try_from(counts[0]).unwrap_or(0) >= runs {
            break Ok(());
        }
        if let Some(i) = children
            .iter_mut()
            .position(|c| c.try_wait().ok().flatten().is_some())
        {
            break Err(format!("worker {i} exited"));
        }
        if Instant::now() > deadline {
            break Err(format!(
                "only {} of {runs} runs finished in time",
                counts[0]
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for c in &children {
        if let Ok(pid) = i32::try_from(c.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for c in &mut children {
        let _ = c.wait();
    }
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(scratch.join("worker-0.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        return Err(format!(
            "{e} (worker 0's log ends:\n{})",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let span = store
        .query_i64s("SELECT min(started_at), max(finished_at) FROM runs")
        .map_err(io)?;
    Ok((span[1] - span[0]) as f64 / 1000.0)
}

/// One process run of a workflow of sequential `true` steps on each store.
#[derive(Debug, serde::Serialize)]
pub struct Sequential {
    pub steps: usize,
    pub rounds: usize,
    /// Median wall time of `claw workflow run` (the whole process) on SQLite, ms.
    pub sqlite_ms: f64,
    /// The same on PostgreSQL (`CLAW_STORE_URL`), ms.
    pub postgres_ms: f64,
    pub ratio: f64,
}

/// `claw workflow run` of a workflow of `steps` sequential `true` steps, as a user runs it, on
/// a scratch SQLite data directory and on a scratch PostgreSQL database, interleaved `rounds`
/// times (one warm-up round each, not counted); the medians.
pub fn sequential(steps: usize, rounds: usize) -> Result<Sequential, String> {
    let db = ScratchDb::create("bench_seq").map_err(io)?;
    let scratch = crate::serve::bench::scratch().map_err(io)?;
    let result = sequential_in(&db.url, &scratch, steps, rounds);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn sequential_in(
    url: &str,
    scratch: &Path,
    steps: usize,
    rounds: usize,
) -> Result<Sequential, String> {
    let mut yaml = String::from("name: seq\nsteps:\n");
    for i in 0..steps {
        yaml.push_str(&format!("  - name: s{i}\n    command: \"true\"\n"));
    }
    std::fs::write(scratch.join("workflows").join("seq.yaml"), yaml).map_err(io)?;
    let home = scratch.join("home");
    let once = |pg: bool| -> Result<f64, String> {
        let mut c = crate::serve::bench::claw_at(&home, scratch)?;
        c.args(["workflow", "run", "seq"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if pg {
            c.env("CLAW_STORE_URL", url);
        } else {
            c.env_remove("CLAW_STORE_URL");
        }
        let t = Instant::now();
        let out = c.output().map_err(io)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            return Err(format!(
                "claw workflow run on {}: {}",
                if pg { "PostgreSQL" } else { "SQLite" },
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(ms)
    };
    let (mut lite, mut pg) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let a = once(false)?;
        let b = once(true)?;
        if round > 0 {
            lite.push(a);
            pg.push(b);
        }
    }
    let (l, p) = (pct(&mut lite, 0.5), pct(&mut pg, 0.5));
    Ok(Sequential {
        steps,
        rounds,
        sqlite_ms: l,
        postgres_ms: p,
        ratio: if l > 0.0 { p / l } else { 0.0 },
    })
}

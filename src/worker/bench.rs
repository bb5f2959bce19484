//! `claw bench pg`: the cost of a worker's claim on PostgreSQL with a long queue.

use std::time::Instant;

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

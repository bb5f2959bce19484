//! `claw worker`: a process that executes queued runs from the shared PostgreSQL store, on any
//! machine (docs/scale-out.md).
//!
//! A worker claims runs with `SELECT … FOR UPDATE SKIP LOCKED` ([`PgStore::claim_queued`]): a
//! queued run nobody holds, or a run whose owner's lease expired (a dead or stalled worker), whose
//! `runs_on:` labels are all among the worker's. Each claim bumps the run's fencing epoch; the
//! store refuses any later write of this worker's for a run another one claimed since
//! ([`crate::store::StoreError::Fenced`]). The engine renews the lease (default 30 s) every third
//! of it while it drives the run, and resumes a run left by a dead owner with today's crash
//! semantics (finished steps not run again, an interrupted non-idempotent step waits for a
//! decision). The worker wakes on `LISTEN claw_runs` (a new run is announced by the store) and
//! looks on its own every second for runs whose lease expired.
//!
//! On SIGTERM or SIGINT it stops claiming, lets its runs finish for the grace period, then
//! interrupts their steps (recorded interrupted, resumable) and releases the runs it still holds so
//! that another worker takes them at once; a second signal skips the wait.

pub mod bench;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Dirs, Settings};
use crate::engine::{Engine, Silent, now_ms};
use crate::store::postgres::{PgStore, WorkerInfo};
use crate::trace::DAEMON;

/// A worker's default lease on a run it executes.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Runs a worker executes at once by default.
pub const DEFAULT_SLOTS: usize = 4;
/// How often a worker looks for runs whose lease expired (new runs wake it at once).
const POLL: Duration = Duration::from_secs(1);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub slots: usize,
    pub labels: Vec<String>,
    pub lease: Duration,
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            slots: DEFAULT_SLOTS,
            labels: Vec::new(),
            lease: DEFAULT_LEASE,
            grace: Duration::from_secs(30),
        }
    }
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "`claw worker` needs the shared PostgreSQL store: set `store: postgres://user@host:5432/claw` \
         in claw.yaml, or CLAW_STORE_URL (the embedded SQLite store is for one machine; `claw serve` \
         runs its queue)"
    )]
    NoSharedStore,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Io(String),
}

impl crate::error::ExitStatus for WorkerError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::NoSharedStore => crate::error::INVALID,
            Self::Store(e) => e.exit_status(),
            Self::Io(_) => crate::error::INTERNAL,
        }
    }
}

/// Runs a worker until a stop signal (or `stop`).
pub fn run(
    dirs: Dirs,
    settings: Settings,
    opts: &Options,
    stop: CancellationToken,
) -> Result<(), WorkerError> {
    let Some(url) = settings.store.clone() else {
        return Err(WorkerError::NoSharedStore);
    };
    dirs.ensure_home().map_err(|e| {
        WorkerError::Io(format!(
            "cannot create the data directory {}: {e}",
            dirs.home.display()
        ))
    })?;
    let store = Arc::new(PgStore::open(url.as_str())?);
    let shutdown = CancellationToken::new();
    let intake = CancellationToken::new();
    let engine = Arc::new(
        Engine::with_store(dirs, settings, store.clone())
            .with_lease(opts.lease)
            .with_shared_thread()
            .with_shutdown(shutdown.clone())
            .with_park(intake.clone()),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| WorkerError::Io(format!("cannot start the async runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(
        &rt,
        work(engine, store, opts.clone(), stop, intake, shutdown),
    )
}

async fn work(
    engine: Arc<Engine>,
    store: Arc<PgStore>,
    opts: Options,
    stop: CancellationToken,
    intake: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let owner = engine.owner().to_owned();
    let lease_ms = engine.lease_ms();
    let slots = opts.slots.max(1);
    let started = now_ms();
    let info = |now: i64| WorkerInfo {
        id: owner.clone(),
        labels: opts.labels.clone(),
        slots: i64::try_from(slots).unwrap_or(i64::MAX),
        started_at: started,
        seen_at: now,
        lease_until: now + lease_ms,
    };
    store.touch_worker(&info(started))?;
    tracing::info!(
        target: DAEMON,
        "worker started (pid {}, owner {owner}, {slots} slot(s), labels [{}], lease {} ms, store {})",
        std::process::id(),
        opts.labels.join(", "),
        lease_ms,
        store.url_shown()
    );
    spawn_signals(stop.clone(), intake.clone(), shutdown.clone(), opts.grace);
    let running: Rc<RefCell<HashSet<String>>> = Rc::default();
    let done = Rc::new(Notify::new());
    let runs = tokio_util::task::TaskTracker::new();
    let mut listener = store.listen().ok();
    let mut next_touch = now_ms() + lease_ms / 3;
    while !intake.is_cancelled() {
        let now = now_ms();
        if now >= next_touch {
            if let Err(e) = store.touch_worker(&info(now)) {
                tracing::warn!(target: DAEMON, "cannot report to the store: {e}");
            }
            next_touch = now + lease_ms / 3;
        }
        let free = slots.saturating_sub(running.borrow().len());
        if free > 0 {
            match store.claim_queued(
                &owner,
                &opts.labels,
                now,
                now + lease_ms,
                u32::try_from(free).unwrap_or(u32::MAX),
            ) {
                Ok(ids) => {
                    for id in ids {
                        tracing::info!(target: DAEMON, "claimed run {id}");
                        running.borrow_mut().insert(id.clone());
                        let (engine, running, done) =
                            (engine.clone(), running.clone(), done.clone());
                        runs.spawn_local(async move {
                            let cancel = CancellationToken::new();
                            match engine.drive(&id, &cancel, &Silent).await {
                                Ok(r) => {
                                    tracing::info!(target: DAEMON, "run {id} {}", r.status);
                                }
                                Err(e) => tracing::warn!(target: DAEMON, "run {id}: {e}"),
                            }
                            running.borrow_mut().remove(&id);
                            done.notify_one();
                        });
                    }
                }
                Err(e) => tracing::warn!(target: DAEMON, "cannot claim runs: {e}"),
            }
        }
        let wake = async {
            match &listener {
                Some(l) => {
                    l.wait(POLL).await;
                }
                None => tokio::time::sleep(POLL).await,
            }
        };
        tokio::select! {
            () = wake => {}
            () = done.notified() => {}
            () = intake.cancelled() => {}
        }
        if listener
            .as_ref()
            .is_none_or(crate::store::postgres::Listener::is_closed)
        {
            listener = store.listen().ok();
        }
    }
    // Stopping: the runs finish within the grace period (the signal task then cancels
    // `shutdown`, which interrupts their steps, recorded resumable).
    runs.close();
    let waited = tokio::select! {
        () = runs.wait() => true,
        () = shutdown.cancelled() => false,
    };
    if !waited {
        runs.wait().await;
    }
    match store.release_runs(&owner) {
        Ok(0) => {}
        Ok(n) => tracing::info!(target: DAEMON, "released {n} unfinished run(s) for other workers"),
        Err(e) => tracing::warn!(target: DAEMON, "cannot release runs: {e}"),
    }
    let _ = store.remove_worker(&owner);
    tracing::info!(target: DAEMON, "worker stopped");
    Ok(())
}

/// First SIGINT/SIGTERM (or `stop`): no new claims; after `grace` or a second signal: interrupt.
fn spawn_signals(
    stop: CancellationToken,
    intake: CancellationToken,
    shutdown: CancellationToken,
    grace: Duration,
) {
    tokio::task::spawn_local(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!(target: DAEMON, "cannot listen for SIGINT/SIGTERM");
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            () = stop.cancelled() => {}
        }
        tracing::info!(target: DAEMON, "stopping: no new runs; running ones may finish for {grace:?}");
        intake.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            () = tokio::time::sleep(grace) => {}
        }
        shutdown.cancel();
    });
}

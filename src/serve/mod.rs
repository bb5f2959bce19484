//! `claw serve`: the daemon. One process per data directory ([`lease`]) owns the queue and runs
//! the scheduler ([`cron`]), the file watchers, the HTTP listener (webhooks today, the dashboard
//! later) and every run they start, plus runs queued by `claw workflow run --detach`.
//!
//! Everything runs on one thread (a current-thread runtime and a `LocalSet`: the engine's futures
//! stay where they started; steps are processes). At start the daemon takes the lease, writes the
//! PID file, marks job fires a dead daemon left running as interrupted, and resumes orphaned runs
//! through its queue. On SIGTERM or SIGINT it stops taking work (scheduler, watchers, listener),
//! lets running runs and jobs finish up to the grace period, then stops their steps and records
//! them interrupted (the runs resume at the next start); a second signal skips the wait.

pub mod bench;
pub mod chat;
pub mod conversation;
pub mod cron;
pub mod dashboard_bench;
pub mod http;
pub mod lease;
pub mod msg_bench;
pub mod systemd;
pub mod tls;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Dirs, Settings};
use crate::engine::{Engine, EngineError, Silent, now_ms};
use crate::store::{RunRecord, RunStatus};
use crate::time::{self, at};
use crate::trace::DAEMON;
use crate::triggers::cron::runner::run_job;
use crate::triggers::launch::{Execution, Launcher};

pub use lease::{Lease, LeaseError};

/// The default address of the HTTP listener.
pub const DEFAULT_BIND: &str = "127.0.0.1:8200";
/// How long running work may take to finish after a stop signal.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Runs the daemon executes at once (more stay queued, in the store).
pub const DEFAULT_MAX_RUNS: usize = 32;
/// The audit actor of the daemon's own entries.
pub const ACTOR: &str = "claw:serve";
/// How long finished fire records are kept (each schedule's newest is always kept).
const FIRE_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// How often the queue and the schedule files are looked at without being told.
const POLL: Duration = Duration::from_secs(1);
/// The role the scheduling daemon holds on a shared store.
const SCHEDULER_ROLE: &str = "scheduler";
/// How long the scheduler role lasts without renewal (renewed at every pass, at least every
/// second): a dead holder's role is taken over within this.
const SCHEDULER_LEASE_MS: i64 = 5_000;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The HTTP listener (`None`: none).
    pub bind: Option<SocketAddr>,
    pub grace: Duration,
    /// Wait for another daemon to release the data directory instead of refusing.
    pub wait: bool,
    /// Stop a seed cron daemon running on the data directory instead of refusing.
    pub take_over: bool,
    pub max_runs: usize,
    /// Serve the webhooks, `/healthz` and `/mcp` without the dashboard and its API.
    pub no_dashboard: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND.parse().ok(),
            grace: DEFAULT_GRACE,
            wait: false,
            take_over: false,
            max_runs: DEFAULT_MAX_RUNS,
            no_dashboard: false,
        }
    }
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(
        "cannot listen on {addr}: {source} (is another program using it? choose another with --bind)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Io(String),
    /// The TLS settings or files are wrong.
    #[error("{0}")]
    Tls(String),
}

impl crate::error::ExitStatus for ServeError {
    fn exit_status(&self) -> u8 {
        match self {
            Self::Bind { .. } | Self::Tls(_) => crate::error::INVALID,
            // Another daemon holds the data directory: an environment matter.
            _ => crate::error::INTERNAL,
        }
    }
}

/// `<home>/logs/serve.log`, which `claw daemon logs` reads.
pub fn log_path(home: &std::path::Path) -> std::path::PathBuf {
    home.join("logs").join("serve.log")
}

/// The daemon's log: its lines are `tracing` events with the target [`DAEMON`], which
/// `trace::daemon` writes to stderr (journald keeps it) and, from here on, to [`log_path`].
fn open_log(home: &std::path::Path) {
    let path = log_path(home);
    if let Err(e) = crate::trace::daemon::log_to_file(&path) {
        tracing::warn!(target: DAEMON, "warning: cannot open {}: {e}", path.display());
    }
}

/// Runs the daemon until a stop signal (or `stop`, for tests and embedding). Its log lines are
/// `tracing` events with the target [`DAEMON`]: the subscriber `cli::run` installs writes them
/// (an embedder adds `trace::daemon::DaemonLog` to its own).
pub fn run(
    dirs: Dirs,
    settings: Settings,
    opts: &Options,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    dirs.ensure_home().map_err(|e| {
        ServeError::Io(format!(
            "cannot create the data directory {}: {e}",
            dirs.home.display()
        ))
    })?;
    let lease = Lease::acquire(&dirs.home, opts.wait, opts.take_over, &|pid| {
        tracing::info!(
            target: DAEMON,
            "waiting for the daemon{} that owns {} to exit",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            dirs.home.display()
        );
    })?;
    open_log(&dirs.home);
    let shutdown = CancellationToken::new();
    let intake = CancellationToken::new();
    // Group commit: the listener's threads and the runs write at once, and share syncs.
    // (On PostgreSQL, the shared store of scale-out, commits are durable when they return.)
    let url = settings.store.as_ref().map(|u| u.as_str().to_owned());
    let store = crate::store::open(url.as_deref(), &dirs.db_path()).map_err(EngineError::from)?;
    // The thread that drives every run never waits for a checkpoint's fsyncs.
    store
        .checkpoint_beside_writers()
        .map_err(EngineError::from)?;
    let mut engine = Engine::with_store(dirs, settings, store)
        .with_shared_thread()
        .with_shutdown(shutdown.clone())
        .with_park(intake.clone());
    engine.audit = engine.audit.clone().write_behind();
    let engine = Arc::new(engine);
    // Bound before anything starts, so that a busy port or a bad certificate is a clear error,
    // not a half-started daemon.
    let listener = match opts.bind {
        Some(addr) => {
            let tls = tls::from_settings(&engine.dirs).map_err(ServeError::Tls)?;
            let l = std::net::TcpListener::bind(addr)
                .map_err(|source| ServeError::Bind { addr, source })?;
            l.set_nonblocking(true)
                .map_err(|e| ServeError::Io(format!("cannot set up the listener: {e}")))?;
            Some((l, tls))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Io(format!("cannot start the async runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(
        &rt,
        daemon(engine, opts.clone(), listener, stop, intake, shutdown),
    );
    drop(lease);
    result
}

/// Shared by the daemon's tasks.
struct Ctx {
    engine: Arc<Engine>,
    /// Cancelled on the first stop signal: take no new work.
    intake: CancellationToken,
    /// Cancelled when the grace period is over: interrupt what still runs.
    shutdown: CancellationToken,
    /// Wakes the queue loop (a run was created here).
    poke: Arc<Notify>,
    runs: TaskTracker,
    jobs: TaskTracker,
    /// Runs this daemon drives now.
    driving: RefCell<HashSet<String>>,
    /// Per schedule: job fires of one schedule run one at a time (overlap skip and queue).
    job_locks: RefCell<HashMap<String, Rc<tokio::sync::Mutex<()>>>>,
    max_runs: usize,
    /// The webhook listener's hooks, re-read when the workflow files change.
    webhooks: RefCell<Option<Arc<crate::triggers::webhook::server::WebhookState>>>,
    /// Rung when a message was queued here (a chat reply): the outbox loop looks at once.
    outbox_bell: Notify,
    /// Rung when a chat starts waiting for a run's outcome: the outcome watcher wakes up.
    watch_bell: Notify,
    /// Telegram updates posted to `/webhook/telegram`, for the chat loop.
    telegram: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
}

async fn daemon(
    engine: Arc<Engine>,
    opts: Options,
    listener: Option<(std::net::TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    stop: CancellationToken,
    intake: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (tg_tx, tg_rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Rc::new(Ctx {
        engine: engine.clone(),
        intake,
        shutdown,
        poke: Arc::new(Notify::new()),
        runs: TaskTracker::new(),
        jobs: TaskTracker::new(),
        driving: RefCell::new(HashSet::new()),
        job_locks: RefCell::new(HashMap::new()),
        max_runs: opts.max_runs.max(1),
        webhooks: RefCell::new(None),
        telegram: tg_tx,
        outbox_bell: Notify::new(),
        watch_bell: Notify::new(),
    });
    tracing::info!(
        target: DAEMON,
        "started (pid {}, data directory {}, config root {})",
        std::process::id(),
        engine.dirs.home.display(),
        engine.dirs.root.display()
    );
    engine.audit(
        &crate::audit::Event::new(
            ACTOR,
            crate::audit::Action::ServeStarted,
            &engine.dirs.home.display().to_string(),
            "ok",
            serde_json::json!({"pid": std::process::id(), "bind": opts.bind.map(|a| a.to_string())}),
        ),
        &Silent,
    );
    spawn_signals(&ctx, stop);
    // On a shared store the fires are recovered by whichever daemon takes the scheduler role.
    if !engine.store.shared() {
        recover_fires(&ctx);
    }
    // Fire rows are the dedupe record of the past: 30 days is far beyond any catch-up window.
    match engine.store.prune_fires(now_ms() - FIRE_RETENTION_MS) {
        Ok(0) => {}
        Ok(n) => tracing::info!(target: DAEMON, "pruned {n} fire record(s) older than 30 days"),
        Err(e) => tracing::warn!(target: DAEMON, "cannot prune old fire records: {e}"),
    }

    let mut intake_tasks = Vec::new();
    {
        let c = ctx.clone();
        intake_tasks.push(tokio::task::spawn_local(async move { queue_loop(c).await }));
    }
    {
        let c = ctx.clone();
        intake_tasks.push(tokio::task::spawn_local(async move { cron_loop(c).await }));
    }
    {
        let c = ctx.clone();
        intake_tasks.push(tokio::task::spawn_local(async move { watch_loop(c).await }));
    }
    {
        // SSH connections the runs' steps and jobs left in the pool: idle ones are closed.
        let intake = ctx.intake.clone();
        intake_tasks.push(tokio::task::spawn_local(async move {
            loop {
                tokio::select! {
                    () = intake.cancelled() => break,
                    () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                        let n = crate::ssh::sweep_idle().await;
                        if n > 0 {
                            tracing::info!(target: DAEMON, "closed {n} idle SSH connection(s)");
                        }
                    }
                }
            }
        }));
        let c = ctx.clone();
        intake_tasks.push(tokio::task::spawn_local(
            async move { outbox_loop(c).await },
        ));
        let c = ctx.clone();
        intake_tasks.push(tokio::task::spawn_local(async move {
            chat::telegram_loop(c, tg_rx).await;
        }));
    }
    // The listener has a thread of its own: a request is never kept waiting while this thread
    // syncs a run's transition or starts a step (its handlers do their blocking work on their
    // runtime's blocking threads).
    let mut http_thread = None;
    if let Some((l, tls)) = listener {
        let addr = l.local_addr().ok();
        let router = http_router(&ctx, tls.is_some(), !opts.no_dashboard);
        let intake = ctx.intake.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ServeError::Io(format!("cannot start the listener's runtime: {e}")))?;
        let listener = {
            let _in_rt = rt.enter();
            tokio::net::TcpListener::from_std(l)
                .map_err(|e| ServeError::Io(format!("cannot set up the listener: {e}")))?
        };
        if let Some(a) = addr {
            tracing::info!(
                target: DAEMON,
                "listening on {}://{a} (the dashboard at /, POST /hooks/<name>, GET /healthz)",
                if tls.is_some() { "https" } else { "http" }
            );
        }
        let thread = std::thread::Builder::new()
            .name("claw-http".into())
            .spawn(move || {
                rt.block_on(http::serve(
                    listener,
                    router,
                    http::Limits::default(),
                    tls,
                    intake,
                    |line| tracing::warn!(target: DAEMON, "{line}"),
                ));
            })
            .map_err(|e| ServeError::Io(format!("cannot start the listener's thread: {e}")))?;
        http_thread = Some(thread);
    }

    ctx.intake.cancelled().await;
    for t in intake_tasks {
        let _ = t.await;
    }
    if let Some(t) = http_thread {
        // It answers the requests in progress, then ends.
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    ctx.runs.close();
    ctx.jobs.close();
    let busy = ctx.driving.borrow().len() + ctx.jobs.len();
    if busy > 0 {
        tracing::info!(
            target: DAEMON,
            "waiting up to {} for {busy} running run(s) and job(s) to finish",
            crate::time::duration::format(opts.grace)
        );
    }
    let all_done = async {
        ctx.runs.wait().await;
        ctx.jobs.wait().await;
    };
    tokio::select! {
        () = all_done => {}
        () = tokio::time::sleep(opts.grace) => {
            tracing::info!(
                target: DAEMON,
                "grace period over: stopping the steps still running and recording them interrupted"
            );
            ctx.shutdown.cancel();
        }
        () = ctx.shutdown.cancelled() => {
            tracing::info!(
                target: DAEMON,
                "second stop signal: stopping the steps still running and recording them interrupted"
            );
        }
    }
    // Interrupted steps get their SIGTERM, then SIGKILL after the kill grace.
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        ctx.runs.wait().await;
        ctx.jobs.wait().await;
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), crate::ssh::close_shared()).await;
    engine.audit(
        &crate::audit::Event::new(
            ACTOR,
            crate::audit::Action::ServeStopped,
            &engine.dirs.home.display().to_string(),
            "ok",
            serde_json::json!({"pid": std::process::id(), "interrupted": ctx.shutdown.is_cancelled()}),
        ),
        &Silent,
    );
    tracing::info!(target: DAEMON, "stopped");
    Ok(())
}

fn spawn_signals(ctx: &Rc<Ctx>, stop: CancellationToken) {
    let c = ctx.clone();
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
            _ = int.recv() => tracing::info!(target: DAEMON, "SIGINT: stopping (no new work)"),
            _ = term.recv() => tracing::info!(target: DAEMON, "SIGTERM: stopping (no new work)"),
            () = stop.cancelled() => tracing::info!(target: DAEMON, "stopping (no new work)"),
        }
        c.intake.cancel();
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        c.shutdown.cancel();
    });
}

/// Job fires a dead daemon left behind: `running` ones are recorded interrupted, `queued` ones
/// (never started) run now.
fn recover_fires(ctx: &Rc<Ctx>) {
    match ctx.engine.store.recover_fires(now_ms()) {
        Ok(found) => {
            for f in &found.interrupted {
                tracing::info!(
                    target: DAEMON,
                    "{} fire of {} was running when claw stopped: recorded interrupted (not run again)",
                    f.schedule,
                    time::rfc3339(&at(f.scheduled_for))
                );
            }
            for f in found.queued {
                if let Some(job_id) = f.schedule.strip_prefix("job:") {
                    spawn_job(
                        ctx,
                        f.schedule.clone(),
                        f.scheduled_for,
                        job_id.to_owned(),
                        true,
                    );
                }
            }
        }
        Err(e) => tracing::error!(
            target: DAEMON,
            "cannot recover the fires of a previous daemon: {e}"
        ),
    }
}

/// Whether the daemon should drive `run` now.
fn eligible(engine: &Engine, run: &RunRecord) -> bool {
    if run.status == RunStatus::Queued && run.owner.is_none() {
        // A sub-workflow's child is started by its parent's own `claw run resume` process.
        return run.parent_run.is_none();
    }
    engine.is_orphaned(run)
}

/// Claims and drives queued and orphaned runs, up to `max_runs` at once.
/// Delivers the outbox: every second, what is due (the settings are read on each pass, so a
/// token set in the vault takes effect without a restart).
async fn outbox_loop(ctx: Rc<Ctx>) {
    let client = match crate::msg::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: DAEMON, "the outbox is not delivered: {e}");
            return;
        }
    };
    let audit = crate::audit::AuditLog::in_dir(&ctx.engine.dirs.home);
    let owner = format!("daemon/{}", std::process::id());
    // One daemon per data directory: another daemon's claims are those of one that died
    // (`kill -9`) mid-send; its messages go again now rather than when the claims run out.
    match ctx.engine.store.release_messages("daemon/", &owner) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(target: DAEMON, "outbox: {n} message(s) a previous daemon was sending are sent again");
        }
        Err(e) => tracing::warn!(target: DAEMON, "outbox: {e}"),
    }
    loop {
        let (layers, _) = crate::vault::settings(
            &ctx.engine.dirs.root,
            &ctx.engine.dirs.home,
            Default::default(),
        );
        let creds = crate::msg::Creds::from_layers(&layers);
        crate::redact::register_global(creds.secret_values());
        let pass = crate::msg::outbox::drain(
            ctx.engine.store.clone(),
            &client,
            &creds,
            &owner,
            &audit,
            None,
            std::time::Instant::now(),
        );
        tokio::select! {
            () = ctx.intake.cancelled() => return,
            r = pass => if let Err(e) = r {
                tracing::warn!(target: DAEMON, "{e}");
            },
        }
        tokio::select! {
            () = ctx.intake.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            () = ctx.outbox_bell.notified() => {}
        }
    }
}

async fn queue_loop(ctx: Rc<Ctx>) {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = ctx.intake.cancelled() => return,
                () = ctx.poke.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
        // A run parked at an approval gate (or waiting for a decision) takes no slot.
        let driving: Vec<String> = ctx.driving.borrow().iter().cloned().collect();
        let ids: Vec<&str> = driving.iter().map(String::as_str).collect();
        let mut active = match ctx.engine.store.count_waiting(&ids) {
            Ok(waiting) => driving.len().saturating_sub(waiting),
            Err(e) => {
                tracing::error!(target: DAEMON, "cannot read the queue: {e}");
                continue;
            }
        };
        // The queue a page at a time, oldest first, until the slots are full, leaving out the
        // runs driven here: a long queue costs its head, runs parked at gates cost nothing.
        let mut after: Option<(i64, String)> = None;
        'pages: while active < ctx.max_runs && !ctx.intake.is_cancelled() {
            let page = match ctx.engine.store.unfinished_runs_after(
                after.as_ref().map(|(t, id)| (*t, id.as_str())),
                QUEUE_PAGE,
                &ids,
            ) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(target: DAEMON, "cannot read the queue: {e}");
                    break;
                }
            };
            let last_page = page.len() < QUEUE_PAGE as usize;
            after = page.last().map(|r| (r.created_at, r.id.clone()));
            for run in &page {
                if active >= ctx.max_runs || ctx.intake.is_cancelled() {
                    break 'pages;
                }
                if ctx.driving.borrow().contains(&run.id)
                    || !eligible(&ctx.engine, run)
                    || queued_behind(&ctx.engine, run)
                {
                    continue;
                }
                if run.owner.is_some() {
                    tracing::info!(
                        target: DAEMON,
                        "resuming run {} ({}) left by a stopped process",
                        run.id, run.workflow
                    );
                }
                ctx.driving.borrow_mut().insert(run.id.clone());
                active += 1;
                let c = ctx.clone();
                let id = run.id.clone();
                ctx.runs.spawn_local(async move {
                    let never = CancellationToken::new();
                    match c.engine.drive(&id, &never, &Silent).await {
                        Ok(r) if r.status.is_finished() => {
                            tracing::info!(
                                target: DAEMON,
                                "run {} ({}) {}",
                                r.id,
                                r.workflow,
                                r.status
                            );
                        }
                        Ok(r) => tracing::info!(
                            target: DAEMON,
                            "run {} ({}) left {}",
                            r.id,
                            r.workflow,
                            r.status
                        ),
                        // Another process took it first.
                        Err(EngineError::Busy { .. }) => {}
                        Err(e) => tracing::error!(target: DAEMON, "run {id}: {e}"),
                    }
                    c.driving.borrow_mut().remove(&id);
                    c.poke.notify_one();
                });
            }
            if last_page {
                break;
            }
        }
        first = false;
    }
}

/// Unfinished runs read at a time by the queue loop.
const QUEUE_PAGE: u32 = 256;

/// A run of a schedule with `overlap: queue` waits while an earlier run of that schedule is
/// unfinished.
fn queued_behind(engine: &Engine, run: &RunRecord) -> bool {
    if run.trigger.get("overlap").and_then(|v| v.as_str()) != Some("queue") {
        return false;
    }
    let Some(schedule) = run.trigger.get("schedule").and_then(|v| v.as_str()) else {
        return false;
    };
    engine
        .store
        .schedule_run_before(schedule, run.created_at, &run.id)
        .unwrap_or_else(|e| {
            tracing::error!(target: DAEMON, "cannot read the queue: {e}");
            true
        })
}

/// The scheduler: reloads the schedule files when they change, runs a pass whenever something is
/// due, and sleeps until the next due time (at most [`POLL`]).
async fn cron_loop(ctx: Rc<Ctx>) {
    let dirs = ctx.engine.dirs.clone();
    let mut sched = cron::Scheduler::new(ctx.engine.clone());
    let mut loaded: Option<u64> = None;
    let mut last_check = tokio::time::Instant::now() - POLL;
    let mut reported: HashSet<String> = HashSet::new();
    // On a shared store (PostgreSQL, several daemons) one daemon at a time holds the scheduler
    // role, a lease renewed every pass; another takes it over when the lease expires, reloads
    // the schedules' persisted state and catches up on the missed fires by their policy.
    let shared = ctx.engine.store.shared();
    let mut held = !shared;
    loop {
        if shared {
            let now = now_ms();
            match ctx.engine.store.take_role(
                SCHEDULER_ROLE,
                ctx.engine.owner(),
                now,
                now + SCHEDULER_LEASE_MS,
            ) {
                Ok(Some(epoch)) if !held => {
                    tracing::info!(target: DAEMON, "took the scheduler role (epoch {epoch})");
                    held = true;
                    loaded = None;
                    recover_fires(&ctx);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) if held => {
                    tracing::warn!(target: DAEMON, "lost the scheduler role; another daemon holds it");
                    held = false;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(target: DAEMON, "cannot take the scheduler role: {e}"),
            }
            if !held {
                tokio::select! {
                    () = ctx.intake.cancelled() => return,
                    () = tokio::time::sleep(POLL) => {}
                }
                continue;
            }
        }
        if last_check.elapsed() >= POLL || loaded.is_none() {
            last_check = tokio::time::Instant::now();
            let fp = crate::triggers::cron::sources::fingerprint(&dirs);
            if loaded.is_some_and(|old| old != fp) {
                let hooks = ctx.webhooks.borrow().clone();
                if let Some(h) = hooks {
                    let reg = h.reload();
                    tracing::info!(
                        target: DAEMON,
                        "workflow files changed: {} webhook(s) served",
                        reg.hooks.len()
                    );
                }
            }
            if loaded != Some(fp) {
                let sources = crate::triggers::cron::sources::load_sources(&dirs);
                if let Some(why) = &sources.unreadable {
                    // Not "the files are gone": keep every schedule and try again.
                    tracing::warn!(
                        target: DAEMON,
                        "{why}; keeping the {} schedule(s) loaded before and trying again",
                        sched.len()
                    );
                } else {
                    let now_problems: HashSet<String> = sources.problems.iter().cloned().collect();
                    for p in &sources.problems {
                        if !reported.contains(p) {
                            tracing::warn!(target: DAEMON, "warning: {p}");
                        }
                    }
                    reported = now_problems;
                    let before = sched.len();
                    match sched.set_entries(sources, Utc::now()) {
                        Ok(()) => {
                            loaded = Some(fp);
                            sched.compact();
                            ctx.engine.store.release_memory();
                            release_free_memory();
                            if before != sched.len() || before == 0 {
                                tracing::info!(target: DAEMON, "{} schedule(s) active", sched.len());
                            }
                        }
                        Err(e) => {
                            tracing::error!(target: DAEMON, "cannot load the schedules' state: {e}");
                        }
                    }
                }
            }
        }
        match sched.tick(Utc::now()) {
            Ok(tick) => {
                if tick.missed > 0 || tick.skipped > 0 {
                    tracing::info!(
                        target: DAEMON,
                        "{} fire(s) missed and {} skipped (see `claw cron status` and the audit log)",
                        tick.missed, tick.skipped
                    );
                }
                if !tick.audit.is_empty()
                    && let Err(e) = ctx.engine.audit.record_batch(&tick.audit, true)
                {
                    tracing::warn!(target: DAEMON, "warning: {e}");
                }
                let mut runs = false;
                for d in tick.dispatch {
                    match d {
                        cron::Dispatch::Job {
                            schedule,
                            scheduled_for,
                            job_id,
                            serialize,
                        } => spawn_job(&ctx, schedule, scheduled_for, job_id, serialize),
                        cron::Dispatch::Run { .. } => runs = true,
                    }
                }
                if runs {
                    ctx.poke.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(target: DAEMON, "scheduler pass failed (retrying): {e}");
                loaded = None;
            }
        }
        let now = Utc::now();
        let wake = sched
            .next_due()
            .map_or(POLL, |d| (d - now).to_std().unwrap_or(Duration::ZERO))
            .min(POLL);
        tokio::select! {
            () = ctx.intake.cancelled() => return,
            () = tokio::time::sleep(wake) => {}
        }
    }
}

/// Hands the memory freed after a (re)load of the schedules back to the system: parsing
/// `jobs.json` and every workflow allocates far more than the schedules keep, and glibc's
/// allocator would otherwise hold on to it for the daemon's whole life.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it takes no pointer and
    // touches no memory in use. glibc documents it as thread-safe (it locks each arena).
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Runs one job fire (after the schedule's previous fire when `serialize`).
fn spawn_job(ctx: &Rc<Ctx>, schedule: String, scheduled_for: i64, job_id: String, serialize: bool) {
    let c = ctx.clone();
    ctx.jobs.spawn_local(async move {
        let lock = serialize.then(|| {
            c.job_locks
                .borrow_mut()
                .entry(schedule.clone())
                .or_default()
                .clone()
        });
        let _turn = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let store = c.engine.store.clone();
        let set = |status: &str, detail: Option<&str>| {
            if let Err(e) =
                store.set_fire_status(&schedule, scheduled_for, status, detail, now_ms())
            {
                tracing::error!(target: DAEMON, "cannot record the fire of {schedule}: {e}");
            }
        };
        if c.shutdown.is_cancelled() {
            return;
        }
        set("running", None);
        let result = run_job(
            &c.engine,
            &job_id,
            Some(at(scheduled_for)),
            &c.shutdown,
            &Silent,
        )
        .await;
        match result {
            _ if c.shutdown.is_cancelled() => {
                set(
                    "interrupted",
                    Some("interrupted: claw serve stopped while the job ran"),
                );
                tracing::info!(target: DAEMON, "job {job_id} interrupted by the shutdown");
            }
            Ok(r) => {
                let detail = r.output_file.display().to_string();
                set(if r.ok() { "ok" } else { "error" }, Some(&detail));
                tracing::info!(
                    target: DAEMON,
                    "job {} ({}) {}",
                    &job_id[..job_id.len().min(8)],
                    r.job_name,
                    r.status
                );
            }
            Err(e) => {
                set("error", Some(&e.to_string()));
                tracing::error!(target: DAEMON, "job {job_id}: {e}");
            }
        }
    });
}

/// `(size, mtime)` of `watchers.yaml`, to restart the watchers when it changes.
fn watchers_stamp(dirs: &crate::config::Dirs) -> Option<(u64, Option<std::time::SystemTime>)> {
    let path = crate::triggers::watch::rules::locate(dirs)?;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()))
}

type Stamp = Option<(u64, Option<std::time::SystemTime>)>;

fn settings_stamp(dirs: &crate::config::Dirs) -> Stamp {
    let m = std::fs::metadata(dirs.root.join("claw.yaml")).ok()?;
    Some((m.len(), m.modified().ok()))
}

/// `claw.yaml` changed: its settings replace the engine's (runs and jobs take them from their
/// next step on); a file with errors is reported and the settings in force are kept.
fn reload_settings(ctx: &Ctx) {
    match crate::config::Settings::load(&ctx.engine.dirs.root) {
        Ok(s) => {
            tracing::info!(
                target: DAEMON,
                "claw.yaml changed: settings reloaded (retention {} / {} runs, step logs {} bytes, kill grace {})",
                crate::time::duration::format(s.retention_max_age),
                s.retention_max_runs,
                s.max_step_log_bytes,
                crate::time::duration::format(s.kill_grace)
            );
            ctx.engine.set_settings(s);
        }
        Err(e) => tracing::warn!(
            target: DAEMON,
            "warning: claw.yaml changed but has errors; the settings in force are kept:\n{}",
            e.render()
        ),
    }
}

/// Runs the watchers, and runs them again with the new rules when `watchers.yaml` changes;
/// reloads `claw.yaml`'s settings when it changes (the watchers restart to take them).
async fn watch_loop(ctx: Rc<Ctx>) {
    let dirs = ctx.engine.dirs.clone();
    let mut first = true;
    let mut settings = settings_stamp(&dirs);
    loop {
        let stamp = watchers_stamp(&dirs);
        let cancel = ctx.intake.child_token();
        if !first {
            tracing::info!(target: DAEMON, "restarting the watchers");
        }
        first = false;
        let running = spawn_watchers(&ctx, cancel.clone());
        loop {
            tokio::select! {
                () = ctx.intake.cancelled() => {
                    if let Some(t) = running {
                        let _ = t.await;
                    }
                    return;
                }
                () = tokio::time::sleep(POLL) => {}
            }
            let now = settings_stamp(&dirs);
            if now != settings {
                settings = now;
                reload_settings(&ctx);
                break;
            }
            if watchers_stamp(&dirs) != stamp {
                tracing::info!(target: DAEMON, "watchers.yaml changed");
                break;
            }
        }
        cancel.cancel();
        if let Some(t) = running {
            let _ = t.await;
        }
    }
}

fn spawn_watchers(ctx: &Rc<Ctx>, cancel: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let dirs = ctx.engine.dirs.clone();
    let set = match crate::triggers::watch::rules::load(&dirs) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                target: DAEMON,
                "warning: the file watchers do not run:\n{}",
                e.render()
            );
            return None;
        }
    };
    let rules: Vec<crate::triggers::watch::Rule> = set.enabled().cloned().collect();
    if rules.is_empty() {
        return None;
    }
    let launcher = Launcher::new(
        ctx.engine.clone(),
        Execution::QueueAndWake(ctx.poke.clone()),
    );
    let dispatcher = Arc::new(crate::triggers::watch::Dispatcher::new(
        dirs,
        ctx.engine.settings(),
        Some(launcher),
        cancel.clone(),
    ));
    let notify: Rc<dyn Fn(&crate::triggers::watch::Notice<'_>)> = Rc::new(watch_notice);
    Some(tokio::task::spawn_local(async move {
        if let Err(e) = crate::triggers::watch::serve(rules, dispatcher, cancel, notify).await {
            tracing::error!(target: DAEMON, "the file watchers stopped: {e}");
        }
    }))
}

fn watch_notice(n: &crate::triggers::watch::Notice<'_>) {
    use crate::triggers::watch::{Notice, Outcome, Report};
    match n {
        Notice::Watcher(Report::Watching { rule, dir }) => {
            tracing::info!(target: DAEMON, "watcher [{rule}] watching {}", dir.display());
        }
        Notice::Watcher(Report::Waiting {
            rule,
            dir,
            ancestor,
        }) => tracing::info!(
            target: DAEMON,
            "watcher [{rule}] waiting for {} to appear (watching {})",
            dir.display(),
            ancestor.display()
        ),
        Notice::Watcher(Report::Problem(p)) => {
            tracing::warn!(target: DAEMON, "watcher warning: {p}");
        }
        Notice::Watcher(Report::Event(_)) | Notice::RunFinished { .. } => {}
        Notice::Action { event, outcome } => {
            let what = match outcome {
                Outcome::Done(s) => s.clone(),
                Outcome::Failed(s) => format!("failed: {s}"),
                Outcome::Started { run_id, .. } => format!("started run {run_id}"),
            };
            tracing::info!(
                target: DAEMON,
                "watcher [{}] {} {}: {what}",
                event.rule,
                event.kind,
                event.path.display()
            );
        }
    }
}

fn http_router(ctx: &Rc<Ctx>, tls: bool, dashboard: bool) -> axum::Router {
    let sink: crate::triggers::webhook::server::LogSink =
        Arc::new(|line: &str| tracing::info!(target: DAEMON, "{line}"));
    let state = Arc::new(crate::triggers::webhook::server::WebhookState::new(
        ctx.engine.clone(),
        Execution::QueueAndWake(ctx.poke.clone()),
        sink,
    ));
    *ctx.webhooks.borrow_mut() = Some(state.clone());
    let mut router = crate::triggers::webhook::server::router(state)
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(chat::webhook_route(
            ctx.engine.dirs.clone(),
            ctx.telegram.clone(),
        ));
    if dashboard {
        let web = Arc::new(crate::web::Web::new(
            ctx.engine.clone(),
            Execution::QueueAndWake(ctx.poke.clone()),
            tls,
            &|line| tracing::warn!(target: DAEMON, "{line}"),
        ));
        router = router.merge(crate::web::router(web));
    }
    router.merge(crate::mcp::http::router(
        crate::mcp::Server::new(ctx.engine.dirs.clone(), ctx.engine.settings())
            .with_daemon_check(|_| true),
        crate::mcp::http::token_from_settings(&ctx.engine.dirs).as_deref(),
        ctx.engine.audit.clone(),
        ctx.intake.clone(),
    ))
}

//! Starting runs from triggers (file watchers, webhooks): find the workflow by name, bind its
//! params, create the run with its `trigger`, and hand it to whoever executes it — the daemon's
//! queue ([`Execution::Queue`], the run stays unowned) or a [`RunDriver`] in this process.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Dirs;
use crate::engine::{Engine, NewRun, Silent};
use crate::store::RunRecord;
use crate::workflow::Workflow;
use crate::workflow::catalogue::{Catalogue, LoadError};

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    NotFound(String),
    /// The workflow file has problems, or the params do not bind.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// A workflow by name or path, by the catalogue's rules ([`crate::workflow::catalogue`]).
pub fn find_workflow(dirs: &Dirs, name: &str) -> Result<Workflow, LaunchError> {
    Catalogue::new(dirs).load(name).map_err(|e| match e {
        LoadError::Invalid(e) => LaunchError::Invalid(e.render()),
        LoadError::Find(e) => LaunchError::NotFound(e.to_string()),
    })
}

/// What happens to a run once created.
#[derive(Debug, Clone)]
pub enum Execution {
    /// Left queued and unowned, for the daemon's loop to claim.
    Queue,
    /// Queued, and the daemon's queue loop woken at once.
    QueueAndWake(Arc<tokio::sync::Notify>),
    /// Executed by a driver thread in this process.
    Drive(RunDriver),
}

/// Creates runs for triggers.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub engine: Arc<Engine>,
    pub execution: Execution,
}

/// A run just created.
#[derive(Debug)]
pub struct Started {
    pub run: RunRecord,
    /// When a [`RunDriver`] executes it: the finished run (or why it could not be driven).
    pub finished: Option<oneshot::Receiver<Result<RunRecord, String>>>,
}

impl Launcher {
    pub fn new(engine: Arc<Engine>, execution: Execution) -> Self {
        Self { engine, execution }
    }

    /// Creates a run of `workflow` with `given` params (text, bound to the declared types) and
    /// `trigger` (visible as `trigger.*` in expressions).
    pub fn start_named(
        &self,
        workflow: &str,
        given: &[(String, String)],
        trigger: serde_json::Value,
    ) -> Result<Started, LaunchError> {
        let wf = find_workflow(&self.engine.dirs, workflow)?;
        self.start(&wf, given, trigger)
    }

    /// [`Launcher::start_named`] for a loaded workflow.
    pub fn start(
        &self,
        wf: &Workflow,
        given: &[(String, String)],
        trigger: serde_json::Value,
    ) -> Result<Started, LaunchError> {
        let bound = wf.bind_params(given).map_err(|errs| {
            LaunchError::Invalid(format!("workflow `{}`: {}", wf.name, errs.join("; ")))
        })?;
        let run = self.engine.create_run(&NewRun {
            workflow: wf,
            params: bound,
            trigger,
            dry_run: false,
            claim: false,
        })?;
        let finished = match &self.execution {
            Execution::Queue => None,
            Execution::QueueAndWake(wake) => {
                wake.notify_one();
                None
            }
            Execution::Drive(driver) => Some(driver.submit(run.id.clone())),
        };
        Ok(Started { run, finished })
    }
}

type Job = (String, oneshot::Sender<Result<RunRecord, String>>);

/// Executes runs on a thread of its own (a single-threaded runtime: a run's steps are processes,
/// and the engine's futures stay on the thread that drives them).
#[derive(Debug, Clone)]
pub struct RunDriver {
    tx: mpsc::UnboundedSender<Job>,
}

impl RunDriver {
    /// Starts the thread. Runs stop (and stay resumable) when `cancel` fires; the thread ends
    /// once every [`RunDriver`] clone is dropped and its runs are done.
    pub fn spawn(
        engine: Arc<Engine>,
        cancel: CancellationToken,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name("claw-runs".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    while let Some((run_id, reply)) = rx.recv().await {
                        let engine = engine.clone();
                        let cancel = cancel.clone();
                        tokio::task::spawn_local(async move {
                            let result = engine
                                .drive(&run_id, &cancel, &Silent)
                                .await
                                .map_err(|e| e.to_string());
                            let _ = reply.send(result);
                        });
                    }
                });
                // Let the runs still going finish (or stop, once cancelled).
                rt.block_on(local);
            })?;
        Ok((Self { tx }, handle))
    }

    /// Hands a created run over; the receiver gets the finished run.
    pub fn submit(&self, run_id: String) -> oneshot::Receiver<Result<RunRecord, String>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, reply))) = self.tx.send((run_id, reply)) {
            let _ = reply.send(Err("the run driver has stopped".into()));
        }
        rx
    }
}

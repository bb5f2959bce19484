//! File watchers: the seed's `watchers.yaml` rules ([`rules`]), inotify watching with per-path
//! debouncing ([`watcher`]), and the actions rules run ([`action`]).
//!
//! [`serve`] is the loop `claw watcher start` runs and `claw serve` mounts: events in, actions
//! out, until cancelled.

pub mod action;
pub mod rules;
pub mod watcher;

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use action::{Dispatcher, Outcome};
pub use rules::{ActionKind, EventKind, Rule, RuleSet};
pub use watcher::{FsEvent, Report, WatchError, Watcher};

/// How many actions run at once (a burst of new files must not start hundreds of processes).
pub const MAX_CONCURRENT_ACTIONS: usize = 4;

/// What [`serve`] tells its caller.
#[derive(Debug)]
pub enum Notice<'a> {
    Watcher(&'a Report),
    /// An action finished (or a workflow run was created).
    Action {
        event: &'a FsEvent,
        outcome: &'a Outcome,
    },
    /// A workflow run started by a rule finished (when this process drives it).
    RunFinished {
        event: &'a FsEvent,
        run_id: &'a str,
        result: &'a Result<crate::store::RunRecord, String>,
    },
}

/// Watches `rules` and runs their actions until `cancel` fires. Must run inside a
/// [`tokio::task::LocalSet`] (actions are local tasks); `notify` hears about everything.
pub async fn serve(
    rules: Vec<Rule>,
    dispatcher: Arc<Dispatcher>,
    cancel: CancellationToken,
    notify: Rc<dyn Fn(&Notice<'_>)>,
) -> Result<(), WatchError> {
    let by_name: std::collections::HashMap<String, Rule> =
        rules.iter().map(|r| (r.name.clone(), r.clone())).collect();
    // Never claw's own data directory: its logs and audit entries would trigger rules forever.
    let own = vec![dispatcher.dirs.home.clone()];
    let mut watcher = Watcher::new(rules, &own)?;
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_ACTIONS));
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let report = tokio::select! {
            () = cancel.cancelled() => break,
            r = watcher.next() => match r {
                Some(r) => r,
                None => break,
            },
        };
        notify(&Notice::Watcher(&report));
        let Report::Event(event) = report else {
            continue;
        };
        let Some(rule) = by_name.get(&event.rule).cloned() else {
            continue;
        };
        let dispatcher = dispatcher.clone();
        let notify = notify.clone();
        let slots = slots.clone();
        tasks.spawn_local(async move {
            let outcome = {
                let Ok(_slot) = slots.acquire().await else {
                    return;
                };
                dispatcher.dispatch(&rule, &event).await
            };
            notify(&Notice::Action {
                event: &event,
                outcome: &outcome,
            });
            if let Outcome::Started {
                run_id,
                finished: Some(done),
            } = outcome
            {
                let result = done
                    .await
                    .unwrap_or_else(|_| Err("the run driver stopped".into()));
                notify(&Notice::RunFinished {
                    event: &event,
                    run_id: &run_id,
                    result: &result,
                });
            }
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

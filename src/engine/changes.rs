//! One watcher of the store per engine, for every run of the process that waits on a decision
//! taken elsewhere (an approval gate): instead of each gate querying the store every few hundred
//! milliseconds, one task checks SQLite's `data_version` (one cheap query, whatever the number of
//! gates) and wakes the gates only when another process has committed something. Decisions
//! taken in this process ring the bell directly ([`Changes::ring`]).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// How often the store is asked whether another process changed it.
const TICK: Duration = Duration::from_millis(250);

/// The bell. Cheap to subscribe to; the watching task runs only while someone listens.
#[derive(Debug)]
pub struct Changes {
    tx: watch::Sender<u64>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            tx: watch::channel(0).0,
            task: Mutex::new(None),
        }
    }
}

impl Changes {
    /// Wakes every waiter (something they wait on may have changed).
    pub fn ring(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every ring, starting the store watcher if it is not running. Must
    /// be called within a Tokio runtime.
    pub fn subscribe(self: &Arc<Self>, store: &Arc<dyn Store>) -> watch::Receiver<u64> {
        let rx = self.tx.subscribe();
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if task
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            let me: Weak<Self> = Arc::downgrade(self);
            let store = store.clone();
            *task = Some(tokio::spawn(async move {
                let mut seen = store.data_version();
                loop {
                    tokio::time::sleep(TICK).await;
                    let Some(me) = me.upgrade() else { return };
                    if me.tx.receiver_count() == 0 {
                        return;
                    }
                    let now = store.data_version();
                    if now.is_none() || now != seen {
                        seen = now;
                        me.ring();
                    }
                }
            }));
        }
        rx
    }
}

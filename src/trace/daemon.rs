//! The daemon's log: events with the target [`TARGET`] (`tracing::info!(target: trace::DAEMON,
//! …)` in `serve/`), written one line each as `<UTC time> claw serve: <message> [key=value…]` to
//! stderr (journald keeps it) and, once [`log_to_file`] was called, appended to that file
//! (`<home>/logs/serve.log`, which `claw daemon logs` reads). They are written whatever the
//! `CLAW_LOG` level, and only here: the ordinary subscriber leaves this target out. Secret values
//! the process has loaded are masked.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The target of the daemon's log lines.
pub const TARGET: &str = "claw::daemon";

static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Appends the daemon's lines to `path` from now on (its folder is created). The first file
/// opened stays for the life of the process.
pub fn log_to_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::fsutil::create_dirs_private(dir)?;
    }
    let f = crate::fsutil::open_append_private(path)?;
    let _ = FILE.set(Mutex::new(f));
    Ok(())
}

type Sink = Box<dyn Fn(&str) + Send + Sync>;

/// The layer that writes the daemon's lines.
pub struct DaemonLog {
    sink: Sink,
}

impl std::fmt::Debug for DaemonLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonLog")
    }
}

impl DaemonLog {
    /// Writes to stderr and to the file of [`log_to_file`].
    pub fn new() -> Self {
        Self {
            sink: Box::new(|line| {
                eprint!("{line}");
                if let Some(f) = FILE.get() {
                    let mut f = f.lock().unwrap_or_else(PoisonError::into_inner);
                    let _ = f.write_all(line.as_bytes());
                }
            }),
        }
    }

    /// Writes each line to `sink` (for tests).
    pub fn with_sink(sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            sink: Box::new(sink),
        }
    }
}

impl Default for DaemonLog {
    fn default() -> Self {
        Self::new()
    }
}

/// The message, then the other fields as ` key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for DaemonLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line::default();
        event.record(&mut line);
        let text = format!(
            "{} claw serve: {}{}\n",
            crate::time::rfc3339_millis(chrono::Utc::now()),
            line.message,
            line.fields
        );
        (self.sink)(&crate::redact::global().redact(&text));
    }
}

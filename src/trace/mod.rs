//! Diagnostic tracing: one subscriber, installed by [`init`] at the start of `cli::run`, writing
//! to stderr. The level comes from `--log-level` or `-v` (`info`, `-vv` `debug`, `-vvv` `trace`),
//! else `CLAW_LOG` (`tracing-subscriber`'s env-filter syntax, e.g. `claw=debug,claw::audit=info`),
//! else `warn`. `CLAW_LOG_FORMAT=json` writes one JSON object per line.
//!
//! Every line goes through [`Redacting`] before it reaches stderr: it masks the secret values
//! this process has loaded (`crate::redact::global`), whatever event or field carried them.
//!
//! The daemon's own log lines (target [`DAEMON`]) are not subject to that filter: [`daemon`]
//! writes every one of them, in the daemon log's format, to stderr and `serve.log`.

pub mod daemon;

use std::io::{self, IsTerminal as _, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use daemon::TARGET as DAEMON;

/// The environment variable with the filter.
pub const LOG_ENV: &str = "CLAW_LOG";
/// The environment variable with the format: `text` (default) or `json`.
pub const LOG_FORMAT_ENV: &str = "CLAW_LOG_FORMAT";
/// The filter when none is given.
pub const DEFAULT_FILTER: &str = "warn";

/// The output format of tracing lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What [`init`] needs, from the flags and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// An env-filter directive (`debug`, `claw::engine=trace,warn`, …).
    pub filter: String,
    /// Where the filter came from (for error messages).
    pub source: &'static str,
    pub format: Format,
}

impl Config {
    /// Resolves the level: `--log-level` > `-v` > `CLAW_LOG` > `warn`; the format from
    /// `CLAW_LOG_FORMAT`.
    pub fn resolve(log_level: Option<&str>, verbose: u8) -> Result<Self, String> {
        let (filter, source) = if let Some(l) = log_level {
            (l.to_owned(), "--log-level")
        } else if verbose > 0 {
            let level = match verbose {
                1 => "info",
                2 => "debug",
                _ => "trace",
            };
            (level.to_owned(), "-v")
        } else if let Some(env) = crate::config::env::var(LOG_ENV) {
            (env, LOG_ENV)
        } else {
            (DEFAULT_FILTER.to_owned(), "the default")
        };
        let format = match crate::config::env::var(LOG_FORMAT_ENV).as_deref() {
            None | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some(other) => {
                return Err(format!(
                    "{LOG_FORMAT_ENV}: expected `text` or `json`, found `{other}`"
                ));
            }
        };
        Ok(Self {
            filter,
            source,
            format,
        })
    }

    fn env_filter(&self) -> Result<EnvFilter, String> {
        EnvFilter::builder().parse(&self.filter).map_err(|e| {
            format!(
                "{}: `{}` is not a log filter ({e}); expected a level (error, warn, info, \
                 debug, trace) or directives like `claw=debug,claw::audit=info`",
                self.source, self.filter
            )
        })
    }
}

/// Installs the process's subscriber (once; later calls do nothing). Errors name the setting
/// that is wrong.
pub fn init(config: &Config) -> Result<(), String> {
    let installed = subscriber(
        config.env_filter()?,
        config.format,
        io::stderr().is_terminal(),
        Redacting::new(io::stderr),
        daemon::DaemonLog::new(),
    )
    .try_init();
    // Already installed (an in-process caller ran `cli::run` twice): keep the first.
    drop(installed);
    Ok(())
}

/// The process's subscriber: `filter`ed events to `writer` in `format`, and the daemon's lines
/// (target [`DAEMON`], whatever the filter) to `daemon` only, not twice.
fn subscriber<W>(
    filter: EnvFilter,
    format: Format,
    ansi: bool,
    writer: W,
    daemon: daemon::DaemonLog,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = match format!("{DAEMON}=off").parse() {
        Ok(off) => filter.add_directive(off),
        Err(_) => filter,
    };
    // chromiumoxide reports every DevTools event it cannot parse and the end of a connection
    // (claw says what that means for the step); silent unless CLAW_LOG names it.
    let filter = match "chromiumoxide=off".parse() {
        Ok(off) if !filter.to_string().contains("chromiumoxide") => filter.add_directive(off),
        _ => filter,
    };
    let general = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(true);
    let general = match format {
        Format::Text => general.with_ansi(ansi).boxed(),
        Format::Json => general.json().with_ansi(false).boxed(),
    };
    let daemon = daemon.with_filter(
        tracing_subscriber::filter::Targets::new().with_target(DAEMON, tracing::Level::INFO),
    );
    tracing_subscriber::registry()
        .with(general.with_filter(filter))
        .with(daemon)
}

/// A [`MakeWriter`] that holds each event's bytes and masks every registered secret value in
/// them before they reach the inner writer: the subscriber writes an event whole, so a value is
/// never split between two writes.
#[derive(Debug, Clone)]
pub struct Redacting<M> {
    inner: M,
}

impl<M> Redacting<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = MaskedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedEvent {
            buf: Vec::new(),
            inner: self.inner.make_writer(),
        }
    }
}

/// One event's bytes, masked and written out when dropped (or flushed).
#[derive(Debug)]
pub struct MaskedEvent<W: Write> {
    buf: Vec<u8>,
    inner: W,
}

impl<W: Write> MaskedEvent<W> {
    fn release(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let redactor = crate::redact::global();
        let masked = redactor.redact_bytes(&self.buf);
        let written = self.inner.write_all(&masked);
        self.buf.clear();
        written?;
        self.inner.flush()
    }
}

impl<W: Write> Write for MaskedEvent<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Held until the event is complete: a flush in the middle must not split a value.
        Ok(())
    }
}

impl<W: Write> Drop for MaskedEvent<W> {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    #[test]
    fn every_line_is_masked_before_it_is_written() {
        const CANARY: &str = "trace-Canary-7a6b5c";
        crate::redact::register_global([CANARY]);
        let sink = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Redacting::new(sink.clone()))
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(token = %CANARY, "value {CANARY} in the message");
            tracing::debug!(hex = %hex::encode(CANARY), "and encoded");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(!out.contains(CANARY), "{out}");
        assert!(!out.contains(&hex::encode(CANARY)), "{out}");
        assert!(out.contains("token=***"), "{out}");
    }

    #[test]
    fn the_daemon_log_gets_its_lines_whatever_the_filter_and_alone() {
        const CANARY: &str = "daemon-Canary-41f2e9";
        crate::redact::register_global([CANARY]);
        let general = Sink::default();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        let daemon = daemon::DaemonLog::with_sink(move |l| seen.lock().unwrap().push(l.to_owned()));
        let filter = EnvFilter::builder().parse("info").unwrap();
        let subscriber = subscriber(
            filter,
            Format::Text,
            false,
            Redacting::new(general.clone()),
            daemon,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: DAEMON, "started (pid {})", 7);
            tracing::warn!(target: DAEMON, run = "r1", "token {CANARY}");
            tracing::debug!(target: DAEMON, "below info: not a daemon line");
            tracing::info!(target: "claw::engine", "an ordinary event");
        });
        let lines = lines.lock().unwrap().clone();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].ends_with(" claw serve: started (pid 7)\n"),
            "{lines:?}"
        );
        assert!(
            lines[1].ends_with(" claw serve: token *** run=r1\n"),
            "{lines:?}"
        );
        let out = String::from_utf8(general.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("an ordinary event"), "{out}");
        assert!(!out.contains("started"), "not twice: {out}");
    }

    #[test]
    fn the_level_comes_from_the_flag_then_verbosity_then_the_default() {
        let c = Config::resolve(Some("claw=debug"), 2).unwrap();
        assert_eq!((c.filter.as_str(), c.source), ("claw=debug", "--log-level"));
        let c = Config::resolve(None, 2).unwrap();
        assert_eq!(c.filter, "debug");
        let bad = Config {
            filter: "claw=loud".into(),
            source: "--log-level",
            format: Format::Text,
        };
        let e = bad.env_filter().unwrap_err();
        assert!(
            e.starts_with("--log-level: `claw=loud` is not a log filter"),
            "{e}"
        );
    }
}

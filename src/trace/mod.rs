//! Diagnostic tracing: one subscriber, installed by [`init`] at the start of `cli::run`, writing
//! to stderr. The level comes from `--log-level` or `-v` (`info`, `-vv` `debug`, `-vvv` `trace`),
//! else `CLAW_LOG` (`tracing-subscriber`'s env-filter syntax, e.g. `claw=debug,claw::audit=info`),
//! else `warn`. `CLAW_LOG_FORMAT=json` writes one JSON object per line.
//!
//! Every line goes through [`Redacting`] before it reaches stderr: it masks the secret values
//! this process has loaded (`crate::redact::global`), whatever event or field carried them.

use std::io::{self, IsTerminal as _, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
    let filter = config.env_filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting::new(io::stderr))
        .with_target(true);
    let installed = match config.format {
        Format::Text => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        Format::Json => builder.json().with_ansi(false).try_init(),
    };
    // Already installed (an in-process caller ran `cli::run` twice): keep the first.
    drop(installed);
    Ok(())
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

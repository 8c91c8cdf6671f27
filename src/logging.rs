//! Sets up tracing: human-readable text by default or one JSON object per
//! line, on stderr as nsqd logs, filtered by `--log-level` (overridable
//! with `RUST_LOG`). Text lines start with `--log-prefix`, as nsqd's, and
//! carry ANSI colours only when stderr is a terminal. The level can be
//! changed at run time (`PUT /config/log_level`) through a reload handle
//! kept here.

use std::io::{IsTerminal as _, Write};
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::{LogFormat, LogLevel};

/// Set once by `init`; `set_level` swaps the filter through it.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn directives(level: LogLevel) -> String {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Fatal => "error",
    };
    format!("{level},wasmtime=warn,cranelift=warn,wasmtime_cranelift=warn")
}

/// Installs the global subscriber. A second call (tests) keeps the first.
/// `prefix` starts every text line (not JSON ones, which must stay JSON).
pub fn init(level: LogLevel, format: LogFormat, prefix: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(level)));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let prefix: &'static str = Box::leak(prefix.to_owned().into_boxed_str());
    let result = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(colour)
                    .with_writer(move || Prefixed {
                        prefix,
                        inner: std::io::stderr(),
                    }),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if result.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Stderr with `prefix` written before each event. The fmt layer formats an
/// event into one buffer and hands it over with one `write_all`, so each
/// call here is one whole line.
struct Prefixed {
    /// `--log-prefix`, leaked once at startup to live as long as the
    /// subscriber.
    prefix: &'static str,
    /// Locked for each line, so a line is one write.
    inner: std::io::Stderr,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.prefix.is_empty() {
            return self.inner.write_all(buf);
        }
        // One write of prefix and line, so lines of concurrent events
        // never interleave with a prefix in between.
        let mut line = Vec::with_capacity(self.prefix.len() + buf.len());
        line.extend_from_slice(self.prefix.as_bytes());
        line.extend_from_slice(buf);
        self.inner.lock().write_all(&line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Changes the log level of a running gateway. Returns false when this
/// process did not install the subscriber (tests, embedding).
pub fn set_level(level: LogLevel) -> bool {
    match FILTER.get() {
        Some(h) => h.reload(EnvFilter::new(directives(level))).is_ok(),
        None => false,
    }
}

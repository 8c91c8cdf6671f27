//! Sets up tracing: human-readable text by default or one JSON object per
//! line, on stderr as nsqd logs, filtered by `--log-level` (overridable
//! with `RUST_LOG`). The level can be changed at run time (`PUT
//! /config/log_level`) through a reload handle kept here.

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
pub fn init(level: LogLevel, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(level)));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if result.is_ok() {
        let _ = FILTER.set(handle);
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

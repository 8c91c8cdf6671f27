//! `GET` and `PUT /config/:opt`: read any option by its nsqd config-file
//! name, and change the two nsqd allows at run time (`log_level` and
//! `nsqlookupd_tcp_addresses`). Durations read back as nanoseconds and
//! strings as bare text, as nsqd's V1 responses do.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use serde_json::Value;

use super::HttpState;
use super::error::{ApiError, ApiResult, Reply};
use super::params::read_capped;
use crate::config::{Config, LogLevel, parse_duration};

/// Options whose config type is a duration: Go marshals those as integer
/// nanoseconds.
const DURATIONS: &[&str] = &[
    "msg_timeout",
    "max_msg_timeout",
    "max_req_timeout",
    "client_timeout",
    "max_heartbeat_interval",
    "max_output_buffer_timeout",
    "min_output_buffer_timeout",
    "output_buffer_timeout",
    "magic_timeout",
    "shutdown_timeout",
];

/// Settings nsqd does not expose here: plugin entries are not nsqd options
/// and may carry guest configuration.
const HIDDEN: &[&str] = &["plugins"];

/// The log levels nsqd accepts.
const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "fatal"];

/// What `PUT /config` changed; read back by `GET`.
#[derive(Debug, Default)]
pub struct RuntimeOptions {
    pub log_level: Option<String>,
}

/// `GET /config/:opt`.
pub async fn get_option(State(st): State<Arc<HttpState>>, Path(opt): Path<String>) -> ApiResult {
    reply(&st, &opt)
}

/// `PUT /config/:opt`: the body is the new value.
pub async fn put_option(
    State(st): State<Arc<HttpState>>,
    Path(opt): Path<String>,
    body: Body,
) -> ApiResult {
    let body = read_capped(body, st.ctx.config.max_msg_size)
        .await?
        .filter(|b| !b.is_empty())
        .ok_or(ApiError::InvalidValueSize)?;
    match opt.as_str() {
        "nsqlookupd_tcp_addresses" => {
            let addrs: Vec<String> =
                serde_json::from_slice(&body).map_err(|_| ApiError::InvalidValue)?;
            let check = Config {
                nsqlookupd_tcp_addresses: addrs.clone(),
                ..Config::default()
            };
            check
                .validate("PUT /config")
                .map_err(|_| ApiError::InvalidValue)?;
            tracing::info!(?addrs, "nsqlookupd_tcp_addresses changed over HTTP");
            st.ctx.cluster.set_addresses(addrs);
        }
        "log_level" => {
            let level = std::str::from_utf8(&body)
                .map(|s| s.trim().to_ascii_lowercase())
                .ok()
                .filter(|l| LOG_LEVELS.contains(&l.as_str()))
                .ok_or(ApiError::InvalidValue)?;
            let parsed = match level.as_str() {
                "debug" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" => LogLevel::Warn,
                "error" => LogLevel::Error,
                _ => LogLevel::Fatal,
            };
            let live = crate::logging::set_level(parsed);
            tracing::info!(%level, live, "log_level changed over HTTP");
            st.runtime().log_level = Some(level);
        }
        _ => return Err(ApiError::InvalidOption),
    }
    reply(&st, &opt)
}

fn reply(st: &HttpState, opt: &str) -> ApiResult {
    match value(st, opt).ok_or(ApiError::InvalidOption)? {
        Value::String(s) => Ok(Reply::Text(s)),
        v => Reply::json(&v),
    }
}

/// The current value of `opt`, if it is an option.
fn value(st: &HttpState, opt: &str) -> Option<Value> {
    {
        let rt = st.runtime();
        match opt {
            "nsqlookupd_tcp_addresses" => {
                return Some(Value::from(st.ctx.cluster.addresses()));
            }
            "log_level" if rt.log_level.is_some() => return rt.log_level.clone().map(Value::from),
            _ => {}
        }
    }
    config_value(&st.ctx.config, opt)
}

/// `opt` read from the configuration as nsqd would marshal it.
pub fn config_value(cfg: &Config, opt: &str) -> Option<Value> {
    if HIDDEN.contains(&opt) {
        return None;
    }
    let Value::Object(mut all) = serde_json::to_value(cfg).ok()? else {
        return None;
    };
    let v = all.remove(opt)?;
    if DURATIONS.contains(&opt) {
        let text = v.as_str()?;
        let ns = parse_duration(text).ok()?.as_nanos();
        return Some(Value::from(u64::try_from(ns).unwrap_or(u64::MAX)));
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_option_reads_as_nanoseconds() {
        let cfg = Config::default();
        for name in DURATIONS {
            let v = config_value(&cfg, name).unwrap_or(Value::Null);
            assert!(v.is_u64(), "{name}: {v}");
        }
        assert_eq!(
            config_value(&cfg, "msg_timeout"),
            Some(Value::from(60_000_000_000u64))
        );
    }

    #[test]
    fn other_options_read_as_configured() {
        let cfg = Config::default();
        assert_eq!(
            config_value(&cfg, "mem_queue_size"),
            Some(Value::from(10_000))
        );
        assert_eq!(
            config_value(&cfg, "tcp_address"),
            Some(Value::from("0.0.0.0:4150"))
        );
        assert_eq!(config_value(&cfg, "plugins"), None);
        assert_eq!(config_value(&cfg, "no_such_option"), None);
    }
}

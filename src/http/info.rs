//! `GET /ping` (plain `OK` for health checks) and `GET /info` (version,
//! addresses, start time and the client-facing limits, as nsqd reports them).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::HttpState;
use super::error::{ApiResult, Reply, plain_text};

/// `GET /ping`: nsqd answers its health: `OK` while healthy, else 500 with
/// `NOK - <last disk error>`.
pub async fn ping(State(st): State<Arc<HttpState>>) -> Response {
    match st.ctx.broker.health() {
        Ok(()) => plain_text(StatusCode::OK, "OK"),
        Err(e) => plain_text(StatusCode::INTERNAL_SERVER_ERROR, health_text(Err(e))),
    }
}

/// nsqd's health string: `OK` or `NOK - <error>`.
pub fn health_text(health: Result<(), String>) -> String {
    match health {
        Ok(()) => "OK".to_owned(),
        Err(e) => format!("NOK - {e}"),
    }
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    broadcast_address: String,
    hostname: String,
    http_port: i64,
    tcp_port: i64,
    start_time: i64,
    /// Nanoseconds, as Go's `time.Duration` marshals.
    max_heartbeat_interval: u128,
    max_output_buffer_size: u64,
    max_output_buffer_timeout: u128,
    max_deflate_level: i32,
    /// `--node-id`, the top bits of every message id (not in nsqd's /info).
    node_id: u16,
}

/// `GET /info`.
pub async fn info(State(st): State<Arc<HttpState>>) -> ApiResult {
    let cfg = &st.ctx.config;
    let http_port = match st.http_addr {
        Some(a) => i64::from(a.port()),
        None => port_of(&cfg.http_address),
    };
    Reply::json(&Info {
        version: super::VERSION,
        broadcast_address: cfg.broadcast_address.clone(),
        hostname: hostname(),
        http_port,
        tcp_port: match st.ctx.tcp_addr.get() {
            Some(a) => i64::from(a.port()),
            None => port_of(&cfg.tcp_address),
        },
        start_time: st.start_time as i64,
        max_heartbeat_interval: cfg.max_heartbeat_interval.as_nanos(),
        max_output_buffer_size: cfg.max_output_buffer_size,
        max_output_buffer_timeout: cfg.max_output_buffer_timeout.as_nanos(),
        max_deflate_level: cfg.max_deflate_level,
        node_id: cfg.node_id,
    })
}

/// The port of a configured `host:port`, or -1 as nsqd reports for a
/// listener without one.
fn port_of(addr: &str) -> i64 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .map_or(-1, i64::from)
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!(port_of("0.0.0.0:4150"), 4150);
        assert_eq!(port_of("[::1]:80"), 80);
        assert_eq!(port_of("/tmp/sock"), -1);
    }
}

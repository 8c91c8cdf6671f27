//! What the core knows about a connected client, for `/stats` and metrics:
//! identity, the protocol it speaks and live counters. Protocol sessions fill
//! in the metadata; consumers update the counters.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Metadata a client announces (IDENTIFY in V2; plugins set what they know).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientMeta {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    pub deflate: bool,
    pub snappy: bool,
    pub tls: bool,
    pub sample_rate: i32,
    pub output_buffer_size: i64,
    pub output_buffer_timeout_ms: i64,
    pub msg_timeout_ms: i64,
    pub heartbeat_interval_ms: i64,
    pub authed: bool,
}

/// One connected client. Shared between its connection task (which owns the
/// `Consumer`) and the channel's client list that `/stats` reads.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub remote_address: SocketAddr,
    /// "V2" for native clients, the plugin name for plugin clients.
    pub protocol: String,
    /// Connect time, seconds since the Unix epoch.
    pub connect_ts: i64,
    /// Behind a mutex because IDENTIFY may change it after creation; only
    /// stats readers and IDENTIFY touch it, never the message path.
    meta: Mutex<ClientMeta>,
    pub ready_count: AtomicU64,
    pub in_flight_count: AtomicU64,
    pub message_count: AtomicU64,
    pub finish_count: AtomicU64,
    pub requeue_count: AtomicU64,
}

impl ClientInfo {
    pub fn new(id: u64, remote_address: SocketAddr, protocol: impl Into<String>) -> Self {
        ClientInfo {
            id,
            remote_address,
            protocol: protocol.into(),
            connect_ts: super::message::now_nanos() / 1_000_000_000,
            meta: Mutex::new(ClientMeta::default()),
            ready_count: AtomicU64::new(0),
            in_flight_count: AtomicU64::new(0),
            message_count: AtomicU64::new(0),
            finish_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
        }
    }

    /// A copy of the metadata.
    pub fn meta(&self) -> ClientMeta {
        match self.meta.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the metadata.
    pub fn set_meta(&self, meta: ClientMeta) {
        match self.meta.lock() {
            Ok(mut m) => *m = meta,
            Err(p) => *p.into_inner() = meta,
        }
    }

    pub fn stats(&self) -> ClientStats {
        let meta = self.meta();
        ClientStats {
            client_id: meta.client_id.clone(),
            hostname: meta.hostname.clone(),
            remote_address: self.remote_address.to_string(),
            protocol: self.protocol.clone(),
            user_agent: meta.user_agent.clone(),
            connect_ts: self.connect_ts,
            ready_count: self.ready_count.load(Ordering::Relaxed),
            in_flight_count: self.in_flight_count.load(Ordering::Relaxed),
            message_count: self.message_count.load(Ordering::Relaxed),
            finish_count: self.finish_count.load(Ordering::Relaxed),
            requeue_count: self.requeue_count.load(Ordering::Relaxed),
            meta,
        }
    }
}

/// A snapshot of one client for stats.
#[derive(Debug, Clone, Serialize)]
pub struct ClientStats {
    pub client_id: String,
    pub hostname: String,
    pub remote_address: String,
    pub protocol: String,
    pub user_agent: String,
    pub connect_ts: i64,
    pub ready_count: u64,
    pub in_flight_count: u64,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
    pub meta: ClientMeta,
}

//! Connection counters kept by the server: per protocol (active and total)
//! and for connections that never reached a protocol.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Counters of one protocol.
#[derive(Debug, Default)]
pub struct ProtocolCounters {
    pub active: AtomicU64,
    pub total: AtomicU64,
}

/// Server-wide connection counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections that sent an unknown magic.
    pub bad_protocol: AtomicU64,
    /// Connections that did not send 4 bytes in time, or closed first.
    pub magic_failures: AtomicU64,
    /// Transient accept errors survived.
    pub accept_errors: AtomicU64,
    /// By protocol name. Locked only to look up or add a name, once per
    /// connection; the counters themselves are atomics.
    protocols: Mutex<BTreeMap<String, Arc<ProtocolCounters>>>,
}

/// A snapshot for `/stats` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolStats {
    pub protocol: String,
    pub active: u64,
    pub total: u64,
}

impl ServerStats {
    /// The counters of `name`, created on first use.
    pub fn protocol(&self, name: &str) -> Arc<ProtocolCounters> {
        let mut map = crate::sync::lock(&self.protocols);
        map.entry(name.to_owned()).or_default().clone()
    }

    pub fn protocols(&self) -> Vec<ProtocolStats> {
        let map = crate::sync::lock(&self.protocols);
        map.iter()
            .map(|(name, c)| ProtocolStats {
                protocol: name.clone(),
                active: c.active.load(Ordering::Relaxed),
                total: c.total.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Counts a connection as active for as long as it lives.
pub struct ActiveGuard(Arc<ProtocolCounters>);

impl ActiveGuard {
    pub fn new(c: Arc<ProtocolCounters>) -> Self {
        c.active.fetch_add(1, Ordering::Relaxed);
        c.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(c)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

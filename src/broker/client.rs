//! What the core knows about a connected client, for `/stats` and metrics:
//! identity, the protocol it speaks, live counters and what it published.
//! Protocol sessions fill in the metadata and the publish counts; consumers
//! update the delivery counters.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// nsqd's `tls_version` (`TLS1.2`, `TLS1.3`), empty without TLS.
    pub tls_version: String,
    /// nsqd's `tls_cipher_suite`, Go's name of the suite.
    pub tls_cipher_suite: String,
    /// nsqd's `tls_negotiated_protocol` (ALPN), usually empty.
    pub tls_negotiated_protocol: String,
    /// The client certificate's subject common name, for the auth server's
    /// `common_name` (not in nsqd's stats).
    pub tls_common_name: Option<String>,
    pub sample_rate: i32,
    pub output_buffer_size: i64,
    pub output_buffer_timeout_ms: i64,
    pub msg_timeout_ms: i64,
    pub heartbeat_interval_ms: i64,
    pub authed: bool,
    /// The auth server's `identity` and `identity_url` for this client.
    pub auth_identity: String,
    pub auth_identity_url: String,
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
    /// Set by the first SUB; nsqd's `state` is 3 from then on, 0 before.
    pub subscribed: AtomicBool,
    /// Messages published per topic, as nsqd's `pub_counts`; a client with
    /// any is listed among `/stats` producers. At most `MAX_PUB_TOPICS`
    /// topics are tracked per client.
    pub_counts: Mutex<Vec<PubCount>>,
}

/// Topics whose publish counts one client keeps; publishes to further
/// topics are not counted, so a client cycling through ephemeral topic
/// names cannot grow its entry without bound.
pub const MAX_PUB_TOPICS: usize = 256;

/// nsqd's `PubCount`: messages a client published to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PubCount {
    pub topic: String,
    pub count: u64,
}

/// nsqd's client states as `/stats` shows them.
pub const STATE_INIT: i32 = 0;
pub const STATE_SUBSCRIBED: i32 = 3;

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
            subscribed: AtomicBool::new(false),
            pub_counts: Mutex::new(Vec::new()),
        }
    }

    /// Counts `n` messages published to `topic`. One short lock per publish
    /// command (an MPUB counts once), and a linear search: clients publish
    /// to few topics, the last one first.
    pub fn record_publish(&self, topic: &str, n: u64) {
        let mut counts = crate::sync::lock(&self.pub_counts);
        if let Some(c) = counts.iter_mut().rev().find(|c| c.topic == topic) {
            c.count += n;
        } else if counts.len() < MAX_PUB_TOPICS {
            counts.push(PubCount {
                topic: topic.to_owned(),
                count: n,
            });
        }
    }

    /// Published anything: nsqd's `IsProducer`.
    pub fn is_producer(&self) -> bool {
        !crate::sync::lock(&self.pub_counts).is_empty()
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
            state: if self.subscribed.load(Ordering::Relaxed) {
                STATE_SUBSCRIBED
            } else {
                STATE_INIT
            },
            pub_counts: crate::sync::lock(&self.pub_counts).clone(),
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
    /// nsqd's client state: `STATE_SUBSCRIBED` or `STATE_INIT`.
    pub state: i32,
    pub pub_counts: Vec<PubCount>,
    pub meta: ClientMeta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_counts_add_up_per_topic_and_stop_at_the_topic_limit() {
        let c = ClientInfo::new(1, "127.0.0.1:1".parse().unwrap(), "V2");
        assert!(!c.is_producer());
        c.record_publish("a", 1);
        c.record_publish("b", 200);
        c.record_publish("a", 2);
        assert!(c.is_producer());
        let counts = |c: &ClientInfo| c.stats().pub_counts;
        assert_eq!(
            counts(&c),
            [
                PubCount {
                    topic: "a".into(),
                    count: 3
                },
                PubCount {
                    topic: "b".into(),
                    count: 200
                },
            ]
        );
        for i in 0..MAX_PUB_TOPICS * 2 {
            c.record_publish(&format!("t{i}"), 1);
        }
        let all = counts(&c);
        assert_eq!(all.len(), MAX_PUB_TOPICS, "bounded");
        // Topics already tracked keep counting.
        c.record_publish("b", 1);
        assert_eq!(counts(&c)[1].count, 201);
        assert_eq!(c.stats().state, STATE_INIT);
    }
}

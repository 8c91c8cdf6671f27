//! A topic's snapshot for `/stats`, metrics and statsd: its depths and
//! counters, its channels', and their E2E processing latency windows merged
//! as nsqd merges them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Topic;
use crate::broker::channel::{Channel, ChannelStats};
use crate::broker::latency::{E2eLatency, LatencySnapshot};
use crate::broker::message::now_nanos;
use crate::sync::lock;

impl Topic {
    pub fn stats(&self) -> TopicStats {
        let (depth, backend, channels) = {
            let st = lock(&self.state);
            (
                st.held.depth() + st.deferred.len() as u64,
                st.held.backend_depth(),
                st.channels.values().cloned().collect::<Vec<_>>(),
            )
        };
        TopicStats {
            topic_name: self.name.clone(),
            depth,
            backend_depth: backend,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused: self.is_paused(),
            channels: channels.iter().map(|c| c.stats()).collect(),
            e2e_processing_latency: self.e2e_latency(&channels),
        }
    }

    /// nsqd's aggregate of the channels' E2E windows: every channel's
    /// samples together; `null` percentiles without channels.
    fn e2e_latency(&self, channels: &[Arc<Channel>]) -> E2eLatency {
        let Some(opts) = &self.opts.e2e else {
            return E2eLatency::default();
        };
        let now = now_nanos();
        let mut merged: Option<LatencySnapshot> = None;
        for s in channels.iter().filter_map(|c| c.latency_snapshot(now)) {
            match merged.as_mut() {
                Some(m) => m.merge(&s),
                None => merged = Some(s),
            }
        }
        merged.map_or_else(E2eLatency::default, |m| m.result(&opts.percentiles))
    }
}

/// A snapshot of a topic for `/stats` and metrics (nsqd's field names).
#[derive(Debug, Clone, Serialize)]
pub struct TopicStats {
    pub topic_name: String,
    pub depth: u64,
    pub backend_depth: u64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub channels: Vec<ChannelStats>,
    /// The channels' publish-to-FIN percentiles together (nsqd's field).
    pub e2e_processing_latency: E2eLatency,
}

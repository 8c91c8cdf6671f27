//! Pushing stats to statsd over UDP, as nsqd's `statsdLoop`: every
//! `--statsd-interval`, the topic and channel figures under nsqd's names and
//! types (counters as the change since the last push, gauges as they are,
//! the E2E percentiles as gauges), then the process's memory figures, then
//! per-protocol and per-plugin figures under this gateway's own names (see
//! README "statsd"). Lines are packed into datagrams of at most
//! `--statsd-udp-packet-size` bytes, whole lines only. A statsd server that
//! is down or unresolvable costs a log line, nothing more.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::broker::TopicStats;
use crate::broker::names::is_ephemeral;
use crate::http::ProcessStats;
use crate::plugin::PluginStats;
use crate::server::{Context, ProtocolStats};

/// How long resolving the statsd address may take (nsqd dials with a
/// one-second timeout).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// nsqd's prefix: `%s` replaced by the host key of
/// `<broadcast_address>:<http port>` (dots and colons become underscores),
/// and a trailing `.` added. An empty prefix stays empty.
pub fn host_prefix(prefix: &str, broadcast_address: &str, http_port: u16) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    let host = if broadcast_address.contains(':') {
        format!("[{broadcast_address}]:{http_port}")
    } else {
        format!("{broadcast_address}:{http_port}")
    };
    let key = host.replace(['.', ':'], "_");
    let mut out = prefix.replace("%s", &key);
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Keeps protocol and plugin names to one statsd path segment.
fn segment(name: &str) -> String {
    name.replace(['.', ':', ' ', '|', '\n'], "_")
}

/// Packs lines into datagrams of at most `size` bytes, whole lines only
/// (nsqd's `BoundaryBufferedWriter`).
pub struct Packer {
    size: usize,
    buf: Vec<u8>,
    out: Vec<Vec<u8>>,
    /// Lines longer than a datagram, left out.
    pub dropped: usize,
}

impl Packer {
    pub fn new(size: usize) -> Packer {
        Packer {
            size,
            buf: Vec::with_capacity(size),
            out: Vec::new(),
            dropped: 0,
        }
    }

    /// Adds one `name:value|type` line (the newline is added here).
    pub fn line(&mut self, line: &str) {
        let len = line.len() + 1;
        if len > self.size {
            self.dropped += 1;
            return;
        }
        if self.buf.len() + len > self.size {
            self.out.push(std::mem::take(&mut self.buf));
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    /// The datagrams, in order.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        if !self.buf.is_empty() {
            self.out.push(self.buf);
        }
        self.out
    }
}

/// Counter values of the last push, so counters are sent as differences.
#[derive(Default)]
struct Last {
    /// Topic -> (message_count, message_bytes).
    topics: HashMap<String, (u64, u64)>,
    /// (topic, channel) -> (message_count, requeue_count, timeout_count).
    channels: HashMap<(String, String), (u64, u64, u64)>,
    /// Protocol -> connections accepted.
    protocols: HashMap<String, u64>,
    /// Plugin -> (connections, traps, limit_hits, refused, denied).
    plugins: HashMap<String, [u64; 5]>,
}

/// What one push reads: a stats snapshot.
pub struct Snapshot<'a> {
    pub topics: &'a [TopicStats],
    pub protocols: &'a [ProtocolStats],
    pub plugins: &'a [PluginStats],
    pub process: Option<&'a ProcessStats>,
}

/// Turns stats snapshots into statsd lines.
pub struct Metrics {
    prefix: String,
    exclude_ephemeral: bool,
    last: Last,
}

impl Metrics {
    pub fn new(prefix: String, exclude_ephemeral: bool) -> Metrics {
        Metrics {
            prefix,
            exclude_ephemeral,
            last: Last::default(),
        }
    }

    /// Every line of one push, in nsqd's order, into `out`.
    pub fn push(&mut self, snap: &Snapshot<'_>, out: &mut Packer) {
        let mut next = Last::default();
        let mut line = String::new();
        let mut emit =
            |line: &mut String, name: std::fmt::Arguments<'_>, value: i64, kind: &str| {
                line.clear();
                let _ = write!(line, "{}{name}:{value}|{kind}", self.prefix);
                out.line(line);
            };
        let diff =
            |now: u64, before: u64| i64::try_from(now.saturating_sub(before)).unwrap_or(i64::MAX);
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for t in snap.topics {
            if self.exclude_ephemeral && is_ephemeral(&t.topic_name) {
                continue;
            }
            let name = &t.topic_name;
            let (msgs, bytes) = self.last.topics.get(name).copied().unwrap_or_default();
            emit(
                &mut line,
                format_args!("topic.{name}.message_count"),
                diff(t.message_count, msgs),
                "c",
            );
            emit(
                &mut line,
                format_args!("topic.{name}.message_bytes"),
                diff(t.message_bytes, bytes),
                "c",
            );
            emit(
                &mut line,
                format_args!("topic.{name}.depth"),
                gauge(t.depth),
                "g",
            );
            emit(
                &mut line,
                format_args!("topic.{name}.backend_depth"),
                gauge(t.backend_depth),
                "g",
            );
            for p in t.e2e_processing_latency.percentiles.iter().flatten() {
                let q = p.quantile * 100.0;
                emit(
                    &mut line,
                    format_args!("topic.{name}.e2e_processing_latency_{q:.0}"),
                    p.value as i64,
                    "g",
                );
            }
            next.topics
                .insert(name.clone(), (t.message_count, t.message_bytes));
            for c in &t.channels {
                if self.exclude_ephemeral && is_ephemeral(&c.channel_name) {
                    continue;
                }
                let ch = &c.channel_name;
                let key = (name.clone(), ch.clone());
                let (msgs, requeues, timeouts) =
                    self.last.channels.get(&key).copied().unwrap_or_default();
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.message_count"),
                    diff(c.message_count, msgs),
                    "c",
                );
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.depth"),
                    gauge(c.depth),
                    "g",
                );
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.backend_depth"),
                    gauge(c.backend_depth),
                    "g",
                );
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.in_flight_count"),
                    gauge(c.in_flight_count),
                    "g",
                );
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.deferred_count"),
                    gauge(c.deferred_count),
                    "g",
                );
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.requeue_count"),
                    diff(c.requeue_count, requeues),
                    "c",
                );
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.timeout_count"),
                    diff(c.timeout_count, timeouts),
                    "c",
                );
                emit(
                    &mut line,
                    format_args!("topic.{name}.channel.{ch}.clients"),
                    gauge(c.client_count),
                    "g",
                );
                for p in c.e2e_processing_latency.percentiles.iter().flatten() {
                    let q = p.quantile * 100.0;
                    emit(
                        &mut line,
                        format_args!("topic.{name}.channel.{ch}.e2e_processing_latency_{q:.0}"),
                        p.value as i64,
                        "g",
                    );
                }
                next.channels
                    .insert(key, (c.message_count, c.requeue_count, c.timeout_count));
            }
        }
        if let Some(p) = snap.process {
            // No Go heap here: the resident set stands in for
            // heap_in_use_bytes (as in /stats), and the process's own
            // figures follow under names of their own.
            let mem = [
                ("heap_in_use_bytes", p.resident_memory_bytes),
                ("resident_bytes", p.resident_memory_bytes),
                ("virtual_bytes", p.virtual_memory_bytes),
                ("open_fds", p.open_fds),
                ("threads", p.threads),
            ];
            for (name, v) in mem {
                if let Some(v) = v {
                    emit(&mut line, format_args!("mem.{name}"), gauge(v), "g");
                }
            }
        }
        for p in snap.protocols {
            let name = segment(&p.protocol);
            let before = self.last.protocols.get(&name).copied().unwrap_or_default();
            emit(
                &mut line,
                format_args!("protocol.{name}.connections"),
                diff(p.total, before),
                "c",
            );
            emit(
                &mut line,
                format_args!("protocol.{name}.active"),
                gauge(p.active),
                "g",
            );
            next.protocols.insert(name, p.total);
        }
        for p in snap.plugins {
            let name = segment(&p.name);
            let now = [p.connections, p.traps, p.limit_hits, p.refused, p.denied];
            let before = self.last.plugins.get(&name).copied().unwrap_or_default();
            let names = ["connections", "traps", "limit_hits", "refused", "denied"];
            for ((metric, n), b) in names.iter().zip(now).zip(before) {
                emit(
                    &mut line,
                    format_args!("plugin.{name}.{metric}"),
                    diff(n, b),
                    "c",
                );
            }
            emit(
                &mut line,
                format_args!("plugin.{name}.active"),
                gauge(p.active),
                "g",
            );
            next.plugins.insert(name, now);
        }
        self.last = next;
    }
}

/// Pushes to `ctx.config.statsd_address` every `statsd_interval` until
/// shutdown. `http_port` is the broadcast HTTP port, for the prefix.
pub async fn run(ctx: Arc<Context>, http_port: u16) {
    let cfg = ctx.config.clone();
    let addr = cfg.statsd_address.clone();
    let interval = cfg.statsd_interval;
    let prefix = host_prefix(&cfg.statsd_prefix, &cfg.broadcast_address, http_port);
    let mut metrics = Metrics::new(prefix.clone(), cfg.statsd_exclude_ephemeral);
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    info!(address = %addr, prefix = %prefix, ?interval, "STATSD: pushing stats");
    // Only a change of state is logged: a statsd that stays down costs
    // one line, not one per interval.
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match push(&ctx, &addr, &mut metrics).await {
            Ok(n) => {
                if failing {
                    info!(address = %addr, "STATSD: pushing stats again");
                    failing = false;
                }
                debug!(address = %addr, datagrams = n, "STATSD: pushed stats");
            }
            Err(e) if !failing => {
                warn!(address = %addr, error = %e, "STATSD: cannot push stats (logged once until it works again)");
                failing = true;
            }
            Err(e) => debug!(address = %addr, error = %e, "STATSD: cannot push stats"),
        }
    }
    info!("STATSD: closing");
}

/// One push: resolve, then snapshot and send. As in nsqd, nothing is
/// read when the address does not resolve, so the next push's counters
/// cover both intervals.
async fn push(ctx: &Context, addr: &str, metrics: &mut Metrics) -> std::io::Result<usize> {
    let target = resolve(addr).await?;
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    let topics = crate::http::topic_stats(ctx, None, None, false);
    let protocols = ctx.stats.protocols();
    let plugins = crate::http::plugin_stats(ctx);
    let process = ctx.config.statsd_mem_stats.then(ProcessStats::read);
    let mut packer = Packer::new(ctx.config.statsd_udp_packet_size);
    metrics.push(
        &Snapshot {
            topics: &topics,
            protocols: &protocols,
            plugins: &plugins,
            process: process.as_ref(),
        },
        &mut packer,
    );
    if packer.dropped > 0 {
        debug!(
            lines = packer.dropped,
            "STATSD: lines longer than a datagram left out"
        );
    }
    let datagrams = packer.finish();
    for d in &datagrams {
        socket.send(d).await?;
    }
    Ok(datagrams.len())
}

async fn resolve(addr: &str) -> std::io::Result<SocketAddr> {
    let mut addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "resolving timed out"))??;
    addrs
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_gets_the_host_key_and_a_dot() {
        assert_eq!(
            host_prefix("nsq.%s", "10.0.0.1", 4151),
            "nsq.10_0_0_1_4151."
        );
        assert_eq!(host_prefix("a.%s.b.", "h.example", 1), "a.h_example_1.b.");
        assert_eq!(host_prefix("plain", "h", 1), "plain.");
        assert_eq!(host_prefix("", "h", 1), "");
        assert_eq!(host_prefix("%s", "::1", 80), "[__1]_80.");
    }

    #[test]
    fn datagrams_hold_whole_lines_within_the_size() {
        let mut p = Packer::new(20);
        for l in ["aaaaaaaa:1|c", "bbbbbb:2|g", "c:3|g", &"x".repeat(25)] {
            p.line(l);
        }
        assert_eq!(p.dropped, 1);
        let d = p.finish();
        assert_eq!(
            d,
            vec![b"aaaaaaaa:1|c\n".to_vec(), b"bbbbbb:2|g\nc:3|g\n".to_vec()]
        );
        assert!(d.iter().all(|d| d.len() <= 20));
    }

    #[tokio::test]
    async fn an_unresolvable_address_is_an_error_not_a_panic() {
        assert!(resolve("no-such-host.invalid:8125").await.is_err());
        assert!(resolve("not an address").await.is_err());
    }
}

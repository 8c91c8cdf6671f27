//! `GET /metrics`: Prometheus exposition built with `prometheus-client`. The
//! registry is built fresh for every scrape from a stats snapshot (collector
//! style), so topics and channels that are gone (ephemeral ones included)
//! vanish from the output and the series count follows what exists now.
//! Served as OpenMetrics when the scraper asks for it, else as Prometheus
//! text format 0.0.4.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::HttpState;
use super::error::ApiError;
use super::process::ProcessStats;
use super::stats::{plugin_stats, topic_stats};
use crate::broker::TopicStats;
use crate::server::Context;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// `GET /metrics`.
pub async fn metrics(State(st): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let Some(text) = render(&st.ctx) else {
        return ApiError::InternalError.into_response();
    };
    let (body, content_type) = if openmetrics {
        (text, OPENMETRICS)
    } else {
        (to_prometheus_text(&text), PROMETHEUS_TEXT)
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A gauge family registered under `name`.
fn gauges(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

/// A counter family registered under `name` (exposed as `name_total`).
fn counters(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let g = Gauge::<i64>::default();
    g.set(clamp(v));
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The whole exposition in OpenMetrics text, from a fresh snapshot.
pub fn render(ctx: &Context) -> Option<String> {
    let mut reg = Registry::default();
    let topics = topic_stats(ctx, None, None, false);

    let channel_count: usize = topics.iter().map(|t| t.channels.len()).sum();
    gauge(
        &mut reg,
        "nsq_topics",
        "Topics that exist now",
        topics.len() as u64,
    );
    gauge(
        &mut reg,
        "nsq_channels",
        "Channels that exist now",
        channel_count as u64,
    );

    let t_depth = gauges(
        &mut reg,
        "nsq_topic_depth",
        "Messages held by the topic itself (no channel yet, or paused)",
    );
    let t_backend = gauges(
        &mut reg,
        "nsq_topic_backend_depth",
        "Messages of the topic on disk",
    );
    let t_paused = gauges(&mut reg, "nsq_topic_paused", "1 while the topic is paused");
    let t_msgs = counters(
        &mut reg,
        "nsq_topic_messages",
        "Messages published to the topic",
    );
    let t_bytes = counters(
        &mut reg,
        "nsq_topic_message_bytes",
        "Bytes of message bodies published to the topic",
    );
    let c_depth = gauges(
        &mut reg,
        "nsq_channel_depth",
        "Messages ready for delivery on the channel",
    );
    let c_backend = gauges(
        &mut reg,
        "nsq_channel_backend_depth",
        "Messages of the channel on disk",
    );
    let c_inflight = gauges(
        &mut reg,
        "nsq_channel_in_flight",
        "Messages delivered and not yet finished or requeued",
    );
    let c_deferred = gauges(
        &mut reg,
        "nsq_channel_deferred",
        "Deferred messages waiting for their time",
    );
    let c_clients = gauges(
        &mut reg,
        "nsq_channel_clients",
        "Consumers subscribed to the channel",
    );
    let c_paused = gauges(
        &mut reg,
        "nsq_channel_paused",
        "1 while the channel is paused",
    );
    let c_msgs = counters(
        &mut reg,
        "nsq_channel_messages",
        "Messages the channel received",
    );
    let c_requeued = counters(
        &mut reg,
        "nsq_channel_requeued",
        "Messages requeued by consumers",
    );
    let c_timed_out = counters(
        &mut reg,
        "nsq_channel_timed_out",
        "In-flight messages that timed out",
    );
    let t_e2e = gauges(
        &mut reg,
        "nsq_topic_e2e_processing_latency_samples",
        "FINs of the topic's messages in the E2E window (when percentiles are configured)",
    );
    let c_e2e = gauges(
        &mut reg,
        "nsq_channel_e2e_processing_latency_samples",
        "FINs of the channel's messages in the E2E window (when percentiles are configured)",
    );
    for t in &topics {
        let tl: Labels = vec![("topic", t.topic_name.clone())];
        if t.e2e_processing_latency.percentiles.is_some() {
            t_e2e
                .get_or_create(&tl)
                .set(clamp(t.e2e_processing_latency.count));
        }
        t_depth.get_or_create(&tl).set(clamp(t.depth));
        t_backend.get_or_create(&tl).set(clamp(t.backend_depth));
        t_paused.get_or_create(&tl).set(i64::from(t.paused));
        t_msgs.get_or_create(&tl).inc_by(t.message_count);
        t_bytes.get_or_create(&tl).inc_by(t.message_bytes);
        for c in &t.channels {
            let cl: Labels = vec![
                ("topic", t.topic_name.clone()),
                ("channel", c.channel_name.clone()),
            ];
            c_depth.get_or_create(&cl).set(clamp(c.depth));
            c_backend.get_or_create(&cl).set(clamp(c.backend_depth));
            c_inflight.get_or_create(&cl).set(clamp(c.in_flight_count));
            c_deferred.get_or_create(&cl).set(clamp(c.deferred_count));
            c_clients.get_or_create(&cl).set(clamp(c.client_count));
            c_paused.get_or_create(&cl).set(i64::from(c.paused));
            c_msgs.get_or_create(&cl).inc_by(c.message_count);
            c_requeued.get_or_create(&cl).inc_by(c.requeue_count);
            c_timed_out.get_or_create(&cl).inc_by(c.timeout_count);
            if c.e2e_processing_latency.percentiles.is_some() {
                c_e2e
                    .get_or_create(&cl)
                    .set(clamp(c.e2e_processing_latency.count));
            }
        }
    }

    let p_active = gauges(
        &mut reg,
        "nsq_connections_active",
        "Open connections per protocol (V2 or plugin name)",
    );
    let p_total = counters(
        &mut reg,
        "nsq_connections",
        "Connections accepted per protocol",
    );
    for p in ctx.stats.protocols() {
        let l: Labels = vec![("protocol", p.protocol.clone())];
        p_active.get_or_create(&l).set(clamp(p.active));
        p_total.get_or_create(&l).inc_by(p.total);
    }
    use std::sync::atomic::Ordering::Relaxed;
    counter(
        &mut reg,
        "nsq_bad_protocol_connections",
        "Connections that sent an unknown magic",
        ctx.stats.bad_protocol.load(Relaxed),
    );
    counter(
        &mut reg,
        "nsq_magic_failures",
        "Connections that sent no magic in time",
        ctx.stats.magic_failures.load(Relaxed),
    );
    counter(
        &mut reg,
        "nsq_accept_errors",
        "Transient accept errors survived",
        ctx.stats.accept_errors.load(Relaxed),
    );

    let pl_conns = counters(
        &mut reg,
        "nsq_plugin_connections",
        "Connections served by the plugin",
    );
    let pl_active = gauges(
        &mut reg,
        "nsq_plugin_connections_active",
        "Open connections of the plugin",
    );
    let pl_traps = counters(
        &mut reg,
        "nsq_plugin_traps",
        "Connections ended by a guest trap",
    );
    let pl_limits = counters(
        &mut reg,
        "nsq_plugin_limit_hits",
        "Connections ended by a limit (CPU deadline, memory, denied calls)",
    );
    let pl_refused = counters(
        &mut reg,
        "nsq_plugin_refused",
        "Connections closed before the guest ran (connection limit, no free slot, no resources)",
    );
    let pl_denied = counters(
        &mut reg,
        "nsq_plugin_denied",
        "Broker calls refused by the plugin's topic/channel limits",
    );
    for p in plugin_stats(ctx) {
        let l: Labels = vec![("plugin", p.name.clone())];
        pl_conns.get_or_create(&l).inc_by(p.connections);
        pl_active.get_or_create(&l).set(clamp(p.active));
        pl_traps.get_or_create(&l).inc_by(p.traps);
        pl_limits.get_or_create(&l).inc_by(p.limit_hits);
        pl_refused.get_or_create(&l).inc_by(p.refused);
        pl_denied.get_or_create(&l).inc_by(p.denied);
    }

    if let Some(plugin) = ctx.registry.load().plugins().first() {
        let gate = plugin.gate();
        gauge(
            &mut reg,
            "nsq_plugin_slots",
            "Plugin connections the host serves at once, all plugins together (planned at startup)",
            u64::from(gate.capacity().slots),
        );
        gauge(
            &mut reg,
            "nsq_plugin_slots_in_use",
            "Plugin connections open now, all plugins together",
            gate.open(),
        );
    }

    let proc = ProcessStats::read();
    if let Some(v) = proc.cpu_seconds {
        let c = Counter::<f64, AtomicU64>::default();
        c.inc_by(v);
        reg.register(
            "process_cpu_seconds",
            "User and system CPU time spent in seconds",
            c,
        );
    }
    if let Some(v) = proc.resident_memory_bytes {
        gauge(
            &mut reg,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            v,
        );
    }
    if let Some(v) = proc.virtual_memory_bytes {
        gauge(
            &mut reg,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            v,
        );
    }
    if let Some(v) = proc.open_fds {
        gauge(
            &mut reg,
            "process_open_fds",
            "Number of open file descriptors",
            v,
        );
    }
    if let Some(v) = proc.max_fds {
        gauge(
            &mut reg,
            "process_max_fds",
            "Maximum number of open file descriptors",
            v,
        );
    }
    if let Some(v) = proc.threads {
        gauge(&mut reg, "process_threads", "Number of OS threads", v);
    }
    if let Some(v) = proc.start_time_seconds {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(v);
        reg.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            g,
        );
    }

    let mut out = String::new();
    encode(&mut out, &reg).ok()?;
    // prometheus-client has no summary type: the E2E percentiles are
    // written by hand, before the closing `# EOF`.
    let summaries = e2e_summaries(&topics);
    if !summaries.is_empty() {
        let at = out.rfind("# EOF").unwrap_or(out.len());
        out.insert_str(at, &summaries);
    }
    Some(out)
}

/// The E2E processing latency percentiles as two summaries (topic and
/// channel), in seconds; nothing when no percentiles are configured. Topic
/// and channel names need no escaping (`[.a-zA-Z0-9_-]` and `#`).
fn e2e_summaries(topics: &[TopicStats]) -> String {
    use std::fmt::Write as _;
    let mut topic_lines = String::new();
    let mut channel_lines = String::new();
    for t in topics {
        for p in t.e2e_processing_latency.percentiles.iter().flatten() {
            let _ = writeln!(
                topic_lines,
                "nsq_topic_e2e_processing_latency_seconds{{topic=\"{}\",quantile=\"{}\"}} {}",
                t.topic_name,
                p.quantile,
                p.value / 1e9
            );
        }
        for c in &t.channels {
            for p in c.e2e_processing_latency.percentiles.iter().flatten() {
                let _ = writeln!(
                    channel_lines,
                    "nsq_channel_e2e_processing_latency_seconds{{topic=\"{}\",channel=\"{}\",quantile=\"{}\"}} {}",
                    t.topic_name,
                    c.channel_name,
                    p.quantile,
                    p.value / 1e9
                );
            }
        }
    }
    let mut out = String::new();
    for (name, help, lines) in [
        (
            "nsq_topic_e2e_processing_latency_seconds",
            "Publish-to-FIN time of the topic's messages over the E2E window, all channels together",
            topic_lines,
        ),
        (
            "nsq_channel_e2e_processing_latency_seconds",
            "Publish-to-FIN time of the channel's messages over the E2E window",
            channel_lines,
        ),
    ] {
        if !lines.is_empty() {
            let _ = writeln!(out, "# HELP {name} {help}.");
            let _ = writeln!(out, "# TYPE {name} summary");
            out.push_str(&lines);
        }
    }
    out
}

/// Rewrites the OpenMetrics text into Prometheus text format 0.0.4: counter
/// families are named with their `_total` suffix in `# HELP`/`# TYPE` (as
/// the samples are), and the `# EOF` and `# UNIT` lines go. Label values
/// are escaped by the encoder, so every line is one record.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_for_prometheus_text() {
        let om = "# HELP a Help.\n# TYPE a counter\na_total{x=\"1\"} 2\n# HELP b B.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_total Help.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n# HELP b B.\n# TYPE b gauge\nb 1\n"
        );
    }
}

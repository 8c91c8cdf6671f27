//! `GET /stats`: nsqd 1.3's JSON (what nsqadmin and nsq_stat read) and text
//! formats, filtered by `topic` and `channel`, with `include_clients` and
//! `include_mem`. On top of nsqd's fields it shows which protocol each
//! client speaks, connections per protocol, and per-plugin counters.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::Uri;
use serde::Serialize;

use super::HttpState;
use super::error::{ApiResult, Reply};
use super::params::{Query, bool_param};
use super::process::ProcessStats;
use super::timefmt;
use crate::broker::{ChannelStats, ClientStats, E2eLatency, PubCount, TopicStats};
use crate::plugin::PluginStats;
use crate::server::{Context, ProtocolStats};

/// `GET /stats`.
pub async fn stats(State(st): State<Arc<HttpState>>, uri: Uri) -> ApiResult {
    let query = Query::parse(uri.query())?;
    let topic = query.get("topic").filter(|t| !t.is_empty());
    let channel = query.get("channel").filter(|c| !c.is_empty());
    let include_clients = bool_param(query.get("include_clients")).unwrap_or(true);
    let include_mem = bool_param(query.get("include_mem")).unwrap_or(true);
    let topics = topic_stats(&st.ctx, topic, channel, include_clients);
    // nsqd lists producers only with the clients.
    let producers = if include_clients {
        st.ctx.broker.producers()
    } else {
        Vec::new()
    };
    let memory = include_mem.then(Memory::read);
    if query.get("format") != Some("json") {
        return Ok(Reply::Text(render_text(
            &st,
            &topics,
            &producers,
            memory.as_ref(),
        )));
    }
    let out = StatsJson {
        version: super::VERSION,
        health: super::info::health_text(st.ctx.broker.health()),
        start_time: st.start_time as i64,
        topics: topics.iter().map(TopicJson::from).collect(),
        memory,
        producers: producers.iter().map(ClientJson::from).collect(),
        protocols: st.ctx.stats.protocols(),
        plugins: plugin_stats(&st.ctx),
        plugin_set: crate::sync::lock(&st.ctx.plugin_set).clone(),
        plugin_slots: st.ctx.registry.load().plugins().first().map(|p| SlotsJson {
            slots: p.gate().capacity().slots,
            in_use: p.gate().open(),
            configured: p.gate().capacity().configured,
        }),
    };
    Reply::json(&out)
}

/// nsqd's `GetStats`: every topic or only `topic`; every channel or only
/// `channel` (topics without it are left out); clients dropped unless wanted.
pub fn topic_stats(
    ctx: &Context,
    topic: Option<&str>,
    channel: Option<&str>,
    include_clients: bool,
) -> Vec<TopicStats> {
    let mut out = ctx.broker.stats(topic);
    if let Some(c) = channel {
        out.retain_mut(|t| {
            t.channels.retain(|ch| ch.channel_name == c);
            !t.channels.is_empty()
        });
    }
    if !include_clients {
        for t in &mut out {
            for ch in &mut t.channels {
                ch.clients.clear();
            }
        }
    }
    out
}

/// Per-plugin counters, one entry per plugin however many magics it serves.
pub fn plugin_stats(ctx: &Context) -> Vec<PluginStats> {
    ctx.registry
        .load()
        .plugins()
        .iter()
        .map(|p| p.stats())
        .collect()
}

#[derive(Serialize)]
struct StatsJson {
    version: &'static str,
    health: String,
    start_time: i64,
    topics: Vec<TopicJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<Memory>,
    /// Connected clients that published (V2 and plugin clients; HTTP
    /// publishes have no client), as nsqd's `GetProducerStats`.
    producers: Vec<ClientJson>,
    /// Extension: connections per protocol ("V2" or a plugin name).
    protocols: Vec<ProtocolStats>,
    /// Extension: per-plugin connections, traps and limit hits.
    plugins: Vec<PluginStats>,
    /// Extension: the loaded plugin set (generation, each component's hash
    /// and load time) and the last refused reload.
    plugin_set: crate::server::PluginSetStatus,
    /// Extension: the plugin connections the host was sized for at startup
    /// and how many are open (absent without plugins).
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_slots: Option<SlotsJson>,
}

/// The plugin host's planned capacity, for /stats.
#[derive(Serialize)]
struct SlotsJson {
    /// Plugin connections served at once, all plugins together.
    slots: u32,
    /// Open now.
    in_use: u64,
    /// What the plugins' `limits.max_connections` add up to.
    configured: u64,
}

#[derive(Serialize)]
struct TopicJson {
    topic_name: String,
    channels: Vec<ChannelJson>,
    depth: u64,
    backend_depth: u64,
    message_count: u64,
    message_bytes: u64,
    paused: bool,
    e2e_processing_latency: E2eLatency,
}

impl From<&TopicStats> for TopicJson {
    fn from(t: &TopicStats) -> Self {
        TopicJson {
            topic_name: t.topic_name.clone(),
            channels: t.channels.iter().map(ChannelJson::from).collect(),
            depth: t.depth,
            backend_depth: t.backend_depth,
            message_count: t.message_count,
            message_bytes: t.message_bytes,
            paused: t.paused,
            e2e_processing_latency: t.e2e_processing_latency.clone(),
        }
    }
}

#[derive(Serialize)]
struct ChannelJson {
    channel_name: String,
    depth: u64,
    backend_depth: u64,
    in_flight_count: u64,
    deferred_count: u64,
    message_count: u64,
    requeue_count: u64,
    timeout_count: u64,
    client_count: u64,
    clients: Vec<ClientJson>,
    paused: bool,
    e2e_processing_latency: E2eLatency,
}

impl From<&ChannelStats> for ChannelJson {
    fn from(c: &ChannelStats) -> Self {
        ChannelJson {
            channel_name: c.channel_name.clone(),
            depth: c.depth,
            backend_depth: c.backend_depth,
            in_flight_count: c.in_flight_count,
            deferred_count: c.deferred_count,
            message_count: c.message_count,
            requeue_count: c.requeue_count,
            timeout_count: c.timeout_count,
            client_count: c.client_count,
            clients: c.clients.iter().map(ClientJson::from).collect(),
            paused: c.paused,
            e2e_processing_latency: c.e2e_processing_latency.clone(),
        }
    }
}

#[derive(Serialize)]
struct ClientJson {
    client_id: String,
    hostname: String,
    /// nsqd writes the protocol version ("V2") here; plugin clients show
    /// the plugin's name.
    version: String,
    remote_address: String,
    state: i32,
    ready_count: u64,
    in_flight_count: u64,
    message_count: u64,
    finish_count: u64,
    requeue_count: u64,
    connect_ts: i64,
    sample_rate: i32,
    deflate: bool,
    snappy: bool,
    user_agent: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    authed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    auth_identity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    auth_identity_url: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub_counts: Vec<PubCount>,
    tls: bool,
    tls_cipher_suite: String,
    tls_version: String,
    tls_negotiated_protocol: String,
    tls_negotiated_protocol_is_mutual: bool,
    /// Extension: "V2" or the plugin name.
    protocol: String,
}

impl From<&ClientStats> for ClientJson {
    fn from(c: &ClientStats) -> Self {
        ClientJson {
            client_id: c.client_id.clone(),
            hostname: c.hostname.clone(),
            version: c.protocol.clone(),
            remote_address: c.remote_address.clone(),
            state: c.state,
            ready_count: c.ready_count,
            in_flight_count: c.in_flight_count,
            message_count: c.message_count,
            finish_count: c.finish_count,
            requeue_count: c.requeue_count,
            connect_ts: c.connect_ts,
            sample_rate: c.meta.sample_rate,
            deflate: c.meta.deflate,
            snappy: c.meta.snappy,
            user_agent: c.user_agent.clone(),
            authed: c.meta.authed,
            auth_identity: c.meta.auth_identity.clone(),
            auth_identity_url: c.meta.auth_identity_url.clone(),
            pub_counts: c.pub_counts.clone(),
            tls: c.meta.tls,
            tls_cipher_suite: c.meta.tls_cipher_suite.clone(),
            tls_version: c.meta.tls_version.clone(),
            tls_negotiated_protocol: c.meta.tls_negotiated_protocol.clone(),
            // Go has always reported true here since 1.17 (deprecated).
            tls_negotiated_protocol_is_mutual: c.meta.tls,
            protocol: c.protocol.clone(),
        }
    }
}

/// nsqd's `memStats`. Go's heap figures have no equivalent here: the
/// resident set size stands in for `heap_in_use_bytes`, the rest are 0.
#[derive(Serialize)]
struct Memory {
    heap_objects: u64,
    heap_idle_bytes: u64,
    heap_in_use_bytes: u64,
    heap_released_bytes: u64,
    gc_pause_usec_100: u64,
    gc_pause_usec_99: u64,
    gc_pause_usec_95: u64,
    next_gc_bytes: u64,
    gc_total_runs: u32,
}

impl Memory {
    fn read() -> Memory {
        Memory {
            heap_objects: 0,
            heap_idle_bytes: 0,
            heap_in_use_bytes: ProcessStats::read().resident_memory_bytes.unwrap_or(0),
            heap_released_bytes: 0,
            gc_pause_usec_100: 0,
            gc_pause_usec_99: 0,
            gc_pause_usec_95: 0,
            next_gc_bytes: 0,
            gc_total_runs: 0,
        }
    }
}

/// nsqd's `printStats` layout.
fn render_text(
    st: &HttpState,
    topics: &[TopicStats],
    producers: &[ClientStats],
    memory: Option<&Memory>,
) -> String {
    let now = timefmt::now_seconds();
    let mut w = String::new();
    let _ = writeln!(
        w,
        "nsq-gateway v{} (nsqd 1.3 compatible)",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(w, "start_time {}", timefmt::rfc3339(st.start_time as i64));
    let _ = writeln!(
        w,
        "uptime {}",
        timefmt::go_duration((now - st.start_time).max(0.0))
    );
    let _ = writeln!(
        w,
        "\nHealth: {}",
        super::info::health_text(st.ctx.broker.health())
    );
    if let Some(m) = memory {
        let _ = writeln!(w, "\nMemory:");
        for (k, v) in [
            ("heap_objects", m.heap_objects),
            ("heap_idle_bytes", m.heap_idle_bytes),
            ("heap_in_use_bytes", m.heap_in_use_bytes),
            ("heap_released_bytes", m.heap_released_bytes),
            ("gc_pause_usec_100", m.gc_pause_usec_100),
            ("gc_pause_usec_99", m.gc_pause_usec_99),
            ("gc_pause_usec_95", m.gc_pause_usec_95),
            ("next_gc_bytes", m.next_gc_bytes),
            ("gc_total_runs", u64::from(m.gc_total_runs)),
        ] {
            let _ = writeln!(w, "   {k:<25}\t{v}");
        }
    }
    if topics.is_empty() {
        let _ = writeln!(w, "\nTopics: None");
    } else {
        let _ = write!(w, "\nTopics:");
    }
    for t in topics {
        let p = if t.paused { "*P " } else { "   " };
        let _ = writeln!(
            w,
            "\n{p}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: {}",
            t.topic_name,
            t.depth,
            t.backend_depth,
            t.message_count,
            t.e2e_processing_latency.human()
        );
        for c in &t.channels {
            let p = if c.paused { "   *P " } else { "      " };
            let _ = writeln!(
                w,
                "{p}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: {}",
                c.channel_name,
                c.depth,
                c.backend_depth,
                c.in_flight_count,
                c.deferred_count,
                c.requeue_count,
                c.timeout_count,
                c.message_count,
                c.e2e_processing_latency.human()
            );
            for cl in &c.clients {
                let (id, connected) = client_text_id(cl, now);
                let _ = writeln!(
                    w,
                    "        [{} {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {}",
                    cl.protocol,
                    id,
                    cl.state,
                    cl.in_flight_count,
                    cl.ready_count,
                    cl.finish_count,
                    cl.requeue_count,
                    cl.message_count,
                    connected
                );
            }
        }
    }
    if producers.is_empty() {
        let _ = writeln!(w, "\nProducers: None");
    } else {
        let _ = writeln!(w, "\nProducers:");
        for p in producers {
            let (id, connected) = client_text_id(p, now);
            let total: u64 = p.pub_counts.iter().map(|c| c.count).sum();
            let _ = writeln!(
                w,
                "   [{} {:<21}] msgs: {:<8} connected: {}",
                p.protocol, id, total, connected
            );
            for c in &p.pub_counts {
                let _ = writeln!(w, "      [{:<15}] msgs: {:<8}", c.topic, c.count);
            }
        }
    }
    let protocols = st.ctx.stats.protocols();
    if !protocols.is_empty() {
        let _ = writeln!(w, "\nProtocols:");
        for p in protocols {
            let _ = writeln!(
                w,
                "   [{:<15}] active: {:<6} total: {}",
                p.protocol, p.active, p.total
            );
        }
    }
    let plugins = plugin_stats(&st.ctx);
    if !plugins.is_empty() {
        let set = crate::sync::lock(&st.ctx.plugin_set).clone();
        let _ = writeln!(w, "\nPlugins: (generation {})", set.generation);
        if let Some(e) = &set.last_error {
            let _ = writeln!(w, "   last reload refused at {}: {}", e.at, e.error);
        }
        for p in plugins {
            let _ = writeln!(
                w,
                "   [{:<15}] active: {:<6} connections: {:<8} traps: {:<6} limit-hits: {:<6} refused: {:<6} denied: {}",
                p.name, p.active, p.connections, p.traps, p.limit_hits, p.refused, p.denied
            );
        }
    }
    w
}

/// nsqd's text id of a client (`hostname:port user_agent`) and how long it
/// has been connected, to the second.
fn client_text_id(c: &ClientStats, now: f64) -> (String, String) {
    let port = c.remote_address.rsplit(':').next().unwrap_or("");
    let id = format!("{}:{} {}", c.hostname, port, c.user_agent);
    let connected = timefmt::go_duration((now - c.connect_ts as f64).max(0.0).trunc());
    (id, connected)
}

//! The one list of settings. Each entry is declared once, here, and the
//! `settings!` macro derives from it the `Config` field with its YAML key and
//! default, and the command-line flag that overrides it (`Flags`, flattened
//! into the binary's `Cli`). Names are nsqd's wherever nsqd has the setting.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::go_duration;
use super::plugins::PluginConfig;
use super::{LogFormat, LogLevel, SyncMode, default_hostname, default_node_id, parse_duration};

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// nsqd's `--tls-required`: 0/1/2, or its flag words (`false`, `tcp-https`,
/// `true`).
fn tls_required(s: &str) -> Result<u8, String> {
    match s {
        "0" | "false" => Ok(0),
        "1" | "tcp-https" => Ok(1),
        "2" | "true" => Ok(2),
        other => Err(format!(
            "invalid tls-required {other:?}: 0 (false), 1 (tcp-https) or 2 (true)"
        )),
    }
}

/// `tls_required` in YAML: a number, a boolean or nsqd's flag words.
fn tls_required_yaml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Int(u64),
        Bool(bool),
        Text(String),
    }
    let text = match Value::deserialize(d)? {
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(t) => t,
    };
    tls_required(&text).map_err(serde::de::Error::custom)
}

/// Declares every setting once: its doc (the flag's help), its flag
/// attributes, optional serde attributes, its type and its default. Settings
/// after `yaml_only` have no flag.
macro_rules! settings {
    (
        $(
            $(#[doc = $doc:literal])*
            #[flag($($arg:tt)*)]
            $(#[serde($($serde:tt)*)])?
            $name:ident : $ty:ty = $default:expr,
        )*
        yaml_only {
            $(
                $(#[doc = $ydoc:literal])*
                $yname:ident : $yty:ty = $ydefault:expr,
            )*
        }
    ) => {
        /// Every setting of the gateway. YAML keys are nsqd's config-file
        /// names; flags are the same names with dashes.
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])?
                pub $name: $ty,
            )*
            $(
                $(#[doc = $ydoc])*
                pub $yname: $yty,
            )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $($name: $default,)*
                    $($yname: $ydefault,)*
                }
            }
        }

        /// The command-line form of every setting: each flag given overrides
        /// the same key from `gateway.yaml`.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct Flags {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                pub $name: Option<$ty>,
            )*
        }

        impl Flags {
            /// Overrides `config` with every flag that was given.
            pub fn apply(&self, config: &mut Config) {
                $(
                    if let Some(v) = &self.$name {
                        config.$name = v.clone();
                    }
                )*
            }
        }
    };
}

settings! {
    /// <addr>:<port> to listen on for TCP clients.
    #[flag(long, value_name = "ADDR")]
    tcp_address: String = "0.0.0.0:4150".into(),
    /// <addr>:<port> to listen on for HTTP clients.
    #[flag(long, value_name = "ADDR")]
    http_address: String = "0.0.0.0:4151".into(),
    /// <addr>:<port> to listen on for HTTPS clients (served only when tls-cert and tls-key are set).
    #[flag(long, value_name = "ADDR")]
    https_address: String = "0.0.0.0:4152".into(),
    /// Address registered with nsqlookupd and shown in /info (default: hostname).
    #[flag(long, value_name = "HOST")]
    broadcast_address: String = default_hostname(),
    /// TCP port registered with nsqlookupd (default: the TCP listener's port).
    #[flag(long, value_name = "PORT")]
    broadcast_tcp_port: u16 = 0,
    /// HTTP port registered with nsqlookupd (default: the HTTP listener's port).
    #[flag(long, value_name = "PORT")]
    broadcast_http_port: u16 = 0,
    /// nsqlookupd TCP address to register with (may be given multiple times).
    #[flag(long = "lookupd-tcp-address", value_name = "ADDR")]
    nsqlookupd_tcp_addresses: Vec<String> = Vec::new(),
    /// Path to store disk-backed messages and metadata.
    #[flag(long, value_name = "PATH")]
    data_path: PathBuf = PathBuf::from("."),
    /// Number of messages to keep in memory (per topic/channel).
    #[flag(long, value_name = "N")]
    mem_queue_size: u64 = 10_000,
    /// Number of bytes per disk queue file before rolling.
    #[flag(long, value_name = "BYTES")]
    max_bytes_per_file: u64 = 104_857_600,
    /// Cap on each topic's and channel's disk queue files, in bytes (0 = unlimited).
    #[flag(long, value_name = "BYTES")]
    max_disk_bytes_per_queue: u64 = 0,
    /// Number of messages per disk queue fsync (batch mode).
    #[flag(long, value_name = "N")]
    sync_every: u64 = 2500,
    /// Longest time between disk queue fsyncs (batch mode).
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    sync_timeout: Duration = Duration::from_secs(2),
    /// batch: fsync per sync-every/sync-timeout; always: fsync before answering a publish.
    #[flag(long, value_name = "MODE", value_enum)]
    sync_mode: SyncMode = SyncMode::Batch,
    /// Maximum size of a single message in bytes.
    #[flag(long, value_name = "BYTES")]
    max_msg_size: u64 = 1_048_576,
    /// Maximum size of a single command body (MPUB) in bytes.
    #[flag(long, value_name = "BYTES")]
    max_body_size: u64 = 5_242_880,
    /// Maximum RDY count for a client.
    #[flag(long, value_name = "N")]
    max_rdy_count: u64 = 2500,
    /// Maximum consumers per channel (0 = unlimited).
    #[flag(long, value_name = "N")]
    max_channel_consumers: u64 = 0,
    /// Default duration to wait before auto-requeueing a message.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    msg_timeout: Duration = Duration::from_secs(60),
    /// Maximum duration before a message will timeout.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    max_msg_timeout: Duration = Duration::from_secs(15 * 60),
    /// Maximum requeuing timeout (REQ delay, DPUB defer).
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    max_req_timeout: Duration = Duration::from_secs(60 * 60),
    /// Default client timeout; the default heartbeat interval is half of it.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    client_timeout: Duration = Duration::from_secs(60),
    /// Maximum client-configurable duration of time between client heartbeats.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    max_heartbeat_interval: Duration = Duration::from_secs(60),
    /// Maximum client-configurable size (in bytes) for a client output buffer.
    #[flag(long, value_name = "BYTES")]
    max_output_buffer_size: u64 = 65_536,
    /// Maximum client-configurable duration of time between flushing to a client.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    max_output_buffer_timeout: Duration = Duration::from_secs(30),
    /// Minimum client-configurable duration of time between flushing to a client.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    min_output_buffer_timeout: Duration = Duration::from_millis(25),
    /// Default duration of time between flushing data to clients.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    output_buffer_timeout: Duration = Duration::from_millis(250),
    /// Enable deflate feature negotiation (client compression).
    #[flag(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    deflate: bool = true,
    /// Maximum deflate compression level a client can negotiate (> values == > nsqd CPU usage).
    #[flag(long, value_name = "LEVEL")]
    max_deflate_level: i32 = 6,
    /// Enable snappy feature negotiation (client compression).
    #[flag(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    snappy: bool = true,
    /// Path to a PEM certificate (chain) for TLS: V2's IDENTIFY upgrade, TLS-first connections, HTTPS.
    #[flag(long, value_name = "FILE")]
    tls_cert: String = String::new(),
    /// Path to the PEM private key of tls-cert.
    #[flag(long, value_name = "FILE")]
    tls_key: String = String::new(),
    /// Path to PEM CA certificates that client certificates are verified against (require-verify).
    #[flag(long, value_name = "FILE")]
    tls_root_ca_file: String = String::new(),
    /// Client certificates: "" (not asked), require (any), require-verify (signed by tls-root-ca-file); either implies tls-required.
    #[flag(long, value_name = "POLICY")]
    tls_client_auth_policy: String = String::new(),
    /// Require TLS: 0 (no), 1 (TCP only, HTTP stays open: nsqd's tcp-https), 2 (TCP and HTTP); also true/false/tcp-https.
    #[flag(long, value_name = "0|1|2", value_parser = tls_required)]
    #[serde(deserialize_with = "tls_required_yaml")]
    tls_required: u8 = 0,
    /// Minimum TLS version: tls1.2 or tls1.3 (ssl3.0, tls1.0 and tls1.1 are refused: rustls does not speak them).
    #[flag(long, value_name = "VERSION")]
    tls_min_version: String = String::new(),
    /// Log level.
    #[flag(long, value_name = "LEVEL", value_enum, ignore_case = true)]
    log_level: LogLevel = LogLevel::Info,
    /// Log format: human-readable text or one JSON object per line.
    #[flag(long, value_name = "FORMAT", value_enum)]
    log_format: LogFormat = LogFormat::Text,
    /// Maximum simultaneous TCP connections (all protocols).
    #[flag(long, value_name = "N")]
    max_connections: usize = 100_000,
    /// How long a new connection may take to send its 4-byte protocol magic.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    magic_timeout: Duration = Duration::from_secs(10),
    /// How long shutdown waits for sessions to finish before exiting.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    shutdown_timeout: Duration = Duration::from_secs(10),
    /// <addr>:<port> or a full url to query auth server (may be given multiple times).
    #[flag(long = "auth-http-address", value_name = "ADDR")]
    auth_http_addresses: Vec<String> = Vec::new(),
    /// Timeout for HTTP connect (the auth server).
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    http_client_connect_timeout: Duration = Duration::from_secs(2),
    /// Timeout for HTTP request (the auth server).
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    http_client_request_timeout: Duration = Duration::from_secs(5),
    /// Unique part of message ids, 0..1024 (default: a hash of the hostname); shown in /info.
    #[flag(long, value_name = "ID", value_parser = clap::value_parser!(u16).range(0..1024))]
    node_id: u16 = default_node_id(),
    /// [deprecated] use --node-id (accepted as nsqd does; has no effect).
    #[flag(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    worker_id: bool = false,
    /// Prefix of every text log line (nsqd's default is "[nsqd] ").
    #[flag(long, value_name = "PREFIX")]
    log_prefix: String = "[nsq-gateway] ".into(),
    /// [deprecated] has no effect, use --log-level.
    #[flag(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    verbose: bool = false,
    /// Accepted for nsqd compatibility, no effect: timeouts here are timers, not a 100 ms scan.
    #[flag(long, value_name = "N")]
    queue_scan_selection_count: u64 = 20,
    /// Accepted for nsqd compatibility, no effect: timeouts here are timers, not a scan pool.
    #[flag(long, value_name = "N")]
    queue_scan_worker_pool_max: u64 = 4,
    /// UDP <addr>:<port> of a statsd daemon for pushing stats (empty: none).
    #[flag(long, value_name = "ADDR")]
    statsd_address: String = String::new(),
    /// Prefix used for keys sent to statsd (%s for host replacement).
    #[flag(long, value_name = "PREFIX")]
    statsd_prefix: String = "nsq.%s".into(),
    /// Duration between pushing to statsd.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    statsd_interval: Duration = Duration::from_secs(60),
    /// The size in bytes of statsd UDP packets (no datagram is larger).
    #[flag(long, value_name = "BYTES")]
    statsd_udp_packet_size: usize = 508,
    /// Skip ephemeral topics and channels when sending stats to statsd.
    #[flag(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    statsd_exclude_ephemeral: bool = false,
    /// Toggle sending the process's memory figures to statsd.
    #[flag(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    statsd_mem_stats: bool = true,
    /// Message processing time percentiles (as float (0, 1.0]) to track (can be specified multiple times or comma separated '1.0,0.99,0.95', default none).
    #[flag(long = "e2e-processing-latency-percentile", value_name = "FLOAT", value_delimiter = ',')]
    e2e_processing_latency_percentiles: Vec<f64> = Vec::new(),
    /// Calculate end to end latency quantiles for this duration of time.
    #[flag(long, value_name = "DURATION", value_parser = duration)]
    #[serde(with = "go_duration")]
    e2e_processing_latency_window_time: Duration = Duration::from_secs(600),
    /// Directory for compiled plugin components, reused while the component and the engine are unchanged ("" = <data-path>/plugin-cache; "off" = compile at every start).
    #[flag(long, value_name = "PATH")]
    plugin_cache_path: String = String::new(),
    yaml_only {
        /// The WebAssembly protocol plugins and their magics.
        plugins: Vec<PluginConfig> = Vec::new(),
    }
}

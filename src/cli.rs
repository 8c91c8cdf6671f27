//! Command-line flags. Names are nsqd's wherever nsqd has the setting; each
//! flag given overrides the same key from `gateway.yaml`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::{Config, LogFormat, LogLevel, SyncMode, parse_duration};

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// nsq-gateway: an NSQ-compatible message broker whose wire protocols are plugins.
#[derive(Debug, Parser, Default)]
#[command(name = "nsq-gateway", version, about)]
pub struct Cli {
    /// Path to the YAML configuration file.
    #[arg(long, value_name = "PATH", default_value = "gateway.yaml")]
    pub config: PathBuf,
    /// <addr>:<port> to listen on for TCP clients.
    #[arg(long, value_name = "ADDR")]
    pub tcp_address: Option<String>,
    /// <addr>:<port> to listen on for HTTP clients.
    #[arg(long, value_name = "ADDR")]
    pub http_address: Option<String>,
    /// Address registered with nsqlookupd and shown in /info (default: hostname).
    #[arg(long, value_name = "HOST")]
    pub broadcast_address: Option<String>,
    /// TCP port registered with nsqlookupd (default: the TCP listener's port).
    #[arg(long, value_name = "PORT")]
    pub broadcast_tcp_port: Option<u16>,
    /// HTTP port registered with nsqlookupd (default: the HTTP listener's port).
    #[arg(long, value_name = "PORT")]
    pub broadcast_http_port: Option<u16>,
    /// nsqlookupd TCP address to register with (may be given multiple times).
    #[arg(long = "lookupd-tcp-address", value_name = "ADDR")]
    pub lookupd_tcp_address: Vec<String>,
    /// Path to store disk-backed messages and metadata.
    #[arg(long, value_name = "PATH")]
    pub data_path: Option<PathBuf>,
    /// Number of messages to keep in memory (per topic/channel).
    #[arg(long, value_name = "N")]
    pub mem_queue_size: Option<u64>,
    /// Number of bytes per disk queue file before rolling.
    #[arg(long, value_name = "BYTES")]
    pub max_bytes_per_file: Option<u64>,
    /// Cap on each topic's and channel's disk queue files, in bytes (0 = unlimited).
    #[arg(long, value_name = "BYTES")]
    pub max_disk_bytes_per_queue: Option<u64>,
    /// Number of messages per disk queue fsync (batch mode).
    #[arg(long, value_name = "N")]
    pub sync_every: Option<u64>,
    /// Longest time between disk queue fsyncs (batch mode).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub sync_timeout: Option<Duration>,
    /// batch: fsync per sync-every/sync-timeout; always: fsync before answering a publish.
    #[arg(long, value_name = "MODE", value_enum)]
    pub sync_mode: Option<SyncMode>,
    /// Maximum size of a single message in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_msg_size: Option<u64>,
    /// Maximum size of a single command body (MPUB) in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_body_size: Option<u64>,
    /// Maximum RDY count for a client.
    #[arg(long, value_name = "N")]
    pub max_rdy_count: Option<u64>,
    /// Maximum consumers per channel (0 = unlimited).
    #[arg(long, value_name = "N")]
    pub max_channel_consumers: Option<u64>,
    /// Default duration to wait before auto-requeueing a message.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub msg_timeout: Option<Duration>,
    /// Maximum duration before a message will timeout.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_msg_timeout: Option<Duration>,
    /// Maximum requeuing timeout (REQ delay, DPUB defer).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_req_timeout: Option<Duration>,
    /// Default client timeout; the default heartbeat interval is half of it.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub client_timeout: Option<Duration>,
    /// Maximum client-configurable duration of time between client heartbeats.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_heartbeat_interval: Option<Duration>,
    /// Maximum client-configurable size (in bytes) for a client output buffer.
    #[arg(long, value_name = "BYTES")]
    pub max_output_buffer_size: Option<u64>,
    /// Maximum client-configurable duration of time between flushing to a client.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_output_buffer_timeout: Option<Duration>,
    /// Minimum client-configurable duration of time between flushing to a client.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub min_output_buffer_timeout: Option<Duration>,
    /// Default duration of time between flushing data to clients.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub output_buffer_timeout: Option<Duration>,
    /// Enable deflate feature negotiation (client compression).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub deflate: Option<bool>,
    /// Maximum deflate compression level a client can negotiate (> values == > nsqd CPU usage).
    #[arg(long, value_name = "LEVEL")]
    pub max_deflate_level: Option<i32>,
    /// Enable snappy feature negotiation (client compression).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub snappy: Option<bool>,
    /// Log level.
    #[arg(long, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Maximum simultaneous TCP connections (all protocols).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// How long a new connection may take to send its 4-byte protocol magic.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub magic_timeout: Option<Duration>,
    /// How long shutdown waits for sessions to finish before exiting.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub shutdown_timeout: Option<Duration>,
}

impl Cli {
    /// Overrides `config` with every flag that was given.
    pub fn apply(&self, c: &mut Config) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut c.tcp_address, &self.tcp_address);
        set(&mut c.http_address, &self.http_address);
        set(&mut c.broadcast_address, &self.broadcast_address);
        set(&mut c.broadcast_tcp_port, &self.broadcast_tcp_port);
        set(&mut c.broadcast_http_port, &self.broadcast_http_port);
        if !self.lookupd_tcp_address.is_empty() {
            c.nsqlookupd_tcp_addresses = self.lookupd_tcp_address.clone();
        }
        set(&mut c.data_path, &self.data_path);
        set(&mut c.mem_queue_size, &self.mem_queue_size);
        set(&mut c.max_bytes_per_file, &self.max_bytes_per_file);
        set(
            &mut c.max_disk_bytes_per_queue,
            &self.max_disk_bytes_per_queue,
        );
        set(&mut c.sync_every, &self.sync_every);
        set(&mut c.sync_timeout, &self.sync_timeout);
        set(&mut c.sync_mode, &self.sync_mode);
        set(&mut c.max_msg_size, &self.max_msg_size);
        set(&mut c.max_body_size, &self.max_body_size);
        set(&mut c.max_rdy_count, &self.max_rdy_count);
        set(&mut c.max_channel_consumers, &self.max_channel_consumers);
        set(&mut c.msg_timeout, &self.msg_timeout);
        set(&mut c.max_msg_timeout, &self.max_msg_timeout);
        set(&mut c.max_req_timeout, &self.max_req_timeout);
        set(&mut c.client_timeout, &self.client_timeout);
        set(&mut c.max_heartbeat_interval, &self.max_heartbeat_interval);
        set(&mut c.max_output_buffer_size, &self.max_output_buffer_size);
        set(
            &mut c.max_output_buffer_timeout,
            &self.max_output_buffer_timeout,
        );
        set(
            &mut c.min_output_buffer_timeout,
            &self.min_output_buffer_timeout,
        );
        set(&mut c.output_buffer_timeout, &self.output_buffer_timeout);
        set(&mut c.deflate, &self.deflate);
        set(&mut c.max_deflate_level, &self.max_deflate_level);
        set(&mut c.snappy, &self.snappy);
        set(&mut c.log_level, &self.log_level);
        set(&mut c.log_format, &self.log_format);
        set(&mut c.max_connections, &self.max_connections);
        set(&mut c.magic_timeout, &self.magic_timeout);
        set(&mut c.shutdown_timeout, &self.shutdown_timeout);
    }

    /// Loads the config file (a missing default `gateway.yaml` means all
    /// defaults; a missing explicit file is an error), applies the flags and
    /// validates the result.
    pub fn resolve(&self, explicit_config: bool) -> anyhow::Result<Config> {
        let mut config = if self.config.exists() || explicit_config {
            Config::load(&self.config)?
        } else {
            Config::default()
        };
        self.apply(&mut config);
        config.validate(&format!("{} and flags", self.config.display()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_yaml() {
        let cli = Cli::parse_from([
            "nsq-gateway",
            "--mem-queue-size",
            "7",
            "--msg-timeout",
            "5s",
            "--deflate=false",
            "--snappy",
        ]);
        let mut c = Config::from_yaml("mem_queue_size: 3\nsnappy: false\n", "t").expect("yaml");
        cli.apply(&mut c);
        assert_eq!(c.mem_queue_size, 7);
        assert_eq!(c.msg_timeout, Duration::from_secs(5));
        assert!(!c.deflate);
        assert!(c.snappy);
    }

    #[test]
    fn bad_flag_value_is_refused() {
        assert!(Cli::try_parse_from(["nsq-gateway", "--msg-timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["nsq-gateway", "--max-rdy-count", "-1"]).is_err());
    }
}

//! The gateway's configuration: the `Config` struct with nsqd's defaults,
//! loading from `gateway.yaml` (unknown keys and bad values are refused with
//! the key, the place and what is allowed), and the checks run after the
//! command-line flags have been applied.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::broker::diskqueue::{DiskQueueOptions, SyncPolicy};
use crate::broker::{BrokerOptions, LatencyOptions};

mod duration;
pub mod plugins;
mod settings;

pub use duration::{DurationDisplay, parse_duration};
pub use plugins::{PluginConfig, PluginLimits, parse_magic};
pub use settings::{Config, Flags};

/// When disk queues fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every `sync_every` messages or `sync_timeout`, as nsqd.
    Batch,
    /// Before answering each publish that reached the disk queue.
    Always,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Log verbosity, with nsqd's level names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

/// The smallest `statsd_udp_packet_size`: room for any one metric line
/// of a sensible name.
pub const MIN_STATSD_PACKET: usize = 64;

/// Most `e2e_processing_latency_percentiles` (each one costs a value in
/// every topic's and channel's stats).
const MAX_PERCENTILES: usize = 100;

/// True for `<host>:<port>` with a port above 0.
fn host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

fn default_hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    if name.is_empty() {
        "localhost".into()
    } else {
        name.into_owned()
    }
}

/// nsqd's default `--node-id`: a hash of the hostname, in 0..1024 (nsqd
/// hashes an MD5 of it with CRC-32; here the CRC-32 of the name itself).
fn default_node_id() -> u16 {
    (crc32fast::hash(default_hostname().as_bytes()) % 1024) as u16
}

/// A setting that nsqd has and that means nothing here: its YAML key, and
/// why it has no effect. Logged once at startup when it was given.
pub struct IgnoredSetting {
    /// The YAML key (the flag is the same with dashes), named in the log.
    pub key: &'static str,
    /// Why it changes nothing here, so the operator can drop it knowingly.
    pub reason: &'static str,
}

impl Config {
    /// Parses YAML text; `origin` names the source in error messages.
    pub fn from_yaml(text: &str, origin: &str) -> anyhow::Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))
    }

    /// Reads and parses a YAML file. Relative component paths of its
    /// plugins are taken relative to the file's directory, so the gateway
    /// runs the same from any working directory.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config = Self::from_yaml(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(Path::new(""));
        for plugin in &mut config.plugins {
            plugin.resolve_relative_to(dir);
        }
        Ok(config)
    }

    /// The settings given a value that has no effect here (nsqd's
    /// queue-scan tuning and deprecated flags), each with the reason.
    pub fn ignored_settings(&self) -> Vec<IgnoredSetting> {
        let d = Config::default();
        let mut out = Vec::new();
        let mut check = |given: bool, key: &'static str, reason: &'static str| {
            if given {
                out.push(IgnoredSetting { key, reason });
            }
        };
        check(
            self.worker_id != d.worker_id,
            "worker_id",
            "deprecated in nsqd (use node_id)",
        );
        check(
            self.verbose != d.verbose,
            "verbose",
            "deprecated in nsqd (use log_level)",
        );
        check(
            self.queue_scan_selection_count != d.queue_scan_selection_count,
            "queue_scan_selection_count",
            "in-flight and deferred timeouts fire from timers, there is no 100 ms queue scan",
        );
        check(
            self.queue_scan_worker_pool_max != d.queue_scan_worker_pool_max,
            "queue_scan_worker_pool_max",
            "in-flight and deferred timeouts fire from timers, there is no queue-scan worker pool",
        );
        out
    }

    /// Checks the values against each other and nsqd's ranges. `origin`
    /// names where they came from.
    pub fn validate(&self, origin: &str) -> anyhow::Result<()> {
        let err = |key: &str, allowed: &str, got: &dyn fmt::Display| -> anyhow::Result<()> {
            bail!("{origin}: invalid value {got} for `{key}`: {allowed}")
        };
        if self.max_msg_size == 0 || self.max_msg_size > u32::MAX as u64 {
            err(
                "max_msg_size",
                "must be between 1 and 4294967295 bytes",
                &self.max_msg_size,
            )?;
        }
        if self.max_body_size < self.max_msg_size || self.max_body_size > u32::MAX as u64 {
            err(
                "max_body_size",
                "must be at least max_msg_size and at most 4294967295 bytes",
                &self.max_body_size,
            )?;
        }
        if self.max_bytes_per_file < 1024 {
            err(
                "max_bytes_per_file",
                "must be at least 1024 bytes",
                &self.max_bytes_per_file,
            )?;
        }
        if self.sync_every == 0 {
            err("sync_every", "must be at least 1", &self.sync_every)?;
        }
        if self.sync_timeout.is_zero() {
            err(
                "sync_timeout",
                "must be more than 0",
                &DurationDisplay(self.sync_timeout),
            )?;
        }
        if self.max_rdy_count == 0 {
            err("max_rdy_count", "must be at least 1", &self.max_rdy_count)?;
        }
        if self.msg_timeout.is_zero() || self.msg_timeout > self.max_msg_timeout {
            err(
                "msg_timeout",
                "must be more than 0 and at most max_msg_timeout",
                &DurationDisplay(self.msg_timeout),
            )?;
        }
        if self.max_heartbeat_interval < Duration::from_secs(1) {
            err(
                "max_heartbeat_interval",
                "must be at least 1s",
                &DurationDisplay(self.max_heartbeat_interval),
            )?;
        }
        if self.min_output_buffer_timeout > self.max_output_buffer_timeout {
            err(
                "min_output_buffer_timeout",
                "must not exceed max_output_buffer_timeout",
                &DurationDisplay(self.min_output_buffer_timeout),
            )?;
        }
        if !(1..=9).contains(&self.max_deflate_level) {
            err(
                "max_deflate_level",
                "must be between 1 and 9",
                &self.max_deflate_level,
            )?;
        }
        for addr in &self.nsqlookupd_tcp_addresses {
            if !host_port(addr) {
                err(
                    "nsqlookupd_tcp_addresses",
                    "each must be <host>:<port>",
                    &format!("{addr:?}"),
                )?;
            }
        }
        if self.node_id >= 1024 {
            err("node_id", "must be in [0,1024)", &self.node_id)?;
        }
        if self.max_connections == 0 {
            err(
                "max_connections",
                "must be at least 1",
                &self.max_connections,
            )?;
        }
        match self.tls_client_auth_policy.as_str() {
            "" | "require" | "require-verify" => {}
            other => err(
                "tls_client_auth_policy",
                "must be \"require\" or \"require-verify\" (or empty)",
                &format!("{other:?}"),
            )?,
        }
        match self.tls_min_version.as_str() {
            "" | "tls1.2" | "tls1.3" => {}
            v @ ("ssl3.0" | "tls1.0" | "tls1.1") => err(
                "tls_min_version",
                "rustls speaks TLS 1.2 and 1.3 only: use tls1.2 (or leave it empty) or tls1.3",
                &v,
            )?,
            other => err(
                "tls_min_version",
                "one of ssl3.0, tls1.0, tls1.1, tls1.2, tls1.3",
                &format!("{other:?}"),
            )?,
        }
        if self.tls_required > 2 {
            err("tls_required", "must be 0, 1 or 2", &self.tls_required)?;
        }
        let tls = !self.tls_cert.is_empty() || !self.tls_key.is_empty();
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            err(
                "tls_cert",
                "tls_cert and tls_key must be set together",
                &format!("{:?}", self.tls_cert),
            )?;
        }
        if !tls && self.tls_required() != 0 {
            err(
                "tls_required",
                "cannot require TLS client connections without TLS key and cert",
                &self.tls_required(),
            )?;
        }
        if self.magic_timeout.is_zero() {
            err(
                "magic_timeout",
                "must be more than 0",
                &DurationDisplay(self.magic_timeout),
            )?;
        }
        if !self.statsd_address.is_empty() && !host_port(&self.statsd_address) {
            err(
                "statsd_address",
                "must be <host>:<port> (or empty for no statsd)",
                &format!("{:?}", self.statsd_address),
            )?;
        }
        if self.statsd_interval < Duration::from_millis(1) {
            err(
                "statsd_interval",
                "must be at least 1ms",
                &DurationDisplay(self.statsd_interval),
            )?;
        }
        if !(MIN_STATSD_PACKET..=65_507).contains(&self.statsd_udp_packet_size) {
            err(
                "statsd_udp_packet_size",
                "must be between 64 and 65507 bytes",
                &self.statsd_udp_packet_size,
            )?;
        }
        for p in &self.e2e_processing_latency_percentiles {
            if !(*p > 0.0 && *p <= 1.0) {
                err(
                    "e2e_processing_latency_percentiles",
                    "each must be in (0, 1.0]",
                    p,
                )?;
            }
        }
        if self.e2e_processing_latency_percentiles.len() > MAX_PERCENTILES {
            err(
                "e2e_processing_latency_percentiles",
                "at most 100 percentiles",
                &self.e2e_processing_latency_percentiles.len(),
            )?;
        }
        if self.e2e_processing_latency_window_time < Duration::from_millis(2) {
            err(
                "e2e_processing_latency_window_time",
                "must be at least 2ms",
                &DurationDisplay(self.e2e_processing_latency_window_time),
            )?;
        }
        Ok(())
    }

    /// `tls_required` with nsqd's rule applied: a client auth policy
    /// without an explicit requirement means TLS is required (2).
    pub fn tls_required(&self) -> u8 {
        if !self.tls_client_auth_policy.is_empty() && self.tls_required == 0 {
            2
        } else {
            self.tls_required
        }
    }

    /// The E2E latency settings when percentiles are configured: sorted
    /// from the largest down, as nsqd sorts them.
    fn e2e_options(&self) -> Option<LatencyOptions> {
        if self.e2e_processing_latency_percentiles.is_empty() {
            return None;
        }
        let mut percentiles = self.e2e_processing_latency_percentiles.clone();
        percentiles.sort_by(|a, b| b.total_cmp(a));
        Some(LatencyOptions {
            window: self.e2e_processing_latency_window_time,
            percentiles,
        })
    }

    /// The core's limits derived from this configuration.
    pub fn broker_options(&self) -> BrokerOptions {
        BrokerOptions {
            mem_queue_size: usize::try_from(self.mem_queue_size).unwrap_or(usize::MAX),
            msg_timeout: self.msg_timeout,
            max_msg_timeout: self.max_msg_timeout,
            max_channel_consumers: usize::try_from(self.max_channel_consumers)
                .unwrap_or(usize::MAX),
            data_path: Some(self.data_path.clone()),
            node_id: self.node_id,
            disk: DiskQueueOptions {
                max_bytes_per_file: self.max_bytes_per_file,
                sync_every: self.sync_every,
                sync_timeout: self.sync_timeout,
                sync: match self.sync_mode {
                    SyncMode::Batch => SyncPolicy::Batch,
                    SyncMode::Always => SyncPolicy::Always,
                },
                max_msg_size: u32::try_from(self.max_msg_size).unwrap_or(u32::MAX),
                max_total_bytes: (self.max_disk_bytes_per_queue > 0)
                    .then_some(self.max_disk_bytes_per_queue),
            },
            e2e: self.e2e_options(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "1e400h", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_render_like_go() {
        assert_eq!(DurationDisplay(Duration::from_secs(60)).to_string(), "1m0s");
        assert_eq!(
            DurationDisplay(Duration::from_millis(250)).to_string(),
            "250ms"
        );
        assert_eq!(
            DurationDisplay(Duration::from_secs(3600)).to_string(),
            "1h0m0s"
        );
        assert_eq!(
            DurationDisplay(Duration::from_millis(1500)).to_string(),
            "1.500s"
        );
    }

    #[test]
    fn defaults_are_nsqds_and_valid() {
        let c = Config::default();
        assert_eq!(c.mem_queue_size, 10_000);
        assert_eq!(c.max_rdy_count, 2500);
        c.validate("defaults").expect("valid");
    }

    #[test]
    fn unknown_key_names_the_key_the_place_and_the_allowed_keys() {
        let err = Config::from_yaml("tcp_address: \"127.0.0.1:1\"\nmem_queu_size: 5\n", "x.yaml")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("x.yaml"), "{err}");
        assert!(err.contains("mem_queu_size"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("mem_queue_size"), "lists allowed keys: {err}");
    }

    #[test]
    fn bad_value_names_the_key_and_what_is_allowed() {
        let err = Config::from_yaml("msg_timeout: soon\n", "x.yaml")
            .expect_err("bad duration")
            .to_string();
        assert!(err.contains("msg_timeout"), "{err}");
        assert!(err.contains("e.g. 60s"), "{err}");
        let err = Config::from_yaml("mem_queue_size: -3\n", "x.yaml")
            .expect_err("negative")
            .to_string();
        assert!(err.contains("mem_queue_size"), "{err}");
    }

    #[test]
    fn shipped_gateway_yaml_is_valid_and_lists_every_setting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml");
        let text = std::fs::read_to_string(&path).expect("gateway.yaml");
        let c = Config::load(&path).expect("parses");
        c.validate("gateway.yaml").expect("valid");
        let defaults = serde_yaml::to_value(Config::default()).expect("serialise");
        let keys = defaults.as_mapping().expect("mapping");
        for key in keys.keys() {
            let key = key.as_str().expect("string key");
            let listed = text
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key}:")));
            assert!(listed, "gateway.yaml does not list `{key}`");
        }
        // Apart from the host name and the plugin list, the file's values are the defaults.
        let expected = Config {
            broadcast_address: c.broadcast_address.clone(),
            plugins: c.plugins.clone(),
            ..Config::default()
        };
        assert_eq!(
            serde_yaml::to_string(&c).expect("yaml"),
            serde_yaml::to_string(&expected).expect("yaml")
        );
        assert!(c.plugins.iter().any(|p| p.name == "line"));
    }

    #[test]
    fn validation_names_the_key() {
        let c = Config {
            max_deflate_level: 12,
            ..Config::default()
        };
        let err = c.validate("flags").expect_err("range").to_string();
        assert!(
            err.contains("max_deflate_level") && err.contains("between 1 and 9"),
            "{err}"
        );
        let c = Config {
            msg_timeout: Duration::from_secs(3600),
            ..Config::default()
        };
        assert!(c.validate("x").is_err());
    }
}

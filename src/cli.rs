//! The command line: `--config` plus the flags `config::Flags` derives from
//! the one list of settings; each flag given overrides the same key from
//! `gateway.yaml`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, Flags};

/// What `--version` prints, in nsqd's shape (`nsqd v1.3.0 (built w/go1.19.8)`).
pub const VERSION_LINE: &str = concat!(
    "nsq-gateway v",
    env!("CARGO_PKG_VERSION"),
    " (built w/",
    env!("NSQ_GATEWAY_RUSTC"),
    ")"
);

/// nsq-gateway: an NSQ-compatible message broker whose wire protocols are plugins.
#[derive(Debug, Parser, Default)]
// Go's flag package lets a later occurrence of a flag replace an earlier
// one; `args_override_self` does the same (repeatable flags still collect).
#[command(
    name = "nsq-gateway",
    about,
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// Path to the YAML configuration file.
    #[arg(long, value_name = "PATH", default_value = "gateway.yaml")]
    pub config: PathBuf,
    /// Print the version string and exit.
    #[arg(long, short = 'V')]
    pub version: bool,
    /// Every setting, each overriding the same key from the file.
    #[command(flatten)]
    pub settings: Flags,
}

/// nsqd is a Go program, whose flags take one dash or two (`-node-id=5`,
/// `--node-id 5`). Rewrites each single-dash form of one of our long flags
/// to the double-dash form clap parses; anything else is left alone.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let longs: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else {
                return arg;
            };
            let Some(rest) = text.strip_prefix('-') else {
                return arg;
            };
            if rest.starts_with('-') {
                return arg;
            }
            let name = rest.split_once('=').map_or(rest, |(n, _)| n);
            if longs.iter().any(|l| l == name) {
                OsString::from(format!("-{text}"))
            } else {
                arg
            }
        })
        .collect()
}

impl Cli {
    /// Loads the config file (a missing default `gateway.yaml` means all
    /// defaults; a missing explicit file is an error), applies the flags and
    /// validates the result.
    pub fn resolve(&self, explicit_config: bool) -> anyhow::Result<Config> {
        let mut config = if self.config.exists() || explicit_config {
            Config::load(&self.config)?
        } else {
            Config::default()
        };
        self.settings.apply(&mut config);
        config.validate(&format!("{} and flags", self.config.display()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        cli.settings.apply(&mut c);
        assert_eq!(c.mem_queue_size, 7);
        assert_eq!(c.msg_timeout, Duration::from_secs(5));
        assert!(!c.deflate);
        assert!(c.snappy);
    }

    #[test]
    fn repeated_flag_collects_and_replaces_the_yaml_list() {
        let cli = Cli::parse_from([
            "nsq-gateway",
            "--lookupd-tcp-address",
            "a:4160",
            "--lookupd-tcp-address=b:4160",
        ]);
        let mut c = Config::from_yaml("nsqlookupd_tcp_addresses: [\"z:1\"]\n", "t").expect("yaml");
        cli.settings.apply(&mut c);
        assert_eq!(c.nsqlookupd_tcp_addresses, ["a:4160", "b:4160"]);
    }

    #[test]
    fn every_yaml_key_but_plugins_has_a_flag() {
        let cmd = <Cli as clap::CommandFactory>::command();
        let flags: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect();
        let defaults = serde_yaml::to_value(Config::default()).expect("yaml");
        for key in defaults.as_mapping().expect("map").keys() {
            let key = key.as_str().expect("str");
            let flag = match key {
                "plugins" => continue,
                "nsqlookupd_tcp_addresses" => "lookupd-tcp-address".to_owned(),
                "auth_http_addresses" => "auth-http-address".to_owned(),
                "e2e_processing_latency_percentiles" => {
                    "e2e-processing-latency-percentile".to_owned()
                }
                k => k.replace('_', "-"),
            };
            assert!(flags.contains(&flag), "no flag --{flag} for `{key}`");
        }
    }

    #[test]
    fn go_style_single_dash_flags_are_accepted() {
        let args = normalize_args(
            [
                "nsq-gateway",
                "-node-id=5",
                "-mem-queue-size",
                "7",
                "-V",
                "-x",
            ]
            .map(OsString::from),
        );
        let cli = Cli::try_parse_from(&args[..5]).expect("parses");
        assert_eq!(cli.settings.node_id, Some(5));
        assert_eq!(cli.settings.mem_queue_size, Some(7));
        assert_eq!(args[5], "-x", "unknown single-dash words are left alone");
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value_as_in_go() {
        let cli = Cli::try_parse_from([
            "nsq-gateway",
            "--mem-queue-size=1",
            "--mem-queue-size=2",
            "--lookupd-tcp-address=a:1",
            "--lookupd-tcp-address=b:2",
        ])
        .expect("parses");
        assert_eq!(cli.settings.mem_queue_size, Some(2));
        assert_eq!(
            cli.settings.nsqlookupd_tcp_addresses,
            Some(vec!["a:1".to_owned(), "b:2".to_owned()])
        );
    }

    #[test]
    fn node_id_range_is_nsqds() {
        assert!(Cli::try_parse_from(["nsq-gateway", "--node-id", "1023"]).is_ok());
        assert!(Cli::try_parse_from(["nsq-gateway", "--node-id", "1024"]).is_err());
    }

    #[test]
    fn bad_flag_value_is_refused() {
        assert!(Cli::try_parse_from(["nsq-gateway", "--msg-timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["nsq-gateway", "--max-rdy-count", "-1"]).is_err());
    }
}

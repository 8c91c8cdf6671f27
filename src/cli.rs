//! The command line: `--config` plus the flags `config::Flags` derives from
//! the one list of settings; each flag given overrides the same key from
//! `gateway.yaml`.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, Flags};

/// nsq-gateway: an NSQ-compatible message broker whose wire protocols are plugins.
#[derive(Debug, Parser, Default)]
#[command(name = "nsq-gateway", version, about)]
pub struct Cli {
    /// Path to the YAML configuration file.
    #[arg(long, value_name = "PATH", default_value = "gateway.yaml")]
    pub config: PathBuf,
    /// Every setting, each overriding the same key from the file.
    #[command(flatten)]
    pub settings: Flags,
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
    fn bad_flag_value_is_refused() {
        assert!(Cli::try_parse_from(["nsq-gateway", "--msg-timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["nsq-gateway", "--max-rdy-count", "-1"]).is_err());
    }
}

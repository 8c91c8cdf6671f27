//! The plugin's settings: read from the `config:` map of its gateway.yaml
//! entry with the SDK's typed getters (an unknown key or a bad value stops
//! the gateway at load, naming the key), then fitted to the broker's limits
//! from `connect-info` at connect.

use nsq_sdk::{Config, Limits as BrokerLimits};

use crate::parse::Limits;

/// Per-connection settings; see plugins/resp/README.md for each key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The shared channel BRPOP/BLPOP consume from (`queue_channel`).
    pub queue_channel: String,
    /// Prefix of the per-connection ephemeral channel SUBSCRIBE uses
    /// (`pubsub_channel_prefix`); the client id and `#ephemeral` follow.
    pub pubsub_prefix: String,
    /// Longest bulk string in a request (`max_bulk_len`).
    pub max_bulk: usize,
    /// Most elements in one request array (`max_array_len`).
    pub max_array: usize,
    /// Most unprocessed request bytes held for one connection, including
    /// pipelined commands waiting behind a blocked BRPOP
    /// (`max_query_buffer`). Keeps a connection inside `limits.memory`.
    pub max_query_buffer: usize,
    /// Broker subscriptions per connection: SUBSCRIBE topics plus cached
    /// BRPOP queues (`max_subscriptions`, at most the gateway's
    /// `limits.max_subscriptions`, which is also the default).
    pub max_subscriptions: usize,
    /// Ready count of each SUBSCRIBE subscription (`subscribe_rdy`, at most
    /// the gateway's max RDY): how many messages the broker may push before
    /// the plugin FINs them.
    pub subscribe_rdy: u32,
    /// Messages per `publish-many` call and ids per `finish-many` /
    /// `requeue-many` (`publish_batch`, at most the gateway's
    /// `limits.max_batch`, which is also the default).
    pub publish_batch: usize,
    /// Ready count of a BRPOP's queue while more commands are pipelined
    /// behind it (`brpop_prefetch`, at most the gateway's max RDY): the
    /// messages fetched ahead serve the BRPOPs that follow without a
    /// broker round trip each.
    pub brpop_prefetch: u32,
    /// How long messages fetched ahead wait for a BRPOP before they are
    /// requeued (`brpop_idle_ms`, at most a quarter of the message timeout).
    pub brpop_idle_ms: u32,
    /// Whether `HELLO 3` switches to RESP3 (`resp3`, default true). Clients
    /// such as redis-py 8 open with HELLO 3 and do not fall back to RESP2.
    pub resp3: bool,
}

/// Ready count of a SUBSCRIBE unless configured.
const SUBSCRIBE_RDY: u32 = 256;
/// Messages a pipelined BRPOP fetches ahead unless configured.
const BRPOP_PREFETCH: u32 = 32;
/// How long fetched-ahead messages wait for a BRPOP unless configured.
const BRPOP_IDLE_MS: u32 = 500;
/// The ceiling (and default) of the settings the gateway's limits lower.
const MAX_LIMIT: usize = 65_536;
/// The ceiling of the ready counts, which the gateway's max RDY lowers.
const MAX_RDY: u32 = 1_000_000;

impl Settings {
    /// Reads every key (so the SDK can refuse unknown ones). The defaults
    /// of the keys the broker bounds are the bounds' ceilings, which
    /// [`Settings::fit`] lowers to the gateway's limits.
    pub fn read(config: &mut Config<'_>) -> Settings {
        let queue_channel = config.string("queue_channel", "resp");
        if queue_channel.is_empty() {
            config.invalid("config.queue_channel: must not be empty");
        }
        Settings {
            queue_channel,
            pubsub_prefix: config.string("pubsub_channel_prefix", "resp-sub-"),
            max_bulk: config.range("max_bulk_len", 1 << 20, 1, 1 << 30),
            max_array: config.range("max_array_len", 1024, 2, 1 << 20),
            max_query_buffer: config.range("max_query_buffer", 4 << 20, 1024, 1 << 30),
            max_subscriptions: config.range("max_subscriptions", MAX_LIMIT, 1, MAX_LIMIT),
            subscribe_rdy: config.range("subscribe_rdy", SUBSCRIBE_RDY, 1, MAX_RDY),
            publish_batch: config.range("publish_batch", MAX_LIMIT, 1, MAX_LIMIT),
            brpop_prefetch: config.range("brpop_prefetch", BRPOP_PREFETCH, 1, MAX_RDY),
            brpop_idle_ms: config.range("brpop_idle_ms", BRPOP_IDLE_MS, 1, 3_600_000),
            resp3: config.bool("resp3", true),
        }
    }

    /// Bounds what the broker bounds, so no call is refused for a setting.
    pub fn fit(mut self, limits: &BrokerLimits) -> Settings {
        let max_rdy = limits.max_rdy_count.max(1);
        let as_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        self.max_subscriptions = self
            .max_subscriptions
            .min(as_usize(limits.max_subscriptions));
        self.subscribe_rdy = self.subscribe_rdy.min(max_rdy);
        self.brpop_prefetch = self.brpop_prefetch.min(max_rdy);
        self.publish_batch = self.publish_batch.min(as_usize(limits.max_batch));
        // Fetched-ahead messages go back long before the broker would
        // time them out and redeliver them.
        self.brpop_idle_ms = self.brpop_idle_ms.min((limits.msg_timeout_ms / 4).max(1));
        self
    }

    /// The parser's view of the limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_bulk: self.max_bulk,
            max_array: self.max_array,
        }
    }
}

#[cfg(test)]
mod tests {
    use nsq_sdk::Config;
    use nsq_sdk::testing::{default_limits, validate};

    use super::*;
    use crate::session::Resp;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_config_over_defaults_and_fits_the_broker_limits() {
        let p = pairs(&[
            ("max_bulk_len", "100"),
            ("queue_channel", "workers"),
            ("subscribe_rdy", "99999"),
        ]);
        let mut c = Config::new(&p);
        let s = Settings::read(&mut c).fit(&default_limits());
        assert_eq!(c.check(), Ok(()));
        assert_eq!(s.max_bulk, 100);
        assert_eq!(s.max_array, 1024);
        assert_eq!(s.queue_channel, "workers");
        assert_eq!(s.subscribe_rdy, 2500, "the gateway's max RDY");
        assert_eq!(s.publish_batch, 256, "the gateway's max batch");
        assert_eq!(s.max_subscriptions, 16, "the gateway's max subscriptions");
        assert_eq!(s.brpop_prefetch, 32);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let e = validate::<Resp>(&[
            ("max_array_len", "nope"),
            ("max_query_buffer", "10"),
            ("queue_channel", ""),
            ("resp3", "maybe"),
            ("other", "x"),
        ])
        .expect_err("refused");
        let text = e.to_string();
        for key in [
            "max_array_len",
            "max_query_buffer",
            "queue_channel",
            "resp3",
            "other: unknown key",
        ] {
            assert!(text.contains(&format!("config.{key}")), "{key}: {text}");
        }
    }

    #[test]
    fn the_shipped_config_is_accepted() {
        // gateway.yaml's `resp` entry, key for key.
        let shipped = [
            ("queue_channel", "resp"),
            ("pubsub_channel_prefix", "resp-sub-"),
            ("max_bulk_len", "1048576"),
            ("max_array_len", "1024"),
            ("max_query_buffer", "4194304"),
            ("max_subscriptions", "16"),
            ("subscribe_rdy", "256"),
            ("publish_batch", "256"),
            ("resp3", "true"),
        ];
        assert_eq!(validate::<Resp>(&shipped), Ok(()));
        let more = [("brpop_prefetch", "64"), ("brpop_idle_ms", "100")];
        assert_eq!(validate::<Resp>(&more), Ok(()));
    }
}

//! The plugin's settings, read from the `config:` map of its gateway.yaml
//! entry (handed to `on-connect`). Unknown keys are ignored and values that
//! do not parse keep the default, so a typo never stops a connection.

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
    /// BRPOP queues (`max_subscriptions`); keep it <= `limits.max_subscriptions`.
    pub max_subscriptions: usize,
    /// Ready count of each SUBSCRIBE subscription (`subscribe_rdy`): how
    /// many messages the broker may push before the plugin FINs them.
    pub subscribe_rdy: u32,
    /// Messages per `publish-many` call for multi-value LPUSH/RPUSH
    /// (`publish_batch`); keep it <= `limits.max_batch`.
    pub publish_batch: usize,
    /// Whether `HELLO 3` switches to RESP3 (`resp3`, default true). Clients
    /// such as redis-py 8 open with HELLO 3 and do not fall back to RESP2.
    pub resp3: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_channel: "resp".into(),
            pubsub_prefix: "resp-sub-".into(),
            max_bulk: 1 << 20,
            max_array: 1024,
            max_query_buffer: 4 << 20,
            max_subscriptions: 16,
            subscribe_rdy: 256,
            publish_batch: 256,
            resp3: true,
        }
    }
}

impl Settings {
    /// Reads the config pairs over the defaults.
    pub fn from_pairs(pairs: &[(String, String)]) -> Settings {
        let mut s = Settings::default();
        for (key, value) in pairs {
            let n = value.trim().parse::<usize>().ok().filter(|&n| n > 0);
            match (key.as_str(), n) {
                ("queue_channel", _) if !value.is_empty() => s.queue_channel = value.clone(),
                ("pubsub_channel_prefix", _) => s.pubsub_prefix = value.clone(),
                ("max_bulk_len", Some(n)) => s.max_bulk = n,
                ("max_array_len", Some(n)) => s.max_array = n.max(2),
                ("max_query_buffer", Some(n)) => s.max_query_buffer = n.max(1024),
                ("max_subscriptions", Some(n)) => s.max_subscriptions = n,
                ("subscribe_rdy", Some(n)) => {
                    s.subscribe_rdy = u32::try_from(n).unwrap_or(u32::MAX).min(2500)
                }
                ("publish_batch", Some(n)) => s.publish_batch = n,
                ("resp3", _) => s.resp3 = value.trim() != "false",
                _ => {}
            }
        }
        s
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
    use super::*;

    #[test]
    fn reads_config_over_defaults() {
        let pairs = [
            ("max_bulk_len".to_string(), "100".to_string()),
            ("max_array_len".to_string(), "nope".to_string()),
            ("queue_channel".to_string(), "workers".to_string()),
            ("subscribe_rdy".to_string(), "99999".to_string()),
            ("other".to_string(), "x".to_string()),
        ];
        let s = Settings::from_pairs(&pairs);
        assert_eq!(s.max_bulk, 100);
        assert_eq!(s.max_array, 1024);
        assert_eq!(s.queue_channel, "workers");
        assert_eq!(s.subscribe_rdy, 2500);
    }
}

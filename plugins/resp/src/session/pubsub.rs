//! Pub/sub: SUBSCRIBE on an ephemeral channel per topic, UNSUBSCRIBE of one
//! or all topics, and the subscribe/unsubscribe confirmations.

use nsq_sdk::Host;

use super::{INVALID_TOPIC, PubSub, Resp, resp_error, topic_name};
use crate::reply;

impl Resp {
    /// `*3 <kind> <topic or nil> :<count>`.
    pub(super) fn confirm(&mut self, kind: &[u8], topic: Option<&[u8]>, count: usize) {
        reply::push(&mut self.out, 3, self.proto);
        reply::bulk(&mut self.out, kind);
        match topic {
            Some(t) => reply::bulk(&mut self.out, t),
            None => reply::nil_bulk(&mut self.out, self.proto),
        }
        reply::integer(&mut self.out, i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(super) fn subscribe(&mut self, host: &mut impl Host, topics: &[&[u8]]) {
        // New channels change what PUBLISH would answer.
        self.snapshots.clear();
        for &raw in topics {
            if self.topics.iter().any(|p| p.topic.as_bytes() == raw) {
                self.confirm(b"subscribe", Some(raw), self.topics.len());
                continue;
            }
            let Some(topic) = topic_name(raw) else {
                self.err(INVALID_TOPIC);
                continue;
            };
            if !self.make_room(host, &[]) {
                let text = format!(
                    "ERR at most {} subscriptions per connection (max_subscriptions)",
                    self.settings.max_subscriptions
                );
                self.err(&text);
                continue;
            }
            let channel = format!(
                "{}{}#ephemeral",
                self.settings.pubsub_prefix, self.client_id
            );
            let sub = match host.subscribe(topic, &channel) {
                Ok(sub) => sub,
                Err(e) => {
                    self.err(&resp_error(&e));
                    continue;
                }
            };
            if let Err(e) = host.set_ready(sub, self.settings.subscribe_rdy) {
                let _ = host.unsubscribe(sub);
                self.err(&resp_error(&e));
                continue;
            }
            self.topics.push(PubSub {
                topic: topic.to_string(),
                sub,
            });
            self.confirm(b"subscribe", Some(raw), self.topics.len());
        }
    }

    pub(super) fn unsubscribe_one(&mut self, host: &mut impl Host, topic: &[u8]) {
        if let Some(i) = self.topics.iter().position(|p| p.topic.as_bytes() == topic) {
            let ps = self.topics.remove(i);
            let _ = host.unsubscribe(ps.sub);
        }
        self.confirm(b"unsubscribe", Some(topic), self.topics.len());
    }

    pub(super) fn unsubscribe_all(&mut self, host: &mut impl Host, confirm: bool) {
        if self.topics.is_empty() && confirm {
            self.confirm(b"unsubscribe", None, 0);
        }
        while !self.topics.is_empty() {
            let ps = self.topics.remove(0);
            let _ = host.unsubscribe(ps.sub);
            if confirm {
                self.confirm(b"unsubscribe", Some(ps.topic.as_bytes()), self.topics.len());
            }
        }
    }
}

//! Host side of the WIT `broker` interface: every call checks the names
//! against the plugin's patterns and every length against its limits, then
//! delegates to `crate::broker`. A refused call is a WIT `broker-error`; a
//! flood of ACL refusals beyond `limits.max_denied` traps, ending the
//! connection.

use std::time::Duration;

use bytes::Bytes;

use super::bindings::nsq::gateway::broker::Host;
use super::bindings::nsq::gateway::types::{BrokerError as WitError, ChannelStats, TopicStats};
use super::state::{Fault, HostState};
use crate::broker::{BrokerError, Consumer, MSG_ID_LEN, MessageId};

/// Longest topic or channel name nsqd accepts (plus `#ephemeral`), checked
/// before anything is looked up.
const MAX_NAME_LEN: usize = 64;

/// A failed import: either the WIT error for the guest, or a trap. This is
/// the bindings' trappable error type for `broker-error`, so every import
/// returns `Result<_, Fail>` and `?` works on both kinds;
/// `types::Host::convert_broker_error` splits them.
pub(crate) enum Fail {
    Wit(WitError),
    Trap(wasmtime::Error),
}

impl From<BrokerError> for Fail {
    fn from(e: BrokerError) -> Self {
        Fail::Wit(match e {
            BrokerError::InvalidTopicName(_) => WitError::InvalidTopicName,
            BrokerError::InvalidChannelName(_) => WitError::InvalidChannelName,
            BrokerError::TopicNotFound => WitError::TopicNotFound,
            BrokerError::ChannelNotFound => WitError::ChannelNotFound,
            BrokerError::QueueFull => WitError::PublishFailed("queue full".into()),
            BrokerError::MessageNotInFlight => WitError::NotInFlight,
            BrokerError::TooManyConsumers => WitError::TooManyConsumers,
            BrokerError::Exiting => WitError::Exiting,
            BrokerError::Disk(e) => WitError::PublishFailed(e),
        })
    }
}

impl From<WitError> for Fail {
    fn from(e: WitError) -> Self {
        Fail::Wit(e)
    }
}

fn invalid(why: impl Into<String>) -> Fail {
    Fail::Wit(WitError::InvalidArgument(why.into()))
}

impl HostState {
    /// A refusal by the name patterns; counted by `refuse`.
    fn deny(&mut self, what: &str, name: &str, patterns: String) -> Fail {
        self.refuse(WitError::Denied(format!(
            "{what} {name:?} is not allowed (limits: {patterns})"
        )))
    }

    /// The plugin's topic patterns (gateway.yaml `limits.topics`).
    fn acl_topic(&mut self, topic: &str) -> Result<(), Fail> {
        if topic.len() > MAX_NAME_LEN + "#ephemeral".len() {
            return Err(Fail::Wit(WitError::InvalidTopicName));
        }
        if self.shared.topics.allows(topic) {
            return Ok(());
        }
        let patterns = self.shared.topics.describe();
        Err(self.deny("topic", topic, patterns))
    }

    /// The plugin's topic and channel patterns.
    fn acl_channel(&mut self, topic: &str, channel: &str) -> Result<(), Fail> {
        self.acl_topic(topic)?;
        if channel.len() > MAX_NAME_LEN + "#ephemeral".len() {
            return Err(Fail::Wit(WitError::InvalidChannelName));
        }
        if self.shared.channels.allows(channel) {
            return Ok(());
        }
        let patterns = self.shared.channels.describe();
        Err(self.deny("channel", channel, patterns))
    }

    /// A topic call: the patterns, then the auth grant's `publish`.
    fn allow_topic(&mut self, call: &str, topic: &str) -> Result<(), Fail> {
        self.acl_topic(topic)?;
        let checked = self.auth.check(call, topic, "");
        checked.map_err(|e| self.refuse(e))
    }

    /// A channel call: the patterns, then the auth grant's `subscribe`.
    fn allow_channel(&mut self, call: &str, topic: &str, channel: &str) -> Result<(), Fail> {
        self.acl_channel(topic, channel)?;
        let checked = self.auth.check(call, topic, channel);
        checked.map_err(|e| self.refuse(e))
    }

    /// Counts a refusal (the name patterns or the auth grant); past
    /// `limits.max_denied` the call traps, ending the connection.
    fn refuse(&mut self, e: WitError) -> Fail {
        self.denied = self.denied.saturating_add(1);
        if self.denied > self.shared.limits.max_denied {
            self.fault = Some(Fault::DeniedFlood);
            return Fail::Trap(wasmtime::format_err!(
                "plugin {:?} made more than {} denied broker calls",
                self.shared.name,
                self.shared.limits.max_denied
            ));
        }
        Fail::Wit(e)
    }

    fn check_body(&self, body: &[u8]) -> Result<(), Fail> {
        if body.is_empty() {
            return Err(invalid("a message body must not be empty"));
        }
        if body.len() > self.shared.limits.max_msg_size {
            return Err(Fail::Wit(WitError::PublishFailed(format!(
                "body of {} bytes is over the limit of {}",
                body.len(),
                self.shared.limits.max_msg_size
            ))));
        }
        Ok(())
    }

    /// A batch of 1..=`limits.max_batch` bodies or ids.
    fn check_batch(&self, len: usize) -> Result<(), Fail> {
        if len == 0 || len > self.shared.limits.max_batch {
            return Err(invalid(format!(
                "a batch holds 1..={} items, got {len}",
                self.shared.limits.max_batch
            )));
        }
        Ok(())
    }

    fn delay(&self, delay_ms: u32) -> Result<Duration, Fail> {
        let d = Duration::from_millis(u64::from(delay_ms));
        if d > self.server.max_delay {
            return Err(invalid(format!(
                "delay {delay_ms} ms is over the maximum {:?}",
                self.server.max_delay
            )));
        }
        Ok(d)
    }

    fn consumer(&mut self, sub: u32) -> Result<&mut Consumer, Fail> {
        let slot = usize::try_from(sub).ok().and_then(|i| self.subs.get_mut(i));
        slot.and_then(Option::as_mut)
            .ok_or(Fail::Wit(WitError::UnknownSubscription))
    }

    fn message_id(id: &str) -> Result<MessageId, Fail> {
        if id.len() != MSG_ID_LEN {
            return Err(invalid(format!(
                "a message id is {MSG_ID_LEN} characters, got {}",
                id.len()
            )));
        }
        MessageId::from_slice(id.as_bytes()).ok_or_else(|| invalid("malformed message id"))
    }

    fn existing_topic(&self, topic: &str) -> Result<std::sync::Arc<crate::broker::Topic>, Fail> {
        self.broker
            .existing_topic(topic)
            .ok_or(Fail::Wit(WitError::TopicNotFound))
    }

    fn existing_channel(
        &self,
        topic: &str,
        channel: &str,
    ) -> Result<std::sync::Arc<crate::broker::Channel>, Fail> {
        self.existing_topic(topic)?
            .existing_channel(channel)
            .ok_or(Fail::Wit(WitError::ChannelNotFound))
    }
}

impl Host for HostState {
    fn publish(&mut self, topic: String, body: Vec<u8>) -> Result<u32, Fail> {
        self.allow_topic("publish", &topic)?;
        self.check_body(&body)?;
        let channels = self
            .broker
            .topic(&topic)?
            .publish_counted(vec![Bytes::from(body)], Duration::ZERO)?;
        self.client.record_publish(&topic, 1);
        Ok(channels)
    }

    fn publish_many(&mut self, topic: String, bodies: Vec<Vec<u8>>) -> Result<u32, Fail> {
        self.allow_topic("publish-many", &topic)?;
        self.check_batch(bodies.len())?;
        for b in &bodies {
            self.check_body(b)?;
        }
        let count = bodies.len() as u64;
        let bodies = bodies.into_iter().map(Bytes::from).collect();
        let channels = self
            .broker
            .topic(&topic)?
            .publish_counted(bodies, Duration::ZERO)?;
        self.client.record_publish(&topic, count);
        Ok(channels)
    }

    fn publish_deferred(
        &mut self,
        topic: String,
        body: Vec<u8>,
        delay_ms: u32,
    ) -> Result<u32, Fail> {
        self.allow_topic("publish-deferred", &topic)?;
        self.check_body(&body)?;
        let delay = self.delay(delay_ms)?;
        let channels = self
            .broker
            .topic(&topic)?
            .publish_counted(vec![Bytes::from(body)], delay)?;
        self.client.record_publish(&topic, 1);
        Ok(channels)
    }

    fn subscribe(&mut self, topic: String, channel: String) -> Result<u32, Fail> {
        self.allow_channel("subscribe", &topic, &channel)?;
        let free = self.subs.iter().position(Option::is_none);
        let live = self.subs.iter().filter(|s| s.is_some()).count();
        if live >= self.shared.limits.max_subscriptions {
            return Err(invalid(format!(
                "at most {} subscriptions per connection",
                self.shared.limits.max_subscriptions
            )));
        }
        let consumer = self
            .broker
            .topic(&topic)?
            .channel(&channel)?
            .subscribe(self.client.clone())?;
        let index = match free {
            Some(i) => {
                self.subs[i] = Some(consumer);
                i
            }
            None => {
                self.subs.push(Some(consumer));
                self.subs.len() - 1
            }
        };
        u32::try_from(index).map_err(|_| invalid("too many subscriptions"))
    }

    fn set_ready(&mut self, sub: u32, count: u32) -> Result<(), Fail> {
        let max = self.server.max_rdy;
        if u64::from(count) > max {
            return Err(invalid(format!(
                "ready count {count} is over the maximum {max}"
            )));
        }
        self.consumer(sub)?.set_ready(u64::from(count));
        Ok(())
    }

    fn unsubscribe(&mut self, sub: u32) -> Result<(), Fail> {
        self.consumer(sub)?;
        if let Some(slot) = usize::try_from(sub).ok().and_then(|i| self.subs.get_mut(i)) {
            // Dropping the consumer requeues whatever it has in flight.
            *slot = None;
        }
        Ok(())
    }

    fn finish(&mut self, sub: u32, id: String) -> Result<(), Fail> {
        let id = Self::message_id(&id)?;
        self.consumer(sub)?.finish(&id)?;
        Ok(())
    }

    fn requeue(&mut self, sub: u32, id: String, delay_ms: u32) -> Result<(), Fail> {
        let id = Self::message_id(&id)?;
        let delay = self.delay(delay_ms)?;
        self.consumer(sub)?.requeue(&id, delay)?;
        Ok(())
    }

    fn finish_many(&mut self, sub: u32, ids: Vec<String>) -> Result<u32, Fail> {
        self.check_batch(ids.len())?;
        let ids = ids
            .iter()
            .map(|id| Self::message_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let consumer = self.consumer(sub)?;
        let done = ids.iter().filter(|id| consumer.finish(id).is_ok()).count();
        Ok(u32::try_from(done).unwrap_or(u32::MAX))
    }

    fn requeue_many(&mut self, sub: u32, ids: Vec<String>, delay_ms: u32) -> Result<u32, Fail> {
        self.check_batch(ids.len())?;
        let delay = self.delay(delay_ms)?;
        let ids = ids
            .iter()
            .map(|id| Self::message_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let consumer = self.consumer(sub)?;
        let done = ids
            .iter()
            .filter(|id| consumer.requeue(id, delay).is_ok())
            .count();
        Ok(u32::try_from(done).unwrap_or(u32::MAX))
    }

    fn touch(&mut self, sub: u32, id: String) -> Result<(), Fail> {
        let id = Self::message_id(&id)?;
        self.consumer(sub)?.touch(&id)?;
        Ok(())
    }

    fn create_topic(&mut self, topic: String) -> Result<(), Fail> {
        self.allow_topic("create-topic", &topic)?;
        self.broker.topic(&topic)?;
        Ok(())
    }

    fn delete_topic(&mut self, topic: String) -> Result<(), Fail> {
        self.allow_topic("delete-topic", &topic)?;
        self.broker.delete_topic(&topic)?;
        Ok(())
    }

    fn empty_topic(&mut self, topic: String) -> Result<(), Fail> {
        self.allow_topic("empty-topic", &topic)?;
        self.existing_topic(&topic)?.empty();
        Ok(())
    }

    fn pause_topic(&mut self, topic: String) -> Result<(), Fail> {
        self.allow_topic("pause-topic", &topic)?;
        self.existing_topic(&topic)?.pause();
        Ok(())
    }

    fn unpause_topic(&mut self, topic: String) -> Result<(), Fail> {
        self.allow_topic("unpause-topic", &topic)?;
        self.existing_topic(&topic)?.unpause();
        Ok(())
    }

    fn create_channel(&mut self, topic: String, channel: String) -> Result<(), Fail> {
        self.allow_channel("create-channel", &topic, &channel)?;
        self.broker.topic(&topic)?.channel(&channel)?;
        Ok(())
    }

    fn delete_channel(&mut self, topic: String, channel: String) -> Result<(), Fail> {
        self.allow_channel("delete-channel", &topic, &channel)?;
        self.existing_topic(&topic)?.delete_channel(&channel)?;
        Ok(())
    }

    fn empty_channel(&mut self, topic: String, channel: String) -> Result<(), Fail> {
        self.allow_channel("empty-channel", &topic, &channel)?;
        self.existing_channel(&topic, &channel)?.empty();
        Ok(())
    }

    fn pause_channel(&mut self, topic: String, channel: String) -> Result<(), Fail> {
        self.allow_channel("pause-channel", &topic, &channel)?;
        self.existing_channel(&topic, &channel)?.pause();
        Ok(())
    }

    fn unpause_channel(&mut self, topic: String, channel: String) -> Result<(), Fail> {
        self.allow_channel("unpause-channel", &topic, &channel)?;
        self.existing_channel(&topic, &channel)?.unpause();
        Ok(())
    }

    fn stats(&mut self, topic: Option<String>) -> Result<Vec<TopicStats>, Fail> {
        if let Some(t) = &topic {
            self.acl_topic(t)?;
        }
        if self.auth.required()
            && !self.auth.may_see(topic.as_deref().unwrap_or(""))
            && topic.is_some()
        {
            let e = self
                .auth
                .check("stats", topic.as_deref().unwrap_or_default(), "");
            if let Err(e) = e {
                return Err(self.refuse(e));
            }
        }
        let auth = &self.auth;
        let shared = &self.shared;
        let stats = self
            .broker
            .stats(topic.as_deref())
            .into_iter()
            .filter(|t| shared.topics.allows(&t.topic_name) && auth.may_see(&t.topic_name))
            .map(|t| TopicStats {
                name: t.topic_name,
                depth: t.depth,
                message_count: t.message_count,
                paused: t.paused,
                channels: t
                    .channels
                    .into_iter()
                    .filter(|c| shared.channels.allows(&c.channel_name))
                    .map(|c| ChannelStats {
                        name: c.channel_name,
                        depth: c.depth,
                        in_flight: c.in_flight_count,
                        deferred: c.deferred_count,
                        message_count: c.message_count,
                        requeue_count: c.requeue_count,
                        timeout_count: c.timeout_count,
                        clients: u32::try_from(c.client_count).unwrap_or(u32::MAX),
                        paused: c.paused,
                    })
                    .collect(),
            })
            .collect();
        Ok(stats)
    }

    fn auth_required(&mut self) -> wasmtime::Result<bool> {
        Ok(self.auth.required())
    }

    fn authenticate(&mut self, secret: String) -> Result<(), Fail> {
        if secret.len() > self.shared.limits.max_msg_size {
            return Err(invalid("the secret is over the message size limit"));
        }
        self.auth.start(secret).map_err(Fail::Wit)
    }
}

//! What a protocol may ask of the gateway: the [`Host`] trait, one method
//! per WIT import, and [`Wit`], its implementation with the real imports.
//! Protocols take `&mut impl Host`, so the same session code runs in the
//! component and in native unit tests against `testing::Recorder`.

use crate::bindings::nsq::gateway::{broker, connection};
use crate::{BrokerError, Subscription, TopicStats, WriteError};

/// The gateway as a protocol sees it: its own connection and the shared
/// topic/channel core. The methods mirror `wit/gateway.wit`, whose doc
/// comments are the reference for each.
pub trait Host {
    /// Queues bytes for the client; they are sent after the callback.
    fn write(&mut self, data: &[u8]) -> Result<(), WriteError>;
    /// Closes the connection once pending writes are sent.
    fn close(&mut self);
    /// Arms the connection's single timer (`None` disarms).
    fn set_timer(&mut self, delay_ms: Option<u32>);
    /// Milliseconds since the Unix epoch.
    fn now_ms(&mut self) -> u64;

    /// Publishes one message; returns how many channels received it.
    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<u32, BrokerError>;
    /// Publishes a batch atomically; returns the channel count.
    fn publish_many(&mut self, topic: &str, bodies: &[Vec<u8>]) -> Result<u32, BrokerError>;
    /// Publishes a message visible after `delay_ms`.
    fn publish_deferred(
        &mut self,
        topic: &str,
        body: &[u8],
        delay_ms: u32,
    ) -> Result<u32, BrokerError>;

    /// Subscribes to `topic`/`channel`, with a ready count of 0.
    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<Subscription, BrokerError>;
    /// Sets how many messages may be in flight on `sub`.
    fn set_ready(&mut self, sub: Subscription, count: u32) -> Result<(), BrokerError>;
    /// Drops `sub`; its in-flight messages are requeued.
    fn unsubscribe(&mut self, sub: Subscription) -> Result<(), BrokerError>;

    /// Acknowledges a delivered message.
    fn finish(&mut self, sub: Subscription, id: &str) -> Result<(), BrokerError>;
    /// Acknowledges a batch; returns how many were in flight.
    fn finish_many(&mut self, sub: Subscription, ids: &[String]) -> Result<u32, BrokerError>;
    /// Puts a delivered message back, visible after `delay_ms`.
    fn requeue(&mut self, sub: Subscription, id: &str, delay_ms: u32) -> Result<(), BrokerError>;
    /// Requeues a batch; returns how many were in flight.
    fn requeue_many(
        &mut self,
        sub: Subscription,
        ids: &[String],
        delay_ms: u32,
    ) -> Result<u32, BrokerError>;
    /// Resets a delivered message's timeout.
    fn touch(&mut self, sub: Subscription, id: &str) -> Result<(), BrokerError>;

    /// Topic and channel administration, as nsqd's HTTP API has it.
    fn admin(&mut self, op: Admin, topic: &str, channel: Option<&str>) -> Result<(), BrokerError>;

    /// Stats for one topic, or every topic the plugin may see.
    fn stats(&mut self, topic: Option<&str>) -> Result<Vec<TopicStats>, BrokerError>;

    /// Whether an auth server is configured.
    fn auth_required(&mut self) -> bool;
    /// Asks the auth server about `secret`; the answer comes as
    /// `Protocol::on_authenticated`.
    fn authenticate(&mut self, secret: &str) -> Result<(), BrokerError>;
}

/// The administrative broker calls, one enum instead of ten methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Create,
    Delete,
    Empty,
    Pause,
    Unpause,
}

/// The real imports: the host of a plugin running in the gateway.
pub struct Wit;

impl Host for Wit {
    fn write(&mut self, data: &[u8]) -> Result<(), WriteError> {
        connection::write(data)
    }

    fn close(&mut self) {
        connection::close();
    }

    fn set_timer(&mut self, delay_ms: Option<u32>) {
        connection::set_timer(delay_ms);
    }

    fn now_ms(&mut self) -> u64 {
        connection::now_ms()
    }

    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<u32, BrokerError> {
        broker::publish(topic, body)
    }

    fn publish_many(&mut self, topic: &str, bodies: &[Vec<u8>]) -> Result<u32, BrokerError> {
        broker::publish_many(topic, bodies)
    }

    fn publish_deferred(
        &mut self,
        topic: &str,
        body: &[u8],
        delay_ms: u32,
    ) -> Result<u32, BrokerError> {
        broker::publish_deferred(topic, body, delay_ms)
    }

    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<Subscription, BrokerError> {
        broker::subscribe(topic, channel)
    }

    fn set_ready(&mut self, sub: Subscription, count: u32) -> Result<(), BrokerError> {
        broker::set_ready(sub, count)
    }

    fn unsubscribe(&mut self, sub: Subscription) -> Result<(), BrokerError> {
        broker::unsubscribe(sub)
    }

    fn finish(&mut self, sub: Subscription, id: &str) -> Result<(), BrokerError> {
        broker::finish(sub, id)
    }

    fn finish_many(&mut self, sub: Subscription, ids: &[String]) -> Result<u32, BrokerError> {
        broker::finish_many(sub, ids)
    }

    fn requeue(&mut self, sub: Subscription, id: &str, delay_ms: u32) -> Result<(), BrokerError> {
        broker::requeue(sub, id, delay_ms)
    }

    fn requeue_many(
        &mut self,
        sub: Subscription,
        ids: &[String],
        delay_ms: u32,
    ) -> Result<u32, BrokerError> {
        broker::requeue_many(sub, ids, delay_ms)
    }

    fn touch(&mut self, sub: Subscription, id: &str) -> Result<(), BrokerError> {
        broker::touch(sub, id)
    }

    fn admin(&mut self, op: Admin, topic: &str, channel: Option<&str>) -> Result<(), BrokerError> {
        match (op, channel) {
            (Admin::Create, None) => broker::create_topic(topic),
            (Admin::Delete, None) => broker::delete_topic(topic),
            (Admin::Empty, None) => broker::empty_topic(topic),
            (Admin::Pause, None) => broker::pause_topic(topic),
            (Admin::Unpause, None) => broker::unpause_topic(topic),
            (Admin::Create, Some(c)) => broker::create_channel(topic, c),
            (Admin::Delete, Some(c)) => broker::delete_channel(topic, c),
            (Admin::Empty, Some(c)) => broker::empty_channel(topic, c),
            (Admin::Pause, Some(c)) => broker::pause_channel(topic, c),
            (Admin::Unpause, Some(c)) => broker::unpause_channel(topic, c),
        }
    }

    fn stats(&mut self, topic: Option<&str>) -> Result<Vec<TopicStats>, BrokerError> {
        broker::stats(topic)
    }

    fn auth_required(&mut self) -> bool {
        broker::auth_required()
    }

    fn authenticate(&mut self, secret: &str) -> Result<(), BrokerError> {
        broker::authenticate(secret)
    }
}

//! Topic and channel lifecycle events, for whoever mirrors the broker's
//! names elsewhere (the nsqlookupd registration in `cluster`). The broker
//! calls the listener synchronously on the path that created or deleted the
//! name, so a listener must only queue the event and return: it never
//! blocks a publish or a subscribe. Each event is also logged at info here.

use std::sync::Arc;

/// A topic or channel came or went. Ephemeral names are included, as nsqd
/// registers them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    TopicCreated(String),
    TopicDeleted(String),
    ChannelCreated { topic: String, channel: String },
    ChannelDeleted { topic: String, channel: String },
}

/// Receives `BrokerEvent`s. Must not block.
pub trait EventListener: Send + Sync {
    fn event(&self, event: BrokerEvent);
}

/// The broker's listener slot: set once, read on every event.
pub(crate) type ListenerSlot = std::sync::OnceLock<Arc<dyn EventListener>>;

/// Logs `event` at info, as nsqd logs each topic and channel created and
/// deleted, and hands it to the listener, if one is set.
pub(crate) fn emit(slot: &ListenerSlot, event: impl FnOnce() -> BrokerEvent) {
    let event = event();
    match &event {
        BrokerEvent::TopicCreated(topic) => tracing::info!(%topic, "topic created"),
        BrokerEvent::TopicDeleted(topic) => tracing::info!(%topic, "topic deleted"),
        BrokerEvent::ChannelCreated { topic, channel } => {
            tracing::info!(%topic, %channel, "channel created")
        }
        BrokerEvent::ChannelDeleted { topic, channel } => {
            tracing::info!(%topic, %channel, "channel deleted")
        }
    }
    if let Some(l) = slot.get() {
        l.event(event);
    }
}

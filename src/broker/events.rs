//! Topic and channel lifecycle events, for whoever mirrors the broker's
//! names elsewhere (the nsqlookupd registration in `cluster`). The broker
//! calls the listener synchronously on the path that created or deleted the
//! name, so a listener must only queue the event and return: it never
//! blocks a publish or a subscribe.

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

/// Hands `event` to the listener, if one is set.
pub(crate) fn emit(slot: &ListenerSlot, event: impl FnOnce() -> BrokerEvent) {
    if let Some(l) = slot.get() {
        l.event(event());
    }
}

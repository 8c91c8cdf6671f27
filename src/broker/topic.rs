//! A topic: accepts published messages and fans each one out to every
//! channel, sharing the body. While it has no channels, or is paused, it
//! keeps messages in its own bounded queue and hands them on later.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use super::channel::{Channel, ChannelStats};
use super::error::BrokerError;
use super::message::{IdGenerator, Message, MessageId, now_nanos};
use super::timers::{Timers, lock};
use super::{BrokerOptions, Shared, names};

/// A message held by the topic itself, with its due time if deferred.
struct Pending {
    msg: Message,
    due: Option<Instant>,
}

#[derive(Default)]
struct TopicState {
    /// Sorted so stats list channels in a stable order.
    channels: BTreeMap<String, Arc<Channel>>,
    pending: VecDeque<Pending>,
}

/// A topic.
pub struct Topic {
    name: String,
    ephemeral: bool,
    opts: Arc<BrokerOptions>,
    ids: Arc<IdGenerator>,
    timers: Arc<Timers>,
    /// Used to delete an ephemeral topic when its last channel goes.
    broker: Weak<Shared>,
    /// Channel map and pending queue. The lock also serialises publishes to
    /// this topic, which is what makes MPUB atomic across channels. It is
    /// taken before any channel lock, never after.
    state: Mutex<TopicState>,
    paused: AtomicBool,
    closed: AtomicBool,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
}

impl Topic {
    pub(crate) fn new(
        name: &str,
        opts: Arc<BrokerOptions>,
        ids: Arc<IdGenerator>,
        timers: Arc<Timers>,
        broker: Weak<Shared>,
    ) -> Self {
        Topic {
            name: name.to_owned(),
            ephemeral: names::is_ephemeral(name),
            opts,
            ids,
            timers,
            broker,
            state: Mutex::new(TopicState::default()),
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Publishes one message.
    pub fn publish(&self, body: Bytes) -> Result<MessageId, BrokerError> {
        let first = self.put(vec![body], None)?;
        Ok(MessageId::from_u64(first))
    }

    /// Publishes a batch atomically: all of it or, on error, none of it.
    pub fn publish_many(&self, bodies: Vec<Bytes>) -> Result<(), BrokerError> {
        self.put(bodies, None).map(|_| ())
    }

    /// Publishes one message that becomes deliverable after `delay`.
    pub fn publish_deferred(&self, body: Bytes, delay: Duration) -> Result<MessageId, BrokerError> {
        let due = (!delay.is_zero()).then(|| Instant::now() + delay);
        let first = self.put(vec![body], due)?;
        Ok(MessageId::from_u64(first))
    }

    fn put(&self, bodies: Vec<Bytes>, due: Option<Instant>) -> Result<u64, BrokerError> {
        let n = bodies.len();
        if n == 0 {
            return Ok(0);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Exiting);
        }
        let bytes: usize = bodies.iter().map(Bytes::len).sum();
        let mut st = lock(&self.state);
        let first = self.ids.next_block(n as u64);
        let timestamp = now_nanos();
        let msgs = bodies.into_iter().enumerate().map(|(i, body)| Message {
            id: MessageId::from_u64(first + i as u64),
            timestamp,
            attempts: 0,
            body,
        });
        if self.is_paused() || st.channels.is_empty() {
            if st.pending.len() + n > self.opts.mem_queue_size {
                return Err(BrokerError::QueueFull);
            }
            st.pending.extend(msgs.map(|msg| Pending { msg, due }));
        } else {
            let deferred = due.is_some();
            if !st.channels.values().all(|c| c.has_room(n, deferred)) {
                return Err(BrokerError::QueueFull);
            }
            let msgs: Vec<Message> = msgs.collect();
            let last = st.channels.len() - 1;
            for (i, ch) in st.channels.values().enumerate() {
                if i == last {
                    // The last channel takes the batch itself; the others
                    // got clones that share the bodies.
                    ch.put_batch(msgs.into_iter(), due);
                    break;
                }
                ch.put_batch(msgs.iter().cloned(), due);
            }
        }
        drop(st);
        self.message_count.fetch_add(n as u64, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(first)
    }

    /// Gets or creates a channel. A new channel receives what the topic held
    /// while it had none.
    pub fn channel(self: &Arc<Self>, name: &str) -> Result<Arc<Channel>, BrokerError> {
        if !names::is_valid_name(name) {
            return Err(BrokerError::InvalidChannelName(name.to_owned()));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Exiting);
        }
        let mut st = lock(&self.state);
        if let Some(ch) = st.channels.get(name) {
            return Ok(ch.clone());
        }
        let ch = Arc::new(Channel::new(
            name,
            self,
            self.opts.clone(),
            self.timers.clone(),
        ));
        st.channels.insert(name.to_owned(), ch.clone());
        if !self.is_paused() {
            Self::drain_pending(&mut st);
        }
        Ok(ch)
    }

    pub fn existing_channel(&self, name: &str) -> Option<Arc<Channel>> {
        lock(&self.state).channels.get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        lock(&self.state).channels.values().cloned().collect()
    }

    /// Deletes a channel, dropping its messages and ending its consumers.
    pub fn delete_channel(&self, name: &str) -> Result<(), BrokerError> {
        let ch = {
            let mut st = lock(&self.state);
            st.channels
                .remove(name)
                .ok_or(BrokerError::ChannelNotFound)?
        };
        ch.close();
        self.maybe_release();
        Ok(())
    }

    /// Removes an ephemeral channel whose last consumer left, unless a new
    /// consumer arrived in the meantime.
    pub(crate) fn remove_ephemeral_channel(&self, name: &str) {
        let removed = {
            let mut st = lock(&self.state);
            match st.channels.get(name) {
                Some(ch) if ch.client_count() == 0 => st.channels.remove(name),
                _ => None,
            }
        };
        if let Some(ch) = removed {
            ch.close();
            self.maybe_release();
        }
    }

    /// An ephemeral topic goes away with its last channel.
    fn maybe_release(&self) {
        if !self.ephemeral {
            return;
        }
        let empty = lock(&self.state).channels.is_empty();
        if empty && let Some(shared) = self.broker.upgrade() {
            shared.remove_topic_if(&self.name, self);
        }
    }

    /// Stops handing messages to channels; publishes keep queueing here.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Resumes delivery, handing over what queued while paused.
    pub fn unpause(&self) {
        let mut st = lock(&self.state);
        self.paused.store(false, Ordering::Release);
        Self::drain_pending(&mut st);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Drops the messages the topic itself holds (channels keep theirs).
    pub fn empty(&self) {
        lock(&self.state).pending.clear();
    }

    /// Messages held by the topic itself.
    pub fn depth(&self) -> usize {
        lock(&self.state).pending.len()
    }

    pub fn stats(&self) -> TopicStats {
        let (depth, channels) = {
            let st = lock(&self.state);
            (
                st.pending.len(),
                st.channels.values().cloned().collect::<Vec<_>>(),
            )
        };
        TopicStats {
            topic_name: self.name.clone(),
            depth: depth as u64,
            backend_depth: 0,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused: self.is_paused(),
            channels: channels.iter().map(|c| c.stats()).collect(),
        }
    }

    /// Marks the topic deleted and closes its channels.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let channels = {
            let mut st = lock(&self.state);
            st.pending.clear();
            std::mem::take(&mut st.channels)
        };
        for ch in channels.values() {
            ch.close();
        }
    }

    fn drain_pending(st: &mut TopicState) {
        if st.channels.is_empty() || st.pending.is_empty() {
            return;
        }
        let pending: Vec<Pending> = st.pending.drain(..).collect();
        for p in pending {
            for ch in st.channels.values() {
                ch.put_batch(std::iter::once(p.msg.clone()), p.due);
            }
        }
    }
}

/// A snapshot of a topic for `/stats` and metrics (nsqd's field names).
#[derive(Debug, Clone, Serialize)]
pub struct TopicStats {
    pub topic_name: String,
    pub depth: u64,
    pub backend_depth: u64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub channels: Vec<ChannelStats>,
}

//! A topic: accepts published messages and fans each one out to every
//! channel, sharing the body. While it has no channels, or is paused, it
//! keeps messages in its own queue (bounded memory, then its disk queue when
//! durable) and hands them on later.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use super::channel::{Channel, ChannelStats};
use super::deferred_store;
use super::diskqueue::DiskQueue;
use super::error::BrokerError;
use super::health::Health;
use super::message::{IdGenerator, Message, MessageId, now_nanos};
use super::timers::{Timers, lock};
use super::{BrokerOptions, Shared, names};

/// Messages moved from the topic's disk queue to its channels per step.
const DRAIN_CHUNK: usize = 1024;

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
    /// Overflow of `pending` for a durable topic (never deferred messages).
    disk: Option<DiskQueue>,
}

/// A topic.
pub struct Topic {
    name: String,
    ephemeral: bool,
    opts: Arc<BrokerOptions>,
    ids: Arc<IdGenerator>,
    timers: Arc<Timers>,
    /// Used to delete an ephemeral topic when its last channel goes, to
    /// open channels' disk queues and to save metadata.
    broker: Weak<Shared>,
    /// Disk failures are reported here.
    health: Arc<Health>,
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
        health: Arc<Health>,
        disk: Option<DiskQueue>,
    ) -> Self {
        Topic {
            name: name.to_owned(),
            ephemeral: names::is_ephemeral(name),
            opts,
            ids,
            timers,
            broker,
            health,
            state: Mutex::new(TopicState {
                disk,
                ..TopicState::default()
            }),
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
        let msgs: Vec<Message> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Message {
                id: MessageId::from_u64(first + i as u64),
                timestamp,
                attempts: 0,
                body,
            })
            .collect();
        if self.is_paused() || st.channels.is_empty() {
            self.hold(&mut st, msgs, due)?;
        } else {
            let deferred = due.is_some();
            if !st.channels.values().all(|c| c.has_room(n, deferred)) {
                return Err(BrokerError::QueueFull);
            }
            for ch in st.channels.values() {
                ch.put_batch(&msgs, due)?;
            }
        }
        drop(st);
        self.message_count.fetch_add(n as u64, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(first)
    }

    /// Keeps messages in the topic itself (no channels yet, or paused):
    /// memory first, then the disk queue. Deferred messages stay in memory.
    fn hold(
        &self,
        st: &mut TopicState,
        msgs: Vec<Message>,
        due: Option<Instant>,
    ) -> Result<(), BrokerError> {
        let n = msgs.len();
        let cap = if due.is_some() {
            self.opts.max_deferred()
        } else {
            self.opts.mem_queue_size
        };
        let in_memory = match (&st.disk, due) {
            (Some(d), None) if d.depth() > 0 => 0,
            (Some(_), None) => cap.saturating_sub(st.pending.len()).min(n),
            _ => {
                if st.pending.len() + n > cap {
                    return Err(BrokerError::QueueFull);
                }
                n
            }
        };
        if in_memory < n
            && let Some(d) = st.disk.as_mut()
        {
            if let Err(e) = d.put_batch(&msgs[in_memory..]) {
                self.health.set_error(format!("topic {}: {e}", self.name));
                return Err(BrokerError::Disk(e.to_string()));
            }
            self.health.set_ok();
        }
        st.pending.extend(
            msgs.into_iter()
                .take(in_memory)
                .map(|msg| Pending { msg, due }),
        );
        Ok(())
    }

    /// Gets or creates a channel. A new channel receives what the topic held
    /// while it had none.
    pub fn channel(self: &Arc<Self>, name: &str) -> Result<Arc<Channel>, BrokerError> {
        if let Some(ch) = self.existing_channel(name) {
            return Ok(ch);
        }
        let ch = self.channel_quiet(name)?;
        if !ch.is_ephemeral() {
            self.save_metadata();
        }
        Ok(ch)
    }

    /// Gets or creates a channel without saving metadata.
    pub(crate) fn channel_quiet(self: &Arc<Self>, name: &str) -> Result<Arc<Channel>, BrokerError> {
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
        let durable = st.disk.is_some() && !names::is_ephemeral(name);
        let disk = match self.broker.upgrade() {
            Some(shared) if durable => shared.open_queue(&Channel::queue_name(&self.name, name)),
            _ => None,
        };
        let ch = Arc::new(Channel::new(
            name,
            self,
            self.opts.clone(),
            self.timers.clone(),
            self.health.clone(),
            disk,
        ));
        st.channels.insert(name.to_owned(), ch.clone());
        drop(st);
        self.emit_channel(name, true);
        self.kick_drain();
        Ok(ch)
    }

    /// Saves the broker's metadata (no-op for a memory-only broker).
    pub(crate) fn save_metadata(&self) {
        if let Some(shared) = self.broker.upgrade() {
            shared.save_metadata();
        }
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
        self.emit_channel(name, false);
        if !ch.is_ephemeral() {
            self.save_metadata();
        }
        self.maybe_release();
        Ok(())
    }

    /// Tells the broker's event listener a channel came or went.
    fn emit_channel(&self, channel: &str, created: bool) {
        if let Some(shared) = self.broker.upgrade() {
            let (topic, channel) = (self.name.clone(), channel.to_owned());
            shared.emit(|| match created {
                true => super::BrokerEvent::ChannelCreated { topic, channel },
                false => super::BrokerEvent::ChannelDeleted { topic, channel },
            });
        }
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
            self.emit_channel(name, false);
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
    /// Saved in the metadata.
    pub fn pause(&self) {
        self.pause_quiet();
        if !self.ephemeral {
            self.save_metadata();
        }
    }

    pub(crate) fn pause_quiet(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Resumes delivery, handing over what queued while paused. Saved in the
    /// metadata.
    pub fn unpause(self: &Arc<Self>) {
        self.paused.store(false, Ordering::Release);
        self.kick_drain();
        if !self.ephemeral {
            self.save_metadata();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Drops the messages the topic itself holds (channels keep theirs).
    pub fn empty(&self) {
        let mut st = lock(&self.state);
        st.pending.clear();
        if let Some(d) = st.disk.as_mut()
            && let Err(e) = d.empty()
        {
            tracing::warn!(topic = %self.name, error = %e, "cannot empty disk queue");
        }
    }

    /// Messages held by the topic itself, in memory and on disk.
    pub fn depth(&self) -> usize {
        let st = lock(&self.state);
        st.pending.len() + st.disk.as_ref().map_or(0, |d| d.depth() as usize)
    }

    pub fn stats(&self) -> TopicStats {
        let (mem, backend, channels) = {
            let st = lock(&self.state);
            (
                st.pending.len() as u64,
                st.disk.as_ref().map_or(0, DiskQueue::depth),
                st.channels.values().cloned().collect::<Vec<_>>(),
            )
        };
        TopicStats {
            topic_name: self.name.clone(),
            depth: mem + backend,
            backend_depth: backend,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused: self.is_paused(),
            channels: channels.iter().map(|c| c.stats()).collect(),
        }
    }

    /// Marks the topic deleted, closes its channels and removes its files.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let (channels, disk) = {
            let mut st = lock(&self.state);
            st.pending.clear();
            (std::mem::take(&mut st.channels), st.disk.take())
        };
        for ch in channels.values() {
            ch.close();
        }
        if let Some(d) = disk
            && let Err(e) = d.delete()
        {
            tracing::warn!(topic = %self.name, error = %e, "cannot delete disk queue files");
        }
    }

    /// Hands what the topic holds to its channels: one chunk now, the rest
    /// from the broker's scanner task, chunk by chunk, so creating a channel
    /// or unpausing never blocks on a large backlog.
    fn kick_drain(self: &Arc<Self>) {
        if self.drain_step() {
            self.timers.schedule_drain(Arc::downgrade(self));
        }
    }

    /// Moves up to `DRAIN_CHUNK` held messages (memory first, then disk) to
    /// every channel. Returns true when more remain to be moved.
    pub(crate) fn drain_step(&self) -> bool {
        let mut st = lock(&self.state);
        let st = &mut *st;
        if st.channels.is_empty() || self.is_paused() {
            return false;
        }
        let mut now = Vec::new();
        let mut later = Vec::new();
        while now.len() + later.len() < DRAIN_CHUNK {
            match st.pending.pop_front() {
                Some(Pending { msg, due: None }) => now.push(msg),
                Some(Pending {
                    msg,
                    due: Some(due),
                }) => later.push((msg, due)),
                None => break,
            }
        }
        if let Some(d) = st.disk.as_mut() {
            while now.len() + later.len() < DRAIN_CHUNK {
                match d.pop() {
                    Some(m) => now.push(m),
                    None => break,
                }
            }
        }
        for ch in st.channels.values() {
            if let Err(e) = ch.put_batch(&now, None) {
                tracing::error!(channel = %ch.name(), error = %e, "messages lost handing over from topic");
            }
            for (msg, due) in &later {
                if let Err(e) = ch.put_batch(std::slice::from_ref(msg), Some(*due)) {
                    tracing::error!(channel = %ch.name(), error = %e, "message lost handing over from topic");
                }
            }
        }
        !st.pending.is_empty() || st.disk.as_ref().is_some_and(|d| d.depth() > 0)
    }

    /// Shutdown: writes what the topic and its channels hold in memory to
    /// disk and fsyncs. Returns how many messages were written.
    pub(crate) fn persist(&self) -> u64 {
        let channels = self.channels();
        let mut written: u64 = channels.iter().map(|c| c.persist()).sum();
        let mut st = lock(&self.state);
        let st = &mut *st;
        let Some(disk) = st.disk.as_mut() else {
            return written;
        };
        let (mut now_msgs, mut later) = (Vec::new(), Vec::new());
        let now_i = Instant::now();
        let now_ns = now_nanos();
        for p in st.pending.drain(..) {
            match p.due {
                Some(due) if due > now_i => {
                    let left = due.saturating_duration_since(now_i).as_nanos() as i64;
                    later.push((now_ns.saturating_add(left), p.msg));
                }
                _ => now_msgs.push(p.msg),
            }
        }
        match disk
            .put_batch(&now_msgs)
            .and_then(|()| disk.sync().map_err(Into::into))
        {
            Ok(()) => written += now_msgs.len() as u64,
            Err(e) => {
                tracing::error!(topic = %self.name, error = %e, "cannot write queued messages on shutdown")
            }
        }
        if let Some(dir) = self.opts.data_path.as_deref() {
            match deferred_store::save(dir, &self.name, &self.opts.disk, &later) {
                Ok(()) => written += later.len() as u64,
                Err(e) => {
                    tracing::error!(topic = %self.name, error = %e, "cannot save deferred messages")
                }
            }
        }
        written
    }

    /// Startup: takes back deferred messages a previous run saved for the
    /// topic itself.
    pub(crate) fn restore_deferred(&self) {
        let Some(dir) = self.opts.data_path.as_deref() else {
            return;
        };
        let mut st = lock(&self.state);
        if st.disk.is_none() {
            return;
        }
        let now = Instant::now();
        for (delay, msg) in deferred_store::take(dir, &self.name, &self.opts.disk) {
            let due = now + delay;
            if st.channels.is_empty() || self.is_paused() {
                st.pending.push_back(Pending {
                    msg,
                    due: Some(due),
                });
            } else {
                for ch in st.channels.values() {
                    if let Err(e) = ch.put_batch(std::slice::from_ref(&msg), Some(due)) {
                        tracing::error!(channel = %ch.name(), error = %e, "deferred message lost on restore");
                    }
                }
            }
        }
    }

    /// Applies the disk queues' `sync-timeout` to the topic and its channels.
    pub(crate) fn maybe_sync(&self, now: Instant) {
        for ch in self.channels() {
            ch.maybe_sync(now);
        }
        let mut st = lock(&self.state);
        if let Some(d) = st.disk.as_mut()
            && let Err(e) = d.maybe_sync(now)
        {
            drop(st);
            self.health
                .set_error(format!("topic {} sync: {e}", self.name));
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

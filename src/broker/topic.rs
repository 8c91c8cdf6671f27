//! A topic: accepts published messages and fans each one out to every
//! channel, sharing the body. While it has no channels, or is paused, it
//! keeps messages in its own queue (a [`SpillQueue`]: bounded memory, then
//! its disk queue when durable) and hands them on later. A message read from
//! the topic's disk queue is acked there only once every channel holds it,
//! so a crash at any point of that move delivers it at least once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::channel::Channel;
use super::deferred_store;
use super::diskqueue::DiskQueue;
use super::error::BrokerError;
use super::health::Health;
use super::message::{IdGenerator, Message, MessageId, now_nanos};
use super::spill::{Queued, SpillQueue};
use super::timers::Timers;
use super::{BrokerOptions, Shared, names};
use crate::sync::lock;

/// Messages moved from the topic's disk queue to its channels per step.
const DRAIN_CHUNK: usize = 1024;

mod stats;

pub use stats::TopicStats;

struct TopicState {
    /// Sorted so stats list channels in a stable order.
    channels: BTreeMap<String, Arc<Channel>>,
    /// Messages held while the topic has no channel or is paused.
    held: SpillQueue,
    /// Deferred messages held by the topic itself, with their due time
    /// (memory only, up to `max_deferred`).
    deferred: VecDeque<(Message, Instant)>,
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
    /// Channel map and held messages. The lock also serialises publishes to
    /// this topic, which is what makes MPUB atomic across channels. It is
    /// taken before any channel lock, never after.
    state: Mutex<TopicState>,
    paused: AtomicBool,
    closed: AtomicBool,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
    /// Test hook: `drain_step` stops dead at this step (see `DrainStep`),
    /// as a crash there would; 0 is off.
    #[cfg(test)]
    pub(crate) crash_at: std::sync::atomic::AtomicU8,
}

/// The points of a move from the topic to its channels where a crash is
/// injected in tests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DrainStep {
    /// Messages popped from the topic's queue, none handed on.
    Popped = 1,
    /// The first channel holds them, the others not yet.
    FirstChannel = 2,
    /// Every channel holds them; the topic's tickets are not acked.
    AllChannels = 3,
    /// The topic's tickets are acked (not yet persisted).
    Acked = 4,
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
            ids,
            timers,
            broker,
            health,
            state: Mutex::new(TopicState {
                channels: BTreeMap::new(),
                held: SpillQueue::new(opts.mem_queue_size, disk),
                deferred: VecDeque::new(),
            }),
            opts,
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
            #[cfg(test)]
            crash_at: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// True when the crash test hook is set to `step`.
    #[cfg(test)]
    fn crash_here(&self, step: DrainStep) -> bool {
        self.crash_at.load(Ordering::Relaxed) == step as u8
    }

    #[cfg(not(test))]
    fn crash_here(&self, _step: DrainStep) -> bool {
        false
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
        Ok(self.ids.id(first))
    }

    /// Publishes a batch atomically: all of it or, on error, none of it.
    pub fn publish_many(&self, bodies: Vec<Bytes>) -> Result<(), BrokerError> {
        self.put(bodies, None).map(|_| ())
    }

    /// Publishes one message that becomes deliverable after `delay`.
    pub fn publish_deferred(&self, body: Bytes, delay: Duration) -> Result<MessageId, BrokerError> {
        let due = (!delay.is_zero()).then(|| Instant::now() + delay);
        let first = self.put(vec![body], due)?;
        Ok(self.ids.id(first))
    }

    /// Publishes a batch atomically, deferred by `delay` if not zero, and
    /// returns how many channels it went to (for a paused topic, how many
    /// it will go to; 0 when the topic has no channel and keeps it).
    pub fn publish_counted(&self, bodies: Vec<Bytes>, delay: Duration) -> Result<u32, BrokerError> {
        let due = (!delay.is_zero()).then(|| Instant::now() + delay);
        self.put_counted(bodies, due).map(|(_, channels)| channels)
    }

    fn put(&self, bodies: Vec<Bytes>, due: Option<Instant>) -> Result<u64, BrokerError> {
        self.put_counted(bodies, due).map(|(first, _)| first)
    }

    /// The batch's first id sequence number, and its channel count.
    fn put_counted(
        &self,
        bodies: Vec<Bytes>,
        due: Option<Instant>,
    ) -> Result<(u64, u32), BrokerError> {
        let n = bodies.len();
        if n == 0 {
            return Ok((0, 0));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Exiting);
        }
        let bytes: usize = bodies.iter().map(Bytes::len).sum();
        let mut st = lock(&self.state);
        let channels = u32::try_from(st.channels.len()).unwrap_or(u32::MAX);
        let first = self.ids.next_block(n as u64);
        let timestamp = now_nanos();
        let msgs: Vec<Message> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Message {
                id: self.ids.id(first + i as u64),
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
        Ok((first, channels))
    }

    /// Keeps messages in the topic itself (no channels yet, or paused):
    /// the spill queue, or the deferred list (memory only) if `due`.
    fn hold(
        &self,
        st: &mut TopicState,
        msgs: Vec<Message>,
        due: Option<Instant>,
    ) -> Result<(), BrokerError> {
        let n = msgs.len();
        if let Some(due) = due {
            if st.deferred.len() + n > self.opts.max_deferred() {
                return Err(BrokerError::QueueFull);
            }
            st.deferred.extend(msgs.into_iter().map(|m| (m, due)));
            return Ok(());
        }
        if !st.held.has_room(n) {
            return Err(BrokerError::QueueFull);
        }
        match st.held.put_batch(&msgs) {
            Ok(true) => self.health.set_ok(),
            Ok(false) => {}
            Err(e) => {
                self.health.set_error(format!("topic {}: {e}", self.name));
                return Err(BrokerError::Disk(e.to_string()));
            }
        }
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
        let durable = st.held.is_durable() && !names::is_ephemeral(name);
        let qname = Channel::queue_name(&self.name, name);
        let (disk, log) = match self.broker.upgrade() {
            Some(shared) if durable => {
                (shared.open_queue(&qname), shared.open_deferred_log(&qname))
            }
            _ => (None, None),
        };
        let ch = Arc::new(Channel::new(
            name,
            self,
            self.opts.clone(),
            self.timers.clone(),
            self.health.clone(),
            disk,
            log,
        ));
        // Before anyone can publish to it: a new deferred record must not
        // be read back in place of an old one.
        ch.restore_deferred_log();
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

    /// Ends the pause `Broker::open` holds while restoring the channels,
    /// and hands over what the topic holds, to all of them.
    pub(crate) fn resume_after_restore(self: &Arc<Self>) {
        self.paused.store(false, Ordering::Release);
        self.kick_drain();
    }

    /// See `Broker::sync_disks`.
    #[cfg(test)]
    pub(crate) fn sync_disks(&self) {
        for ch in self.channels() {
            ch.sync_disk();
        }
        let _ = lock(&self.state).held.sync();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Drops the messages the topic itself holds (channels keep theirs).
    pub fn empty(&self) {
        let mut st = lock(&self.state);
        st.deferred.clear();
        if let Err(e) = st.held.empty() {
            tracing::warn!(topic = %self.name, error = %e, "cannot empty disk queue");
        }
    }

    /// Messages held by the topic itself, in memory and on disk.
    pub fn depth(&self) -> usize {
        let st = lock(&self.state);
        st.held.depth() as usize + st.deferred.len()
    }

    /// Marks the topic deleted, closes its channels and removes its files.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let (channels, deleted) = {
            let mut st = lock(&self.state);
            st.deferred.clear();
            (std::mem::take(&mut st.channels), st.held.delete())
        };
        for ch in channels.values() {
            ch.close();
        }
        if let Err(e) = deleted {
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

    /// Moves up to `DRAIN_CHUNK` held messages (deferred ones, then the
    /// spill queue: memory first, then disk) to every channel. The tickets
    /// of messages read from the topic's disk queue are acked only after
    /// every channel took them (a channel's `put_batch` has written them to
    /// the kernel, or fsynced them in `Always` mode), so the topic's
    /// persisted read position never passes a message the channels do not
    /// hold. Returns true when more remain to be moved.
    pub(crate) fn drain_step(&self) -> bool {
        let mut st = lock(&self.state);
        let st = &mut *st;
        if st.channels.is_empty() || self.is_paused() {
            return false;
        }
        let take = DRAIN_CHUNK.min(st.deferred.len());
        let later: Vec<(Message, Instant)> = st.deferred.drain(..take).collect();
        let mut now = Vec::new();
        let mut tickets = Vec::new();
        while now.len() + later.len() < DRAIN_CHUNK {
            match st.held.pop() {
                Some(q) => {
                    now.push(q.msg);
                    tickets.extend(q.ticket);
                }
                None => break,
            }
        }
        if self.crash_here(DrainStep::Popped) {
            return false;
        }
        let mut all_held = true;
        for (i, ch) in st.channels.values().enumerate() {
            if let Err(e) = ch.put_batch(&now, None) {
                all_held = false;
                tracing::error!(channel = %ch.name(), error = %e, "messages not handed over from topic; a restart hands them over again");
            }
            for (msg, due) in &later {
                if let Err(e) = ch.put_batch(std::slice::from_ref(msg), Some(*due)) {
                    tracing::error!(channel = %ch.name(), error = %e, "message lost handing over from topic");
                }
            }
            if i == 0 && self.crash_here(DrainStep::FirstChannel) {
                return false;
            }
        }
        if self.crash_here(DrainStep::AllChannels) {
            return false;
        }
        if all_held {
            for t in tickets {
                st.held.ack(t);
            }
        }
        if self.crash_here(DrainStep::Acked) {
            return false;
        }
        !st.held.is_empty() || !st.deferred.is_empty()
    }

    /// Shutdown: writes what the topic and its channels hold in memory to
    /// disk and fsyncs. Returns how many messages were written.
    pub(crate) fn persist(&self) -> u64 {
        let channels = self.channels();
        let mut written: u64 = channels.iter().map(|c| c.persist()).sum();
        let mut st = lock(&self.state);
        let st = &mut *st;
        if !st.held.is_durable() {
            return written;
        }
        let mut later = Vec::new();
        let now_i = Instant::now();
        let now_ns = now_nanos();
        let mut due_now = Vec::new();
        for (msg, due) in st.deferred.drain(..) {
            if due > now_i {
                let left = due.saturating_duration_since(now_i).as_nanos() as i64;
                later.push((now_ns.saturating_add(left), msg));
            } else {
                due_now.push(msg);
            }
        }
        // Messages that fell due while held are written with the memory part.
        st.held
            .requeue(due_now.into_iter().map(|msg| Queued { msg, ticket: None }));
        // A failed write keeps the messages in memory, like a channel's.
        match st.held.persist() {
            Ok(n) => written += n,
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
        if !st.held.is_durable() {
            return;
        }
        let now = Instant::now();
        for (delay, msg) in deferred_store::take(dir, &self.name, &self.opts.disk) {
            let due = now + delay;
            if st.channels.is_empty() || self.is_paused() {
                st.deferred.push_back((msg, due));
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
        if let Err(e) = st.held.maybe_sync(now) {
            drop(st);
            self.health
                .set_error(format!("topic {} sync: {e}", self.name));
        }
    }
}

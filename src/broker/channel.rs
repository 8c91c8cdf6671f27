//! A channel: one copy of every message of its topic, shared out among its
//! consumers. It holds the ready queue (a [`SpillQueue`]: memory, then its
//! disk queue once the memory part is full) and the deferred heap;
//! in-flight messages live in each `Consumer`, so FIN/REQ/TOUCH lock the
//! channel only to acknowledge a message that was read from disk. The
//! deferred heap and its durable forms are in [`deferred`].

mod deferred;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::BrokerOptions;
use super::client::{ClientInfo, ClientStats};
use super::consumer::Consumer;
use super::deferred_store::DeferredLog;
use super::diskqueue::{DiskQueue, Ticket};
use super::error::BrokerError;
use super::health::Health;
use super::latency::{E2eLatency, LatencySnapshot, LatencyWindow};
use super::message::{Message, now_nanos};
use super::spill::{Queued, SpillQueue};
use super::timers::Timers;
use super::topic::Topic;
use crate::sync::lock;
use deferred::Deferred;

struct ChannelState {
    /// The ready queue: memory up to `mem_queue_size`, then disk for a
    /// durable channel.
    ready: SpillQueue,
    deferred: BinaryHeap<Reverse<Deferred>>,
    /// The deferred messages on disk while running (a durable channel with
    /// `mem_queue_size: 0`), so a crash does not lose them.
    log: Option<DeferredLog>,
    clients: Vec<Arc<ClientInfo>>,
    seq: u64,
}

/// A channel of a topic.
pub struct Channel {
    name: String,
    topic_name: String,
    ephemeral: bool,
    opts: Arc<BrokerOptions>,
    /// Used to delete an ephemeral channel when its last consumer leaves.
    topic: Weak<Topic>,
    /// Where deferred messages ask to be woken.
    timers: Arc<Timers>,
    /// Disk failures are reported here.
    health: Arc<Health>,
    /// Queue, deferred heap and client list. Held for a push or a pop only.
    state: Mutex<ChannelState>,
    /// Consumers with spare RDY wait here; publishers `notify_one`.
    notify: Notify,
    paused: AtomicBool,
    /// Set when the channel is deleted; consumers then end their sessions.
    closed: AtomicBool,
    message_count: AtomicU64,
    requeue_count: AtomicU64,
    timeout_count: AtomicU64,
    /// Sum of the consumers' in-flight counts, for stats.
    in_flight: AtomicU64,
    /// Publish-to-FIN latencies over the E2E window, when percentiles are
    /// configured; consumers record into it without taking `state`.
    e2e: Option<LatencyWindow>,
}

impl Channel {
    pub(crate) fn new(
        name: &str,
        topic: &Arc<Topic>,
        opts: Arc<BrokerOptions>,
        timers: Arc<Timers>,
        health: Arc<Health>,
        disk: Option<DiskQueue>,
        log: Option<DeferredLog>,
    ) -> Self {
        let ready = SpillQueue::new(opts.mem_queue_size, disk);
        Channel {
            name: name.to_owned(),
            topic_name: topic.name().to_owned(),
            ephemeral: super::names::is_ephemeral(name),
            topic: Arc::downgrade(topic),
            timers,
            health,
            state: Mutex::new(ChannelState {
                ready,
                deferred: BinaryHeap::new(),
                log,
                clients: Vec::new(),
                seq: 0,
            }),
            notify: Notify::new(),
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            timeout_count: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            e2e: opts.e2e.as_ref().map(|o| LatencyWindow::new(o.window)),
            opts,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn topic_name(&self) -> &str {
        &self.topic_name
    }

    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Adds a consumer. Fails if the channel is deleted or already has
    /// `max-channel-consumers` consumers.
    pub fn subscribe(self: &Arc<Self>, client: Arc<ClientInfo>) -> Result<Consumer, BrokerError> {
        {
            let mut st = lock(&self.state);
            if self.closed.load(Ordering::Acquire) {
                return Err(BrokerError::Exiting);
            }
            let max = self.opts.max_channel_consumers;
            if max > 0 && st.clients.len() >= max {
                return Err(BrokerError::TooManyConsumers);
            }
            st.clients.push(client.clone());
        }
        client.subscribed.store(true, Ordering::Relaxed);
        Ok(Consumer::new(self.clone(), client, &self.opts))
    }

    /// Stops delivery; queued messages stay. Saved in the metadata.
    pub fn pause(&self) {
        self.pause_quiet();
        self.save_metadata();
    }

    pub(crate) fn pause_quiet(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Resumes delivery. Saved in the metadata.
    pub fn unpause(&self) {
        self.paused.store(false, Ordering::Release);
        self.wake_all();
        self.save_metadata();
    }

    fn save_metadata(&self) {
        if !self.ephemeral
            && let Some(topic) = self.topic.upgrade()
        {
            topic.save_metadata();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Drops every queued and deferred message, on disk too. Messages in
    /// flight stay with their consumers, who may still FIN them.
    pub fn empty(&self) {
        let mut st = lock(&self.state);
        st.deferred.clear();
        let emptied = match st.log.as_mut() {
            Some(log) => log.empty(),
            None => Ok(()),
        };
        if let Err(e) = emptied.and_then(|()| st.ready.empty()) {
            tracing::warn!(channel = %self.name, error = %e, "cannot empty disk queue");
        }
    }

    /// Messages ready for delivery, in memory and on disk.
    pub fn depth(&self) -> usize {
        lock(&self.state).ready.depth() as usize
    }

    pub fn stats(&self) -> ChannelStats {
        let (depth, backend, deferred_count, clients) = {
            let st = lock(&self.state);
            (
                st.ready.depth(),
                st.ready.backend_depth(),
                st.deferred.len(),
                st.clients.clone(),
            )
        };
        ChannelStats {
            channel_name: self.name.clone(),
            depth,
            backend_depth: backend,
            in_flight_count: self.in_flight.load(Ordering::Relaxed),
            deferred_count: deferred_count as u64,
            message_count: self.message_count.load(Ordering::Relaxed),
            requeue_count: self.requeue_count.load(Ordering::Relaxed),
            timeout_count: self.timeout_count.load(Ordering::Relaxed),
            client_count: clients.len() as u64,
            paused: self.is_paused(),
            clients: clients.iter().map(|c| c.stats()).collect(),
            e2e_processing_latency: match (&self.opts.e2e, self.latency_snapshot(now_nanos())) {
                (Some(o), Some(s)) => s.result(&o.percentiles),
                _ => E2eLatency::default(),
            },
        }
    }

    /// Records the FIN of a message published at `published` (ns since
    /// the epoch), if E2E percentiles are configured.
    pub(crate) fn record_latency(&self, published: i64) {
        if let Some(w) = &self.e2e {
            w.record(published, now_nanos());
        }
    }

    /// The E2E latency counts of the window as of `now`, if configured.
    pub(crate) fn latency_snapshot(&self, now: i64) -> Option<LatencySnapshot> {
        self.e2e.as_ref().map(|w| w.snapshot(now))
    }

    /// True when `n` more messages fit: in memory, or on disk for a durable
    /// channel (whose disk errors surface from `put_batch`).
    pub(crate) fn has_room(&self, n: usize, deferred: bool) -> bool {
        let st = lock(&self.state);
        if deferred {
            st.deferred.len() + n <= self.opts.max_deferred()
        } else {
            st.ready.has_room(n)
        }
    }

    /// Appends published messages (the topic checked `has_room`): to memory
    /// while it has room and the disk queue is empty, the rest to disk. `due`
    /// puts them on the deferred heap instead. A disk failure keeps none of
    /// the batch in this channel.
    pub(crate) fn put_batch(
        self: &Arc<Self>,
        msgs: &[Message],
        due: Option<Instant>,
    ) -> Result<(), BrokerError> {
        let n = msgs.len();
        if n == 0 {
            return Ok(());
        }
        match due {
            Some(due) if due > Instant::now() => self.defer_batch(msgs, due)?,
            _ => {
                let mut st = lock(&self.state);
                let spilled = st.ready.put_batch(msgs);
                drop(st);
                match spilled {
                    Ok(true) => self.health.set_ok(),
                    Ok(false) => {}
                    Err(e) => {
                        self.health
                            .set_error(format!("channel {}:{}: {e}", self.topic_name, self.name));
                        return Err(BrokerError::Disk(e.to_string()));
                    }
                }
                self.notify.notify_one();
            }
        }
        self.message_count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Puts messages back for immediate redelivery (REQ 0, timeout, a consumer
    /// leaving). Never refused, so nothing in flight is ever lost; the excess
    /// over `mem-queue-size` is bounded by the consumers' RDY.
    /// Messages read from disk keep their ticket, so the FIN of the next
    /// delivery acknowledges them.
    pub(crate) fn requeue_now(&self, items: impl IntoIterator<Item = Queued>) {
        if self.is_closed() {
            return;
        }
        lock(&self.state).ready.requeue(items);
        self.notify.notify_one();
    }

    /// Acknowledges messages read from this channel's disk queue (FINed):
    /// a restart after a crash no longer delivers them. Empties `tickets`.
    pub(crate) fn ack_all(&self, tickets: &mut Vec<Ticket>) {
        if tickets.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        for t in tickets.drain(..) {
            st.ready.ack(t);
        }
    }

    pub(crate) fn count_requeue(&self) {
        self.requeue_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_timeouts(&self, n: u64) {
        self.timeout_count.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_in_flight(&self, n: u64) {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub_in_flight(&self, n: u64) {
        self.in_flight.fetch_sub(n, Ordering::Relaxed);
    }

    /// Pops up to `max_count` messages, stopping once `max_bytes` of bodies
    /// are taken (at least one is always taken), with each one's disk ticket
    /// pushed to `tickets`; first acks (and empties) `acks`, the consumer's
    /// finished tickets, under the same lock. Passes the wake-up on if
    /// messages remain, so another waiting consumer gets them.
    pub(crate) fn pop_batch(
        &self,
        max_count: usize,
        max_bytes: usize,
        out: &mut Vec<Message>,
        tickets: &mut Vec<Option<Ticket>>,
        acks: &mut Vec<Ticket>,
    ) -> usize {
        let (taken, more) = {
            let mut st = lock(&self.state);
            for t in acks.drain(..) {
                st.ready.ack(t);
            }
            let mut taken = 0;
            let mut bytes = 0;
            while taken < max_count && (taken == 0 || bytes < max_bytes) {
                match st.ready.pop() {
                    Some(q) => {
                        bytes += q.msg.body.len();
                        out.push(q.msg);
                        tickets.push(q.ticket);
                        taken += 1;
                    }
                    None => break,
                }
            }
            (taken, !st.ready.is_empty())
        };
        if more {
            self.notify.notify_one();
        }
        taken
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Wakes every waiting consumer (unpause, deferred messages due, delete).
    fn wake_all(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Unregisters a client; returns how many remain.
    pub(crate) fn remove_client(&self, client_id: u64) -> usize {
        let mut st = lock(&self.state);
        st.clients.retain(|c| c.id != client_id);
        st.clients.len()
    }

    /// Called when the last consumer of an ephemeral channel has left.
    pub(crate) fn release_ephemeral(&self) {
        if let Some(topic) = self.topic.upgrade() {
            topic.remove_ephemeral_channel(&self.name);
        }
    }

    /// Marks the channel deleted, drops its messages (and disk files) and
    /// wakes its consumers so their sessions end.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let deleted = {
            let mut st = lock(&self.state);
            st.deferred.clear();
            let log = st.log.take().map_or(Ok(()), DeferredLog::delete);
            log.and_then(|()| st.ready.delete())
        };
        if let Err(e) = deleted {
            tracing::warn!(channel = %self.name, error = %e, "cannot delete disk queue files");
        }
        self.wake_all();
    }

    /// The channel's disk queue name: `topic:channel` (`:` never occurs in
    /// a valid name).
    pub(crate) fn queue_name(topic: &str, channel: &str) -> String {
        format!("{topic}:{channel}")
    }

    /// Applies the disk queue's `sync-timeout`.
    pub(crate) fn maybe_sync(&self, now: Instant) {
        let mut st = lock(&self.state);
        let log = match st.log.as_mut() {
            Some(log) => log.maybe_sync(now),
            None => Ok(()),
        };
        if let Err(e) = log.and_then(|()| st.ready.maybe_sync(now)) {
            drop(st);
            self.health.set_error(format!(
                "channel {}:{} sync: {e}",
                self.topic_name, self.name
            ));
        }
    }

    /// See `Broker::sync_disks`.
    #[cfg(test)]
    pub(crate) fn sync_disk(&self) {
        let mut st = lock(&self.state);
        if let Some(log) = st.log.as_mut() {
            let _ = log.sync();
        }
        let _ = st.ready.sync();
    }

    pub(crate) fn client_count(&self) -> usize {
        lock(&self.state).clients.len()
    }
}

/// A snapshot of a channel for `/stats` and metrics (nsqd's field names).
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStats {
    pub channel_name: String,
    pub depth: u64,
    pub backend_depth: u64,
    pub in_flight_count: u64,
    pub deferred_count: u64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub client_count: u64,
    pub paused: bool,
    pub clients: Vec<ClientStats>,
    /// Publish-to-FIN percentiles over the E2E window (nsqd's field).
    pub e2e_processing_latency: E2eLatency,
}

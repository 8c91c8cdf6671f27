//! One subscriber of a channel, owned by its connection task. It holds that
//! client's RDY count and its in-flight messages with their deadlines, so
//! FIN/REQ/TOUCH touch only connection-local state: the disk tickets of
//! finished messages are collected and acked under the channel lock the next
//! take holds anyway (or when `ACK_BATCH` are pending, at RDY, or on drop). Dropping
//! it puts every message still in flight back on the channel, tickets
//! included.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::BrokerOptions;
use super::channel::Channel;
use super::client::ClientInfo;
use super::diskqueue::Ticket;
use super::error::BrokerError;
use super::message::{Message, MessageId};
use super::spill::Queued;

/// A cheap hasher for message ids. Ids are hex renderings of a counter, so
/// their fast-changing digits are the last bytes: they are read big-endian
/// (last byte lowest), multiplied, and the high half is folded down, because
/// the table's bucket index comes from the low bits and a multiply alone
/// never carries high bits down. Only ids the broker issued are inserted, so
/// a client cannot grow collisions.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_be_bytes(buf);
        }
    }
}

/// Finished tickets held before one channel lock acks them all. Until then
/// a crash redelivers them (at least once), never loses them.
const ACK_BATCH: usize = 256;

struct InFlight {
    msg: Message,
    /// The channel's disk ticket if the message was read from disk: acked by
    /// FIN, kept through requeues, so a crash before the FIN redelivers it.
    ticket: Option<Ticket>,
    delivered: Instant,
    deadline: Instant,
}

impl InFlight {
    fn into_queued(self) -> Queued {
        Queued {
            msg: self.msg,
            ticket: self.ticket,
        }
    }
}

/// A consumer of one channel.
pub struct Consumer {
    channel: Arc<Channel>,
    client: Arc<ClientInfo>,
    in_flight: HashMap<MessageId, InFlight, BuildHasherDefault<IdHasher>>,
    ready: u64,
    msg_timeout: Duration,
    /// TOUCH never extends a message past delivery + this.
    max_msg_timeout: Duration,
    /// No in-flight deadline is earlier than this; the in-flight map is only
    /// scanned when it passes, so timeouts cost nothing per message.
    next_scan: Option<Instant>,
    /// Scratch for the tickets of `take_messages`, reused across calls.
    tickets: Vec<Option<Ticket>>,
    /// Disk tickets of finished messages not yet acked on the channel (at
    /// most `ACK_BATCH`), so a FIN takes no lock.
    acks: Vec<Ticket>,
}

impl Consumer {
    pub(crate) fn new(
        channel: Arc<Channel>,
        client: Arc<ClientInfo>,
        opts: &BrokerOptions,
    ) -> Self {
        Consumer {
            channel,
            client,
            in_flight: HashMap::default(),
            ready: 0,
            msg_timeout: opts.msg_timeout,
            max_msg_timeout: opts.max_msg_timeout,
            next_scan: None,
            tickets: Vec::new(),
            acks: Vec::new(),
        }
    }

    pub fn client(&self) -> &Arc<ClientInfo> {
        &self.client
    }

    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// Sets how many messages may be in flight at once (RDY).
    /// Also acks the pending finished tickets: RDY changes are rare, and
    /// CLS (RDY 0) then leaves nothing pending while the session winds down.
    pub fn set_ready(&mut self, count: u64) {
        self.channel.ack_all(&mut self.acks);
        self.ready = count;
        self.client.ready_count.store(count, Ordering::Relaxed);
    }

    pub fn ready(&self) -> u64 {
        self.ready
    }

    /// Sets the in-flight timeout for messages delivered from now on.
    pub fn set_msg_timeout(&mut self, timeout: Duration) {
        self.msg_timeout = timeout;
    }

    /// True when RDY allows another delivery and the channel still exists.
    /// A paused channel still counts as ready: the consumer keeps waiting and
    /// `take_messages` returns nothing until it is unpaused.
    pub fn is_ready(&self) -> bool {
        (self.in_flight.len() as u64) < self.ready && !self.channel.is_closed()
    }

    /// True once the channel was deleted: the session should end.
    pub fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Resolves when the channel may have messages for this consumer.
    pub fn wait(&self) -> Notified<'_> {
        self.channel.notified()
    }

    /// Pops up to `max_count` messages (fewer if RDY allows fewer), stopping
    /// once `max_bytes` of bodies are taken but always taking at least one;
    /// marks them in flight and bumps their attempts. Returns how many were
    /// appended to `out`.
    pub fn take_messages(
        &mut self,
        max_count: usize,
        max_bytes: usize,
        out: &mut Vec<Message>,
    ) -> usize {
        if self.channel.is_paused() || !self.is_ready() {
            return 0;
        }
        let room = self.ready.saturating_sub(self.in_flight.len() as u64);
        let want = max_count.min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return 0;
        }
        let start = out.len();
        self.tickets.clear();
        let taken = self
            .channel
            .pop_batch(want, max_bytes, out, &mut self.tickets, &mut self.acks);
        if taken == 0 {
            return 0;
        }
        let now = Instant::now();
        let deadline = now + self.msg_timeout;
        for (msg, ticket) in out[start..].iter_mut().zip(self.tickets.drain(..)) {
            msg.attempts = msg.attempts.saturating_add(1);
            let old = self.in_flight.insert(
                msg.id,
                InFlight {
                    msg: msg.clone(),
                    ticket,
                    delivered: now,
                    deadline,
                },
            );
            // The same id twice (a duplicate read after a crash, still in
            // flight): the older copy is done once this one is.
            if let Some(old) = old {
                self.channel.sub_in_flight(1);
                self.acks.extend(old.ticket);
            }
        }
        self.next_scan = Some(self.next_scan.map_or(deadline, |s| s.min(deadline)));
        self.channel.add_in_flight(taken as u64);
        self.client
            .message_count
            .fetch_add(taken as u64, Ordering::Relaxed);
        self.sync_in_flight_count();
        taken
    }

    /// Acknowledges a message (FIN).
    pub fn finish(&mut self, id: &MessageId) -> Result<(), BrokerError> {
        let entry = self
            .in_flight
            .remove(id)
            .ok_or(BrokerError::MessageNotInFlight)?;
        self.channel.record_latency(entry.msg.timestamp);
        if let Some(t) = entry.ticket {
            self.acks.push(t);
            if self.acks.len() >= ACK_BATCH {
                self.channel.ack_all(&mut self.acks);
            }
        }
        self.channel.sub_in_flight(1);
        self.client.finish_count.fetch_add(1, Ordering::Relaxed);
        self.sync_in_flight_count();
        Ok(())
    }

    /// Gives a message back (REQ), for redelivery now or after `delay`.
    pub fn requeue(&mut self, id: &MessageId, delay: Duration) -> Result<(), BrokerError> {
        let entry = self
            .in_flight
            .remove(id)
            .ok_or(BrokerError::MessageNotInFlight)?;
        self.channel.sub_in_flight(1);
        self.channel.count_requeue();
        self.client.requeue_count.fetch_add(1, Ordering::Relaxed);
        self.sync_in_flight_count();
        if delay.is_zero() {
            self.channel.requeue_now([entry.into_queued()]);
        } else {
            self.channel
                .requeue_deferred(entry.into_queued(), Instant::now() + delay);
        }
        Ok(())
    }

    /// Restarts a message's timeout (TOUCH), never beyond `max-msg-timeout`
    /// after its delivery.
    pub fn touch(&mut self, id: &MessageId) -> Result<(), BrokerError> {
        let entry = self
            .in_flight
            .get_mut(id)
            .ok_or(BrokerError::MessageNotInFlight)?;
        let limit = entry.delivered + self.max_msg_timeout;
        entry.deadline = (Instant::now() + self.msg_timeout).min(limit);
        Ok(())
    }

    /// When `expire_timeouts` next has work to do, if anything is in flight.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_empty() {
            None
        } else {
            self.next_scan
        }
    }

    /// Requeues every message whose deadline has passed; returns how many.
    pub fn expire_timeouts(&mut self, now: Instant) -> usize {
        if self.next_scan.is_none_or(|s| s > now) {
            return 0;
        }
        let expired: Vec<MessageId> = self
            .in_flight
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut msgs = Vec::with_capacity(expired.len());
        for id in &expired {
            if let Some(e) = self.in_flight.remove(id) {
                msgs.push(e.into_queued());
            }
        }
        self.next_scan = self.in_flight.values().map(|e| e.deadline).min();
        let n = msgs.len();
        if n > 0 {
            self.channel.sub_in_flight(n as u64);
            self.channel.count_timeouts(n as u64);
            self.channel.requeue_now(msgs);
            self.sync_in_flight_count();
        }
        n
    }

    fn sync_in_flight_count(&self) {
        self.client
            .in_flight_count
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.channel.ack_all(&mut self.acks);
        let n = self.in_flight.len() as u64;
        if n > 0 {
            let msgs: Vec<Queued> = self
                .in_flight
                .drain()
                .map(|(_, e)| e.into_queued())
                .collect();
            self.channel.sub_in_flight(n);
            self.channel.requeue_now(msgs);
        }
        self.client.in_flight_count.store(0, Ordering::Relaxed);
        self.client.ready_count.store(0, Ordering::Relaxed);
        let remaining = self.channel.remove_client(self.client.id);
        if remaining == 0 && self.channel.is_ephemeral() {
            self.channel.release_ephemeral();
        }
    }
}

#[cfg(test)]
mod hasher_tests {
    use super::*;
    use crate::broker::MessageId;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn consecutive_ids_spread_over_buckets() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let mask = 4095u64;
        let mut buckets = std::collections::HashSet::new();
        let start = 0x18ea_0df9_703b_7d0f_u64;
        for i in 0..4096 {
            let id = MessageId::from_u64(start + i);
            buckets.insert(build.hash_one(id) & mask);
        }
        // A uniform hash fills about 63% of 4096 buckets with 4096 keys.
        assert!(buckets.len() > 2400, "only {} buckets used", buckets.len());
    }
}

//! A channel's deferred messages (DPUB, REQ with a delay): the heap ordered
//! by due time, moving due messages to the ready queue, and their durable
//! forms: the deferred log while running, the deferred store written on
//! shutdown (with the ready queue), and taking both back at startup.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::sync::Arc;

use tokio::time::Instant;

use super::Channel;
use crate::broker::deferred_store;
use crate::broker::diskqueue::Ticket;
use crate::broker::error::BrokerError;
use crate::broker::message::{Message, now_nanos};
use crate::broker::spill::Queued;
use crate::sync::lock;

/// One deferred message on the heap; ordered by due time, then by arrival.
pub(crate) struct Deferred {
    due: Instant,
    seq: u64,
    item: Queued,
    /// Its record in the channel's `DeferredLog`, acked once it is due and
    /// written to the ready queue.
    log_ticket: Option<Ticket>,
}

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}
impl Eq for Deferred {}
impl PartialOrd for Deferred {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deferred {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl Channel {
    /// The deferred half of `put_batch`: records `msgs` in the deferred log
    /// (if any) and pushes them on the heap, due at `due`.
    pub(super) fn defer_batch(
        self: &Arc<Self>,
        msgs: &[Message],
        due: Instant,
    ) -> Result<(), BrokerError> {
        {
            let mut st = lock(&self.state);
            let st = &mut *st;
            let mut tickets = Vec::new();
            if let Some(log) = st.log.as_mut() {
                let at = wall_clock(due);
                let items: Vec<(i64, &Message)> = msgs.iter().map(|m| (at, m)).collect();
                match log.record(&items) {
                    Ok(t) => tickets = t,
                    Err(e) => {
                        self.health.set_error(format!(
                            "channel {}:{} deferred: {e}",
                            self.topic_name, self.name
                        ));
                        return Err(BrokerError::Disk(e.to_string()));
                    }
                }
            }
            let mut tickets = tickets.into_iter();
            for msg in msgs {
                st.seq += 1;
                st.deferred.push(Reverse(Deferred {
                    due,
                    seq: st.seq,
                    item: Queued {
                        msg: msg.clone(),
                        ticket: None,
                    },
                    log_ticket: tickets.next(),
                }));
            }
        }
        self.timers.schedule(due, Arc::downgrade(self));
        Ok(())
    }

    /// Defers one message until `due` (REQ with a delay).
    pub(crate) fn requeue_deferred(self: &Arc<Self>, item: Queued, due: Instant) {
        if self.is_closed() {
            return;
        }
        {
            let mut st = lock(&self.state);
            let st = &mut *st;
            let mut item = item;
            let mut log_ticket = None;
            if let Some(log) = st.log.as_mut() {
                match log.record(&[(wall_clock(due), &item.msg)]) {
                    // Held by the log now: done in the ready queue.
                    Ok(t) => {
                        log_ticket = t.first().copied();
                        if let Some(rt) = item.ticket.take() {
                            st.ready.ack(rt);
                        }
                    }
                    // Its ready-queue ticket stays: a crash redelivers it
                    // from there.
                    Err(e) => {
                        tracing::warn!(channel = %self.name, error = %e, "cannot write a deferred message to disk")
                    }
                }
            }
            st.seq += 1;
            st.deferred.push(Reverse(Deferred {
                due,
                seq: st.seq,
                item,
                log_ticket,
            }));
        }
        self.timers.schedule(due, Arc::downgrade(self));
    }

    /// Moves deferred messages whose time has come to the ready queue.
    pub(crate) fn process_deferred(&self, now: Instant) {
        let moved = {
            let mut st = lock(&self.state);
            let st = &mut *st;
            let mut moved = 0;
            let (mut logged, mut log_tickets) = (Vec::new(), Vec::new());
            while st.deferred.peek().is_some_and(|Reverse(d)| d.due <= now) {
                if let Some(Reverse(d)) = st.deferred.pop() {
                    match d.log_ticket {
                        Some(t) => {
                            logged.push(d.item.msg);
                            log_tickets.push(t);
                        }
                        None => st.ready.requeue([d.item]),
                    }
                    moved += 1;
                }
            }
            // Written to the ready queue before the log forgets them, so a
            // crash in between delivers them at least once.
            if !logged.is_empty() {
                match st.ready.put_batch(&logged) {
                    Ok(_) => {
                        if let Some(log) = st.log.as_mut() {
                            for t in log_tickets {
                                log.ack(t);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(channel = %self.name, error = %e, "cannot write due deferred messages to disk; kept in memory and in the deferred log");
                        st.ready
                            .requeue(logged.into_iter().map(|msg| Queued { msg, ticket: None }));
                    }
                }
            }
            moved
        };
        if moved > 0 {
            self.wake_all();
        }
    }

    /// Shutdown: writes the memory queue and the deferred heap to disk and
    /// fsyncs. Returns how many messages were written.
    pub(crate) fn persist(&self) -> u64 {
        let mut st = lock(&self.state);
        let st = &mut *st;
        if !st.ready.is_durable() {
            return 0;
        }
        let mut written = 0;
        if let Some(log) = st.log.as_mut() {
            let mut items = Vec::new();
            let (mut old, mut ready_tickets) = (Vec::new(), Vec::new());
            for Reverse(d) in st.deferred.drain() {
                items.push((wall_clock(d.due), d.item.msg));
                old.extend(d.log_ticket);
                ready_tickets.extend(d.item.ticket);
            }
            match log.persist(&items, &old) {
                Ok(()) => {
                    written += items.len() as u64;
                    for t in ready_tickets {
                        st.ready.ack(t);
                    }
                }
                Err(e) => {
                    tracing::error!(channel = %self.name, error = %e, "cannot save deferred messages")
                }
            }
        } else if let Some(dir) = self.opts.data_path.as_deref() {
            let now_i = Instant::now();
            let now_ns = now_nanos();
            let (deferred, tickets): (Vec<(i64, Message)>, Vec<Option<Ticket>>) = st
                .deferred
                .drain()
                .map(|Reverse(d)| {
                    let left = d.due.saturating_duration_since(now_i).as_nanos() as i64;
                    ((now_ns.saturating_add(left), d.item.msg), d.item.ticket)
                })
                .unzip();
            let name = Self::queue_name(&self.topic_name, &self.name);
            match deferred_store::save(dir, &name, &self.opts.disk, &deferred) {
                Ok(()) => {
                    written += deferred.len() as u64;
                    for t in tickets.into_iter().flatten() {
                        st.ready.ack(t);
                    }
                }
                Err(e) => {
                    tracing::error!(channel = %self.name, error = %e, "cannot save deferred messages")
                }
            }
        }
        // Also fsyncs, with the acks of the deferred messages just saved.
        match st.ready.persist() {
            Ok(n) => written += n,
            Err(e) => {
                tracing::error!(channel = %self.name, error = %e, "cannot write queued messages on shutdown")
            }
        }
        written
    }

    /// Creation of a channel with a deferred log: takes back what the log
    /// holds (left by a crash or a graceful shutdown), with its due time.
    pub(crate) fn restore_deferred_log(self: &Arc<Self>) {
        let items = match lock(&self.state).log.as_mut() {
            Some(log) => log.restore(),
            None => return,
        };
        let now = Instant::now();
        for (delay, msg, t) in items {
            let due = now + delay;
            {
                let mut st = lock(&self.state);
                st.seq += 1;
                let seq = st.seq;
                st.deferred.push(Reverse(Deferred {
                    due,
                    seq,
                    item: Queued { msg, ticket: None },
                    log_ticket: Some(t),
                }));
            }
            self.timers.schedule(due, Arc::downgrade(self));
        }
    }

    /// Startup: puts back the deferred messages a previous run saved on
    /// shutdown (a channel with a deferred log did so at creation).
    pub(crate) fn restore_deferred(self: &Arc<Self>) {
        let Some(dir) = self.opts.data_path.as_deref() else {
            return;
        };
        {
            let st = lock(&self.state);
            if !st.ready.is_durable() || st.log.is_some() {
                return;
            }
        }
        let name = Self::queue_name(&self.topic_name, &self.name);
        let items = deferred_store::take(dir, &name, &self.opts.disk);
        for (delay, msg) in items {
            self.requeue_deferred(Queued { msg, ticket: None }, Instant::now() + delay);
        }
    }
}

/// `due` on the wall clock, in Unix nanoseconds, for the disk.
fn wall_clock(due: Instant) -> i64 {
    let left = due.saturating_duration_since(Instant::now()).as_nanos() as i64;
    now_nanos().saturating_add(left)
}

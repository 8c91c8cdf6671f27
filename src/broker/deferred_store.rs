//! Deferred messages on disk, in a disk queue of their own per topic or
//! channel (`<queue>~deferred`, `~` never occurs in a valid name), each
//! record the wall-clock due time in front of the body, so a deferred
//! message keeps its due time across a restart. Two ways to use it:
//! - `save`/`take`: the memory heaps are written on graceful shutdown and
//!   read back at startup (a crash loses them);
//! - [`DeferredLog`], for durable channels with `mem_queue_size: 0`: every
//!   deferred message is written when accepted (DPUB, REQ with a delay) and
//!   acked once it is due and written to the ready queue, so a crash loses
//!   none (they come back with their due time, at least once).

use std::path::Path;

use bytes::{Bytes, BytesMut};
use tracing::warn;

use super::diskqueue::{DiskQueue, DiskQueueError, DiskQueueOptions, SyncPolicy, Ticket};
use super::message::{Message, now_nanos};

pub(crate) fn queue_name(name: &str) -> String {
    format!("{name}~deferred")
}

/// The options of a `~deferred` queue: room for the due time in front.
pub(crate) fn log_options(opts: &DiskQueueOptions) -> DiskQueueOptions {
    let mut opts = opts.clone();
    opts.max_msg_size = opts.max_msg_size.saturating_add(8);
    opts
}

/// `msg` with its due time (Unix nanoseconds) in front of the body.
fn encode(due: i64, m: &Message) -> Message {
    let mut body = BytesMut::with_capacity(8 + m.body.len());
    body.extend_from_slice(&due.to_be_bytes());
    body.extend_from_slice(&m.body);
    Message {
        body: body.freeze(),
        ..m.clone()
    }
}

/// The due time and the message of a record `encode` wrote.
fn decode(m: Message) -> Option<(i64, Message)> {
    let due = i64::from_be_bytes(m.body.get(..8)?.try_into().ok()?);
    let body: Bytes = m.body.slice(8..);
    Some((due, Message { body, ..m }))
}

/// The running record of a channel's deferred messages (see the module
/// docs). Every record written is popped at once, so the queue's committed
/// read position is the oldest deferred message not yet acked.
pub(crate) struct DeferredLog {
    q: DiskQueue,
}

impl DeferredLog {
    pub fn new(q: DiskQueue) -> Self {
        DeferredLog { q }
    }

    /// Startup: the messages a previous run left (acked ones behind an
    /// unacked one included: at least once), as (delay from now, message,
    /// ticket).
    pub fn restore(&mut self) -> Vec<(std::time::Duration, Message, Ticket)> {
        let now = now_nanos();
        let mut out = Vec::new();
        while let Some((m, t)) = self.q.pop_tracked() {
            match decode(m) {
                Some((due, msg)) => {
                    let delay =
                        std::time::Duration::from_nanos(due.saturating_sub(now).max(0) as u64);
                    out.push((delay, msg, t));
                }
                None => {
                    warn!("skipping a short deferred record");
                    self.q.ack(t);
                }
            }
        }
        out
    }

    /// Writes `(due in Unix nanoseconds, message)` pairs with one write and
    /// returns their tickets, in order.
    pub fn record(&mut self, items: &[(i64, &Message)]) -> Result<Vec<Ticket>, DiskQueueError> {
        let encoded: Vec<Message> = items.iter().map(|(due, m)| encode(*due, m)).collect();
        self.q.put_batch(&encoded)?;
        let mut tickets = Vec::with_capacity(items.len());
        while let Some((_, want)) = items.get(tickets.len()) {
            match self.q.pop_tracked() {
                Some((m, t)) if m.id == want.id => tickets.push(t),
                // Left unread by an earlier failed read-back: it stays
                // unacked, so the next start takes it back.
                Some(_) => warn!("deferred log: skipping a record read back out of turn"),
                None => {
                    return Err(DiskQueueError::Io(std::io::Error::other(
                        "deferred record written but not read back",
                    )));
                }
            }
        }
        Ok(tickets)
    }

    /// The message is due and held by the ready queue: done here.
    pub fn ack(&mut self, t: Ticket) {
        self.q.ack(t);
    }

    /// Graceful shutdown: writes the deferred messages still held as new
    /// records, acks the old ones and fsyncs, so a restart reads each once.
    pub fn persist(
        &mut self,
        items: &[(i64, Message)],
        old: &[Ticket],
    ) -> Result<(), DiskQueueError> {
        let encoded: Vec<Message> = items.iter().map(|(due, m)| encode(*due, m)).collect();
        self.q.put_batch(&encoded)?;
        for &t in old {
            self.q.ack(t);
        }
        self.q.sync()?;
        Ok(())
    }

    pub fn empty(&mut self) -> std::io::Result<()> {
        self.q.empty()
    }

    pub fn delete(self) -> std::io::Result<()> {
        self.q.delete()
    }

    #[cfg(test)]
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.q.sync()
    }

    pub fn maybe_sync(&mut self, now: tokio::time::Instant) -> std::io::Result<()> {
        self.q.maybe_sync(now)
    }
}

/// Writes `(due in Unix nanoseconds, message)` pairs, fsynced.
pub(crate) fn save(
    dir: &Path,
    name: &str,
    opts: &DiskQueueOptions,
    items: &[(i64, Message)],
) -> anyhow::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut opts = log_options(opts);
    opts.sync = SyncPolicy::Always;
    let mut q = DiskQueue::open(dir, &queue_name(name), opts)?;
    let encoded: Vec<Message> = items.iter().map(|(due, m)| encode(*due, m)).collect();
    q.put_batch(&encoded)?;
    q.sync()?;
    Ok(())
}

/// Reads back and removes what `save` wrote: `(delay from now, message)`.
pub(crate) fn take(
    dir: &Path,
    name: &str,
    opts: &DiskQueueOptions,
) -> Vec<(std::time::Duration, Message)> {
    let qname = queue_name(name);
    let prefix = format!("{}.diskqueue.", super::diskqueue::encode_name(&qname));
    let exists = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
        .unwrap_or(false);
    if !exists {
        return Vec::new();
    }
    let mut q = match DiskQueue::open(dir, &qname, log_options(opts)) {
        Ok(q) => q,
        Err(e) => {
            warn!(queue = %qname, error = %e, "cannot read saved deferred messages");
            return Vec::new();
        }
    };
    let now = now_nanos();
    let mut out = Vec::new();
    while let Some(m) = q.pop() {
        let Some((due, msg)) = decode(m) else {
            warn!(queue = %qname, "skipping a short deferred record");
            continue;
        };
        let delay = std::time::Duration::from_nanos(due.saturating_sub(now).max(0) as u64);
        out.push((delay, msg));
    }
    if let Err(e) = q.delete() {
        warn!(queue = %qname, error = %e, "cannot remove saved deferred messages");
    }
    out
}

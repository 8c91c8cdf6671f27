//! The ready queue of a topic or a channel, and the one place its spill
//! rule lives: a bounded memory part in front of a backend, which is the
//! queue's disk queue when it is durable and nothing (nsqd's dummy backend)
//! when it is ephemeral or the broker is memory-only. Messages go to memory
//! while it has room and the disk part is empty (so the queue stays FIFO),
//! the rest to disk. Messages read from disk carry the disk queue's
//! [`Ticket`] until whoever took them `ack`s it, so a crash never loses a
//! message that was popped but not finished.

use std::collections::VecDeque;
use std::io;

use tokio::time::Instant;

use super::diskqueue::{DiskQueue, DiskQueueError, Ticket};
use super::message::Message;

/// A queued message and, if it was read from the disk part, the ticket
/// that acknowledges it there.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub msg: Message,
    pub ticket: Option<Ticket>,
}

/// Where the messages beyond the memory part go.
enum Backend {
    /// Ephemeral or memory-only: nothing beyond memory, nothing to sync.
    Dummy,
    /// Boxed: an ephemeral queue should not carry a disk queue's size.
    Disk(Box<DiskQueue>),
}

/// Memory part plus backend. Owned by one topic or channel, under its lock.
pub(crate) struct SpillQueue {
    /// The memory part, up to `mem_limit` for new messages (requeued ones
    /// may exceed it: they are never refused, and bounded by the RDY of the
    /// consumers that held them).
    mem: VecDeque<Queued>,
    /// `mem_queue_size`.
    mem_limit: usize,
    backend: Backend,
}

impl SpillQueue {
    /// A queue with `mem_limit` messages in memory and `disk` (if any) for
    /// the rest.
    pub fn new(mem_limit: usize, disk: Option<DiskQueue>) -> Self {
        SpillQueue {
            mem: VecDeque::new(),
            mem_limit,
            backend: disk.map_or(Backend::Dummy, |d| Backend::Disk(Box::new(d))),
        }
    }

    /// True when messages beyond memory go to disk.
    pub fn is_durable(&self) -> bool {
        matches!(self.backend, Backend::Disk(_))
    }

    /// True when `n` more messages are accepted by `put_batch`: always for a
    /// durable queue (disk errors surface from `put_batch`), while memory has
    /// room otherwise.
    pub fn has_room(&self, n: usize) -> bool {
        self.is_durable() || self.mem.len() + n <= self.mem_limit
    }

    /// Appends new messages, all or none: to memory while it has room and
    /// the disk part is empty, the rest to disk with one write. A memory-only
    /// queue takes them all (callers check `has_room` first). `Ok(true)`
    /// when some went to disk.
    pub fn put_batch(&mut self, msgs: &[Message]) -> Result<bool, DiskQueueError> {
        let n = msgs.len();
        let in_memory = match &self.backend {
            Backend::Dummy => n,
            Backend::Disk(d) if d.depth() > 0 => 0,
            Backend::Disk(_) => self.mem_limit.saturating_sub(self.mem.len()).min(n),
        };
        if in_memory < n
            && let Backend::Disk(d) = &mut self.backend
        {
            d.put_batch(&msgs[in_memory..])?;
        }
        self.mem.extend(msgs[..in_memory].iter().map(|m| Queued {
            msg: m.clone(),
            ticket: None,
        }));
        Ok(in_memory < n)
    }

    /// Puts messages back for redelivery (requeue, timeout, a consumer
    /// leaving), with their tickets. Never refused.
    pub fn requeue(&mut self, items: impl IntoIterator<Item = Queued>) {
        self.mem.extend(items);
    }

    /// The next message: memory first, then disk.
    pub fn pop(&mut self) -> Option<Queued> {
        if let Some(q) = self.mem.pop_front() {
            return Some(q);
        }
        match &mut self.backend {
            Backend::Dummy => None,
            Backend::Disk(d) => d.pop_tracked().map(|(msg, t)| Queued {
                msg,
                ticket: Some(t),
            }),
        }
    }

    /// Acknowledges a message read from disk: it is done (finished, or
    /// handed on durably), so a restart need not read it again.
    pub fn ack(&mut self, ticket: Ticket) {
        if let Backend::Disk(d) = &mut self.backend {
            d.ack(ticket);
        }
    }

    /// Messages waiting, in memory and on disk.
    pub fn depth(&self) -> u64 {
        self.mem.len() as u64 + self.backend_depth()
    }

    /// Messages waiting on disk.
    pub fn backend_depth(&self) -> u64 {
        match &self.backend {
            Backend::Dummy => 0,
            Backend::Disk(d) => d.depth(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.depth() == 0
    }

    /// Drops every waiting message, on disk too. Tickets handed out before
    /// are void (acking them does nothing).
    pub fn empty(&mut self) -> io::Result<()> {
        self.mem.clear();
        match &mut self.backend {
            Backend::Dummy => Ok(()),
            Backend::Disk(d) => d.empty(),
        }
    }

    /// Drops everything and removes the disk files (the topic or channel
    /// was deleted). The queue is memory-only afterwards.
    pub fn delete(&mut self) -> io::Result<()> {
        self.mem.clear();
        match std::mem::replace(&mut self.backend, Backend::Dummy) {
            Backend::Dummy => Ok(()),
            Backend::Disk(d) => (*d).delete(),
        }
    }

    /// Shutdown: writes the memory part to the end of the disk part, acks
    /// the tickets those messages carried (their new copies are what a
    /// restart reads) and fsyncs. Returns how many were written. If the
    /// write fails, the messages stay in memory. Memory-only: nothing.
    pub fn persist(&mut self) -> Result<u64, DiskQueueError> {
        let Backend::Disk(d) = &mut self.backend else {
            return Ok(0);
        };
        let msgs: Vec<Message> = self.mem.iter().map(|q| q.msg.clone()).collect();
        d.put_batch(&msgs)?;
        for q in self.mem.drain(..) {
            if let Some(t) = q.ticket {
                d.ack(t);
            }
        }
        d.sync()?;
        Ok(msgs.len() as u64)
    }

    /// Writes out and fsyncs the disk part (the crash tests' sync point).
    #[cfg(test)]
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.backend {
            Backend::Dummy => Ok(()),
            Backend::Disk(d) => d.sync(),
        }
    }

    /// Applies `sync_timeout` (see `DiskQueue::maybe_sync`).
    pub fn maybe_sync(&mut self, now: Instant) -> io::Result<()> {
        match &mut self.backend {
            Backend::Dummy => Ok(()),
            Backend::Disk(d) => d.maybe_sync(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MessageId;
    use crate::broker::diskqueue::DiskQueueOptions;
    use bytes::Bytes;
    use std::path::PathBuf;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nsqgw-spill-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn msgs(from: u64, n: u64) -> Vec<Message> {
        (from..from + n)
            .map(|i| Message {
                id: MessageId::from_u64(i),
                timestamp: 0,
                attempts: 0,
                body: Bytes::from(i.to_string()),
            })
            .collect()
    }

    fn disk(d: &std::path::Path) -> DiskQueue {
        DiskQueue::open(d, "q", DiskQueueOptions::default()).expect("open")
    }

    fn ids(items: &[Queued]) -> Vec<String> {
        items
            .iter()
            .map(|q| String::from_utf8_lossy(&q.msg.body).into_owned())
            .collect()
    }

    fn pop_all(q: &mut SpillQueue) -> Vec<Queued> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn memory_first_then_disk_and_fifo_while_disk_holds_anything() {
        let d = dir("fifo");
        let mut q = SpillQueue::new(3, Some(disk(&d)));
        q.put_batch(&msgs(0, 2)).expect("put");
        q.put_batch(&msgs(2, 3)).expect("put");
        assert_eq!((q.depth(), q.backend_depth()), (5, 2));
        // Memory has room again, but disk holds something: new ones go after.
        assert_eq!(ids(&[q.pop().expect("0")]), ["0"]);
        q.put_batch(&msgs(5, 1)).expect("put");
        assert_eq!(q.backend_depth(), 3);
        let rest = pop_all(&mut q);
        assert_eq!(ids(&rest), ["1", "2", "3", "4", "5"]);
        assert!(rest[1].ticket.is_none() && rest[2].ticket.is_some());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_dummy_backend_keeps_everything_in_memory() {
        let mut q = SpillQueue::new(2, None);
        assert!(!q.is_durable() && q.has_room(2) && !q.has_room(3));
        q.put_batch(&msgs(0, 3)).expect("put");
        assert_eq!((q.depth(), q.backend_depth()), (3, 0));
        assert_eq!(q.persist().expect("persist"), 0);
        q.empty().expect("empty");
        assert!(q.is_empty());
    }

    #[test]
    fn unacked_disk_messages_come_back_after_a_crash_and_acked_ones_do_not() {
        let d = dir("ack");
        let mut q = SpillQueue::new(0, Some(disk(&d)));
        q.put_batch(&msgs(0, 6)).expect("put");
        let got = pop_all(&mut q);
        assert_eq!(got.len(), 6);
        // 0, 1 and 3 finished; 2 is still out, 4 and 5 were requeued.
        for i in [0, 1, 3] {
            q.ack(got[i].ticket.expect("from disk"));
        }
        q.requeue(got[4..].iter().cloned());
        q.sync().expect("sync");
        drop(q);
        let mut q = SpillQueue::new(0, Some(disk(&d)));
        // Read again from 2 (the oldest unfinished): 3 is a duplicate.
        assert_eq!(q.depth(), 4);
        assert_eq!(ids(&pop_all(&mut q)), ["2", "3", "4", "5"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn persist_writes_memory_to_disk_and_a_restart_reads_each_once() {
        let d = dir("persist");
        let mut q = SpillQueue::new(2, Some(disk(&d)));
        q.put_batch(&msgs(0, 4)).expect("put");
        let got = pop_all(&mut q);
        // All four requeued (a consumer left): two carry disk tickets.
        q.requeue(got);
        assert_eq!(q.persist().expect("persist"), 4);
        drop(q);
        let mut q = SpillQueue::new(2, Some(disk(&d)));
        assert_eq!(ids(&pop_all(&mut q)), ["0", "1", "2", "3"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_persist_keeps_the_messages_in_memory() {
        let d = dir("persist-fail");
        let mut dq = disk(&d);
        dq.inject_write_error_after(0);
        let mut q = SpillQueue::new(5, Some(dq));
        q.put_batch(&msgs(0, 3)).expect("put to memory");
        assert!(q.persist().is_err());
        assert_eq!(q.depth(), 3);
        assert_eq!(q.persist().expect("second try"), 3);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_put_keeps_nothing_of_the_batch() {
        let d = dir("put-fail");
        let mut dq = disk(&d);
        dq.inject_write_error_after(10);
        let mut q = SpillQueue::new(1, Some(dq));
        assert!(q.put_batch(&msgs(0, 3)).is_err());
        assert_eq!(q.depth(), 0);
        q.put_batch(&msgs(3, 3)).expect("put");
        assert_eq!(ids(&pop_all(&mut q)), ["3", "4", "5"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn empty_voids_old_tickets_and_delete_removes_the_files() {
        let d = dir("empty");
        let mut q = SpillQueue::new(0, Some(disk(&d)));
        q.put_batch(&msgs(0, 3)).expect("put");
        let old = q.pop().expect("one");
        q.empty().expect("empty");
        q.ack(old.ticket.expect("disk"));
        q.put_batch(&msgs(3, 2)).expect("put");
        assert_eq!(ids(&pop_all(&mut q)), ["3", "4"]);
        q.delete().expect("delete");
        let left = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
        assert_eq!(left, 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! The broker's deferred-message clock. Channels keep their own deferred heaps;
//! this keeps one wake-up entry per deferral so a single task can sleep until
//! the earliest due time instead of polling every channel.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::channel::Channel;
use super::topic::Topic;
use crate::sync::lock;

struct Entry {
    due: Instant,
    seq: u64,
    channel: Weak<Channel>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Wake-ups for channels with deferred messages.
#[derive(Default)]
pub(crate) struct Timers {
    /// Min-heap of wake-ups. Locked only to push or pop, never across await.
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    /// Wakes the runner when an entry earlier than its current sleep arrives,
    /// or a topic has a backlog to hand to its channels.
    notify: Notify,
    /// Topics whose held messages are being handed to their channels.
    drains: Mutex<Vec<Weak<Topic>>>,
    seq: AtomicU64,
}

impl Timers {
    /// Asks for `channel.process_deferred` to run at `due`.
    pub(crate) fn schedule(&self, due: Instant, channel: Weak<Channel>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let earlier = {
            let mut heap = lock(&self.heap);
            let earlier = heap.peek().is_none_or(|Reverse(e)| due < e.due);
            heap.push(Reverse(Entry { due, seq, channel }));
            earlier
        };
        if earlier {
            self.notify.notify_one();
        }
    }

    /// Asks the runner to keep draining `topic` (see `Topic::drain_step`).
    pub(crate) fn schedule_drain(&self, topic: Weak<Topic>) {
        lock(&self.drains).push(topic);
        self.notify.notify_one();
    }

    /// One chunk for each topic with a backlog; true if any has more.
    fn drain_round(&self) -> bool {
        let topics = std::mem::take(&mut *lock(&self.drains));
        let mut more = Vec::new();
        for weak in topics {
            if let Some(t) = weak.upgrade()
                && t.drain_step()
            {
                more.push(weak);
            }
        }
        let any = !more.is_empty();
        lock(&self.drains).extend(more);
        any
    }

    /// Fires due entries and drains topic backlogs until `shutdown` is
    /// cancelled.
    pub(crate) async fn run(&self, shutdown: CancellationToken) {
        let mut due_channels = Vec::new();
        loop {
            if self.drain_round() {
                // More backlog: give other tasks a turn, then go on.
                tokio::task::yield_now().await;
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            let now = Instant::now();
            let next = {
                let mut heap = lock(&self.heap);
                while heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
                    if let Some(Reverse(e)) = heap.pop() {
                        due_channels.push(e.channel);
                    }
                }
                heap.peek().map(|Reverse(e)| e.due)
            };
            for ch in due_channels.drain(..) {
                if let Some(ch) = ch.upgrade() {
                    ch.process_deferred(now);
                }
            }
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.notify.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

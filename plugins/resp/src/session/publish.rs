//! PUBLISH and one-value LPUSH/RPUSH: gathering pipelined publishes to one
//! topic into a run sent with one `publish-many`, and their replies from
//! per-batch topic stats snapshots.

use super::{
    Failure, Host, INVALID_TOPIC, MAX_SNAPSHOTS, RUN_BYTES, Run, RunKind, Session, Snapshot,
    topic_name,
};
use crate::reply;

impl Session {
    /// Adds one PUBLISH or one-value LPUSH to the run of publishes.
    pub(super) fn enqueue(&mut self, host: &mut impl Host, kind: RunKind, key: &[u8], body: &[u8]) {
        let Some(topic) = topic_name(key) else {
            self.flush_run(host);
            return self.err(INVALID_TOPIC);
        };
        if self
            .run
            .as_ref()
            .is_some_and(|r| r.kind != kind || r.topic != topic)
        {
            self.flush_run(host);
        }
        let run = self.run.get_or_insert_with(|| Run {
            kind,
            topic: topic.to_string(),
            bodies: Vec::new(),
            bytes: 0,
        });
        run.bodies.push(body.to_vec());
        run.bytes += body.len();
        if run.bodies.len() >= self.settings.publish_batch || run.bytes >= RUN_BYTES {
            self.flush_run(host);
        }
    }

    /// Publishes the run, all or nothing, and writes one reply per command.
    /// If the batch is refused (an empty or oversized body, a full queue),
    /// its messages are published one by one so each command gets its own
    /// answer, as if they had not been batched.
    pub(super) fn flush_run(&mut self, host: &mut impl Host) {
        let Some(run) = self.run.take() else { return };
        let result = match run.bodies.as_slice() {
            [one] => host.publish(&run.topic, one),
            many => host.publish_many(&run.topic, many),
        };
        match result {
            Ok(()) => self.reply_published(host, &run.topic, run.kind, run.bodies.len()),
            // A denial is the same for each (and each retry would count).
            Err(Failure(e)) if run.bodies.len() == 1 || e.starts_with("NOPERM") => {
                for _ in &run.bodies {
                    self.err(&e);
                }
            }
            Err(_) => {
                for body in &run.bodies {
                    match host.publish(&run.topic, body) {
                        Ok(()) => self.reply_published(host, &run.topic, run.kind, 1),
                        Err(Failure(e)) => self.err(&e),
                    }
                }
            }
        }
    }

    /// The replies of `n` commands whose messages were just published:
    /// PUBLISH answers the receivers, which NSQ-wise are the topic's
    /// channels; LPUSH the queue's length after each push.
    pub(super) fn reply_published(
        &mut self,
        host: &mut impl Host,
        topic: &str,
        kind: RunKind,
        n: usize,
    ) {
        let pushed = u64::try_from(n).unwrap_or(u64::MAX);
        let (channels, waiting) = self
            .published(host, topic, pushed)
            .map_or((0, 0), |s| (s.channels, s.waiting));
        for i in 0..pushed {
            let value = match kind {
                RunKind::Publish => u64::try_from(channels).unwrap_or(u64::MAX),
                // At least 1: a waiting BRPOP may already have taken it, as
                // Redis hands pushes to blocked clients.
                RunKind::Push => waiting.saturating_sub(pushed - 1 - i).max(1),
            };
            reply::integer(&mut self.out, i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// The topic's snapshot after `n` messages were published to it: the
    /// batch's snapshot advanced by `n`, or fresh stats (which include them).
    pub(super) fn published(
        &mut self,
        host: &mut impl Host,
        topic: &str,
        n: u64,
    ) -> Option<&Snapshot> {
        if let Some(i) = self.snapshots.iter().position(|s| s.topic == topic) {
            let snap = &mut self.snapshots[i];
            if snap.counts_pushes {
                snap.waiting = snap.waiting.saturating_add(n);
            }
            return Some(&self.snapshots[i]);
        }
        self.fetch(host, topic)
    }

    /// Fresh stats for `topic`, kept as the batch's snapshot.
    pub(super) fn fetch(&mut self, host: &mut impl Host, topic: &str) -> Option<&Snapshot> {
        let info = host.topic_info(topic).ok()?.unwrap_or_default();
        let queue = info
            .channels
            .iter()
            .find(|(name, _)| *name == self.settings.queue_channel);
        let snap = Snapshot {
            topic: topic.to_string(),
            channels: info.channels.len(),
            waiting: queue.map_or(info.depth, |(_, depth)| *depth),
            counts_pushes: queue.is_some() || info.channels.is_empty(),
        };
        self.snapshots.retain(|s| s.topic != topic);
        if self.snapshots.len() >= MAX_SNAPSHOTS {
            self.snapshots.clear();
        }
        self.snapshots.push(snap);
        self.snapshots.last()
    }
}

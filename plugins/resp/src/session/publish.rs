//! PUBLISH and one-value LPUSH/RPUSH: gathering pipelined publishes to one
//! topic into a run sent with one `publish-many`, and their replies: the
//! channel count the publish returns for PUBLISH, the queue's length from a
//! per-batch topic stats snapshot for LPUSH.

use nsq_sdk::{BrokerError, Host};

use super::{
    INVALID_TOPIC, MAX_SNAPSHOTS, RUN_BYTES, Resp, Run, RunKind, Snapshot, resp_error, topic_name,
};
use crate::reply;

impl Resp {
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
            Ok(channels) => {
                self.reply_published(host, &run.topic, run.kind, run.bodies.len(), channels)
            }
            // A denial is the same for each (and each retry would count).
            Err(e)
                if run.bodies.len() == 1
                    || matches!(e, BrokerError::Denied(_) | BrokerError::Unauthorized(_)) =>
            {
                let text = resp_error(&e);
                for _ in &run.bodies {
                    self.err(&text);
                }
            }
            Err(_) => {
                for body in &run.bodies {
                    match host.publish(&run.topic, body) {
                        Ok(channels) => {
                            self.reply_published(host, &run.topic, run.kind, 1, channels)
                        }
                        Err(e) => self.err(&resp_error(&e)),
                    }
                }
            }
        }
    }

    /// The replies of `n` commands whose messages were just published:
    /// PUBLISH answers the receivers, which NSQ-wise are the `channels` the
    /// broker copied each message to; LPUSH the queue's length after each
    /// push.
    pub(super) fn reply_published(
        &mut self,
        host: &mut impl Host,
        topic: &str,
        kind: RunKind,
        n: usize,
        channels: u32,
    ) {
        let pushed = u64::try_from(n).unwrap_or(u64::MAX);
        if kind == RunKind::Publish {
            // No stats call; a batch's LPUSH snapshot still counts them.
            self.advance(topic, pushed);
            for _ in 0..n {
                reply::integer(&mut self.out, i64::from(channels));
            }
            return;
        }
        let waiting = self.published(host, topic, pushed).map_or(0, |s| s.waiting);
        for i in 0..pushed {
            // At least 1: a waiting BRPOP may already have taken it, as
            // Redis hands pushes to blocked clients.
            let value = waiting.saturating_sub(pushed - 1 - i).max(1);
            reply::integer(&mut self.out, i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// Counts `n` messages just published to `topic` in the batch's
    /// snapshot of it, if there is one; false if there is none.
    fn advance(&mut self, topic: &str, n: u64) -> bool {
        let Some(snap) = self.snapshots.iter_mut().find(|s| s.topic == topic) else {
            return false;
        };
        if snap.counts_pushes {
            snap.waiting = snap.waiting.saturating_add(n);
        }
        true
    }

    /// The topic's snapshot after `n` messages were published to it: the
    /// batch's snapshot advanced by `n`, or fresh stats (which include them).
    pub(super) fn published(
        &mut self,
        host: &mut impl Host,
        topic: &str,
        n: u64,
    ) -> Option<&Snapshot> {
        if self.advance(topic, n) {
            return self.snapshots.iter().find(|s| s.topic == topic);
        }
        self.fetch(host, topic)
    }

    /// Fresh stats for `topic`, kept as the batch's snapshot.
    pub(super) fn fetch(&mut self, host: &mut impl Host, topic: &str) -> Option<&Snapshot> {
        let stats = host.stats(Some(topic)).ok()?;
        let info = stats.iter().find(|t| t.name == topic);
        let channels = info.map_or(&[][..], |t| t.channels.as_slice());
        let queue = channels
            .iter()
            .find(|c| c.name == self.settings.queue_channel);
        let snap = Snapshot {
            topic: topic.to_string(),
            waiting: queue.map_or(info.map_or(0, |t| t.depth), |c| c.depth),
            counts_pushes: queue.is_some() || channels.is_empty(),
        };
        self.snapshots.retain(|s| s.topic != topic);
        if self.snapshots.len() >= MAX_SNAPSHOTS {
            self.snapshots.clear();
        }
        self.snapshots.push(snap);
        self.snapshots.last()
    }
}

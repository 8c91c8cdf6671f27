//! List queues: multi-value LPUSH/RPUSH, LLEN, BRPOP/BLPOP blocking on the
//! keys' shared queue channel with their timeout, and the cache of queue
//! subscriptions (evicted least recently used first when slots run out).

use super::{Blocked, Failure, Host, INVALID_TOPIC, Queue, Session, topic_name};
use crate::reply;

impl Session {
    /// Frees a subscription slot if none is free, evicting the least
    /// recently used cached queue not named in `keep`. False if full.
    pub(super) fn make_room(&mut self, host: &mut impl Host, keep: &[&str]) -> bool {
        while self.topics.len() + self.queues.len() >= self.settings.max_subscriptions {
            let victim = self
                .queues
                .iter()
                .enumerate()
                .filter(|(_, q)| !keep.contains(&q.key.as_str()))
                .min_by_key(|(_, q)| q.last_used)
                .map(|(i, _)| i);
            let Some(i) = victim else { return false };
            let q = self.queues.remove(i);
            host.unsubscribe(q.sub);
        }
        true
    }

    pub(super) fn push(&mut self, host: &mut impl Host, key: &[u8], values: &[&[u8]]) {
        let Some(topic) = topic_name(key) else {
            return self.err(INVALID_TOPIC);
        };
        let result = if let [one] = values {
            host.publish(topic, one)
        } else {
            // Batches within `publish_batch`, each atomic.
            values
                .chunks(self.settings.publish_batch.max(1))
                .try_for_each(|chunk| {
                    let bodies: Vec<Vec<u8>> = chunk.iter().map(|v| v.to_vec()).collect();
                    host.publish_many(topic, &bodies)
                })
        };
        if let Err(Failure(e)) = result {
            return self.err(&e);
        }
        // Redis answers with the list's length: here the messages waiting
        // for BRPOP, and at least the ones just pushed (a waiting BRPOP may
        // already have taken them, as Redis hands pushes to blocked clients).
        let pushed = u64::try_from(values.len()).unwrap_or(u64::MAX);
        let waiting = self.published(host, topic, pushed).map_or(0, |s| s.waiting);
        reply::integer(
            &mut self.out,
            i64::try_from(waiting.max(pushed)).unwrap_or(i64::MAX),
        );
    }

    pub(super) fn llen(&mut self, host: &mut impl Host, key: &[u8]) {
        let Some(topic) = topic_name(key) else {
            return self.err(INVALID_TOPIC);
        };
        // Always fresh: LLEN is how a client looks at the queue.
        let n = self.fetch(host, topic).map_or(0, |s| s.waiting);
        reply::integer(&mut self.out, i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// BRPOP/BLPOP key [key …] timeout.
    pub(super) fn block_pop(&mut self, host: &mut impl Host, args: &[&[u8]]) {
        let Some((timeout, keys)) = args.split_last() else {
            return;
        };
        let seconds = std::str::from_utf8(timeout)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite());
        let Some(seconds) = seconds else {
            return self.err("ERR timeout is not a float or out of range");
        };
        if seconds < 0.0 {
            return self.err("ERR timeout is negative");
        }
        // 0 blocks forever; anything else is at least 1 ms, at most ~49 days.
        let ms = (seconds * 1000.0).round().clamp(1.0, f64::from(u32::MAX));
        let delay = (seconds > 0.0).then_some(ms as u32);
        let mut names: Vec<&str> = Vec::with_capacity(keys.len());
        for k in keys {
            let Some(t) = topic_name(k) else {
                return self.err(INVALID_TOPIC);
            };
            if !names.contains(&t) {
                names.push(t);
            }
        }
        if names.len() > self.settings.max_subscriptions {
            let text = format!(
                "ERR at most {} keys per blocking pop (max_subscriptions)",
                self.settings.max_subscriptions
            );
            return self.err(&text);
        }
        self.snapshots.clear();
        let mut subs = Vec::with_capacity(names.len());
        for name in &names {
            self.tick += 1;
            let tick = self.tick;
            if let Some(q) = self.queues.iter_mut().find(|q| q.key == *name) {
                q.last_used = tick;
                subs.push(q.sub);
                continue;
            }
            if !self.make_room(host, &names) {
                let text = format!(
                    "ERR at most {} subscriptions per connection (max_subscriptions)",
                    self.settings.max_subscriptions
                );
                return self.err(&text);
            }
            match host.subscribe(name, &self.settings.queue_channel) {
                Ok(sub) => {
                    self.queues.push(Queue {
                        key: (*name).to_string(),
                        sub,
                        last_used: tick,
                    });
                    subs.push(sub);
                }
                Err(Failure(e)) => return self.err(&e),
            }
        }
        for (i, &sub) in subs.iter().enumerate() {
            if let Err(Failure(e)) = host.set_ready(sub, 1) {
                for &done in &subs[..i] {
                    let _ = host.set_ready(done, 0);
                }
                return self.err(&e);
            }
        }
        // Also disarms a pending resume timer when blocking forever.
        self.arm(host, delay);
        self.blocked = Some(Blocked { subs });
    }

    /// Ends a blocking pop: pauses its subscriptions, disarms the timer.
    pub(super) fn unblock(&mut self, host: &mut impl Host) {
        if let Some(b) = self.blocked.take() {
            for sub in b.subs {
                let _ = host.set_ready(sub, 0);
            }
            self.arm(host, None);
        }
    }
}

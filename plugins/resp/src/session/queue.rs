//! List queues: multi-value LPUSH/RPUSH, LLEN, BRPOP/BLPOP on the keys'
//! shared queue channel with their timeout, the cache of queue
//! subscriptions (evicted least recently used first when slots run out),
//! and the messages fetched ahead for pipelined BRPOPs.
//!
//! A BRPOP with more commands pipelined behind it opens its queue's ready
//! count to `brpop_prefetch` instead of 1, so one delivery serves the
//! BRPOPs that follow: each pops a message from `Queue::ahead` with no
//! broker call, and the popped ids are finished together at the end of the
//! event. When the event ends with no BRPOP blocked, the queues' ready
//! counts go back to 0; messages still ahead are requeued after
//! `brpop_idle_ms`, when a BRPOP blocks on other keys, or at close. So a
//! message is acknowledged only once a client got it, and none is held
//! longer than the idle time by a client that stopped popping.

use std::collections::VecDeque;

use nsq_sdk::{Host, Message, Subscription};

use super::{Blocked, INVALID_TOPIC, Queue, Resp, Timer, resp_error, topic_name};
use crate::reply;

impl Resp {
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
            // Popped messages are finished first: unsubscribing requeues
            // whatever is still in flight, which includes what is ahead.
            self.finish_popped(host);
            let q = self.queues.remove(i);
            let _ = host.unsubscribe(q.sub);
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
                .chunks(self.settings.publish_batch)
                .try_fold(0, |_, chunk| {
                    let bodies: Vec<Vec<u8>> = chunk.iter().map(|v| v.to_vec()).collect();
                    host.publish_many(topic, &bodies)
                })
        };
        if let Err(e) = result {
            return self.err(&resp_error(&e));
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
        // Always fresh: LLEN is how a client looks at the queue. Messages
        // this connection fetched ahead are still the queue's.
        let ahead = self
            .queues
            .iter()
            .find(|q| q.key == topic)
            .map_or(0, |q| q.ahead.len() as u64);
        let n = self.fetch(host, topic).map_or(0, |s| s.waiting) + ahead;
        reply::integer(&mut self.out, i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// BRPOP/BLPOP key [key …] timeout.
    pub(super) fn block_pop(&mut self, host: &mut impl Host, args: &[&[u8]]) {
        let Some((timeout, keys)) = args.split_last() else {
            return;
        };
        let delay = match timeout_ms(timeout) {
            Ok(delay) => delay,
            Err(text) => return self.err(text),
        };
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
        // A message fetched ahead on one of the keys answers at once.
        for name in &names {
            if let Some(i) = self.queues.iter().position(|q| q.key == *name)
                && self.pop(i)
            {
                return;
            }
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
                        ready: 0,
                        ahead: VecDeque::new(),
                        popped: Vec::new(),
                    });
                    subs.push(sub);
                }
                Err(e) => return self.err(&resp_error(&e)),
            }
        }
        // The client waits on these keys now: what other keys fetched
        // ahead goes back to their queues.
        self.requeue_ahead(host, &subs);
        let ready = if self.pipelined {
            self.settings.brpop_prefetch
        } else {
            1
        };
        for &sub in &subs {
            let Some(q) = self.queues.iter_mut().find(|q| q.sub == sub) else {
                continue;
            };
            if q.ready == ready {
                continue;
            }
            if let Err(e) = host.set_ready(sub, ready) {
                // `end_event` pauses the ones already opened.
                return self.err(&resp_error(&e));
            }
            q.ready = ready;
        }
        // Each blocking pop's timeout starts now; forever disarms.
        host.set_timer(delay);
        self.timer = delay.map(|_| Timer::Block);
        self.blocked = Some(Blocked { subs });
    }

    /// Answers a BRPOP with the next message ahead on queue `i`, if any;
    /// its id is finished at the end of the event.
    fn pop(&mut self, i: usize) -> bool {
        let Some(q) = self.queues.get_mut(i) else {
            return false;
        };
        let Some(m) = q.ahead.pop_front() else {
            return false;
        };
        self.tick += 1;
        q.last_used = self.tick;
        reply::array(&mut self.out, 2);
        reply::bulk(&mut self.out, q.key.as_bytes());
        reply::bulk(&mut self.out, &m.body);
        q.popped.push(m.id);
        true
    }

    /// Messages delivered on a queue subscription: kept ahead, and the
    /// first answers the blocked BRPOP. Nothing waiting on the queue (a
    /// delivery after the BRPOP timed out): they go back at once.
    pub(super) fn delivered(
        &mut self,
        host: &mut impl Host,
        sub: Subscription,
        messages: Vec<Message>,
    ) {
        let waiting = self.blocked.as_ref().is_some_and(|b| b.subs.contains(&sub));
        let queue = self.queues.iter().position(|q| q.sub == sub);
        let Some(i) = queue.filter(|_| waiting) else {
            let ids: Vec<String> = messages.into_iter().map(|m| m.id).collect();
            for chunk in ids.chunks(self.settings.publish_batch) {
                let _ = host.requeue_many(sub, chunk, 0);
            }
            return;
        };
        self.queues[i].ahead.extend(messages);
        if self.pop(i) {
            self.unblock();
        }
    }

    /// Ends a blocking pop; `end_event` pauses its queues unless another
    /// BRPOP blocks on them first.
    pub(super) fn unblock(&mut self) {
        self.blocked = None;
    }

    /// Finishes every popped message, `publish_batch` ids per call.
    pub(super) fn finish_popped(&mut self, host: &mut impl Host) {
        let batch = self.settings.publish_batch;
        for q in self.queues.iter_mut().filter(|q| !q.popped.is_empty()) {
            for chunk in q.popped.chunks(batch) {
                let _ = host.finish_many(q.sub, chunk);
            }
            q.popped.clear();
        }
    }

    /// Requeues the messages ahead on every queue not in `keep`.
    pub(super) fn requeue_ahead(&mut self, host: &mut impl Host, keep: &[Subscription]) {
        let batch = self.settings.publish_batch;
        for q in self.queues.iter_mut() {
            if q.ahead.is_empty() || keep.contains(&q.sub) {
                continue;
            }
            let ids: Vec<String> = q.ahead.drain(..).map(|m| m.id).collect();
            for chunk in ids.chunks(batch) {
                let _ = host.requeue_many(q.sub, chunk, 0);
            }
        }
    }
}

/// A BRPOP timeout, seconds as a decimal with an optional fraction and
/// exponent (`5`, `0.25`, `1e-1`), in milliseconds rounded to nearest:
/// `None` for 0 (block forever), otherwise 1 ms to `u32::MAX` ms (about 49
/// days). Parsed by hand: `str::parse::<f64>` would put its 10 KiB table of
/// powers of five in the guest's data, a resident page or three in every
/// connection's linear memory.
pub(super) fn timeout_ms(text: &[u8]) -> Result<Option<u32>, &'static str> {
    const INVALID: &str = "ERR timeout is not a float or out of range";
    let text = text.trim_ascii();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (number, exponent) = match text.iter().position(|&b| b == b'e' || b == b'E') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (int, frac) = match number.iter().position(|&b| b == b'.') {
        Some(i) => (&number[..i], &number[i + 1..]),
        None => (number, &number[number.len()..]),
    };
    let digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return Err(INVALID);
    }
    // The significant digits (at most 30, the rest only moves the scale
    // or falls below a millisecond) and the power of ten they are off by.
    let mut mantissa: u128 = 0;
    let mut scale: i64 = 3;
    let mut kept = 0;
    for (i, &d) in int.iter().chain(frac).enumerate() {
        let in_fraction = i >= int.len();
        if mantissa == 0 && d == b'0' {
            scale -= i64::from(in_fraction);
            continue;
        }
        if kept < 30 {
            mantissa = mantissa * 10 + u128::from(d - b'0');
            kept += 1;
            scale -= i64::from(in_fraction);
        } else if !in_fraction {
            scale += 1;
        }
    }
    if let Some(e) = exponent {
        let (minus, e) = match e.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, e),
        };
        if e.is_empty() || !digits(e) {
            return Err(INVALID);
        }
        let e = e
            .iter()
            .fold(0i64, |n, &d| (n * 10 + i64::from(d - b'0')).min(100_000));
        scale += if minus { -e } else { e };
    }
    if mantissa == 0 {
        return Ok(None);
    }
    if negative {
        return Err("ERR timeout is negative");
    }
    let ms = if scale >= 0 {
        if scale > 38 {
            u128::MAX
        } else {
            mantissa.saturating_mul(10u128.pow(scale as u32))
        }
    } else if scale < -38 {
        0
    } else {
        let div = 10u128.pow((-scale) as u32);
        (mantissa + div / 2) / div
    };
    Ok(Some(u32::try_from(ms).unwrap_or(u32::MAX).max(1)))
}

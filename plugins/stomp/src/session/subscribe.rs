//! SUBSCRIBE, UNSUBSCRIBE and delivery: opening a broker subscription with
//! its prefetch window and channel (shared for `/queue/`, ephemeral per
//! subscription for `/topic/`), and writing MESSAGE frames for a batch
//! (auto mode FINs the batch at once with one `finish-many`, client modes
//! remember the ids for ACK/NACK).

use std::collections::VecDeque;

use nsq_sdk::{Host, Message, Subscription, describe};

use super::{Fatal, Frame, Stomp, Sub, destination, fatal, required};
use crate::frame::{escape_into, push_decimal};
use crate::rules::{self, AckMode, Destination};

pub(super) fn subscribe(s: &mut Stomp, h: &mut impl Host, f: &Frame<'_>) -> Result<(), Fatal> {
    let id = required(f, "id")?;
    let dest = destination(f)?;
    let mode = AckMode::parse(f.header("ack")).ok_or_else(|| {
        fatal(
            "invalid ack mode",
            format!(
                "ack must be auto, client or client-individual, got {:?}",
                f.header("ack").unwrap_or_default()
            ),
        )
    })?;
    if s.subs.iter().any(|x| x.id == id) {
        return Err(fatal(
            "duplicate subscription id",
            format!("subscription id {id:?} is already in use on this connection"),
        ));
    }
    let max_subscriptions = s.settings.max_subscriptions.unwrap_or(1);
    if s.subs.len() >= max_subscriptions {
        return Err(fatal(
            "too many subscriptions",
            format!("at most {max_subscriptions} subscriptions per connection (max_subscriptions)"),
        ));
    }
    let window = match f.header("prefetch-count") {
        None => s.settings.prefetch,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map(|n| n.clamp(1, s.max_rdy))
            .map_err(|_| {
                fatal(
                    "invalid prefetch-count",
                    format!("prefetch-count must be a number, got {v:?}"),
                )
            })?,
    };
    let channel = match dest {
        Destination::Queue(_) => f
            .header("channel")
            .unwrap_or(&s.settings.queue_channel)
            .to_string(),
        Destination::Topic(_) => {
            s.topic_subs = s.topic_subs.wrapping_add(1);
            rules::ephemeral_channel(s.client_id, s.topic_subs)
        }
    };
    let topic = dest.topic();
    let handle = h.subscribe(topic, &channel).map_err(|e| {
        fatal(
            format!("subscribe to {topic} failed"),
            format!(
                "subscribing to NSQ topic {topic:?} channel {channel:?} failed: {}",
                describe(&e)
            ),
        )
    })?;
    if let Err(e) = h.set_ready(handle, window) {
        let _ = h.unsubscribe(handle);
        return Err(fatal("subscribe failed", describe(&e)));
    }
    let v12 = s.v12();
    let mut prefix = b"MESSAGE\nsubscription:".to_vec();
    escape_into(&mut prefix, id, v12);
    prefix.extend_from_slice(b"\ndestination:");
    escape_into(&mut prefix, required(f, "destination")?, v12);
    prefix.push(b'\n');
    s.subs.push(Sub {
        id: id.to_string(),
        handle,
        mode,
        prefix,
        pending: VecDeque::new(),
        pending_cap: (window as usize).saturating_mul(4).max(64),
    });
    Ok(())
}

pub(super) fn unsubscribe(s: &mut Stomp, h: &mut impl Host, f: &Frame<'_>) -> Result<(), Fatal> {
    let id = required(f, "id")?;
    let i = s.subs.iter().position(|x| x.id == id).ok_or_else(|| {
        fatal(
            "unknown subscription",
            format!("no subscription with id {id:?} on this connection"),
        )
    })?;
    let sub = s.subs.remove(i);
    // Unsubscribing requeues whatever is still unacknowledged.
    let _ = h.unsubscribe(sub.handle);
    Ok(())
}

/// Writes MESSAGE frames for a batch; auto-ack subscriptions FIN it at
/// once, the others remember the ids for ACK/NACK.
pub(super) fn deliver(
    s: &mut Stomp,
    h: &mut impl Host,
    handle: Subscription,
    messages: Vec<Message>,
) {
    if s.closed {
        return;
    }
    let Some(sub) = s.subs.iter_mut().find(|x| x.handle == handle) else {
        // Unsubscribed meanwhile: hand them back.
        return settle(h, handle, messages, false, s.max_batch);
    };
    let size: usize = messages
        .iter()
        .map(|m| m.body.len() + sub.prefix.len() + 96)
        .sum();
    s.out.reserve(size);
    for m in &messages {
        s.out.extend_from_slice(&sub.prefix);
        s.out.extend_from_slice(b"message-id:");
        s.out.extend_from_slice(m.id.as_bytes());
        if sub.mode != AckMode::Auto {
            s.out.extend_from_slice(b"\nack:");
            rules::ack_id(&mut s.out, handle, &m.id);
        }
        if m.attempts > 1 {
            s.out.extend_from_slice(b"\nredelivered:true");
        }
        s.out.extend_from_slice(b"\nnsq-attempts:");
        push_decimal(&mut s.out, u64::from(m.attempts));
        s.out.extend_from_slice(b"\nnsq-timestamp:");
        push_decimal(&mut s.out, u64::try_from(m.timestamp).unwrap_or(0));
        s.out.extend_from_slice(b"\ncontent-length:");
        push_decimal(&mut s.out, m.body.len() as u64);
        s.out.extend_from_slice(b"\n\n");
        s.out.extend_from_slice(&m.body);
        s.out.push(0);
    }
    let mode = sub.mode;
    let written = h.write(&s.out).is_ok();
    s.out.clear();
    if s.out.capacity() > 256 << 10 {
        s.out = Vec::new();
    }
    if s.heart.send_every > 0 {
        s.heart.last_sent = h.now_ms();
    }
    if !written || mode == AckMode::Auto {
        // Not written: back to the channel. Auto: done once written.
        return settle(h, handle, messages, written, s.max_batch);
    }
    let Some(sub) = s.subs.iter_mut().find(|x| x.handle == handle) else {
        return;
    };
    for m in messages {
        if m.attempts > 1 {
            // A redelivery: the earlier delivery's id is stale.
            if let Some(i) = sub.pending.iter().position(|p| *p == m.id) {
                sub.pending.remove(i);
            }
        }
        if sub.pending.len() >= sub.pending_cap {
            sub.pending.pop_front();
        }
        sub.pending.push_back(m.id);
    }
}

/// FINs (`finish`) or requeues at once a whole batch, `max_batch` ids per
/// host call.
fn settle(
    h: &mut impl Host,
    handle: Subscription,
    messages: Vec<Message>,
    finish: bool,
    max_batch: usize,
) {
    let ids: Vec<String> = messages.into_iter().map(|m| m.id).collect();
    for chunk in ids.chunks(max_batch.max(1)) {
        let _ = if finish {
            h.finish_many(handle, chunk)
        } else {
            h.requeue_many(handle, chunk, 0)
        };
    }
}

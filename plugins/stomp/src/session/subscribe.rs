//! SUBSCRIBE, UNSUBSCRIBE and delivery: opening a broker subscription with
//! its prefetch window and channel (shared for `/queue/`, ephemeral per
//! subscription for `/topic/`), and writing MESSAGE frames for a batch
//! (auto mode FINs at once, client modes remember the ids for ACK/NACK).

use std::collections::VecDeque;

use super::{Delivery, Fatal, Host, Session, Sub, destination, fatal, required};
use crate::frame::{Frame, escape_into, push_decimal};
use crate::rules::{self, AckMode, Destination};

pub(super) fn subscribe(s: &mut Session, h: &mut impl Host, f: &Frame) -> Result<(), Fatal> {
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
    if s.subs.len() >= s.settings.max_subscriptions {
        return Err(fatal(
            "too many subscriptions",
            format!(
                "at most {} subscriptions per connection (max_subscriptions)",
                s.settings.max_subscriptions
            ),
        ));
    }
    let window = match f.header("prefetch-count") {
        None => s.settings.prefetch,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map(|n| n.clamp(1, rules::MAX_PREFETCH))
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
    let handle = h.subscribe(topic, &channel).map_err(|why| {
        fatal(
            format!("subscribe to {topic} failed"),
            format!("subscribing to NSQ topic {topic:?} channel {channel:?} failed: {why}"),
        )
    })?;
    if let Err(why) = h.set_ready(handle, window) {
        h.unsubscribe(handle);
        return Err(fatal("subscribe failed", why));
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

pub(super) fn unsubscribe(s: &mut Session, h: &mut impl Host, f: &Frame) -> Result<(), Fatal> {
    let id = required(f, "id")?;
    let i = s.subs.iter().position(|x| x.id == id).ok_or_else(|| {
        fatal(
            "unknown subscription",
            format!("no subscription with id {id:?} on this connection"),
        )
    })?;
    let sub = s.subs.remove(i);
    // Unsubscribing requeues whatever is still unacknowledged.
    h.unsubscribe(sub.handle);
    Ok(())
}

/// Writes MESSAGE frames for a batch; auto-ack subscriptions FIN at once,
/// the others remember the ids for ACK/NACK.
pub(super) fn deliver(s: &mut Session, h: &mut impl Host, handle: u32, messages: Vec<Delivery>) {
    if s.closed {
        return;
    }
    let Some(sub) = s.subs.iter_mut().find(|x| x.handle == handle) else {
        // Unsubscribed meanwhile: hand them back.
        for m in &messages {
            let _ = h.requeue(handle, &m.id, 0);
        }
        return;
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
    let written = h.write(&s.out);
    s.out.clear();
    if s.out.capacity() > 256 << 10 {
        s.out = Vec::new();
    }
    if s.heart.send_every > 0 {
        s.heart.last_sent = h.now_ms();
    }
    let Some(sub) = s.subs.iter_mut().find(|x| x.handle == handle) else {
        return;
    };
    if !written {
        for m in &messages {
            let _ = h.requeue(handle, &m.id, 0);
        }
        return;
    }
    match mode {
        AckMode::Auto => {
            for m in &messages {
                let _ = h.finish(handle, &m.id);
            }
        }
        AckMode::Client | AckMode::ClientIndividual => {
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
    }
}

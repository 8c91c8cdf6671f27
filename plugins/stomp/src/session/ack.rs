//! ACK and NACK: finding the delivery a frame names (1.2 `id`, 1.1
//! `message-id` + `subscription`) without allocating, deferring it into a
//! transaction, and finishing or requeueing it (cumulatively for `client`
//! mode). The acknowledgements of one event are gathered in an `AckBatch`
//! and cross to the gateway as one `finish-many` (or `requeue-many`).

use nsq_sdk::{Host, Subscription};

use super::{AckTarget, Fatal, Frame, Stomp, TxOp, fatal, transaction};
use crate::frame::Command;
use crate::rules::{self, AckMode, MessageId};

/// Acknowledgements on one subscription, all positive or all negative,
/// waiting to be sent in one host call.
pub(super) struct AckBatch {
    /// The subscription of `ids`.
    handle: Subscription,
    /// FIN (`finish-many`) or REQ (`requeue-many`).
    positive: bool,
    /// The message ids, moved from the subscription's pending list.
    ids: Vec<String>,
    /// The broker's `max-batch`: a full batch is sent at once.
    max: usize,
    /// Requeue delay of a NACK (`nack_delay_ms`).
    delay_ms: u32,
}

impl AckBatch {
    pub(super) fn new(max: usize, delay_ms: u32) -> AckBatch {
        AckBatch {
            handle: 0,
            positive: true,
            ids: Vec::new(),
            max: max.max(1),
            delay_ms,
        }
    }

    /// Adds one id, sending what was gathered first if it was for another
    /// subscription or the other verb.
    pub(super) fn push(
        &mut self,
        h: &mut impl Host,
        handle: Subscription,
        positive: bool,
        id: String,
    ) {
        if !self.ids.is_empty() && (self.handle != handle || self.positive != positive) {
            self.flush(h);
        }
        self.handle = handle;
        self.positive = positive;
        self.ids.push(id);
        if self.ids.len() >= self.max {
            self.flush(h);
        }
    }

    /// Sends the gathered ids. Ids no longer in flight (timed out and
    /// redelivered) are skipped by the broker, which is what an ACK of
    /// such a message should do.
    pub(super) fn flush(&mut self, h: &mut impl Host) {
        if self.ids.is_empty() {
            return;
        }
        let _ = if self.positive {
            h.finish_many(self.handle, &self.ids)
        } else {
            h.requeue_many(self.handle, &self.ids, self.delay_ms)
        };
        self.ids.clear();
    }
}

/// Finds the message an ACK/NACK names: STOMP 1.2 sends the MESSAGE's `ack`
/// header as `id`; 1.1 sends `message-id` and `subscription`.
fn ack_target(s: &Stomp, f: &Frame<'_>) -> Result<AckTarget, Fatal> {
    let verb = f.command.name();
    let unknown = |what: &str| {
        fatal(
            format!("{verb} for an unknown message"),
            format!("{verb} {what} does not match a delivery on this connection"),
        )
    };
    let message_id = match f.header("id") {
        Some(id) => {
            if let Some((handle, mid)) = rules::parse_ack_id(id) {
                return match MessageId::parse(mid) {
                    Some(mid) if s.subs.iter().any(|x| x.handle == handle) => {
                        Ok(AckTarget { handle, id: mid })
                    }
                    _ => Err(unknown(&format!("id {id:?}"))),
                };
            }
            id
        }
        None => f.header("message-id").ok_or_else(|| {
            fatal(
                "missing id header",
                format!("{verb} needs the id header (the MESSAGE's ack header)"),
            )
        })?,
    };
    let Some(id) = MessageId::parse(message_id) else {
        return Err(unknown(&format!("id {message_id:?}")));
    };
    let sub = match f.header("subscription") {
        Some(sid) => s.subs.iter().find(|x| x.id == sid),
        None => s.subs.iter().find(|x| x.pending.iter().any(|p| id.is(p))),
    };
    let sub = sub.ok_or_else(|| unknown(&format!("message-id {message_id:?}")))?;
    Ok(AckTarget {
        handle: sub.handle,
        id,
    })
}

pub(super) fn ack(s: &mut Stomp, h: &mut impl Host, f: &Frame<'_>) -> Result<(), Fatal> {
    let target = ack_target(s, f)?;
    let positive = f.command == Command::Ack;
    if f.header("transaction").is_some() {
        let i = transaction::transaction_index(s, f)?;
        s.transactions[i].ops.push(if positive {
            TxOp::Ack(target)
        } else {
            TxOp::Nack(target)
        });
        return Ok(());
    }
    apply_ack(s, h, target, positive);
    Ok(())
}

/// FINs (or REQs) the target and, for `client` mode, every message
/// delivered before it, through the event's `AckBatch`.
pub(super) fn apply_ack(s: &mut Stomp, h: &mut impl Host, target: AckTarget, positive: bool) {
    let Some(sub) = s.subs.iter_mut().find(|x| x.handle == target.handle) else {
        return;
    };
    let acks = &mut s.acks;
    let handle = target.handle;
    let at = sub.pending.iter().position(|p| target.id.is(p));
    match (sub.mode, at) {
        (AckMode::Auto, _) => {}
        (AckMode::ClientIndividual, Some(i)) => {
            if let Some(id) = sub.pending.remove(i) {
                acks.push(h, handle, positive, id);
            }
        }
        (AckMode::Client, Some(i)) => {
            for id in sub.pending.drain(..=i) {
                acks.push(h, handle, positive, id);
            }
        }
        // Not pending here (evicted by the cap, or redelivered): still
        // acknowledged, in case it is in flight.
        (AckMode::ClientIndividual | AckMode::Client, None) => {
            acks.push(h, handle, positive, target.id.as_str().to_string());
        }
    }
}

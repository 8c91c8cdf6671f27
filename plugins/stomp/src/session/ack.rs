//! ACK and NACK: finding the delivery a frame names (1.2 `id`, 1.1
//! `message-id` + `subscription`), deferring it into a transaction, and
//! finishing or requeueing it (cumulatively for `client` mode).

use super::{AckTarget, Fatal, Host, Session, TxOp, fatal, transaction};
use crate::frame::{Command, Frame};
use crate::rules::{self, AckMode};

/// Finds the message an ACK/NACK names: STOMP 1.2 sends the MESSAGE's `ack`
/// header as `id`; 1.1 sends `message-id` and `subscription`.
fn ack_target(s: &Session, f: &Frame) -> Result<AckTarget, Fatal> {
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
                if s.subs.iter().any(|x| x.handle == handle) {
                    return Ok(AckTarget {
                        handle,
                        id: mid.to_string(),
                    });
                }
                return Err(unknown(&format!("id {id:?}")));
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
    if !rules::is_message_id(message_id) {
        return Err(unknown(&format!("id {message_id:?}")));
    }
    let sub = match f.header("subscription") {
        Some(sid) => s.subs.iter().find(|x| x.id == sid),
        None => s
            .subs
            .iter()
            .find(|x| x.pending.iter().any(|p| p == message_id)),
    };
    let sub = sub.ok_or_else(|| unknown(&format!("message-id {message_id:?}")))?;
    Ok(AckTarget {
        handle: sub.handle,
        id: message_id.to_string(),
    })
}

pub(super) fn ack(s: &mut Session, h: &mut impl Host, f: &Frame) -> Result<(), Fatal> {
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
    apply_ack(s, h, &target, positive);
    Ok(())
}

/// FINs (or REQs) the target and, for `client` mode, every message
/// delivered before it. Messages no longer in flight (timed out) are skipped.
pub(super) fn apply_ack(s: &mut Session, h: &mut impl Host, target: &AckTarget, positive: bool) {
    let delay = s.settings.nack_delay_ms;
    let Some(sub) = s.sub_by_handle(target.handle) else {
        return;
    };
    let mut act = |id: &str| {
        let _ = if positive {
            h.finish(target.handle, id)
        } else {
            h.requeue(target.handle, id, delay)
        };
    };
    match sub.mode {
        AckMode::Auto => {}
        AckMode::ClientIndividual => {
            if let Some(i) = sub.pending.iter().position(|p| *p == target.id) {
                sub.pending.remove(i);
            }
            act(&target.id);
        }
        AckMode::Client => match sub.pending.iter().position(|p| *p == target.id) {
            Some(i) => {
                for id in sub.pending.drain(..=i) {
                    act(&id);
                }
            }
            None => act(&target.id),
        },
    }
}

//! SEND and the transactions that may defer it: publishing a SEND at once or
//! buffering it (bounded by `max_transaction_bytes`) in an open transaction,
//! and BEGIN, COMMIT (apply the sends and acks in order) and ABORT.

use nsq_sdk::{Host, describe};

use super::{Fatal, Frame, Stomp, Transaction, TxOp, ack, destination, fatal, required};

pub(super) fn send(s: &mut Stomp, h: &mut impl Host, f: &Frame<'_>) -> Result<(), Fatal> {
    let topic = destination(f)?.topic();
    if f.body.is_empty() {
        return Err(fatal(
            "empty message",
            "NSQ messages cannot be empty: SEND needs a body",
        ));
    }
    if let Some(tx) = f.header("transaction") {
        let tx = tx.to_string();
        let i = find_transaction(s, &tx)?;
        let bytes = s.transaction_bytes + f.body.len();
        if bytes > s.settings.max_transaction_bytes {
            return Err(fatal(
                "transaction too large",
                format!(
                    "open transactions may buffer at most {} bytes",
                    s.settings.max_transaction_bytes
                ),
            ));
        }
        s.transaction_bytes = bytes;
        s.transactions[i].ops.push(TxOp::Send {
            topic: topic.to_string(),
            body: f.body.to_vec(),
        });
        return Ok(());
    }
    publish(h, topic, f.body)
}

fn publish(h: &mut impl Host, topic: &str, body: &[u8]) -> Result<(), Fatal> {
    h.publish(topic, body).map(drop).map_err(|e| {
        fatal(
            format!("publish to {topic} failed"),
            format!("publish to NSQ topic {topic:?} failed: {}", describe(&e)),
        )
    })
}

fn find_transaction(s: &Stomp, id: &str) -> Result<usize, Fatal> {
    s.transactions
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| {
            fatal(
                "unknown transaction",
                format!("transaction {id:?} was not begun (or already ended)"),
            )
        })
}

pub(super) fn transaction_index(s: &Stomp, f: &Frame<'_>) -> Result<usize, Fatal> {
    find_transaction(s, required(f, "transaction")?)
}

fn tx_bytes(tx: &Transaction) -> usize {
    tx.ops
        .iter()
        .map(|op| match op {
            TxOp::Send { body, .. } => body.len(),
            _ => 0,
        })
        .sum()
}

pub(super) fn begin(s: &mut Stomp, f: &Frame<'_>) -> Result<(), Fatal> {
    let id = required(f, "transaction")?;
    if s.transactions.iter().any(|t| t.id == id) {
        return Err(fatal(
            "duplicate transaction",
            format!("transaction {id:?} is already open"),
        ));
    }
    if s.transactions.len() >= s.settings.max_transactions {
        return Err(fatal(
            "too many transactions",
            format!(
                "at most {} open transactions per connection",
                s.settings.max_transactions
            ),
        ));
    }
    s.transactions.push(Transaction {
        id: id.to_string(),
        ops: Vec::new(),
    });
    Ok(())
}

/// Applies a transaction's sends and acks in order. Sends are published one
/// by one: a failure stops the commit with an ERROR (earlier ones stay).
pub(super) fn commit(s: &mut Stomp, h: &mut impl Host, f: &Frame<'_>) -> Result<(), Fatal> {
    let i = transaction_index(s, f)?;
    let tx = s.transactions.remove(i);
    s.transaction_bytes = s.transaction_bytes.saturating_sub(tx_bytes(&tx));
    for op in tx.ops {
        match op {
            TxOp::Send { topic, body } => {
                // In order: the transaction's ACKs before this SEND first.
                s.acks.flush(h);
                publish(h, &topic, &body)?
            }
            TxOp::Ack(t) => ack::apply_ack(s, h, t, true),
            TxOp::Nack(t) => ack::apply_ack(s, h, t, false),
        }
    }
    Ok(())
}

/// Drops a transaction and everything it buffered.
pub(super) fn abort(s: &mut Stomp, f: &Frame<'_>) -> Result<(), Fatal> {
    let id = transaction_index(s, f)?;
    let tx = s.transactions.remove(id);
    s.transaction_bytes = s.transaction_bytes.saturating_sub(tx_bytes(&tx));
    Ok(())
}

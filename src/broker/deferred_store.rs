//! Deferred messages across a graceful restart. While running they live in
//! memory heaps; on shutdown each durable topic or channel writes them to a
//! disk queue of its own (`<queue>~deferred`, `~` never occurs in a valid
//! name) with the wall-clock due time in front of the body, and reads them
//! back at startup, so a deferred message keeps its due time.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use tracing::warn;

use super::diskqueue::{DiskQueue, DiskQueueOptions, SyncPolicy};
use super::message::{Message, now_nanos};

fn queue_name(name: &str) -> String {
    format!("{name}~deferred")
}

/// Writes `(due in Unix nanoseconds, message)` pairs, fsynced.
pub(crate) fn save(
    dir: &Path,
    name: &str,
    opts: &DiskQueueOptions,
    items: &[(i64, Message)],
) -> anyhow::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let mut opts = opts.clone();
    opts.sync = SyncPolicy::Always;
    opts.max_msg_size = opts.max_msg_size.saturating_add(8);
    let mut q = DiskQueue::open(dir, &queue_name(name), opts)?;
    let encoded: Vec<Message> = items
        .iter()
        .map(|(due, m)| {
            let mut body = BytesMut::with_capacity(8 + m.body.len());
            body.extend_from_slice(&due.to_be_bytes());
            body.extend_from_slice(&m.body);
            Message {
                body: body.freeze(),
                ..m.clone()
            }
        })
        .collect();
    q.put_batch(&encoded)?;
    q.sync()?;
    Ok(())
}

/// Reads back and removes what `save` wrote: `(delay from now, message)`.
pub(crate) fn take(
    dir: &Path,
    name: &str,
    opts: &DiskQueueOptions,
) -> Vec<(std::time::Duration, Message)> {
    let qname = queue_name(name);
    let prefix = format!("{}.diskqueue.", super::diskqueue::encode_name(&qname));
    let exists = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
        .unwrap_or(false);
    if !exists {
        return Vec::new();
    }
    let mut opts = opts.clone();
    opts.max_msg_size = opts.max_msg_size.saturating_add(8);
    let mut q = match DiskQueue::open(dir, &qname, opts) {
        Ok(q) => q,
        Err(e) => {
            warn!(queue = %qname, error = %e, "cannot read saved deferred messages");
            return Vec::new();
        }
    };
    let now = now_nanos();
    let mut out = Vec::new();
    while let Some(m) = q.pop() {
        if m.body.len() < 8 {
            warn!(queue = %qname, "skipping a short deferred record");
            continue;
        }
        let mut due = [0u8; 8];
        due.copy_from_slice(&m.body[..8]);
        let due = i64::from_be_bytes(due);
        let delay = std::time::Duration::from_nanos(due.saturating_sub(now).max(0) as u64);
        let body: Bytes = m.body.slice(8..);
        out.push((delay, Message { body, ..m }));
    }
    if let Err(e) = q.delete() {
        warn!(queue = %qname, error = %e, "cannot remove saved deferred messages");
    }
    out
}

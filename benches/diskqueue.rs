//! Throughput of the disk queue alone: puts then pops of 200-byte messages
//! in batches of 200, once per fsync policy (Batch with sync_every 2500, and
//! Always), printed as msgs/s and MB/s.
//!
//! `cargo bench --features bench-hooks --bench diskqueue [-- <messages>]`; files go under
//! `$DISKQUEUE_BENCH_DIR` (default `target/diskqueue-bench`, on the real
//! disk rather than a tmpfs, so fsync costs what it costs).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nsq_gateway::broker::diskqueue::{DiskQueue, DiskQueueOptions, SyncPolicy};
use nsq_gateway::broker::{Message, MessageId};

const BODY: usize = 200;
const BATCH: usize = 200;

fn main() -> std::io::Result<()> {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::var_os("DISKQUEUE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/diskqueue-bench"));
    let body = Bytes::from(vec![b'x'; BODY]);
    let batch: Vec<Message> = (0..BATCH as u64)
        .map(|i| Message {
            id: MessageId::from_u64(i),
            timestamp: 1_700_000_000_000_000_000,
            attempts: 0,
            body: body.clone(),
        })
        .collect();

    println!(
        "{total} messages of {BODY} bytes, batches of {BATCH}, dir {}",
        dir.display()
    );
    for (label, sync, n) in [
        ("batch (sync_every 2500)", SyncPolicy::Batch, total),
        // One fsync per batch: fewer messages keep the run short.
        ("always", SyncPolicy::Always, total / 10),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        let opts = DiskQueueOptions {
            sync,
            sync_every: 2500,
            ..DiskQueueOptions::default()
        };
        let mut q = DiskQueue::open(&dir, "bench:chan", opts)?;
        let batches = n / BATCH;
        let msgs = batches * BATCH;

        let start = Instant::now();
        for _ in 0..batches {
            q.put_batch(&batch).map_err(std::io::Error::other)?;
        }
        q.sync()?;
        report(label, "put", msgs, start.elapsed(), q.fsync_count());
        let fsyncs = q.fsync_count();

        let start = Instant::now();
        let mut got = 0usize;
        while let Some(m) = q.pop() {
            got += m.body.len() / BODY;
        }
        q.sync()?;
        report(label, "pop", got, start.elapsed(), q.fsync_count() - fsyncs);
        if got != msgs {
            eprintln!("  popped {got} of {msgs}");
        }
        q.delete()?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn report(label: &str, op: &str, msgs: usize, took: Duration, fsyncs: u64) {
    let secs = took.as_secs_f64();
    println!(
        "{label:>24} {op}: {msgs:>8} msgs in {:>7.3}s = {:>10.0} msgs/s, {:>7.1} MB/s (bodies), {fsyncs} fsyncs",
        secs,
        msgs as f64 / secs,
        (msgs * BODY) as f64 / secs / 1e6,
    );
}

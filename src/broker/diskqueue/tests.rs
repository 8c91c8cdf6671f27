//! Unit tests of the disk queue against real files in a temporary
//! directory: order across rolls, restarts and crashes, corruption and
//! truncation, space accounting, injected write errors and the fsync policy.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::reader::READ_CHUNK;
use super::record::HEADER_LEN;
use super::*;
use crate::broker::{Message, MessageId};

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "nsq-gateway-dq-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn msg(i: u64) -> Message {
    Message {
        id: MessageId::from_u64(i),
        timestamp: 1_700_000_000_000_000_000 + i as i64,
        attempts: (i % 7) as u16,
        body: Bytes::from(format!("message body number {i:08}")),
    }
}

/// Every message body in these tests has this length.
const BODY: usize = 28;
const REC: u64 = (HEADER_LEN + BODY) as u64;

fn opts() -> DiskQueueOptions {
    DiskQueueOptions {
        max_bytes_per_file: 1024,
        sync_every: 1_000_000,
        sync_timeout: Duration::from_secs(3600),
        sync: SyncPolicy::Batch,
        max_msg_size: 1024,
        max_total_bytes: None,
    }
}

fn id_of(m: &Message) -> u64 {
    let s = std::str::from_utf8(&m.id.0).unwrap();
    u64::from_str_radix(s, 16).unwrap()
}

fn drain(q: &mut DiskQueue) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(m) = q.pop() {
        assert!(same(&m, &msg(id_of(&m))), "record content round-trips");
        out.push(id_of(&m));
    }
    out
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".dat") && !n.contains("meta"))
        .collect();
    v.sort();
    v
}

fn same(a: &Message, b: &Message) -> bool {
    (a.id, a.timestamp, a.attempts, &a.body) == (b.id, b.timestamp, b.attempts, &b.body)
}

#[test]
fn put_pop_order_across_segment_rolls() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    for i in 0..100 {
        q.put(&msg(i)).unwrap();
    }
    let batch: Vec<Message> = (100..200).map(msg).collect();
    for chunk in batch.chunks(10) {
        q.put_batch(chunk).unwrap();
    }
    q.sync().unwrap();
    assert_eq!(q.depth(), 200);
    assert!(segments(d.path()).len() > 5, "{:?}", segments(d.path()));
    for name in segments(d.path()) {
        let len = fs::metadata(d.path().join(&name)).unwrap().len();
        assert!(len <= 1024, "{name} is {len} bytes");
    }
    assert_eq!(drain(&mut q), (0..200).collect::<Vec<_>>());
    assert_eq!(q.depth(), 0);
    // Interleaved puts and pops inside the write segment.
    for i in 200..210 {
        q.put(&msg(i)).unwrap();
        assert_eq!(q.pop().map(|m| id_of(&m)), Some(i));
    }
    assert!(q.pop().is_none());
}

#[test]
fn restart_resumes_exactly() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    let all: Vec<Message> = (0..1000).map(msg).collect();
    for chunk in all.chunks(200) {
        q.put_batch(chunk).unwrap();
    }
    for i in 0..300 {
        assert_eq!(q.pop().map(|m| id_of(&m)), Some(i));
    }
    drop(q);
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(q.depth(), 700);
    q.put(&msg(1000)).unwrap();
    assert_eq!(q.depth(), 701);
    drop(q);
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(q.depth(), 701);
    assert_eq!(drain(&mut q), (300..1001).collect::<Vec<_>>());
    drop(q);
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(q.depth(), 0);
    assert!(q.pop().is_none());
}

#[test]
fn crash_redelivers_only_since_the_last_sync() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    let all: Vec<Message> = (0..100).map(msg).collect();
    q.put_batch(&all).unwrap();
    for _ in 0..40 {
        q.pop().unwrap();
    }
    q.sync().unwrap();
    for _ in 0..25 {
        q.pop().unwrap();
    }
    q.crash();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(q.depth(), 60);
    assert_eq!(drain(&mut q), (40..100).collect::<Vec<_>>());
}

#[test]
fn always_mode_keeps_every_acknowledged_put_across_a_crash() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        sync: SyncPolicy::Always,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o.clone()).unwrap();
    for i in 0..50 {
        q.put(&msg(i)).unwrap();
    }
    // No metadata was ever written: the depth and data come from the files.
    q.crash();
    let mut q = DiskQueue::open(d.path(), "t", o.clone()).unwrap();
    assert_eq!(q.depth(), 50);
    q.put(&msg(50)).unwrap();
    q.crash();
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    assert_eq!(q.depth(), 51);
    assert_eq!(drain(&mut q), (0..51).collect::<Vec<_>>());
}

#[test]
fn batch_mode_loses_nothing_on_clean_close() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    q.put(&msg(1)).unwrap();
    assert_eq!(q.fsync_count(), 1, "the directory only, no data fsync yet");
    drop(q);
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(drain(&mut q), vec![1]);
}

#[test]
fn batch_mode_hands_every_put_to_the_kernel_so_a_process_crash_loses_none() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    for i in 0..30 {
        q.put(&msg(i)).unwrap();
    }
    q.put_batch(&(30..40).map(msg).collect::<Vec<_>>()).unwrap();
    // No sync at all: the bytes are in the kernel's page cache.
    q.crash();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(q.depth(), 40);
    assert_eq!(drain(&mut q), (0..40).collect::<Vec<_>>());
}

#[test]
fn unacked_pops_are_read_again_after_a_crash_from_the_oldest_one() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    q.put_batch(&(0..100).map(msg).collect::<Vec<_>>()).unwrap();
    let popped: Vec<(u64, Ticket)> = (0..60)
        .map(|_| {
            let (m, t) = q.pop_tracked().unwrap();
            (id_of(&m), t)
        })
        .collect();
    // Everything but 20 and 45 finished.
    for &(id, t) in &popped {
        if id != 20 && id != 45 {
            q.ack(t);
        }
    }
    assert_eq!(q.unacked(), 40, "slots from 20 on");
    q.sync().unwrap();
    q.crash();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(q.depth(), 80, "counted from the committed position");
    assert_eq!(drain(&mut q), (20..100).collect::<Vec<_>>());

    // Acking the oldest moves the committed position to the next unacked.
    let d2 = TempDir::new();
    let mut q = DiskQueue::open(d2.path(), "t", opts()).unwrap();
    q.put_batch(&(0..10).map(msg).collect::<Vec<_>>()).unwrap();
    let t: Vec<Ticket> = (0..10).map(|_| q.pop_tracked().unwrap().1).collect();
    for &i in &[1, 2, 0, 4] {
        q.ack(t[i]);
    }
    q.ack(t[0]); // twice: ignored
    q.ack(t[9] + 100); // never handed out: ignored
    assert_eq!(q.unacked(), 7);
    drop(q); // a clean close writes the committed position too
    let mut q = DiskQueue::open(d2.path(), "t", opts()).unwrap();
    assert_eq!(drain(&mut q), (3..10).collect::<Vec<_>>());
}

#[test]
fn a_segment_is_deleted_only_once_every_record_in_it_is_acked() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    for i in 0..100 {
        q.put(&msg(i)).unwrap();
    }
    let before = segments(d.path()).len();
    let (first, t0) = q.pop_tracked().unwrap();
    assert_eq!(id_of(&first), 0);
    let rest: Vec<Ticket> = std::iter::from_fn(|| q.pop_tracked().map(|(_, t)| t)).collect();
    for t in rest {
        q.ack(t);
    }
    assert_eq!(segments(d.path()).len(), before, "message 0 holds them all");
    q.ack(t0);
    assert!(segments(d.path()).len() <= 1, "{:?}", segments(d.path()));
}

#[test]
fn the_unacked_record_is_bounded() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    q.set_max_unacked(50);
    q.put_batch(&(0..80).map(msg).collect::<Vec<_>>()).unwrap();
    let (_, oldest) = q.pop_tracked().unwrap();
    for _ in 1..49 {
        let (_, t) = q.pop_tracked().unwrap();
        q.ack(t);
    }
    assert_eq!(q.unacked(), 49);
    for _ in 49..80 {
        let (_, t) = q.pop_tracked().unwrap();
        q.ack(t);
    }
    // The oldest was given up: acking it now changes nothing.
    q.ack(oldest);
    assert_eq!(q.unacked(), 0);
}

/// Writes ten records in one segment and returns its path.
fn ten_records(d: &TempDir) -> PathBuf {
    let o = DiskQueueOptions {
        max_bytes_per_file: 1 << 20,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    q.put_batch(&(0..10).map(msg).collect::<Vec<_>>()).unwrap();
    drop(q);
    let segs = segments(d.path());
    assert_eq!(segs.len(), 1);
    d.path().join(&segs[0])
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn reopen_and_drain(d: &TempDir) -> Vec<u64> {
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    drain(&mut q)
}

fn all_but(skip: u64) -> Vec<u64> {
    (0..10).filter(|&i| i != skip).collect()
}

#[test]
fn corrupt_body_byte_skips_only_that_record() {
    let d = TempDir::new();
    let seg = ten_records(&d);
    patch(&seg, 5 * REC + HEADER_LEN as u64 + 3, b"X");
    assert_eq!(reopen_and_drain(&d), all_but(5));
}

#[test]
fn huge_length_prefix_resyncs_on_the_marker_without_allocating() {
    let d = TempDir::new();
    let seg = ten_records(&d);
    patch(&seg, 5 * REC + 4, &0xFFFF_FFF0u32.to_le_bytes());
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(drain(&mut q), all_but(5));
    assert!(q.reader_capacity() <= READ_CHUNK + HEADER_LEN + 1024);
}

#[test]
fn plausible_wrong_length_resyncs_on_the_marker() {
    let d = TempDir::new();
    let seg = ten_records(&d);
    // In bounds but wrong: the checksum fails and the length cannot be
    // trusted, so the reader scans for the next marker.
    patch(&seg, 3 * REC + 4, &(BODY as u32 + 17).to_le_bytes());
    assert_eq!(reopen_and_drain(&d), all_but(3));
}

#[test]
fn damaged_marker_skips_that_record() {
    let d = TempDir::new();
    let seg = ten_records(&d);
    patch(&seg, 7 * REC, b"\0");
    assert_eq!(reopen_and_drain(&d), all_but(7));
}

#[test]
fn corrupt_first_and_last_records() {
    let d = TempDir::new();
    let seg = ten_records(&d);
    patch(&seg, HEADER_LEN as u64, b"?");
    patch(&seg, 9 * REC + 9, b"?");
    assert_eq!(reopen_and_drain(&d), (1..9).collect::<Vec<_>>());
}

#[test]
fn truncated_tail_keeps_earlier_records_and_later_puts_work() {
    let d = TempDir::new();
    let seg = ten_records(&d);
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(10 * REC - 10).unwrap();
    drop(f);
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(q.depth(), 9);
    q.put(&msg(100)).unwrap();
    q.put(&msg(101)).unwrap();
    let mut want: Vec<u64> = (0..9).collect();
    want.extend([100, 101]);
    assert_eq!(drain(&mut q), want);
    drop(q);
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert!(q.pop().is_none());
}

#[test]
fn truncated_inside_a_header() {
    let d = TempDir::new();
    let seg = ten_records(&d);
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(6 * REC + 3).unwrap();
    drop(f);
    assert_eq!(reopen_and_drain(&d), (0..6).collect::<Vec<_>>());
}

#[test]
fn consumed_segments_are_deleted() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    for i in 0..100 {
        q.put(&msg(i)).unwrap();
    }
    q.sync().unwrap();
    let before = segments(d.path()).len();
    assert!(before >= 5);
    for _ in 0..50 {
        q.pop().unwrap();
    }
    let mid = segments(d.path()).len();
    assert!(mid < before && mid > 1, "{before} -> {mid}");
    assert_eq!(drain(&mut q).len(), 50);
    assert!(segments(d.path()).len() <= 1, "{:?}", segments(d.path()));
    assert!(q.total_bytes() <= 1024);
}

#[test]
fn max_total_bytes_is_a_clean_error_and_pops_free_space() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        max_total_bytes: Some(10 * REC),
        max_bytes_per_file: 2 * REC,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    for i in 0..10 {
        q.put(&msg(i)).unwrap();
    }
    assert!(matches!(q.put(&msg(10)), Err(DiskQueueError::Full { .. })));
    let batch = [msg(10), msg(11)];
    assert!(matches!(
        q.put_batch(&batch),
        Err(DiskQueueError::Full { .. })
    ));
    assert_eq!(q.depth(), 10);
    // Consuming a whole segment gives its space back.
    assert_eq!(q.pop().map(|m| id_of(&m)), Some(0));
    assert_eq!(q.pop().map(|m| id_of(&m)), Some(1));
    assert_eq!(q.pop().map(|m| id_of(&m)), Some(2));
    q.put_batch(&batch).unwrap();
    assert_eq!(drain(&mut q), (3..12).collect::<Vec<_>>());
}

#[test]
fn cap_smaller_than_a_segment_still_recovers() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        max_total_bytes: Some(10 * REC),
        max_bytes_per_file: 1 << 20,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    for i in 0..10 {
        q.put(&msg(i)).unwrap();
    }
    assert!(matches!(q.put(&msg(10)), Err(DiskQueueError::Full { .. })));
    // Fully drained: the write segment is dropped at the next put.
    assert_eq!(drain(&mut q), (0..10).collect::<Vec<_>>());
    for i in 10..20 {
        q.put(&msg(i)).unwrap();
    }
    // Half read: the segment is finished, and deleted once read.
    for i in 10..15 {
        assert_eq!(q.pop().map(|m| id_of(&m)), Some(i));
    }
    assert!(matches!(q.put(&msg(20)), Err(DiskQueueError::Full { .. })));
    for i in 15..20 {
        assert_eq!(q.pop().map(|m| id_of(&m)), Some(i));
    }
    q.put(&msg(20)).unwrap();
    assert_eq!(drain(&mut q), vec![20]);
    assert_eq!(segments(d.path()).len(), 1);
}

#[test]
fn too_large_message_is_refused() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    let mut m = msg(1);
    m.body = Bytes::from(vec![0u8; 1025]);
    assert!(matches!(
        q.put(&m),
        Err(DiskQueueError::MessageTooLarge { size: 1025, .. })
    ));
    assert_eq!(q.depth(), 0);
}

#[test]
fn injected_write_error_is_returned_and_the_queue_stays_usable() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        sync: SyncPolicy::Always,
        max_bytes_per_file: 1 << 20,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o.clone()).unwrap();
    for i in 0..5 {
        q.put(&msg(i)).unwrap();
    }
    // A short write: half a record reaches the file, then the error.
    q.inject_write_error_after(REC / 2);
    let batch = [msg(5), msg(6)];
    assert!(matches!(q.put_batch(&batch), Err(DiskQueueError::Io(_))));
    assert_eq!(q.depth(), 5);
    for i in 7..10 {
        q.put(&msg(i)).unwrap();
    }
    assert_eq!(drain(&mut q), vec![0, 1, 2, 3, 4, 7, 8, 9]);
    q.put(&msg(10)).unwrap();
    drop(q);
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    assert_eq!(drain(&mut q), vec![10]);
}

#[test]
fn injected_error_in_batch_mode_fails_that_put_and_keeps_the_earlier_ones() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    q.put(&msg(0)).unwrap();
    q.put(&msg(1)).unwrap();
    q.inject_write_error_after(5);
    // The failing put is refused (never acknowledged); the earlier ones
    // were written by their own put.
    assert!(q.put(&msg(2)).is_err());
    q.put(&msg(3)).unwrap();
    q.crash();
    assert_eq!(reopen_and_drain(&d), vec![0, 1, 3]);
}

#[test]
fn always_policy_fsyncs_every_put_and_batch_policy_every_n() {
    let d = TempDir::new();
    let always = DiskQueueOptions {
        sync: SyncPolicy::Always,
        max_bytes_per_file: 1 << 20,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "a", always).unwrap();
    q.put(&msg(0)).unwrap(); // + directory fsync for the new segment
    let base = q.fsync_count();
    for i in 1..11 {
        q.put(&msg(i)).unwrap();
    }
    assert_eq!(q.fsync_count() - base, 10);
    q.put_batch(&(11..111).map(msg).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(q.fsync_count() - base, 11, "one fsync per batch");

    let batch = DiskQueueOptions {
        sync_every: 100,
        max_bytes_per_file: 1 << 20,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "b", batch).unwrap();
    q.put(&msg(0)).unwrap(); // + directory fsync for the new segment
    assert_eq!(q.fsync_count(), 1);
    for i in 1..99 {
        q.put(&msg(i)).unwrap();
    }
    assert_eq!(q.fsync_count(), 1);
    q.put(&msg(99)).unwrap();
    // Directory, data and (first time) metadata.
    assert_eq!(q.fsync_count(), 3);
    for i in 100..200 {
        q.put(&msg(i)).unwrap();
    }
    // Only puts in the same segment since: the data alone.
    assert_eq!(q.fsync_count(), 4);
    for _ in 0..100 {
        q.pop().unwrap();
    }
    // Pops moved the read position: data (nothing new) and metadata.
    assert_eq!(q.fsync_count(), 5);
}

#[test]
fn depth_is_exact_after_a_crash_with_stale_metadata() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        sync_every: 10,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o.clone()).unwrap();
    for i in 0..95 {
        q.put(&msg(i)).unwrap();
    }
    for _ in 0..12 {
        q.pop().unwrap();
    }
    for i in 95..133 {
        q.put(&msg(i)).unwrap();
    }
    // Every put was written to the kernel by itself, so all of them are
    // there whatever the syncs did. Puts and pops count together toward
    // sync_every, so the metadata was written with a read position of at
    // most 12.
    q.crash();
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    let depth = q.depth();
    let got = drain(&mut q);
    assert_eq!(depth, got.len() as u64, "depth recounted exactly");
    let first = got[0];
    assert!(first <= 12, "{first}");
    assert_eq!(got, (first..first + got.len() as u64).collect::<Vec<_>>());
    assert_eq!(*got.last().unwrap(), 132, "{got:?}");
}

#[test]
fn maybe_sync_honours_the_timeout() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        sync_timeout: Duration::from_secs(2),
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    let t0 = Instant::now();
    q.maybe_sync(t0).unwrap();
    q.put(&msg(0)).unwrap();
    q.maybe_sync(t0 + Duration::from_millis(500)).unwrap();
    assert_eq!(q.fsync_count(), 1, "the new segment's directory entry only");
    q.maybe_sync(t0 + Duration::from_secs(3)).unwrap();
    assert!(q.fsync_count() >= 3);
    q.crash();
    assert_eq!(reopen_and_drain(&d), vec![0]);
}

#[test]
fn names_are_encoded_and_queues_do_not_mix() {
    let d = TempDir::new();
    assert_eq!(encode_name("topic:chan_1.x-y"), "topic%3Achan_1.x-y");
    assert_eq!(encode_name("a%b/c"), "a%25b%2Fc");
    let mut a = DiskQueue::open(d.path(), "a", opts()).unwrap();
    let mut ab = DiskQueue::open(d.path(), "a:b", opts()).unwrap();
    let mut tricky = DiskQueue::open(d.path(), "a.diskqueue.000001", opts()).unwrap();
    a.put(&msg(1)).unwrap();
    ab.put(&msg(2)).unwrap();
    tricky.put(&msg(3)).unwrap();
    drop((a, ab, tricky));
    assert!(
        segments(d.path())
            .iter()
            .any(|n| n.starts_with("a%3Ab.diskqueue."))
    );
    for (name, want) in [("a", 1), ("a:b", 2), ("a.diskqueue.000001", 3)] {
        let mut q = DiskQueue::open(d.path(), name, opts()).unwrap();
        assert_eq!(drain(&mut q), vec![want], "{name}");
    }
}

#[test]
fn empty_and_delete_remove_the_files() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    for i in 0..50 {
        q.put(&msg(i)).unwrap();
    }
    q.sync().unwrap();
    q.empty().unwrap();
    assert_eq!(q.depth(), 0);
    assert!(segments(d.path()).is_empty());
    assert!(q.pop().is_none());
    q.put(&msg(7)).unwrap();
    drop(q);
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    assert_eq!(drain(&mut q), vec![7]);
    q.delete().unwrap();
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn corrupt_metadata_falls_back_to_redelivery() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    q.put_batch(&(0..5).map(msg).collect::<Vec<_>>()).unwrap();
    q.pop().unwrap();
    drop(q);
    fs::write(d.path().join("t.diskqueue.meta.dat"), "garbage").unwrap();
    assert_eq!(reopen_and_drain(&d), (0..5).collect::<Vec<_>>());
}

#[test]
fn batch_sync_runs_in_the_background_and_a_stalled_one_holds_puts_only_at_twice_sync_every() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        sync_every: 10,
        max_bytes_per_file: 1 << 20,
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    for i in 0..10 {
        q.put(&msg(i)).unwrap();
    }
    // The 10th put handed the fsync and the metadata to the pool.
    assert_eq!(q.fsync_count(), 3, "directory, data and metadata");

    // The disk stalls with a sync in flight: puts go on, unsynced, up to
    // twice sync_every; the put that reaches it waits for the disk.
    q.bg.hold();
    for i in 10..29 {
        q.put(&msg(i)).unwrap();
    }
    assert!(q.bg.busy(), "nothing was submitted behind the stalled sync");
    let bg = q.bg.clone();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        bg.release(None);
    });
    let t0 = std::time::Instant::now();
    q.put(&msg(29)).unwrap();
    let waited = t0.elapsed();
    release.join().unwrap();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    // That put's sync wrote the buffer out: a crash now loses nothing.
    q.crash();
    assert_eq!(reopen_and_drain(&d), (0..30).collect::<Vec<_>>());
}

#[test]
fn a_failed_background_sync_is_reported_once_and_redone() {
    let d = TempDir::new();
    let o = DiskQueueOptions {
        sync_timeout: Duration::from_secs(2),
        ..opts()
    };
    let mut q = DiskQueue::open(d.path(), "t", o).unwrap();
    let t0 = Instant::now();
    q.put(&msg(0)).unwrap();
    q.maybe_sync(t0 + Duration::from_secs(3)).unwrap();
    q.bg.wait_idle();
    // The next background job fails (an fsync error on a failing disk).
    q.bg.hold();
    q.bg.release(Some(io::Error::other("injected fsync failure")));
    q.put(&msg(1)).unwrap();
    let err = q.maybe_sync(t0 + Duration::from_secs(6)).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    // Reported once; everything is marked dirty and the next sync redoes it.
    q.maybe_sync(t0 + Duration::from_secs(9)).unwrap();
    q.crash();
    assert_eq!(reopen_and_drain(&d), vec![0, 1]);
}

#[test]
fn a_full_sync_after_a_failed_background_sync_redoes_it() {
    let d = TempDir::new();
    let mut q = DiskQueue::open(d.path(), "t", opts()).unwrap();
    q.put(&msg(0)).unwrap();
    q.bg.hold();
    q.bg.release(Some(io::Error::other("injected fsync failure")));
    // The full sync logs the old failure and syncs everything itself.
    q.sync().unwrap();
    assert!(q.bg.take_error().is_none(), "consumed by the full sync");
    q.put(&msg(1)).unwrap();
    q.sync().unwrap();
    q.crash();
    assert_eq!(reopen_and_drain(&d), vec![0, 1]);
}

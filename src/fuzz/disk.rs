//! Fuzz targets of what the broker reads back from disk: the disk queue's
//! record decoder and metadata parser (a damaged or hostile file must never
//! crash the broker or make it allocate a damaged length), their round
//! trips, and the whole read-back path of the deferred store (segment and
//! metadata files opened by a real `DiskQueue`, records decoded into due
//! times) over damaged files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::Unstructured;

use crate::broker::deferred_store;
use crate::broker::diskqueue::meta::{MAX_SEGMENT, Meta, Pos};
use crate::broker::diskqueue::record::{self, Corruption, Decoded, HEADER_LEN};
use crate::broker::diskqueue::{DiskQueueOptions, SyncPolicy, encode_name};
use crate::broker::{Message, MessageId};

const MAX_MSG: u32 = 1024;

fn msg(id: u64, body: &'static [u8]) -> Message {
    Message {
        id: MessageId::from_u64(id),
        timestamp: 1_700_000_000_000_000_000,
        attempts: 2,
        body: Bytes::from_static(body),
    }
}

fn records(msgs: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        record::encode(m, &mut out);
    }
    out
}

/// Decodes records one after the other like the reader does (resyncing on
/// the magic after a corrupt one) and checks each outcome's contract.
fn record_decode(data: &[u8]) -> Vec<u8> {
    let mut pos = 0;
    let mut kinds = Vec::new();
    for _ in 0..64 {
        let rest = &data[pos..];
        match record::decode(rest, MAX_MSG) {
            Decoded::Record { msg, len } => {
                assert!(len >= HEADER_LEN && len <= rest.len());
                assert!(msg.body.len() <= MAX_MSG as usize);
                let mut again = Vec::new();
                record::encode(&msg, &mut again);
                assert_eq!(again, &rest[..len], "re-encoding differs");
                kinds.push(0);
                pos += len;
            }
            Decoded::Incomplete { need } => {
                assert!(need > rest.len(), "need {need} but have {}", rest.len());
                assert!(need <= HEADER_LEN + MAX_MSG as usize, "need {need}");
                kinds.push(1);
                break;
            }
            Decoded::Corrupt(c) => {
                if let Corruption::TooLong(len) = c {
                    assert!(len > MAX_MSG);
                }
                kinds.push(2);
                match record::find_magic(&rest[1..]) {
                    Some(at) => pos += 1 + at,
                    None => break,
                }
            }
        }
        if pos >= data.len() {
            break;
        }
    }
    kinds
}

#[test]
fn fuzz_disk_record_decode() {
    let valid = records(&[msg(1, b"hello"), msg(2, b"x"), msg(3, &[0xD5; 40])]);
    Fuzzer::new("disk_record_decode")
        .seed(&valid)
        .seed(&valid[..valid.len() - 3])
        .dict([&record::MAGIC[..]])
        .max_len(8192)
        .max_alloc(16 * 1024)
        .run(record_decode);
}

/// decode(encode(m)) == m for any message within the size bound.
fn record_round_trip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let id: [u8; 16] = u.arbitrary().unwrap_or_default();
    let timestamp: i64 = u.arbitrary().unwrap_or_default();
    let attempts: u16 = u.arbitrary().unwrap_or_default();
    let n = u.int_in_range(0..=MAX_MSG as usize).unwrap_or(0);
    let body = u.bytes(n.min(u.len())).unwrap_or_default().to_vec();
    let m = Message {
        id: MessageId(id),
        timestamp,
        attempts,
        body: body.into(),
    };
    let mut buf = Vec::new();
    record::encode(&m, &mut buf);
    assert_eq!(buf.len(), record::encoded_len(m.body.len()));
    match record::decode(&buf, MAX_MSG) {
        Decoded::Record { msg, len } => {
            assert_eq!(len, buf.len());
            assert_eq!(
                (msg.id, msg.timestamp, msg.attempts),
                (m.id, m.timestamp, m.attempts)
            );
            assert_eq!(msg.body, m.body);
        }
        other => panic!("own record rejected: {other:?}"),
    }
}

#[test]
fn fuzz_disk_record_round_trip() {
    Fuzzer::new("disk_record_round_trip")
        .seed([9u8; 80])
        .max_len(2048)
        .run(record_round_trip);
}

/// The metadata parser on any text, and its round trip.
fn meta_decode(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let parsed = Meta::decode(&text);
    if let Some(m) = parsed {
        assert!(m.read <= m.write);
        assert_eq!(Meta::decode(&m.encode()), Some(m));
    }
    let mut u = Unstructured::new(data);
    // Any position a queue can reach: segment numbers up to `MAX_SEGMENT`.
    let pos = |u: &mut Unstructured<'_>| Pos {
        seg: u.arbitrary::<u64>().unwrap_or_default() % (MAX_SEGMENT + 1),
        off: u.arbitrary().unwrap_or_default(),
    };
    let (a, b) = (pos(&mut u), pos(&mut u));
    let m = Meta {
        depth: u.arbitrary().unwrap_or_default(),
        read: a.min(b),
        write: a.max(b),
    };
    assert_eq!(Meta::decode(&m.encode()), Some(m));
    parsed.is_some()
}

#[test]
fn fuzz_disk_meta_decode() {
    let m = Meta {
        depth: 5,
        read: Pos { seg: 1, off: 20 },
        write: Pos { seg: 3, off: 4096 },
    };
    Fuzzer::new("disk_meta_decode")
        .seed(m.encode())
        .dict([
            &b"nsq-gateway diskqueue v1\n"[..],
            b",",
            b"\n",
            b"18446744073709551615",
        ])
        .max_len(1024)
        .max_alloc(16 * 1024)
        .run(meta_decode);
}

/// A directory removed when the target ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        // Memory-backed where there is one: fsyncs cost nothing there, so
        // the budget goes to inputs rather than to the disk.
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!(
            "nsq-gateway-fuzz-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts() -> DiskQueueOptions {
    DiskQueueOptions {
        max_bytes_per_file: 4096,
        sync: SyncPolicy::Batch,
        max_msg_size: MAX_MSG,
        ..DiskQueueOptions::default()
    }
}

const QUEUE: &str = "fuzz";

/// File names of the deferred store's queue for `QUEUE`.
fn prefix() -> String {
    format!("{}.diskqueue.", encode_name(&format!("{QUEUE}~deferred")))
}

/// The files `deferred_store::save` writes for a few real messages, as one
/// fuzz input: `[flags][meta text]\0[segment bytes]`.
fn saved_seed() -> Vec<u8> {
    let dir = TempDir::new("seed");
    let items = vec![
        (1_000i64, msg(1, b"due long ago")),
        (i64::MAX, msg(2, b"due never")),
        (2_000_000_000_000_000_000, msg(3, b"x")),
    ];
    deferred_store::save(&dir.0, QUEUE, &opts(), &items).expect("save the seed");
    let read = |name: &str| std::fs::read(dir.0.join(format!("{}{name}", prefix())));
    let meta = read("meta.dat").unwrap_or_default();
    let seg = read("000000.dat").expect("the seed segment");
    [&[1u8][..], &meta, b"\0", &seg].concat()
}

/// Lays damaged files where the deferred store looks and reads them back.
/// The outcome includes the magnitude of each metadata number, so inputs
/// that move them toward their bounds are kept.
fn deferred_take(dir: &TempDir, data: &[u8]) -> (usize, u8, Option<[u32; 5]>) {
    let (flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let (meta, seg) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (&[][..], rest),
    };
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).expect("recreate the temp dir");
    let file = |name: &str| dir.0.join(format!("{}{name}", prefix()));
    if flags & 1 != 0 {
        std::fs::write(file("meta.dat"), meta).expect("write meta");
    }
    if flags & 2 == 0 {
        std::fs::write(file("000000.dat"), seg).expect("write a segment");
    }
    if flags & 4 != 0 {
        // A second segment: records split over a roll.
        std::fs::write(
            file("000001.dat"),
            seg.get(seg.len() / 2..).unwrap_or_default(),
        )
        .expect("write a segment");
    }
    let items = deferred_store::take(&dir.0, QUEUE, &opts());
    for (_, m) in &items {
        assert!(m.body.len() <= MAX_MSG as usize);
    }
    let shape = Meta::decode(&String::from_utf8_lossy(meta)).map(|m| {
        [m.depth, m.read.seg, m.read.off, m.write.seg, m.write.off].map(|n| 64 - n.leading_zeros())
    });
    (items.len(), flags & 7, shape)
}

#[test]
fn fuzz_deferred_store_take() {
    let dir = TempDir::new("deferred");
    let seed = saved_seed();
    // Metadata alone, as after the segments were lost.
    let no_segment = [&[3u8][..], b"nsq-gateway diskqueue v1\n2\n0,0\n1,0\n\0"].concat();
    Fuzzer::new("deferred_store_take")
        .seed(&seed)
        .seed(no_segment)
        .dict([
            &record::MAGIC[..],
            b"nsq-gateway diskqueue v1\n",
            b"18446744073709551615",
        ])
        .max_len(4096)
        // The segment reader's buffer: one 256 KiB read chunk (or a record
        // of at most `HEADER_LEN + max_msg_size`), which growth may double.
        .max_alloc(1 << 20)
        .run(|d| deferred_take(&dir, d));
}

/// A disk queue opened on a damaged metadata file alone (its segments were
/// lost), which is fast enough to explore the positions' bounds.
#[test]
fn fuzz_disk_queue_meta_file() {
    let dir = TempDir::new("meta");
    Fuzzer::new("disk_queue_meta_file")
        .seed(b"nsq-gateway diskqueue v1\n2\n0,0\n1,0\n")
        .seed(b"nsq-gateway diskqueue v1\n0\n3,100\n7,0\n")
        .max_len(256)
        .max_alloc(1 << 20)
        .run(|meta| deferred_take(&dir, &[&[3u8][..], meta].concat()));
}

/// Inputs the targets above once failed on, kept as plain tests.
mod regressions {
    use super::*;

    /// `DiskQueue::open` overflowed on metadata naming segment `u64::MAX`
    /// with no segment files left.
    #[test]
    fn meta_at_the_last_segment_number() {
        let dir = TempDir::new("regress");
        let meta = b"nsq-gateway diskqueue v1\n2\n0,0\n18446744073709551615,28793222\n\x00\xf6";
        assert_eq!(deferred_take(&dir, &[&[3u8][..], meta].concat()).0, 0);
    }

    /// The same through a segment file named with the last number.
    #[test]
    fn segment_named_with_the_last_number() {
        let dir = TempDir::new("regress");
        let name = format!("{}18446744073709551615.dat", prefix());
        std::fs::write(dir.0.join(name), b"junk").expect("write a segment");
        assert!(deferred_store::take(&dir.0, QUEUE, &opts()).is_empty());
    }

    /// Metadata one short of the last number opened fine but overflowed at
    /// the next roll; numbers past `MAX_SEGMENT` are now damage, so a queue
    /// opened on them starts afresh and rolls as usual.
    #[test]
    fn meta_near_the_last_segment_number_then_rolls() {
        use crate::broker::diskqueue::DiskQueue;
        for seg in [u64::MAX - 1, MAX_SEGMENT + 1] {
            let dir = TempDir::new("regress");
            let meta = format!("nsq-gateway diskqueue v1\n0\n{seg},0\n{seg},0\n");
            std::fs::write(dir.0.join("q.diskqueue.meta.dat"), meta).expect("write meta");
            let mut q = DiskQueue::open(&dir.0, "q", opts()).expect("open");
            for i in 0..100 {
                q.put_batch(&[msg(i, &[b'x'; 100])])
                    .expect("put across segments");
            }
            assert_eq!(q.depth(), 100);
        }
    }
}

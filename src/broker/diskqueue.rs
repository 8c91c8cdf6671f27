//! The append-only disk queue behind one topic or channel: messages that do
//! not fit in the memory queue are appended to numbered segment files and
//! read back in order, with a checksum per record, an fsync policy, and a
//! read position that survives restarts. It is synchronous and owned by one
//! queue, because it is called under that queue's `std::sync::Mutex`.
//!
//! Files, for a queue named `name` in `dir` (the name is percent-encoded:
//! every byte outside `[A-Za-z0-9._-]` becomes `%XX`, so `topic:channel` is
//! stored as `topic%3Achannel`):
//! - `<name>.diskqueue.<NNNNNN>.dat`: segments, rolled before a write would
//!   take one past `max_bytes_per_file` (a single batch larger than that gets
//!   a segment of its own). Records are described in [`record`].
//! - `<name>.diskqueue.meta.dat`: depth and positions, see [`meta`].
//!
//! Guarantees. With [`SyncPolicy::Always`], `put` returns only after the
//! record is fsynced, so an acknowledged message survives power loss. With
//! [`SyncPolicy::Batch`], every `put_batch` hands its records to the kernel
//! with one write before it returns, so they survive any crash of the
//! process; the fsync is periodic (every `sync_every` puts plus pops or
//! `sync_timeout`) and runs in the background (see [`syncer`]): a sync that
//! falls due while the last one still runs is retried by the next put or
//! pop, and the put or pop that reaches twice `sync_every` waits for it. So
//! a power loss may lose up to about twice `sync_every` messages.
//!
//! Acknowledged reads. `pop_tracked` hands out each record with a
//! [`Ticket`]; the queue keeps the start of every popped record until its
//! ticket comes back through `ack`. The read position written to the
//! metadata is the *committed* one: the start of the oldest record popped
//! and not acked (or the next unread record). So after a crash everything
//! not acked is read again (at least once; duplicates are expected), and a
//! segment file is deleted only once the committed position has left it.
//! The record of unacked pops is bounded by [`MAX_UNACKED`]; past it the
//! oldest is given up (logged), so one message held for very long cannot
//! grow it without limit. The write end is never taken from the
//! metadata: every open starts a new segment after the existing ones, so a
//! torn tail left by a crash is just a truncated record at the end of a
//! finished segment, which the reader logs and steps over.
//!
//! Layout: this file holds the queue's state and small accessors; [`open`]
//! resumes it from disk, [`write`] appends, [`pop`] reads through
//! [`reader`] (one segment's positional reads), [`acks`] keeps the
//! tickets and the committed read position, [`sync`] decides when data and
//! metadata are fsynced and [`syncer`] does it in the background.

pub(crate) mod meta;
pub(crate) mod record;
mod syncer;

mod acks;
mod open;
mod pop;
mod reader;
mod sync;
mod write;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use meta::Pos;
use open::list_segments;
use reader::SegmentReader;

/// Most records popped and not yet acked that a queue remembers; past it
/// the oldest is treated as acked (its crash safety given up, logged). A
/// slot is 24 bytes, so this is at most 24 MiB for a queue whose oldest
/// message stays unfinished while a million later ones pass it.
pub const MAX_UNACKED: usize = 1 << 20;

/// When data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every `sync_every` messages (puts plus pops) or `sync_timeout`, as nsqd.
    Batch,
    /// Every `put`/`put_batch` is fsynced before it returns.
    Always,
}

/// Limits and fsync policy of a disk queue, with nsqd's defaults.
#[derive(Debug, Clone)]
pub struct DiskQueueOptions {
    /// Segment size at which a new file is started.
    pub max_bytes_per_file: u64,
    /// Messages (put or popped) between syncs in `Batch` mode; 0 acts as 1.
    pub sync_every: u64,
    /// Longest time dirty data waits for a sync, via `maybe_sync`.
    pub sync_timeout: Duration,
    pub sync: SyncPolicy,
    /// Largest body accepted, and the bound that tells a damaged length
    /// prefix from a real one.
    pub max_msg_size: u32,
    /// Cap on the bytes of segment files; `None` means no cap. Space is
    /// given back when a fully consumed segment is deleted; when the cap is
    /// hit while the reader is in the write segment, that segment is
    /// finished early so that reading it through frees it.
    pub max_total_bytes: Option<u64>,
}

impl Default for DiskQueueOptions {
    fn default() -> Self {
        DiskQueueOptions {
            max_bytes_per_file: 100 * 1024 * 1024,
            sync_every: 2500,
            sync_timeout: Duration::from_secs(2),
            sync: SyncPolicy::Batch,
            max_msg_size: 1024 * 1024,
            max_total_bytes: None,
        }
    }
}

/// Why a put failed. The queue stays usable after any of them.
#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    #[error("message body of {size} bytes exceeds max-msg-size {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("disk queue full: {used} + {needed} bytes exceeds the cap of {limit}")]
    Full { used: u64, needed: u64, limit: u64 },
    #[error("disk queue I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A popped record, as handed to `ack`: its pop sequence number.
pub type Ticket = u64;

/// One queue's segment files. See the module docs for the guarantees.
pub struct DiskQueue {
    /// The queue's name as given, for logs.
    name: String,
    dir: PathBuf,
    /// `<encoded name>.diskqueue.`, the start of every file name.
    prefix: String,
    opts: DiskQueueOptions,
    /// Records not yet popped. Exact unless records were skipped as
    /// corrupt; reset to 0 whenever the reader catches up with the writer.
    depth: u64,
    /// Next record to pop.
    read: Pos,
    /// Open handle and read-ahead buffer for `read.seg`.
    reader: Option<SegmentReader>,
    /// Segment being appended to; always the last one.
    write_seg: u64,
    /// Opened lazily, so a queue that never spills creates no file.
    write_file: Option<Arc<File>>,
    /// Bytes of `write_seg` handed to the OS; always a record boundary, and
    /// the reader never reads past it in `write_seg`.
    flushed: u64,
    /// Encoded records of the `put_batch` in progress, written with one
    /// write(2) before it returns (reused, so a put allocates nothing).
    write_buf: Vec<u8>,
    /// Start of every record popped since the committed read position, and
    /// whether it was acked: the persisted read position is the first slot
    /// (see the module docs). Acked slots at the front are dropped at once.
    unacked: VecDeque<(Pos, bool)>,
    /// Ticket of `unacked[0]`; tickets below it are acked already.
    unacked_base: Ticket,
    /// Oldest segment whose file may still exist: files before the
    /// committed read position's segment are deleted up to it.
    first_seg: u64,
    /// `MAX_UNACKED`, lowered by tests.
    max_unacked: usize,
    /// The `max_unacked` overflow was logged (once per queue).
    unacked_overflow_logged: bool,
    /// Bytes in all segment files plus `write_buf`, for `max_total_bytes`.
    total_bytes: u64,
    /// Bytes were written to `write_file` since its last fsync.
    data_unsynced: bool,
    /// Depth or a position changed since the metadata was last written.
    meta_dirty: bool,
    /// Pops moved the read position since the metadata was written. The
    /// periodic sync writes the metadata only then, or when the write
    /// segment changed: after puts alone the data fsync is enough, since
    /// open recounts the records after the metadata's write end (at most
    /// about one segment), which halves the fsyncs of a put-only backlog.
    read_dirty: bool,
    /// `write_seg` when the metadata was last written (`u64::MAX`: never).
    meta_write_seg: u64,
    /// Puts and pops since the last sync, against `sync_every`.
    since_sync: u64,
    last_sync: Instant,
    /// fsync calls made, for tests and stats.
    fsyncs: u64,
    /// The periodic syncs handed to the background pool (`Batch` mode).
    bg: Arc<syncer::Tracker>,
    /// Test hook: the number of bytes that may still be written before a
    /// write fails (after writing that many, like a short write).
    fail_after: Option<u64>,
    /// Set by `delete` so that `Drop` does not write the files back.
    closed: bool,
}

impl DiskQueue {
    /// Messages waiting.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// Drops every message and deletes the segment files.
    pub fn empty(&mut self) -> io::Result<()> {
        self.bg.wait_idle();
        self.reader = None;
        self.write_file = None;
        self.write_buf.clear();
        self.remove_segments()?;
        self.write_seg += 1;
        self.flushed = 0;
        self.read = Pos {
            seg: self.write_seg,
            off: 0,
        };
        self.depth = 0;
        self.unacked_base += self.unacked.len() as u64;
        self.unacked.clear();
        self.first_seg = self.write_seg;
        self.total_bytes = 0;
        self.data_unsynced = false;
        self.meta_dirty = true;
        self.sync()
    }

    /// Removes every file of the queue (its topic or channel was deleted).
    pub fn delete(mut self) -> io::Result<()> {
        self.bg.wait_idle();
        self.closed = true;
        self.reader = None;
        self.write_file = None;
        self.remove_segments()?;
        for p in [self.meta_path(), self.meta_tmp_path()] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Bytes held in segment files (and not yet written), against the cap.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// fsync calls made so far (data and metadata), once the background
    /// sync in flight, if any, has finished. Tests and benches only.
    #[cfg(any(test, feature = "bench-hooks"))]
    pub fn fsync_count(&self) -> u64 {
        self.bg.wait_idle();
        self.fsyncs + self.bg.fsyncs()
    }

    /// Test hook: after `n` more bytes are written to segment files, the
    /// next write fails (having written up to `n` bytes, like a short write
    /// on a full disk). One-shot.
    #[cfg(test)]
    pub fn inject_write_error_after(&mut self, n: u64) {
        self.fail_after = Some(n);
    }

    /// Logical end of `write_seg`, buffered bytes included.
    fn write_end(&self) -> u64 {
        self.flushed + self.write_buf.len() as u64
    }

    fn seg_path(&self, seg: u64) -> PathBuf {
        self.dir.join(format!("{}{seg:06}.dat", self.prefix))
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join(format!("{}meta.dat", self.prefix))
    }

    fn meta_tmp_path(&self) -> PathBuf {
        self.dir.join(format!("{}meta.dat.tmp", self.prefix))
    }

    fn remove_segments(&self) -> io::Result<()> {
        for (seg, _) in list_segments(&self.dir, &self.prefix)? {
            match fs::remove_file(self.seg_path(seg)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn reader_capacity(&self) -> usize {
        self.reader.as_ref().map_or(0, |r| r.buf.capacity())
    }

    /// Test hook: drops the queue as a crash would, without writing out the
    /// buffer or the metadata.
    #[cfg(test)]
    fn crash(mut self) {
        self.bg.wait_idle();
        self.closed = true;
    }
}

impl Drop for DiskQueue {
    /// Writes everything out on the way down, as nsqd does on exit.
    fn drop(&mut self) {
        if !self.closed
            && let Err(e) = self.sync()
        {
            tracing::warn!(queue = %self.name, error = %e, "disk queue sync on close failed");
        }
    }
}

impl std::fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueue")
            .field("name", &self.name)
            .field("depth", &self.depth)
            .field("read", &self.read)
            .field("write_seg", &self.write_seg)
            .field("write_end", &self.write_end())
            .finish()
    }
}

/// The queue name as it appears in file names: bytes outside
/// `[A-Za-z0-9._-]` (such as the `:` of `topic:channel`) become `%XX`.
/// `%` itself is encoded, so the mapping is one-to-one.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

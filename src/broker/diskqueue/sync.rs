//! When data and metadata reach the disk: the explicit `sync`, the periodic
//! sync driven by `sync_every` and `sync_timeout` (its fsync handed to the
//! background pool in [`super::syncer`] in `Batch` mode), and the metadata
//! snapshot it writes.

use std::io;

use tokio::time::Instant;

use super::meta::{self, Meta, Pos};
use super::{DiskQueue, SyncPolicy, syncer};

impl DiskQueue {
    /// Writes out the buffer, fsyncs the data and writes the metadata.
    pub fn sync(&mut self) -> io::Result<()> {
        self.sync_inner(true)
    }

    /// `sync`, except that the periodic kind (`full == false`) skips the
    /// metadata when only puts within one segment changed it. Runs on the
    /// calling thread, after any background sync of this queue.
    pub(super) fn sync_inner(&mut self, full: bool) -> io::Result<()> {
        self.bg.wait_idle();
        if let Some(e) = self.bg.take_error() {
            tracing::warn!(queue = %self.name, error = %e, "disk queue background sync failed; syncing again");
            self.redo_background_sync();
        }
        if !self.write_buf.is_empty() {
            self.commit(self.write_buf.len(), true)?;
        } else if self.data_unsynced {
            if let Some(f) = &self.write_file {
                f.sync_data()?;
                self.fsyncs += 1;
            }
            self.data_unsynced = false;
        }
        let meta_due = full || self.read_dirty || self.write_seg != self.meta_write_seg;
        if self.meta_dirty && meta_due {
            let m = self.meta_now();
            meta::write(&self.meta_path(), &self.meta_tmp_path(), &m)?;
            self.fsyncs += 1;
            self.meta_dirty = false;
            self.read_dirty = false;
            self.meta_write_seg = self.write_seg;
        }
        self.since_sync = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs if anything is dirty and `sync_timeout` has passed since the
    /// last sync. The broker calls this periodically. `Instant` is tokio's,
    /// like the rest of the broker, so paused-time tests drive it.
    pub fn maybe_sync(&mut self, now: Instant) -> io::Result<()> {
        let dirty = self.since_sync > 0
            || !self.write_buf.is_empty()
            || self.data_unsynced
            || self.meta_dirty;
        if dirty
            && now.saturating_duration_since(self.last_sync) >= self.opts.sync_timeout
            && self.sync_periodic(false)?
        {
            self.last_sync = now;
        }
        Ok(())
    }

    /// The periodic sync. In `Batch` mode the buffer is written out here and
    /// the fsync and metadata go to the background pool; if the previous
    /// background sync is still running, this one is left for a later call
    /// unless `may_wait`. `Always` mode has nothing to wait for (every put
    /// was fsynced) and writes the metadata inline. `false`: left for later.
    pub(super) fn sync_periodic(&mut self, may_wait: bool) -> io::Result<bool> {
        if self.opts.sync == SyncPolicy::Always {
            return self.sync_inner(false).map(|()| true);
        }
        if self.bg.busy() {
            if !may_wait {
                return Ok(false);
            }
            self.bg.wait_idle();
        }
        if let Some(e) = self.bg.take_error() {
            self.redo_background_sync();
            return Err(e);
        }
        self.commit(self.write_buf.len(), false)?;
        let file = if self.data_unsynced {
            self.write_file.clone()
        } else {
            None
        };
        let meta_due = self.read_dirty || self.write_seg != self.meta_write_seg;
        let meta = (self.meta_dirty && meta_due).then(|| syncer::MetaWrite {
            path: self.meta_path(),
            tmp: self.meta_tmp_path(),
            meta: self.meta_now(),
        });
        self.since_sync = 0;
        self.last_sync = Instant::now();
        self.data_unsynced = false;
        if meta.is_some() {
            self.meta_dirty = false;
            self.read_dirty = false;
            self.meta_write_seg = self.write_seg;
        }
        if file.is_some() || meta.is_some() {
            syncer::submit(syncer::Job {
                file,
                meta,
                tracker: self.bg.clone(),
            });
        }
        Ok(true)
    }

    /// After a failed background sync: everything it covered is dirty again.
    pub(super) fn redo_background_sync(&mut self) {
        self.data_unsynced = self.write_file.is_some();
        self.meta_dirty = true;
        self.read_dirty = true;
    }

    /// Counts puts and pops toward `sync_every` and syncs when it is reached.
    pub(super) fn count_ops(&mut self, n: u64) {
        self.since_sync += n;
        let every = self.opts.sync_every.max(1);
        if self.since_sync >= every
            && let Err(e) = self.sync_periodic(self.since_sync >= every.saturating_mul(2))
        {
            tracing::warn!(queue = %self.name, error = %e, "disk queue sync failed");
        }
    }

    /// The metadata as of now: committed read position, and the depth
    /// counted from it.
    pub(super) fn meta_now(&self) -> Meta {
        Meta {
            depth: self.depth + self.unacked.len() as u64,
            read: self.committed(),
            write: Pos {
                seg: self.write_seg,
                off: self.flushed,
            },
        }
    }
}

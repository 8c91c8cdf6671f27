//! Acknowledged reads: the ring of records popped and not yet acked, the
//! tickets that name them, the committed read position it yields, and
//! deleting the segment files that position has left. Bounded by
//! `max_unacked` ([`super::MAX_UNACKED`]).

use std::fs;
use std::io;

use super::meta::Pos;
use super::{DiskQueue, Ticket};

impl DiskQueue {
    /// Remembers a popped record starting at `start`; returns its ticket.
    pub(super) fn track(&mut self, start: Pos) -> Ticket {
        if self.unacked.len() >= self.max_unacked {
            if !self.unacked_overflow_logged {
                self.unacked_overflow_logged = true;
                tracing::warn!(queue = %self.name, limit = self.max_unacked, "too many messages popped past an unfinished one; giving up the crash safety of the oldest");
            }
            self.unacked.pop_front();
            self.unacked_base += 1;
            self.trim_acked();
        }
        self.unacked.push_back((start, false));
        self.unacked_base + self.unacked.len() as u64 - 1
    }

    /// Marks a popped record done. Once every record before it is done too,
    /// the committed read position passes it (persisted at the next sync)
    /// and segment files left behind are deleted. Unknown or repeated
    /// tickets (from before `empty`, or acked twice) are ignored.
    pub fn ack(&mut self, ticket: Ticket) {
        let Some(i) = ticket
            .checked_sub(self.unacked_base)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        if let Some(slot) = self.unacked.get_mut(i) {
            slot.1 = true;
            if i == 0 {
                self.trim_acked();
            }
        }
    }

    /// Drops the acked slots at the front; if the committed read position
    /// moved, marks the metadata dirty and releases finished segments.
    pub(super) fn trim_acked(&mut self) {
        let mut moved = false;
        while self.unacked.front().is_some_and(|s| s.1) {
            self.unacked.pop_front();
            self.unacked_base += 1;
            moved = true;
        }
        if moved {
            self.meta_dirty = true;
            self.read_dirty = true;
            self.release_segments();
        }
    }

    /// The read position a restart resumes from: the oldest unacked pop,
    /// or the next record when every pop was acked.
    pub(super) fn committed(&self) -> Pos {
        self.unacked.front().map_or(self.read, |s| s.0)
    }

    /// Records popped and not acked (including acked ones behind an
    /// unacked one, which a restart reads again too).
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Deletes the segment files before the committed read position's
    /// segment (read through and every record acked), after persisting that
    /// position, so their space is given back.
    pub(super) fn release_segments(&mut self) {
        let upto = self.committed().seg;
        if self.first_seg >= upto {
            return;
        }
        if let Err(e) = self.sync() {
            tracing::warn!(queue = %self.name, error = %e, "disk queue sync failed");
        }
        for seg in self.first_seg..upto {
            let path = self.seg_path(seg);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => self.total_bytes = self.total_bytes.saturating_sub(len),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(queue = %self.name, seg, error = %e, "cannot delete consumed segment")
                }
            }
        }
        self.first_seg = upto;
    }

    #[cfg(test)]
    pub(super) fn set_max_unacked(&mut self, n: usize) {
        self.max_unacked = n.max(1);
    }
}

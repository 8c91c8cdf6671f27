//! The broker's health, as nsqd reports it on `/ping`: healthy until a disk
//! write fails, healthy again after the next successful one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Last disk failure, if the broker is currently unhealthy.
#[derive(Debug, Default)]
pub struct Health {
    /// Fast path: checked on every successful disk write.
    failing: AtomicBool,
    /// The message; locked only when the state changes or is read.
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn set_error(&self, err: String) {
        *crate::sync::lock(&self.last_error) = Some(err);
        self.failing.store(true, Ordering::Release);
    }

    /// Marks a successful write; cheap when already healthy.
    pub fn set_ok(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            *crate::sync::lock(&self.last_error) = None;
        }
    }

    pub fn get(&self) -> Result<(), String> {
        if !self.failing.load(Ordering::Acquire) {
            return Ok(());
        }
        match crate::sync::lock(&self.last_error).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

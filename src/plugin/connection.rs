//! Host side of the WIT `connection` interface: the guest's actions on its
//! own socket. Nothing touches the socket here; writes are buffered (bounded
//! by `limits.output_buffer`) and flushed by the serve loop after the call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::bindings::nsq::gateway::connection::{Host, WriteError};
use super::state::HostState;

impl Host for HostState {
    fn write(&mut self, data: Vec<u8>) -> wasmtime::Result<Result<(), WriteError>> {
        if self.close_requested {
            return Ok(Err(WriteError::Closed));
        }
        if self.out.len().saturating_add(data.len()) > self.shared.limits.output_buffer {
            return Ok(Err(WriteError::BufferFull));
        }
        if self.out.is_empty() {
            // Take the guest's buffer as is: no copy for the common case.
            self.out = data;
        } else {
            self.out.extend_from_slice(&data);
        }
        Ok(Ok(()))
    }

    fn close(&mut self) -> wasmtime::Result<()> {
        self.close_requested = true;
        Ok(())
    }

    fn set_timer(&mut self, delay_ms: Option<u32>) -> wasmtime::Result<()> {
        self.timer = delay_ms.map(|ms| Instant::now() + Duration::from_millis(u64::from(ms)));
        Ok(())
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

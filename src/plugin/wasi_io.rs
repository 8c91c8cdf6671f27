//! `wasi:io` (error, poll, streams) for guests called synchronously, without
//! a fiber. wasmtime-wasi's own synchronous `wasi:io` runs its blocking
//! functions through `block_on`, which panics on a tokio worker; here every
//! function delegates to wasmtime-wasi-io's implementation, polled once. The
//! only streams a plugin has are its captured stdout/stderr pipes and an
//! empty stdin, which are always ready, so one poll completes every call. A
//! call that would really block (a guest sleeping on a clock pollable) traps
//! with a message instead of stalling the worker thread.
//!
//! Calling guests without a fiber is what keeps a plugin connection cheap:
//! wasmtime caches a fiber stack in each store after its first async call,
//! so async calls cost one pooled stack (two memory mappings and its
//! resident pages) per open connection.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi_io::bindings::wasi::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream, StreamError, StreamResult};

mod generated {
    wasmtime::component::bindgen!({
        path: "src/plugin/wit-wasi-io",
        world: "wasi:io/imports",
        imports: { default: trappable },
        trappable_error_type: {
            "wasi:io/streams.stream-error" => wasmtime_wasi_io::streams::StreamError,
        },
        with: {
            // Synchronous already: reuse wasmtime-wasi-io's host trait.
            "wasi:io/error": wasmtime_wasi_io::bindings::wasi::io::error,
            // The same resource types as wasmtime-wasi's cli and clocks
            // interfaces hand out, so their resources flow into these.
            "wasi:io/poll.pollable": wasmtime_wasi_io::poll::DynPollable,
            "wasi:io/streams.input-stream": wasmtime_wasi_io::streams::DynInputStream,
            "wasi:io/streams.output-stream": wasmtime_wasi_io::streams::DynOutputStream,
        },
    });
}

use generated::wasi::io::{poll, streams};

/// Polls `fut` once. `None` means it would block.
fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The trap for a call that would block the worker thread.
fn would_block(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "plugin called a blocking WASI function ({what}) that is not ready; \
         plugins must not block: use the gateway's timer instead"
    ))
}

/// Like `poll_once` for a stream call: pending becomes a trap.
fn stream_once<T>(what: &str, fut: impl Future<Output = StreamResult<T>>) -> StreamResult<T> {
    poll_once(fut).unwrap_or_else(|| Err(StreamError::Trap(would_block(what))))
}

impl poll::Host for ResourceTable {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        poll_once(<ResourceTable as async_poll::Host>::poll(self, pollables))
            .unwrap_or_else(|| Err(would_block("poll")))
    }
}

impl poll::HostPollable for ResourceTable {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll_once(<ResourceTable as async_poll::HostPollable>::ready(
            self, pollable,
        ))
        .unwrap_or(Ok(false))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll_once(<ResourceTable as async_poll::HostPollable>::block(
            self, pollable,
        ))
        .unwrap_or_else(|| Err(would_block("pollable.block")))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        <ResourceTable as async_poll::HostPollable>::drop(self, pollable)
    }
}

impl streams::Host for ResourceTable {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        match err {
            StreamError::Closed => Ok(streams::StreamError::Closed),
            StreamError::LastOperationFailed(e) => {
                Ok(streams::StreamError::LastOperationFailed(self.push(e)?))
            }
            StreamError::Trap(e) => Err(e),
        }
    }
}

impl streams::HostOutputStream for ResourceTable {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        poll_once(<ResourceTable as async_streams::HostOutputStream>::drop(
            self, stream,
        ))
        .unwrap_or_else(|| Err(would_block("output-stream drop")))
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        <ResourceTable as async_streams::HostOutputStream>::check_write(self, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        <ResourceTable as async_streams::HostOutputStream>::write(self, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        stream_once(
            "blocking-write-and-flush",
            <ResourceTable as async_streams::HostOutputStream>::blocking_write_and_flush(
                self, stream, bytes,
            ),
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        stream_once(
            "blocking-write-zeroes-and-flush",
            <ResourceTable as async_streams::HostOutputStream>::blocking_write_zeroes_and_flush(
                self, stream, len,
            ),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        <ResourceTable as async_streams::HostOutputStream>::subscribe(self, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        <ResourceTable as async_streams::HostOutputStream>::write_zeroes(self, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        <ResourceTable as async_streams::HostOutputStream>::flush(self, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        stream_once(
            "blocking-flush",
            <ResourceTable as async_streams::HostOutputStream>::blocking_flush(self, stream),
        )
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        <ResourceTable as async_streams::HostOutputStream>::splice(self, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        stream_once(
            "blocking-splice",
            <ResourceTable as async_streams::HostOutputStream>::blocking_splice(
                self, dst, src, len,
            ),
        )
    }
}

impl streams::HostInputStream for ResourceTable {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        poll_once(<ResourceTable as async_streams::HostInputStream>::drop(
            self, stream,
        ))
        .unwrap_or_else(|| Err(would_block("input-stream drop")))
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        <ResourceTable as async_streams::HostInputStream>::read(self, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        stream_once(
            "blocking-read",
            <ResourceTable as async_streams::HostInputStream>::blocking_read(self, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        <ResourceTable as async_streams::HostInputStream>::skip(self, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        stream_once(
            "blocking-skip",
            <ResourceTable as async_streams::HostInputStream>::blocking_skip(self, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        <ResourceTable as async_streams::HostInputStream>::subscribe(self, stream)
    }
}

/// Links the three `wasi:io` interfaces; `table` gives the store's WASI
/// resource table.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    table: fn(&mut T) -> &mut ResourceTable,
) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasSelf<ResourceTable>>(
        linker, table,
    )?;
    poll::add_to_linker::<T, HasSelf<ResourceTable>>(linker, table)?;
    streams::add_to_linker::<T, HasSelf<ResourceTable>>(linker, table)?;
    Ok(())
}

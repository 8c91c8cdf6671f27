//! The data of one connection's `Store`: the WASI context (deny-all), the
//! memory limiter, the connection's pending output, timer and subscriptions,
//! and the shared per-plugin settings the host imports check against.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::acl::NamePatterns;
use crate::broker::{Broker, ClientInfo, ClientRegistration, Consumer};
use crate::config::PluginLimits;

/// What a plugin's connections share: its name, limits and name patterns.
#[derive(Debug)]
pub(crate) struct Shared {
    /// For logs and error messages.
    pub(crate) name: String,
    /// The configured limits, checked by the host imports.
    pub(crate) limits: PluginLimits,
    /// `limits.topics`, compiled.
    pub(crate) topics: NamePatterns,
    /// `limits.channels`, compiled.
    pub(crate) channels: NamePatterns,
}

/// Why the host, not the guest, ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// More than `limits.max_denied` broker calls were refused by the ACL.
    DeniedFlood,
}

/// Server-wide limits the broker imports enforce, copied from the config.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest RDY (nsqd's `--max-rdy-count`).
    pub max_rdy: u64,
    /// Longest REQ / DPUB delay (nsqd's `--max-req-timeout`).
    pub max_delay: Duration,
    /// How long a write to the client may block before the connection is
    /// dropped, so a client that stops reading cannot hold its task (and its
    /// in-flight messages) forever.
    pub write_timeout: Duration,
}

/// Bounds linear memory; remembers a refusal so the trap that usually follows
/// (a Rust guest aborts on allocation failure) is counted as a limit hit.
pub(crate) struct MemoryLimiter {
    /// `limits.memory` in bytes.
    pub(crate) max: usize,
    /// Set when a grow was refused.
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k is far beyond any real guest.
        Ok(desired <= 100_000)
    }
}

/// One connection's store data.
pub(crate) struct HostState {
    /// WASI with nothing granted: no preopens, no env, no sockets, stdout
    /// and stderr captured in `output` for the logs.
    pub(crate) wasi: WasiCtx,
    /// WASI's resource table (streams for stderr).
    pub(crate) table: ResourceTable,
    /// The guest's stdout/stderr (bounded), logged when the guest traps.
    pub(crate) output: MemoryOutputPipe,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) shared: Arc<Shared>,
    pub(crate) server: ServerLimits,
    /// The core every broker import delegates to.
    pub(crate) broker: Broker,
    /// This connection in the broker's stats (and the subscribe identity).
    pub(crate) client: Arc<ClientInfo>,
    /// Lists the client in the broker (for `/stats` producers) while the
    /// connection lives.
    _registration: ClientRegistration,
    /// Bytes written by the guest during the current call, flushed after it.
    pub(crate) out: Vec<u8>,
    /// The guest called `close`.
    pub(crate) close_requested: bool,
    /// When `on-timer` is due.
    pub(crate) timer: Option<Instant>,
    /// Subscriptions by handle; `None` once unsubscribed.
    pub(crate) subs: Vec<Option<Consumer>>,
    /// Broker calls refused by the name patterns so far.
    pub(crate) denied: u32,
    /// Set when a host import or the limiter ended the call on purpose.
    pub(crate) fault: Option<Fault>,
    /// Authentication against the auth server, when one is configured.
    pub(crate) auth: super::auth::ConnAuth,
}

impl HostState {
    pub(crate) fn new(
        shared: Arc<Shared>,
        server: ServerLimits,
        broker: Broker,
        client: Arc<ClientInfo>,
    ) -> Self {
        let output = MemoryOutputPipe::new(4096);
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            // Linked for componentize-py guests, granted nothing (these are
            // WasiCtx's defaults; said here so a change there cannot open them).
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let max = usize::try_from(shared.limits.memory).unwrap_or(usize::MAX);
        let registration = broker.register_client(&client);
        HostState {
            wasi,
            table: ResourceTable::new(),
            output,
            limiter: MemoryLimiter { max, hit: false },
            shared,
            server,
            broker,
            client,
            _registration: registration,
            out: Vec::new(),
            close_requested: false,
            timer: None,
            subs: Vec::new(),
            denied: 0,
            fault: None,
            auth: super::auth::ConnAuth::default(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

//! The wasmtime host for WebAssembly protocol plugins: one shared engine
//! (pooling allocator, epoch ticker), one `InstancePre` per plugin compiled at
//! startup, and `Plugin::serve`, which gives each connection a fresh `Store`
//! and instance, owns the socket, and calls the guest once per event (bytes
//! in, messages ready, timer, close) with a CPU deadline and a memory limit.
//! A trap or a limit hit ends only that connection; it is logged with the
//! plugin and peer and counted in `PluginStats`.

pub(crate) mod acl;
pub(crate) mod bindings;
mod broker;
pub mod capacity;
mod config;
mod connection;
pub(crate) mod state;
mod types;
mod wasi_io;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

pub use config::{
    LoadedPlugin, PluginConfig, PluginLimits, load_plugins, load_plugins_with, parse_magic,
};

use bindings::nsq::gateway::types::{ConnectInfo, Message as WitMessage};
pub use state::ServerLimits;
use state::{Fault, HostState, Shared};

use crate::broker::{Broker, ClientInfo, Message};

/// Bytes read from the socket per `on-data` call at most; the read buffer
/// grows to this under load.
const READ_CHUNK: usize = 64 * 1024;
/// The first read size, and what it falls back to after a small read; also
/// the largest output buffer kept between calls.
const IDLE_BUFFER: usize = 4096;
/// Bodies handed to one `on-messages` call at most (at least one message).
const DELIVERY_BYTES: usize = 1 << 20;

/// How the host bounds a guest's CPU time per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuBudget {
    /// Epoch interruption: a ticker thread bumps the engine epoch; a call
    /// past its deadline traps. Cheapest check, coarse (one tick) precision.
    Epoch,
    /// Fuel metering: each call gets `call_timeout_ms * FUEL_PER_MS` units.
    Fuel,
    /// No bound (benchmark baseline only: a spinning guest hangs its task).
    Unbounded,
}

/// Engine-wide options; `Default` is what the gateway runs with.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub cpu: CpuBudget,
    /// How often the epoch ticker bumps the epoch.
    pub epoch_tick: Duration,
    /// The pooling allocator (false only to measure it).
    pub pooling: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            cpu: CpuBudget::Epoch,
            epoch_tick: Duration::from_millis(5),
            pooling: true,
        }
    }
}

/// Server limits for the benches' stores (no server config there).
const BENCH_LIMITS: ServerLimits = ServerLimits {
    max_rdy: 2500,
    max_delay: Duration::from_secs(3600),
    write_timeout: Duration::from_secs(60),
};

/// Fuel per millisecond of `call_timeout_ms` (about one unit per wasm
/// instruction; a core retires a few thousand million per second).
const FUEL_PER_MS: u64 = 2_000_000;

/// Bumps the engine epoch every tick until dropped.
struct Ticker {
    /// Tells the thread to exit; it holds its own engine clone till then.
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine, linker and ticker shared by every plugin of one gateway.
pub(crate) struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    opts: HostOptions,
    /// Present with `CpuBudget::Epoch`; shared by all plugins.
    ticker: Option<Arc<Ticker>>,
    /// The plugin connections of every plugin, against the planned slots.
    gate: Arc<Gate>,
}

/// Counts the plugin connections of all plugins in one place, so that no
/// more are instantiated than the pool has slots for (see `capacity`).
pub struct Gate {
    open: AtomicU64,
    capacity: capacity::Capacity,
}

impl Gate {
    /// Takes a slot, or `None` when every planned slot is in use.
    fn enter(self: &Arc<Self>) -> Option<GateSlot> {
        let slots = u64::from(self.capacity.slots);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < slots).then_some(n + 1)
            })
            .ok()
            .map(|_| GateSlot(self.clone()))
    }

    /// The plan the host was sized with.
    pub fn capacity(&self) -> &capacity::Capacity {
        &self.capacity
    }

    /// Plugin connections open now, all plugins together.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }
}

/// A taken slot; given back when the connection ends.
struct GateSlot(Arc<Gate>);

impl Drop for GateSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PluginEngine {
    pub(crate) fn new(configs: &[PluginConfig], opts: &HostOptions) -> anyhow::Result<Self> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(opts.cpu == CpuBudget::Epoch);
        cfg.consume_fuel(opts.cpu == CpuBudget::Fuel);
        let max_memory = configs
            .iter()
            .map(|c| c.limits.memory)
            .max()
            .unwrap_or(16 << 20);
        // Round to 64 KiB wasm pages; reserve just that much address space per
        // memory (bounds-checked accesses), with a small guard.
        let max_memory = max_memory.div_ceil(65536) * 65536;
        let guard: u64 = 2 << 20;
        cfg.memory_reservation(max_memory);
        cfg.memory_guard_size(guard);
        cfg.memory_reservation_for_growth(0);
        // Data segments are copied in, not mapped from the component's image:
        // a mapped image would cost every live slot a third memory mapping.
        cfg.memory_init_cow(false);
        cfg.max_wasm_stack(512 << 10);
        let configured: u64 = configs
            .iter()
            .map(|c| c.limits.max_connections as u64)
            .sum();
        let capacity = capacity::plan(
            configured.max(1),
            max_memory + guard,
            &capacity::HostLimits::read(),
        )?;
        if opts.pooling {
            let slots = capacity.slots.max(1);
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(slots)
                .total_core_instances(slots.saturating_mul(8))
                .max_core_instances_per_component(16)
                .total_memories(slots)
                .max_memories_per_component(2)
                .total_tables(slots.saturating_mul(2))
                .max_tables_per_component(4)
                // Guests are called without a fiber (see `Conn::call`).
                .total_stacks(0)
                .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
                .linear_memory_keep_resident(64 << 10)
                .table_keep_resident(16 << 10);
            cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine =
            Engine::new(&cfg).map_err(|e| anyhow::anyhow!("creating the wasmtime engine: {e}"))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        add_wasi(&mut linker).map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("linking the gateway imports: {e}"))?;
        let ticker = (opts.cpu == CpuBudget::Epoch).then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let (engine, flag, tick) = (engine.clone(), stop.clone(), opts.epoch_tick);
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map(|_| Arc::new(Ticker { stop }))
        });
        let ticker = ticker
            .transpose()
            .context("starting the epoch ticker thread")?;
        Ok(PluginEngine {
            engine,
            linker,
            opts: opts.clone(),
            ticker,
            gate: Arc::new(Gate {
                open: AtomicU64::new(0),
                capacity,
            }),
        })
    }
}

/// Links only the WASI a Rust `wasm32-wasip2` guest imports (io, clocks,
/// random, cli stdio/env/exit/terminal), all synchronous and none blocking:
/// `wasi:io` comes from `wasi_io`, the rest never waits. No filesystem and
/// no sockets are linked: a guest importing them fails to load.
fn add_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    let l = linker;
    wasi_io::add_to_linker(l, |s| &mut s.table)?;
    let clocks_of = <HostState as WasiClocksView>::clocks;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, clocks_of)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(l, clocks_of)?;
    random::random::add_to_linker::<HostState, WasiRandom>(
        l,
        <HostState as WasiRandomView>::random,
    )?;
    let cli_of = <HostState as WasiCliView>::cli;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, cli_of)?;
    Ok(())
}

/// Per-plugin counters, updated with relaxed atomics.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    active: AtomicU64,
    traps: AtomicU64,
    limit_hits: AtomicU64,
    refused: AtomicU64,
    denied: AtomicU64,
}

/// A snapshot of one plugin's counters, for /stats and /metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginStats {
    pub name: String,
    /// Connections served since start.
    pub connections: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections ended by a guest trap (panic, unreachable, bad access).
    pub traps: u64,
    /// Connections ended by a limit: CPU deadline, memory, denied-call flood.
    pub limit_hits: u64,
    /// Connections closed before the guest ran: `limits.max_connections`
    /// open, every slot planned at startup in use, or no resources to
    /// instantiate (never counted as traps: the guest did nothing wrong).
    pub refused: u64,
    /// Broker calls refused by `limits.topics` / `limits.channels`.
    pub denied: u64,
}

/// One loaded plugin: compiled once, instantiated per connection.
pub struct Plugin {
    shared: Arc<Shared>,
    pre: bindings::PluginPre<HostState>,
    engine: Engine,
    cpu: CpuBudget,
    /// Epoch ticks one call may take.
    deadline_ticks: u64,
    /// Keeps the epoch ticker alive while any plugin is.
    _ticker: Option<Arc<Ticker>>,
    /// `config:` from gateway.yaml, in the shape `on-connect` takes.
    guest_config: Vec<(String, String)>,
    counters: Counters,
    /// The slots shared by every plugin.
    gate: Arc<Gate>,
    /// When the plugin was loaded; refusal warnings count from it.
    born: Instant,
    /// Milliseconds after `born` of the last refusal warning, so a flood of
    /// refused connections logs once a second, not once a connection.
    refusal_logged_at: AtomicU64,
    /// Refusals since the last warning.
    refusals_unlogged: AtomicU64,
}

/// Why a connection's event loop ended early.
enum Ended {
    /// The guest trapped or a limit ended it (already logged and counted).
    Guest,
    /// The socket failed.
    Io(std::io::Error),
}

/// What woke the serve loop.
enum Wake {
    Shutdown,
    Readable(std::io::Result<()>),
    Deliver,
    Timer,
    Expire,
}

impl Plugin {
    fn load(engine: &PluginEngine, cfg: &PluginConfig) -> anyhow::Result<Plugin> {
        let bytes = std::fs::read(&cfg.component)
            .with_context(|| format!("reading component {}", cfg.component.display()))?;
        let component = Component::new(&engine.engine, &bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid WebAssembly component: {e}",
                cfg.component.display()
            )
        })?;
        let pre = engine.linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!(
                "{} does not implement the world nsq:gateway/plugin@0.1.0 \
                 (its imports cannot be satisfied): {e:#}",
                cfg.component.display()
            )
        })?;
        let pre = bindings::PluginPre::new(pre).map_err(|e| {
            anyhow::anyhow!(
                "{} does not implement the world nsq:gateway/plugin@0.1.0 \
                 (missing export tcp-handler): {e:#}",
                cfg.component.display()
            )
        })?;
        let tick = engine.opts.epoch_tick.as_millis().max(1);
        let deadline_ticks =
            u64::try_from(u128::from(cfg.limits.call_timeout_ms).div_ceil(tick)).unwrap_or(1) + 1;
        Ok(Plugin {
            shared: Arc::new(Shared {
                name: cfg.name.clone(),
                topics: acl::NamePatterns::new(&cfg.limits.topics),
                channels: acl::NamePatterns::new(&cfg.limits.channels),
                limits: cfg.limits.clone(),
            }),
            pre,
            engine: engine.engine.clone(),
            cpu: engine.opts.cpu,
            deadline_ticks,
            _ticker: engine.ticker.clone(),
            guest_config: cfg
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            counters: Counters::default(),
            gate: engine.gate.clone(),
            born: Instant::now(),
            refusal_logged_at: AtomicU64::new(0),
            refusals_unlogged: AtomicU64::new(0),
        })
    }

    /// The slots every plugin shares, and the plan they were sized with.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Counts a connection refused before the guest ran, and warns at most
    /// once a second with the number refused since the last warning.
    fn refuse(&self, peer: SocketAddr, why: &str) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        let unlogged = self.refusals_unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.refusal_logged_at.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .refusal_logged_at
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self
                .refusals_unlogged
                .swap(0, Ordering::Relaxed)
                .max(unlogged);
            warn!(plugin = %self.shared.name, %peer, reason = why, refused,
                "plugin connection refused");
        }
    }

    /// The plugin's name from gateway.yaml.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configured limits.
    pub fn limits(&self) -> &PluginLimits {
        &self.shared.limits
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PluginStats {
        let c = &self.counters;
        PluginStats {
            name: self.shared.name.clone(),
            connections: c.connections.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            traps: c.traps.load(Ordering::Relaxed),
            limit_hits: c.limit_hits.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
        }
    }

    /// Serves one connection whose magic selected this plugin, until the
    /// client or the guest closes it, the guest traps, or shutdown.
    pub async fn serve(
        self: &Arc<Self>,
        conn: crate::server::Accepted,
        ctx: Arc<crate::server::Context>,
    ) -> anyhow::Result<()> {
        let server = ServerLimits {
            max_rdy: ctx.config.max_rdy_count,
            max_delay: ctx.config.max_req_timeout,
            write_timeout: ctx.config.client_timeout.max(Duration::from_secs(1)),
        };
        self.serve_stream(
            conn.stream,
            conn.peer,
            conn.magic,
            conn.id,
            ctx.broker.clone(),
            server,
            ctx.shutdown.clone(),
        )
        .await
    }

    /// `serve` without the server types: the socket, who it is, the broker
    /// and a shutdown token. Used by `serve` and by the benches.
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    pub async fn serve_stream(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        magic: [u8; 4],
        id: u64,
        broker: Broker,
        server: ServerLimits,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let active = self.counters.active.fetch_add(1, Ordering::Relaxed);
        let _active = ActiveGuard(&self.counters.active);
        if active >= self.shared.limits.max_connections as u64 {
            self.refuse(peer, "limits.max_connections reached");
            return Ok(());
        }
        let Some(_slot) = self.gate.enter() else {
            self.refuse(
                peer,
                "every plugin slot is in use (the capacity planned at startup)",
            );
            return Ok(());
        };
        let _ = stream.set_nodelay(true);
        let mut store = self.new_store(broker, server, id, peer);
        let guest = match self.pre.instantiate(&mut store) {
            Ok(g) => g,
            // A trap is the guest's doing (its start code); anything else
            // (no slot, no memory) is the host's capacity: refused.
            Err(e) if e.downcast_ref::<Trap>().is_some() => {
                self.counters.connections.fetch_add(1, Ordering::Relaxed);
                self.ended_by_guest(&store, &e, peer, "instantiate");
                return Ok(());
            }
            Err(e) => {
                self.refuse(peer, &format!("cannot instantiate: {e:#}"));
                return Ok(());
            }
        };
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let mut conn = Conn {
            plugin: self,
            store,
            guest,
            stream,
            peer,
            denied_seen: 0,
        };
        let info = ConnectInfo {
            magic: magic.to_vec(),
            peer: peer.to_string(),
            client_id: id,
            config: self.guest_config.clone(),
        };
        let result = conn.run(info, &shutdown).await;
        let denied = u64::from(conn.store.data().denied.saturating_sub(conn.denied_seen));
        self.counters.denied.fetch_add(denied, Ordering::Relaxed);
        match result {
            Ok(()) | Err(Ended::Guest) => Ok(()),
            Err(Ended::Io(e)) => {
                debug!(plugin = %self.shared.name, %peer, error = %e, "plugin connection: socket error");
                Ok(())
            }
        }
    }

    /// Creates a store and instantiates the guest, as a connection does,
    /// then drops both. For the instantiation-latency bench only.
    #[doc(hidden)]
    pub async fn bench_instantiate(&self, broker: &Broker) -> anyhow::Result<()> {
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut store = self.new_store(broker.clone(), BENCH_LIMITS, 0, peer);
        self.pre
            .instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("instantiate: {e}"))?;
        Ok(())
    }

    /// Instantiates the guest and runs `on-connect` as a connection does,
    /// and returns the live store: for the bench that attributes idle memory
    /// to the instance itself (no socket, no task).
    #[doc(hidden)]
    pub async fn bench_idle_instance(
        &self,
        broker: &Broker,
    ) -> anyhow::Result<Box<dyn std::any::Any + Send>> {
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut store = self.new_store(broker.clone(), BENCH_LIMITS, 0, peer);
        let guest = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("instantiate: {e}"))?;
        let info = ConnectInfo {
            magic: b"LINE".to_vec(),
            peer: peer.to_string(),
            client_id: 0,
            config: self.guest_config.clone(),
        };
        self.arm(&mut store);
        guest
            .nsq_gateway_tcp_handler()
            .call_on_connect(&mut store, &info)
            .map_err(|e| anyhow::anyhow!("on-connect: {e}"))?;
        Ok(Box::new((store, guest)))
    }

    /// A connection's store: its host state, memory limiter and CPU budget.
    /// Not async, so `HostState` is built here rather than in the state of
    /// `serve_stream`'s future, which an idle connection keeps.
    fn new_store(
        &self,
        broker: Broker,
        server: ServerLimits,
        id: u64,
        peer: SocketAddr,
    ) -> Store<HostState> {
        let client = Arc::new(ClientInfo::new(id, peer, self.shared.name.clone()));
        let state = HostState::new(self.shared.clone(), server, broker, client);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.cpu == CpuBudget::Epoch {
            store.epoch_deadline_trap();
        }
        self.arm(&mut store);
        store
    }

    /// Gives the store a fresh CPU budget for one call.
    fn arm(&self, store: &mut Store<HostState>) {
        match self.cpu {
            CpuBudget::Epoch => store.set_epoch_deadline(self.deadline_ticks),
            CpuBudget::Fuel => {
                let _ = store.set_fuel(
                    self.shared
                        .limits
                        .call_timeout_ms
                        .saturating_mul(FUEL_PER_MS),
                );
            }
            CpuBudget::Unbounded => {}
        }
    }

    /// Logs and counts a connection the guest (or a limit) ended.
    fn ended_by_guest(
        &self,
        store: &Store<HostState>,
        err: &wasmtime::Error,
        peer: SocketAddr,
        event: &str,
    ) {
        let data = store.data();
        let trap = err.downcast_ref::<Trap>().copied();
        let limit = match (data.fault, trap) {
            (Some(Fault::DeniedFlood), _) => Some("denied-call flood (limits.max_denied)"),
            (_, Some(Trap::Interrupt)) => Some("CPU time per call (limits.call_timeout_ms)"),
            (_, Some(Trap::OutOfFuel)) => Some("CPU fuel per call (limits.call_timeout_ms)"),
            _ if data.limiter.hit => Some("linear memory (limits.memory)"),
            _ => None,
        };
        let output = data.output.contents();
        let guest_output = String::from_utf8_lossy(output.trim_ascii());
        let plugin = &self.shared.name;
        match limit {
            Some(which) => {
                self.counters.limit_hits.fetch_add(1, Ordering::Relaxed);
                warn!(%plugin, %peer, event, limit = which, error = %format!("{err:#}"), guest_output = %guest_output,
                    "plugin connection ended: limit hit");
            }
            None => {
                self.counters.traps.fetch_add(1, Ordering::Relaxed);
                warn!(%plugin, %peer, event, error = %format!("{err:#}"), guest_output = %guest_output,
                    "plugin connection ended: guest trapped");
            }
        }
    }
}

/// Decrements the active-connection counter when a connection ends.
struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One live plugin connection: the store, the guest instance, the socket.
struct Conn<'a> {
    plugin: &'a Plugin,
    store: Store<HostState>,
    guest: bindings::Plugin,
    stream: TcpStream,
    peer: SocketAddr,
    /// Denials already added to the plugin's counter.
    denied_seen: u32,
}

/// One event for the guest.
enum Event<'a> {
    Connect(&'a ConnectInfo),
    Data(&'a [u8]),
    Messages(u32, &'a [WitMessage]),
    Timer,
    Close,
}

impl Conn<'_> {
    async fn run(&mut self, info: ConnectInfo, shutdown: &CancellationToken) -> Result<(), Ended> {
        self.call(Event::Connect(&info))?;
        // Allocated when the socket is readable and never zero-filled
        // (`try_read_buf` writes into spare capacity); released once a read
        // drains the socket, so an idle connection holds no read buffer.
        let mut rbuf: Vec<u8> = Vec::new();
        let mut chunk = IDLE_BUFFER;
        let mut taken: Vec<Message> = Vec::new();
        let mut wit_msgs: Vec<WitMessage> = Vec::new();
        loop {
            self.flush().await?;
            if self.store.data().close_requested {
                break;
            }
            // Deliver whatever the ready subscriptions can take now.
            if self.deliver(&mut taken, &mut wit_msgs).await? {
                continue;
            }
            // About to wait: an idle connection keeps no delivery or output
            // buffers (after a full batch of the default 256 messages the
            // delivery ones alone hold 32 KB).
            taken = Vec::new();
            wit_msgs = Vec::new();
            let out = &mut self.store.data_mut().out;
            if out.is_empty() {
                *out = Vec::new();
            }
            let wake = {
                let data = self.store.data();
                let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = data
                    .subs
                    .iter()
                    .flatten()
                    .filter(|c| c.is_ready())
                    .map(|c| Box::pin(c.wait()))
                    .collect();
                let any_ready = std::future::poll_fn(|cx| {
                    for w in waits.iter_mut() {
                        if w.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(());
                        }
                    }
                    Poll::Pending
                });
                let timer = data.timer;
                let expiry = data
                    .subs
                    .iter()
                    .flatten()
                    .filter_map(|c| c.next_timeout())
                    .min();
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    _ = sleep_until_opt(timer), if timer.is_some() => Wake::Timer,
                    _ = sleep_until_opt(expiry), if expiry.is_some() => Wake::Expire,
                    _ = any_ready => Wake::Deliver,
                    r = self.stream.readable() => Wake::Readable(r),
                }
            };
            match wake {
                Wake::Shutdown => break,
                Wake::Deliver => {}
                Wake::Timer => {
                    self.store.data_mut().timer = None;
                    self.call(Event::Timer)?;
                }
                Wake::Expire => {
                    let now = Instant::now();
                    for c in self.store.data_mut().subs.iter_mut().flatten() {
                        c.expire_timeouts(now);
                    }
                }
                Wake::Readable(Err(e)) => return Err(Ended::Io(e)),
                Wake::Readable(Ok(())) => {
                    rbuf.clear();
                    // Under memory pressure this connection ends, not the process.
                    if let Err(e) = rbuf.try_reserve(chunk) {
                        return Err(Ended::Io(std::io::Error::other(format!(
                            "no memory for the read buffer: {e}"
                        ))));
                    }
                    match self.stream.try_read_buf(&mut rbuf) {
                        Ok(0) => break,
                        Ok(n) => {
                            self.call(Event::Data(&rbuf))?;
                            if n >= chunk {
                                // Probably more waiting: keep the buffer, grow.
                                chunk = (chunk * 2).min(READ_CHUNK);
                            } else {
                                // Drained: the connection may now idle.
                                if n < IDLE_BUFFER {
                                    chunk = IDLE_BUFFER;
                                }
                                rbuf = Vec::new();
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            // Stale readiness (the magic read left it set).
                            rbuf = Vec::new();
                        }
                        Err(e) => return Err(Ended::Io(e)),
                    }
                }
            }
        }
        self.call(Event::Close)?;
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Takes messages from every ready subscription and hands each batch to
    /// the guest. Returns whether anything was delivered.
    async fn deliver(
        &mut self,
        taken: &mut Vec<Message>,
        wit_msgs: &mut Vec<WitMessage>,
    ) -> Result<bool, Ended> {
        let max = self.plugin.shared.limits.max_batch;
        let mut delivered = false;
        let count = self.store.data().subs.len();
        for i in 0..count {
            taken.clear();
            {
                let data = self.store.data_mut();
                let Some(Some(c)) = data.subs.get_mut(i) else {
                    continue;
                };
                if c.is_closed() {
                    // The channel was deleted: drop the subscription.
                    data.subs[i] = None;
                    continue;
                }
                if c.take_messages(max, DELIVERY_BYTES, taken) == 0 {
                    continue;
                }
            }
            wit_msgs.clear();
            wit_msgs.extend(taken.drain(..).map(|m| WitMessage {
                id: String::from_utf8_lossy(m.id.as_bytes()).into_owned(),
                timestamp: m.timestamp,
                attempts: m.attempts,
                body: m.body.to_vec(),
            }));
            let sub = u32::try_from(i).unwrap_or(u32::MAX);
            self.call(Event::Messages(sub, wit_msgs))?;
            self.flush().await?;
            delivered = true;
        }
        Ok(delivered)
    }

    /// Calls the guest for one event under a fresh CPU budget. The call is
    /// synchronous, on this task's worker thread (no fiber, so no stack is
    /// kept per connection); the epoch deadline bounds how long it runs.
    fn call(&mut self, event: Event<'_>) -> Result<(), Ended> {
        self.plugin.arm(&mut self.store);
        let handler = self.guest.nsq_gateway_tcp_handler();
        let store = &mut self.store;
        let (name, result) = match event {
            Event::Connect(info) => ("on-connect", handler.call_on_connect(store, info)),
            Event::Data(bytes) => ("on-data", handler.call_on_data(store, bytes)),
            Event::Messages(sub, msgs) => {
                ("on-messages", handler.call_on_messages(store, sub, msgs))
            }
            Event::Timer => ("on-timer", handler.call_on_timer(store)),
            Event::Close => ("on-close", handler.call_on_close(store)),
        };
        let denied = self.store.data().denied;
        if denied > self.denied_seen {
            let delta = u64::from(denied - self.denied_seen);
            self.plugin
                .counters
                .denied
                .fetch_add(delta, Ordering::Relaxed);
            self.denied_seen = denied;
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.plugin.ended_by_guest(&self.store, &e, self.peer, name);
                Err(Ended::Guest)
            }
        }
    }

    /// Writes what the guest queued during the last call.
    async fn flush(&mut self) -> Result<(), Ended> {
        if self.store.data().out.is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.store.data_mut().out);
        let limit = self.store.data().server.write_timeout;
        let written = match tokio::time::timeout(limit, self.stream.write_all(&out)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("client read nothing for {limit:?}"),
            )),
        };
        out.clear();
        if out.capacity() <= IDLE_BUFFER {
            // Keep a small buffer for the next call; drop big ones.
            self.store.data_mut().out = out;
        }
        written.map_err(Ended::Io)
    }
}

/// Sleeps until `at`, or forever when `None` (the select guard disables it).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

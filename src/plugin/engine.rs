//! The wasmtime engine every plugin shares: its configuration (pooling
//! allocator sized by `capacity`, epoch interruption or fuel, copied data
//! segments), the linker with the WASI a guest may import and the gateway's
//! own interfaces, the epoch ticker thread, and the `Gate` that counts the
//! plugin connections of all plugins against the planned slots.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::CompileCache;
use super::state::HostState;
use super::{bindings, capacity, wasi_io};
use crate::config::PluginConfig;

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
    /// The compiled-component cache directory (`plugin_cache_path`);
    /// `None` compiles every component at every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            cpu: CpuBudget::Epoch,
            epoch_tick: Duration::from_millis(5),
            pooling: true,
            cache_dir: None,
        }
    }
}

/// Fuel per millisecond of `call_timeout_ms` (about one unit per wasm
/// instruction; a core retires a few thousand million per second).
pub(super) const FUEL_PER_MS: u64 = 2_000_000;

/// Bumps the engine epoch every tick until dropped.
pub(super) struct Ticker {
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
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
    pub(super) opts: HostOptions,
    /// Present with `CpuBudget::Epoch`; shared by all plugins.
    pub(super) ticker: Option<Arc<Ticker>>,
    /// The plugin connections of every plugin, against the planned slots.
    pub(super) gate: Arc<Gate>,
    /// Where compiled components are kept, when `cache_dir` is set; sealed
    /// (digests recorded) once every plugin is loaded.
    pub(super) cache: Option<CompileCache>,
}

/// Counts the plugin connections of all plugins in one place, so that no
/// more are instantiated than the pool has slots for (see `capacity`).
pub struct Gate {
    open: AtomicU64,
    capacity: capacity::Capacity,
}

impl Gate {
    /// Takes a slot, or `None` when every planned slot is in use.
    pub(super) fn enter(self: &Arc<Self>) -> Option<GateSlot> {
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
pub(super) struct GateSlot(Arc<Gate>);

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
        let cache = opts.cache_dir.as_deref().map(CompileCache::new);
        if let Some(cache) = &cache {
            let report = cache.verify();
            tracing::debug!(
                kept = report.kept,
                removed = report.removed,
                "plugin compile cache checked"
            );
            cfg.cache(Some(cache.wasmtime_cache()?));
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
            cache,
        })
    }
}

/// Links the WASI that Rust `wasm32-wasip2` guests and componentize-py
/// (Python) guests import, all synchronous and none blocking:
/// `wasi:io` comes from `wasi_io`; clocks, random, and cli stdio/env/exit/
/// terminal never wait. `wasi:filesystem` and `wasi:sockets` are linked so
/// such components instantiate, with nothing granted (`HostState::new`): no
/// preopened directory exists, so no descriptor can ever be opened (and no
/// blocking file call reached), and TCP, UDP and name lookups are denied, so
/// socket creation fails with `access-denied` before any system call. Any
/// other import (wasi:http, a newer unknown interface) fails to load, naming it.
fn add_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
    let l = linker;
    wasi_io::add_to_linker(l, |s| &mut s.table)?;
    let clocks_of = <HostState as WasiClocksView>::clocks;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, clocks_of)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(l, clocks_of)?;
    let random_of = <HostState as WasiRandomView>::random;
    random::random::add_to_linker::<HostState, WasiRandom>(l, random_of)?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, random_of)?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, random_of)?;
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
    // Nothing granted: no preopens (so no descriptor), no network uses.
    let fs_of = <HostState as WasiFilesystemView>::filesystem;
    filesystem::preopens::add_to_linker::<HostState, WasiFilesystem>(l, fs_of)?;
    sync::filesystem::types::add_to_linker::<HostState, WasiFilesystem>(l, fs_of)?;
    let net_of = <HostState as WasiSocketsView>::sockets;
    let net_opts = sockets::network::LinkOptions::default();
    sockets::network::add_to_linker::<HostState, WasiSockets>(l, &net_opts, net_of)?;
    sockets::instance_network::add_to_linker::<HostState, WasiSockets>(l, net_of)?;
    sockets::ip_name_lookup::add_to_linker::<HostState, WasiSockets>(l, net_of)?;
    sockets::tcp_create_socket::add_to_linker::<HostState, WasiSockets>(l, net_of)?;
    sync::sockets::tcp::add_to_linker::<HostState, WasiSockets>(l, net_of)?;
    sync::sockets::udp_create_socket::add_to_linker::<HostState, WasiSockets>(l, net_of)?;
    sync::sockets::udp::add_to_linker::<HostState, WasiSockets>(l, net_of)?;
    Ok(())
}

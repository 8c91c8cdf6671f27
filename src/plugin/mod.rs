//! The wasmtime host for WebAssembly protocol plugins, and this module's
//! own job: a loaded `Plugin` (one `InstancePre`, compiled at startup on the
//! shared `engine`) and `Plugin::serve`, which admits a connection (its
//! plugin's `max_connections`, the shared slots), gives it a fresh `Store`
//! and instance, and hands it to the `event_loop`. A trap or a limit hit ends
//! only that connection; it is logged with the plugin and peer and counted in
//! `PluginStats`.

pub(crate) mod acl;
mod auth;
pub(crate) mod bindings;
pub(crate) mod broker;
pub mod builtin;
mod cache;
pub mod capacity;
mod config;
mod connection;
mod engine;
mod event_loop;
pub(crate) mod state;
mod types;
mod wasi_io;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::time::Instant;
use tracing::{debug, warn};
use wasmtime::component::Component;
use wasmtime::{Engine, Store, Trap};

pub use config::{
    LoadedPlugin, PluginConfig, PluginLimits, load_plugins, load_plugins_with, parse_magic,
};

use bindings::nsq::gateway::types::{ConnectInfo, Limits};
pub use cache::{VerifyReport, cache_dir};
pub use engine::{CpuBudget, Gate, HostOptions};
use engine::{FUEL_PER_MS, PluginEngine, Ticker};
use event_loop::{Conn, Ended};
pub use state::ServerLimits;
use state::{Fault, HostState, Shared};

use crate::broker::{Broker, ClientInfo};
use crate::protocol::{Accepted, Env};

/// Server limits for the benches' stores (no server config there).
#[cfg(feature = "bench-hooks")]
const BENCH_LIMITS: ServerLimits = ServerLimits {
    max_rdy: 2500,
    max_delay: Duration::from_secs(3600),
    write_timeout: Duration::from_secs(60),
};

/// The version of `wit/gateway.wit` this host serves.
pub const WIT_VERSION: &str = "0.2.0";

/// Server limits for the store `validate-config` runs in.
const VALIDATE_LIMITS: ServerLimits = ServerLimits {
    max_rdy: 2500,
    max_delay: Duration::from_secs(3600),
    write_timeout: Duration::from_secs(1),
};

/// Refuses a component built against another version of the contract,
/// naming it and how to rebuild, before the linker's less helpful "no
/// import named ..." does.
fn check_contract_version(
    label: &str,
    component: &Component,
    engine: &Engine,
) -> anyhow::Result<()> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(n, _)| n.to_string())
        .chain(ty.exports(engine).map(|(n, _)| n.to_string()))
        .collect();
    let built_for = names.iter().find_map(|n| {
        n.strip_prefix("nsq:gateway/")
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, v)| v.to_string())
    });
    match built_for {
        Some(v) if v != WIT_VERSION => anyhow::bail!(
            "{label} was built against nsq:gateway@{v}, and this gateway serves \
             nsq:gateway@{WIT_VERSION} only (the 0.2.0 publish returns a channel count, \
             and the host calls the new validate-config export). Rebuild it against \
             this release's wit/gateway.wit: a Rust plugin on the SDK in plugins/sdk \
             (`cargo build --target wasm32-wasip2 --release`), a Python one with its \
             componentize-py build (plugins/jsonl-py/build.sh shows how)"
        ),
        _ => Ok(()),
    }
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
impl Plugin {
    fn load(engine: &PluginEngine, cfg: &PluginConfig) -> anyhow::Result<Plugin> {
        let label = cfg.component_label();
        let bytes: std::borrow::Cow<'static, [u8]> = match cfg.builtin_name() {
            Some(name) => builtin::get(name)
                .with_context(|| format!("no built-in plugin {name:?}"))?
                .into(),
            None => std::fs::read(&cfg.component)
                .with_context(|| format!("reading component {label}"))?
                .into(),
        };
        let component = Component::new(&engine.engine, &bytes)
            .map_err(|e| anyhow::anyhow!("{label} is not a valid WebAssembly component: {e}"))?;
        check_contract_version(&label, &component, &engine.engine)?;
        let pre = engine.linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!(
                "{label} does not implement the world nsq:gateway/plugin@{WIT_VERSION} \
                 (its imports cannot be satisfied): {e:#}"
            )
        })?;
        let pre = bindings::PluginPre::new(pre).map_err(|e| {
            anyhow::anyhow!(
                "{label} does not implement the world nsq:gateway/plugin@{WIT_VERSION} \
                 (missing export tcp-handler): {e:#}"
            )
        })?;
        let tick = engine.opts.epoch_tick.as_millis().max(1);
        let deadline_ticks =
            u64::try_from(u128::from(cfg.limits.call_timeout_ms).div_ceil(tick)).unwrap_or(1) + 1;
        let plugin = Plugin {
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
        };
        plugin.validate_config()?;
        Ok(plugin)
    }

    /// Calls the guest's `validate-config` with its `config:` map on an
    /// instance that serves no connection (a scratch broker behind it), so
    /// an unknown key or a bad value stops the load with the plugin's own
    /// message.
    fn validate_config(&self) -> anyhow::Result<()> {
        let name = &self.shared.name;
        let broker = Broker::new(crate::broker::BrokerOptions::default());
        let peer = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut store = self.new_store(broker, VALIDATE_LIMITS, 0, peer);
        let guest = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("plugin {name:?}: cannot instantiate: {e:#}"))?;
        let answer = guest
            .nsq_gateway_tcp_handler()
            .call_validate_config(&mut store, &self.guest_config)
            .map_err(|e| anyhow::anyhow!("plugin {name:?}: validate-config trapped: {e:#}"))?;
        answer.map_err(|why| anyhow::anyhow!("plugin {name:?} refuses its config: {why}"))
    }

    /// What `connect-info.limits` tells a guest.
    fn wit_limits(
        &self,
        server: &ServerLimits,
        msg_timeout: Duration,
        max_msg_size: u64,
    ) -> Limits {
        let l = &self.shared.limits;
        let u32_of = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        Limits {
            max_rdy_count: u32_of(server.max_rdy),
            max_msg_size: u32_of((l.max_msg_size as u64).min(max_msg_size)),
            max_batch: u32_of(l.max_batch as u64),
            max_delay_ms: ms(server.max_delay),
            msg_timeout_ms: ms(msg_timeout),
            output_buffer: u32_of(l.output_buffer as u64),
            max_subscriptions: u32_of(l.max_subscriptions as u64),
        }
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
    pub async fn serve(self: &Arc<Self>, conn: Accepted, env: Env) -> anyhow::Result<()> {
        let Accepted {
            stream,
            peer,
            magic,
            id,
        } = conn;
        let server = ServerLimits {
            max_rdy: env.config.max_rdy_count,
            max_delay: env.config.max_req_timeout,
            write_timeout: env.config.client_timeout.max(Duration::from_secs(1)),
        };
        let (broker, shutdown) = (env.broker.clone(), env.shutdown.clone());
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
        let tls_info = stream.tls_info();
        let mut store = self.new_store(broker, server, id, peer);
        store.data_mut().auth = auth::ConnAuth::new(
            env.auth.clone(),
            crate::auth::Credentials {
                remote_ip: peer.ip().to_string(),
                tls: tls_info.is_some(),
                common_name: tls_info
                    .as_ref()
                    .and_then(|t| t.common_name.clone())
                    .unwrap_or_default(),
                secret: String::new(),
            },
        );
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
            tls: tls_info.is_some(),
            tls_common_name: tls_info.as_ref().and_then(|t| t.common_name.clone()),
            limits: self.wit_limits(&server, env.config.msg_timeout, env.config.max_msg_size),
        };
        if let Some(t) = &tls_info {
            let mut meta = conn.store.data().client.meta();
            meta.tls = true;
            meta.tls_version = t.version.clone();
            meta.tls_cipher_suite = t.cipher_suite.clone();
            meta.tls_negotiated_protocol = t.negotiated_protocol.clone();
            meta.tls_common_name = t.common_name.clone();
            conn.store.data().client.set_meta(meta);
        }
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
    #[cfg(feature = "bench-hooks")]
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
    #[cfg(feature = "bench-hooks")]
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
            tls: false,
            tls_common_name: None,
            limits: self.wit_limits(&BENCH_LIMITS, Duration::from_secs(60), 1 << 20),
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

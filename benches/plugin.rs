//! Plugin host figures for issue 5, as a plain bench binary
//! (`cargo bench --features bench-hooks --bench plugin`, `harness = false`):
//! 1. instantiation latency per connection (Store + instance from the
//!    `InstancePre`), p50/p99, with and without the pooling allocator;
//! 2. memory per idle LINE connection at 10,000 connections (server RSS
//!    delta / n; the clients run in a child process so their sockets and
//!    buffers are not counted), and of the instances alone, each broken
//!    down by what holds it (pooled linear memories, tables, mappings,
//!    the host's heap: see `rss_by_kind`), each figure in a fresh process;
//! 3. server CPU per published message, LINE vs V2, same workload (100-byte
//!    bodies, one pipelined connection), measured as the CPU time of the
//!    server's single runtime thread; LINE under each CPU budget (epoch,
//!    fuel, none) to show what the deadline costs.
//!
//! Arguments: `[instantiate] [memory] [cpu]` to run a subset (default all);
//! `BENCH_CONNS` overrides 10,000 and `BENCH_MSGS` 200,000; `BENCH_PROTOS`
//! (default `LINE,V2`; also `STOMP`, `RESP`) picks the protocols whose idle
//! connections are measured, and skips the instances-only figure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nsq_gateway::app::Listeners;
use nsq_gateway::broker::{Broker, BrokerOptions};
use nsq_gateway::config::Config;
use nsq_gateway::plugin::{CpuBudget, HostOptions, PluginConfig, PluginLimits, load_plugins_with};
use nsq_gateway::server::{Context, Handler, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The plugins an idle-memory figure can be taken for: protocol label,
/// component, magic, and what a client sends first (magic included) to be
/// answered, which proves the instance exists and its events ran.
const PLUGINS: [(&str, &str, &str, &[u8]); 3] = [
    ("LINE", "line", "LINE", b"LINE"),
    (
        "STOMP",
        "stomp",
        "CONN",
        b"CONNECT\naccept-version:1.2\nhost:bench\n\n\0",
    ),
    ("RESP", "resp", "*1\r\n", b"*1\r\n$4\r\nPING\r\n"),
];

fn plugin_config(name: &str, magic: &str, max_connections: usize) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        component: std::path::PathBuf::from(env!("NSQ_GATEWAY_PLUGIN_DIR"))
            .join(format!("{name}.wasm")),
        magics: vec![magic.into()],
        config: Default::default(),
        limits: PluginLimits {
            max_connections,
            ..PluginLimits::default()
        },
        override_v2: false,
    }
}

fn line_config(max_connections: usize) -> PluginConfig {
    plugin_config("line", "LINE", max_connections)
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.first().map(String::as_str) == Some("hold-clients") {
        return hold_clients(&args[1..]);
    }
    let all = args.is_empty();
    let want = |name: &str| all || args.iter().any(|a| a == name);
    if want("instantiate") {
        instantiation()?;
    }
    if want("memory") {
        memory()?;
    }
    if want("cpu") {
        cpu()?;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn instantiation() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for pooling in [true, false] {
        for cpu in [CpuBudget::Epoch, CpuBudget::Fuel] {
            let opts = HostOptions {
                pooling,
                cpu,
                ..HostOptions::default()
            };
            let plugins = load_plugins_with(&[line_config(1000)], &opts)?;
            let plugin = plugins[0].1.clone();
            let broker = Broker::new(BrokerOptions::default());
            let n = 20_000;
            let mut times = Vec::with_capacity(n);
            rt.block_on(async {
                for _ in 0..1000 {
                    plugin.bench_instantiate(&broker).await?;
                }
                for _ in 0..n {
                    let t = Instant::now();
                    plugin.bench_instantiate(&broker).await?;
                    times.push(t.elapsed());
                }
                anyhow::Ok(())
            })?;
            times.sort();
            println!(
                "instantiate: pooling={pooling:<5} cpu={cpu:?}: p50 {:.1} µs, p99 {:.1} µs (n={n})",
                percentile(&times, 0.50).as_secs_f64() * 1e6,
                percentile(&times, 0.99).as_secs_f64() * 1e6,
            );
        }
    }
    Ok(())
}

/// Starts the gateway with `plugin` on a current-thread runtime in its own
/// thread. Returns the address and a handle to run closures on the server
/// thread.
struct ServerThread {
    addr: SocketAddr,
    handle: tokio::runtime::Handle,
    ctx: Arc<Context>,
}

fn start_server(opts: &HostOptions, plugin: PluginConfig) -> anyhow::Result<ServerThread> {
    let config = Config {
        max_connections: 20_000,
        mem_queue_size: 10_000_000,
        plugins: vec![plugin],
        ..Config::default()
    };
    let loaded = load_plugins_with(&config.plugins, opts)?;
    let mut registry = Registry::new();
    for (magics, p) in loaded {
        for m in magics {
            registry.register(m, Handler::Plugin(p.clone()), false)?;
        }
    }
    let ctx = Context::new(config, registry);
    let (tx, rx) = std::sync::mpsc::channel();
    let run_ctx = ctx.clone();
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("runtime: {e}"),
            };
            rt.block_on(async move {
                let tcp = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(t) => t,
                    Err(e) => return eprintln!("bind: {e}"),
                };
                let addr = tcp.local_addr().ok();
                let _ = tx.send((addr, tokio::runtime::Handle::current()));
                let _ = nsq_gateway::app::run(Listeners { tcp, http: None }, run_ctx).await;
            });
        })?;
    let (addr, handle) = rx.recv()?;
    let addr = addr.ok_or_else(|| anyhow::anyhow!("no server address"))?;
    Ok(ServerThread { addr, handle, ctx })
}

impl ServerThread {
    /// CPU time consumed so far by the server's runtime thread.
    fn cpu_time(&self) -> Duration {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(thread_cpu());
        });
        rx.recv().unwrap_or_default()
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// One mapping of /proc/self/smaps.
struct Mapping {
    lo: u64,
    hi: u64,
    perms: String,
    rss_kib: u64,
}

fn read_smaps() -> Vec<Mapping> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut maps: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let mut range = first.split('-');
            let lo = u64::from_str_radix(range.next().unwrap_or("0"), 16).unwrap_or(0);
            let hi = u64::from_str_radix(range.next().unwrap_or("0"), 16).unwrap_or(0);
            let perms = parts.next().unwrap_or_default().to_string();
            maps.push(Mapping {
                lo,
                hi,
                perms,
                rss_kib: 0,
            });
        } else if first == "Rss:"
            && let Some(m) = maps.last_mut()
        {
            m.rss_kib = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    maps
}

/// What holds resident memory, by kind of mapping (KiB per kind).
const KINDS: [&str; 4] = [
    "linear memory (pooled slots: data, guest stack, heap)",
    "tables (pool)",
    "memory mappings added (count, not KiB)",
    "host: malloc heap, tasks, code, the rest",
];

/// Resident KiB per entry of `KINDS` (and the mapping count in entry 2),
/// from /proc/self/smaps. A pooled linear memory is a read-write window
/// with inaccessible reserved space on both sides (the slot's unused
/// reservation and guard); guests run without a fiber, so there are no
/// stacks to count; the table pool is one mapping of gigabytes.
fn rss_by_kind() -> [u64; 4] {
    let maps = read_smaps();
    let mut kib = [0u64; 4];
    kib[2] = maps.len() as u64;
    let none = |m: Option<&Mapping>| m.is_some_and(|m| m.perms.starts_with("---"));
    for (i, m) in maps.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| &maps[j]);
        let next = maps.get(i + 1);
        let kind = if m.perms.starts_with("rw")
            && none(prev)
            && none(next)
            && prev.is_some_and(|p| p.hi == m.lo && p.hi - p.lo > 1 << 20)
            && next.is_some_and(|n| n.lo == m.hi)
        {
            0
        } else if m.hi - m.lo >= 1 << 30 && m.perms.starts_with("rw") {
            1
        } else {
            3
        };
        kib[kind] += m.rss_kib;
    }
    kib
}

/// Bytes the host's malloc has handed out and not freed (all arenas).
fn malloc_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads glibc's allocator statistics.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

/// A snapshot to subtract from a later one: RSS by kind and malloc in use.
struct MemSnapshot {
    by_kind: [u64; 4],
    malloc: u64,
}

impl MemSnapshot {
    fn take() -> Self {
        MemSnapshot {
            by_kind: rss_by_kind(),
            malloc: malloc_in_use(),
        }
    }

    /// Prints what grew since `self`, per connection (KB = 1000 bytes).
    fn print_growth(&self, n: usize) {
        let now = MemSnapshot::take();
        for (k, kind) in KINDS.iter().enumerate() {
            let grew = now.by_kind[k].saturating_sub(self.by_kind[k]);
            if k == 2 {
                println!("    {:>6.2}     {kind}", grew as f64 / n as f64);
                continue;
            }
            println!(
                "    {:>6.1} KB  {kind}",
                (grew * 1024) as f64 / n as f64 / 1000.0
            );
        }
        let grew = now.malloc.saturating_sub(self.malloc);
        println!(
            "    ({:.1} KB of the host part is malloc'd and in use)",
            grew as f64 / n as f64 / 1000.0
        );
    }
}

/// Idle memory of the instances alone: `n` stores that ran `on-connect`,
/// held in a Vec, with no sockets or tasks.
fn instance_memory(n: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let plugins = load_plugins_with(&[line_config(n)], &HostOptions::default())?;
    let plugin = plugins[0].1.clone();
    let broker = Broker::new(BrokerOptions::default());
    let snapshot = MemSnapshot::take();
    let before = rss_bytes();
    let held = rt.block_on(async {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            held.push(plugin.bench_idle_instance(&broker).await?);
        }
        anyhow::Ok(held)
    })?;
    let after = rss_bytes();
    println!(
        "memory: LINE instances only (store + instance after on-connect, no socket/task): {:.1} KB each (n={n})",
        after.saturating_sub(before) as f64 / n as f64 / 1000.0
    );
    snapshot.print_growth(n);
    drop(held);
    Ok(())
}

/// Runs each memory figure in a fresh process (this binary again, with
/// `BENCH_MEMORY_PART`): in one process, what an earlier figure freed, or was
/// still freeing, would be counted against the next one.
fn memory() -> anyhow::Result<()> {
    if let Ok(part) = std::env::var("BENCH_MEMORY_PART") {
        return memory_part(&part);
    }
    let mut parts = Vec::new();
    if std::env::var("BENCH_PROTOS").is_err() {
        parts.push("instances");
    }
    let protos = std::env::var("BENCH_PROTOS").unwrap_or_else(|_| "LINE,V2".into());
    parts.extend(
        ["LINE", "STOMP", "RESP", "V2"]
            .into_iter()
            .filter(|l| protos.split(',').any(|p| p == *l)),
    );
    for part in parts {
        let status = std::process::Command::new(std::env::current_exe()?)
            .arg("memory")
            .env("BENCH_MEMORY_PART", part)
            .status()?;
        anyhow::ensure!(status.success(), "memory figure {part}: {status}");
    }
    Ok(())
}

/// One memory figure: `instances` (LINE's), or idle connections of a
/// protocol (`V2` or a label of `PLUGINS`).
fn memory_part(part: &str) -> anyhow::Result<()> {
    let n = env_usize("BENCH_CONNS", 10_000);
    if part == "instances" {
        return instance_memory(n);
    }
    let plugin = PLUGINS.iter().find(|p| p.0 == part);
    if plugin.is_none() && part != "V2" {
        anyhow::bail!("unknown memory figure {part:?}");
    }
    let label = part;
    // V2 runs next to LINE with a pool of 10 (a plugin is always loaded).
    let config = match plugin {
        Some(&(_, name, magic, _)) => plugin_config(name, magic, n),
        None => line_config(10),
    };
    let server = start_server(&HostOptions::default(), config)?;
    std::thread::sleep(Duration::from_millis(200));
    let snapshot = MemSnapshot::take();
    let before = rss_bytes();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "hold-clients",
            &server.addr.to_string(),
            &n.to_string(),
            label,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("child stdout"))?;
    let mut ready = [0u8; 1];
    std::io::Read::read_exact(&mut out, &mut ready)?;
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes();
    let active = server.ctx.broker.stats(None).len();
    let magic = plugin.and_then(|p| <[u8; 4]>::try_from(p.2.as_bytes()).ok());
    let registry = server.ctx.registry.load();
    let plugin_active = match magic.and_then(|m| registry.get(&m)) {
        Some(Handler::Plugin(p)) => p.stats().active,
        _ => 0,
    };
    println!(
        "memory: {label}: {n} idle connections: RSS {:.1} MiB -> {:.1} MiB, {:.1} KB per connection \
         (plugin active: {plugin_active}, topics {active})",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / n as f64 / 1000.0,
    );
    snapshot.print_growth(n);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// Child process: opens `n` connections of a protocol, waits for each to be
/// served (a plugin's answer to its `PLUGINS` hello, a V2 NOP every 1000),
/// reports, then idles.
fn hold_clients(args: &[String]) -> anyhow::Result<()> {
    let addr: SocketAddr = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("addr"))?
        .parse()?;
    let n: usize = args.get(1).ok_or_else(|| anyhow::anyhow!("n"))?.parse()?;
    let label = args.get(2).cloned().unwrap_or_else(|| "LINE".into());
    let hello = PLUGINS.iter().find(|p| p.0 == label).map(|p| p.3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = TcpStream::connect(addr).await?;
            if let Some(hello) = hello {
                s.write_all(hello).await?;
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await?;
            } else {
                s.write_all(b"  V2").await?;
                if i % 1000 == 0 {
                    s.write_all(b"NOP\n").await?;
                }
            }
            conns.push(s);
        }
        std::io::Write::write_all(&mut std::io::stdout(), b"r")?;
        std::io::Write::flush(&mut std::io::stdout())?;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(conns);
        anyhow::Ok(())
    })
}

/// Publishes `n` 100-byte messages over one pipelined connection and waits
/// for every acknowledgement.
async fn publish_workload(addr: SocketAddr, line: bool, n: usize) -> anyhow::Result<()> {
    let body = [b'x'; 100];
    let mut payload = Vec::new();
    let (magic, reply_len): (&[u8], usize) = if line { (b"LINE", 3) } else { (b"  V2", 10) };
    payload.extend_from_slice(magic);
    for _ in 0..n {
        if line {
            payload.extend_from_slice(b"PUB bench ");
            payload.extend_from_slice(&body);
            payload.push(b'\n');
        } else {
            payload.extend_from_slice(b"PUB bench\n");
            payload.extend_from_slice(&(body.len() as u32).to_be_bytes());
            payload.extend_from_slice(&body);
        }
    }
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move { w.write_all(&payload).await.map(|_| w) });
    // LINE greets first.
    let mut expected = n * reply_len;
    if line {
        expected += "OK LINE nsq-gateway, type HELP for commands\n".len();
    }
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    while got < expected {
        let k = r.read(&mut buf).await?;
        if k == 0 {
            anyhow::bail!("server closed after {got} of {expected} reply bytes");
        }
        got += k;
    }
    let _w = writer.await??;
    Ok(())
}

fn cpu() -> anyhow::Result<()> {
    let n = env_usize("BENCH_MSGS", 200_000);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runs: [(&str, bool, CpuBudget); 4] = [
        ("V2", false, CpuBudget::Epoch),
        ("LINE epoch", true, CpuBudget::Epoch),
        ("LINE fuel", true, CpuBudget::Fuel),
        ("LINE none", true, CpuBudget::Unbounded),
    ];
    let mut v2_ns = None;
    for (label, line, budget) in runs {
        let opts = HostOptions {
            cpu: budget,
            ..HostOptions::default()
        };
        let server = start_server(&opts, line_config(100))?;
        // Warm-up, then three measured runs; report the median.
        client.block_on(publish_workload(server.addr, line, n / 10))?;
        let mut per_msg = Vec::new();
        let mut rates = Vec::new();
        for _ in 0..3 {
            let c0 = server.cpu_time();
            let t0 = Instant::now();
            client.block_on(publish_workload(server.addr, line, n))?;
            let wall = t0.elapsed();
            let cpu = server.cpu_time().saturating_sub(c0);
            per_msg.push(cpu.as_nanos() as f64 / n as f64);
            rates.push(n as f64 / wall.as_secs_f64());
        }
        per_msg.sort_by(f64::total_cmp);
        rates.sort_by(f64::total_cmp);
        let ns = per_msg[1];
        let ratio = match v2_ns {
            None => {
                v2_ns = Some(ns);
                String::new()
            }
            Some(base) => format!(", {:.2}x V2", ns / base),
        };
        println!(
            "cpu: {label:<10}: {:.0} ns server CPU per message{ratio}, {:.0} msg/s (n={n}, 100-byte PUB, median of 3)",
            ns, rates[1]
        );
    }
    Ok(())
}

//! Capacity under load, against the real binary: the default gateway.yaml
//! serves 10,000 concurrent connections (4,000 V2, 4,000 LINE, 2,000 STOMP)
//! with no trap and no abort, plugin connections cost the memory mappings
//! the startup plan counts on, and past every limit (a plugin's
//! `max_connections`, the planned slots, `RLIMIT_NOFILE`) connections are
//! refused and counted while V2 and HTTP keep working. Mappings and
//! counters are read from outside the process: `/proc/<pid>/maps`, `/stats`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use nsq_gateway::plugin::capacity::{MAPS_PER_CONNECTION, fd_reserve};

use crate::common::binary::{BIN, Gateway, http, repo};
use crate::common::wait::eventually_blocking;
use crate::common::{temp_data_dir, v2_round_trip};

fn warn_level() -> Vec<String> {
    vec!["--log-level".to_owned(), "warn".to_owned()]
}

/// The counters of one plugin in `/stats`.
fn plugin(stats: &serde_json::Value, name: &str) -> serde_json::Value {
    stats["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no plugin {name} in {stats}"))
}

/// The first command each protocol's client sends, and what proves it was
/// answered.
fn first_exchange(proto: &str) -> (&'static [u8], &'static [u8]) {
    match proto {
        "V2" => (b"  V2NOP\nPUB cap\n\x00\x00\x00\x01x", b"OK"),
        "LINE" => (b"LINE\nPING\n", b"PONG"),
        "STOMP" => (b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00", b"CONNECTED"),
        other => panic!("unknown protocol {other}"),
    }
}

/// Opens `n` connections of `proto`, sends each its first command, and
/// returns them with whether each was answered within the deadline.
async fn open_many(addr: &str, proto: &str, n: usize) -> Vec<(TcpStream, bool)> {
    let (hello, answer) = first_exchange(proto);
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(hello).await.expect("write first command");
        streams.push(s);
    }
    let mut set = JoinSet::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        set.spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            let ok = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(k) => {
                            got.extend_from_slice(&buf[..k]);
                            if got.windows(answer.len()).any(|w| w == answer) {
                                return true;
                            }
                        }
                    }
                }
            })
            .await
            .unwrap_or(false);
            (i, s, ok)
        });
    }
    let mut out: Vec<Option<(TcpStream, bool)>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, s, ok) = r.expect("join");
        out[i] = Some((s, ok));
    }
    out.into_iter().flatten().collect()
}

/// This process's descriptor limit, raised to the hard limit.
fn raise_own_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    let _ = setrlimit(Resource::Nofile, lim);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_on_the_default_config() {
    // Both ends of every connection live on this machine: this process
    // needs a descriptor per connection, and so does the gateway, whose
    // plugins get what its reserve for V2 and HTTP leaves.
    let nofile = raise_own_nofile();
    let budget = nofile.saturating_sub(fd_reserve(nofile).max(512));
    let scale = (budget as f64 / 10_000.0).min(1.0);
    let (v2, line, stomp) = (
        (4000.0 * scale) as usize,
        (4000.0 * scale) as usize,
        (2000.0 * scale) as usize,
    );
    println!(
        "RLIMIT_NOFILE {nofile}: {} connections ({v2} V2, {line} LINE, {stomp} STOMP){}",
        v2 + line + stomp,
        if scale < 1.0 {
            " -- fewer than 10,000, the largest figure these limits hold"
        } else {
            ""
        }
    );
    let mut gw = Gateway::spawn(&repo().join("gateway.yaml"), &warn_level(), None);
    let maps_start = gw.maps();
    let v2_conns = open_many(&gw.tcp, "V2", v2).await;
    let maps_v2 = gw.maps();
    let line_conns = open_many(&gw.tcp, "LINE", line).await;
    let stomp_conns = open_many(&gw.tcp, "STOMP", stomp).await;
    let maps_all = gw.maps();
    let answered = |c: &[(TcpStream, bool)]| c.iter().filter(|(_, ok)| *ok).count();
    println!(
        "answered: V2 {}/{v2}, LINE {}/{line}, STOMP {}/{stomp}; memory mappings: {maps_start} at \
         start, +{} for V2, +{} for {} plugin connections ({:.2} each)",
        answered(&v2_conns),
        answered(&line_conns),
        answered(&stomp_conns),
        maps_v2 - maps_start,
        maps_all - maps_v2,
        line + stomp,
        (maps_all - maps_v2) as f64 / (line + stomp).max(1) as f64
    );
    assert!(gw.proc.alive(), "the gateway died under load");
    assert_eq!(answered(&v2_conns), v2);
    assert_eq!(answered(&line_conns), line);
    assert_eq!(answered(&stomp_conns), stomp);
    // The startup plan counts MAPS_PER_CONNECTION per plugin connection.
    let per_conn = (maps_all - maps_v2) as f64 / (line + stomp).max(1) as f64;
    assert!(
        per_conn <= MAPS_PER_CONNECTION as f64 + 0.05,
        "{per_conn:.2} mappings per plugin connection, planned {MAPS_PER_CONNECTION}"
    );
    assert!(maps_start < 2000, "{maps_start} mappings before any client");
    let stats = gw.stats();
    for (name, n) in [("line", line), ("stomp", stomp)] {
        let p = plugin(&stats, name);
        assert_eq!(p["active"], n as u64, "{p}");
        assert_eq!(p["traps"], 0, "{p}");
        assert_eq!(p["refused"], 0, "{p}");
    }
    // With every connection still open, a new V2 client is served at once.
    v2_round_trip(&gw.tcp, "after-load", b"still-here").await;
    assert!(gw.proc.alive());
    drop((v2_conns, line_conns, stomp_conns));
    let err = gw.stop();
    assert!(!err.contains("panicked"), "{err}");
}

/// A config with LINE limited to `line_max` connections and STOMP left at
/// the default, components from the build's plugin directory.
fn limited_config(line_max: usize) -> PathBuf {
    let dir = PathBuf::from(env!("NSQ_GATEWAY_PLUGIN_DIR"));
    let text = format!(
        "plugins:\n\
         \x20 - name: line\n\
         \x20   component: {line:?}\n\
         \x20   magics: [\"LINE\"]\n\
         \x20   limits: {{ max_connections: {line_max} }}\n\
         \x20 - name: stomp\n\
         \x20   component: {stomp:?}\n\
         \x20   magics: [\"CONN\", \"STOM\"]\n",
        line = dir.join("line.wasm"),
        stomp = dir.join("stomp.wasm"),
    );
    let path = temp_data_dir().join("limited.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_every_limit_connections_are_refused_and_counted() {
    raise_own_nofile();
    // 400 descriptors: the plan keeps 256 for V2 and HTTP, so the plugins
    // together get 144 slots; LINE alone may have 100 of them.
    let nofile: u64 = 400;
    let slots = (nofile - fd_reserve(nofile)) as usize;
    let mut gw = Gateway::spawn(
        &limited_config(100),
        &warn_level(),
        Some(&format!("-n {nofile}")),
    );
    let line = open_many(&gw.tcp, "LINE", 130).await;
    let served_line = line.iter().filter(|(_, ok)| *ok).count();
    let stomp = open_many(&gw.tcp, "STOMP", 60).await;
    let served_stomp = stomp.iter().filter(|(_, ok)| *ok).count();
    let stats = gw.stats();
    let (pl, ps) = (plugin(&stats, "line"), plugin(&stats, "stomp"));
    println!(
        "slots {slots}: LINE served {served_line}/130, STOMP served {served_stomp}/60; {pl} {ps}"
    );
    assert_eq!(stats["plugin_slots"]["slots"], slots as u64, "{stats}");
    assert_eq!(served_line, 100);
    assert_eq!(pl["refused"], 30, "{pl}");
    assert_eq!(served_stomp, slots - 100);
    assert_eq!(ps["refused"], (60 - (slots - 100)) as u64, "{ps}");
    for p in [&pl, &ps] {
        assert_eq!(p["traps"], 0, "{p}");
        assert_eq!(p["limit_hits"], 0, "{p}");
    }
    // The plugin pools are exhausted; V2 and HTTP still work.
    v2_round_trip(&gw.tcp, "after-load", b"still-here").await;

    // Now run out of descriptors: the accept loop meets EMFILE, backs off,
    // and serves again once descriptors come back.
    let mut extra = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(&gw.tcp).await {
            Ok(mut s) => {
                let _ = s.write_all(b"  V2NOP\n").await;
                extra.push(s);
            }
            Err(_) => break,
        }
    }
    // Every descriptor of the gateway is in use: its accept loop is at EMFILE.
    let fds = format!("/proc/{}/fd", gw.proc.pid());
    eventually_blocking(Duration::from_secs(10), "the gateway at EMFILE", || {
        let open = std::fs::read_dir(&fds).ok()?.count() as u64;
        (open >= nofile).then_some(())
    });
    assert!(gw.proc.alive(), "the gateway died at EMFILE");
    drop(extra);
    drop(line);
    drop(stomp);
    // Once descriptors are back, HTTP answers again, and every plugin
    // slot has been given back.
    let metrics = eventually_blocking(
        Duration::from_secs(30),
        "HTTP back and every plugin slot given back",
        || {
            let (_, body) = http(&gw.http, "GET", "/metrics", b"")?;
            let freed = body
                .lines()
                .any(|l| l.starts_with("nsq_plugin_slots_in_use ") && l.ends_with(" 0"));
            (body.contains("nsq_accept_errors") && freed).then_some(body)
        },
    );
    let accept_errors: u64 = metrics
        .lines()
        .find(|l| l.starts_with("nsq_accept_errors"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("nsq_accept_errors");
    println!("accept errors survived: {accept_errors}");
    assert!(accept_errors > 0, "EMFILE was never hit");
    v2_round_trip(&gw.tcp, "after-load", b"still-here").await;
    assert!(gw.proc.alive());
    let err = gw.stop();
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("plugin connection refused"), "{err}");
}

#[test]
fn a_configuration_that_cannot_fit_is_refused_at_startup() {
    // 200 descriptors leave none for plugins after the V2/HTTP reserve.
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" --config gateway.yaml --tcp-address 127.0.0.1:0 --http-address 127.0.0.1:0")
        .arg(BIN)
        .current_dir(repo())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    assert!(
        err.contains("RLIMIT_NOFILE") && err.contains("ulimit -n"),
        "{err}"
    );
    // 8 GB of address space cannot hold 10,000 slots of 18 MiB each.
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 8000000 && exec \"$0\" --config gateway.yaml --tcp-address 127.0.0.1:0 --http-address 127.0.0.1:0")
        .arg(BIN)
        .current_dir(repo())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    assert!(err.contains("RLIMIT_AS"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every open connection holds its protocol's future on the heap, so its
/// size is memory per idle connection. Rarely taken paths (an auth query
/// with its HTTP and TLS state) are boxed rather than carried in it. The
/// bounds are this build's sizes with some room: V2 about 11 KB (the
/// session's buffers and settings), a plugin connection about 1.6 KB (it
/// was 3.9 KB while the auth query was inline).
#[tokio::test]
async fn connection_futures_stay_small() {
    use nsq_gateway::protocol::Accepted;
    let server = crate::common::TestServer::builder()
        .plugin(crate::common::plugins::line_plugin())
        .start()
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = |magic: [u8; 4], id: u64| {
        let listener = &listener;
        async move {
            let client = TcpStream::connect(addr).await.expect("connect");
            let (stream, peer) = listener.accept().await.expect("accept");
            let conn = Accepted {
                stream: stream.into(),
                peer,
                magic,
                id,
            };
            (client, conn)
        }
    };
    let (_client, conn) = accept(*b"  V2", 1).await;
    let v2 = nsq_gateway::protocol::v2::serve(conn, server.ctx.env());
    let v2_size = std::mem::size_of_val(&v2);
    drop(v2);
    let (_client, conn) = accept(*b"LINE", 2).await;
    let line = server.plugin("line");
    let plugin = line.serve(conn, server.ctx.env());
    let plugin_size = std::mem::size_of_val(&plugin);
    eprintln!("connection futures: V2 {v2_size} B, plugin {plugin_size} B");
    assert!(v2_size <= 12 * 1024, "V2 session future is {v2_size} B");
    assert!(
        plugin_size <= 2 * 1024,
        "plugin connection future is {plugin_size} B"
    );
}

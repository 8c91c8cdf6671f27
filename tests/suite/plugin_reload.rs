//! Hot reload of the plugin set: `POST /plugins/reload` in process and
//! `kill -HUP` against the binary. An added magic is served, a removed one
//! gets E_BAD_PROTOCOL, connections opened before keep their instance, and a
//! set that fails to load is refused whole with the error in `/stats`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use nsq_gateway::config::{Config, PluginConfig};

use crate::common::binary::{Gateway, get_json, http};
use crate::common::plugins::{line_plugin, shipped_plugin};
use crate::common::wait::eventually_blocking;
use crate::common::{TestServer, temp_data_dir, test_config};

const BAD_PROTOCOL: &[u8] = b"\x00\x00\x00\x12\x00\x00\x00\x01E_BAD_PROTOCOL";

/// Writes a config file naming `plugins` (everything else default).
fn write_config(path: &Path, plugins: Vec<PluginConfig>) {
    let config = Config {
        plugins,
        ..Config::default()
    };
    std::fs::write(path, serde_yaml::to_string(&config).expect("yaml")).expect("write config");
}

fn connect(addr: &str, magic: &[u8]) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(magic).expect("magic");
    s
}

/// A LINE connection past its greeting.
fn line(addr: &str) -> BufReader<std::net::TcpStream> {
    let mut r = BufReader::new(connect(addr, b"LINE\n"));
    let mut greeting = String::new();
    r.read_line(&mut greeting).expect("greeting");
    assert!(greeting.starts_with("OK LINE"), "{greeting}");
    r
}

fn ping_line(r: &mut BufReader<std::net::TcpStream>) -> String {
    r.get_mut().write_all(b"PING\n").expect("ping");
    let mut answer = String::new();
    r.read_line(&mut answer).expect("pong");
    answer
}

fn resp_ping(addr: &str) -> Vec<u8> {
    let mut s = connect(addr, b"*1\r\n$4\r\nPING\r\n");
    let mut got = [0u8; 7];
    s.read_exact(&mut got).expect("+PONG");
    got.to_vec()
}

fn bad_protocol(addr: &str, magic: &[u8]) -> Vec<u8> {
    let mut s = connect(addr, magic);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_magics_and_open_connections_keep_their_instance() {
    let dir = temp_data_dir();
    let path = dir.join("gateway.yaml");
    write_config(&path, vec![line_plugin()]);
    let server = TestServer::start(Config {
        plugins: vec![line_plugin()],
        ..test_config()
    })
    .await;
    server.ctx.config_path.set(path.clone()).expect("set once");
    let (tcp, web) = (server.tcp_addr.to_string(), server.http_addr.to_string());
    tokio::task::spawn_blocking(move || {
        let mut before = line(&tcp);
        assert!(bad_protocol(&tcp, b"*1\r\n").starts_with(BAD_PROTOCOL));

        // Add RESP.
        write_config(&path, vec![line_plugin(), shipped_plugin("resp")]);
        let (status, body) = http(&web, "POST", "/plugins/reload", b"").expect("answer");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["generation"], 1, "{v}");
        assert_eq!(resp_ping(&tcp), b"+PONG\r\n");
        assert_eq!(ping_line(&mut before), "PONG\n");

        // Remove LINE: new LINE connections are refused, the old one goes on.
        write_config(&path, vec![shipped_plugin("resp")]);
        assert_eq!(
            http(&web, "POST", "/plugins/reload", b"")
                .expect("answer")
                .0,
            200
        );
        assert!(bad_protocol(&tcp, b"LINE").starts_with(BAD_PROTOCOL));
        assert_eq!(ping_line(&mut before), "PONG\n");

        // A set that fails to load is refused whole; the current one stays.
        let mut missing = line_plugin();
        missing.component = dir.join("no-such.wasm");
        write_config(&path, vec![shipped_plugin("resp"), missing]);
        let (status, body) = http(&web, "POST", "/plugins/reload", b"").expect("answer");
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("does not exist"), "{body}");
        let mut dup = line_plugin();
        dup.magics = vec!["*1\r\n".into()];
        write_config(&path, vec![shipped_plugin("resp"), dup]);
        let (status, body) = http(&web, "POST", "/plugins/reload", b"").expect("answer");
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("already used"), "{body}");
        assert_eq!(resp_ping(&tcp), b"+PONG\r\n");
        let stats = get_json(&web, "/stats?format=json").expect("stats");
        let set = &stats["plugin_set"];
        assert_eq!(set["generation"], 2, "{set}");
        assert!(
            set["last_error"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("already used"),
            "{set}"
        );
        let hash = set["plugins"][0]["component_hash"].as_str().unwrap_or("");
        assert_eq!(hash.len(), 64, "{set}");
        assert!(
            set["plugins"][0]["loaded_at"].as_i64().unwrap_or(0) > 0,
            "{set}"
        );
    })
    .await
    .expect("scenario");
}

/// The done-when: with `kill -HUP`, a magic added to the config file is
/// served within 2 s, and a LINE connection opened before still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary_without_dropping_connections() {
    tokio::task::spawn_blocking(|| {
        let dir = temp_data_dir();
        let path = dir.join("gateway.yaml");
        write_config(&path, vec![line_plugin()]);
        let gw = Gateway::spawn(&path, &[], None);
        let mut before = line(&gw.tcp);
        assert_eq!(ping_line(&mut before), "PONG\n");
        write_config(&path, vec![line_plugin(), shipped_plugin("resp")]);
        let sent = std::time::Instant::now();
        assert!(send_signal(gw.proc.pid(), "HUP"), "kill -HUP");
        eventually_blocking(Duration::from_secs(2), "RESP served after SIGHUP", || {
            let mut s = std::net::TcpStream::connect(&gw.tcp).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"*1\r\n$4\r\nPING\r\n").ok()?;
            let mut got = [0u8; 7];
            s.read_exact(&mut got).ok()?;
            (&got == b"+PONG\r\n").then_some(())
        });
        eprintln!("SIGHUP to RESP served: {:?}", sent.elapsed());
        assert_eq!(ping_line(&mut before), "PONG\n");
        assert_eq!(gw.stats()["plugin_set"]["generation"], 1);
        gw.stop();
    })
    .await
    .expect("scenario");
}

/// `kill -<sig> <pid>` through the shell's kill, so the test needs no libc.
fn send_signal(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

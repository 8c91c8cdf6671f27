//! The gateway runs from any directory: relative component paths in the
//! config resolve against the config file's directory, and the example
//! plugins are embedded in the binary (`builtin:<name>`, or no `component`),
//! so an installed binary needs no checkout. Tested with the real binary
//! started from an unrelated working directory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::binary::{BIN, Gateway, get_json, repo};
use crate::common::temp_data_dir;
use crate::common::wait::eventually_blocking;

/// Sends `bytes` (which start with the magic) and returns the first line
/// the plugin answers.
fn first_line(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read");
    line
}

/// `topic` holds `n` messages, per `/stats`.
fn topic_depth(gw: &Gateway, topic: &str) -> Option<u64> {
    let stats = get_json(&gw.http, &format!("/stats?format=json&topic={topic}"))?;
    stats["topics"].as_array()?.iter().find_map(|t| {
        (t["topic_name"] == topic)
            .then(|| t["depth"].as_u64())
            .flatten()
    })
}

#[test]
fn the_repo_config_works_from_another_directory() {
    let elsewhere = temp_data_dir();
    let gw = Gateway::spawn_in(
        &repo().join("gateway.yaml"),
        &[],
        &elsewhere,
        Stdio::piped(),
    );
    let hello = first_line(&gw.tcp, b"LINE\nPUB anywhere hello\n");
    assert!(hello.starts_with("OK LINE"), "{hello:?}");
    eventually_blocking(Duration::from_secs(10), "the LINE publish lands", || {
        (topic_depth(&gw, "anywhere") == Some(1)).then_some(())
    });
}

/// The quick start: the shipped gateway.yaml keeps `data_path: "."`, so
/// the data and the compile cache go under the working directory.
#[test]
fn the_default_relative_data_path_works() {
    let cwd = temp_data_dir();
    let gw = Gateway::spawn_in(
        &repo().join("gateway.yaml"),
        &["--data-path".into(), ".".into()],
        &cwd,
        Stdio::piped(),
    );
    let hello = first_line(&gw.tcp, b"LINE\nPUB relative hello\n");
    assert!(hello.starts_with("OK LINE"), "{hello:?}");
    assert!(cwd.join("plugin-cache").is_dir(), "the cache is under ./");
}

#[test]
fn builtin_and_relative_components() {
    let confdir = temp_data_dir();
    std::fs::create_dir_all(confdir.join("wasm")).expect("mkdir");
    std::fs::copy(
        repo().join("target/plugins/line.wasm"),
        confdir.join("wasm/line.wasm"),
    )
    .expect("copy line.wasm");
    let config = confdir.join("gateway.yaml");
    std::fs::write(
        &config,
        "plugins:\n\
         \x20 - name: line\n\
         \x20   component: builtin:line\n\
         \x20   magics: [\"LINE\"]\n\
         \x20 - name: stomp\n\
         \x20   magics: [\"CONN\", \"STOM\"]\n\
         \x20 - name: line-file\n\
         \x20   component: wasm/line.wasm\n\
         \x20   magics: [\"LIN2\"]\n",
    )
    .expect("write config");
    let elsewhere = temp_data_dir();
    let gw = Gateway::spawn_in(&config, &[], &elsewhere, Stdio::piped());
    let hello = first_line(&gw.tcp, b"LINE\n");
    assert!(hello.starts_with("OK LINE"), "builtin:line: {hello:?}");
    let hello = first_line(&gw.tcp, b"LIN2\n");
    assert!(hello.starts_with("OK LINE"), "wasm/line.wasm: {hello:?}");
    let connected = first_line(
        &gw.tcp,
        b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0",
    );
    assert_eq!(connected.trim_end(), "CONNECTED", "stomp with no component");
}

#[test]
fn an_unknown_builtin_is_refused_by_name() {
    let dir = temp_data_dir();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        "plugins:\n  - name: x\n    component: builtin:nope\n    magics: [\"NOPE\"]\n",
    )
    .expect("write config");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args([
            "--tcp-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
        ])
        .current_dir(&dir)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no built-in plugin \"nope\""), "{err}");
    assert!(err.contains("line, stomp, resp"), "{err}");
}

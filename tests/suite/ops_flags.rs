//! nsqd's command line against the real binary: every flag of nsqd 1.3.0
//! (kept as `tests/fixtures/nsqd-1.3.0-help.txt`, the reference binary's
//! `--help`) is one of ours, `--version` prints in nsqd's shape, and a
//! production-style nsqd command line starts the gateway unchanged, with
//! each setting that means nothing here logged once.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use crate::common::binary::{BIN, Gateway, free_port, get_json, repo};
use crate::common::temp_data_dir;

/// The long flag names in a `--help` text: nsqd's `  -name type` lines and
/// clap's `      --name <V>` / `  -V, --name` lines.
fn flag_names(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| {
            line.split_whitespace()
                .take_while(|w| w.starts_with('-'))
                .map(|w| w.trim_end_matches(',').trim_start_matches('-'))
                .find(|name| name.len() > 1)
                .map(str::to_owned)
        })
        .collect()
}

fn nsqd_flags() -> BTreeSet<String> {
    let help = std::fs::read_to_string(repo().join("tests/fixtures/nsqd-1.3.0-help.txt"))
        .expect("nsqd --help fixture");
    let flags = flag_names(&help);
    assert!(flags.len() > 50, "fixture parsed: {flags:?}");
    flags
}

fn our_flags() -> BTreeSet<String> {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    flag_names(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn every_nsqd_flag_is_one_of_ours() {
    let ours = our_flags();
    let missing: Vec<_> = nsqd_flags().difference(&ours).cloned().collect();
    assert!(
        missing.is_empty(),
        "nsqd 1.3.0 flags the gateway does not accept: {missing:?}"
    );
}

#[test]
fn version_prints_like_nsqd() {
    let nsqd = std::fs::read_to_string(repo().join("tests/fixtures/nsqd-1.3.0-version.txt"))
        .expect("nsqd --version fixture");
    // `nsqd v1.3.0 (built w/go1.19.8)`
    let shape = |line: &str| -> Option<(String, String, String)> {
        let (name, rest) = line.trim().split_once(" v")?;
        let (version, rest) = rest.split_once(" (built w/")?;
        let compiler = rest.strip_suffix(')')?;
        Some((name.to_owned(), version.to_owned(), compiler.to_owned()))
    };
    assert!(shape(&nsqd).is_some(), "fixture: {nsqd:?}");
    for flag in ["--version", "-version", "-V"] {
        let out = Command::new(BIN).arg(flag).output().expect("run");
        assert!(out.status.success(), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        let (name, version, compiler) =
            shape(&text).unwrap_or_else(|| panic!("{flag} printed {text:?}"));
        assert_eq!(name, "nsq-gateway");
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        assert!(compiler.starts_with("rustc1."), "{compiler}");
    }
}

/// A command line as an nsqd service definition has it: Go-style `-flag=v`
/// and `--flag v` mixed, node id, queue-scan tuning, log prefix, deprecated
/// flags, cluster, statsd, E2E percentiles, TLS and auth flags. The gateway
/// must start with it unchanged.
#[test]
fn production_nsqd_command_line_is_accepted() {
    let dir = temp_data_dir();
    let log = dir.join("stderr.log");
    let lookupd = format!("127.0.0.1:{}", free_port());
    let pki = crate::tls_v2::Pki::new();
    let security = [
        format!("--tls-cert={}", pki.path("server.pem")),
        format!("-tls-key={}", pki.path("server.key")),
        format!("--tls-root-ca-file={}", pki.path("ca.pem")),
        "-tls-required=tcp-https".to_owned(),
        "--tls-min-version=tls1.2".to_owned(),
        format!("--https-address=127.0.0.1:{}", free_port()),
        format!("--auth-http-address=127.0.0.1:{}", free_port()),
    ];
    let metrics = [
        format!("--statsd-address=127.0.0.1:{}", free_port()),
        "--statsd-prefix=nsq.%s".to_owned(),
        "-statsd-interval=10s".to_owned(),
        "--statsd-udp-packet-size=1400".to_owned(),
        "-statsd-mem-stats=false".to_owned(),
        "--statsd-exclude-ephemeral".to_owned(),
        "--e2e-processing-latency-percentile=1.0".to_owned(),
        "--e2e-processing-latency-percentile=0.99,0.95".to_owned(),
        "-e2e-processing-latency-window-time=5m".to_owned(),
    ];
    let mut args: Vec<String> = [
        "--node-id=42",
        "-worker-id",
        "-verbose",
        "--queue-scan-selection-count=40",
        "-queue-scan-worker-pool-max",
        "16",
        "--log-prefix=[prod] ",
        "-log-level=INFO",
        &format!("--lookupd-tcp-address={lookupd}"),
        "--broadcast-address=127.0.0.1",
        "--broadcast-tcp-port=4150",
        "--broadcast-http-port=4151",
        "-mem-queue-size=20000",
        "--max-rdy-count=5000",
        "--msg-timeout=90s",
        "--max-msg-timeout=30m",
        "--max-req-timeout=2h",
        "--sync-every=5000",
        "--sync-timeout=5s",
        "--max-msg-size=4194304",
        "--max-body-size=10485760",
        "--max-bytes-per-file=209715200",
        "--max-channel-consumers=0",
        "--max-heartbeat-interval=2m",
        "--max-output-buffer-size=131072",
        "--max-output-buffer-timeout=1s",
        "--min-output-buffer-timeout=25ms",
        "--output-buffer-timeout=250ms",
        "--deflate=true",
        "--max-deflate-level=9",
        "--snappy",
        "--http-client-connect-timeout=3s",
        "--http-client-request-timeout=10s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(security);
    args.extend(metrics);
    let file = std::fs::File::create(&log).expect("log file");
    let gw = Gateway::spawn_in(&repo().join("gateway.yaml"), &args, &dir, Stdio::from(file));
    let info = get_json(&gw.http, "/info").expect("/info");
    assert_eq!(info["node_id"], 42, "{info}");
    assert_eq!(info["broadcast_address"], "127.0.0.1");
    let (status, _, _) = gw.terminate();
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).expect("log");
    for line in text.lines() {
        assert!(line.starts_with("[prod] "), "unprefixed line: {line:?}");
    }
    for key in [
        "worker_id",
        "verbose",
        "queue_scan_selection_count",
        "queue_scan_worker_pool_max",
    ] {
        let needle = format!("setting=\"{key}\"");
        let hits = text.lines().filter(|l| l.contains(&needle)).count();
        assert_eq!(hits, 1, "`{key}` logged once as having no effect:\n{text}");
    }
    assert!(text.contains("it has no effect here"), "{text}");
}

#[test]
fn settings_left_at_their_defaults_are_not_logged() {
    let dir = temp_data_dir();
    let log = dir.join("stderr.log");
    let file = std::fs::File::create(&log).expect("log file");
    let gw = Gateway::spawn_in(&repo().join("gateway.yaml"), &[], &dir, Stdio::from(file));
    let (status, _, _) = gw.terminate();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("no effect"), "{text}");
}

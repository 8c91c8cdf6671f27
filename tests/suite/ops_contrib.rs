//! The example deployment in `contrib/`: the systemd unit passes
//! `systemd-analyze verify` (when the tool is here) and its command line is
//! accepted by the binary; the Dockerfile parses (a structural check: no
//! Dockerfile linter is packaged for this machine) and its entrypoint flags
//! and copied files exist; the Grafana dashboard's every query names series
//! that a running gateway exports on `/metrics`.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::binary::{BIN, http, repo};
use crate::common::plugins::line_plugin;
use crate::common::temp_data_dir;
use crate::common::{STEP, TestServer, eventually};

fn contrib(name: &str) -> String {
    std::fs::read_to_string(repo().join("contrib").join(name))
        .unwrap_or_else(|e| panic!("contrib/{name}: {e}"))
}

/// The binary parses `args` (flag names and values); `--version` then
/// exits before anything is bound.
fn assert_flags_parse(args: &[String], what: &str) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--version")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{what}: {args:?} refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The unit's lines with `\` continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if cur.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(trimmed);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

#[test]
fn systemd_unit_verifies_and_its_flags_parse() {
    let unit = contrib("nsq-gateway.service");
    let lines = logical_lines(&unit);
    let exec = lines
        .iter()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/nsq-gateway"));
    let args: Vec<String> = words.map(str::to_owned).collect();
    assert_flags_parse(&args, "ExecStart");
    let config = args
        .iter()
        .position(|a| a == "--config")
        .map(|i| &args[i + 1])
        .expect("--config");
    assert_eq!(config, "/etc/nsq-gateway/gateway.yaml");

    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("systemd-analyze is not installed: skipping `systemd-analyze verify`");
        return;
    };
    assert!(out.status.success());
    // The unit names the installed path; verify a copy naming the binary
    // under test, since verify checks that ExecStart is executable.
    let dir = temp_data_dir();
    let copy = dir.join("nsq-gateway.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/nsq-gateway", BIN)).expect("copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let err = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on this machine are not the unit's problem.
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("nsq-gateway")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
}

const INSTRUCTIONS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

#[test]
fn dockerfile_parses_and_names_what_exists() {
    let text = contrib("Dockerfile");
    let lines = logical_lines(&text);
    let mut seen_from = false;
    let mut entry: Vec<String> = Vec::new();
    for line in &lines {
        let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
        let upper = instr.to_ascii_uppercase();
        assert!(
            INSTRUCTIONS.contains(&upper.as_str()),
            "unknown instruction: {line}"
        );
        assert_eq!(instr, upper, "instructions are upper case: {line}");
        assert!(!rest.trim().is_empty(), "{instr} needs arguments");
        assert!(
            seen_from || upper == "FROM" || upper == "ARG",
            "{line} before FROM"
        );
        seen_from |= upper == "FROM";
        match upper.as_str() {
            "ENTRYPOINT" | "CMD" => {
                let argv: Vec<String> = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("{instr} is not an exec-form JSON array: {e}"));
                entry.extend(argv);
            }
            "COPY" if !rest.contains("--from=") => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                if parts[0] == "." {
                    // The whole checkout is the context: build output and
                    // test installs (gigabytes) must be left out of it.
                    let ignore = contrib("Dockerfile.dockerignore");
                    for dir in ["target", ".venv", "tests/clients/node_modules"] {
                        assert!(
                            ignore.lines().any(|l| l.trim() == dir),
                            "Dockerfile.dockerignore does not leave out {dir}"
                        );
                    }
                }
                for src in &parts[..parts.len() - 1] {
                    assert!(
                        repo().join(src).exists(),
                        "COPY source {src} does not exist"
                    );
                }
            }
            "EXPOSE" => {
                let ports: BTreeSet<&str> = rest.split_whitespace().collect();
                assert_eq!(ports, BTreeSet::from(["4150", "4151"]));
            }
            _ => {}
        }
    }
    assert_eq!(
        entry.first().map(String::as_str),
        Some("/usr/local/bin/nsq-gateway")
    );
    assert_flags_parse(&entry[1..], "ENTRYPOINT + CMD");
}

#[test]
fn contrib_config_uses_only_builtin_plugins() {
    let path = repo().join("contrib/gateway.yaml");
    let config = nsq_gateway::config::Config::load(&path).expect("contrib/gateway.yaml loads");
    assert!(!config.plugins.is_empty());
    for p in &config.plugins {
        assert!(p.builtin_name().is_some(), "{} names a file", p.name);
    }
    nsq_gateway::plugin::load_plugins(&config.plugins).expect("the built-in plugins load");
}

/// The metric names in a PromQL expression: every identifier starting with
/// `nsq_` or `process_` (the gateway's own series all do).
fn series_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("nsq_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(q)) => out.push(q.clone()),
                    ("query", serde_json::Value::String(q)) if q.contains('(') => {
                        out.push(q.clone())
                    }
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn grafana_dashboard_queries_name_exported_series() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&contrib("grafana-dashboard.json")).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    assert!(exprs.len() > 10, "{exprs:?}");

    let server = TestServer::builder().plugin(line_plugin()).start().await;
    let topic = server.broker().topic("grafana").expect("topic");
    topic.channel("ch").expect("channel");
    // A family without series is left out of /metrics: per-protocol ones
    // appear once a client has connected.
    let _client = server.v2().await;
    let addr = server.http_addr.to_string();
    let text = eventually(STEP, "the V2 connection on /metrics", async || {
        let addr = addr.clone();
        let (status, body) =
            tokio::task::spawn_blocking(move || http(&addr, "GET", "/metrics", b""))
                .await
                .expect("join")?;
        (status == 200 && body.contains("nsq_connections_active{")).then_some(body)
    })
    .await;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(exported.contains("nsq_topic_depth"), "{exported:?}");
    for expr in &exprs {
        let series = series_in(expr);
        assert!(!series.is_empty(), "query names no gateway series: {expr}");
        for s in series {
            assert!(
                exported.contains(s.as_str()),
                "{s} (in `{expr}`) is not on /metrics"
            );
        }
    }
}

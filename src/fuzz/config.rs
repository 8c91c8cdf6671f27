//! Fuzz targets of the config loader: YAML text through `Config::from_yaml`,
//! `validate`, the derived broker options and the plugin registry checks
//! (magics, limits, name patterns), the way `main` uses them; and the Go
//! duration parser with its round trip through the renderer.

use std::path::PathBuf;
use std::time::Duration;

use fuzzkit::Fuzzer;

use crate::config::{Config, DurationDisplay, parse_duration};
use crate::plugin::load_plugins;

/// The shipped file: every setting, with the plugins section.
const GATEWAY_YAML: &str = include_str!("../../gateway.yaml");

fn config_yaml(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let mut cfg = match Config::from_yaml(&text, "fuzz") {
        Ok(c) => c,
        Err(e) => return e.to_string().chars().take(30).collect(),
    };
    if let Err(e) = cfg.validate("fuzz") {
        return e.to_string().chars().take(40).collect();
    }
    let opts = cfg.broker_options();
    assert!(opts.disk.max_msg_size > 0);
    // Every registry check runs before the component file is opened; a path
    // that does not exist stops it there, before any compiling.
    for p in &mut cfg.plugins {
        p.component = PathBuf::from("/nonexistent/fuzz.wasm");
    }
    match load_plugins(&cfg.plugins) {
        Ok(loaded) => {
            assert!(loaded.is_empty(), "a plugin loaded from a missing file");
            "ok".into()
        }
        Err(e) => format!("{e:#}").chars().take(40).collect(),
    }
}

#[test]
fn fuzz_config_yaml() {
    Fuzzer::new("config_yaml")
        .seed(GATEWAY_YAML)
        .seed("mem_queue_size: 0\nsync_mode: always\nmsg_timeout: 1m30s\nplugins:\n  - name: x\n    component: x.wasm\n    magics: ['\\x00\\x01ab', \"LINE\"]\n    limits: {topics: ['a*b*'], max_batch: 1}\n")
        .dict([
            &b"\n"[..],
            b": ",
            b"- ",
            b"  ",
            b"&a ",
            b"*a",
            b"<<: ",
            b"!!binary ",
            b"{",
            b"[",
            b"'",
            b"\"",
            b"\\x",
            b"ms",
            b"1h",
            b"18446744073709551616",
            b"~",
        ])
        .max_len(8192)
        .max_alloc(1 << 20)
        .budget_scale(0.5)
        .run(config_yaml);
}

fn duration(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let ok = parse_duration(&text).is_ok();
    // Rendering then parsing gives the duration back, to the millisecond
    // the renderer keeps.
    let ms = data.iter().take(8).fold(0u64, |acc, &b| {
        acc.wrapping_mul(251).wrapping_add(u64::from(b))
    });
    let d = Duration::from_millis(ms % (1 << 40));
    let shown = DurationDisplay(d).to_string();
    let back = parse_duration(&shown).unwrap_or_else(|e| panic!("{shown}: {e}"));
    let diff = back.abs_diff(d);
    assert!(
        diff < Duration::from_micros(1),
        "{shown} parsed to {back:?}, not {d:?}"
    );
    ok
}

#[test]
fn fuzz_config_duration() {
    Fuzzer::new("config_duration")
        .seeds([
            "60s",
            "250ms",
            "1m30s",
            "1.5h",
            "0",
            "1h0m0.500s",
            "2us",
            "3µs",
        ])
        .dict([
            &b"ns"[..],
            b"us",
            b"\xc2\xb5s",
            b"ms",
            b"s",
            b"m",
            b"h",
            b".",
            b"1e9",
        ])
        .max_len(64)
        .max_alloc(4096)
        .run(duration);
}

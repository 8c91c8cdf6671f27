//! Startup refuses every bad plugin registry entry with a message naming the
//! plugin: duplicate magic, a clash with "  V2" (allowed with override_v2),
//! a missing file, a file that is not a component, a core module, and a
//! component that does not implement the nsq:gateway/plugin world, one
//! built against the older contract 0.1.0, and a config the plugin's own
//! `validate-config` refuses.

use crate::common;

use std::path::PathBuf;

use common::plugins::{line_plugin, plugin, small_limits};
use nsq_gateway::plugin::{PluginConfig, load_plugins};

fn error_of(configs: &[PluginConfig]) -> String {
    match load_plugins(configs) {
        Ok(_) => panic!("expected load_plugins to refuse {configs:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// Writes `contents` to a unique temp file and returns its path.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("nsq-gateway-plugin-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp file");
    path
}

fn with_component(name: &str, path: PathBuf) -> PluginConfig {
    let mut cfg = plugin(name, "line", "BADX", small_limits());
    cfg.component = path;
    cfg
}

#[test]
fn the_default_line_plugin_loads() {
    let loaded = load_plugins(&[line_plugin()]).expect("LINE loads");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].0, vec![*b"LINE"]);
    assert_eq!(loaded[0].1.name(), "line");
}

#[test]
fn duplicate_magic_is_refused() {
    let a = line_plugin();
    let mut b = line_plugin();
    b.name = "line2".into();
    let e = error_of(&[a, b]);
    assert!(
        e.contains("\"line2\"")
            && e.contains("LINE")
            && e.contains("already used by plugin \"line\""),
        "{e}"
    );
}

#[test]
fn v2_clash_is_refused_unless_overridden() {
    let mut cfg = line_plugin();
    cfg.magics = vec!["  V2".into()];
    let e = error_of(std::slice::from_ref(&cfg));
    assert!(e.contains("\"line\"") && e.contains("override_v2"), "{e}");
    cfg.override_v2 = true;
    let loaded = load_plugins(&[cfg]).expect("override_v2 allows it");
    assert_eq!(loaded[0].0, vec![*b"  V2"]);
}

#[test]
fn bad_magics_are_refused() {
    let mut cfg = line_plugin();
    cfg.magics = vec!["LONGER".into()];
    let e = error_of(&[cfg.clone()]);
    assert!(
        e.contains("\"line\"") && e.contains("exactly 4 bytes"),
        "{e}"
    );
    cfg.magics = vec!["\\x00\\x01\\x02\\x03".into()];
    assert_eq!(
        load_plugins(&[cfg]).expect("escapes").remove(0).0,
        vec![[0, 1, 2, 3]]
    );
}

#[test]
fn missing_file_is_refused() {
    let cfg = with_component("ghost", PathBuf::from("/nonexistent/ghost.wasm"));
    let e = error_of(&[cfg]);
    assert!(
        e.contains("\"ghost\"") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn garbage_is_not_a_component() {
    let cfg = with_component(
        "garbage",
        temp_file("garbage.wasm", b"this is not wasm at all"),
    );
    let e = error_of(&[cfg]);
    assert!(
        e.contains("\"garbage\"") && e.contains("not a valid WebAssembly component"),
        "{e}"
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let cfg = with_component(
        "core",
        temp_file("core.wat", b"(module (func (export \"on-data\")))"),
    );
    let e = error_of(&[cfg]);
    assert!(
        e.contains("\"core\"") && e.contains("not a valid WebAssembly component"),
        "{e}"
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    let cfg = with_component("empty", temp_file("empty.wat", b"(component)"));
    let e = error_of(&[cfg]);
    assert!(
        e.contains("\"empty\"") && e.contains("does not implement the world"),
        "{e}"
    );
}

#[test]
fn a_component_importing_an_unlinked_interface_is_refused_naming_it() {
    // wasi:filesystem and wasi:sockets are linked (granting nothing) for
    // componentize-py guests; wasi:http is not.
    let wat = br#"(component
        (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
    )"#;
    let cfg = with_component("http", temp_file("http.wat", wat));
    let e = error_of(&[cfg]);
    assert!(
        e.contains("\"http\"")
            && e.contains("does not implement the world")
            && e.contains("wasi:http/outgoing-handler"),
        "{e}"
    );
}

#[test]
fn bad_limits_are_refused() {
    let mut cfg = line_plugin();
    cfg.limits.call_timeout_ms = 0;
    let e = error_of(&[cfg]);
    assert!(
        e.contains("\"line\"") && e.contains("call_timeout_ms"),
        "{e}"
    );
}

#[test]
fn a_component_built_against_wit_0_1_0_is_refused_naming_the_version_and_the_fix() {
    // test-trap as built at 3501a63, the last commit on nsq:gateway@0.1.0.
    let old = common::clients::repo_root().join("tests/fixtures/wit-0.1.0-trap.wasm");
    let e = error_of(&[with_component("old", old)]);
    assert!(
        e.contains("built against nsq:gateway@0.1.0")
            && e.contains("serves nsq:gateway@0.2.0")
            && e.contains("plugins/sdk")
            && e.contains("Rebuild"),
        "{e}"
    );
}

#[test]
fn a_config_the_plugin_refuses_stops_the_load_with_the_plugins_words() {
    let mut cfg = line_plugin();
    cfg.config.insert("default_rdy".into(), "lots".into());
    cfg.config.insert("max_line_byte".into(), "100".into());
    let e = error_of(&[cfg]);
    assert!(
        e.contains("plugin \"line\" refuses its config")
            && e.contains("config.default_rdy: \"lots\" is not a valid u32")
            && e.contains("config.max_line_byte: unknown key"),
        "{e}"
    );
}

//! Builds the WebAssembly guest plugins under `plugins/` for `wasm32-wasip2`
//! as part of the normal `cargo build`, and copies each component to
//! `target/plugins/<name>.wasm`, the stable path `gateway.yaml` and the tests
//! use, and embeds the example plugins (line, stomp, resp, web) in the binary
//! through `$OUT_DIR/builtin_plugins.rs`. The nested cargo gets its own
//! target dir (`target/plugins`) so it never waits on the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// The example plugins embedded in the binary; the test guests are not.
const BUILTIN: [&str; 4] = ["line", "stomp", "resp", "web"];

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed=wit");
    println!("cargo:rerun-if-changed=plugins");
    println!("cargo:rerun-if-env-changed=NSQ_GATEWAY_SKIP_PLUGINS");
    let out_dir = root.join("target").join("plugins");
    println!(
        "cargo:rustc-env=NSQ_GATEWAY_PLUGIN_DIR={}",
        out_dir.display()
    );
    // `--version` says which compiler built the binary, as nsqd names its Go.
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(|n| format!("rustc{n}")))
        .unwrap_or_else(|| "rustc".into());
    println!("cargo:rustc-env=NSQ_GATEWAY_RUSTC={rustc_version}");
    if env::var_os("NSQ_GATEWAY_SKIP_PLUGINS").is_some() {
        write_builtin(&out_dir);
        return;
    }

    if let Err(e) = build(&plugins, &out_dir) {
        // `cargo:warning` alone would let a build succeed without plugins;
        // a panic in a build script is how it fails the build with a message.
        panic!("\n\nbuilding the WebAssembly plugins failed: {e}\n");
    }
    write_builtin(&out_dir);
}

/// The example plugins embedded in the binary (`builtin:<name>`), so that
/// `cargo install` gives a gateway that needs no checkout. Writes
/// `$OUT_DIR/builtin_plugins.rs`, a table of `include_bytes!` of each one
/// that was built (none when the plugins were skipped).
fn write_builtin(plugin_dir: &Path) {
    let mut table = String::from("&[\n");
    for name in BUILTIN {
        let file = plugin_dir.join(format!("{name}.wasm"));
        if file.is_file() {
            table.push_str(&format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                file.display().to_string()
            ));
        }
    }
    table.push_str("]\n");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let dest = out.join("builtin_plugins.rs");
    if std::fs::read_to_string(&dest).ok().as_deref() != Some(table.as_str())
        && let Err(e) = std::fs::write(&dest, table)
    {
        panic!("writing {}: {e}", dest.display());
    }
}

fn build(plugins: &Path, out_dir: &Path) -> Result<(), String> {
    if !target_installed() {
        let added = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !added || !target_installed() {
            return Err(format!(
                "the Rust target {TARGET} is not installed and `rustup target add {TARGET}` failed.\n\
                 Install it with:\n\n    rustup target add {TARGET}\n\n\
                 (or set NSQ_GATEWAY_SKIP_PLUGINS=1 to build the gateway without its plugins)"
            ));
        }
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(out_dir);
    // The outer build's flags and wrappers target the host, not the guest.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars() {
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_FEATURE_") {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release --target {TARGET}` in plugins/ failed ({status})"
        ));
    }
    // Every cdylib member of plugins/ becomes target/plugins/<name>.wasm, with
    // the crate's underscores back to dashes (test_trap -> test-trap).
    let built = out_dir.join(TARGET).join("release");
    let entries =
        std::fs::read_dir(&built).map_err(|e| format!("reading {}: {e}", built.display()))?;
    for entry in entries.flatten() {
        let from = entry.path();
        if from.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let Some(stem) = from.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let to = out_dir.join(format!("{}.wasm", stem.replace('_', "-")));
        // Copy only on change so the mtime (and the host's rebuilds) stay put.
        let new = std::fs::read(&from).map_err(|e| format!("reading {}: {e}", from.display()))?;
        if std::fs::read(&to).ok().as_deref() != Some(&new[..]) {
            std::fs::write(&to, &new).map_err(|e| format!("writing {}: {e}", to.display()))?;
        }
    }
    Ok(())
}

fn target_installed() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|sysroot| {
            Path::new(sysroot.trim())
                .join("lib/rustlib")
                .join(TARGET)
                .exists()
        })
        .unwrap_or(false)
}

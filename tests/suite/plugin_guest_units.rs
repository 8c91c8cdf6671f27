//! Runs the guest plugins' own unit tests (their parsers split at every byte,
//! their session logic against a fake host) on the host target, so the one
//! test command of the README covers them too. They live in the separate
//! `plugins/` workspace; it gets its own target dir so the outer build lock
//! is never contended.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn guest_crates_pass_their_unit_tests() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "--workspace", "--manifest-path"])
        .arg(root.join("plugins").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target").join("plugins-native"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo test in plugins/");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "guest unit tests failed:\n{stdout}\n{stderr}"
    );
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 30,
        "expected the STOMP and RESP unit tests to run, saw {passed}:\n{stdout}"
    );
}

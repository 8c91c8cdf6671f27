//! Bootstraps and runs the real third-party NSQ clients the integration tests
//! drive (pynsq with python-snappy in `<repo>/.venv`, nsqjs with snappystream
//! in `<repo>/tests/clients/node_modules`),
//! so that plain `cargo test` works on a fresh machine that has only Rust,
//! Python 3 and Node. Installation is idempotent (a stamp file records the
//! pinned manifest it was built from) and serialised across threads and
//! processes by an exclusive `flock` on a lock file under the target dir.
//! `run_client` runs one client script with a hard timeout that kills it.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Python packages, pinned; installed with `--no-build-isolation` because
/// pynsq 0.9.1 ships only an sdist whose `setup.py` imports
/// `setuptools.command.test`, which setuptools 72 removed.
const REQUIREMENTS: &str = "tests/clients/requirements.txt";
/// Build tools for those sdists, installed first.
const BUILD_REQUIREMENTS: &str = "tests/clients/build-requirements.txt";
const PACKAGE_JSON: &str = "tests/clients/package.json";
const PACKAGE_LOCK: &str = "tests/clients/package-lock.json";
const STAMP: &str = ".nsq-gateway-stamp";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/clients`, where the client scripts live.
pub fn clients_dir() -> PathBuf {
    repo_root().join("tests").join("clients")
}

/// Path of a client script in `tests/clients`.
pub fn script(name: &str) -> PathBuf {
    clients_dir().join(name)
}

/// An exclusive `flock` held until drop. `flock` locks belong to the open
/// file description, so two threads of one process that each open the file
/// exclude each other just as two processes do.
pub struct FileLock {
    file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> FileLock {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("opening lock file {}: {e}", path.display()));
        loop {
            // SAFETY: the descriptor is owned by `file`, which outlives the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                panic!("flock {}: {err}", path.display());
            }
        }
        FileLock { file }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release the lock anyway.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

pub fn lock_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("nsq-gateway-{name}.lock"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs a bootstrap command to completion, panicking with its output on failure.
fn must_run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn works(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The interpreter used to create the venv: `$NSQ_GATEWAY_PYTHON`, else the
/// first of `python3.11`, `python3`, `python` that is Python 3.9 or newer.
fn base_python() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("NSQ_GATEWAY_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => ["python3.11", "python3", "python"]
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    candidates
        .into_iter()
        .find(|p| {
            works(Command::new(p).args([
                "-c",
                "import sys, venv; sys.exit(0 if sys.version_info >= (3, 9) else 1)",
            ]))
        })
        .unwrap_or_else(|| panic!("no Python >= 3.9 found (set NSQ_GATEWAY_PYTHON)"))
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

fn bootstrap_python() -> PathBuf {
    let root = repo_root();
    let venv = root.join(".venv");
    let python = venv_python(&venv);
    let want = format!(
        "{}\n--\n{}",
        read(&root.join(BUILD_REQUIREMENTS)),
        read(&root.join(REQUIREMENTS))
    );
    let stamp = venv.join(STAMP);
    let _lock = FileLock::acquire(&lock_path("venv"));
    if fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
        && works(Command::new(&python).args(["-c", "import nsq"]))
    {
        return python;
    }
    if !works(Command::new(&python).args(["-c", "import pip"])) {
        // Missing or broken (e.g. made by an interpreter that is gone).
        let _ = fs::remove_dir_all(&venv);
        must_run(
            Command::new(base_python()).arg("-m").arg("venv").arg(&venv),
            "creating the Python venv",
        );
    }
    let pip = |req: &str| {
        let mut c = Command::new(&python);
        c.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
        ]);
        if req == REQUIREMENTS {
            c.arg("--no-build-isolation");
        }
        c.arg("-r")
            .arg(root.join(req))
            .env("PIP_NO_WARN_SCRIPT_LOCATION", "1");
        c
    };
    must_run(
        &mut pip(BUILD_REQUIREMENTS),
        "installing Python build tools",
    );
    must_run(&mut pip(REQUIREMENTS), "installing Python test clients");
    must_run(
        Command::new(&python).args([
            "-c",
            "import nsq, nsq.snappy_socket, tornado, prometheus_client, stomp, redis, websockets, selenium",
        ]),
        "importing the Python test clients",
    );
    fs::write(&stamp, &want).unwrap_or_else(|e| panic!("writing {}: {e}", stamp.display()));
    python
}

/// The venv's Python with pynsq, tornado, python-snappy, prometheus_client,
/// stomp.py, redis, websockets and selenium installed at the versions pinned in `tests/clients/requirements.txt`.
/// Installs them on first use.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(bootstrap_python).clone()
}

fn bootstrap_node() -> (PathBuf, PathBuf) {
    let root = repo_root();
    let dir = clients_dir();
    let modules = dir.join("node_modules");
    let node = PathBuf::from(std::env::var_os("NSQ_GATEWAY_NODE").unwrap_or_else(|| "node".into()));
    let npm = PathBuf::from(std::env::var_os("NSQ_GATEWAY_NPM").unwrap_or_else(|| "npm".into()));
    let lock = root.join(PACKAGE_LOCK);
    let want = format!(
        "{}\n--\n{}",
        read(&root.join(PACKAGE_JSON)),
        fs::read_to_string(&lock).unwrap_or_default()
    );
    let stamp = modules.join(STAMP);
    let _guard = FileLock::acquire(&lock_path("node-modules"));
    if fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str())
        || !modules.join("nsqjs").join("package.json").exists()
    {
        let verb = if lock.exists() { "ci" } else { "install" };
        must_run(
            Command::new(&npm)
                .args([verb, "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            "installing the Node test clients",
        );
        // `npm install` may just have written the lock file.
        let want = format!(
            "{}\n--\n{}",
            read(&root.join(PACKAGE_JSON)),
            fs::read_to_string(&lock).unwrap_or_default()
        );
        fs::write(&stamp, want).unwrap_or_else(|e| panic!("writing {}: {e}", stamp.display()));
    }
    must_run(
        Command::new(&node)
            .args(["-e", "require('nsqjs'); require('snappystream')"])
            .current_dir(&dir),
        "loading nsqjs and snappystream",
    );
    (node, modules)
}

/// `(node binary, node_modules dir)` with nsqjs and snappystream installed from
/// `tests/clients/package-lock.json`. Scripts in `tests/clients` resolve
/// `require('nsqjs')` from there. Installs on first use.
pub fn node_env() -> (PathBuf, PathBuf) {
    static NODE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    NODE.get_or_init(bootstrap_node).clone()
}

/// Marker appended to stderr when `run_client` kills a child.
pub const KILLED_MARKER: &str = "[test harness] killed after timeout";

/// Runs `cmd args...` with stdin closed and output captured, killing it after
/// `timeout`. On a kill the returned status is the kill signal and stderr ends
/// with `KILLED_MARKER`.
pub fn run_client<S: AsRef<std::ffi::OsStr>>(
    cmd: impl AsRef<std::ffi::OsStr>,
    args: &[S],
    timeout: Duration,
) -> Output {
    let mut command = Command::new(cmd.as_ref());
    command
        .args(args)
        .current_dir(clients_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_thread = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_thread = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let (status, killed): (ExitStatus, bool) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status, false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let status = child
                    .wait()
                    .unwrap_or_else(|e| panic!("waiting for killed {command:?}: {e}"));
                break (status, true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {command:?}: {e}"),
        }
    };
    let stdout = out_thread.join().unwrap_or_default();
    let mut stderr = err_thread.join().unwrap_or_default();
    if killed {
        stderr.extend_from_slice(format!("\n{KILLED_MARKER} ({timeout:?})\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// `run_client` on a blocking thread, for use from async tests whose server
/// runs on the same runtime.
pub async fn run_client_async(cmd: PathBuf, args: Vec<String>, timeout: Duration) -> Output {
    tokio::task::spawn_blocking(move || run_client(cmd, &args, timeout))
        .await
        .unwrap_or_else(|e| panic!("client runner thread failed: {e}"))
}

/// Runs a script under `tests/clients` with the venv's Python.
pub async fn run_python(script_name: &str, args: Vec<String>, timeout: Duration) -> Output {
    let python = tokio::task::spawn_blocking(python)
        .await
        .unwrap_or_else(|e| panic!("python bootstrap failed: {e}"));
    let mut full = vec![script(script_name).display().to_string()];
    full.extend(args);
    run_client_async(python, full, timeout).await
}

/// Runs a script under `tests/clients` with Node and nsqjs available.
pub async fn run_node(script_name: &str, args: Vec<String>, timeout: Duration) -> Output {
    let (node, _) = tokio::task::spawn_blocking(node_env)
        .await
        .unwrap_or_else(|e| panic!("node bootstrap failed: {e}"));
    let mut full = vec![script(script_name).display().to_string()];
    full.extend(args);
    run_client_async(node, full, timeout).await
}

/// Human-readable dump of a client run for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The last stdout line that parses as a JSON object: every client script
/// prints exactly one such result line, also on failure.
pub fn result_json(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| panic!("client printed no JSON result line\n{}", describe(out)))
}

/// Asserts the client exited 0 with `"ok": true` and returns its result.
pub fn expect_success(out: &Output) -> serde_json::Value {
    let v = result_json(out);
    assert!(
        out.status.success() && v["ok"] == serde_json::Value::Bool(true),
        "client run failed\n{}",
        describe(out)
    );
    v
}

/// A topic name unique to this process and call, so tests sharing a server
/// (or a data dir) never see each other's messages.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// String values of a JSON array, for comparing received bodies.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {s}"))
                .to_owned()
        })
        .collect()
}

/// Integer values of a JSON array.
pub fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
        .iter()
        .map(|s| {
            s.as_i64()
                .unwrap_or_else(|| panic!("expected an integer, got {s}"))
        })
        .collect()
}

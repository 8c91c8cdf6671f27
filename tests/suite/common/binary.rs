//! The real `nsq-gateway` binary and NSQ's reference binaries as child
//! processes on free loopback ports, for tests that look at the gateway from
//! outside (`/proc`, HTTP, real clients, a real nsqlookupd), plus a minimal
//! blocking HTTP/1.1 client for their HTTP APIs.

use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::temp_data_dir;
use super::wait::eventually_blocking;

pub const BIN: &str = env!("CARGO_BIN_EXE_nsq-gateway");

/// The repository root (where `gateway.yaml` and `target/` are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One HTTP/1.1 request with `Connection: close`; the status and body.
/// `None` when nothing answers at `addr`.
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Go's servers may answer chunked; the bodies here are small JSON or text.
    let body = if resp
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` parsed as JSON, or `None` when it does not answer 200 JSON.
pub fn get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    let (status, body) = http(addr, "GET", path, b"")?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// SIGKILL and reap; returns what it wrote to stderr.
    pub fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway binary on loopback ports with a temporary data path, run from
/// the repository root so the default config's component paths resolve.
pub struct Gateway {
    pub proc: Proc,
    pub tcp: String,
    pub http: String,
}

impl Gateway {
    /// Starts `--config config` plus `extra` flags, optionally under a shell
    /// `ulimit` (which then applies to the gateway alone), and waits until
    /// its HTTP port answers.
    pub fn spawn(config: &Path, extra: &[String], ulimit: Option<&str>) -> Gateway {
        let data = temp_data_dir();
        Self::spawn_on(config, extra, ulimit, &data, free_port(), free_port())
    }

    /// `spawn` on a given data path and ports (a restart after a crash).
    pub fn spawn_on(
        config: &Path,
        extra: &[String],
        ulimit: Option<&str>,
        data: &Path,
        tcp_port: u16,
        http_port: u16,
    ) -> Gateway {
        Self::launch(
            config,
            extra,
            ulimit,
            data,
            (tcp_port, http_port),
            &repo(),
            Stdio::piped(),
        )
    }

    /// `spawn` from the working directory `cwd`, with stderr going to
    /// `stderr` (a log file, to read what an operator would).
    pub fn spawn_in(config: &Path, extra: &[String], cwd: &Path, stderr: Stdio) -> Gateway {
        let data = temp_data_dir();
        let ports = (free_port(), free_port());
        Self::launch(config, extra, None, &data, ports, cwd, stderr)
    }

    fn launch(
        config: &Path,
        extra: &[String],
        ulimit: Option<&str>,
        data: &Path,
        (tcp_port, http_port): (u16, u16),
        cwd: &Path,
        stderr: Stdio,
    ) -> Gateway {
        let tcp = format!("127.0.0.1:{tcp_port}");
        let http = format!("127.0.0.1:{http_port}");
        let mut args = vec![
            "--config".to_owned(),
            config.to_string_lossy().into_owned(),
            "--tcp-address".to_owned(),
            tcp.clone(),
            "--http-address".to_owned(),
            http.clone(),
            "--data-path".to_owned(),
            data.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().cloned());
        let mut cmd = match ulimit {
            Some(lim) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit {lim} && exec \"$0\" \"$@\""))
                    .arg(BIN)
                    .args(&args);
                c
            }
            None => {
                let mut c = Command::new(BIN);
                c.args(&args);
                c
            }
        };
        let child = cmd
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn gateway");
        let mut gw = Gateway {
            proc: Proc { child },
            tcp,
            http,
        };
        eventually_blocking(Duration::from_secs(60), "gateway started", || {
            if std::net::TcpStream::connect(&gw.http).is_ok() {
                return Some(());
            }
            assert!(gw.proc.alive(), "gateway exited: {}", gw.proc.kill());
            None
        });
        gw
    }

    /// Memory mappings of the process (`/proc/<pid>/maps` lines).
    pub fn maps(&self) -> usize {
        std::fs::read_to_string(format!("/proc/{}/maps", self.proc.pid()))
            .expect("read maps")
            .lines()
            .count()
    }

    /// `/stats?format=json`.
    pub fn stats(&self) -> serde_json::Value {
        get_json(&self.http, "/stats?format=json").expect("/stats answers")
    }

    /// SIGKILL; returns stderr.
    pub fn stop(mut self) -> String {
        self.proc.kill()
    }

    /// A blocking connection to the TCP port, retried while it comes up.
    pub fn connect(&self) -> std::net::TcpStream {
        eventually_blocking(Duration::from_secs(30), "TCP port answers", || {
            std::net::TcpStream::connect(&self.tcp).ok()
        })
    }

    /// SIGTERM, then the exit status, stderr and how long the exit took.
    pub fn terminate(mut self) -> (ExitStatus, String, Duration) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        let rc = unsafe { libc::kill(self.proc.pid() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let sent = std::time::Instant::now();
        let status = eventually_blocking(Duration::from_secs(10), "exit after SIGTERM", || {
            self.proc.child.try_wait().expect("wait")
        });
        let took = sent.elapsed();
        let mut err = String::new();
        if let Some(mut e) = self.proc.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err, took)
    }
}

/// Where NSQ 1.3.0's binary `name` is: the directory in `NSQ_REFERENCE_BIN`,
/// then `PATH`, then `../shared/reference` unpacked into
/// `target/nsq-reference`. Panics with directions when none has it.
pub fn reference_bin(name: &str) -> PathBuf {
    static UNPACK: Mutex<()> = Mutex::new(());
    if let Some(dir) = std::env::var_os("NSQ_REFERENCE_BIN") {
        let p = Path::new(&dir).join(name);
        assert!(
            p.is_file(),
            "NSQ_REFERENCE_BIN={} has no `{name}`",
            p.display()
        );
        return p;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    let shared = repo().join("../shared/reference");
    let dest = repo().join("target/nsq-reference");
    if shared.join(format!("{name}.xz")).is_file() {
        let _one_at_a_time = UNPACK.lock().unwrap_or_else(|p| p.into_inner());
        let out = Command::new("bash")
            .arg(shared.join("install.sh"))
            .arg(&dest)
            .output()
            .expect("run ../shared/reference/install.sh");
        assert!(
            out.status.success(),
            "../shared/reference/install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return dest.join(name);
    }
    panic!(
        "NSQ 1.3.0's `{name}` was not found. Set NSQ_REFERENCE_BIN to a directory holding \
         NSQ 1.3.0's binaries, put `{name}` on PATH, or check out ../shared/reference next to \
         this repository (see its README: install.sh unpacks them)."
    )
}

/// A reference binary (`nsqlookupd`, `nsqd`, `nsqadmin`) started with
/// `args`, waited for until `http_addr/ping` answers.
pub fn start_reference(name: &str, args: &[String], http_addr: &str) -> Proc {
    // Their logs go to a file: they log every HTTP request, and an unread
    // pipe would fill and stall them.
    let log = temp_data_dir().join(format!("{name}.log"));
    let log = std::fs::File::create(&log).expect("log file");
    let child = Command::new(reference_bin(name))
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut p = Proc { child };
    eventually_blocking(Duration::from_secs(30), &format!("{name} started"), || {
        if http(http_addr, "GET", "/ping", b"").is_some() {
            return Some(());
        }
        assert!(p.alive(), "{name} exited: {}", p.kill());
        None
    });
    p
}

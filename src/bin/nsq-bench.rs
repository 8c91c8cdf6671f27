//! `nsq-bench`: a load generator for any nsqd-compatible server, speaking only
//! standard TCP protocol V2, modelled on NSQ's own `bench_writer` and
//! `bench_reader` so that nsq-gateway and nsqd can be measured side by side on
//! the same workload. `writer` keeps one MPUB batch in flight per connection,
//! `reader` subscribes with a fixed RDY and FINs every message (FINs batched per
//! socket read), and `both` runs the two at once and reports each.
//!
//! The hot loops allocate nothing per message: every connection owns one read
//! buffer and one write buffer, and the writer sends the same pre-encoded MPUB
//! frame on every round trip.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes, BytesMut};
use clap::{Args, Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "nsq-bench",
    about = "NSQ V2 load generator (bench_writer / bench_reader equivalent)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish MPUB batches as fast as the server acknowledges them.
    Writer(WriterArgs),
    /// Consume and FIN messages from a channel.
    Reader(ReaderArgs),
    /// Run writers and readers at the same time and report each.
    Both(BothArgs),
}

#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// <addr>:<port> of the nsqd (or nsq-gateway) TCP listener.
    #[arg(long, default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// Topic to publish to / consume from.
    #[arg(long, default_value = "sub_bench")]
    topic: String,
    /// Size of each message body in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// How long to run, e.g. `10s`, `4s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    runfor: Duration,
    /// Number of tokio worker threads (default: number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Do not send IDENTIFY after the magic.
    #[arg(long)]
    skip_identify: bool,
}

#[derive(Args, Debug, Clone)]
struct WriterArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Messages per MPUB; 1 sends single PUBs.
    #[arg(long, default_value_t = 200)]
    batch_size: usize,
    /// Publishing connections (default: number of CPUs, like bench_writer's GOMAXPROCS).
    #[arg(long, visible_alias = "concurrency")]
    workers: Option<usize>,
}

#[derive(Args, Debug, Clone)]
struct ReaderArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Channel to consume from.
    #[arg(long, default_value = "ch")]
    channel: String,
    /// RDY count sent by each consuming connection.
    #[arg(long, default_value_t = 2500)]
    rdy: u64,
    /// Consuming connections (default: number of CPUs, like bench_reader's GOMAXPROCS).
    #[arg(long, visible_alias = "concurrency")]
    workers: Option<usize>,
}

#[derive(Args, Debug, Clone)]
struct BothArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Channel to consume from.
    #[arg(long, default_value = "ch")]
    channel: String,
    /// Messages per MPUB.
    #[arg(long, default_value_t = 200)]
    batch_size: usize,
    /// RDY count sent by each consuming connection.
    #[arg(long, default_value_t = 2500)]
    rdy: u64,
    /// Publishing connections (default: number of CPUs).
    #[arg(long, visible_alias = "writer-concurrency")]
    writers: Option<usize>,
    /// Consuming connections (default: number of CPUs).
    #[arg(long, visible_alias = "reader-concurrency")]
    readers: Option<usize>,
}

/// Parses `10s`, `1.5s`, `500ms`, `2m`, `100us` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 500ms, 1m"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsq-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Writer(a) => a.common.threads,
        Command::Reader(a) => a.common.threads,
        Command::Both(a) => a.common.threads,
    }
    .unwrap_or_else(cpus)
    .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Writer(a) => run_writer_only(a).await,
            Command::Reader(a) => run_reader_only(a).await,
            Command::Both(a) => run_both(a).await,
        }
    })
}

/// Totals of one side of a run, printed like bench_writer / bench_reader do.
struct Report {
    label: &'static str,
    duration: Duration,
    messages: u64,
    size: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.duration.as_secs_f64().max(f64::MIN_POSITIVE);
        let mb = self.messages as f64 * self.size as f64 / secs / 1024.0 / 1024.0;
        let ops = self.messages as f64 / secs;
        let us_per_op = if self.messages == 0 {
            0.0
        } else {
            self.duration.as_micros() as f64 / self.messages as f64
        };
        write!(
            f,
            "[{}] duration: {:?} - {:.3}mb/s - {:.3}ops/s - {:.3}us/op ({} messages)",
            self.label, self.duration, mb, ops, us_per_op, self.messages
        )
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolved to no address"))
}

async fn run_writer_only(a: WriterArgs) -> Result<()> {
    let addr = resolve(&a.common.nsqd_tcp_address).await?;
    let workers = a.workers.unwrap_or_else(cpus).max(1);
    let writers = connect_writers(addr, &a.common, a.batch_size, workers).await?;
    let start = Instant::now();
    let end = start + a.common.runfor;
    let handles: Vec<_> = writers
        .into_iter()
        .map(|w| tokio::spawn(w.run(end)))
        .collect();
    let totals = join_counts("writer", handles).await?;
    println!(
        "{}",
        Report {
            label: "writer",
            duration: start.elapsed(),
            messages: totals.count,
            size: a.common.size,
        }
    );
    check_failures(&[("writer", &totals)])
}

async fn run_reader_only(a: ReaderArgs) -> Result<()> {
    let addr = resolve(&a.common.nsqd_tcp_address).await?;
    let workers = a.workers.unwrap_or_else(cpus).max(1);
    let readers = connect_readers(addr, &a.common, &a.channel, workers).await?;
    let start = Instant::now();
    let end = start + a.common.runfor;
    let handles: Vec<_> = readers
        .into_iter()
        .map(|r| tokio::spawn(r.run(a.rdy, end)))
        .collect();
    let totals = join_counts("reader", handles).await?;
    println!(
        "{}",
        Report {
            label: "reader",
            duration: start.elapsed(),
            messages: totals.count,
            size: a.common.size,
        }
    );
    check_failures(&[("reader", &totals)])
}

async fn run_both(a: BothArgs) -> Result<()> {
    let addr = resolve(&a.common.nsqd_tcp_address).await?;
    let n_writers = a.writers.unwrap_or_else(cpus).max(1);
    let n_readers = a.readers.unwrap_or_else(cpus).max(1);
    let writers = connect_writers(addr, &a.common, a.batch_size, n_writers).await?;
    let readers = connect_readers(addr, &a.common, &a.channel, n_readers).await?;
    let start = Instant::now();
    let end = start + a.common.runfor;
    let w: Vec<_> = writers
        .into_iter()
        .map(|w| tokio::spawn(w.run(end)))
        .collect();
    let r: Vec<_> = readers
        .into_iter()
        .map(|r| tokio::spawn(r.run(a.rdy, end)))
        .collect();
    let written = join_counts("writer", w).await?;
    let w_done = start.elapsed();
    let read = join_counts("reader", r).await?;
    let r_done = start.elapsed();
    println!(
        "{}",
        Report {
            label: "writer",
            duration: w_done,
            messages: written.count,
            size: a.common.size,
        }
    );
    println!(
        "{}",
        Report {
            label: "reader",
            duration: r_done,
            messages: read.count,
            size: a.common.size,
        }
    );
    check_failures(&[("writer", &written), ("reader", &read)])
}

/// What one worker achieved: its count, and the error that stopped it early.
struct Outcome {
    count: u64,
    error: Option<anyhow::Error>,
}

/// Totals of a group of workers; `failed` counts workers stopped by an error
/// (each is reported on stderr with what it had done by then).
struct Totals {
    count: u64,
    failed: usize,
}

async fn join_counts(role: &str, handles: Vec<tokio::task::JoinHandle<Outcome>>) -> Result<Totals> {
    let mut totals = Totals {
        count: 0,
        failed: 0,
    };
    for h in handles {
        let outcome = h.await.context("worker task panicked")?;
        totals.count += outcome.count;
        if let Some(e) = outcome.error {
            totals.failed += 1;
            eprintln!(
                "{role} stopped early after {} messages: {e:#}",
                outcome.count
            );
        }
    }
    Ok(totals)
}

fn check_failures(groups: &[(&str, &Totals)]) -> Result<()> {
    for (role, t) in groups {
        if t.failed > 0 {
            bail!(
                "{} {role} connection(s) stopped early (see above)",
                t.failed
            );
        }
    }
    Ok(())
}

/// Largest frame the bench accepts from the server; nsqd's default
/// `max-msg-size` is 1 MiB, so this only guards against a corrupt stream.
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;

/// One V2 connection: the socket plus the single read buffer it owns.
struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, identify: Option<&str>) -> Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(64 * 1024),
        };
        conn.wbuf.extend_from_slice(wire::MAGIC_V2);
        if let Some(json) = identify {
            wire::put_identify(&mut conn.wbuf, json.as_bytes());
            conn.flush().await?;
            conn.expect_ok("IDENTIFY").await?;
        } else {
            conn.flush().await?;
        }
        Ok(conn)
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads more bytes; an orderly close is an error here because callers only
    /// read when they still expect a frame.
    async fn fill(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        Ok(())
    }

    /// Waits for the next non-heartbeat response frame (answering heartbeats
    /// with NOP) and fails on an error frame. IDENTIFY with feature negotiation
    /// answers with JSON rather than `OK`; both count as success.
    async fn expect_ok(&mut self, what: &str) -> Result<()> {
        loop {
            match wire::check_frame(&self.rbuf, MAX_FRAME)? {
                Some((frame_type, total)) => {
                    let data = &self.rbuf[wire::HEADER_LEN..total];
                    match frame_type {
                        wire::FRAME_RESPONSE if data == wire::HEARTBEAT => {
                            self.rbuf.advance(total);
                            wire::put_nop(&mut self.wbuf);
                            self.flush().await?;
                        }
                        wire::FRAME_RESPONSE => {
                            self.rbuf.advance(total);
                            return Ok(());
                        }
                        wire::FRAME_ERROR => {
                            bail!("{what} failed: {}", String::from_utf8_lossy(data))
                        }
                        other => {
                            bail!("{what}: unexpected frame type {other} while awaiting a response")
                        }
                    }
                }
                None => self.fill().await?,
            }
        }
    }
}

fn identify_json(common: &CommonArgs, role: &str) -> Option<String> {
    if common.skip_identify {
        return None;
    }
    Some(format!(
        "{{\"client_id\":\"{role}\",\"hostname\":\"{role}\",\"user_agent\":\"nsq-bench/{}\"}}",
        env!("CARGO_PKG_VERSION")
    ))
}

struct Writer {
    conn: Conn,
    /// The complete MPUB frame (a PUB for a batch size of 1), encoded once
    /// and shared by every connection.
    mpub: Bytes,
    batch_size: u64,
}

async fn connect_writers(
    addr: SocketAddr,
    common: &CommonArgs,
    batch_size: usize,
    workers: usize,
) -> Result<Vec<Writer>> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let body = vec![b'a'; common.size];
    let mut frame = BytesMut::new();
    if batch_size == 1 {
        wire::put_pub(&mut frame, &common.topic, &body);
    } else {
        wire::put_mpub(
            &mut frame,
            &common.topic,
            std::iter::repeat_n(body.as_slice(), batch_size),
        );
    }
    let mpub = frame.freeze();
    let identify = identify_json(common, "writer");
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers {
        let conn = Conn::open(addr, identify.as_deref()).await?;
        out.push(Writer {
            conn,
            mpub: mpub.clone(),
            batch_size: batch_size as u64,
        });
    }
    Ok(out)
}

impl Writer {
    /// One batch in flight at a time, as bench_writer does; stops after the
    /// first acknowledgement past `end`.
    async fn run(mut self, end: Instant) -> Outcome {
        let mut count = 0;
        let error = self.pump(end, &mut count).await.err();
        Outcome { count, error }
    }

    async fn pump(&mut self, end: Instant, count: &mut u64) -> Result<()> {
        loop {
            self.conn.stream.write_all(&self.mpub).await?;
            self.conn.expect_ok("PUB/MPUB").await?;
            *count += self.batch_size;
            if Instant::now() >= end {
                return Ok(());
            }
        }
    }
}

struct Reader {
    conn: Conn,
}

async fn connect_readers(
    addr: SocketAddr,
    common: &CommonArgs,
    channel: &str,
    workers: usize,
) -> Result<Vec<Reader>> {
    let identify = identify_json(common, "reader");
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut conn = Conn::open(addr, identify.as_deref()).await?;
        wire::put_sub(&mut conn.wbuf, &common.topic, channel);
        conn.flush().await?;
        conn.expect_ok("SUB").await?;
        out.push(Reader { conn });
    }
    Ok(out)
}

impl Reader {
    /// Sends RDY, then FINs every message until `end`. All FINs produced by
    /// one socket read go out in one write. The FINs owed at any moment are
    /// bounded by RDY (about 38 bytes each), so writing them inline cannot
    /// deadlock against a server that is itself blocked writing to us.
    async fn run(mut self, rdy: u64, end: Instant) -> Outcome {
        let mut count = 0;
        let error = self.pump(rdy, end, &mut count).await.err();
        Outcome { count, error }
    }

    async fn pump(&mut self, rdy: u64, end: Instant, count: &mut u64) -> Result<()> {
        let conn = &mut self.conn;
        wire::put_rdy(&mut conn.wbuf, rdy);
        conn.flush().await?;
        let mut errors = 0u64;
        let deadline = tokio::time::sleep_until(end);
        tokio::pin!(deadline);
        loop {
            let mut off = 0;
            while let Some((frame_type, total)) = wire::check_frame(&conn.rbuf[off..], MAX_FRAME)? {
                let data = &conn.rbuf[off + wire::HEADER_LEN..off + total];
                match frame_type {
                    wire::FRAME_MESSAGE => {
                        let msg = wire::decode_message(data)?;
                        wire::put_fin(&mut conn.wbuf, msg.id);
                        *count += 1;
                    }
                    wire::FRAME_RESPONSE if data == wire::HEARTBEAT => {
                        wire::put_nop(&mut conn.wbuf);
                    }
                    wire::FRAME_RESPONSE => {}
                    wire::FRAME_ERROR => {
                        errors += 1;
                        if errors <= 5 {
                            eprintln!("reader: error frame: {}", String::from_utf8_lossy(data));
                        }
                    }
                    other => bail!("reader: unknown frame type {other}"),
                }
                off += total;
            }
            conn.rbuf.advance(off);
            conn.flush().await?;
            if conn.rbuf.capacity() - conn.rbuf.len() < READ_CHUNK / 4 {
                conn.rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                _ = &mut deadline => break,
                r = conn.stream.read_buf(&mut conn.rbuf) => {
                    if r? == 0 {
                        bail!("server closed the connection after {count} messages");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Pure V2 frame encoding and decoding over byte buffers, with no IO, so it
/// can be tested over every partial prefix.
mod wire {
    use bytes::{BufMut, BytesMut};

    pub const MAGIC_V2: &[u8; 4] = b"  V2";
    pub const HEARTBEAT: &[u8] = b"_heartbeat_";
    pub const FRAME_RESPONSE: i32 = 0;
    pub const FRAME_ERROR: i32 = 1;
    pub const FRAME_MESSAGE: i32 = 2;
    /// `[u32 size][i32 frame type]`; `size` counts the type and the data.
    pub const HEADER_LEN: usize = 8;
    /// `[i64 timestamp][u16 attempts][16-byte id]` before the body.
    pub const MESSAGE_HEADER_LEN: usize = 26;

    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum WireError {
        #[error("frame size {0} is below the minimum of 4")]
        FrameTooSmall(u32),
        #[error("frame size {size} exceeds the limit of {max}")]
        FrameTooLarge { size: usize, max: usize },
        #[error("message frame of {0} bytes is shorter than its 26-byte header")]
        MessageTooShort(usize),
    }

    impl From<WireError> for std::io::Error {
        fn from(e: WireError) -> Self {
            std::io::Error::new(std::io::ErrorKind::InvalidData, e)
        }
    }

    /// A message frame's payload, borrowed from the read buffer.
    #[derive(Debug, PartialEq, Eq)]
    pub struct MessageRef<'a> {
        pub timestamp: i64,
        pub attempts: u16,
        pub id: &'a [u8; 16],
        pub body: &'a [u8],
    }

    /// Checks whether `buf` starts with a complete frame. Returns its type and
    /// its total length (header included), or `None` when more bytes are needed.
    pub fn check_frame(buf: &[u8], max: usize) -> Result<Option<(i32, usize)>, WireError> {
        let Some(size) = buf.get(..4) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        if size < 4 {
            return Err(WireError::FrameTooSmall(size));
        }
        let size = size as usize;
        if size > max {
            return Err(WireError::FrameTooLarge { size, max });
        }
        let total = 4 + size;
        if buf.len() < total {
            return Ok(None);
        }
        let frame_type = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        Ok(Some((frame_type, total)))
    }

    pub fn decode_message(data: &[u8]) -> Result<MessageRef<'_>, WireError> {
        if data.len() < MESSAGE_HEADER_LEN {
            return Err(WireError::MessageTooShort(data.len()));
        }
        let (ts, rest) = data.split_at(8);
        let (attempts, rest) = rest.split_at(2);
        let (id, body) = rest.split_at(16);
        let mut ts8 = [0u8; 8];
        ts8.copy_from_slice(ts);
        Ok(MessageRef {
            timestamp: i64::from_be_bytes(ts8),
            attempts: u16::from_be_bytes([attempts[0], attempts[1]]),
            // split_at(16) above makes this exactly 16 bytes long.
            id: id
                .try_into()
                .map_err(|_| WireError::MessageTooShort(data.len()))?,
            body,
        })
    }

    fn put_line(out: &mut BytesMut, parts: &[&[u8]]) {
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.put_u8(b' ');
            }
            out.extend_from_slice(p);
        }
        out.put_u8(b'\n');
    }

    pub fn put_identify(out: &mut BytesMut, json: &[u8]) {
        put_line(out, &[b"IDENTIFY"]);
        out.put_u32(json.len() as u32);
        out.extend_from_slice(json);
    }

    pub fn put_sub(out: &mut BytesMut, topic: &str, channel: &str) {
        put_line(out, &[b"SUB", topic.as_bytes(), channel.as_bytes()]);
    }

    pub fn put_rdy(out: &mut BytesMut, count: u64) {
        let mut n = itoa_buf();
        put_line(out, &[b"RDY", fmt_u64(count, &mut n)]);
    }

    pub fn put_fin(out: &mut BytesMut, id: &[u8; 16]) {
        out.extend_from_slice(b"FIN ");
        out.extend_from_slice(id);
        out.put_u8(b'\n');
    }

    pub fn put_nop(out: &mut BytesMut) {
        out.extend_from_slice(b"NOP\n");
    }

    /// `PUB <topic>\n[u32 size][bytes]`.
    pub fn put_pub(out: &mut BytesMut, topic: &str, body: &[u8]) {
        put_line(out, &[b"PUB", topic.as_bytes()]);
        out.put_u32(body.len() as u32);
        out.extend_from_slice(body);
    }

    /// `MPUB <topic>\n[u32 body size][u32 count]([u32 len][bytes])*`.
    pub fn put_mpub<'a>(
        out: &mut BytesMut,
        topic: &str,
        bodies: impl Iterator<Item = &'a [u8]> + Clone,
    ) {
        let (count, bytes) = bodies
            .clone()
            .fold((0u32, 4usize), |(n, b), body| (n + 1, b + 4 + body.len()));
        put_line(out, &[b"MPUB", topic.as_bytes()]);
        out.reserve(4 + bytes);
        out.put_u32(bytes as u32);
        out.put_u32(count);
        for body in bodies {
            out.put_u32(body.len() as u32);
            out.extend_from_slice(body);
        }
    }

    fn itoa_buf() -> [u8; 20] {
        [0u8; 20]
    }

    /// Formats `n` in decimal into the tail of `buf` without allocating.
    fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        &buf[i..]
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn frame(frame_type: i32, data: &[u8]) -> Vec<u8> {
            let mut v = Vec::new();
            v.extend_from_slice(&((data.len() + 4) as u32).to_be_bytes());
            v.extend_from_slice(&frame_type.to_be_bytes());
            v.extend_from_slice(data);
            v
        }

        fn message(attempts: u16, id: &[u8; 16], body: &[u8]) -> Vec<u8> {
            let mut v = Vec::new();
            v.extend_from_slice(&1_700_000_000_000_000_000i64.to_be_bytes());
            v.extend_from_slice(&attempts.to_be_bytes());
            v.extend_from_slice(id);
            v.extend_from_slice(body);
            v
        }

        #[test]
        fn check_frame_needs_every_byte() {
            let f = frame(FRAME_RESPONSE, b"OK");
            for cut in 0..f.len() {
                assert_eq!(check_frame(&f[..cut], 1024), Ok(None), "prefix {cut}");
            }
            assert_eq!(check_frame(&f, 1024), Ok(Some((FRAME_RESPONSE, f.len()))));
            let mut two = f.clone();
            two.extend_from_slice(&frame(FRAME_ERROR, b"E_INVALID x"));
            assert_eq!(check_frame(&two, 1024), Ok(Some((FRAME_RESPONSE, f.len()))));
            assert_eq!(
                check_frame(&two[f.len()..], 1024),
                Ok(Some((FRAME_ERROR, two.len() - f.len())))
            );
        }

        #[test]
        fn check_frame_rejects_bad_sizes() {
            assert_eq!(
                check_frame(&[0, 0, 0, 3, 0, 0, 0, 0], 1024),
                Err(WireError::FrameTooSmall(3))
            );
            assert_eq!(
                check_frame(&[0, 0, 4, 1], 1024),
                Err(WireError::FrameTooLarge {
                    size: 1025,
                    max: 1024
                })
            );
        }

        #[test]
        fn decode_message_fields() {
            let id = b"0123456789abcdef";
            let data = message(3, id, b"hello");
            let m = decode_message(&data).expect("valid message");
            assert_eq!(m.timestamp, 1_700_000_000_000_000_000);
            assert_eq!(m.attempts, 3);
            assert_eq!(m.id, id);
            assert_eq!(m.body, b"hello");
            let empty = message(1, id, b"");
            assert_eq!(decode_message(&empty).expect("empty body").body, b"");
            assert_eq!(
                decode_message(&data[..25]),
                Err(WireError::MessageTooShort(25))
            );
        }

        #[test]
        fn message_frame_round_trip() {
            let id = b"000000000000002a";
            let f = frame(FRAME_MESSAGE, &message(1, id, b"payload"));
            let (t, total) = check_frame(&f, 1024).expect("ok").expect("complete");
            assert_eq!((t, total), (FRAME_MESSAGE, f.len()));
            let m = decode_message(&f[HEADER_LEN..total]).expect("message");
            let mut out = BytesMut::new();
            put_fin(&mut out, m.id);
            assert_eq!(&out[..], b"FIN 000000000000002a\n");
        }

        #[test]
        fn encodes_commands() {
            let mut out = BytesMut::new();
            put_sub(&mut out, "t", "c");
            put_rdy(&mut out, 2500);
            put_rdy(&mut out, 0);
            put_nop(&mut out);
            assert_eq!(&out[..], b"SUB t c\nRDY 2500\nRDY 0\nNOP\n");

            let mut out = BytesMut::new();
            put_identify(&mut out, b"{}");
            assert_eq!(&out[..], b"IDENTIFY\n\x00\x00\x00\x02{}");
        }

        #[test]
        fn encodes_mpub() {
            let mut out = BytesMut::new();
            let bodies: [&[u8]; 2] = [b"ab", b"c"];
            put_mpub(&mut out, "topic", bodies.iter().copied());
            let mut want = b"MPUB topic\n".to_vec();
            want.extend_from_slice(&(4u32 + 6 + 5).to_be_bytes());
            want.extend_from_slice(&2u32.to_be_bytes());
            want.extend_from_slice(&2u32.to_be_bytes());
            want.extend_from_slice(b"ab");
            want.extend_from_slice(&1u32.to_be_bytes());
            want.extend_from_slice(b"c");
            assert_eq!(&out[..], &want[..]);
        }

        #[test]
        fn formats_integers() {
            let mut b = itoa_buf();
            assert_eq!(fmt_u64(0, &mut b), b"0");
            assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("4"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn report_matches_bench_format() {
        let r = Report {
            label: "writer",
            duration: Duration::from_secs(2),
            messages: 1_000_000,
            size: 200,
        };
        assert_eq!(
            r.to_string(),
            "[writer] duration: 2s - 95.367mb/s - 500000.000ops/s - 2.000us/op (1000000 messages)"
        );
    }

    #[test]
    fn cli_accepts_bench_flags() {
        let cli = Cli::try_parse_from([
            "nsq-bench",
            "reader",
            "--nsqd-tcp-address",
            "127.0.0.1:4150",
            "--topic",
            "t",
            "--channel",
            "c",
            "--rdy",
            "100",
            "--runfor",
            "4s",
            "--concurrency",
            "3",
        ])
        .expect("parses");
        match cli.command {
            Command::Reader(a) => {
                assert_eq!(a.rdy, 100);
                assert_eq!(a.workers, Some(3));
                assert_eq!(a.common.runfor, Duration::from_secs(4));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}

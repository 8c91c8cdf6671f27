//! One V2 connection: the only code in the protocol that touches the socket.
//! A single task selects over the socket read (into a buffer that lives
//! outside the future, so a cancelled read loses nothing), the channel's
//! wake-up when the client is subscribed and ready, one timer for
//! heartbeats, the client's read deadline and in-flight timeouts, and server
//! shutdown.
//!
//! Responses and errors are written at once, as nsqd does (all responses to
//! the commands of one read go out in one write). Message frames are taken
//! from the channel in chunks with a byte budget and buffered up to the
//! client's output buffer size, then written as soon as the client is no
//! longer ready or the channel has nothing more right now, so they never
//! wait for a flush timer: `output_buffer_timeout` is always met. Every write
//! has a deadline, so a client that stops reading is dropped. On exit the
//! `Consumer` is dropped, which requeues whatever was still in flight.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::codec::{self, Limits};
use super::command::{Command, Dpub, Fin, Mpub, Pub, Rdy, Req, Sub, Touch};
use super::compress::{CompressError, Compressor, Decompressor};
use super::error::{ErrorCode, ProtocolError};
use super::identify::{self, ClientSettings, Compression, IdentifyConfig, IdentifyData};
use crate::auth::AuthState;
use crate::broker::{
    BrokerError, ClientInfo, ClientMeta, ClientRegistration, Consumer, Message, MessageId, Topic,
};
use crate::protocol::{Accepted, Env};
use crate::tls::{Stream, TlsInfo};

mod auth;
mod handlers;

/// Why a session ended other than by the client closing cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The client did not read what we wrote within the write deadline.
    #[error("write timed out after {0:?}")]
    WriteTimeout(Duration),
    /// Nothing arrived from the client for two heartbeat intervals.
    #[error("no data from client for {0:?}")]
    ReadTimeout(Duration),
    /// A fatal protocol error, already reported to the client.
    #[error("fatal client error: {0}")]
    Client(ProtocolError),
    /// The client's compressed stream could not be decoded.
    #[error("compressed stream: {0}")]
    Compression(#[from] CompressError),
}

/// Messages taken from the channel per chunk.
const TAKE_CHUNK: usize = 256;
/// Decompression step, and the read size under load.
const READ_CHUNK: usize = 16 * 1024;
/// Read size of a quiet connection, so idle clients hold little memory.
const MIN_READ: usize = 4 * 1024;
/// Largest read size a busy connection grows to.
const MAX_READ: usize = 64 * 1024;
/// Empty buffers with more capacity than this are released, so one large
/// command or burst does not pin memory for the rest of the connection.
const KEEP_CAPACITY: usize = 256 * 1024;

/// Where the client is in nsqd's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connected; may IDENTIFY, AUTH, SUB, publish.
    Init,
    /// Subscribed; may RDY, FIN, REQ, TOUCH, CLS, publish.
    Subscribed,
    /// Sent CLS; no more deliveries, may still FIN/REQ/TOUCH.
    Closing,
}

/// What a command asks the session to do after it ran.
enum Outcome {
    Continue,
    /// After the IDENTIFY answer: upgrade to TLS (each step answered with
    /// its own `OK`), then switch the streams to compression, nsqd's order.
    Upgrade {
        tls: bool,
        compression: Option<Compression>,
    },
}

pub struct Session {
    /// What the protocol may use: broker, config, shutdown.
    env: Env,
    /// The socket, or TLS over it; only `run`, `flush` and the upgrade use it.
    stream: Stream,
    /// What the TLS handshake established (version, suite, client
    /// certificate's common name), once the connection is TLS.
    tls: Option<TlsInfo>,
    /// Stats and identity shared with the channel's client list.
    client: Arc<ClientInfo>,
    /// Lists the client in the broker (for `/stats` producers) while the
    /// session lives.
    _registration: ClientRegistration,
    /// Codec limits from the config.
    limits: Limits,
    /// IDENTIFY limits and defaults from the config.
    identify_cfg: IdentifyConfig,
    /// Current per-client settings (defaults until IDENTIFY).
    settings: ClientSettings,
    state: State,
    /// Set by SUB; dropping it requeues what is in flight.
    consumer: Option<Consumer>,
    /// Bytes read from the socket (compressed once compression is on).
    rbuf: BytesMut,
    /// Decompressed input, used only with compression.
    plain: BytesMut,
    /// Frames waiting to be written, uncompressed.
    out: BytesMut,
    /// Compressed output scratch.
    wire: BytesMut,
    compressor: Option<Compressor>,
    decompressor: Option<Decompressor>,
    /// Reused buffer for messages taken from the channel.
    batch: Vec<Message>,
    /// When the client last sent anything; drives the read deadline.
    last_read: Instant,
    /// When the next `_heartbeat_` is due.
    next_heartbeat: Option<Instant>,
    /// The topic this client last published to, so a stream of PUBs does
    /// not look the name up in the broker's map each time. Dropped when the
    /// topic turns out to be deleted.
    last_topic: Option<Arc<Topic>>,
    /// xorshift state for `sample_rate`.
    rng: u64,
    /// Current read size: doubles while reads fill it, halves while they
    /// stay small.
    read_size: usize,
    /// What the auth server granted this client's secret (after AUTH).
    auth: Option<AuthState>,
    /// The secret from AUTH, sent again when the grant expires.
    auth_secret: String,
}

impl Session {
    pub fn new(conn: Accepted, env: Env) -> Self {
        let cfg = &env.config;
        let limits = Limits {
            max_msg_size: cfg.max_msg_size,
            max_body_size: cfg.max_body_size,
            max_req_timeout_ms: u64::try_from(cfg.max_req_timeout.as_millis()).unwrap_or(u64::MAX),
            max_line: codec::DEFAULT_MAX_LINE,
        };
        let identify_cfg = IdentifyConfig {
            client_timeout: cfg.client_timeout,
            max_heartbeat_interval: cfg.max_heartbeat_interval,
            output_buffer_timeout: cfg.output_buffer_timeout,
            min_output_buffer_timeout: cfg.min_output_buffer_timeout,
            max_output_buffer_timeout: cfg.max_output_buffer_timeout,
            max_output_buffer_size: cfg.max_output_buffer_size,
            msg_timeout: cfg.msg_timeout,
            max_msg_timeout: cfg.max_msg_timeout,
            max_rdy_count: cfg.max_rdy_count,
            max_deflate_level: cfg.max_deflate_level,
            deflate: cfg.deflate,
            snappy: cfg.snappy,
            version: env!("CARGO_PKG_VERSION").to_string(),
            auth_required: env.auth.is_some(),
            tls: env.tls.is_some() && !conn.stream.is_tls(),
        };
        let tls = conn.stream.tls_info();
        let settings = ClientSettings::defaults(&identify_cfg);
        let client = Arc::new(ClientInfo::new(conn.id, conn.peer, "V2"));
        let ip = conn.peer.ip().to_string();
        let mut meta = meta_for(&settings);
        meta.client_id = ip.clone();
        meta.hostname = ip;
        set_tls_meta(&mut meta, tls.as_ref());
        client.set_meta(meta);
        let registration = env.broker.register_client(&client);
        let now = Instant::now();
        Session {
            env,
            stream: conn.stream,
            tls,
            client,
            _registration: registration,
            limits,
            identify_cfg,
            next_heartbeat: settings.heartbeat_interval.map(|hb| now + hb),
            settings,
            state: State::Init,
            consumer: None,
            rbuf: BytesMut::new(),
            plain: BytesMut::new(),
            out: BytesMut::new(),
            wire: BytesMut::new(),
            compressor: None,
            decompressor: None,
            batch: Vec::with_capacity(TAKE_CHUNK),
            last_read: now,
            last_topic: None,
            rng: conn.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            read_size: MIN_READ,
            auth: None,
            auth_secret: String::new(),
        }
    }

    /// Whether the connection is TLS (TLS-first, or upgraded by IDENTIFY).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The common name of the client certificate's subject, when the client
    /// presented one over TLS.
    pub fn tls_common_name(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.common_name.as_deref())
    }

    /// Runs the connection to its end.
    pub async fn run(mut self) -> Result<(), SessionError> {
        loop {
            self.process_input().await?;
            if self.deliver().await? {
                return Ok(());
            }

            let deadline = self.next_deadline();
            let wait_for_messages = self.state == State::Subscribed
                && self.consumer.as_ref().is_some_and(Consumer::is_ready);
            if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_CAPACITY {
                self.rbuf = BytesMut::new();
            }
            if self.plain.is_empty() && self.plain.capacity() > KEEP_CAPACITY {
                self.plain = BytesMut::new();
            }
            let want = self.read_hint();
            self.rbuf.reserve(want);
            let spare = self.rbuf.capacity() - self.rbuf.len();
            let consumer = self.consumer.as_ref();
            tokio::select! {
                read = self.stream.read_buf(&mut self.rbuf) => {
                    let n = read?;
                    if n == 0 {
                        debug!("client closed the connection");
                        return Ok(());
                    }
                    if n >= spare {
                        self.read_size = (self.read_size * 2).min(MAX_READ);
                    } else if n < self.read_size / 4 {
                        self.read_size = (self.read_size / 2).max(MIN_READ);
                    }
                    self.last_read = Instant::now();
                }
                _ = async {
                    match consumer {
                        Some(c) => c.wait().await,
                        None => std::future::pending().await,
                    }
                }, if wait_for_messages => {}
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                }, if deadline.is_some() => {
                    self.on_timer().await?;
                }
                _ = self.env.shutdown.cancelled() => {
                    debug!("server shutting down; closing client");
                    self.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    /// How many bytes the next read should make room for: what the codec
    /// says the current command still needs (bounded by the limits), or the
    /// adaptive read size.
    fn read_hint(&self) -> usize {
        if self.decompressor.is_some() {
            return self.read_size;
        }
        let needed = super::command::Command::needed(&self.rbuf, &self.limits);
        needed.saturating_sub(self.rbuf.len()).max(self.read_size)
    }

    /// The earliest of the heartbeat, read deadline and in-flight timeout
    /// instants. There is no output flush timer: message frames never stay
    /// buffered across a wait (see `deliver`), so `output_buffer_timeout`
    /// is always met.
    fn next_deadline(&self) -> Option<Instant> {
        let read_deadline = self
            .settings
            .heartbeat_interval
            .map(|hb| self.last_read + hb * 2);
        [
            self.next_heartbeat,
            read_deadline,
            self.consumer.as_ref().and_then(Consumer::next_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_timer(&mut self) -> Result<(), SessionError> {
        let now = Instant::now();
        if let Some(hb) = self.settings.heartbeat_interval {
            if now >= self.last_read + hb * 2 {
                info!(timeout = ?(hb * 2), "client sent nothing for two heartbeat intervals; closing");
                return Err(SessionError::ReadTimeout(hb * 2));
            }
            if self.next_heartbeat.is_some_and(|t| now >= t) {
                codec::write_response(&mut self.out, b"_heartbeat_");
                self.flush().await?;
                self.next_heartbeat = Some(now + hb);
            }
        }
        if let Some(c) = self.consumer.as_mut() {
            let n = c.expire_timeouts(now);
            if n > 0 {
                debug!(count = n, "in-flight messages timed out; requeued");
            }
        }
        Ok(())
    }

    /// Parses and runs every complete command already received, then writes
    /// the responses in one go.
    async fn process_input(&mut self) -> Result<(), SessionError> {
        loop {
            let cmd = match self.next_command() {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(SessionError::Client(e)) => return self.fail(e).await,
                Err(e) => return Err(e),
            };
            let result = match self.authorize(&cmd).await {
                Some(refused_or_answered) => refused_or_answered,
                None => self.execute(cmd),
            };
            match result {
                Ok(Outcome::Continue) => {}
                Ok(Outcome::Upgrade { tls, compression }) => {
                    // The IDENTIFY answer goes out in the clear.
                    self.flush().await?;
                    if tls {
                        self.upgrade_tls().await?;
                        codec::write_response(&mut self.out, b"OK");
                        self.flush().await?;
                    }
                    let Some(kind) = compression else {
                        continue;
                    };
                    // From here on both directions are compressed, and the
                    // unread bytes already in `rbuf` are compressed input.
                    self.compressor = Some(Compressor::new(kind));
                    self.decompressor = Some(Decompressor::new(kind));
                    let mut meta = self.client.meta();
                    meta.deflate = matches!(kind, Compression::Deflate(_));
                    meta.snappy = kind == Compression::Snappy;
                    self.client.set_meta(meta);
                    codec::write_response(&mut self.out, b"OK");
                    self.flush().await?;
                }
                Err(e) if e.fatal => return self.fail(e).await,
                Err(e) => {
                    debug!(error = %e, "client error");
                    codec::write_error(&mut self.out, &e);
                }
            }
        }
        if !self.out.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    /// The in-band TLS upgrade after an IDENTIFY answered `tls_v1: true`:
    /// the handshake runs on the same socket under nsqd's 5 s deadline.
    /// Bytes the client already sent after the IDENTIFY belong to it. A
    /// failed handshake ends the session (nsqd: fatal `E_IDENTIFY_FAILED`,
    /// which cannot reach a client whose TLS is broken).
    async fn upgrade_tls(&mut self) -> Result<(), SessionError> {
        let (Some(server), Some(tcp)) = (self.env.tls.clone(), self.stream.take_plain()) else {
            return Err(SessionError::Io(std::io::Error::other(
                "TLS upgrade without TLS configured or on a TLS stream",
            )));
        };
        let early = self.rbuf.split().freeze();
        debug!("upgrading connection to TLS");
        let stream = match tokio::time::timeout(
            crate::tls::UPGRADE_HANDSHAKE_TIMEOUT,
            server.accept(tcp, early),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                info!(error = %e, "TLS handshake failed; closing");
                return Err(SessionError::Io(e));
            }
            Err(_) => {
                info!("TLS handshake timed out; closing");
                return Err(SessionError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                )));
            }
        };
        self.stream = stream;
        self.tls = self.stream.tls_info();
        self.identify_cfg.tls = false;
        let mut meta = self.client.meta();
        set_tls_meta(&mut meta, self.tls.as_ref());
        self.client.set_meta(meta);
        Ok(())
    }

    /// Reports a fatal error and ends the session.
    async fn fail(&mut self, e: ProtocolError) -> Result<(), SessionError> {
        info!(error = %e, "fatal client error; closing");
        codec::write_error(&mut self.out, &e);
        self.flush().await?;
        let _ = self.stream.shutdown().await;
        self.linger().await;
        Err(SessionError::Client(e))
    }

    /// After a fatal error: reads and discards what the client is still
    /// sending, briefly and boundedly, so closing with unread data does not
    /// turn into a TCP reset that could destroy the error frame before the
    /// client reads it.
    async fn linger(&mut self) {
        const LINGER: Duration = Duration::from_millis(250);
        const MAX_DISCARD: usize = 1 << 20;
        let deadline = Instant::now() + LINGER;
        let mut discarded = 0;
        let mut scratch = [0u8; 8192];
        while discarded < MAX_DISCARD {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => break,
            }
        }
    }

    /// The next complete command, decompressing as much input as it needs.
    fn next_command(&mut self) -> Result<Option<Command>, SessionError> {
        let Some(d) = self.decompressor.as_mut() else {
            return Command::parse(&mut self.rbuf, &self.limits).map_err(SessionError::Client);
        };
        loop {
            if let Some(cmd) =
                Command::parse(&mut self.plain, &self.limits).map_err(SessionError::Client)?
            {
                return Ok(Some(cmd));
            }
            // Decompress even when `rbuf` is empty: the decoder may still
            // hold output it had no room for last time.
            let max_out = Command::needed(&self.plain, &self.limits).max(READ_CHUNK);
            let before = (self.rbuf.len(), self.plain.len());
            d.decompress(&mut self.rbuf, &mut self.plain, max_out)?;
            if (self.rbuf.len(), self.plain.len()) == before {
                return Ok(None);
            }
        }
    }

    /// Moves messages from the channel into `out` while the client is
    /// ready, writing whenever the output buffer is full, and once more when
    /// it stops (not ready, or nothing left right now). Returns true when the
    /// channel was deleted and the session should end.
    async fn deliver(&mut self) -> Result<bool, SessionError> {
        if self.state != State::Subscribed {
            return Ok(false);
        }
        let mut wrote = false;
        loop {
            let Some(consumer) = self.consumer.as_mut() else {
                return Ok(false);
            };
            if consumer.is_closed() {
                debug!("channel deleted; closing client");
                self.flush().await?;
                return Ok(true);
            }
            if !consumer.is_ready() {
                break;
            }
            let budget = self
                .settings
                .output_buffer_size
                .saturating_sub(self.out.len())
                .max(1);
            self.batch.clear();
            let n = consumer.take_messages(TAKE_CHUNK, budget, &mut self.batch);
            if n == 0 {
                break;
            }
            for msg in self.batch.drain(..) {
                if self.settings.sample_rate > 0 {
                    // nsqd skips a message when rand(100) > sample_rate; the
                    // skipped message is finished, never delivered here.
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    if self.rng % 100 > u64::from(self.settings.sample_rate) {
                        let _ = consumer.finish(&msg.id);
                        continue;
                    }
                }
                codec::write_message(&mut self.out, &msg);
                wrote = true;
            }
            if self.out.len() >= self.settings.output_buffer_size {
                self.flush().await?;
            }
        }
        if wrote && !self.out.is_empty() {
            self.flush().await?;
        }
        Ok(false)
    }

    /// Writes everything in `out` (compressing it if negotiated) under the
    /// write deadline.
    async fn flush(&mut self) -> Result<(), SessionError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self
            .settings
            .heartbeat_interval
            .unwrap_or(self.env.config.client_timeout)
            .max(Duration::from_secs(1));
        let data = match self.compressor.as_mut() {
            Some(c) => {
                c.compress(&self.out, &mut self.wire)?;
                self.out.clear();
                &mut self.wire
            }
            None => &mut self.out,
        };
        let res = tokio::time::timeout(timeout, self.stream.write_all(data)).await;
        data.clear();
        if data.capacity() > KEEP_CAPACITY {
            *data = BytesMut::new();
        }
        match res {
            Ok(r) => r.map_err(SessionError::from),
            Err(_) => {
                warn!(?timeout, "client stopped reading; dropping it");
                Err(SessionError::WriteTimeout(timeout))
            }
        }
    }
}

impl Session {
    /// Whether the connection is TLS, and the client certificate's common
    /// name (empty without one): what the auth server is told.
    fn tls_identity(&self) -> (bool, String) {
        match &self.tls {
            Some(t) => (true, t.common_name.clone().unwrap_or_default()),
            None => (false, String::new()),
        }
    }
}

/// Copies what a TLS handshake established into the stats metadata.
fn set_tls_meta(meta: &mut ClientMeta, tls: Option<&TlsInfo>) {
    let Some(t) = tls else {
        return;
    };
    meta.tls = true;
    meta.tls_version = t.version.clone();
    meta.tls_cipher_suite = t.cipher_suite.clone();
    meta.tls_negotiated_protocol = t.negotiated_protocol.clone();
    meta.tls_common_name = t.common_name.clone();
}

/// Stats metadata for the current settings.
fn meta_for(s: &ClientSettings) -> ClientMeta {
    let ms =
        |d: Option<Duration>| d.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    ClientMeta {
        sample_rate: i32::from(s.sample_rate),
        output_buffer_size: s.output_buffer_size as i64,
        output_buffer_timeout_ms: ms(s.output_buffer_timeout),
        msg_timeout_ms: ms(Some(s.msg_timeout)),
        heartbeat_interval_ms: s.heartbeat_interval.map_or(-1, |d| ms(Some(d))),
        ..ClientMeta::default()
    }
}

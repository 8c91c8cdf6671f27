//! The per-connection STOMP session, socket-free: it takes the host's events
//! (connect, bytes, deliveries, timer), runs each client frame through the
//! codec (`frame`) and the protocol rules (`rules`), and calls the broker and
//! the connection through the `Host` trait, so it is tested natively against
//! a recording fake (`session/tests.rs`). This file holds the state, the
//! event entry points, CONNECT, heart-beats and errors; SEND/transactions,
//! SUBSCRIBE/delivery and ACK/NACK live in the submodules. Every client error
//! becomes an ERROR frame with a `message` header followed by a close;
//! nothing a client sends can panic.

mod ack;
mod subscribe;
mod transaction;

use std::collections::VecDeque;

use crate::frame::{Command, Frame, Parser, encode_frame};
use crate::rules::{self, AckMode, Destination, Settings, Version};

/// What the session needs from the gateway: the `connection` and `broker`
/// imports in the component, a recording fake in the tests. Broker errors
/// come back as a readable reason.
pub trait Host {
    /// Queues bytes for the client; false if the host refused them.
    fn write(&mut self, data: &[u8]) -> bool;
    fn close(&mut self);
    fn set_timer(&mut self, delay_ms: Option<u32>);
    fn now_ms(&mut self) -> u64;
    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<(), String>;
    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<u32, String>;
    fn set_ready(&mut self, sub: u32, count: u32) -> Result<(), String>;
    fn unsubscribe(&mut self, sub: u32);
    fn finish(&mut self, sub: u32, id: &str) -> Result<(), String>;
    fn requeue(&mut self, sub: u32, id: &str, delay_ms: u32) -> Result<(), String>;
    /// Whether the gateway has an auth server: CONNECT's passcode is then
    /// the secret it judges.
    fn auth_required(&mut self) -> bool {
        false
    }
    /// Starts asking the auth server about `secret`; the answer comes as
    /// `Session::on_authenticated`.
    fn authenticate(&mut self, _secret: &str) -> Result<(), String> {
        Err("no auth server is configured".into())
    }
}

/// A CONNECT waiting for the auth server.
struct Connecting {
    version: Version,
    client_hb: (u64, u64),
    /// The CONNECT frame's `receipt` header, answered with the outcome.
    receipt: Option<String>,
}

/// One message the broker delivered to a subscription.
pub struct Delivery {
    /// The broker's message id, passed back to finish/requeue.
    pub id: String,
    /// Publish time in nanoseconds since the epoch (`nsq-timestamp`).
    pub timestamp: i64,
    /// Delivery attempts, starting at 1 (`redelivered`, `nsq-attempts`).
    pub attempts: u16,
    pub body: Vec<u8>,
}

/// One SUBSCRIBE of this connection.
struct Sub {
    /// The client's `id` header, echoed as `subscription` in MESSAGE frames.
    id: String,
    /// The host's subscription handle.
    handle: u32,
    mode: AckMode,
    /// `MESSAGE\nsubscription:..\ndestination:..\n`, escaped once at
    /// SUBSCRIBE so each delivery only appends the per-message headers.
    prefix: Vec<u8>,
    /// Delivered and not yet acknowledged message ids, oldest first (client
    /// modes only): what a cumulative ACK covers.
    pending: VecDeque<String>,
    /// Bound on `pending` so ids of messages that timed out and went to
    /// another consumer cannot pile up.
    pending_cap: usize,
}

/// A delivered message an ACK or NACK refers to.
#[derive(Clone)]
struct AckTarget {
    handle: u32,
    id: String,
}

/// A deferred effect of a transaction, applied at COMMIT.
enum TxOp {
    Send { topic: String, body: Vec<u8> },
    Ack(AckTarget),
    Nack(AckTarget),
}

/// One BEGIN .. COMMIT/ABORT.
struct Transaction {
    id: String,
    ops: Vec<TxOp>,
}

/// Negotiated heart-beating (all times in ms since the epoch / ms).
#[derive(Default)]
struct Heart {
    /// The server sends something at least this often (0 = off).
    send_every: u64,
    /// The client must send something at least this often (0 = off).
    expect_every: u64,
    /// Silence after which the client is dead: `expect_every * grace`.
    window: u64,
    last_sent: u64,
    last_received: u64,
}

/// A fatal client error: sent as an ERROR frame, then the connection closes.
struct Fatal {
    /// The `message` header: short and clear.
    message: String,
    /// The body: details for a human.
    detail: String,
}

fn fatal(message: impl Into<String>, detail: impl Into<String>) -> Fatal {
    Fatal {
        message: message.into(),
        detail: detail.into(),
    }
}

/// Per-connection state: each connection has its own instance.
pub struct Session {
    settings: Settings,
    parser: Parser,
    client_id: u64,
    /// Set by CONNECT/STOMP; before it only those frames are accepted.
    version: Option<Version>,
    subs: Vec<Sub>,
    /// `/topic/` subscriptions made so far, for unique ephemeral channels.
    topic_subs: u32,
    transactions: Vec<Transaction>,
    /// Body bytes buffered in `transactions`.
    transaction_bytes: usize,
    heart: Heart,
    /// After DISCONNECT or an ERROR: input is ignored.
    closed: bool,
    /// Output of the current event, written once at its end.
    out: Vec<u8>,
    /// The gateway has an auth server (see `Host::auth_required`).
    auth_required: bool,
    /// CONNECT sent its passcode to the auth server; frames behind it wait.
    connecting: Option<Connecting>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        let settings = Settings::default();
        Session {
            parser: Parser::new(settings.limits),
            settings,
            client_id: 0,
            version: None,
            subs: Vec::new(),
            topic_subs: 0,
            transactions: Vec::new(),
            transaction_bytes: 0,
            heart: Heart::default(),
            closed: false,
            out: Vec::new(),
            auth_required: false,
            connecting: None,
        }
    }

    fn sub_by_handle(&mut self, handle: u32) -> Option<&mut Sub> {
        self.subs.iter_mut().find(|s| s.handle == handle)
    }

    fn v12(&self) -> bool {
        self.version != Some(Version::V11)
    }

    /// The `on-connect` event: applies the plugin's config and takes the
    /// magic bytes (`CONN` / `STOM`) as the start of the first frame.
    pub fn on_connect(
        &mut self,
        h: &mut impl Host,
        config: &[(String, String)],
        client_id: u64,
        magic: &[u8],
    ) {
        self.settings = Settings::from_config(config);
        self.parser = Parser::new(self.settings.limits);
        self.client_id = client_id;
        self.auth_required = h.auth_required();
        self.parser.push(magic);
        if self.settings.connect_timeout_ms > 0 {
            h.set_timer(Some(self.settings.connect_timeout_ms));
        }
    }

    /// The `on-data` event: runs every complete frame, then writes the
    /// event's output once (and closes after an ERROR or DISCONNECT).
    pub fn on_data(&mut self, h: &mut impl Host, data: Vec<u8>) {
        let s = self;
        if s.closed {
            return;
        }
        if s.heart.expect_every > 0 {
            s.heart.last_received = h.now_ms();
        }
        s.parser.push_owned(data);
        if s.connecting.is_none() {
            pump(s, h);
        }
    }

    /// The auth server's answer to CONNECT's passcode: CONNECTED and the
    /// frames that followed it, or an ERROR and the close.
    pub fn on_authenticated(&mut self, h: &mut impl Host, ok: bool) {
        let Some(c) = self.connecting.take() else {
            return;
        };
        if self.closed {
            return;
        }
        if !ok {
            send_error(
                self,
                fatal("access refused", "the auth server refused the passcode"),
                c.receipt.as_deref(),
            );
            flush(self, h);
            h.close();
            return;
        }
        connected(self, h, c.version, c.client_hb);
        if let Some(r) = c.receipt {
            receipt_frame(self, &r);
        }
        pump(self, h);
    }

    /// The `on-messages` event: MESSAGE frames for a subscription's batch.
    pub fn on_messages(&mut self, h: &mut impl Host, handle: u32, messages: Vec<Delivery>) {
        subscribe::deliver(self, h, handle, messages)
    }

    /// The `on-timer` event: the CONNECT deadline, then heart-beats (send
    /// one when due, close a client that went silent).
    pub fn on_timer(&mut self, h: &mut impl Host) {
        let s = self;
        if s.closed {
            return;
        }
        if s.version.is_none() {
            let ms = s.settings.connect_timeout_ms;
            send_error(
                s,
                fatal(
                    "connect timeout",
                    format!("no complete CONNECT frame within {ms} ms"),
                ),
                None,
            );
            flush(s, h);
            h.close();
            return;
        }
        let now = h.now_ms();
        let hb = &s.heart;
        if hb.expect_every > 0 && now >= hb.last_received.saturating_add(hb.window) {
            let detail = format!(
                "nothing received for {} ms; the negotiated heart-beat is every {} ms",
                now.saturating_sub(hb.last_received),
                hb.expect_every
            );
            send_error(s, fatal("heart-beat timeout", detail), None);
            flush(s, h);
            h.close();
            return;
        }
        if hb.send_every > 0 && now >= hb.last_sent.saturating_add(hb.send_every) {
            s.out.push(b'\n');
        }
        flush_at(s, h, now);
        arm_heart_timer(s, h, now);
    }
}

/// Writes the event's output, noting the time for the heart-beat.
fn flush(s: &mut Session, h: &mut impl Host) {
    if s.out.is_empty() {
        return;
    }
    let now = if s.heart.send_every > 0 {
        h.now_ms()
    } else {
        0
    };
    flush_at(s, h, now);
}

fn flush_at(s: &mut Session, h: &mut impl Host, now: u64) {
    if s.out.is_empty() {
        return;
    }
    let _ = h.write(&s.out);
    s.out.clear();
    if s.out.capacity() > 256 << 10 {
        s.out = Vec::new();
    }
    s.heart.last_sent = now;
}

/// Arms the single timer for the next heart-beat send or liveness check.
fn arm_heart_timer(s: &Session, h: &mut impl Host, now: u64) {
    let hb = &s.heart;
    let send = (hb.send_every > 0).then(|| hb.last_sent.saturating_add(hb.send_every));
    let check = (hb.expect_every > 0).then(|| hb.last_received.saturating_add(hb.window));
    let next = match (send, check) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let delay = next.map(|t| u32::try_from(t.saturating_sub(now).max(1)).unwrap_or(u32::MAX));
    h.set_timer(delay);
}

/// Queues an ERROR frame and marks the session closed.
fn send_error(s: &mut Session, e: Fatal, receipt: Option<&str>) {
    let mut headers = vec![
        ("message", e.message.as_str()),
        ("content-type", "text/plain"),
    ];
    if let Some(r) = receipt {
        headers.push(("receipt-id", r));
    }
    if s.version.is_none() {
        headers.push(("version", "1.1,1.2"));
    }
    encode_frame(&mut s.out, "ERROR", &headers, e.detail.as_bytes());
    s.closed = true;
    s.parser.reset();
}

fn receipt_frame(s: &mut Session, receipt: &str) {
    encode_frame(&mut s.out, "RECEIPT", &[("receipt-id", receipt)], b"");
}

/// Runs one client frame.
fn handle(s: &mut Session, h: &mut impl Host, f: Frame) -> Result<(), Fatal> {
    if s.version.is_none() {
        return match f.command {
            Command::Connect | Command::Stomp => connect(s, h, &f),
            other => Err(fatal(
                "not connected",
                format!(
                    "the first frame must be CONNECT or STOMP, got {}",
                    other.name()
                ),
            )),
        };
    }
    match f.command {
        Command::Connect | Command::Stomp => Err(fatal(
            "already connected",
            "CONNECT/STOMP may only be sent once",
        )),
        Command::Send => transaction::send(s, h, f),
        Command::Subscribe => subscribe::subscribe(s, h, &f),
        Command::Unsubscribe => subscribe::unsubscribe(s, h, &f),
        Command::Ack | Command::Nack => ack::ack(s, h, &f),
        Command::Begin => transaction::begin(s, &f),
        Command::Commit => transaction::commit(s, h, &f),
        Command::Abort => transaction::abort(s, &f),
        Command::Disconnect => {
            s.closed = true;
            Ok(())
        }
    }
}

fn connect(s: &mut Session, h: &mut impl Host, f: &Frame) -> Result<(), Fatal> {
    let version = rules::negotiate_version(f.header("accept-version")).ok_or_else(|| {
        fatal(
            "unsupported protocol version",
            format!(
                "this server speaks STOMP 1.1 and 1.2; the client accepts {:?}",
                f.header("accept-version").unwrap_or("1.0")
            ),
        )
    })?;
    if let Some(want) = &s.settings.login
        && f.header("login") != Some(want.as_str())
    {
        return Err(fatal("access refused", "bad login or passcode"));
    }
    if let Some(want) = &s.settings.passcode
        && f.header("passcode") != Some(want.as_str())
    {
        return Err(fatal("access refused", "bad login or passcode"));
    }
    let client_hb = match f.header("heart-beat") {
        None => (0, 0),
        Some(v) => rules::parse_heart_beat(v).ok_or_else(|| {
            fatal(
                "invalid heart-beat header",
                format!("heart-beat must be two numbers \"cx,cy\", got {v:?}"),
            )
        })?,
    };
    if s.auth_required {
        let passcode = f
            .header("passcode")
            .ok_or_else(|| fatal("access refused", "a passcode is required"))?;
        h.authenticate(passcode)
            .map_err(|e| fatal("access refused", e))?;
        s.connecting = Some(Connecting {
            version,
            client_hb,
            receipt: None,
        });
        return Ok(());
    }
    connected(s, h, version, client_hb);
    Ok(())
}

/// Answers CONNECTED and starts the heart-beats.
fn connected(s: &mut Session, h: &mut impl Host, version: Version, client_hb: (u64, u64)) {
    let server_hb = s.settings.heart_beat;
    let (send_every, expect_every) = rules::negotiate_heart_beat(client_hb, server_hb);
    s.version = Some(version);
    let hb = format!("{},{}", server_hb.0, server_hb.1);
    let session = format!("{}", s.client_id);
    encode_frame(
        &mut s.out,
        "CONNECTED",
        &[
            ("version", version.as_str()),
            ("heart-beat", &hb),
            ("server", "nsq-gateway-stomp/0.1"),
            ("session", &session),
        ],
        b"",
    );
    let now = h.now_ms();
    let window = (expect_every as f64 * s.settings.heart_beat_grace) as u64;
    s.heart = Heart {
        send_every,
        expect_every,
        window,
        last_sent: now,
        last_received: now,
    };
    arm_heart_timer(s, h, now);
}

fn required<'a>(f: &'a Frame, name: &str) -> Result<&'a str, Fatal> {
    f.header(name).ok_or_else(|| {
        fatal(
            format!("missing {name} header"),
            format!("a {} frame needs a {name} header", f.command.name()),
        )
    })
}

fn destination<'a>(f: &'a Frame) -> Result<Destination<'a>, Fatal> {
    let d = required(f, "destination")?;
    Destination::parse(d).ok_or_else(|| {
        fatal(
            format!("unknown destination {d}"),
            format!(
                "destinations are /topic/<name> or /queue/<name> (NSQ topic <name>), got {d:?}"
            ),
        )
    })
}

#[cfg(test)]
mod tests;

/// Runs every complete frame in the parser until one closes the connection
/// or a CONNECT waits for the auth server, then writes the output once (and
/// closes after an ERROR or DISCONNECT).
fn pump(s: &mut Session, h: &mut impl Host) {
    // Frames borrow the parser's buffer while the session is changed, so
    // the parser is taken out of the state for the loop.
    let mut parser = std::mem::replace(&mut s.parser, Parser::new(s.settings.limits));
    loop {
        match parser.next_frame() {
            Ok(Some(f)) => {
                let receipt = f.header("receipt").map(str::to_owned);
                if let Err(e) = handle(s, h, f) {
                    send_error(s, e, receipt.as_deref());
                    break;
                }
                if let Some(c) = s.connecting.as_mut() {
                    // Answered with the auth server's verdict.
                    c.receipt = receipt;
                    break;
                }
                if let Some(r) = receipt {
                    receipt_frame(s, &r);
                }
                if s.closed {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let limits = parser.limits();
                let detail = format!(
                    "{e}. Limits: frame {} bytes, {} headers, header line {} bytes.",
                    limits.max_frame, limits.max_headers, limits.max_header_len
                );
                send_error(s, fatal(format!("malformed frame: {e}"), detail), None);
                break;
            }
        }
    }
    if s.closed {
        // Whatever follows an ERROR or DISCONNECT is dropped.
        parser.reset();
    }
    s.parser = parser;
    flush(s, h);
    if s.closed {
        h.close();
    }
}

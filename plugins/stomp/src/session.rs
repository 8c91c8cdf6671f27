//! The per-connection STOMP session, `Stomp`, as an `nsq_sdk::Protocol`: it
//! takes the gateway's events (connect, bytes, deliveries, timer, the auth
//! answer), runs each client frame through the codec (`frame`) and the
//! protocol rules (`rules`), and calls the broker and the connection through
//! `nsq_sdk::Host`, so it is tested natively against the SDK's recording
//! host (`session/tests.rs`). This file holds the state, the event entry
//! points, CONNECT, heart-beats and errors; SEND/transactions,
//! SUBSCRIBE/delivery and ACK/NACK live in the submodules. Every client
//! error becomes an ERROR frame with a `message` header followed by a close;
//! nothing a client sends can panic.

mod ack;
mod subscribe;
mod transaction;

use std::collections::VecDeque;

use nsq_sdk::{
    AuthError, Config, ConnectInfo, Host, Identity, Message, Protocol, Subscription, describe_auth,
};

use crate::frame::{Command, Frame, Parser, encode_frame, push_decimal};
use crate::rules::{self, AckMode, Destination, MessageId, Settings, Version};

use ack::AckBatch;

/// A CONNECT waiting for the auth server.
struct Connecting {
    version: Version,
    client_hb: (u64, u64),
    /// The CONNECT frame's `receipt` header, answered with the outcome.
    receipt: Option<String>,
}

/// One SUBSCRIBE of this connection.
struct Sub {
    /// The client's `id` header, echoed as `subscription` in MESSAGE frames.
    id: String,
    /// The host's subscription handle.
    handle: Subscription,
    mode: AckMode,
    /// `MESSAGE\nsubscription:..\ndestination:..\n`, escaped once at
    /// SUBSCRIBE so each delivery only appends the per-message headers.
    prefix: Vec<u8>,
    /// Delivered and not yet acknowledged message ids, oldest first (client
    /// modes only): what a cumulative ACK covers. The ids are the ones the
    /// delivery brought, moved here and on to `finish-many`: no copies.
    pending: VecDeque<String>,
    /// Bound on `pending` so ids of messages that timed out and went to
    /// another consumer cannot pile up.
    pending_cap: usize,
}

/// A delivered message an ACK or NACK refers to.
#[derive(Clone, Copy)]
struct AckTarget {
    handle: Subscription,
    id: MessageId,
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

/// One STOMP connection (each has its own component instance).
pub struct Stomp {
    /// The config, bounded by the broker's limits at connect.
    settings: Settings,
    parser: Parser,
    /// The gateway's client id: the CONNECTED `session` and the ephemeral
    /// channel names.
    client_id: u64,
    /// The broker's `max-rdy-count`: the bound of `prefetch-count`.
    max_rdy: u32,
    /// The broker's `max-batch`: the most ids one `finish-many` takes.
    max_batch: usize,
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
    /// The ACKs (or NACKs) of the current event, sent as one `finish-many`
    /// (`requeue-many`) at its end or before any other frame takes effect.
    acks: AckBatch,
    /// The gateway has an auth server: CONNECT's passcode is the secret.
    auth_required: bool,
    /// CONNECT sent its passcode to the auth server; frames behind it wait.
    connecting: Option<Connecting>,
}

impl Protocol for Stomp {
    type Settings = Settings;

    fn settings(config: &mut Config<'_>) -> Settings {
        Settings::read(config)
    }

    /// Applies the settings and takes the magic bytes (`CONN` / `STOM`) as
    /// the start of the first frame.
    fn connect(mut settings: Settings, info: &ConnectInfo, h: &mut impl Host) -> Self {
        settings.bound(&info.limits);
        let mut parser = Parser::new(settings.limits);
        parser.push(&info.magic);
        if settings.connect_timeout_ms > 0 {
            h.set_timer(Some(settings.connect_timeout_ms));
        }
        let max_batch = usize::try_from(info.limits.max_batch).unwrap_or(1).max(1);
        Stomp {
            acks: AckBatch::new(max_batch, settings.nack_delay_ms),
            settings,
            parser,
            client_id: info.client_id,
            max_rdy: info.limits.max_rdy_count.max(1),
            max_batch,
            version: None,
            subs: Vec::new(),
            topic_subs: 0,
            transactions: Vec::new(),
            transaction_bytes: 0,
            heart: Heart::default(),
            closed: false,
            out: Vec::new(),
            auth_required: h.auth_required(),
            connecting: None,
        }
    }

    /// Runs every complete frame, then writes the event's output once (and
    /// closes after an ERROR or DISCONNECT).
    fn on_data(&mut self, h: &mut impl Host, data: &[u8]) {
        if self.closed {
            return;
        }
        if self.heart.expect_every > 0 {
            self.heart.last_received = h.now_ms();
        }
        self.parser.push(data);
        if self.connecting.is_none() {
            pump(self, h);
        }
    }

    /// MESSAGE frames for a subscription's batch.
    fn on_messages(&mut self, h: &mut impl Host, sub: Subscription, messages: Vec<Message>) {
        subscribe::deliver(self, h, sub, messages)
    }

    /// The CONNECT deadline, then heart-beats (send one when due, close a
    /// client that went silent).
    fn on_timer(&mut self, h: &mut impl Host) {
        let s = self;
        if s.closed {
            return;
        }
        if s.version.is_none() {
            let ms = s.settings.connect_timeout_ms;
            let detail = format!("no complete CONNECT frame within {ms} ms");
            return close_with(s, h, fatal("connect timeout", detail), None);
        }
        let now = h.now_ms();
        let hb = &s.heart;
        if hb.expect_every > 0 && now >= hb.last_received.saturating_add(hb.window) {
            let detail = format!(
                "nothing received for {} ms; the negotiated heart-beat is every {} ms",
                now.saturating_sub(hb.last_received),
                hb.expect_every
            );
            return close_with(s, h, fatal("heart-beat timeout", detail), None);
        }
        if hb.send_every > 0 && now >= hb.last_sent.saturating_add(hb.send_every) {
            s.out.push(b'\n');
        }
        flush_at(s, h, now);
        arm_heart_timer(s, h, now);
    }

    /// The auth server's answer to CONNECT's passcode: CONNECTED and the
    /// frames that followed it, or an ERROR and the close.
    fn on_authenticated(&mut self, h: &mut impl Host, answer: Result<Identity, AuthError>) {
        let Some(c) = self.connecting.take() else {
            return;
        };
        if self.closed {
            return;
        }
        if let Err(e) = answer {
            let detail = format!("the auth server refused the passcode: {}", describe_auth(e));
            return close_with(
                self,
                h,
                fatal("access refused", detail),
                c.receipt.as_deref(),
            );
        }
        connected(self, h, c.version, c.client_hb);
        if let Some(r) = c.receipt {
            receipt_frame(self, &r);
        }
        pump(self, h);
    }
}

impl Stomp {
    fn v12(&self) -> bool {
        self.version != Some(Version::V11)
    }
}

/// Sends an ERROR frame outside a frame's handling, and closes.
fn close_with(s: &mut Stomp, h: &mut impl Host, e: Fatal, receipt: Option<&str>) {
    send_error(s, e, receipt);
    flush(s, h);
    h.close();
}

/// Writes the event's output, noting the time for the heart-beat.
fn flush(s: &mut Stomp, h: &mut impl Host) {
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

fn flush_at(s: &mut Stomp, h: &mut impl Host, now: u64) {
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
fn arm_heart_timer(s: &Stomp, h: &mut impl Host, now: u64) {
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
fn send_error(s: &mut Stomp, e: Fatal, receipt: Option<&str>) {
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

fn receipt_frame(s: &mut Stomp, receipt: &str) {
    encode_frame(&mut s.out, "RECEIPT", &[("receipt-id", receipt)], b"");
}

/// Runs one client frame.
fn handle(s: &mut Stomp, h: &mut impl Host, f: &Frame<'_>) -> Result<(), Fatal> {
    if s.version.is_none() {
        return match f.command {
            Command::Connect | Command::Stomp => connect(s, h, f),
            other => Err(fatal(
                "not connected",
                format!(
                    "the first frame must be CONNECT or STOMP, got {}",
                    other.name()
                ),
            )),
        };
    }
    if !matches!(f.command, Command::Ack | Command::Nack) {
        // Whatever this frame does happens after the ACKs before it.
        s.acks.flush(h);
    }
    match f.command {
        Command::Connect | Command::Stomp => Err(fatal(
            "already connected",
            "CONNECT/STOMP may only be sent once",
        )),
        Command::Send => transaction::send(s, h, f),
        Command::Subscribe => subscribe::subscribe(s, h, f),
        Command::Unsubscribe => subscribe::unsubscribe(s, h, f),
        Command::Ack | Command::Nack => ack::ack(s, h, f),
        Command::Begin => transaction::begin(s, f),
        Command::Commit => transaction::commit(s, h, f),
        Command::Abort => transaction::abort(s, f),
        Command::Disconnect => {
            s.closed = true;
            Ok(())
        }
    }
}

fn connect(s: &mut Stomp, h: &mut impl Host, f: &Frame<'_>) -> Result<(), Fatal> {
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
            .map_err(|e| fatal("access refused", nsq_sdk::describe(&e)))?;
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
fn connected(s: &mut Stomp, h: &mut impl Host, version: Version, client_hb: (u64, u64)) {
    let server_hb = s.settings.heart_beat;
    let (send_every, expect_every) = rules::negotiate_heart_beat(client_hb, server_hb);
    s.version = Some(version);
    // Decimal by hand, not `format!`: an idle connection's CONNECT then
    // never runs `core::fmt` (less guest stack and data touched).
    let mut hb = decimal(server_hb.0);
    hb.push(',');
    hb.push_str(&decimal(server_hb.1));
    let session = decimal(s.client_id);
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
    let window = expect_every.saturating_mul(s.settings.heart_beat_grace_milli) / 1000;
    s.heart = Heart {
        send_every,
        expect_every,
        window,
        last_sent: now,
        last_received: now,
    };
    arm_heart_timer(s, h, now);
}

/// `n` in decimal.
fn decimal(n: u64) -> String {
    let mut digits = Vec::with_capacity(20);
    push_decimal(&mut digits, n);
    String::from_utf8(digits).unwrap_or_default()
}

fn required<'a>(f: &Frame<'a>, name: &str) -> Result<&'a str, Fatal> {
    f.header(name).ok_or_else(|| {
        fatal(
            format!("missing {name} header"),
            format!("a {} frame needs a {name} header", f.command.name()),
        )
    })
}

fn destination<'a>(f: &Frame<'a>) -> Result<Destination<'a>, Fatal> {
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
/// or a CONNECT waits for the auth server, sends the ACKs gathered, then
/// writes the output once (and closes after an ERROR or DISCONNECT).
fn pump(s: &mut Stomp, h: &mut impl Host) {
    // Frames borrow the parser's buffer while the session is changed, so
    // the parser is taken out of the state for the loop.
    let mut parser = std::mem::replace(&mut s.parser, Parser::new(s.settings.limits));
    loop {
        match parser.next_frame() {
            Ok(Some(f)) => {
                let receipt = f.header("receipt");
                if let Err(e) = handle(s, h, &f) {
                    send_error(s, e, receipt);
                    break;
                }
                if let Some(c) = s.connecting.as_mut() {
                    // Answered with the auth server's verdict.
                    c.receipt = receipt.map(str::to_owned);
                    break;
                }
                if let Some(r) = receipt {
                    // The receipt says the frame took effect: its ACK too.
                    s.acks.flush(h);
                    receipt_frame(s, r);
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
    s.acks.flush(h);
    flush(s, h);
    if s.closed {
        h.close();
    }
}

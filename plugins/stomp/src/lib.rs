//! STOMP 1.2 (and 1.1) for nsq-gateway as a WebAssembly guest: this file
//! routes the host's events through the pure codec (`frame`) and protocol
//! rules (`rules`) to the broker and connection imports, and keeps the
//! per-connection session (subscriptions, unacknowledged messages,
//! transactions, heart-beats). Every client error becomes an ERROR frame with
//! a `message` header followed by a close; nothing a client sends can panic.
//! See plugins/stomp/README.md for the mapping and the limits.

mod frame;
mod rules;

use std::cell::RefCell;
use std::collections::VecDeque;

/// Small blocks come from a static arena, so an idle connection never starts
/// the standard allocator (one resident page less; see `guest-alloc`).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOC: guest_alloc::FrontAlloc = guest_alloc::FrontAlloc::new();

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use exports::nsq::gateway::tcp_handler::Guest;
use nsq::gateway::broker;
use nsq::gateway::connection;
use nsq::gateway::types::{BrokerError, ConnectInfo, Message};

use frame::{Command, Frame, Parser, encode_frame, escape_into, push_decimal};
use rules::{AckMode, Destination, Settings, Version};

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

/// Per-connection state: each connection has its own instance, so a
/// thread-local is per connection.
struct State {
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
}

impl State {
    fn new() -> State {
        let settings = Settings::default();
        State {
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
        }
    }

    fn sub_by_handle(&mut self, handle: u32) -> Option<&mut Sub> {
        self.subs.iter_mut().find(|s| s.handle == handle)
    }

    fn v12(&self) -> bool {
        self.version != Some(Version::V11)
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::new());
}

struct Stomp;

impl Guest for Stomp {
    fn on_connect(info: ConnectInfo) {
        STATE.with_borrow_mut(|s| {
            s.settings = Settings::from_config(&info.config);
            s.parser = Parser::new(s.settings.limits);
            s.client_id = info.client_id;
            // The magic (`CONN` / `STOM`) is the start of the first frame.
            s.parser.push(&info.magic);
            if s.settings.connect_timeout_ms > 0 {
                connection::set_timer(Some(s.settings.connect_timeout_ms));
            }
        })
    }

    fn on_data(data: Vec<u8>) {
        STATE.with_borrow_mut(|s| {
            if s.closed {
                return;
            }
            if s.heart.expect_every > 0 {
                s.heart.last_received = connection::now_ms();
            }
            // Frames borrow the parser's buffer while the session is changed,
            // so the parser is taken out of the state for the loop.
            let mut parser = std::mem::replace(&mut s.parser, Parser::new(s.settings.limits));
            parser.push_owned(data);
            loop {
                match parser.next_frame() {
                    Ok(Some(f)) => {
                        let receipt = f.header("receipt").map(str::to_owned);
                        if let Err(e) = handle(s, f) {
                            send_error(s, e, receipt.as_deref());
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
            flush(s);
            if s.closed {
                connection::close();
            }
        })
    }

    fn on_messages(handle: u32, messages: Vec<Message>) {
        STATE.with_borrow_mut(|s| deliver(s, handle, messages))
    }

    fn on_timer() {
        STATE.with_borrow_mut(|s| {
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
                flush(s);
                connection::close();
                return;
            }
            let now = connection::now_ms();
            let h = &s.heart;
            if h.expect_every > 0 && now >= h.last_received.saturating_add(h.window) {
                let detail = format!(
                    "nothing received for {} ms; the negotiated heart-beat is every {} ms",
                    now.saturating_sub(h.last_received),
                    h.expect_every
                );
                send_error(s, fatal("heart-beat timeout", detail), None);
                flush(s);
                connection::close();
                return;
            }
            if h.send_every > 0 && now >= h.last_sent.saturating_add(h.send_every) {
                s.out.push(b'\n');
            }
            flush_at(s, now);
            arm_heart_timer(s, now);
        })
    }

    fn on_close() {}
}

export!(Stomp);

/// Writes the event's output, noting the time for the heart-beat.
fn flush(s: &mut State) {
    if s.out.is_empty() {
        return;
    }
    let now = if s.heart.send_every > 0 {
        connection::now_ms()
    } else {
        0
    };
    flush_at(s, now);
}

fn flush_at(s: &mut State, now: u64) {
    if s.out.is_empty() {
        return;
    }
    let _ = connection::write(&s.out);
    s.out.clear();
    if s.out.capacity() > 256 << 10 {
        s.out = Vec::new();
    }
    s.heart.last_sent = now;
}

/// Arms the single timer for the next heart-beat send or liveness check.
fn arm_heart_timer(s: &State, now: u64) {
    let h = &s.heart;
    let send = (h.send_every > 0).then(|| h.last_sent.saturating_add(h.send_every));
    let check = (h.expect_every > 0).then(|| h.last_received.saturating_add(h.window));
    let next = match (send, check) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let delay = next.map(|t| u32::try_from(t.saturating_sub(now).max(1)).unwrap_or(u32::MAX));
    connection::set_timer(delay);
}

/// Queues an ERROR frame and marks the session closed.
fn send_error(s: &mut State, e: Fatal, receipt: Option<&str>) {
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

fn receipt_frame(s: &mut State, receipt: &str) {
    encode_frame(&mut s.out, "RECEIPT", &[("receipt-id", receipt)], b"");
}

/// Runs one client frame.
fn handle(s: &mut State, f: Frame) -> Result<(), Fatal> {
    if s.version.is_none() {
        return match f.command {
            Command::Connect | Command::Stomp => connect(s, &f),
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
        Command::Send => send(s, f),
        Command::Subscribe => subscribe(s, &f),
        Command::Unsubscribe => unsubscribe(s, &f),
        Command::Ack | Command::Nack => ack(s, &f),
        Command::Begin => begin(s, &f),
        Command::Commit => commit(s, &f),
        Command::Abort => {
            let id = transaction_index(s, &f)?;
            let tx = s.transactions.remove(id);
            s.transaction_bytes = s.transaction_bytes.saturating_sub(tx_bytes(&tx));
            Ok(())
        }
        Command::Disconnect => {
            s.closed = true;
            Ok(())
        }
    }
}

fn connect(s: &mut State, f: &Frame) -> Result<(), Fatal> {
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
    let now = connection::now_ms();
    let window = (expect_every as f64 * s.settings.heart_beat_grace) as u64;
    s.heart = Heart {
        send_every,
        expect_every,
        window,
        last_sent: now,
        last_received: now,
    };
    arm_heart_timer(s, now);
    Ok(())
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

fn send(s: &mut State, f: Frame) -> Result<(), Fatal> {
    let topic = destination(&f)?.topic().to_string();
    if f.body.is_empty() {
        return Err(fatal(
            "empty message",
            "NSQ messages cannot be empty: SEND needs a body",
        ));
    }
    if let Some(tx) = f.header("transaction") {
        let tx = tx.to_string();
        let i = find_transaction(s, &tx)?;
        let bytes = s.transaction_bytes + f.body.len();
        if bytes > s.settings.max_transaction_bytes {
            return Err(fatal(
                "transaction too large",
                format!(
                    "open transactions may buffer at most {} bytes",
                    s.settings.max_transaction_bytes
                ),
            ));
        }
        s.transaction_bytes = bytes;
        s.transactions[i].ops.push(TxOp::Send {
            topic,
            body: f.body.to_vec(),
        });
        return Ok(());
    }
    publish(&topic, f.body)
}

fn publish(topic: &str, body: &[u8]) -> Result<(), Fatal> {
    broker::publish(topic, body).map_err(|e| {
        fatal(
            format!("publish to {topic} failed"),
            format!("publish to NSQ topic {topic:?} failed: {}", describe(&e)),
        )
    })
}

fn subscribe(s: &mut State, f: &Frame) -> Result<(), Fatal> {
    let id = required(f, "id")?;
    let dest = destination(f)?;
    let mode = AckMode::parse(f.header("ack")).ok_or_else(|| {
        fatal(
            "invalid ack mode",
            format!(
                "ack must be auto, client or client-individual, got {:?}",
                f.header("ack").unwrap_or_default()
            ),
        )
    })?;
    if s.subs.iter().any(|x| x.id == id) {
        return Err(fatal(
            "duplicate subscription id",
            format!("subscription id {id:?} is already in use on this connection"),
        ));
    }
    if s.subs.len() >= s.settings.max_subscriptions {
        return Err(fatal(
            "too many subscriptions",
            format!(
                "at most {} subscriptions per connection (max_subscriptions)",
                s.settings.max_subscriptions
            ),
        ));
    }
    let window = match f.header("prefetch-count") {
        None => s.settings.prefetch,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map(|n| n.clamp(1, rules::MAX_PREFETCH))
            .map_err(|_| {
                fatal(
                    "invalid prefetch-count",
                    format!("prefetch-count must be a number, got {v:?}"),
                )
            })?,
    };
    let channel = match dest {
        Destination::Queue(_) => f
            .header("channel")
            .unwrap_or(&s.settings.queue_channel)
            .to_string(),
        Destination::Topic(_) => {
            s.topic_subs = s.topic_subs.wrapping_add(1);
            rules::ephemeral_channel(s.client_id, s.topic_subs)
        }
    };
    let topic = dest.topic();
    let handle = broker::subscribe(topic, &channel).map_err(|e| {
        fatal(
            format!("subscribe to {topic} failed"),
            format!(
                "subscribing to NSQ topic {topic:?} channel {channel:?} failed: {}",
                describe(&e)
            ),
        )
    })?;
    if let Err(e) = broker::set_ready(handle, window) {
        let _ = broker::unsubscribe(handle);
        return Err(fatal("subscribe failed", describe(&e)));
    }
    let v12 = s.v12();
    let mut prefix = b"MESSAGE\nsubscription:".to_vec();
    escape_into(&mut prefix, id, v12);
    prefix.extend_from_slice(b"\ndestination:");
    escape_into(&mut prefix, required(f, "destination")?, v12);
    prefix.push(b'\n');
    s.subs.push(Sub {
        id: id.to_string(),
        handle,
        mode,
        prefix,
        pending: VecDeque::new(),
        pending_cap: (window as usize).saturating_mul(4).max(64),
    });
    Ok(())
}

fn unsubscribe(s: &mut State, f: &Frame) -> Result<(), Fatal> {
    let id = required(f, "id")?;
    let i = s.subs.iter().position(|x| x.id == id).ok_or_else(|| {
        fatal(
            "unknown subscription",
            format!("no subscription with id {id:?} on this connection"),
        )
    })?;
    let sub = s.subs.remove(i);
    // Unsubscribing requeues whatever is still unacknowledged.
    let _ = broker::unsubscribe(sub.handle);
    Ok(())
}

/// Finds the message an ACK/NACK names: STOMP 1.2 sends the MESSAGE's `ack`
/// header as `id`; 1.1 sends `message-id` and `subscription`.
fn ack_target(s: &State, f: &Frame) -> Result<AckTarget, Fatal> {
    let verb = f.command.name();
    let unknown = |what: &str| {
        fatal(
            format!("{verb} for an unknown message"),
            format!("{verb} {what} does not match a delivery on this connection"),
        )
    };
    let message_id = match f.header("id") {
        Some(id) => {
            if let Some((handle, mid)) = rules::parse_ack_id(id) {
                if s.subs.iter().any(|x| x.handle == handle) {
                    return Ok(AckTarget {
                        handle,
                        id: mid.to_string(),
                    });
                }
                return Err(unknown(&format!("id {id:?}")));
            }
            id
        }
        None => f.header("message-id").ok_or_else(|| {
            fatal(
                "missing id header",
                format!("{verb} needs the id header (the MESSAGE's ack header)"),
            )
        })?,
    };
    if !rules::is_message_id(message_id) {
        return Err(unknown(&format!("id {message_id:?}")));
    }
    let sub = match f.header("subscription") {
        Some(sid) => s.subs.iter().find(|x| x.id == sid),
        None => s
            .subs
            .iter()
            .find(|x| x.pending.iter().any(|p| p == message_id)),
    };
    let sub = sub.ok_or_else(|| unknown(&format!("message-id {message_id:?}")))?;
    Ok(AckTarget {
        handle: sub.handle,
        id: message_id.to_string(),
    })
}

fn ack(s: &mut State, f: &Frame) -> Result<(), Fatal> {
    let target = ack_target(s, f)?;
    let positive = f.command == Command::Ack;
    if f.header("transaction").is_some() {
        let i = transaction_index(s, f)?;
        s.transactions[i].ops.push(if positive {
            TxOp::Ack(target)
        } else {
            TxOp::Nack(target)
        });
        return Ok(());
    }
    apply_ack(s, &target, positive);
    Ok(())
}

/// FINs (or REQs) the target and, for `client` mode, every message
/// delivered before it. Messages no longer in flight (timed out) are skipped.
fn apply_ack(s: &mut State, target: &AckTarget, positive: bool) {
    let delay = s.settings.nack_delay_ms;
    let Some(sub) = s.sub_by_handle(target.handle) else {
        return;
    };
    let act = |id: &str| {
        let _ = if positive {
            broker::finish(target.handle, id)
        } else {
            broker::requeue(target.handle, id, delay)
        };
    };
    match sub.mode {
        AckMode::Auto => {}
        AckMode::ClientIndividual => {
            if let Some(i) = sub.pending.iter().position(|p| *p == target.id) {
                sub.pending.remove(i);
            }
            act(&target.id);
        }
        AckMode::Client => match sub.pending.iter().position(|p| *p == target.id) {
            Some(i) => {
                for id in sub.pending.drain(..=i) {
                    act(&id);
                }
            }
            None => act(&target.id),
        },
    }
}

fn find_transaction(s: &State, id: &str) -> Result<usize, Fatal> {
    s.transactions
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| {
            fatal(
                "unknown transaction",
                format!("transaction {id:?} was not begun (or already ended)"),
            )
        })
}

fn transaction_index(s: &State, f: &Frame) -> Result<usize, Fatal> {
    find_transaction(s, required(f, "transaction")?)
}

fn tx_bytes(tx: &Transaction) -> usize {
    tx.ops
        .iter()
        .map(|op| match op {
            TxOp::Send { body, .. } => body.len(),
            _ => 0,
        })
        .sum()
}

fn begin(s: &mut State, f: &Frame) -> Result<(), Fatal> {
    let id = required(f, "transaction")?;
    if s.transactions.iter().any(|t| t.id == id) {
        return Err(fatal(
            "duplicate transaction",
            format!("transaction {id:?} is already open"),
        ));
    }
    if s.transactions.len() >= s.settings.max_transactions {
        return Err(fatal(
            "too many transactions",
            format!(
                "at most {} open transactions per connection",
                s.settings.max_transactions
            ),
        ));
    }
    s.transactions.push(Transaction {
        id: id.to_string(),
        ops: Vec::new(),
    });
    Ok(())
}

/// Applies a transaction's sends and acks in order. Sends are published one
/// by one: a failure stops the commit with an ERROR (earlier ones stay).
fn commit(s: &mut State, f: &Frame) -> Result<(), Fatal> {
    let i = transaction_index(s, f)?;
    let tx = s.transactions.remove(i);
    s.transaction_bytes = s.transaction_bytes.saturating_sub(tx_bytes(&tx));
    for op in tx.ops {
        match op {
            TxOp::Send { topic, body } => publish(&topic, &body)?,
            TxOp::Ack(t) => apply_ack(s, &t, true),
            TxOp::Nack(t) => apply_ack(s, &t, false),
        }
    }
    Ok(())
}

/// Writes MESSAGE frames for a batch; auto-ack subscriptions FIN at once,
/// the others remember the ids for ACK/NACK.
fn deliver(s: &mut State, handle: u32, messages: Vec<Message>) {
    if s.closed {
        return;
    }
    let Some(sub) = s.subs.iter_mut().find(|x| x.handle == handle) else {
        // Unsubscribed meanwhile: hand them back.
        for m in &messages {
            let _ = broker::requeue(handle, &m.id, 0);
        }
        return;
    };
    let size: usize = messages
        .iter()
        .map(|m| m.body.len() + sub.prefix.len() + 96)
        .sum();
    s.out.reserve(size);
    for m in &messages {
        s.out.extend_from_slice(&sub.prefix);
        s.out.extend_from_slice(b"message-id:");
        s.out.extend_from_slice(m.id.as_bytes());
        if sub.mode != AckMode::Auto {
            s.out.extend_from_slice(b"\nack:");
            rules::ack_id(&mut s.out, handle, &m.id);
        }
        if m.attempts > 1 {
            s.out.extend_from_slice(b"\nredelivered:true");
        }
        s.out.extend_from_slice(b"\nnsq-attempts:");
        push_decimal(&mut s.out, u64::from(m.attempts));
        s.out.extend_from_slice(b"\nnsq-timestamp:");
        push_decimal(&mut s.out, u64::try_from(m.timestamp).unwrap_or(0));
        s.out.extend_from_slice(b"\ncontent-length:");
        push_decimal(&mut s.out, m.body.len() as u64);
        s.out.extend_from_slice(b"\n\n");
        s.out.extend_from_slice(&m.body);
        s.out.push(0);
    }
    let mode = sub.mode;
    let written = connection::write(&s.out).is_ok();
    s.out.clear();
    if s.out.capacity() > 256 << 10 {
        s.out = Vec::new();
    }
    if s.heart.send_every > 0 {
        s.heart.last_sent = connection::now_ms();
    }
    let Some(sub) = s.subs.iter_mut().find(|x| x.handle == handle) else {
        return;
    };
    if !written {
        for m in &messages {
            let _ = broker::requeue(handle, &m.id, 0);
        }
        return;
    }
    match mode {
        AckMode::Auto => {
            for m in &messages {
                let _ = broker::finish(handle, &m.id);
            }
        }
        AckMode::Client | AckMode::ClientIndividual => {
            for m in messages {
                if m.attempts > 1 {
                    // A redelivery: the earlier delivery's id is stale.
                    if let Some(i) = sub.pending.iter().position(|p| *p == m.id) {
                        sub.pending.remove(i);
                    }
                }
                if sub.pending.len() >= sub.pending_cap {
                    sub.pending.pop_front();
                }
                sub.pending.push_back(m.id);
            }
        }
    }
}

/// A readable reason for a broker error.
fn describe(e: &BrokerError) -> String {
    match e {
        BrokerError::InvalidTopicName => {
            "invalid topic name (1-64 of a-z A-Z 0-9 . _ -, optional #ephemeral)".into()
        }
        BrokerError::InvalidChannelName => {
            "invalid channel name (1-64 of a-z A-Z 0-9 . _ -, optional #ephemeral)".into()
        }
        BrokerError::TopicNotFound => "no such topic".into(),
        BrokerError::ChannelNotFound => "no such channel".into(),
        BrokerError::PublishFailed(why) => format!("publish failed: {why}"),
        BrokerError::NotInFlight => "message is not in flight".into(),
        BrokerError::TooManyConsumers => "too many consumers on this channel".into(),
        BrokerError::Denied(why) => format!("denied: {why}"),
        BrokerError::UnknownSubscription => "unknown subscription".into(),
        BrokerError::InvalidArgument(why) => format!("invalid argument: {why}"),
        BrokerError::Exiting => "the gateway is shutting down".into(),
    }
}

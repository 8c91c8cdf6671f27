//! LINE: a human-friendly text protocol for nsq-gateway, usable with `nc`.
//! One command per line in, one reply (or delivered message) per line out; the
//! parser is pure (`parse`) and the event handlers only route its results to
//! the broker imports. See plugins/README.md for the command reference.

use std::cell::RefCell;

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

mod parse;

use parse::{Command, Mode, escape, parse};

/// Default longest accepted line, overridable with `config.max_line_bytes`.
const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// Most PUBs coalesced into one `publish-many` (the host's default
/// `limits.max_batch` is 256).
const MAX_PUB_BATCH: usize = 256;
/// Default ready count after SUB, overridable with `config.default_rdy`.
const DEFAULT_RDY: u32 = 1;
/// Upper bound for `RDY n`, like nsqd's `--max-rdy-count`.
const MAX_RDY: u32 = 2500;

const HELP: &str = "\
# LINE protocol (one command per line; bodies may use \\n \\r \\t \\\\ \\xNN escapes)
#   PUB <topic> <body...>           publish one message
#   DPUB <topic> <delay_ms> <body>  publish, visible after delay_ms
#   SUB <topic> <channel> [auto|manual]  subscribe (auto = FIN on delivery)
#   RDY <n>                         how many messages may be in flight (0 pauses)
#   FIN <id>                        acknowledge a message (manual mode)
#   REQ <id> [delay_ms]             requeue a message (manual mode)
#   TOUCH <id>                      reset a message's timeout
#   STATS [topic]                   topic/channel depths
#   PING                            answers PONG
#   QUIT                            close the connection
# deliveries: MSG <id> <attempts> <topic> <body>
";

/// The active subscription of this connection (LINE allows one, like V2).
struct Subscription {
    /// Handle from `broker.subscribe`, passed to FIN/REQ/RDY.
    handle: u32,
    /// Topic name, echoed in each MSG line.
    topic: String,
    /// Whether the plugin or the client acknowledges.
    mode: Mode,
}

/// Per-connection state: each connection has its own instance, so globals are
/// per connection.
struct State {
    /// Bytes of an incomplete line carried over between `on-data` calls.
    pending: Vec<u8>,
    /// Longest line accepted; beyond it the connection is closed with ERR.
    max_line: usize,
    /// Ready count applied right after SUB.
    default_rdy: u32,
    /// The subscription, once SUB succeeded.
    sub: Option<Subscription>,
    /// Set once QUIT or a fatal error closed the connection; input is ignored.
    closed: bool,
    /// Topic of the consecutive PUBs gathered in `batch`.
    batch_topic: String,
    /// Bodies of consecutive PUBs to one topic within one `on-data` call,
    /// published with one `publish-many` (one host call, one topic lookup).
    batch: Vec<Vec<u8>>,
}

thread_local! {
    static STATE: RefCell<State> = const { RefCell::new(State {
        pending: Vec::new(),
        max_line: DEFAULT_MAX_LINE,
        default_rdy: DEFAULT_RDY,
        sub: None,
        closed: false,
        batch_topic: String::new(),
        batch: Vec::new(),
    }) };
}

struct Line;

impl Guest for Line {
    fn on_connect(info: ConnectInfo) {
        STATE.with_borrow_mut(|s| {
            for (key, value) in &info.config {
                match key.as_str() {
                    "max_line_bytes" => {
                        if let Ok(n) = value.parse::<usize>() {
                            s.max_line = n.max(64);
                        }
                    }
                    "default_rdy" => {
                        if let Ok(n) = value.parse::<u32>() {
                            s.default_rdy = n.min(MAX_RDY);
                        }
                    }
                    _ => {}
                }
            }
        });
        if info
            .config
            .iter()
            .any(|(k, v)| k == "greeting" && v == "false")
        {
            return;
        }
        let _ = connection::write(b"OK LINE nsq-gateway, type HELP for commands\n");
    }

    fn on_data(data: Vec<u8>) {
        STATE.with_borrow_mut(|s| {
            if s.closed {
                return;
            }
            let mut out = Vec::new();
            // Process complete lines straight from `data`, carrying over only
            // the tail, so a chunk with many lines is never copied.
            let mut rest: &[u8] = &data;
            if !s.pending.is_empty() {
                match data.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        let mut line = std::mem::take(&mut s.pending);
                        line.extend_from_slice(&data[..nl]);
                        if line.len() > s.max_line {
                            return too_long(s, &mut out);
                        }
                        handle_line(s, &line, &mut out);
                        rest = &data[nl + 1..];
                    }
                    None => {
                        s.pending.extend_from_slice(&data);
                        if s.pending.len() > s.max_line {
                            too_long(s, &mut out);
                        }
                        return;
                    }
                }
            }
            while !s.closed {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        if nl > s.max_line {
                            return too_long(s, &mut out);
                        }
                        handle_line(s, &rest[..nl], &mut out);
                        rest = &rest[nl + 1..];
                    }
                    None => {
                        if rest.len() > s.max_line {
                            return too_long(s, &mut out);
                        }
                        s.pending.extend_from_slice(rest);
                        break;
                    }
                }
            }
            flush_batch(s, &mut out);
            flush(&mut out);
            if s.closed {
                connection::close();
            }
        })
    }

    fn on_messages(sub: u32, messages: Vec<Message>) {
        STATE.with_borrow_mut(|s| {
            let Some(subscription) = s.sub.as_ref().filter(|x| x.handle == sub) else {
                return;
            };
            let mut out = Vec::with_capacity(messages.iter().map(|m| m.body.len() + 48).sum());
            for m in &messages {
                out.extend_from_slice(b"MSG ");
                out.extend_from_slice(m.id.as_bytes());
                out.extend_from_slice(format!(" {} ", m.attempts).as_bytes());
                out.extend_from_slice(subscription.topic.as_bytes());
                out.push(b' ');
                escape(&m.body, &mut out);
                out.push(b'\n');
            }
            if subscription.mode == Mode::Auto {
                for m in &messages {
                    if let Err(e) = broker::finish(sub, &m.id) {
                        out.extend_from_slice(
                            format!("ERR auto FIN failed: {}\n", describe(&e)).as_bytes(),
                        );
                    }
                }
            }
            flush(&mut out);
        })
    }

    fn on_timer() {}

    /// LINE never calls `authenticate`.
    fn on_authenticated(
        _result: Result<nsq::gateway::types::Identity, nsq::gateway::types::AuthError>,
    ) {
    }

    fn on_close() {}
}

export!(Line);

/// Writes out the accumulated replies of one event, if any.
fn flush(out: &mut Vec<u8>) {
    if !out.is_empty() {
        let _ = connection::write(out);
        out.clear();
    }
}

/// Ends a connection whose client sent a line over the limit.
fn too_long(s: &mut State, out: &mut Vec<u8>) {
    flush_batch(s, out);
    out.extend_from_slice(
        format!("ERR line too long (max {} bytes), closing\n", s.max_line).as_bytes(),
    );
    flush(out);
    s.closed = true;
    s.pending = Vec::new();
    connection::close();
}

/// Parses one line and runs it against the broker, appending the reply.
fn handle_line(s: &mut State, line: &[u8], out: &mut Vec<u8>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return;
    }
    let command = match parse(line) {
        Ok(c) => c,
        Err(reason) => {
            flush_batch(s, out);
            out.extend_from_slice(format!("ERR {reason}\n").as_bytes());
            return;
        }
    };
    if let Command::Pub { topic, body } = command {
        if !s.batch.is_empty() && (s.batch_topic != topic || s.batch.len() >= MAX_PUB_BATCH) {
            flush_batch(s, out);
        }
        if s.batch.is_empty() {
            s.batch_topic.clear();
            s.batch_topic.push_str(topic);
        }
        s.batch.push(body);
        return;
    }
    flush_batch(s, out);
    let reply = run(s, command);
    match reply {
        Ok(text) => {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
        Err(reason) => out.extend_from_slice(format!("ERR {reason}\n").as_bytes()),
    }
}

/// Publishes the gathered PUBs and appends one reply line per PUB, in order.
fn flush_batch(s: &mut State, out: &mut Vec<u8>) {
    if s.batch.is_empty() {
        return;
    }
    let bodies = std::mem::take(&mut s.batch);
    let result = if bodies.len() == 1 {
        broker::publish(&s.batch_topic, &bodies[0])
    } else {
        broker::publish_many(&s.batch_topic, &bodies)
    };
    match result {
        Ok(()) => {
            for _ in 0..bodies.len() {
                out.extend_from_slice(b"OK\n");
            }
        }
        // A batch is all-or-nothing; if it was refused as a batch (too big
        // for this gateway's limits, one bad body), retry each PUB alone so
        // every line gets its own answer.
        Err(BrokerError::InvalidArgument(_) | BrokerError::PublishFailed(_))
            if bodies.len() > 1 =>
        {
            for body in &bodies {
                match broker::publish(&s.batch_topic, body) {
                    Ok(()) => out.extend_from_slice(b"OK\n"),
                    Err(e) => out.extend_from_slice(format!("ERR {}\n", describe(&e)).as_bytes()),
                }
            }
        }
        Err(e) => {
            let line = format!("ERR {}\n", describe(&e));
            for _ in 0..bodies.len() {
                out.extend_from_slice(line.as_bytes());
            }
        }
    }
    s.batch = bodies;
    s.batch.clear();
}

/// Executes a command; `Ok` carries the full reply line without its newline.
fn run(s: &mut State, command: Command<'_>) -> Result<String, String> {
    match command {
        Command::Pub { topic, body } => {
            broker::publish(topic, &body).map_err(|e| describe(&e))?;
            Ok("OK".into())
        }
        Command::Dpub {
            topic,
            delay_ms,
            body,
        } => {
            broker::publish_deferred(topic, &body, delay_ms).map_err(|e| describe(&e))?;
            Ok("OK".into())
        }
        Command::Sub {
            topic,
            channel,
            mode,
        } => {
            if s.sub.is_some() {
                return Err("already subscribed (one SUB per connection)".into());
            }
            let handle = broker::subscribe(topic, channel).map_err(|e| describe(&e))?;
            if s.default_rdy > 0 {
                broker::set_ready(handle, s.default_rdy).map_err(|e| describe(&e))?;
            }
            s.sub = Some(Subscription {
                handle,
                topic: topic.to_string(),
                mode,
            });
            let mode = if mode == Mode::Auto { "auto" } else { "manual" };
            Ok(format!(
                "OK subscribed to {topic}/{channel} ({mode}, RDY {})",
                s.default_rdy
            ))
        }
        Command::Rdy(n) => {
            let sub = s.sub.as_ref().ok_or("RDY needs a SUB first")?;
            if n > MAX_RDY {
                return Err(format!("RDY {n} is over the maximum {MAX_RDY}"));
            }
            broker::set_ready(sub.handle, n).map_err(|e| describe(&e))?;
            Ok("OK".into())
        }
        Command::Fin(id) => {
            let sub = s.sub.as_ref().ok_or("FIN needs a SUB first")?;
            broker::finish(sub.handle, id).map_err(|e| describe(&e))?;
            Ok("OK".into())
        }
        Command::Req { id, delay_ms } => {
            let sub = s.sub.as_ref().ok_or("REQ needs a SUB first")?;
            broker::requeue(sub.handle, id, delay_ms).map_err(|e| describe(&e))?;
            Ok("OK".into())
        }
        Command::Touch(id) => {
            let sub = s.sub.as_ref().ok_or("TOUCH needs a SUB first")?;
            broker::touch(sub.handle, id).map_err(|e| describe(&e))?;
            Ok("OK".into())
        }
        Command::Stats(topic) => {
            let topics = broker::stats(topic).map_err(|e| describe(&e))?;
            let mut text = String::new();
            for t in &topics {
                text.push_str(&format!(
                    "TOPIC {} depth={} messages={} paused={}\n",
                    t.name, t.depth, t.message_count, t.paused
                ));
                for c in &t.channels {
                    text.push_str(&format!(
                        "CHANNEL {}/{} depth={} in_flight={} deferred={} clients={} paused={}\n",
                        t.name, c.name, c.depth, c.in_flight, c.deferred, c.clients, c.paused
                    ));
                }
            }
            text.push_str(&format!("OK {} topics", topics.len()));
            Ok(text)
        }
        Command::Ping => Ok("PONG".into()),
        Command::Quit => {
            // `on_data` closes after flushing, so BYE still goes out.
            s.closed = true;
            Ok("BYE".into())
        }
        Command::Help => Ok(format!("{HELP}OK")),
    }
}

/// A readable reason for a broker error.
fn describe(e: &BrokerError) -> String {
    match e {
        BrokerError::InvalidTopicName => "invalid topic name (1-64 of a-z A-Z 0-9 . _ -)".into(),
        BrokerError::InvalidChannelName => {
            "invalid channel name (1-64 of a-z A-Z 0-9 . _ -)".into()
        }
        BrokerError::TopicNotFound => "no such topic".into(),
        BrokerError::ChannelNotFound => "no such channel".into(),
        BrokerError::PublishFailed(why) => format!("publish failed: {why}"),
        BrokerError::NotInFlight => {
            "message is not in flight (unknown id, or already FIN/REQ)".into()
        }
        BrokerError::TooManyConsumers => "too many consumers on this channel".into(),
        BrokerError::Denied(why) => format!("denied: {why}"),
        BrokerError::UnknownSubscription => "unknown subscription".into(),
        BrokerError::InvalidArgument(why) => format!("invalid argument: {why}"),
        BrokerError::Exiting => "the gateway is shutting down".into(),
        BrokerError::AuthRequired => {
            "an auth server is configured and LINE has no AUTH: use V2, RESP or STOMP".into()
        }
        BrokerError::Unauthorized(why) => format!("unauthorized: {why}"),
        BrokerError::AuthDisabled => "no auth server is configured".into(),
    }
}

#[cfg(test)]
mod fuzz;

//! One RESP connection's state machine: buffers request bytes, runs each
//! parsed command against the gateway through the `Host` trait (publish,
//! subscribe, FIN, timer, write), and formats replies the way Redis 7 does,
//! in RESP2 or (after `HELLO 3`) RESP3.
//! It knows nothing of WebAssembly, so it is unit-tested on the host target
//! with a fake `Host`; `guest.rs` implements `Host` over the WIT imports.
//! This file holds the state, the event entry points, request buffering and
//! the command dispatch; the command families live in the submodules
//! (`cmd` the command table, `connection` PING/HELLO/CLIENT/AUTH, `publish`
//! PUBLISH runs, `pubsub` SUBSCRIBE/UNSUBSCRIBE, `queue` LPUSH/BRPOP/LLEN, `server` SELECT/CONFIG/INFO).

use crate::parse::{self, Parsed};
use crate::reply;
use crate::settings::Settings;

mod auth;
mod cmd;
mod connection;
mod publish;
mod pubsub;
mod queue;
mod server;

use auth::AuthPhase;
use cmd::Cmd;

/// An error reply from the host, already worded for the client, starting
/// with its RESP error code (`ERR …`, `NOPERM …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

/// What the session learns from the broker's stats about one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicInfo {
    /// Messages held by the topic itself (it has no channels yet).
    pub depth: u64,
    /// Each channel's name and its waiting messages.
    pub channels: Vec<(String, u64)>,
}

/// A delivered message, in flight until finished or requeued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub body: Vec<u8>,
}

/// The gateway as the session sees it: the WIT `connection` and `broker`
/// imports, trimmed to what RESP needs.
pub trait Host {
    /// Queues bytes for the client; `false` if the connection cannot take
    /// them (closed, or over the output buffer limit).
    fn write(&mut self, data: &[u8]) -> bool;
    fn close(&mut self);
    fn set_timer(&mut self, delay_ms: Option<u32>);
    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<(), Failure>;
    fn publish_many(&mut self, topic: &str, bodies: &[Vec<u8>]) -> Result<(), Failure>;
    /// `None` if the topic does not exist.
    fn topic_info(&mut self, topic: &str) -> Result<Option<TopicInfo>, Failure>;
    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<u32, Failure>;
    fn set_ready(&mut self, sub: u32, count: u32) -> Result<(), Failure>;
    fn unsubscribe(&mut self, sub: u32);
    fn finish(&mut self, sub: u32, id: &str) -> Result<(), Failure>;
    fn requeue(&mut self, sub: u32, id: &str) -> Result<(), Failure>;
    /// Whether the gateway has an auth server: commands then need AUTH.
    fn auth_required(&mut self) -> bool {
        false
    }
    /// Starts asking the auth server about `secret`; the answer comes as
    /// `Session::on_authenticated`.
    fn authenticate(&mut self, _secret: &[u8]) -> Result<(), Failure> {
        Err(Failure("ERR no auth server is configured".into()))
    }
}

/// Replies one event may queue before the rest of the pipeline waits for
/// the next event: the host refuses more than `limits.output_buffer` (4 MiB
/// by default) per event, and flushes (with backpressure) between events.
const OUT_SOFT_LIMIT: usize = 1 << 20;

/// The version reported by HELLO and INFO: the Redis protocol level this
/// plugin follows (clients gate features on it).
const REDIS_VERSION: &str = "7.2.0";

/// A SUBSCRIBE topic of this connection.
struct PubSub {
    topic: String,
    sub: u32,
}

/// A cached BRPOP subscription on a key's shared queue channel. Kept after
/// the pop with a ready count of 0, so the next BRPOP on the key costs no
/// subscribe; evicted (least recently used first) when slots run out.
struct Queue {
    key: String,
    sub: u32,
    last_used: u64,
}

/// What the broker's stats said about a topic, kept for the rest of one
/// batch of pipelined commands so PUBLISH/LPUSH replies cost one stats call
/// per topic per batch instead of one per command.
struct Snapshot {
    topic: String,
    /// Channels of the topic: PUBLISH's reply.
    channels: usize,
    /// Messages waiting for BRPOP: LPUSH's reply.
    waiting: u64,
    /// Whether a publish adds to `waiting` (the queue channel exists, or
    /// the topic has no channel and keeps messages itself).
    counts_pushes: bool,
}

/// Which command a run of publishes came from: it decides their replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Publish,
    Push,
}

/// Consecutive pipelined PUBLISHes (or one-value LPUSH/RPUSHes) to one
/// topic, published with one `publish-many` when the run ends: any other
/// command, another topic, `publish_batch` messages, `RUN_BYTES`, or the end
/// of the batch. Replies are written then, so their order is kept.
struct Run {
    kind: RunKind,
    topic: String,
    bodies: Vec<Vec<u8>>,
    bytes: usize,
}

/// Body bytes a run holds at most before it is published.
const RUN_BYTES: usize = 256 * 1024;

/// Snapshots kept at most; a batch touching more topics fetches again.
const MAX_SNAPSHOTS: usize = 64;

/// A BRPOP/BLPOP waiting for a message.
struct Blocked {
    /// Subscriptions with a ready count of 1, in the order of the keys.
    subs: Vec<u32>,
}

/// Per-connection state.
pub struct Session {
    settings: Settings,
    /// The broker's client id; names the pub/sub ephemeral channel.
    client_id: u64,
    /// Request bytes not yet run: an incomplete command, or commands
    /// pipelined behind a blocked BRPOP.
    pending: Vec<u8>,
    /// `pending` cannot parse before it holds this many bytes.
    need: usize,
    /// QUIT or a protocol error: every later event is ignored.
    closed: bool,
    /// CLIENT SETNAME / HELLO SETNAME.
    name: Option<Vec<u8>>,
    /// SUBSCRIBE topics, in subscription order; non-empty = subscriber mode.
    topics: Vec<PubSub>,
    /// Cached BRPOP subscriptions.
    queues: Vec<Queue>,
    /// Clock for the queue cache's LRU.
    tick: u64,
    blocked: Option<Blocked>,
    /// The protocol version in use: 2, or 3 after `HELLO 3`.
    proto: u8,
    /// Processing stopped at `OUT_SOFT_LIMIT` with commands left in
    /// `pending`; a 0 ms timer resumes it once the output is flushed (or
    /// the next `on-data`, which also comes after a flush).
    resume: bool,
    /// The host timer is armed (BRPOP timeout or resume), so disarming it
    /// needs a call; otherwise the call is skipped.
    timer_armed: bool,
    /// Topic stats fetched during the current batch; see `Snapshot`.
    snapshots: Vec<Snapshot>,
    /// Publishes waiting to go out together; see `Run`.
    run: Option<Run>,
    /// Replies of the current event, written once at its end.
    out: Vec<u8>,
    /// Authentication against the gateway's auth server.
    auth: AuthPhase,
}

impl Session {
    pub fn new(settings: Settings, client_id: u64) -> Session {
        Session {
            settings,
            client_id,
            pending: Vec::new(),
            need: 0,
            closed: false,
            name: None,
            topics: Vec::new(),
            queues: Vec::new(),
            tick: 0,
            blocked: None,
            proto: 2,
            resume: false,
            timer_armed: false,
            snapshots: Vec::new(),
            run: None,
            out: Vec::new(),
            auth: AuthPhase::Open,
        }
    }

    /// Bytes from the client (the magic first, as the start of the stream).
    pub fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        if self.closed {
            return;
        }
        if self.pending.is_empty() && !self.paused() {
            // The common case: parse straight from the chunk, keep the tail.
            let used = self.process(host, data);
            let rest = data.get(used..).unwrap_or_default();
            if !self.closed && !rest.is_empty() && self.buffer(host, rest) {
                self.reserve_need();
            }
        } else if self.buffer(host, data) && !self.paused() && self.pending.len() >= self.need {
            self.run_pending(host);
        }
        self.flush(host);
    }

    /// Messages delivered on `sub`.
    pub fn on_messages(&mut self, host: &mut impl Host, sub: u32, messages: Vec<Delivery>) {
        if let Some(ps) = self.topics.iter().find(|p| p.sub == sub) {
            for m in &messages {
                reply::push(&mut self.out, 3, self.proto);
                reply::bulk(&mut self.out, b"message");
                reply::bulk(&mut self.out, ps.topic.as_bytes());
                reply::bulk(&mut self.out, &m.body);
            }
            // FIN on delivery: Redis pub/sub has no acknowledgements.
            for m in &messages {
                let _ = host.finish(sub, &m.id);
            }
            self.flush(host);
            return;
        }
        let waiting = self.blocked.as_ref().is_some_and(|b| b.subs.contains(&sub));
        let key = self
            .queues
            .iter()
            .find(|q| q.sub == sub)
            .map(|q| q.key.clone());
        let mut rest = messages.iter();
        let first = if waiting { rest.next() } else { None };
        if let (Some(key), Some(first)) = (key, first) {
            reply::array(&mut self.out, 2);
            reply::bulk(&mut self.out, key.as_bytes());
            reply::bulk(&mut self.out, &first.body);
            let _ = host.finish(sub, &first.id);
            self.unblock(host);
        } else {
            // Not waiting (a late delivery): hand it back to the queue.
            let _ = host.set_ready(sub, 0);
        }
        for m in rest {
            let _ = host.requeue(sub, &m.id);
        }
        if !self.closed && !self.paused() && !self.pending.is_empty() {
            self.run_pending(host);
        }
        self.flush(host);
    }

    /// The timer fired: a BRPOP timed out, or a long pipeline resumes.
    pub fn on_timer(&mut self, host: &mut impl Host) {
        self.timer_armed = false;
        if self.closed {
            return;
        }
        if self.blocked.is_some() {
            reply::nil_array(&mut self.out, self.proto);
            self.unblock(host);
        } else if !self.resume {
            return;
        }
        if !self.pending.is_empty() && !self.paused() {
            self.run_pending(host);
        }
        self.flush(host);
    }

    /// Whether the connection is done (QUIT or a protocol error).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Appends to `pending` within `max_query_buffer`; past it, ends the
    /// connection with a protocol error and returns false.
    fn buffer(&mut self, host: &mut impl Host, data: &[u8]) -> bool {
        let total = self.pending.len().saturating_add(data.len());
        if total > self.settings.max_query_buffer {
            self.protocol_error(
                host,
                &format!(
                    "Protocol error: query buffer of {total} bytes is over the limit of {} (max_query_buffer)",
                    self.settings.max_query_buffer
                ),
            );
            return false;
        }
        self.pending.extend_from_slice(data);
        true
    }

    /// Reserves exactly what the incomplete command needs, so a large bulk
    /// arriving in chunks does not double the buffer past it.
    fn reserve_need(&mut self) {
        if self.need > self.pending.capacity() {
            self.pending.reserve_exact(self.need - self.pending.len());
        }
    }

    fn run_pending(&mut self, host: &mut impl Host) {
        self.resume = false;
        let buf = std::mem::take(&mut self.pending);
        let used = self.process(host, &buf);
        self.pending = buf;
        self.pending.drain(..used.min(self.pending.len()));
        if self.pending.is_empty() && self.pending.capacity() > 64 * 1024 {
            self.pending = Vec::new();
        }
        if !self.closed {
            self.reserve_need();
        }
    }

    /// Runs every complete command in `buf` until one blocks or closes;
    /// returns the bytes used.
    fn process(&mut self, host: &mut impl Host, buf: &[u8]) -> usize {
        let limits = self.settings.limits();
        let mut pos = 0;
        self.need = 0;
        self.snapshots.clear();
        while !self.closed && !self.paused() && pos < buf.len() {
            if self.out.len() >= OUT_SOFT_LIMIT {
                // Let the host flush (and the client read) before going on.
                self.resume = true;
                self.arm(host, Some(0));
                break;
            }
            let rest = buf.get(pos..).unwrap_or_default();
            match parse::parse(rest, limits) {
                Ok(Parsed::Multibulk(frame)) => {
                    let args: Vec<&[u8]> = frame
                        .args
                        .iter()
                        .map(|r| rest.get(r.clone()).unwrap_or_default())
                        .collect();
                    pos += frame.consumed;
                    if !args.is_empty() {
                        self.execute(host, &args);
                    }
                }
                Ok(Parsed::Inline { args, consumed }) => {
                    pos += consumed;
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    if !args.is_empty() {
                        self.execute(host, &args);
                    }
                }
                Ok(Parsed::Incomplete { at_least }) => {
                    if at_least > self.settings.max_query_buffer {
                        self.protocol_error(
                            host,
                            &format!(
                                "Protocol error: a command of {at_least} bytes is over the limit of {} (max_query_buffer)",
                                self.settings.max_query_buffer
                            ),
                        );
                    }
                    self.need = at_least;
                    break;
                }
                Err(e) => self.protocol_error(host, &e.to_string()),
            }
        }
        self.flush_run(host);
        pos
    }

    /// Replies `-ERR <text>` and closes, as Redis does on a bad request.
    fn protocol_error(&mut self, host: &mut impl Host, text: &str) {
        // The commands before the bad bytes ran, as in Redis.
        self.flush_run(host);
        reply::error(&mut self.out, &format!("ERR {text}"));
        self.closed = true;
        self.pending = Vec::new();
        self.flush(host);
        host.close();
    }

    fn flush(&mut self, host: &mut impl Host) {
        if self.out.is_empty() {
            return;
        }
        if !host.write(&self.out) && !self.closed {
            // The client is not reading its replies: give up on it.
            self.closed = true;
            host.close();
        }
        self.out.clear();
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
    }

    fn err(&mut self, text: &str) {
        reply::error(&mut self.out, text);
    }

    fn execute(&mut self, host: &mut impl Host, args: &[&[u8]]) {
        let Some(&name) = args.first() else { return };
        let cmd = Cmd::lookup(name);
        // Only a well-formed PUBLISH or one-value LPUSH/RPUSH may join the
        // run of publishes; anything else publishes it first, so replies
        // keep their order.
        let joins = args.len() == 3
            && matches!(cmd, Some(Cmd::Publish | Cmd::Lpush | Cmd::Rpush))
            && (self.proto == 3 || self.topics.is_empty());
        if !joins {
            self.flush_run(host);
        }
        let Some(cmd) = cmd else {
            let mut listed = String::new();
            for a in args.iter().skip(1) {
                if listed.len() >= 128 {
                    break;
                }
                let room = 128 - listed.len();
                listed.push('\'');
                listed.push_str(&reply::clip(&a[..a.len().min(room)]));
                listed.push_str("' ");
            }
            let text = format!(
                "ERR unknown command '{}', with args beginning with: {listed}",
                reply::clip(name)
            );
            return self.err(&text);
        };
        let arity = cmd.arity();
        let n = i32::try_from(args.len()).unwrap_or(i32::MAX);
        if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
            return self.wrong_args(cmd.name());
        }
        if self.auth == AuthPhase::Required && !matches!(cmd, Cmd::Auth | Cmd::Hello | Cmd::Quit) {
            return self.err("NOAUTH Authentication required.");
        }
        // RESP3 lets a subscribed connection run any command; RESP2 does not.
        if self.proto == 2 && !self.topics.is_empty() && !cmd.allowed_subscribed() {
            let text = format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                cmd.name()
            );
            return self.err(&text);
        }
        // The arity check above guarantees every `args[i]` indexed below.
        let args = &args[1..];
        match cmd {
            Cmd::Ping => self.ping(args),
            Cmd::Echo => reply::bulk(&mut self.out, args[0]),
            Cmd::Quit => {
                reply::simple(&mut self.out, "OK");
                self.closed = true;
                self.flush(host);
                host.close();
            }
            Cmd::Hello => self.hello(host, args),
            Cmd::Client => self.client(args),
            Cmd::Select => self.select(args[0]),
            Cmd::Auth => self.auth(host, args),
            Cmd::Command => reply::array(&mut self.out, 0),
            Cmd::Config => self.config(args[0]),
            Cmd::Info => self.info(),
            Cmd::Reset => {
                self.unsubscribe_all(host, false);
                self.name = None;
                self.proto = 2;
                reply::simple(&mut self.out, "RESET");
            }
            Cmd::Publish => self.enqueue(host, RunKind::Publish, args[0], args[1]),
            Cmd::Subscribe => self.subscribe(host, args),
            Cmd::Unsubscribe => {
                if args.is_empty() {
                    self.unsubscribe_all(host, true);
                } else {
                    for t in args {
                        self.unsubscribe_one(host, t);
                    }
                }
            }
            Cmd::Psubscribe => self
                .err("ERR PSUBSCRIBE is not supported by nsq-gateway: SUBSCRIBE to topics by name"),
            Cmd::Punsubscribe => {
                // There are never pattern subscriptions; answer like Redis.
                let count = self.topics.len();
                let patterns: Vec<&[u8]> = args.to_vec();
                if patterns.is_empty() {
                    self.confirm(b"punsubscribe", None, count);
                }
                for p in patterns {
                    self.confirm(b"punsubscribe", Some(p), count);
                }
            }
            Cmd::Lpush | Cmd::Rpush if args.len() == 2 => {
                self.enqueue(host, RunKind::Push, args[0], args[1])
            }
            Cmd::Lpush | Cmd::Rpush => self.push(host, args[0], &args[1..]),
            Cmd::Llen => self.llen(host, args[0]),
            Cmd::Brpop | Cmd::Blpop => self.block_pop(host, args),
        }
    }

    /// Sets or clears the host timer, skipping the call when clearing a
    /// timer that is not armed.
    fn arm(&mut self, host: &mut impl Host, delay: Option<u32>) {
        if delay.is_some() || self.timer_armed {
            host.set_timer(delay);
            self.timer_armed = delay.is_some();
        }
    }
}

const INVALID_TOPIC: &str =
    "ERR invalid topic name: NSQ topics are 1-64 characters of a-z A-Z 0-9 . _ -";

/// A key or channel name as an NSQ topic name, if it is UTF-8 (the broker
/// checks the rest).
fn topic_name(raw: &[u8]) -> Option<&str> {
    std::str::from_utf8(raw).ok().filter(|s| !s.is_empty())
}

/// Redis's rule for client names: printable ASCII without spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|b| (b'!'..=b'~').contains(b))
}

#[cfg(test)]
mod tests;

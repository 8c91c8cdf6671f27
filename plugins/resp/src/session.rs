//! One RESP connection's state machine, the plugin's `nsq_sdk::Protocol`:
//! buffers request bytes, runs each parsed command against the gateway
//! through the SDK's `Host` (publish, subscribe, FIN, timer, write), and
//! formats replies the way Redis 7 does, in RESP2 or (after `HELLO 3`)
//! RESP3. It is unit-tested natively against the SDK's recording host.
//! This file holds the state, the event entry points, request buffering and
//! the command dispatch; the command families live in the submodules
//! (`cmd` the command table, `connection` PING/HELLO/CLIENT/AUTH, `publish`
//! PUBLISH runs, `pubsub` SUBSCRIBE/UNSUBSCRIBE, `queue` LPUSH/BRPOP/LLEN
//! and the fetched-ahead messages, `server` SELECT/CONFIG/INFO).

use std::collections::VecDeque;

use nsq_sdk::{BrokerError, Config, ConnectInfo, Host, Message, Protocol, Subscription, describe};

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

/// A broker refusal as a RESP error reply: Redis's codes where clients
/// look for them (NOPERM, NOAUTH), the SDK's wording otherwise.
pub(crate) fn resp_error(e: &BrokerError) -> String {
    match e {
        BrokerError::Denied(why) | BrokerError::Unauthorized(why) => format!("NOPERM {why}"),
        BrokerError::AuthRequired => "NOAUTH Authentication required.".into(),
        e => format!("ERR {}", describe(e)),
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
    /// The topic, echoed in each pushed message.
    topic: String,
    /// Its subscription on the connection's ephemeral channel.
    sub: Subscription,
}

/// A cached BRPOP subscription on a key's shared queue channel. Kept after
/// the pop, so the next BRPOP on the key costs no subscribe; evicted (least
/// recently used first) when slots run out.
struct Queue {
    /// The Redis key, which is the topic.
    key: String,
    /// The subscription on `topic/queue_channel`.
    sub: Subscription,
    /// `tick` of its last BRPOP, for the LRU.
    last_used: u64,
    /// The ready count last set, so an unchanged one costs no call.
    ready: u32,
    /// Messages delivered but not popped yet: in flight on `sub`, popped
    /// by the next BRPOPs on the key, requeued when nothing pops them
    /// (`brpop_idle_ms`, another key blocks, close). Bounded by one
    /// delivery: it is empty whenever the connection blocks.
    ahead: VecDeque<Message>,
    /// Ids of popped messages, finished with one `finish-many` at the end
    /// of the event (or at `publish_batch` ids).
    popped: Vec<String>,
}

/// What the broker's stats said about a topic, kept for the rest of one
/// batch of pipelined commands so LPUSH replies cost one stats call per
/// topic per batch instead of one per command.
struct Snapshot {
    topic: String,
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
    /// Subscriptions of its keys (ready > 0), in the order of the keys.
    subs: Vec<Subscription>,
}

/// What the connection's single host timer is armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A blocked BRPOP's timeout.
    Block,
    /// A long pipeline continues after the host flushed (0 ms).
    Resume,
    /// Fetched-ahead messages go back if no BRPOP pops them by then.
    Idle,
}

/// One RESP connection.
pub struct Resp {
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
    /// Whether more request bytes follow the command being run: a BRPOP
    /// with commands pipelined behind it fetches ahead (`brpop_prefetch`).
    pipelined: bool,
    /// The protocol version in use: 2, or 3 after `HELLO 3`.
    proto: u8,
    /// Processing stopped at `OUT_SOFT_LIMIT` with commands left in
    /// `pending`; a 0 ms timer resumes it once the output is flushed (or
    /// the next `on-data`, which also comes after a flush).
    resume: bool,
    /// What the host timer is armed for (`None`: disarmed), so that
    /// keeping it as it is costs no call.
    timer: Option<Timer>,
    /// Topic stats fetched during the current batch; see `Snapshot`.
    snapshots: Vec<Snapshot>,
    /// Publishes waiting to go out together; see `Run`.
    run: Option<Run>,
    /// Replies of the current event, written once at its end.
    out: Vec<u8>,
    /// Authentication against the gateway's auth server.
    auth: AuthPhase,
}

impl Protocol for Resp {
    type Settings = Settings;

    fn settings(config: &mut Config<'_>) -> Settings {
        Settings::read(config)
    }

    fn connect(settings: Settings, info: &ConnectInfo, host: &mut impl Host) -> Resp {
        let mut resp = Resp {
            settings: settings.fit(&info.limits),
            client_id: info.client_id,
            pending: Vec::new(),
            need: 0,
            closed: false,
            name: None,
            topics: Vec::new(),
            queues: Vec::new(),
            tick: 0,
            blocked: None,
            pipelined: false,
            proto: 2,
            resume: false,
            timer: None,
            snapshots: Vec::new(),
            run: None,
            out: Vec::new(),
            auth: if host.auth_required() {
                AuthPhase::Required
            } else {
                AuthPhase::Open
            },
        };
        // The magic (`*<n>\r\n`) is the start of the first command.
        if !info.magic.is_empty() {
            resp.on_data(host, &info.magic);
        }
        resp
    }

    /// Bytes from the client (the magic first, as the start of the stream).
    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
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
        self.end_event(host);
    }

    /// Messages delivered on `sub`: pushes of a SUBSCRIBE, or what a
    /// blocked BRPOP waits for.
    fn on_messages(&mut self, host: &mut impl Host, sub: Subscription, messages: Vec<Message>) {
        if let Some(ps) = self.topics.iter().find(|p| p.sub == sub) {
            for m in &messages {
                reply::push(&mut self.out, 3, self.proto);
                reply::bulk(&mut self.out, b"message");
                reply::bulk(&mut self.out, ps.topic.as_bytes());
                reply::bulk(&mut self.out, &m.body);
            }
            // FIN on delivery: Redis pub/sub has no acknowledgements.
            let ids: Vec<String> = messages.into_iter().map(|m| m.id).collect();
            for chunk in ids.chunks(self.settings.publish_batch) {
                let _ = host.finish_many(sub, chunk);
            }
            self.flush(host);
            return;
        }
        self.delivered(host, sub, messages);
        if !self.closed && !self.paused() && !self.pending.is_empty() {
            self.run_pending(host);
        }
        self.end_event(host);
    }

    /// The timer fired: a BRPOP timed out, a long pipeline resumes, or
    /// fetched-ahead messages waited long enough.
    fn on_timer(&mut self, host: &mut impl Host) {
        self.timer = None;
        if self.closed {
            return;
        }
        let go_on = if self.blocked.is_some() {
            reply::nil_array(&mut self.out, self.proto);
            self.unblock();
            true
        } else if self.resume {
            true
        } else {
            // The idle timer: no BRPOP popped what is ahead.
            self.requeue_ahead(host, &[]);
            false
        };
        if go_on && !self.pending.is_empty() && !self.paused() {
            self.run_pending(host);
        }
        self.end_event(host);
    }

    fn on_authenticated(
        &mut self,
        host: &mut impl Host,
        answer: Result<nsq_sdk::Identity, nsq_sdk::AuthError>,
    ) {
        self.authenticated(host, answer.is_ok());
    }

    /// Messages fetched ahead go back to the queue now rather than at the
    /// message timeout.
    fn on_close(&mut self, host: &mut impl Host) {
        self.finish_popped(host);
        self.requeue_ahead(host, &[]);
    }
}

impl Resp {
    /// Whether the connection is done (QUIT or a protocol error).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The end of every event: acknowledges what was popped, pauses the
    /// queues nothing waits on, sets the timer for what is left, writes.
    fn end_event(&mut self, host: &mut impl Host) {
        self.finish_popped(host);
        if self.blocked.is_none() {
            for q in self.queues.iter_mut().filter(|q| q.ready > 0) {
                let _ = host.set_ready(q.sub, 0);
                q.ready = 0;
            }
        }
        let want = if self.closed {
            None
        } else if self.resume {
            Some(Timer::Resume)
        } else if self.blocked.is_some() {
            // Armed (or disarmed, blocking forever) by the BRPOP itself.
            self.timer
        } else if self.queues.iter().any(|q| !q.ahead.is_empty()) {
            Some(Timer::Idle)
        } else {
            None
        };
        if want != self.timer {
            host.set_timer(match want {
                None | Some(Timer::Block) => None,
                Some(Timer::Resume) => Some(0),
                Some(Timer::Idle) => Some(self.settings.brpop_idle_ms),
            });
            self.timer = want;
        }
        self.flush(host);
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
                // `end_event` arms the 0 ms timer.
                self.resume = true;
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
                    self.pipelined = pos < buf.len();
                    if !args.is_empty() {
                        self.execute(host, &args);
                    }
                }
                Ok(Parsed::Inline { args, consumed }) => {
                    pos += consumed;
                    self.pipelined = pos < buf.len();
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
        if host.write(&self.out).is_err() && !self.closed {
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

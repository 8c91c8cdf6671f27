//! LINE: a human-friendly text protocol for nsq-gateway, usable with `nc`.
//! One command per line in, one reply (or delivered message) per line out; the
//! parser is pure (`parse`) and the session only routes its results to the
//! broker through the SDK's `Host`. See plugins/README.md for the command
//! reference.

use nsq_sdk::{BrokerError, Config, ConnectInfo, Host, Message, Protocol, Subscription, describe};

mod parse;

use parse::{Command, Mode, escape, parse};

/// Default longest accepted line, overridable with `config.max_line_bytes`.
const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// Default ready count after SUB, overridable with `config.default_rdy`.
const DEFAULT_RDY: u32 = 1;

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
struct Sub {
    /// Handle from `subscribe`, passed to FIN/REQ/RDY.
    handle: Subscription,
    /// Topic name, echoed in each MSG line.
    topic: String,
    /// Whether the plugin or the client acknowledges.
    mode: Mode,
}

/// LINE's settings from gateway.yaml.
pub struct Settings {
    /// Longest line accepted (`max_line_bytes`, at least 64).
    max_line: usize,
    /// Ready count applied right after SUB (`default_rdy`).
    default_rdy: u32,
    /// Whether to greet a new connection (`greeting`).
    greeting: bool,
}

/// One LINE connection.
pub struct Line {
    /// Bytes of an incomplete line carried over between `on_data` calls.
    pending: Vec<u8>,
    /// Longest line accepted; beyond it the connection is closed with ERR.
    max_line: usize,
    /// Ready count applied right after SUB.
    default_rdy: u32,
    /// The gateway's `--max-rdy-count`, the bound of `RDY n`.
    max_rdy: u32,
    /// Most PUBs coalesced into one `publish-many` (the gateway's
    /// `limits.max_batch`).
    max_batch: usize,
    /// The subscription, once SUB succeeded.
    sub: Option<Sub>,
    /// Set once QUIT or a fatal error closed the connection; input is ignored.
    closed: bool,
    /// Topic of the consecutive PUBs gathered in `batch`.
    batch_topic: String,
    /// Bodies of consecutive PUBs to one topic within one `on_data` call,
    /// published with one `publish-many` (one host call, one topic lookup).
    batch: Vec<Vec<u8>>,
    /// Replies of the current event, written once at its end.
    out: Vec<u8>,
}

impl Protocol for Line {
    type Settings = Settings;

    fn settings(config: &mut Config<'_>) -> Settings {
        Settings {
            max_line: config.range("max_line_bytes", DEFAULT_MAX_LINE, 64, 64 << 20),
            default_rdy: config.get("default_rdy", DEFAULT_RDY),
            greeting: config.bool("greeting", true),
        }
    }

    fn connect(settings: Settings, info: &ConnectInfo, host: &mut impl Host) -> Self {
        if settings.greeting {
            let _ = host.write(b"OK LINE nsq-gateway, type HELP for commands\n");
        }
        let max_rdy = info.limits.max_rdy_count;
        Line {
            pending: Vec::new(),
            max_line: settings.max_line,
            default_rdy: settings.default_rdy.min(max_rdy),
            max_rdy,
            max_batch: usize::try_from(info.limits.max_batch).unwrap_or(1).max(1),
            sub: None,
            closed: false,
            batch_topic: String::new(),
            batch: Vec::new(),
            out: Vec::new(),
        }
    }

    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        if self.closed {
            return;
        }
        // Process complete lines straight from `data`, carrying over only
        // the tail, so a chunk with many lines is never copied.
        let mut rest = data;
        if !self.pending.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let mut line = std::mem::take(&mut self.pending);
                    line.extend_from_slice(&data[..nl]);
                    if line.len() > self.max_line {
                        return self.too_long(host);
                    }
                    self.handle_line(host, &line);
                    rest = &data[nl + 1..];
                }
                None => {
                    self.pending.extend_from_slice(data);
                    if self.pending.len() > self.max_line {
                        self.too_long(host);
                    }
                    return;
                }
            }
        }
        while !self.closed {
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    if nl > self.max_line {
                        return self.too_long(host);
                    }
                    self.handle_line(host, &rest[..nl]);
                    rest = &rest[nl + 1..];
                }
                None => {
                    if rest.len() > self.max_line {
                        return self.too_long(host);
                    }
                    self.pending.extend_from_slice(rest);
                    break;
                }
            }
        }
        self.flush_batch(host);
        self.flush(host);
        if self.closed {
            host.close();
        }
    }

    fn on_messages(&mut self, host: &mut impl Host, sub: Subscription, messages: Vec<Message>) {
        let Some(subscription) = self.sub.as_ref().filter(|x| x.handle == sub) else {
            return;
        };
        let mut out = std::mem::take(&mut self.out);
        out.reserve(messages.iter().map(|m| m.body.len() + 48).sum());
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
            let ids: Vec<String> = messages.into_iter().map(|m| m.id).collect();
            if let Err(e) = host.finish_many(sub, &ids) {
                out.extend_from_slice(
                    format!("ERR auto FIN failed: {}\n", line_error(&e)).as_bytes(),
                );
            }
        }
        self.out = out;
        self.flush(host);
    }
}

nsq_sdk::export!(Line);

impl Line {
    /// Writes out the accumulated replies of one event, if any.
    fn flush(&mut self, host: &mut impl Host) {
        if !self.out.is_empty() {
            let _ = host.write(&self.out);
            self.out.clear();
        }
    }

    /// Ends a connection whose client sent a line over the limit.
    fn too_long(&mut self, host: &mut impl Host) {
        self.flush_batch(host);
        let reply = format!("ERR line too long (max {} bytes), closing\n", self.max_line);
        self.out.extend_from_slice(reply.as_bytes());
        self.flush(host);
        self.closed = true;
        self.pending = Vec::new();
        host.close();
    }

    /// Parses one line and runs it against the broker, appending the reply.
    fn handle_line(&mut self, host: &mut impl Host, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let command = match parse(line) {
            Ok(c) => c,
            Err(reason) => {
                self.flush_batch(host);
                self.out
                    .extend_from_slice(format!("ERR {reason}\n").as_bytes());
                return;
            }
        };
        if let Command::Pub { topic, body } = command {
            if !self.batch.is_empty()
                && (self.batch_topic != topic || self.batch.len() >= self.max_batch)
            {
                self.flush_batch(host);
            }
            if self.batch.is_empty() {
                self.batch_topic.clear();
                self.batch_topic.push_str(topic);
            }
            self.batch.push(body);
            return;
        }
        self.flush_batch(host);
        match self.run(host, command) {
            Ok(text) => {
                self.out.extend_from_slice(text.as_bytes());
                self.out.push(b'\n');
            }
            Err(reason) => self
                .out
                .extend_from_slice(format!("ERR {reason}\n").as_bytes()),
        }
    }

    /// Publishes the gathered PUBs and appends one reply line per PUB, in order.
    fn flush_batch(&mut self, host: &mut impl Host) {
        if self.batch.is_empty() {
            return;
        }
        let bodies = std::mem::take(&mut self.batch);
        let result = if bodies.len() == 1 {
            host.publish(&self.batch_topic, &bodies[0])
        } else {
            host.publish_many(&self.batch_topic, &bodies)
        };
        match result {
            Ok(_) => {
                for _ in 0..bodies.len() {
                    self.out.extend_from_slice(b"OK\n");
                }
            }
            // A batch is all-or-nothing; if it was refused as a batch (too big
            // for this gateway's limits, one bad body), retry each PUB alone so
            // every line gets its own answer.
            Err(BrokerError::InvalidArgument(_) | BrokerError::PublishFailed(_))
                if bodies.len() > 1 =>
            {
                for body in &bodies {
                    match host.publish(&self.batch_topic, body) {
                        Ok(_) => self.out.extend_from_slice(b"OK\n"),
                        Err(e) => self
                            .out
                            .extend_from_slice(format!("ERR {}\n", line_error(&e)).as_bytes()),
                    }
                }
            }
            Err(e) => {
                let line = format!("ERR {}\n", line_error(&e));
                for _ in 0..bodies.len() {
                    self.out.extend_from_slice(line.as_bytes());
                }
            }
        }
        self.batch = bodies;
        self.batch.clear();
    }

    /// Executes a command; `Ok` carries the full reply line without its newline.
    fn run(&mut self, host: &mut impl Host, command: Command<'_>) -> Result<String, String> {
        let e = |e: BrokerError| line_error(&e);
        match command {
            Command::Pub { topic, body } => {
                host.publish(topic, &body).map_err(e)?;
                Ok("OK".into())
            }
            Command::Dpub {
                topic,
                delay_ms,
                body,
            } => {
                host.publish_deferred(topic, &body, delay_ms).map_err(e)?;
                Ok("OK".into())
            }
            Command::Sub {
                topic,
                channel,
                mode,
            } => {
                if self.sub.is_some() {
                    return Err("already subscribed (one SUB per connection)".into());
                }
                let handle = host.subscribe(topic, channel).map_err(e)?;
                if self.default_rdy > 0 {
                    host.set_ready(handle, self.default_rdy).map_err(e)?;
                }
                self.sub = Some(Sub {
                    handle,
                    topic: topic.to_string(),
                    mode,
                });
                let mode = if mode == Mode::Auto { "auto" } else { "manual" };
                Ok(format!(
                    "OK subscribed to {topic}/{channel} ({mode}, RDY {})",
                    self.default_rdy
                ))
            }
            Command::Rdy(n) => {
                let sub = self.sub.as_ref().ok_or("RDY needs a SUB first")?;
                if n > self.max_rdy {
                    return Err(format!("RDY {n} is over the maximum {}", self.max_rdy));
                }
                host.set_ready(sub.handle, n).map_err(e)?;
                Ok("OK".into())
            }
            Command::Fin(id) => {
                let sub = self.sub.as_ref().ok_or("FIN needs a SUB first")?;
                host.finish(sub.handle, id).map_err(e)?;
                Ok("OK".into())
            }
            Command::Req { id, delay_ms } => {
                let sub = self.sub.as_ref().ok_or("REQ needs a SUB first")?;
                host.requeue(sub.handle, id, delay_ms).map_err(e)?;
                Ok("OK".into())
            }
            Command::Touch(id) => {
                let sub = self.sub.as_ref().ok_or("TOUCH needs a SUB first")?;
                host.touch(sub.handle, id).map_err(e)?;
                Ok("OK".into())
            }
            Command::Stats(topic) => {
                let topics = host.stats(topic).map_err(e)?;
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
                self.closed = true;
                Ok("BYE".into())
            }
            Command::Help => Ok(format!("{HELP}OK")),
        }
    }
}

/// The SDK's wording of a broker error, with LINE's one exception: it has
/// no AUTH, so an auth requirement points elsewhere.
fn line_error(e: &BrokerError) -> String {
    match e {
        BrokerError::AuthRequired => {
            "an auth server is configured and LINE has no AUTH: use V2, RESP or STOMP".into()
        }
        e => describe(e),
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

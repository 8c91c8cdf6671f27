//! WEB: browsers as first-class nsq-gateway clients. A connection that starts
//! with `GET ` on port 4150 is HTTP/1.1: `GET /` serves the console page,
//! `GET /ws` upgrades to a WebSocket speaking the JSON vocabulary
//! (`socket.rs`), `GET /sse?topic=T[&channel=C]` streams messages as
//! Server-Sent Events (`stream.rs`); anything else gets a short 400, 404 or
//! 405. This file reads the request head (under a timeout), routes it,
//! checks the Origin and authenticates; the codecs (`http`, `ws`, `sse`,
//! `vocab`) are pure.

use nsq_sdk::{AuthError, Config, ConnectInfo, Host, Identity, Message, Protocol, Subscription};

pub mod base64;
pub mod http;
pub mod sha1;
pub mod sse;
pub mod vocab;
pub mod ws;

mod socket;
mod stream;

use http::Request;
use socket::Socket;
use stream::Stream;

/// The console page, served at `/`.
const CONSOLE: &str = include_str!("console.html");

/// WEB's settings from gateway.yaml (`config:`), all optional.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest WebSocket frame and reassembled message (`max_frame_bytes`).
    pub max_frame: usize,
    /// Origins a WebSocket may come from (`allowed_origins`, comma-separated,
    /// `*` for any); empty: only the request's own `Host`.
    pub origins: Vec<String>,
    /// Time to send a whole request head before the connection is dropped
    /// (`header_timeout_ms`), against slow-loris clients.
    pub header_timeout_ms: u32,
    /// Messages in flight per subscription unless `sub` says otherwise
    /// (`prefetch`).
    pub prefetch: u32,
    /// Subscriptions per WebSocket (`max_subscriptions`).
    pub max_subscriptions: usize,
    /// Interval of the SSE keep-alive comment (`sse_keepalive_ms`).
    pub keepalive_ms: u32,
    /// Most bytes one event may write: the gateway's `limits.output_buffer`
    /// (from `connect-info`, not from `config:`).
    pub output_buffer: usize,
}

/// Where a connection is in its life.
enum Phase {
    /// Reading the request head; `Web::buf` holds what arrived.
    Head,
    /// Waiting for the auth server's answer before serving `Route`.
    Authenticating(Route),
    /// An upgraded WebSocket.
    Socket(Box<Socket>),
    /// An endless event stream.
    Stream(Stream),
    /// A response was written and the connection is closing.
    Done,
}

/// What a valid request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Socket {
        accept: String,
    },
    Stream {
        topic: String,
        channel: Option<String>,
    },
}

/// One WEB connection.
pub struct Web {
    /// The settings, shared by every phase.
    settings: Settings,
    /// Unparsed bytes: the head while reading it, then whatever followed it
    /// until the route starts.
    buf: Vec<u8>,
    /// Where the connection is.
    phase: Phase,
    /// The broker's client id, part of generated ephemeral channel names.
    client_id: u64,
    /// The gateway's `--max-rdy-count`, the bound of `prefetch`.
    max_rdy: u32,
}

impl Protocol for Web {
    type Settings = Settings;

    fn settings(config: &mut Config<'_>) -> Settings {
        Settings {
            max_frame: config.range("max_frame_bytes", 1 << 20, 125, 64 << 20),
            origins: config.list("allowed_origins"),
            header_timeout_ms: config.range("header_timeout_ms", 10_000, 1, 3_600_000),
            prefetch: config.range("prefetch", 100, 1, vocab::MAX_PREFETCH),
            max_subscriptions: config.range("max_subscriptions", 16, 1, 1024),
            keepalive_ms: config.range("sse_keepalive_ms", sse::KEEPALIVE_MS, 10, 3_600_000),
            output_buffer: 4 << 20,
        }
    }

    fn connect(mut settings: Settings, info: &ConnectInfo, host: &mut impl Host) -> Self {
        host.set_timer(Some(settings.header_timeout_ms));
        let max_rdy = info.limits.max_rdy_count.max(1);
        settings.prefetch = settings.prefetch.min(max_rdy);
        let limit = usize::try_from(info.limits.max_subscriptions).unwrap_or(usize::MAX);
        settings.max_subscriptions = settings.max_subscriptions.min(limit).max(1);
        settings.output_buffer = usize::try_from(info.limits.output_buffer).unwrap_or(4 << 20);
        Web {
            settings,
            // The magic is the start of the request line.
            buf: info.magic.clone(),
            phase: Phase::Head,
            client_id: info.client_id,
            max_rdy,
        }
    }

    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        match &mut self.phase {
            Phase::Head => {
                self.buf.extend_from_slice(data);
                self.read_head(host);
            }
            Phase::Authenticating(_) => self.buf.extend_from_slice(data),
            Phase::Socket(s) => s.on_data(host, data),
            // A browser sends nothing on an event stream, and nothing after
            // a closing response matters.
            Phase::Stream(_) | Phase::Done => {}
        }
    }

    fn on_messages(&mut self, host: &mut impl Host, sub: Subscription, messages: Vec<Message>) {
        match &mut self.phase {
            Phase::Socket(s) => s.on_messages(host, sub, messages),
            Phase::Stream(s) => s.on_messages(host, messages),
            _ => {}
        }
    }

    fn on_timer(&mut self, host: &mut impl Host) {
        match &mut self.phase {
            Phase::Head => self.fail(host, 408, "request head not received in time"),
            Phase::Stream(s) => s.on_timer(host),
            Phase::Socket(s) => s.on_timer(host),
            _ => {}
        }
    }

    fn on_authenticated(&mut self, host: &mut impl Host, answer: Result<Identity, AuthError>) {
        let Phase::Authenticating(route) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        match answer {
            Ok(_) => self.start(host, route),
            Err(e) => self.fail(host, 401, nsq_sdk::describe_auth(e)),
        }
    }

    fn on_close(&mut self, host: &mut impl Host) {
        if let Phase::Socket(s) = &mut self.phase {
            s.on_close(host);
        }
    }
}

impl Web {
    fn read_head(&mut self, host: &mut impl Host) {
        let req = match http::parse_head(&self.buf) {
            Ok(None) => return,
            Ok(Some((req, n))) => {
                self.buf.drain(..n);
                req
            }
            Err(e) => return self.fail(host, e.status, e.text),
        };
        host.set_timer(None);
        if req.method != "GET" {
            return self.fail(host, 405, "only GET is served here");
        }
        let route = match req.path.as_str() {
            "/" | "/index.html" => {
                let page = http::response(200, "text/html; charset=utf-8", "", CONSOLE.as_bytes());
                return self.finish_with(host, &page);
            }
            "/ws" => {
                if !origin_allowed(&req, &self.settings.origins) {
                    return self.fail(host, 403, "Origin not allowed");
                }
                match http::websocket_accept(&req) {
                    Ok(accept) => Route::Socket { accept },
                    Err(e) => return self.fail(host, e.status, e.text),
                }
            }
            "/sse" => match req.param("topic") {
                Some(topic) if !topic.is_empty() => Route::Stream {
                    topic: topic.to_owned(),
                    channel: req
                        .param("channel")
                        .filter(|c| !c.is_empty())
                        .map(Into::into),
                },
                _ => return self.fail(host, 400, "missing ?topic="),
            },
            _ => return self.fail(host, 404, "try /, /ws or /sse?topic=T"),
        };
        if !host.auth_required() {
            return self.start(host, route);
        }
        let Some(secret) = secret(&req) else {
            return self.fail(host, 401, "send Authorization: Bearer <secret> or ?secret=");
        };
        match host.authenticate(&secret) {
            Ok(()) => self.phase = Phase::Authenticating(route),
            Err(e) => self.fail(host, 500, &nsq_sdk::describe(&e)),
        }
    }

    /// Serves a request that passed every check.
    fn start(&mut self, host: &mut impl Host, route: Route) {
        match route {
            Route::Socket { accept } => {
                if host.write(&http::upgrade_response(&accept)).is_err() {
                    return host.close();
                }
                let rest = std::mem::take(&mut self.buf);
                let mut socket = Socket::new(&self.settings, self.max_rdy, self.client_id);
                if !rest.is_empty() {
                    socket.on_data(host, &rest);
                }
                self.phase = Phase::Socket(Box::new(socket));
            }
            Route::Stream { topic, channel } => {
                let channel = channel.unwrap_or_else(|| ephemeral_channel(self.client_id, 0));
                match Stream::start(host, &self.settings, topic, channel) {
                    Ok(stream) => self.phase = Phase::Stream(stream),
                    Err((status, text)) => self.fail(host, status, &text),
                }
            }
        }
    }

    /// Answers with an error response and closes.
    fn fail(&mut self, host: &mut impl Host, status: u16, text: &str) {
        self.finish_with(host, &http::error_response(status, text));
    }

    fn finish_with(&mut self, host: &mut impl Host, response: &[u8]) {
        host.set_timer(None);
        let _ = host.write(response);
        host.close();
        self.phase = Phase::Done;
        self.buf = Vec::new();
    }
}

/// Cross-site WebSocket hijacking: a browser always sends `Origin`, and a
/// page on another site must not ride on this one's cookies or network
/// position. No `Origin` (a non-browser client) is allowed.
fn origin_allowed(req: &Request, allowed: &[String]) -> bool {
    let Some(origin) = req.header("origin") else {
        return true;
    };
    if allowed.is_empty() {
        let host = req.header("host").unwrap_or("");
        let bare = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return !host.is_empty() && bare.is_some_and(|b| b.eq_ignore_ascii_case(host));
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

/// The secret from `Authorization: Bearer <secret>`, else `?secret=`.
fn secret(req: &Request) -> Option<String> {
    let bearer = req.header("authorization").and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_owned())
    });
    bearer
        .or_else(|| req.param("secret").map(Into::into))
        .filter(|s| !s.is_empty())
}

/// A channel of its own for a client that named none, gone with it
/// (`#ephemeral`): `web-<16 random hex digits>#ephemeral`, 30 bytes. Random
/// (from WASI's random source, through `RandomState`), so no other client
/// can guess the name and join the channel to take its messages.
fn ephemeral_channel(client_id: u64, n: usize) -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one((client_id, n));
    format!("web-{random:016x}#ephemeral")
}

nsq_sdk::export!(Web);

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

//! The WebSocket session: frames in through `ws::Decoder`, one JSON request
//! per text (or UTF-8 binary) message through `vocab`, replies and
//! deliveries out as text frames, written once per event. Flow control is
//! the broker's: each subscription's ready count is its `prefetch`, and the
//! gateway reads nothing more while our output is unsent.

use std::collections::BTreeMap;

use nsq_sdk::{Host, Message, Subscription, describe};
use serde_json::{Map, Value, json};

use crate::vocab::{self, Ack, Delivery, Request};
use crate::ws::{self, Decoder, Event, Opcode, close};
use crate::{Settings, ephemeral_channel};

/// After a close frame of our own (a violation), how long the client may go
/// on sending (discarded) before the connection is dropped. Closing a socket
/// with unread input makes the kernel send a reset, which can overtake the
/// close frame; reading a little longer lets the client see its close code.
const CLOSE_LINGER_MS: u32 = 1000;

/// One subscription of this socket.
struct Sub {
    /// The broker's handle.
    handle: Subscription,
    /// Echoed in each delivery, so a client with several subscriptions
    /// knows where a message came from.
    topic: String,
    channel: String,
    /// Who acknowledges its messages.
    ack: Ack,
}

/// An upgraded connection.
pub struct Socket {
    /// Reassembles messages, holding a fragmented one.
    decoder: Decoder,
    /// Bytes of an incomplete frame (at most a header and `max_frame`).
    buf: Vec<u8>,
    /// Frames to send at the end of the current event.
    out: Vec<u8>,
    /// The subscriptions, at most `max_subscriptions`.
    subs: Vec<Sub>,
    /// Messages of manual subscriptions awaiting `fin` / `req`, by id. At
    /// most the sum of their prefetch counts: the broker delivers no more.
    inflight: BTreeMap<String, Subscription>,
    /// Most entries `inflight` may hold (subscriptions times `max_rdy`);
    /// past it, stale entries of timed-out messages are dropped.
    max_inflight: usize,
    /// Default ready count per subscription.
    prefetch: u32,
    /// Most bytes one event may write (the gateway's `limits.output_buffer`);
    /// deliveries past it are requeued for the next event.
    output_buffer: usize,
    max_subscriptions: usize,
    /// The broker client id, for ephemeral channel names.
    client_id: u64,
    /// Ephemeral channels made so far, so each gets its own name.
    ephemerals: usize,
    /// Set once a close frame went out; nothing more is read or sent.
    closing: bool,
}

impl Socket {
    pub fn new(settings: &Settings, max_rdy: u32, client_id: u64) -> Socket {
        Socket {
            decoder: Decoder::new(settings.max_frame),
            buf: Vec::new(),
            out: Vec::new(),
            subs: Vec::new(),
            inflight: BTreeMap::new(),
            max_inflight: settings.max_subscriptions * max_rdy as usize,
            prefetch: settings.prefetch,
            output_buffer: settings.output_buffer,
            max_subscriptions: settings.max_subscriptions,
            client_id,
            ephemerals: 0,
            closing: false,
        }
    }

    pub fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        if self.closing {
            return;
        }
        // Parse straight from `data` when nothing is pending, so a chunk of
        // many frames is never copied; keep only an incomplete tail.
        let mut pending = std::mem::take(&mut self.buf);
        let input: &[u8] = if pending.is_empty() {
            data
        } else {
            pending.extend_from_slice(data);
            &pending
        };
        let mut at = 0;
        while !self.closing {
            match self.decoder.next(&input[at..]) {
                Ok((event, n)) => {
                    if n == 0 {
                        break;
                    }
                    at += n;
                    if let Some(event) = event {
                        self.on_event(host, event);
                    }
                }
                Err(e) => {
                    ws::encode_close(e.code, e.reason, &mut self.out);
                    self.closing = true;
                    host.set_timer(Some(CLOSE_LINGER_MS));
                    break;
                }
            }
        }
        self.buf = if self.closing {
            Vec::new()
        } else {
            input[at..].to_vec()
        };
        self.flush(host);
    }

    fn on_event(&mut self, host: &mut impl Host, event: Event) {
        match event {
            Event::Text(text) => self.on_request(host, &text),
            Event::Binary(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.on_request(host, text),
                Err(_) => self.reply(vocab::error("a binary message must hold UTF-8 JSON", None)),
            },
            Event::Ping(payload) => ws::encode(Opcode::Pong, &payload, &mut self.out),
            Event::Pong(_) => {}
            // Echo the client's code (RFC 6455 5.5.1), then hang up: the
            // client sends nothing after its close frame.
            Event::Close(code, _) => {
                ws::encode_close(code.unwrap_or(close::NORMAL), "", &mut self.out);
                self.closing = true;
                self.flush(host);
                host.close();
            }
        }
    }

    fn on_request(&mut self, host: &mut impl Host, text: &str) {
        let env = match vocab::parse(text) {
            Ok(env) => env,
            Err((e, reference)) => return self.reply(vocab::error(&e, reference.as_ref())),
        };
        let reference = env.reference.as_ref();
        let answer = match env.request {
            Request::Pub { topic, body } => host
                .publish(&topic, &body)
                .map(|n| fields(json!({ "channels": n })))
                .map_err(|e| describe(&e)),
            Request::Sub {
                topic,
                channel,
                ack,
                prefetch,
            } => self.subscribe(host, topic, channel, ack, prefetch),
            Request::Fin { id } => self.ack(host, &id, None),
            Request::Req { id, delay_ms } => self.ack(host, &id, Some(delay_ms)),
            Request::Stats { topic } => host
                .stats(topic.as_deref())
                .map(|t| fields(json!({ "topics": stats_json(&t) })))
                .map_err(|e| describe(&e)),
        };
        self.reply(match answer {
            Ok(f) => vocab::ok(f, reference),
            Err(e) => vocab::error(&e, reference),
        });
    }

    fn subscribe(
        &mut self,
        host: &mut impl Host,
        topic: String,
        channel: Option<String>,
        ack: Ack,
        prefetch: Option<u32>,
    ) -> Result<Map<String, Value>, String> {
        if self.subs.len() >= self.max_subscriptions {
            return Err(format!(
                "too many subscriptions (at most {})",
                self.max_subscriptions
            ));
        }
        let channel = channel.unwrap_or_else(|| {
            self.ephemerals += 1;
            ephemeral_channel(self.client_id, self.ephemerals)
        });
        let handle = host.subscribe(&topic, &channel).map_err(|e| describe(&e))?;
        let ready = prefetch.unwrap_or(self.prefetch);
        if let Err(e) = host.set_ready(handle, ready) {
            let _ = host.unsubscribe(handle);
            return Err(describe(&e));
        }
        let reply = fields(json!({ "topic": topic, "channel": channel, "prefetch": ready }));
        self.subs.push(Sub {
            handle,
            topic,
            channel,
            ack,
        });
        Ok(reply)
    }

    /// `fin` (no delay) or `req` of a manual subscription's message.
    fn ack(
        &mut self,
        host: &mut impl Host,
        id: &str,
        requeue: Option<u32>,
    ) -> Result<Map<String, Value>, String> {
        let Some(sub) = self.inflight.remove(id) else {
            return Err(format!(
                "message {id} is not in flight on a manual subscription"
            ));
        };
        match requeue {
            None => host.finish(sub, id),
            Some(delay) => host.requeue(sub, id, delay),
        }
        .map(|()| Map::new())
        .map_err(|e| describe(&e))
    }

    pub fn on_messages(&mut self, host: &mut impl Host, sub: Subscription, messages: Vec<Message>) {
        if self.closing {
            return;
        }
        let Some(s) = self.subs.iter().find(|s| s.handle == sub) else {
            return;
        };
        let mut auto = Vec::new();
        let mut later = Vec::new();
        let mut json = Vec::new();
        for m in messages {
            json.clear();
            vocab::write_delivery(
                &Delivery {
                    topic: &s.topic,
                    channel: &s.channel,
                    id: &m.id,
                    attempts: m.attempts,
                    timestamp: m.timestamp,
                    body: &m.body,
                },
                &mut json,
            );
            // A frame header is at most 10 bytes.
            if !later.is_empty() || self.out.len() + json.len() + 10 > self.output_buffer {
                later.push(m.id);
                continue;
            }
            ws::encode(Opcode::Text, &json, &mut self.out);
            match s.ack {
                Ack::Auto => auto.push(m.id),
                Ack::Manual => {
                    if self.inflight.len() >= self.max_inflight {
                        self.inflight.pop_first();
                    }
                    self.inflight.insert(m.id, sub);
                }
            }
        }
        // FIN only what is queued for the client: if the write is refused
        // the connection ends and the broker redelivers them elsewhere.
        if self.flush(host) {
            if !auto.is_empty() {
                let _ = host.finish_many(sub, &auto);
            }
            if !later.is_empty() {
                let _ = host.requeue_many(sub, &later, 0);
            }
        }
    }

    fn reply(&mut self, text: String) {
        ws::encode(Opcode::Text, text.as_bytes(), &mut self.out);
    }

    /// The connection ends without a close handshake (gateway shutdown, or
    /// the client hung up): say 1001 "going away" if the socket is open.
    pub fn on_close(&mut self, host: &mut impl Host) {
        if !self.closing {
            self.closing = true;
            ws::encode_close(close::GOING_AWAY, "server closing", &mut self.out);
            self.flush(host);
        }
    }

    /// The linger after our close frame is over.
    pub fn on_timer(&mut self, host: &mut impl Host) {
        if self.closing {
            host.close();
        }
    }

    /// Writes the pending frames; false (and closed) if the host refused.
    fn flush(&mut self, host: &mut impl Host) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let out = std::mem::take(&mut self.out);
        if host.write(&out).is_err() {
            self.closing = true;
            host.close();
            return false;
        }
        true
    }
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The `stats` reply's topics, as the console page shows them.
fn stats_json(topics: &[nsq_sdk::TopicStats]) -> Value {
    Value::Array(
        topics
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "depth": t.depth,
                    "message_count": t.message_count,
                    "paused": t.paused,
                    "channels": t.channels.iter().map(|c| json!({
                        "name": c.name,
                        "depth": c.depth,
                        "in_flight": c.in_flight,
                        "deferred": c.deferred,
                        "message_count": c.message_count,
                        "requeue_count": c.requeue_count,
                        "timeout_count": c.timeout_count,
                        "clients": c.clients,
                        "paused": c.paused,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

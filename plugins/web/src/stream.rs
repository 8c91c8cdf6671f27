//! The Server-Sent Events session behind `GET /sse?topic=T[&channel=C]`: one
//! subscription, each message written as an event and FINed once queued for
//! the client, and a comment line on a timer so idle streams stay open.
//! When the client goes away the gateway drops the subscription, and an
//! ephemeral channel with it.

use nsq_sdk::{BrokerError, Host, Message, describe};

use crate::{Settings, http, sse};

/// An open event stream.
pub struct Stream {
    /// The one subscription, FINed against.
    sub: nsq_sdk::Subscription,
    /// Interval of the keep-alive comment.
    keepalive_ms: u32,
    /// Most bytes one event may write; messages past it are requeued.
    output_buffer: usize,
    /// Set once a write was refused; the connection is closing.
    closing: bool,
}

impl Stream {
    /// Subscribes and writes the response head. An error is the status and
    /// text of the response to send instead.
    pub fn start(
        host: &mut impl Host,
        settings: &Settings,
        topic: String,
        channel: String,
    ) -> Result<Stream, (u16, String)> {
        let sub = host
            .subscribe(&topic, &channel)
            .map_err(|e| (status(&e), describe(&e)))?;
        if let Err(e) = host.set_ready(sub, settings.prefetch) {
            let _ = host.unsubscribe(sub);
            return Err((status(&e), describe(&e)));
        }
        let mut head = http::sse_head().to_vec();
        // A first comment, so the browser's `open` fires at once.
        head.extend_from_slice(sse::KEEPALIVE);
        let mut stream = Stream {
            sub,
            keepalive_ms: settings.keepalive_ms,
            output_buffer: settings.output_buffer,
            closing: false,
        };
        stream.write(host, &head);
        host.set_timer(Some(stream.keepalive_ms));
        Ok(stream)
    }

    pub fn on_messages(&mut self, host: &mut impl Host, messages: Vec<Message>) {
        if self.closing {
            return;
        }
        let mut out = Vec::new();
        let mut sent = Vec::with_capacity(messages.len());
        let mut later = Vec::new();
        for m in &messages {
            let before = out.len();
            sse::encode_event(&m.id, &m.body, &mut out);
            if !later.is_empty() || out.len() > self.output_buffer {
                out.truncate(before);
                later.push(m.id.clone());
            } else {
                sent.push(m.id.clone());
            }
        }
        if self.write(host, &out) {
            let _ = host.finish_many(self.sub, &sent);
            if !later.is_empty() {
                let _ = host.requeue_many(self.sub, &later, 0);
            }
        }
    }

    /// The keep-alive comment, then the timer again.
    pub fn on_timer(&mut self, host: &mut impl Host) {
        if self.write(host, sse::KEEPALIVE) {
            host.set_timer(Some(self.keepalive_ms));
        }
    }

    fn write(&mut self, host: &mut impl Host, bytes: &[u8]) -> bool {
        if self.closing || host.write(bytes).is_err() {
            self.closing = true;
            host.close();
            return false;
        }
        true
    }
}

/// The HTTP status for a refused subscription.
fn status(e: &BrokerError) -> u16 {
    match e {
        BrokerError::InvalidTopicName | BrokerError::InvalidChannelName => 400,
        BrokerError::Denied(_) | BrokerError::Unauthorized(_) | BrokerError::AuthRequired => 403,
        _ => 503,
    }
}

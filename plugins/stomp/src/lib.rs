//! STOMP 1.2 (and 1.1) for nsq-gateway as a WebAssembly guest. The frame
//! codec (`frame`), the protocol rules (`rules`) and the per-connection
//! session (`session`: subscriptions, unacknowledged messages, transactions,
//! heart-beats) are plain Rust, tested natively; this file is the guest glue:
//! the WIT bindings, the session's `Host` over the `connection` and `broker`
//! imports, and the `tcp-handler` export feeding each event to the
//! connection's session (one instance per connection, so it lives in a
//! thread-local). See plugins/stomp/README.md for the mapping and the limits.

mod frame;
mod rules;
mod session;

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

use session::{Delivery, Host, Session};

thread_local! {
    static STATE: RefCell<Session> = RefCell::new(Session::new());
}

/// The imports, as the session's `Host`.
struct Imports;

impl Host for Imports {
    fn write(&mut self, data: &[u8]) -> bool {
        connection::write(data).is_ok()
    }

    fn close(&mut self) {
        connection::close();
    }

    fn set_timer(&mut self, delay_ms: Option<u32>) {
        connection::set_timer(delay_ms);
    }

    fn now_ms(&mut self) -> u64 {
        connection::now_ms()
    }

    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<(), String> {
        broker::publish(topic, body)
            .map(drop)
            .map_err(|e| describe(&e))
    }

    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<u32, String> {
        broker::subscribe(topic, channel).map_err(|e| describe(&e))
    }

    fn set_ready(&mut self, sub: u32, count: u32) -> Result<(), String> {
        broker::set_ready(sub, count).map_err(|e| describe(&e))
    }

    fn unsubscribe(&mut self, sub: u32) {
        let _ = broker::unsubscribe(sub);
    }

    fn finish(&mut self, sub: u32, id: &str) -> Result<(), String> {
        broker::finish(sub, id).map_err(|e| describe(&e))
    }

    fn requeue(&mut self, sub: u32, id: &str, delay_ms: u32) -> Result<(), String> {
        broker::requeue(sub, id, delay_ms).map_err(|e| describe(&e))
    }

    fn auth_required(&mut self) -> bool {
        broker::auth_required()
    }

    fn authenticate(&mut self, secret: &str) -> Result<(), String> {
        broker::authenticate(secret).map_err(|e| describe(&e))
    }
}

struct Stomp;

impl Guest for Stomp {
    /// Interim 0.2.0 shim until the SDK port: accepts any config.
    fn validate_config(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn on_connect(info: ConnectInfo) {
        STATE.with_borrow_mut(|s| {
            s.on_connect(&mut Imports, &info.config, info.client_id, &info.magic)
        })
    }

    fn on_data(data: Vec<u8>) {
        STATE.with_borrow_mut(|s| s.on_data(&mut Imports, data))
    }

    fn on_messages(handle: u32, messages: Vec<Message>) {
        let deliveries = messages
            .into_iter()
            .map(|m| Delivery {
                id: m.id,
                timestamp: m.timestamp,
                attempts: m.attempts,
                body: m.body,
            })
            .collect();
        STATE.with_borrow_mut(|s| s.on_messages(&mut Imports, handle, deliveries))
    }

    fn on_timer() {
        STATE.with_borrow_mut(|s| s.on_timer(&mut Imports))
    }

    fn on_authenticated(
        result: Result<nsq::gateway::types::Identity, nsq::gateway::types::AuthError>,
    ) {
        STATE.with_borrow_mut(|s| s.on_authenticated(&mut Imports, result.is_ok()))
    }

    fn on_close() {}
}

export!(Stomp);

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
        BrokerError::AuthRequired => "not authenticated".into(),
        BrokerError::Unauthorized(why) => format!("unauthorized: {why}"),
        BrokerError::AuthDisabled => "no auth server is configured".into(),
    }
}

//! The WebAssembly side: the WIT bindings, a `session::Host` over the
//! `connection` and `broker` imports, and the `tcp-handler` export, which
//! feeds each event to the connection's `Session` (one instance per
//! connection, so the session lives in a thread-local).

use std::cell::RefCell;

use crate::session::{Delivery, Failure, Host, Session, TopicInfo};
use crate::settings::Settings;

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
use nsq::gateway::types::{BrokerError, ConnectInfo, Message};
use nsq::gateway::{broker, connection};

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// The imports, as the session's `Host`.
struct Imports;

/// Words a broker error as a RESP error reply.
fn failure(e: BrokerError) -> Failure {
    Failure(match e {
        BrokerError::InvalidTopicName => {
            "ERR invalid topic name: NSQ topics are 1-64 characters of a-z A-Z 0-9 . _ -".into()
        }
        BrokerError::InvalidChannelName => {
            "ERR invalid channel name: NSQ channels are 1-64 characters of a-z A-Z 0-9 . _ -".into()
        }
        BrokerError::TopicNotFound => "ERR no such topic".into(),
        BrokerError::ChannelNotFound => "ERR no such channel".into(),
        BrokerError::PublishFailed(why) => format!("ERR publish failed: {why}"),
        BrokerError::NotInFlight => "ERR message is not in flight".into(),
        BrokerError::TooManyConsumers => "ERR too many consumers on this channel".into(),
        BrokerError::Denied(why) => format!("NOPERM {why}"),
        BrokerError::UnknownSubscription => "ERR unknown subscription".into(),
        BrokerError::InvalidArgument(why) => format!("ERR {why}"),
        BrokerError::Exiting => "ERR the gateway is shutting down".into(),
        BrokerError::AuthRequired => "NOAUTH Authentication required.".into(),
        BrokerError::Unauthorized(why) => format!("NOPERM {why}"),
        BrokerError::AuthDisabled => "ERR no auth server is configured".into(),
    })
}

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

    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<(), Failure> {
        broker::publish(topic, body).map(drop).map_err(failure)
    }

    fn publish_many(&mut self, topic: &str, bodies: &[Vec<u8>]) -> Result<(), Failure> {
        broker::publish_many(topic, bodies)
            .map(drop)
            .map_err(failure)
    }

    fn topic_info(&mut self, topic: &str) -> Result<Option<TopicInfo>, Failure> {
        let stats = broker::stats(Some(topic)).map_err(failure)?;
        Ok(stats
            .into_iter()
            .find(|t| t.name == topic)
            .map(|t| TopicInfo {
                depth: t.depth,
                channels: t.channels.into_iter().map(|c| (c.name, c.depth)).collect(),
            }))
    }

    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<u32, Failure> {
        broker::subscribe(topic, channel).map_err(failure)
    }

    fn set_ready(&mut self, sub: u32, count: u32) -> Result<(), Failure> {
        broker::set_ready(sub, count).map_err(failure)
    }

    fn unsubscribe(&mut self, sub: u32) {
        let _ = broker::unsubscribe(sub);
    }

    fn finish(&mut self, sub: u32, id: &str) -> Result<(), Failure> {
        broker::finish(sub, id).map_err(failure)
    }

    fn requeue(&mut self, sub: u32, id: &str) -> Result<(), Failure> {
        broker::requeue(sub, id, 0).map_err(failure)
    }

    fn auth_required(&mut self) -> bool {
        broker::auth_required()
    }

    fn authenticate(&mut self, secret: &[u8]) -> Result<(), Failure> {
        broker::authenticate(&String::from_utf8_lossy(secret)).map_err(failure)
    }
}

/// Runs `f` on the connection's session, if `on-connect` made one.
fn with_session(f: impl FnOnce(&mut Session)) {
    SESSION.with_borrow_mut(|s| {
        if let Some(session) = s.as_mut() {
            f(session);
        }
    });
}

struct Resp;

impl Guest for Resp {
    /// Interim 0.2.0 shim until the SDK port: accepts any config.
    fn validate_config(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn on_connect(info: ConnectInfo) {
        let mut session = Session::new(Settings::from_pairs(&info.config), info.client_id);
        if Imports.auth_required() {
            session.require_auth();
        }
        // The magic (`*<n>\r\n`) is the start of the first command.
        session.on_data(&mut Imports, &info.magic);
        SESSION.set(Some(session));
    }

    fn on_data(data: Vec<u8>) {
        with_session(|s| s.on_data(&mut Imports, &data));
    }

    fn on_messages(sub: u32, messages: Vec<Message>) {
        let deliveries = messages
            .into_iter()
            .map(|m| Delivery {
                id: m.id,
                body: m.body,
            })
            .collect();
        with_session(|s| s.on_messages(&mut Imports, sub, deliveries));
    }

    fn on_timer() {
        with_session(|s| s.on_timer(&mut Imports));
    }

    fn on_authenticated(
        result: Result<nsq::gateway::types::Identity, nsq::gateway::types::AuthError>,
    ) {
        with_session(|s| s.on_authenticated(&mut Imports, result.is_ok()));
    }

    fn on_close() {
        SESSION.set(None);
    }
}

export!(Resp);

//! Test plugin that, when a line says `flood`, publishes to a topic outside its
//! ACL in a loop, ignoring the `denied` errors; any other chunk is published
//! to topic `allowed` and answered `OK`/`ERR`. Proves a flood of denied calls
//! ends only its own connection.

wit_bindgen::generate!({ path: "../../../wit", world: "plugin" });

use exports::nsq::gateway::tcp_handler::Guest;
use nsq::gateway::types::{BrokerError, ConnectInfo, Message};
use nsq::gateway::{broker, connection};

struct Acl;

impl Guest for Acl {
    fn on_connect(_info: ConnectInfo) {}

    fn on_data(data: Vec<u8>) {
        if data.windows(5).any(|w| w == b"flood") {
            for _ in 0..1_000_000 {
                let _ = broker::publish("forbidden", b"x");
            }
            let _ = connection::write(b"survived\n");
            return;
        }
        if data.windows(6).any(|w| w == b"denied") {
            let reply: &[u8] = match broker::publish("forbidden", b"x") {
                Err(BrokerError::Denied(_)) => b"DENIED\n",
                _ => b"UNEXPECTED\n",
            };
            let _ = connection::write(reply);
            return;
        }
        let reply: &[u8] = match broker::publish("allowed", &data) {
            Ok(()) => b"OK\n",
            Err(_) => b"ERR\n",
        };
        let _ = connection::write(reply);
    }

    fn on_messages(_sub: u32, _messages: Vec<Message>) {}
    fn on_timer() {}
    fn on_authenticated(
        _result: Result<nsq::gateway::types::Identity, nsq::gateway::types::AuthError>,
    ) {
    }
    fn on_close() {}
}

export!(Acl);

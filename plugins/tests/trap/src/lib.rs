//! Test plugin that panics (a guest trap) when a line says `panic`, and
//! otherwise echoes each chunk; proves a trap ends only its own connection.

wit_bindgen::generate!({ path: "../../../wit", world: "plugin" });

use exports::nsq::gateway::tcp_handler::Guest;
use nsq::gateway::connection;
use nsq::gateway::types::{ConnectInfo, Message};

struct Trap;

impl Guest for Trap {
    fn on_connect(_info: ConnectInfo) {}

    fn on_data(data: Vec<u8>) {
        if data.windows(5).any(|w| w == b"panic") {
            panic!("test-trap was asked to panic");
        }
        let _ = connection::write(&data);
    }

    fn on_messages(_sub: u32, _messages: Vec<Message>) {}
    fn on_timer() {}
    fn on_authenticated(
        _result: Result<nsq::gateway::types::Identity, nsq::gateway::types::AuthError>,
    ) {
    }
    fn on_close() {}
}

export!(Trap);

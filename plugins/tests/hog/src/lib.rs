//! Test plugin that allocates without bound when a line says `hog`, and
//! otherwise echoes each chunk; proves the memory limit ends only its own
//! connection.

wit_bindgen::generate!({ path: "../../../wit", world: "plugin" });

use exports::nsq::gateway::tcp_handler::Guest;
use nsq::gateway::connection;
use nsq::gateway::types::{ConnectInfo, Message};

struct Hog;

impl Guest for Hog {
    fn on_connect(_info: ConnectInfo) {}

    fn on_data(data: Vec<u8>) {
        if data.windows(3).any(|w| w == b"hog") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
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

export!(Hog);

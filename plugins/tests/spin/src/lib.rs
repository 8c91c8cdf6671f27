//! Test plugin that loops forever when a line says `spin`, and otherwise
//! echoes each chunk; proves the per-call CPU deadline ends only its own
//! connection.

wit_bindgen::generate!({ path: "../../../wit", world: "plugin" });

use exports::nsq::gateway::tcp_handler::Guest;
use nsq::gateway::connection;
use nsq::gateway::types::{ConnectInfo, Message};

struct Spin;

impl Guest for Spin {
    fn on_connect(_info: ConnectInfo) {}

    fn on_data(data: Vec<u8>) {
        if data.windows(4).any(|w| w == b"spin") {
            let mut x: u64 = 1;
            loop {
                // black_box keeps the optimiser from proving the loop pure.
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
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

export!(Spin);

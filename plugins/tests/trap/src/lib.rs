//! Test plugin that panics (a guest trap) when a line says `panic`, and
//! otherwise echoes each chunk; proves a trap ends only its own connection.
use nsq_sdk::{Config, ConnectInfo, Host, Protocol};

/// One connection (no state).
struct Trap;

impl Protocol for Trap {
    type Settings = ();

    fn settings(_config: &mut Config<'_>) {}

    fn connect(_settings: (), _info: &ConnectInfo, _host: &mut impl Host) -> Self {
        Trap
    }

    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        if data.windows(5).any(|w| w == b"panic") {
            panic!("test-trap was asked to panic");
        }
        let _ = host.write(data);
    }
}

nsq_sdk::export!(Trap);

//! Test plugin that allocates without bound when a line says `hog`, and
//! otherwise echoes each chunk; proves the memory limit ends only its own
//! connection.
use nsq_sdk::{Config, ConnectInfo, Host, Protocol};

/// One connection (no state).
struct Hog;

impl Protocol for Hog {
    type Settings = ();

    fn settings(_config: &mut Config<'_>) {}

    fn connect(_settings: (), _info: &ConnectInfo, _host: &mut impl Host) -> Self {
        Hog
    }

    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        if data.windows(3).any(|w| w == b"hog") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        let _ = host.write(data);
    }
}

nsq_sdk::export!(Hog);

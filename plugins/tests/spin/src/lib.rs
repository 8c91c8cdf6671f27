//! Test plugin that loops forever when a line says `spin`, and otherwise
//! echoes each chunk; proves the per-call CPU deadline ends only its own
//! connection.
use nsq_sdk::{Config, ConnectInfo, Host, Protocol};

/// One connection (no state).
struct Spin;

impl Protocol for Spin {
    type Settings = ();

    fn settings(_config: &mut Config<'_>) {}

    fn connect(_settings: (), _info: &ConnectInfo, _host: &mut impl Host) -> Self {
        Spin
    }

    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        if data.windows(4).any(|w| w == b"spin") {
            let mut x: u64 = 1;
            loop {
                // black_box keeps the optimiser from proving the loop pure.
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let _ = host.write(data);
    }
}

nsq_sdk::export!(Spin);

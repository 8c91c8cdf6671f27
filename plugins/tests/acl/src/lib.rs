//! Test plugin that, when a line says `flood`, publishes to a topic outside its
//! ACL in a loop, ignoring the `denied` errors; any other chunk is published
//! to topic `allowed` and answered `OK`/`ERR`. Proves a flood of denied calls
//! ends only its own connection.
use nsq_sdk::BrokerError;
use nsq_sdk::{Config, ConnectInfo, Host, Protocol};

/// One connection (no state).
struct Acl;

impl Protocol for Acl {
    type Settings = ();

    fn settings(_config: &mut Config<'_>) {}

    fn connect(_settings: (), _info: &ConnectInfo, _host: &mut impl Host) -> Self {
        Acl
    }

    fn on_data(&mut self, host: &mut impl Host, data: &[u8]) {
        if data.windows(5).any(|w| w == b"flood") {
            for _ in 0..1_000_000 {
                let _ = host.publish("forbidden", b"x");
            }
            let _ = host.write(b"survived\n");
            return;
        }
        if data.windows(6).any(|w| w == b"denied") {
            let reply: &[u8] = match host.publish("forbidden", b"x") {
                Err(BrokerError::Denied(_)) => b"DENIED\n",
                _ => b"UNEXPECTED\n",
            };
            let _ = host.write(reply);
            return;
        }
        let reply: &[u8] = match host.publish("allowed", data) {
            Ok(_) => b"OK\n",
            Err(_) => b"ERR\n",
        };
        let _ = host.write(reply);
    }
}

nsq_sdk::export!(Acl);

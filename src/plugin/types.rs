//! Host side of the WIT `types` interface: splitting a failed broker import
//! (`broker::Fail`) into the WIT error the guest sees or a trap.

use super::bindings::nsq::gateway::types::{BrokerError, Host};
use super::broker::Fail;
use super::state::HostState;

impl Host for HostState {
    fn convert_broker_error(&mut self, err: Fail) -> wasmtime::Result<BrokerError> {
        match err {
            Fail::Wit(e) => Ok(e),
            Fail::Trap(e) => Err(e),
        }
    }
}

//! Host side of the WIT `types` interface: it declares only types, so the
//! generated `Host` trait is empty; this file exists so every interface has
//! its host file.

use super::bindings::nsq::gateway::types::Host;
use super::state::HostState;

impl Host for HostState {}

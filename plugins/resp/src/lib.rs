//! RESP: Redis pub/sub and list queues for nsq-gateway, as a WebAssembly
//! component on the guest SDK. Stock Redis clients (redis-cli, redis-py, …)
//! PUBLISH and SUBSCRIBE to NSQ topics and use LPUSH/BRPOP as work queues
//! on them. The request parser (`parse`), reply encoding (`reply`) and
//! settings are plain Rust; the per-connection state machine (`session`) is
//! the `nsq_sdk::Protocol`, unit-tested natively against the SDK's
//! recording host. See plugins/resp/README.md for the mapping.

pub mod parse;
pub mod reply;
mod session;
mod settings;

pub use session::Resp;
pub use settings::Settings;

nsq_sdk::export!(Resp);

#[cfg(test)]
mod fuzz;

//! RESP: Redis pub/sub and list queues for nsq-gateway, as a WebAssembly
//! component. Stock Redis clients (redis-cli, redis-py, …) PUBLISH and
//! SUBSCRIBE to NSQ topics and use LPUSH/BRPOP as work queues on them. The
//! request parser (`parse`), reply encoding (`reply`), settings and the
//! per-connection state machine (`session`) are plain Rust, tested on the
//! host target; `guest` binds them to the WIT world and exists only when
//! compiled for WebAssembly. See plugins/resp/README.md for the mapping.

pub mod parse;
pub mod reply;
pub mod session;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
mod fuzz;

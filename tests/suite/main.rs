//! The integration suite, linked as one test binary.
//!
//! Every file here used to be its own test crate, and each linked wasmtime
//! again: 22 binaries of half a gigabyte each filled a CI disk. One binary
//! links once; `cargo test <file>::` still runs a single file's tests.

mod auth_server;
mod common;

mod auth_plugins;
mod auth_v2;
mod capacity;
mod cluster;
mod crash_loop;
mod durability;
mod e2e_latency;
mod http_api;
mod http_e2e;
mod http_metrics;
mod http_plugins;
mod ops_anywhere;
mod ops_contrib;
mod ops_flags;
mod ops_logs;
mod plugin_guest_units;
mod plugin_isolation;
mod plugin_pubsub;
mod plugin_python;
mod plugin_reload;
mod plugin_resp;
mod plugin_slow_client;
mod plugin_startup;
mod plugin_stomp;
mod plugin_stomp_clients;
mod plugin_tutorial;
mod real_clients_nsqjs;
mod real_clients_pynsq;
mod real_clients_tokio_nsq;
mod server;
mod statsd;
mod tls_plugins;
mod tls_v2;
mod v2_load;
mod v2_slow_client;
mod v2_wire;

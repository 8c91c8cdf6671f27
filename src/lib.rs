//! nsq-gateway: an NSQ-compatible message broker whose wire protocols are
//! plugins. The binary in `main.rs` only parses configuration and binds; all
//! serving lives here so that tests drive `app::run` on port 0.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod logging;
pub mod plugin;
pub mod protocol;
pub mod server;
pub mod statsd;
mod sync;
pub mod tls;

#[cfg(test)]
mod fuzz;

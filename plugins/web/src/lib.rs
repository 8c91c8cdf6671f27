//! WEB: browsers as first-class nsq-gateway clients (work in progress).

pub mod base64;
pub mod http;
pub mod sha1;
pub mod sse;
pub mod vocab;
pub mod ws;

#[cfg(test)]
mod fuzz;

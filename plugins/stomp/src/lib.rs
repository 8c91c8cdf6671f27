//! STOMP 1.2 (and 1.1) for nsq-gateway, on the guest SDK (`nsq-sdk`): the
//! frame codec (`frame`), the protocol rules and settings (`rules`) and the
//! per-connection session (`session`: subscriptions, unacknowledged
//! messages, transactions, heart-beats) are plain Rust, tested natively;
//! the SDK's `export!` makes the session the component's `tcp-handler`.
//! See plugins/stomp/README.md for the mapping, the settings and the limits.

mod frame;
mod rules;
mod session;

nsq_sdk::export!(session::Stomp);

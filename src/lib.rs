//! nsq-gateway library crate.

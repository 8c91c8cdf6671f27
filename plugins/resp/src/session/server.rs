//! Server-level commands a Redis client sends on its own: SELECT (only db 0
//! exists), CONFIG GET (answers an empty map) and INFO (the server section
//! clients read the version from).

use super::{REDIS_VERSION, Resp};
use crate::reply;

impl Resp {
    pub(super) fn select(&mut self, db: &[u8]) {
        match std::str::from_utf8(db)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            None => self.err("ERR value is not an integer or out of range"),
            Some(0) => reply::simple(&mut self.out, "OK"),
            Some(_) => self.err("ERR DB index is out of range"),
        }
    }

    pub(super) fn config(&mut self, sub: &[u8]) {
        if sub.eq_ignore_ascii_case(b"GET") {
            reply::array(&mut self.out, 0);
        } else {
            let text = format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                reply::clip(sub)
            );
            self.err(&text);
        }
    }

    pub(super) fn info(&mut self) {
        let info = format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nserver_name:nsq-gateway\r\n"
        );
        reply::bulk(&mut self.out, info.as_bytes());
    }
}

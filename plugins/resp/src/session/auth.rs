//! Authentication against the gateway's auth server: where a connection
//! is (open, required, waiting, done), what to answer once the server agrees
//! (AUTH's `+OK` or HELLO's map), and the answer's arrival. AUTH and HELLO
//! themselves are in `connection`.

use nsq_sdk::Host;

use super::Resp;
use crate::reply;

/// Where the connection is with the gateway's auth server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AuthPhase {
    /// No auth server: AUTH behaves as a Redis without a password.
    Open,
    /// Commands get NOAUTH until AUTH or HELLO ... AUTH succeeds.
    Required,
    /// Waiting for the auth server; the pipeline behind it waits too.
    Waiting(AfterAuth),
    /// Authenticated.
    Done,
}

/// What to answer once the auth server agrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AfterAuth {
    /// `+OK` (AUTH).
    Ok,
    /// HELLO's map, switching to `proto` and naming the client.
    Hello { proto: u8, name: Option<Vec<u8>> },
}

impl Resp {
    /// Processing waits for a BRPOP or for the auth server.
    pub(super) fn paused(&self) -> bool {
        self.blocked.is_some() || matches!(self.auth, AuthPhase::Waiting(_))
    }

    /// The auth server's answer to AUTH or HELLO ... AUTH: the reply, then
    /// the commands pipelined behind it.
    pub(super) fn authenticated(&mut self, host: &mut impl Host, ok: bool) {
        let AuthPhase::Waiting(after) = std::mem::replace(&mut self.auth, AuthPhase::Required)
        else {
            return;
        };
        if self.closed {
            return;
        }
        if ok {
            self.auth = AuthPhase::Done;
            match after {
                AfterAuth::Ok => reply::simple(&mut self.out, "OK"),
                AfterAuth::Hello { proto, name } => {
                    if let Some(n) = name {
                        self.name = (!n.is_empty()).then_some(n);
                    }
                    self.proto = proto;
                    self.hello_reply();
                }
            }
        } else {
            self.err("WRONGPASS invalid username-password pair or user is disabled.");
        }
        if !self.pending.is_empty() && !self.paused() {
            self.run_pending(host);
        }
        self.end_event(host);
    }
}

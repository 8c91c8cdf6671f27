//! Connection-level commands: PING, HELLO (protocol switch and the server
//! map), CLIENT (SETNAME/GETNAME/ID/INFO and friends), AUTH, and the
//! wrong-arity error they share.

use super::auth::{AfterAuth, AuthPhase};
use nsq_sdk::Host;

use super::{REDIS_VERSION, Resp, resp_error, valid_name};
use crate::reply;

impl Resp {
    pub(super) fn wrong_args(&mut self, name: &str) {
        let text = format!("ERR wrong number of arguments for '{name}' command");
        self.err(&text);
    }

    pub(super) fn ping(&mut self, args: &[&[u8]]) {
        if args.len() > 1 {
            return self.wrong_args("ping");
        }
        if self.proto == 2 && !self.topics.is_empty() {
            reply::array(&mut self.out, 2);
            reply::bulk(&mut self.out, b"pong");
            reply::bulk(&mut self.out, args.first().copied().unwrap_or_default());
        } else if let Some(msg) = args.first() {
            reply::bulk(&mut self.out, msg);
        } else {
            reply::simple(&mut self.out, "PONG");
        }
    }

    pub(super) fn hello(&mut self, host: &mut impl Host, args: &[&[u8]]) {
        let mut proto = self.proto;
        if let Some(ver) = args.first() {
            match std::str::from_utf8(ver)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                None => return self.err("ERR Protocol version is not an integer or out of range"),
                Some(2) => proto = 2,
                Some(3) if self.settings.resp3 => proto = 3,
                // With `resp3: false`, clients that can fall back to RESP2 do.
                Some(_) => {
                    return self.err("NOPROTO sorry, this protocol version is not supported.");
                }
            }
        }
        let mut i = 1;
        let mut name = None;
        let mut secret = None;
        while i < args.len() {
            let opt = args[i];
            if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
                if self.auth == AuthPhase::Open && !args[i + 1].eq_ignore_ascii_case(b"default") {
                    return self
                        .err("WRONGPASS invalid username-password pair or user is disabled.");
                }
                secret = Some(args[i + 2]);
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
                if !valid_name(args[i + 1]) {
                    return self.err(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                name = Some(args[i + 1]);
                i += 2;
            } else {
                let text = format!("ERR Syntax error in HELLO option '{}'", reply::clip(opt));
                return self.err(&text);
            }
        }
        if self.auth == AuthPhase::Required {
            let Some(secret) = secret else {
                return self.err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
            };
            // The username is the client's to choose; the auth server
            // judges the secret (the password).
            return match host.authenticate(&String::from_utf8_lossy(secret)) {
                Ok(()) => {
                    self.auth = AuthPhase::Waiting(AfterAuth::Hello {
                        proto,
                        name: name.map(<[u8]>::to_vec),
                    });
                }
                Err(e) => self.err(&resp_error(&e)),
            };
        }
        if let Some(n) = name {
            self.name = (!n.is_empty()).then(|| n.to_vec());
        }
        self.proto = proto;
        self.hello_reply();
    }

    /// HELLO's server map, in the current protocol.
    pub(super) fn hello_reply(&mut self) {
        let proto = self.proto;
        reply::map(&mut self.out, 7, proto);
        reply::bulk(&mut self.out, b"server");
        reply::bulk(&mut self.out, b"redis");
        reply::bulk(&mut self.out, b"version");
        reply::bulk(&mut self.out, REDIS_VERSION.as_bytes());
        reply::bulk(&mut self.out, b"proto");
        reply::integer(&mut self.out, i64::from(proto));
        reply::bulk(&mut self.out, b"id");
        reply::integer(
            &mut self.out,
            i64::try_from(self.client_id).unwrap_or(i64::MAX),
        );
        reply::bulk(&mut self.out, b"mode");
        reply::bulk(&mut self.out, b"standalone");
        reply::bulk(&mut self.out, b"role");
        reply::bulk(&mut self.out, b"master");
        reply::bulk(&mut self.out, b"modules");
        reply::array(&mut self.out, 0);
    }

    pub(super) fn client(&mut self, args: &[&[u8]]) {
        let sub = args[0];
        let rest = &args[1..];
        let is = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
        let (name, want) = if is("SETNAME") {
            ("client|setname", 1)
        } else if is("GETNAME") {
            ("client|getname", 0)
        } else if is("SETINFO") {
            ("client|setinfo", 2)
        } else if is("ID") {
            ("client|id", 0)
        } else {
            let text = format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                reply::clip(sub)
            );
            return self.err(&text);
        };
        // From here `rest` has exactly `want` elements.
        if rest.len() != want {
            return self.wrong_args(name);
        }
        match name {
            "client|setname" => {
                if !valid_name(rest[0]) {
                    return self.err(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!rest[0].is_empty()).then(|| rest[0].to_vec());
                reply::simple(&mut self.out, "OK");
            }
            "client|getname" => match &self.name {
                Some(n) => reply::bulk(&mut self.out, n),
                None => reply::nil_bulk(&mut self.out, self.proto),
            },
            "client|setinfo" => {
                let attr = rest[0];
                if attr.eq_ignore_ascii_case(b"LIB-NAME") || attr.eq_ignore_ascii_case(b"LIB-VER") {
                    reply::simple(&mut self.out, "OK");
                } else {
                    let text = format!("ERR Unrecognized option '{}'", reply::clip(attr));
                    self.err(&text);
                }
            }
            _ => reply::integer(
                &mut self.out,
                i64::try_from(self.client_id).unwrap_or(i64::MAX),
            ),
        }
    }

    /// AUTH: with the gateway's auth server, `AUTH [user] <secret>` asks it
    /// (the pipeline waits for the answer); without one, AUTH behaves as a
    /// Redis whose only user is `default` with `nopass`.
    pub(super) fn auth(&mut self, host: &mut impl Host, args: &[&[u8]]) {
        if self.auth != AuthPhase::Open {
            let secret = match args {
                [secret] | [_, secret] => *secret,
                _ => return self.err("ERR syntax error"),
            };
            if self.auth == AuthPhase::Done {
                // Redis lets a client switch users; here the grant is per
                // connection, so a second AUTH is refused.
                return self.err("ERR this connection is already authenticated");
            }
            return match host.authenticate(&String::from_utf8_lossy(secret)) {
                Ok(()) => self.auth = AuthPhase::Waiting(AfterAuth::Ok),
                Err(e) => self.err(&resp_error(&e)),
            };
        }
        match args {
            [_] => self.err(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            [user, _] if user.eq_ignore_ascii_case(b"default") => {
                reply::simple(&mut self.out, "OK")
            }
            [_, _] => self.err("WRONGPASS invalid username-password pair or user is disabled."),
            _ => self.err("ERR syntax error"),
        }
    }
}

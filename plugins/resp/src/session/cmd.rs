//! The command table: every command RESP knows, its Redis name (as error
//! messages show it), its arity, and whether RESP2 subscriber mode allows it.

/// The commands this plugin knows, with Redis's arity (positive: exact
/// argument count including the name; negative: at least that many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
    Ping,
    Echo,
    Quit,
    Hello,
    Client,
    Select,
    Auth,
    Command,
    Config,
    Info,
    Reset,
    Publish,
    Subscribe,
    Unsubscribe,
    Psubscribe,
    Punsubscribe,
    Lpush,
    Rpush,
    Brpop,
    Blpop,
    Llen,
}

impl Cmd {
    pub(super) fn lookup(name: &[u8]) -> Option<Cmd> {
        const ALL: [Cmd; 21] = [
            Cmd::Ping,
            Cmd::Echo,
            Cmd::Quit,
            Cmd::Hello,
            Cmd::Client,
            Cmd::Select,
            Cmd::Auth,
            Cmd::Command,
            Cmd::Config,
            Cmd::Info,
            Cmd::Reset,
            Cmd::Publish,
            Cmd::Subscribe,
            Cmd::Unsubscribe,
            Cmd::Psubscribe,
            Cmd::Punsubscribe,
            Cmd::Lpush,
            Cmd::Rpush,
            Cmd::Brpop,
            Cmd::Blpop,
            Cmd::Llen,
        ];
        ALL.into_iter()
            .find(|c| c.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// Redis's lower-case command name, as its error messages show it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Cmd::Ping => "ping",
            Cmd::Echo => "echo",
            Cmd::Quit => "quit",
            Cmd::Hello => "hello",
            Cmd::Client => "client",
            Cmd::Select => "select",
            Cmd::Auth => "auth",
            Cmd::Command => "command",
            Cmd::Config => "config",
            Cmd::Info => "info",
            Cmd::Reset => "reset",
            Cmd::Publish => "publish",
            Cmd::Subscribe => "subscribe",
            Cmd::Unsubscribe => "unsubscribe",
            Cmd::Psubscribe => "psubscribe",
            Cmd::Punsubscribe => "punsubscribe",
            Cmd::Lpush => "lpush",
            Cmd::Rpush => "rpush",
            Cmd::Brpop => "brpop",
            Cmd::Blpop => "blpop",
            Cmd::Llen => "llen",
        }
    }

    pub(super) fn arity(self) -> i32 {
        match self {
            Cmd::Ping | Cmd::Quit | Cmd::Hello | Cmd::Unsubscribe | Cmd::Punsubscribe => -1,
            Cmd::Command | Cmd::Info => -1,
            Cmd::Client | Cmd::Auth | Cmd::Config | Cmd::Subscribe | Cmd::Psubscribe => -2,
            Cmd::Echo | Cmd::Select | Cmd::Llen => 2,
            Cmd::Reset => 1,
            Cmd::Publish => 3,
            Cmd::Lpush | Cmd::Rpush | Cmd::Brpop | Cmd::Blpop => -3,
        }
    }

    /// Allowed while the connection is in RESP2 subscriber mode.
    pub(super) fn allowed_subscribed(self) -> bool {
        matches!(
            self,
            Cmd::Subscribe
                | Cmd::Unsubscribe
                | Cmd::Psubscribe
                | Cmd::Punsubscribe
                | Cmd::Ping
                | Cmd::Quit
                | Cmd::Reset
        )
    }
}

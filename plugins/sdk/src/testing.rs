//! Native unit tests of a protocol: [`Recorder`], a fake [`Host`] that keeps
//! what the protocol wrote and every broker call it made and answers from
//! settings a test controls, and [`Session`], which drives a [`Protocol`]
//! through the same events the export macro routes, config validation
//! included. No gateway, no wasm: `cargo test` in the plugin's crate.

use std::collections::VecDeque;

use crate::host::Admin;
use crate::{
    AuthError, BrokerError, Config, ConfigError, ConnectInfo, Host, Identity, Limits, Message,
    Protocol, Subscription, TopicStats, WriteError,
};

/// One broker call, as the protocol made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Publish {
        topic: String,
        body: Vec<u8>,
    },
    PublishMany {
        topic: String,
        bodies: Vec<Vec<u8>>,
    },
    PublishDeferred {
        topic: String,
        body: Vec<u8>,
        delay_ms: u32,
    },
    Subscribe {
        topic: String,
        channel: String,
    },
    SetReady {
        sub: Subscription,
        count: u32,
    },
    Unsubscribe {
        sub: Subscription,
    },
    Finish {
        sub: Subscription,
        id: String,
    },
    FinishMany {
        sub: Subscription,
        ids: Vec<String>,
    },
    Requeue {
        sub: Subscription,
        id: String,
        delay_ms: u32,
    },
    RequeueMany {
        sub: Subscription,
        ids: Vec<String>,
        delay_ms: u32,
    },
    Touch {
        sub: Subscription,
        id: String,
    },
    Admin {
        op: Admin,
        topic: String,
        channel: Option<String>,
    },
    Stats {
        topic: Option<String>,
    },
    Authenticate {
        secret: String,
    },
}

impl Call {
    /// The call's name as `Recorder::fail_next` takes it (the WIT name).
    pub fn name(&self) -> &'static str {
        match self {
            Call::Publish { .. } => "publish",
            Call::PublishMany { .. } => "publish-many",
            Call::PublishDeferred { .. } => "publish-deferred",
            Call::Subscribe { .. } => "subscribe",
            Call::SetReady { .. } => "set-ready",
            Call::Unsubscribe { .. } => "unsubscribe",
            Call::Finish { .. } => "finish",
            Call::FinishMany { .. } => "finish-many",
            Call::Requeue { .. } => "requeue",
            Call::RequeueMany { .. } => "requeue-many",
            Call::Touch { .. } => "touch",
            Call::Admin { .. } => "admin",
            Call::Stats { .. } => "stats",
            Call::Authenticate { .. } => "authenticate",
        }
    }
}

/// A fake host: records, and answers as its public fields say.
#[derive(Debug)]
pub struct Recorder {
    /// Every byte written, in order (see [`Recorder::take_output`]).
    pub output: Vec<u8>,
    /// Whether `close` was called.
    pub closed: bool,
    /// The armed timer, as last set.
    pub timer: Option<u32>,
    /// What `now_ms` answers; tests move it forward.
    pub now_ms: u64,
    /// Every broker call, in order.
    pub calls: Vec<Call>,
    /// What `publish` and friends answer as the channel count.
    pub channels: u32,
    /// What `stats` answers.
    pub stats: Vec<TopicStats>,
    /// What `auth_required` answers.
    pub auth_required: bool,
    /// Most bytes `write` accepts in total before `buffer-full` (`None`:
    /// no limit).
    pub write_limit: Option<usize>,
    /// The next subscription handle.
    next_sub: Subscription,
    /// Failures to answer, by call name, first in first out.
    failures: VecDeque<(&'static str, BrokerError)>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            output: Vec::new(),
            closed: false,
            timer: None,
            now_ms: 1_700_000_000_000,
            calls: Vec::new(),
            channels: 1,
            stats: Vec::new(),
            auth_required: false,
            write_limit: None,
            next_sub: 0,
            failures: VecDeque::new(),
        }
    }
}

impl Recorder {
    /// The next call named `call` (a WIT name: "publish", "finish" ...)
    /// fails with `error`.
    pub fn fail_next(&mut self, call: &'static str, error: BrokerError) {
        self.failures.push_back((call, error));
    }

    /// The output so far, emptied.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The output so far as text (lossy), emptied.
    pub fn take_text(&mut self) -> String {
        String::from_utf8_lossy(&self.take_output()).into_owned()
    }

    /// The calls so far, emptied.
    pub fn take_calls(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    /// Records `call` and answers a queued failure for it, if any.
    fn record(&mut self, call: Call) -> Result<(), BrokerError> {
        let name = call.name();
        self.calls.push(call);
        match self.failures.iter().position(|(n, _)| *n == name) {
            Some(i) => match self.failures.remove(i) {
                Some((_, e)) => Err(e),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Host for Recorder {
    fn write(&mut self, data: &[u8]) -> Result<(), WriteError> {
        if self.closed {
            return Err(WriteError::Closed);
        }
        if self
            .write_limit
            .is_some_and(|limit| self.output.len() + data.len() > limit)
        {
            return Err(WriteError::BufferFull);
        }
        self.output.extend_from_slice(data);
        Ok(())
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn set_timer(&mut self, delay_ms: Option<u32>) {
        self.timer = delay_ms;
    }

    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }

    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<u32, BrokerError> {
        self.record(Call::Publish {
            topic: topic.into(),
            body: body.into(),
        })?;
        Ok(self.channels)
    }

    fn publish_many(&mut self, topic: &str, bodies: &[Vec<u8>]) -> Result<u32, BrokerError> {
        self.record(Call::PublishMany {
            topic: topic.into(),
            bodies: bodies.into(),
        })?;
        Ok(self.channels)
    }

    fn publish_deferred(
        &mut self,
        topic: &str,
        body: &[u8],
        delay_ms: u32,
    ) -> Result<u32, BrokerError> {
        self.record(Call::PublishDeferred {
            topic: topic.into(),
            body: body.into(),
            delay_ms,
        })?;
        Ok(self.channels)
    }

    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<Subscription, BrokerError> {
        self.record(Call::Subscribe {
            topic: topic.into(),
            channel: channel.into(),
        })?;
        let sub = self.next_sub;
        self.next_sub += 1;
        Ok(sub)
    }

    fn set_ready(&mut self, sub: Subscription, count: u32) -> Result<(), BrokerError> {
        self.record(Call::SetReady { sub, count })
    }

    fn unsubscribe(&mut self, sub: Subscription) -> Result<(), BrokerError> {
        self.record(Call::Unsubscribe { sub })
    }

    fn finish(&mut self, sub: Subscription, id: &str) -> Result<(), BrokerError> {
        self.record(Call::Finish { sub, id: id.into() })
    }

    fn finish_many(&mut self, sub: Subscription, ids: &[String]) -> Result<u32, BrokerError> {
        self.record(Call::FinishMany {
            sub,
            ids: ids.into(),
        })?;
        Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX))
    }

    fn requeue(&mut self, sub: Subscription, id: &str, delay_ms: u32) -> Result<(), BrokerError> {
        self.record(Call::Requeue {
            sub,
            id: id.into(),
            delay_ms,
        })
    }

    fn requeue_many(
        &mut self,
        sub: Subscription,
        ids: &[String],
        delay_ms: u32,
    ) -> Result<u32, BrokerError> {
        self.record(Call::RequeueMany {
            sub,
            ids: ids.into(),
            delay_ms,
        })?;
        Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX))
    }

    fn touch(&mut self, sub: Subscription, id: &str) -> Result<(), BrokerError> {
        self.record(Call::Touch { sub, id: id.into() })
    }

    fn admin(&mut self, op: Admin, topic: &str, channel: Option<&str>) -> Result<(), BrokerError> {
        self.record(Call::Admin {
            op,
            topic: topic.into(),
            channel: channel.map(Into::into),
        })
    }

    fn stats(&mut self, topic: Option<&str>) -> Result<Vec<TopicStats>, BrokerError> {
        self.record(Call::Stats {
            topic: topic.map(Into::into),
        })?;
        Ok(self
            .stats
            .iter()
            .filter(|t| topic.is_none_or(|name| t.name == name))
            .cloned()
            .collect())
    }

    fn auth_required(&mut self) -> bool {
        self.auth_required
    }

    fn authenticate(&mut self, secret: &str) -> Result<(), BrokerError> {
        self.record(Call::Authenticate {
            secret: secret.into(),
        })
    }
}

/// The limits a gateway with nsqd's defaults hands a plugin.
pub fn default_limits() -> Limits {
    Limits {
        max_rdy_count: 2500,
        max_msg_size: 1_048_576,
        max_batch: 256,
        max_delay_ms: 3_600_000,
        msg_timeout_ms: 60_000,
        output_buffer: 4 << 20,
        max_subscriptions: 16,
    }
}

/// A `connect-info` as the gateway would send it, from `magic` and the
/// `config:` pairs.
pub fn connect_info(magic: &[u8; 4], config: &[(&str, &str)]) -> ConnectInfo {
    let mut config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config.sort();
    ConnectInfo {
        magic: magic.to_vec(),
        peer: "127.0.0.1:50000".into(),
        client_id: 1,
        config,
        tls: false,
        tls_common_name: None,
        limits: default_limits(),
    }
}

/// A delivered message with id `n` as 16 hex digits and attempt 1.
pub fn message(n: u64, body: &[u8]) -> Message {
    Message {
        id: format!("{n:016x}"),
        timestamp: 1_700_000_000_000_000_000,
        attempts: 1,
        body: body.to_vec(),
    }
}

/// What the gateway's `validate-config` call would answer for `config`.
pub fn validate<P: Protocol>(config: &[(&str, &str)]) -> Result<(), ConfigError> {
    let info = connect_info(b"    ", config);
    let mut config = Config::new(&info.config);
    let _ = P::settings(&mut config);
    config.check()
}

/// One connection of protocol `P` against a [`Recorder`].
pub struct Session<P: Protocol> {
    /// The protocol's value, for assertions on its state.
    pub protocol: P,
    /// The fake host, for assertions on output and calls.
    pub host: Recorder,
}

impl<P: Protocol> Session<P> {
    /// Validates `config` as the gateway does at load (panicking with the
    /// plugin's message if it is refused), then connects with `magic`.
    pub fn open(magic: &[u8; 4], config: &[(&str, &str)]) -> Self {
        if let Err(e) = validate::<P>(config) {
            panic!("the plugin refuses this config: {e}");
        }
        Self::open_with(connect_info(magic, config), Recorder::default())
    }

    /// Connects with a given `connect-info` and host.
    pub fn open_with(info: ConnectInfo, mut host: Recorder) -> Self {
        let mut config = Config::new(&info.config);
        let settings = P::settings(&mut config);
        let protocol = P::connect(settings, &info, &mut host);
        Session { protocol, host }
    }

    /// Feeds client bytes.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.protocol.on_data(&mut self.host, data);
        self
    }

    /// Delivers messages on `sub`.
    pub fn messages(&mut self, sub: Subscription, messages: Vec<Message>) -> &mut Self {
        self.protocol.on_messages(&mut self.host, sub, messages);
        self
    }

    /// Fires the timer (and disarms it, as the gateway does).
    pub fn timer(&mut self) -> &mut Self {
        self.host.timer = None;
        self.protocol.on_timer(&mut self.host);
        self
    }

    /// Answers a pending `authenticate`.
    pub fn authenticated(&mut self, answer: Result<Identity, AuthError>) -> &mut Self {
        self.protocol.on_authenticated(&mut self.host, answer);
        self
    }

    /// Ends the connection.
    pub fn close(&mut self) -> &mut Self {
        self.protocol.on_close(&mut self.host);
        self
    }

    /// The output so far as text, emptied.
    pub fn text(&mut self) -> String {
        self.host.take_text()
    }

    /// The broker calls so far, emptied.
    pub fn calls(&mut self) -> Vec<Call> {
        self.host.take_calls()
    }
}

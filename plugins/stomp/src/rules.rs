//! The STOMP plugin's pure decisions, apart from the session so they are
//! unit-tested on their own: reading the `config:` map into `Settings` with
//! the SDK's typed getters (an unknown key or a bad value stops the load),
//! version and heart-beat negotiation, mapping destinations to NSQ topics
//! and channels, and the `ack` ids the server hands out and reads back.

use nsq_sdk::{Config, Limits as BrokerLimits};

use crate::frame::Limits;

/// Default `prefetch`: messages in flight per subscription (NSQ's RDY).
pub const DEFAULT_PREFETCH: u32 = 100;
/// Headers and framing allowed on top of the broker's largest body in the
/// default `max_frame_bytes`.
const HEADER_ALLOWANCE: usize = 64 << 10;

/// The plugin's settings, from `config:` in gateway.yaml (the README lists
/// every key), then bounded by the broker's limits at connect
/// (`Settings::bound`).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub limits: Limits,
    /// `max_frame_bytes` was set; otherwise the largest frame follows the
    /// broker's `max-msg-size`.
    pub max_frame_set: bool,
    /// Most simultaneous subscriptions per connection (`None`: the
    /// broker's `max-subscriptions`).
    pub max_subscriptions: Option<usize>,
    /// Ready count of a subscription without a `prefetch-count` header.
    pub prefetch: u32,
    /// Shared channel for `/queue/<t>` without a `channel` header.
    pub queue_channel: String,
    /// The server's heart-beat offer `(can send every, wants every)` in ms.
    pub heart_beat: (u64, u64),
    /// A client is dead after `grace` times its negotiated interval of
    /// silence, in thousandths (2.0 is 2000). Fixed point, not `f64`: float
    /// parsing and printing would add 12 KB of tables to the guest's data,
    /// which every connection's instance holds resident.
    pub heart_beat_grace_milli: u64,
    /// Time a connection has to complete CONNECT, in ms (0 = unbounded).
    pub connect_timeout_ms: u32,
    /// Delay before a NACKed message is redelivered, in ms.
    pub nack_delay_ms: u32,
    /// Open transactions per connection.
    pub max_transactions: usize,
    /// Body bytes buffered across all open transactions.
    pub max_transaction_bytes: usize,
    /// Required `login`/`passcode` in CONNECT, when set.
    pub login: Option<String>,
    pub passcode: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            max_frame_set: false,
            max_subscriptions: None,
            prefetch: DEFAULT_PREFETCH,
            queue_channel: "stomp".into(),
            heart_beat: (10_000, 10_000),
            heart_beat_grace_milli: 2000,
            connect_timeout_ms: 10_000,
            nack_delay_ms: 0,
            max_transactions: 8,
            max_transaction_bytes: 4 << 20,
            login: None,
            passcode: None,
        }
    }
}

impl Settings {
    /// Reads every key (each on every call, so that `Config::check` knows
    /// them all); a bad value is recorded by the getter and the default kept.
    pub fn read(c: &mut Config<'_>) -> Settings {
        let d = Settings::default();
        let max_frame_set = c.raw("max_frame_bytes").is_some();
        let max_frame = c.range("max_frame_bytes", d.limits.max_frame, 256, 1 << 30);
        let max_headers = c.range("max_headers", d.limits.max_headers, 4, 4096);
        let max_header_len = c.range("max_header_bytes", d.limits.max_header_len, 64, 1 << 20);
        let max_subscriptions = c
            .raw("max_subscriptions")
            .map(|_| c.range("max_subscriptions", 16, 1, 1 << 16));
        let prefetch = c.range("prefetch", d.prefetch, 1, u32::MAX);
        let queue_channel = c.string("queue_channel", &d.queue_channel);
        let queue_channel = if queue_channel.trim().is_empty() {
            c.invalid("config.queue_channel: must not be empty");
            d.queue_channel.clone()
        } else {
            queue_channel.trim().to_string()
        };
        let heart_beat = match c.raw("heart_beat") {
            None => d.heart_beat,
            Some(v) => parse_heart_beat(v).unwrap_or_else(|| {
                c.invalid(format!(
                    "config.heart_beat: {v:?} is not \"can-send-every,wants-every\" in ms"
                ));
                d.heart_beat
            }),
        };
        let heart_beat_grace_milli = match c.raw("heart_beat_grace") {
            None => d.heart_beat_grace_milli,
            Some(v) => match parse_milli(v.trim()) {
                Some(g) if g >= 1000 => g,
                _ => {
                    c.invalid(format!(
                        "config.heart_beat_grace: {v:?} is not a number of at least 1 \
                         (at most 3 decimals)"
                    ));
                    d.heart_beat_grace_milli
                }
            },
        };
        Settings {
            limits: Limits {
                max_frame,
                max_headers,
                max_header_len,
            },
            max_frame_set,
            max_subscriptions,
            prefetch,
            queue_channel,
            heart_beat,
            heart_beat_grace_milli,
            connect_timeout_ms: c.get("connect_timeout_ms", d.connect_timeout_ms),
            nack_delay_ms: c.get("nack_delay_ms", d.nack_delay_ms),
            max_transactions: c.get("max_transactions", d.max_transactions),
            max_transaction_bytes: c.get("max_transaction_bytes", d.max_transaction_bytes),
            login: c.raw("login").map(str::to_string),
            passcode: c.raw("passcode").map(str::to_string),
        }
    }

    /// Fits the settings to the broker's limits of this connection: the
    /// prefetch window to `max-rdy-count`, the NACK delay to
    /// `max-delay-ms`, the subscriptions to `max-subscriptions`, and (unless
    /// set) the largest frame to `max-msg-size` plus the headers.
    pub fn bound(&mut self, limits: &BrokerLimits) {
        let max_rdy = limits.max_rdy_count.max(1);
        self.prefetch = self.prefetch.min(max_rdy);
        self.nack_delay_ms = self.nack_delay_ms.min(limits.max_delay_ms);
        let broker_subs = usize::try_from(limits.max_subscriptions).unwrap_or(usize::MAX);
        self.max_subscriptions = Some(
            self.max_subscriptions
                .map_or(broker_subs, |n| n.min(broker_subs)),
        );
        if !self.max_frame_set {
            let body = usize::try_from(limits.max_msg_size).unwrap_or(usize::MAX);
            self.limits.max_frame = body.saturating_add(HEADER_ALLOWANCE);
        }
    }
}

/// A decimal such as `2`, `1.5` or `2.125` in thousandths.
fn parse_milli(v: &str) -> Option<u64> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let mut milli = int.checked_mul(1000)?;
    for (i, b) in frac.bytes().enumerate() {
        let unit = [100, 10, 1][i];
        milli = milli.checked_add(u64::from(b - b'0') * unit)?;
    }
    Some(milli)
}

/// `"cx,cy"` as two millisecond counts.
pub fn parse_heart_beat(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The protocol versions this server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V11,
    V12,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }
}

/// The highest common version; a CONNECT without `accept-version` is a
/// STOMP 1.0 client, which this server does not speak.
pub fn negotiate_version(accept: Option<&str>) -> Option<Version> {
    let accept = accept?;
    let offered = |want: &str| accept.split(',').any(|v| v.trim() == want);
    if offered("1.2") {
        Some(Version::V12)
    } else if offered("1.1") {
        Some(Version::V11)
    } else {
        None
    }
}

/// Negotiated heart-beats in ms: `(server sends every, server expects
/// every)`, 0 meaning off. Per the spec each direction uses the larger of
/// what the sender can do and what the receiver wants, unless either is 0.
pub fn negotiate_heart_beat(client: (u64, u64), server: (u64, u64)) -> (u64, u64) {
    let (cx, cy) = client;
    let (sx, sy) = server;
    let send = if sx == 0 || cy == 0 { 0 } else { sx.max(cy) };
    let expect = if cx == 0 || sy == 0 { 0 } else { cx.max(sy) };
    (send, expect)
}

/// Where a destination leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/queue/<t>`: subscribers share one channel.
    Queue(&'a str),
    /// `/topic/<t>`: every subscription gets its own ephemeral channel.
    Topic(&'a str),
}

impl<'a> Destination<'a> {
    pub fn parse(d: &'a str) -> Option<Destination<'a>> {
        if let Some(t) = d.strip_prefix("/queue/") {
            (!t.is_empty()).then_some(Destination::Queue(t))
        } else if let Some(t) = d.strip_prefix("/topic/") {
            (!t.is_empty()).then_some(Destination::Topic(t))
        } else {
            None
        }
    }

    pub fn topic(&self) -> &'a str {
        match self {
            Destination::Queue(t) | Destination::Topic(t) => t,
        }
    }
}

/// Channel of the `n`th `/topic/` subscription of client `client_id`:
/// unique per subscription, removed by the broker when it is left empty.
pub fn ephemeral_channel(client_id: u64, n: u32) -> String {
    format!("stomp-{client_id}-{n}#ephemeral")
}

/// How a subscription acknowledges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    /// Cumulative: ACK of one message acknowledges all earlier ones.
    Client,
    ClientIndividual,
}

impl AckMode {
    pub fn parse(v: Option<&str>) -> Option<AckMode> {
        match v {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

/// The `ack` header of a MESSAGE: `<subscription handle>.<message id>`.
pub fn ack_id(out: &mut Vec<u8>, handle: u32, message_id: &str) {
    crate::frame::push_decimal(out, u64::from(handle));
    out.push(b'.');
    out.extend_from_slice(message_id.as_bytes());
}

/// Reads back an `ack_id`: `(handle, message id)`.
pub fn parse_ack_id(v: &str) -> Option<(u32, &str)> {
    let (h, id) = v.split_once('.')?;
    let handle = h.parse().ok()?;
    is_message_id(id).then_some((handle, id))
}

/// NSQ message ids are 16 ASCII hex characters.
pub fn is_message_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An NSQ message id kept inline: an ACK names its message without an
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageId([u8; 16]);

impl MessageId {
    pub fn parse(id: &str) -> Option<MessageId> {
        if !is_message_id(id) {
            return None;
        }
        <[u8; 16]>::try_from(id.as_bytes()).ok().map(MessageId)
    }

    /// Whether `id` (a delivered message's) is this one.
    pub fn is(&self, id: &str) -> bool {
        id.as_bytes() == self.0
    }

    /// The id as text (ASCII hex by construction).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (Settings, Result<(), nsq_sdk::ConfigError>) {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = Config::new(&pairs);
        let s = Settings::read(&mut c);
        (s, c.check())
    }

    #[test]
    fn settings_from_config() {
        assert_eq!(read(&[]), (Settings::default(), Ok(())));
        let (mut s, ok) = read(&[
            ("max_frame_bytes", "4096"),
            ("max_headers", "8"),
            ("max_header_bytes", "128"),
            ("max_subscriptions", "2"),
            ("prefetch", "99999"),
            ("queue_channel", "workers"),
            ("heart_beat", "500, 1000"),
            ("heart_beat_grace", "1.5"),
            ("nack_delay_ms", "250"),
            ("login", "u"),
            ("passcode", " p "),
        ]);
        assert_eq!(ok, Ok(()));
        assert_eq!(s.limits.max_frame, 4096);
        assert_eq!(s.limits.max_headers, 8);
        assert_eq!(s.limits.max_header_len, 128);
        assert_eq!(s.max_subscriptions, Some(2));
        assert_eq!(s.queue_channel, "workers");
        assert_eq!(s.heart_beat, (500, 1000));
        assert_eq!(s.heart_beat_grace_milli, 1500);
        assert_eq!(s.passcode.as_deref(), Some(" p "));
        // The broker's limits bound what the config asks for.
        s.bound(&nsq_sdk::testing::default_limits());
        assert_eq!(s.prefetch, 2500);
        assert_eq!(s.nack_delay_ms, 250);
        assert_eq!(s.max_subscriptions, Some(2));
        assert_eq!(s.limits.max_frame, 4096, "set explicitly");
    }

    #[test]
    fn unset_limits_follow_the_broker() {
        let (mut s, _) = read(&[]);
        let mut limits = nsq_sdk::testing::default_limits();
        limits.max_msg_size = 1000;
        limits.max_subscriptions = 3;
        limits.max_rdy_count = 50;
        s.bound(&limits);
        assert_eq!(s.limits.max_frame, 1000 + (64 << 10));
        assert_eq!(s.max_subscriptions, Some(3));
        assert_eq!(s.prefetch, 50);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_by_name() {
        let (s, err) = read(&[
            ("max_frame_bytes", "-1"),
            ("max_headers", "x"),
            ("heart_beat", "1"),
            ("heart_beat_grace", "0.5"),
            ("prefetch", "0"),
            ("queue_channel", " "),
            ("prefech", "10"),
        ]);
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.heart_beat, (10_000, 10_000));
        assert_eq!(s.heart_beat_grace_milli, 2000);
        assert_eq!(s.prefetch, DEFAULT_PREFETCH);
        let problems = err.expect_err("refused").problems;
        for key in [
            "max_frame_bytes",
            "max_headers",
            "heart_beat:",
            "heart_beat_grace",
            "prefetch:",
            "queue_channel",
            "prefech: unknown key",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(&format!("config.{key}"))),
                "{key}: {problems:?}"
            );
        }
        assert_eq!(problems.len(), 7, "{problems:?}");
    }

    #[test]
    fn grace_is_read_in_thousandths() {
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("2.0"), Some(2000));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("2.125"), Some(2125));
        for bad in ["", ".5", "1.2345", "x", "1.x", "-1", "1e3"] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(negotiate_version(Some("1.0,1.1,1.2")), Some(Version::V12));
        assert_eq!(negotiate_version(Some("1.1")), Some(Version::V11));
        assert_eq!(negotiate_version(Some("1.0")), None);
        assert_eq!(negotiate_version(None), None);
    }

    #[test]
    fn heart_beats() {
        assert_eq!(negotiate_heart_beat((0, 0), (10, 10)), (0, 0));
        assert_eq!(negotiate_heart_beat((1000, 500), (100, 2000)), (500, 2000));
        assert_eq!(negotiate_heart_beat((1000, 500), (0, 0)), (0, 0));
        assert_eq!(negotiate_heart_beat((0, 500), (100, 100)), (500, 0));
    }

    #[test]
    fn destinations_and_acks() {
        assert_eq!(
            Destination::parse("/queue/a"),
            Some(Destination::Queue("a"))
        );
        assert_eq!(
            Destination::parse("/topic/b.c"),
            Some(Destination::Topic("b.c"))
        );
        assert_eq!(Destination::parse("/queue/"), None);
        assert_eq!(Destination::parse("/exchange/x"), None);
        assert_eq!(Destination::parse("a"), None);
        let mut out = Vec::new();
        ack_id(&mut out, 3, "0123456789abcdef");
        let s = String::from_utf8(out).expect("ascii");
        assert_eq!(s, "3.0123456789abcdef");
        assert_eq!(parse_ack_id(&s), Some((3, "0123456789abcdef")));
        assert_eq!(parse_ack_id("x.0123456789abcdef"), None);
        assert_eq!(parse_ack_id("1.0123"), None);
        assert_eq!(parse_ack_id("0123456789abcdef"), None);
        let id = MessageId::parse("0123456789abcdef").expect("an id");
        assert!(id.is("0123456789abcdef") && !id.is("0123456789abcde0"));
        assert_eq!(id.as_str(), "0123456789abcdef");
        assert_eq!(MessageId::parse("0123456789abcdeg"), None);
        assert!(ephemeral_channel(u64::MAX, u32::MAX).len() <= 64);
        assert_eq!(AckMode::parse(Some("client")), Some(AckMode::Client));
        assert_eq!(AckMode::parse(Some("bogus")), None);
    }
}

//! The STOMP plugin's pure decisions, kept apart from the WIT glue so they
//! are unit-tested on the host: reading the `config:` map into `Settings`,
//! version and heart-beat negotiation, mapping destinations to NSQ topics and
//! channels, and the `ack` ids the server hands out and reads back.

use crate::frame::Limits;

/// Default `prefetch`: messages in flight per subscription (NSQ's RDY).
pub const DEFAULT_PREFETCH: u32 = 100;
/// Highest `prefetch`, nsqd's default `--max-rdy-count`.
pub const MAX_PREFETCH: u32 = 2500;

/// The plugin's settings, from `config:` in gateway.yaml. Values that do not
/// parse keep their defaults (the README lists every key).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub limits: Limits,
    /// Most simultaneous subscriptions per connection.
    pub max_subscriptions: usize,
    /// Ready count of a subscription without a `prefetch-count` header.
    pub prefetch: u32,
    /// Shared channel for `/queue/<t>` without a `channel` header.
    pub queue_channel: String,
    /// The server's heart-beat offer `(can send every, wants every)` in ms.
    pub heart_beat: (u64, u64),
    /// A client is dead after `grace` times its negotiated interval of silence.
    pub heart_beat_grace: f64,
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
            max_subscriptions: 16,
            prefetch: DEFAULT_PREFETCH,
            queue_channel: "stomp".into(),
            heart_beat: (10_000, 10_000),
            heart_beat_grace: 2.0,
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
    pub fn from_config(config: &[(String, String)]) -> Settings {
        let mut s = Settings::default();
        for (key, value) in config {
            let v = value.trim();
            match key.as_str() {
                "max_frame_bytes" => set(&mut s.limits.max_frame, v, 256),
                "max_headers" => set(&mut s.limits.max_headers, v, 4),
                "max_header_bytes" => set(&mut s.limits.max_header_len, v, 64),
                "max_subscriptions" => set(&mut s.max_subscriptions, v, 1),
                "prefetch" => {
                    if let Ok(n) = v.parse::<u32>() {
                        s.prefetch = n.clamp(1, MAX_PREFETCH);
                    }
                }
                "queue_channel" if !v.is_empty() => s.queue_channel = v.to_string(),
                "heart_beat" => {
                    if let Some(hb) = parse_heart_beat(v) {
                        s.heart_beat = hb;
                    }
                }
                "heart_beat_grace" => {
                    if let Ok(g) = v.parse::<f64>()
                        && g.is_finite()
                        && g >= 1.0
                    {
                        s.heart_beat_grace = g;
                    }
                }
                "connect_timeout_ms" => set(&mut s.connect_timeout_ms, v, 0),
                "nack_delay_ms" => set(&mut s.nack_delay_ms, v, 0),
                "max_transactions" => set(&mut s.max_transactions, v, 0),
                "max_transaction_bytes" => set(&mut s.max_transaction_bytes, v, 0),
                "login" => s.login = Some(value.clone()),
                "passcode" => s.passcode = Some(value.clone()),
                _ => {}
            }
        }
        s
    }
}

/// Parses `v` into `slot` if it is a number of at least `min`.
fn set<T: std::str::FromStr + PartialOrd + Copy + TryFrom<u32>>(slot: &mut T, v: &str, min: u32) {
    let Ok(min) = T::try_from(min) else { return };
    if let Ok(n) = v.parse::<T>()
        && n >= min
    {
        *slot = n;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_config() {
        let cfg = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(Settings::from_config(&[]), Settings::default());
        let s = Settings::from_config(&cfg(&[
            ("max_frame_bytes", "4096"),
            ("max_headers", "8"),
            ("max_header_bytes", "128"),
            ("max_subscriptions", "2"),
            ("prefetch", "99999"),
            ("queue_channel", "workers"),
            ("heart_beat", "500, 1000"),
            ("heart_beat_grace", "1.5"),
            ("nack_delay_ms", "250"),
        ]));
        assert_eq!(s.limits.max_frame, 4096);
        assert_eq!(s.limits.max_headers, 8);
        assert_eq!(s.limits.max_header_len, 128);
        assert_eq!(s.max_subscriptions, 2);
        assert_eq!(s.prefetch, MAX_PREFETCH);
        assert_eq!(s.queue_channel, "workers");
        assert_eq!(s.heart_beat, (500, 1000));
        assert_eq!(s.heart_beat_grace, 1.5);
        assert_eq!(s.nack_delay_ms, 250);
        // Nonsense keeps the defaults.
        let s = Settings::from_config(&cfg(&[
            ("max_frame_bytes", "-1"),
            ("max_headers", "x"),
            ("heart_beat", "1"),
            ("heart_beat_grace", "0.5"),
            ("prefetch", "0"),
        ]));
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.heart_beat, (10_000, 10_000));
        assert_eq!(s.heart_beat_grace, 2.0);
        assert_eq!(s.prefetch, 1);
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
        assert!(ephemeral_channel(u64::MAX, u32::MAX).len() <= 64);
        assert_eq!(AckMode::parse(Some("client")), Some(AckMode::Client));
        assert_eq!(AckMode::parse(Some("bogus")), None);
    }
}

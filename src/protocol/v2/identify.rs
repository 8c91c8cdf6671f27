//! IDENTIFY negotiation, pure: decodes the client's JSON like Go's
//! `encoding/json` would for nsqd's `identifyDataV2`, applies nsqd's ranges
//! and defaults to each setting, and builds the answer: `OK`, or with
//! `feature_negotiation` the JSON object nsqd sends, key for key and in the
//! same order. `tls_v1` is granted when the server has a certificate and
//! the connection is not TLS already.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ErrorCode, ProtocolError};

/// The IDENTIFY body as sent. Every field is optional: a missing or `null`
/// field means "use the default", as zero values do in nsqd. Unknown fields
/// are ignored, as Go does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IdentifyData {
    /// Client-chosen identifier, shown in stats.
    pub client_id: Option<String>,
    /// Client host name, shown in stats.
    pub hostname: Option<String>,
    /// ms; -1 disables heartbeats, 0 keeps the default.
    pub heartbeat_interval: Option<i64>,
    /// bytes; -1 disables buffering, 0 keeps the default.
    pub output_buffer_size: Option<i64>,
    /// ms; -1 disables the flush timer, 0 keeps the default.
    pub output_buffer_timeout: Option<i64>,
    /// Whether the client wants the JSON answer.
    pub feature_negotiation: Option<bool>,
    /// TLS request; granted when `IdentifyConfig::tls`.
    pub tls_v1: Option<bool>,
    /// Deflate request.
    pub deflate: Option<bool>,
    /// Requested deflate level (1-9); capped by `max-deflate-level`.
    pub deflate_level: Option<i64>,
    /// Snappy request.
    pub snappy: Option<bool>,
    /// Percentage (0-99) of messages to deliver; 0 delivers all.
    pub sample_rate: Option<i32>,
    /// Client library and version, shown in stats.
    pub user_agent: Option<String>,
    /// ms; server-side in-flight timeout for this client, 0 keeps the default.
    pub msg_timeout: Option<i64>,
}

impl IdentifyData {
    /// Decodes the body; any JSON error is nsqd's fatal
    /// `E_BAD_BODY IDENTIFY failed to decode JSON body`. A `null` body is
    /// accepted as empty, as Go does.
    pub fn from_json(body: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice::<Option<IdentifyData>>(body)
            .map(Option::unwrap_or_default)
            .map_err(|_| {
                ProtocolError::new(ErrorCode::BadBody, "IDENTIFY failed to decode JSON body")
            })
    }
}

/// The server options IDENTIFY is negotiated against (nsqd's flag names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyConfig {
    /// `--client-timeout`; the default heartbeat interval is half of it.
    pub client_timeout: Duration,
    /// `--max-heartbeat-interval`.
    pub max_heartbeat_interval: Duration,
    /// `--output-buffer-timeout`: the default flush timer.
    pub output_buffer_timeout: Duration,
    /// `--min-output-buffer-timeout`.
    pub min_output_buffer_timeout: Duration,
    /// `--max-output-buffer-timeout`.
    pub max_output_buffer_timeout: Duration,
    /// `--max-output-buffer-size`.
    pub max_output_buffer_size: u64,
    /// `--msg-timeout`: the default in-flight timeout.
    pub msg_timeout: Duration,
    /// `--max-msg-timeout`.
    pub max_msg_timeout: Duration,
    /// `--max-rdy-count`, reported to the client.
    pub max_rdy_count: u64,
    /// `--max-deflate-level`.
    pub max_deflate_level: i32,
    /// `--deflate`: whether deflate may be negotiated.
    pub deflate: bool,
    /// `--snappy`: whether snappy may be negotiated.
    pub snappy: bool,
    /// Reported as `version`.
    pub version: String,
    /// An auth server is configured: reported as `auth_required`, and the
    /// client must AUTH before it publishes or subscribes.
    pub auth_required: bool,
    /// Whether `tls_v1` may be granted: the server has a certificate and
    /// the connection is not TLS already.
    pub tls: bool,
}

impl Default for IdentifyConfig {
    /// nsqd's defaults.
    fn default() -> Self {
        IdentifyConfig {
            client_timeout: Duration::from_secs(60),
            max_heartbeat_interval: Duration::from_secs(60),
            output_buffer_timeout: Duration::from_millis(250),
            min_output_buffer_timeout: Duration::from_millis(25),
            max_output_buffer_timeout: Duration::from_secs(30),
            max_output_buffer_size: 64 * 1024,
            msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_rdy_count: 2500,
            max_deflate_level: 6,
            deflate: true,
            snappy: true,
            version: env!("CARGO_PKG_VERSION").to_string(),
            auth_required: false,
            tls: false,
        }
    }
}

/// nsqd's default output buffer size (`defaultBufferSize`).
pub const DEFAULT_OUTPUT_BUFFER_SIZE: usize = 16 * 1024;

/// The per-connection settings IDENTIFY controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// `None` when heartbeats are disabled (`-1`): no heartbeats are sent
    /// and reads have no deadline.
    pub heartbeat_interval: Option<Duration>,
    /// Message frames are buffered up to this many bytes before a write.
    pub output_buffer_size: usize,
    /// Longest a buffered message frame waits; `None` means no timer.
    pub output_buffer_timeout: Option<Duration>,
    /// In-flight timeout for messages delivered to this client.
    pub msg_timeout: Duration,
    /// Percentage of messages delivered (0 = all).
    pub sample_rate: u8,
}

impl ClientSettings {
    /// What a client gets before (or without) IDENTIFY, as in nsqd.
    pub fn defaults(cfg: &IdentifyConfig) -> Self {
        ClientSettings {
            heartbeat_interval: non_zero(cfg.client_timeout / 2),
            output_buffer_size: DEFAULT_OUTPUT_BUFFER_SIZE,
            output_buffer_timeout: non_zero(cfg.output_buffer_timeout),
            msg_timeout: cfg.msg_timeout,
            sample_rate: 0,
        }
    }
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// Stream compression switched on after the IDENTIFY answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw deflate at this level.
    Deflate(u32),
    /// Snappy framing format.
    Snappy,
}

/// The result of a successful IDENTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Settings for the rest of the connection.
    pub settings: ClientSettings,
    /// The response frame's data: `OK` or the negotiated JSON.
    pub response: Vec<u8>,
    /// Whether to upgrade to TLS after sending `response` in the clear; the
    /// session then sends one `OK` inside TLS (before any compression).
    pub tls: bool,
    /// Compression to switch to after sending `response` uncompressed; the
    /// session then sends one `OK` through the compressed stream.
    pub compression: Option<Compression>,
}

/// The JSON nsqd answers with `feature_negotiation`, fields in nsqd's order.
#[derive(Serialize)]
struct NegotiatedJson<'a> {
    max_rdy_count: u64,
    version: &'a str,
    max_msg_timeout: u64,
    msg_timeout: u64,
    tls_v1: bool,
    deflate: bool,
    deflate_level: i64,
    max_deflate_level: i32,
    snappy: bool,
    sample_rate: i32,
    auth_required: bool,
    output_buffer_size: usize,
    output_buffer_timeout: u64,
}

fn bad_body(text: String) -> ProtocolError {
    ProtocolError::new(ErrorCode::BadBody, format!("IDENTIFY {text}"))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Applies an IDENTIFY to `current` settings, with nsqd's ranges and error
/// texts, and builds the answer.
pub fn negotiate(
    data: &IdentifyData,
    current: &ClientSettings,
    cfg: &IdentifyConfig,
) -> Result<Negotiated, ProtocolError> {
    let mut s = current.clone();

    match data.heartbeat_interval.unwrap_or(0) {
        -1 => s.heartbeat_interval = None,
        0 => {}
        v if v >= 1000 && v <= ms(cfg.max_heartbeat_interval) => {
            s.heartbeat_interval = Some(Duration::from_millis(v as u64))
        }
        v => return Err(bad_body(format!("heartbeat interval ({v}) is invalid"))),
    }

    match data.output_buffer_timeout.unwrap_or(0) {
        -1 => s.output_buffer_timeout = None,
        0 => {}
        v if v >= ms(cfg.min_output_buffer_timeout) && v <= ms(cfg.max_output_buffer_timeout) => {
            s.output_buffer_timeout = Some(Duration::from_millis(v as u64))
        }
        v => return Err(bad_body(format!("output buffer timeout ({v}) is invalid"))),
    }

    match data.output_buffer_size.unwrap_or(0) {
        -1 => {
            s.output_buffer_size = 1;
            s.output_buffer_timeout = None;
        }
        0 => {}
        v if v >= 64 && v as u64 <= cfg.max_output_buffer_size => s.output_buffer_size = v as usize,
        v => return Err(bad_body(format!("output buffer size ({v}) is invalid"))),
    }

    match data.sample_rate.unwrap_or(0) {
        v @ 0..=99 => s.sample_rate = v as u8,
        v => return Err(bad_body(format!("sample rate ({v}) is invalid"))),
    }

    match data.msg_timeout.unwrap_or(0) {
        0 => {}
        v if v >= 1000 && v <= ms(cfg.max_msg_timeout) => {
            s.msg_timeout = Duration::from_millis(v as u64)
        }
        v => return Err(bad_body(format!("msg timeout ({v}) is invalid"))),
    }

    if !data.feature_negotiation.unwrap_or(false) {
        return Ok(Negotiated {
            settings: s,
            response: b"OK".to_vec(),
            tls: false,
            compression: None,
        });
    }

    let deflate = cfg.deflate && data.deflate.unwrap_or(false);
    let mut deflate_level: i64 = 6;
    if deflate && data.deflate_level.unwrap_or(0) > 0 {
        deflate_level = data.deflate_level.unwrap_or(6);
    }
    deflate_level = deflate_level.min(i64::from(cfg.max_deflate_level));
    let snappy = cfg.snappy && data.snappy.unwrap_or(false);
    if deflate && snappy {
        return Err(ProtocolError::new(
            ErrorCode::IdentifyFailed,
            "cannot enable both deflate and snappy compression",
        ));
    }

    let tls = cfg.tls && data.tls_v1.unwrap_or(false);
    let json = NegotiatedJson {
        max_rdy_count: cfg.max_rdy_count,
        version: &cfg.version,
        max_msg_timeout: ms(cfg.max_msg_timeout) as u64,
        msg_timeout: ms(s.msg_timeout) as u64,
        tls_v1: tls,
        deflate,
        deflate_level,
        max_deflate_level: cfg.max_deflate_level,
        snappy,
        sample_rate: i32::from(s.sample_rate),
        auth_required: cfg.auth_required,
        output_buffer_size: s.output_buffer_size,
        output_buffer_timeout: s.output_buffer_timeout.map_or(0, |d| ms(d) as u64),
    };
    let response = serde_json::to_vec(&json).map_err(|e| {
        ProtocolError::new(ErrorCode::IdentifyFailed, format!("IDENTIFY failed {e}"))
    })?;
    let compression = if snappy {
        Some(Compression::Snappy)
    } else if deflate {
        // Go's flate accepts levels 0-9 here; clamp in case the flag allows more.
        Some(Compression::Deflate(deflate_level.clamp(0, 9) as u32))
    } else {
        None
    };
    Ok(Negotiated {
        settings: s,
        response,
        tls,
        compression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IdentifyConfig {
        IdentifyConfig {
            version: "1.3.0".into(),
            ..Default::default()
        }
    }

    fn run(json: &str) -> Result<Negotiated, ProtocolError> {
        let c = cfg();
        let data = IdentifyData::from_json(json.as_bytes())?;
        negotiate(&data, &ClientSettings::defaults(&c), &c)
    }

    fn err(json: &str) -> String {
        let e = run(json).unwrap_err();
        assert!(e.fatal);
        e.to_wire()
    }

    #[test]
    fn defaults_are_nsqds() {
        let s = ClientSettings::defaults(&cfg());
        assert_eq!(s.heartbeat_interval, Some(Duration::from_secs(30)));
        assert_eq!(s.output_buffer_size, 16384);
        assert_eq!(s.output_buffer_timeout, Some(Duration::from_millis(250)));
        assert_eq!(s.msg_timeout, Duration::from_secs(60));
    }

    #[test]
    fn without_negotiation_answers_ok() {
        let n = run(r#"{"client_id":"c","hostname":"h","user_agent":"u/1"}"#).unwrap();
        assert_eq!(n.response, b"OK");
        assert_eq!(n.compression, None);
        let n = run("null").unwrap();
        assert_eq!(n.response, b"OK");
        let n = run(r#"{"unknown":[1,2],"heartbeat_interval":null}"#).unwrap();
        assert_eq!(n.settings, ClientSettings::defaults(&cfg()));
    }

    #[test]
    fn negotiated_json_is_nsqds_byte_for_byte() {
        let n = run(r#"{"feature_negotiation":true}"#).unwrap();
        assert_eq!(
            String::from_utf8(n.response).unwrap(),
            r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}"#
        );
        let n = run(
            r#"{"feature_negotiation":true,"tls_v1":true,"msg_timeout":5000,"sample_rate":10,"output_buffer_size":100,"output_buffer_timeout":-1}"#,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&n.response).unwrap();
        assert_eq!(v["tls_v1"], false);
        assert_eq!(v["msg_timeout"], 5000);
        assert_eq!(v["sample_rate"], 10);
        assert_eq!(v["output_buffer_size"], 100);
        assert_eq!(v["output_buffer_timeout"], 0);
    }

    #[test]
    fn ranges_and_sentinels() {
        let n = run(r#"{"heartbeat_interval":-1}"#).unwrap();
        assert_eq!(n.settings.heartbeat_interval, None);
        let n = run(r#"{"heartbeat_interval":1000}"#).unwrap();
        assert_eq!(n.settings.heartbeat_interval, Some(Duration::from_secs(1)));
        let n = run(r#"{"heartbeat_interval":60000}"#).unwrap();
        assert_eq!(n.settings.heartbeat_interval, Some(Duration::from_secs(60)));
        assert_eq!(
            err(r#"{"heartbeat_interval":999}"#),
            "E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid"
        );
        assert_eq!(
            err(r#"{"heartbeat_interval":60001}"#),
            "E_BAD_BODY IDENTIFY heartbeat interval (60001) is invalid"
        );
        let n = run(r#"{"output_buffer_size":-1,"output_buffer_timeout":100}"#).unwrap();
        assert_eq!(n.settings.output_buffer_size, 1);
        assert_eq!(n.settings.output_buffer_timeout, None);
        let n = run(r#"{"output_buffer_size":64,"output_buffer_timeout":25}"#).unwrap();
        assert_eq!(n.settings.output_buffer_size, 64);
        assert_eq!(
            n.settings.output_buffer_timeout,
            Some(Duration::from_millis(25))
        );
        assert_eq!(
            err(r#"{"output_buffer_size":63}"#),
            "E_BAD_BODY IDENTIFY output buffer size (63) is invalid"
        );
        assert_eq!(
            err(r#"{"output_buffer_size":65537}"#),
            "E_BAD_BODY IDENTIFY output buffer size (65537) is invalid"
        );
        assert_eq!(
            err(r#"{"output_buffer_timeout":24}"#),
            "E_BAD_BODY IDENTIFY output buffer timeout (24) is invalid"
        );
        assert_eq!(
            err(r#"{"output_buffer_timeout":30001}"#),
            "E_BAD_BODY IDENTIFY output buffer timeout (30001) is invalid"
        );
        assert_eq!(
            err(r#"{"sample_rate":100}"#),
            "E_BAD_BODY IDENTIFY sample rate (100) is invalid"
        );
        assert_eq!(
            err(r#"{"sample_rate":-1}"#),
            "E_BAD_BODY IDENTIFY sample rate (-1) is invalid"
        );
        assert_eq!(
            err(r#"{"msg_timeout":999}"#),
            "E_BAD_BODY IDENTIFY msg timeout (999) is invalid"
        );
        assert_eq!(
            err(r#"{"msg_timeout":900001}"#),
            "E_BAD_BODY IDENTIFY msg timeout (900001) is invalid"
        );
        let n = run(r#"{"msg_timeout":900000}"#).unwrap();
        assert_eq!(n.settings.msg_timeout, Duration::from_secs(900));
    }

    #[test]
    fn bad_json_types_fail_like_go() {
        for body in [
            r#"{"heartbeat_interval":"x"}"#,
            r#"{"sample_rate":1.5}"#,
            "[1]",
            "{",
        ] {
            assert_eq!(err(body), "E_BAD_BODY IDENTIFY failed to decode JSON body");
        }
    }

    #[test]
    fn compression_negotiation() {
        let n = run(r#"{"feature_negotiation":true,"deflate":true}"#).unwrap();
        assert_eq!(n.compression, Some(Compression::Deflate(6)));
        let n = run(r#"{"feature_negotiation":true,"deflate":true,"deflate_level":9}"#).unwrap();
        assert_eq!(
            n.compression,
            Some(Compression::Deflate(6)),
            "capped by max"
        );
        let n = run(r#"{"feature_negotiation":true,"deflate":true,"deflate_level":2}"#).unwrap();
        assert_eq!(n.compression, Some(Compression::Deflate(2)));
        let v: serde_json::Value = serde_json::from_slice(&n.response).unwrap();
        assert_eq!(
            (v["deflate"].as_bool(), v["deflate_level"].as_i64()),
            (Some(true), Some(2))
        );
        let n = run(r#"{"feature_negotiation":true,"snappy":true}"#).unwrap();
        assert_eq!(n.compression, Some(Compression::Snappy));
        assert_eq!(
            err(r#"{"feature_negotiation":true,"snappy":true,"deflate":true}"#),
            "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression"
        );
        // Disabled on the server: answered false, not an error.
        let c = IdentifyConfig {
            deflate: false,
            snappy: false,
            ..cfg()
        };
        let data = IdentifyData::from_json(
            br#"{"feature_negotiation":true,"snappy":true,"deflate":true}"#,
        )
        .unwrap();
        let n = negotiate(&data, &ClientSettings::defaults(&c), &c).unwrap();
        assert_eq!(n.compression, None);
        // Compression without feature negotiation is not switched on.
        let n = run(r#"{"deflate":true}"#).unwrap();
        assert_eq!((n.response.as_slice(), n.compression), (&b"OK"[..], None));
    }
}

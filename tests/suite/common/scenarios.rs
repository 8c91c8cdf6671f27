//! The NSQ client scenarios, written once and run with every real client
//! (pynsq and nsqjs): each starts a gateway, runs the client's script for the
//! scenario and checks its JSON report against what nsqd does. That includes
//! deflate and snappy stream compression negotiated by IDENTIFY, checked from
//! both ends: the client's view of the IDENTIFY answer and the stream it
//! reads through, and the gateway's `/stats` flags for the connection.

use std::time::Duration;

use nsq_gateway::config::Config;

use super::clients::{self, expect_success, ints, strings, unique_topic};

/// Hard limit on one client process; each scenario bounds itself well below.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(45);

/// A real NSQ client library with a scenario script in `tests/clients/`.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    /// pynsq's tornado `Writer` and `Reader` (`pynsq_scenarios.py`).
    Pynsq,
    /// nsqjs's `Writer` and `Reader` (`nsqjs_scenarios.js`).
    Nsqjs,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Pynsq => "pynsq",
            Client::Nsqjs => "nsqjs",
        }
    }

    /// Runs `scenario` against a fresh gateway and returns the report.
    pub async fn run(self, scenario: &str, extra: &[&str]) -> serde_json::Value {
        self.run_with(super::test_config(), scenario, extra).await
    }

    /// `run` against a gateway with `config`.
    pub async fn run_with(
        self,
        config: Config,
        scenario: &str,
        extra: &[&str],
    ) -> serde_json::Value {
        let server = super::TestServer::start(config).await;
        let topic = unique_topic(&format!("{}_{scenario}", self.name()));
        let mut args = vec![
            scenario.to_owned(),
            "--nsqd".to_owned(),
            server.tcp_addr.to_string(),
            "--http".to_owned(),
            server.http_addr.to_string(),
            "--topic".to_owned(),
            topic,
            "--timeout".to_owned(),
            "15".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = match self {
            Client::Pynsq => clients::run_python("pynsq_scenarios.py", args, HARD_TIMEOUT).await,
            Client::Nsqjs => clients::run_node("nsqjs_scenarios.js", args, HARD_TIMEOUT).await,
        };
        let result = expect_success(&out);
        eprintln!("{} {scenario}: {result}", self.name());
        drop(server);
        result
    }
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Publish responses, for clients that report them.
fn check_responses(r: &serde_json::Value, expected: usize) {
    if !r["responses"].is_null() {
        assert_eq!(strings(&r["responses"]), vec!["OK"; expected], "{r}");
    }
}

pub async fn pub_then_consume(c: Client) {
    let r = c.run("pub", &["--count", "10"]).await;
    let sent = strings(&r["sent"]);
    assert_eq!(sent.len(), 10);
    check_responses(&r, 10);
    assert_eq!(sorted(strings(&r["received"])), sorted(sent), "{r}");
    assert_eq!(ints(&r["attempts"]), vec![1; 10], "{r}");
}

pub async fn mpub_then_consume(c: Client) {
    let r = c.run("mpub", &["--count", "25"]).await;
    let sent = strings(&r["sent"]);
    assert_eq!(sent.len(), 25);
    check_responses(&r, 1);
    assert_eq!(sorted(strings(&r["received"])), sorted(sent), "{r}");
    assert_eq!(ints(&r["attempts"]), vec![1; 25], "{r}");
}

pub async fn dpub_arrives_no_earlier_than_its_delay(c: Client) {
    let r = c.run("dpub", &["--delay-ms", "1500"]).await;
    check_responses(&r, 1);
    assert_eq!(strings(&r["received"]), vec!["deferred"], "{r}");
    assert_eq!(ints(&r["attempts"]), vec![1], "{r}");
    let elapsed = r["elapsed_ms"].as_f64().unwrap_or(-1.0);
    assert!(
        (1500.0..1500.0 + 3000.0).contains(&elapsed),
        "DPUB 1500ms delivered after {elapsed}ms: {r}"
    );
}

pub async fn req_with_delay_redelivers_with_attempts_2(c: Client) {
    let r = c.run("req", &["--delay-ms", "1000"]).await;
    assert_eq!(
        strings(&r["received"]),
        vec!["requeue-me", "requeue-me"],
        "{r}"
    );
    assert_eq!(ints(&r["attempts"]), vec![1, 2], "{r}");
    let gap = r["redelivery_ms"].as_f64().unwrap_or(-1.0);
    assert!(
        (1000.0..1000.0 + 3000.0).contains(&gap),
        "REQ 1000ms redelivered after {gap}ms: {r}"
    );
}

pub async fn touch_keeps_message_beyond_msg_timeout(c: Client) {
    let args = [
        "--msg-timeout-ms",
        "1000",
        "--hold-ms",
        "2500",
        "--touch-every-ms",
        "300",
        "--settle-ms",
        "1500",
    ];
    let r = c.run("touch", &args).await;
    assert_eq!(r["deliveries"], 1, "touched message was redelivered: {r}");
    assert_eq!(ints(&r["attempts"]), vec![1], "{r}");
    assert!(r["held_ms"].as_f64().unwrap_or(0.0) >= 2500.0, "{r}");
    assert!(r["touches"].as_i64().unwrap_or(0) >= 5, "{r}");
}

pub async fn unanswered_message_times_out_and_is_redelivered(c: Client) {
    let r = c.run("timeout", &["--msg-timeout-ms", "1000"]).await;
    assert_eq!(
        strings(&r["received"]),
        vec!["time-me-out", "time-me-out"],
        "{r}"
    );
    assert_eq!(ints(&r["attempts"]), vec![1, 2], "{r}");
    let gap = r["redelivery_ms"].as_f64().unwrap_or(-1.0);
    // The client stamps the first delivery slightly after the server sent it.
    assert!(
        (900.0..1000.0 + 3000.0).contains(&gap),
        "msg_timeout 1000ms redelivered after {gap}ms: {r}"
    );
}

pub async fn two_channels_each_get_every_message(c: Client) {
    let r = c.run("two_channels", &["--count", "20"]).await;
    let sent = sorted(strings(&r["sent"]));
    assert_eq!(sent.len(), 20);
    assert_eq!(sorted(strings(&r["channel_a"])), sent, "{r}");
    assert_eq!(sorted(strings(&r["channel_b"])), sent, "{r}");
}

/// Stream compression a client asks for in IDENTIFY.
#[derive(Clone, Copy, Debug)]
pub enum Codec {
    /// Raw deflate, asking for this `deflate_level`.
    Deflate(u32),
    Snappy,
}

impl Codec {
    fn args(self) -> Vec<String> {
        match self {
            Codec::Deflate(level) => vec![
                "--compression".into(),
                "deflate".into(),
                "--deflate-level".into(),
                level.to_string(),
            ],
            Codec::Snappy => vec!["--compression".into(), "snappy".into()],
        }
    }
}

impl Client {
    /// The class of the stream the client reads through once `codec` is on.
    fn compressed_stream(self, codec: Codec) -> &'static str {
        match (self, codec) {
            (Client::Pynsq, Codec::Deflate(_)) => "DeflateSocket",
            (Client::Pynsq, Codec::Snappy) => "SnappySocket",
            (Client::Nsqjs, Codec::Deflate(_)) => "InflateRaw",
            (Client::Nsqjs, Codec::Snappy) => "UnsnappyStream",
        }
    }

    /// The class of the stream the client reads through uncompressed.
    fn plain_stream(self) -> &'static str {
        match self {
            Client::Pynsq => "socket",
            Client::Nsqjs => "Socket",
        }
    }
}

/// Messages the `compress` scenario publishes besides its `--count` small
/// ones: every byte value, 100 KB of repetitive text, and an MPUB of five
/// (two short, one of NUL/CR/LF/0xff, 150 KB of noise, 100 KB of text).
const COMPRESS_EXTRA: usize = 7;

/// What the `compress` scenario should find, given what the gateway allows.
struct Expect {
    /// The compression the client asked for.
    codec: Codec,
    /// The IDENTIFY answer's and `/stats`' `deflate` and `snappy`.
    deflate: bool,
    snappy: bool,
    /// The IDENTIFY answer's `deflate_level` (6 unless deflate was granted).
    deflate_level: u32,
    /// Heartbeat interval to ask for (pynsq only), in seconds.
    heartbeat_s: Option<u32>,
}

async fn compress_scenario(c: Client, config: Config, e: Expect) {
    let count = 5;
    let mut args = e.codec.args();
    args.extend(["--count".to_owned(), count.to_string()]);
    if let Some(hb) = e.heartbeat_s {
        args.extend(["--heartbeat-s".to_owned(), hb.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = c.run_with(config, "compress", &args).await;

    // Intact: every body, byte for byte ("length:sha256"), exactly once.
    let sent = strings(&r["sent"]);
    assert_eq!(sent.len(), count + COMPRESS_EXTRA, "{r}");
    let lengths: Vec<&str> = sent.iter().filter_map(|d| d.split(':').next()).collect();
    for big in ["4096", "100000", "150000"] {
        assert!(lengths.contains(&big), "no {big}-byte body in {sent:?}");
    }
    check_responses(&r, count + 2 + 1);
    assert_eq!(sorted(strings(&r["received"])), sorted(sent), "{r}");

    // Negotiated, as the client saw it and as the gateway reports it.
    let granted = e.deflate || e.snappy;
    let identify = serde_json::json!({
        "deflate": e.deflate,
        "deflate_level": e.deflate_level,
        "snappy": e.snappy,
    });
    assert_eq!(r["writer_identify"], identify, "{r}");
    assert_eq!(r["reader_identify"], identify, "{r}");
    let stream = if granted {
        c.compressed_stream(e.codec)
    } else {
        c.plain_stream()
    };
    assert_eq!(strings(&r["writer_stream"]), vec![stream], "{r}");
    assert_eq!(strings(&r["reader_stream"]), vec![stream], "{r}");
    assert_eq!(
        r["producer_stats"],
        serde_json::json!([{"deflate": e.deflate, "snappy": e.snappy}]),
        "{r}"
    );
    // One connection delivered everything: it was never dropped and redone.
    assert_eq!(
        r["consumer_stats"],
        serde_json::json!([{
            "deflate": e.deflate,
            "snappy": e.snappy,
            "message_count": count + COMPRESS_EXTRA,
        }]),
        "{r}"
    );
    if e.heartbeat_s.is_some() {
        assert!(r["heartbeats"].as_i64().unwrap_or(0) >= 2, "{r}");
    }
}

/// Publishes (PUB and MPUB) and consumes over a compressed connection each,
/// small, binary and large bodies; `heartbeat_s` also keeps the reader until
/// it answered two heartbeats.
pub async fn compressed_round_trip(c: Client, codec: Codec, heartbeat_s: Option<u32>) {
    let config = super::test_config();
    // The gateway caps the level a client asks for at `max_deflate_level`.
    let max_level = u32::try_from(config.max_deflate_level).unwrap_or(0);
    let expect = Expect {
        codec,
        deflate: matches!(codec, Codec::Deflate(_)),
        snappy: matches!(codec, Codec::Snappy),
        deflate_level: match codec {
            Codec::Deflate(level) => level.min(max_level),
            Codec::Snappy => 6,
        },
        heartbeat_s,
    };
    compress_scenario(c, config, expect).await;
}

/// A gateway started with `--deflate=false --snappy=false` answers IDENTIFY
/// with both off, and the client carries on uncompressed.
pub async fn refused_compression_falls_back_to_plain(c: Client, codec: Codec) {
    let config = Config {
        deflate: false,
        snappy: false,
        ..super::test_config()
    };
    let expect = Expect {
        codec,
        deflate: false,
        snappy: false,
        deflate_level: 6,
        heartbeat_s: None,
    };
    compress_scenario(c, config, expect).await;
}

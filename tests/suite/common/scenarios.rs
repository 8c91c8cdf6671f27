//! The NSQ client scenarios, written once and run with every real client
//! (pynsq and nsqjs): each starts a gateway, runs the client's script for the
//! scenario and checks its JSON report against what nsqd does.

use std::time::Duration;

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
        let server = super::start_server(super::test_config()).await;
        let topic = unique_topic(&format!("{}_{scenario}", self.name()));
        let mut args = vec![
            scenario.to_owned(),
            "--nsqd".to_owned(),
            server.tcp_addr.to_string(),
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

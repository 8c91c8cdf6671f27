//! pynsq (the official Python client, tornado IOLoop `Writer` and `Reader`)
//! against nsq-gateway started in-process on port 0: PUB, MPUB, DPUB, consume,
//! REQ with a delay, TOUCH past msg_timeout, timeout redelivery and fan-out to
//! two channels, each checked against what nsqd does; and the same publish and
//! consume over deflate (at a `deflate_level`) and snappy (python-snappy)
//! stream compression, with heartbeats answered through the compressed
//! streams, and against a gateway that refuses compression. The scenarios
//! live in `tests/clients/pynsq_scenarios.py`; the harness bootstraps `.venv`.

use crate::common;

use std::time::Duration;

use common::clients;
use common::scenarios::{self, Client, Codec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_pub_then_consume() {
    scenarios::pub_then_consume(Client::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_mpub_then_consume() {
    scenarios::mpub_then_consume(Client::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_dpub_arrives_no_earlier_than_its_delay() {
    scenarios::dpub_arrives_no_earlier_than_its_delay(Client::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_req_with_delay_redelivers_with_attempts_2() {
    scenarios::req_with_delay_redelivers_with_attempts_2(Client::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_touch_keeps_message_beyond_msg_timeout() {
    scenarios::touch_keeps_message_beyond_msg_timeout(Client::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_unanswered_message_times_out_and_is_redelivered() {
    scenarios::unanswered_message_times_out_and_is_redelivered(Client::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_two_channels_each_get_every_message() {
    scenarios::two_channels_each_get_every_message(Client::Pynsq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_deflate_round_trips_intact() {
    scenarios::compressed_round_trip(Client::Pynsq, Codec::Deflate(3), Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_snappy_round_trips_intact() {
    scenarios::compressed_round_trip(Client::Pynsq, Codec::Snappy, Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_snappy_refused_falls_back_to_plain() {
    scenarios::refused_compression_falls_back_to_plain(Client::Pynsq, Codec::Snappy).await;
}

#[test]
fn harness_run_client_kills_a_hung_client() {
    let start = std::time::Instant::now();
    let out = clients::run_client("sleep", &["30"], Duration::from_millis(200));
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains(clients::KILLED_MARKER));
}

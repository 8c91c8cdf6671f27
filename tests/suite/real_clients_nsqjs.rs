//! nsqjs (the Node.js client, `nsq.Writer` and `nsq.Reader`) against
//! nsq-gateway started in-process on port 0: PUB, MPUB, DPUB, consume, REQ
//! with a delay, TOUCH past msg_timeout, timeout redelivery and fan-out to two
//! channels, each checked against what nsqd does; the same publish and consume
//! over deflate (asking for a level above `max_deflate_level`) and snappy
//! (snappystream) stream compression, and against a gateway that refuses
//! compression; plus the cross-client case where pynsq publishes and nsqjs
//! consumes. The scenarios live in `tests/clients/nsqjs_scenarios.js`; the
//! harness bootstraps `node_modules`.

use crate::common;

use common::clients::{self, expect_success, ints, strings, unique_topic};
use common::scenarios::{self, Client, Codec, HARD_TIMEOUT, sorted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_pub_then_consume() {
    scenarios::pub_then_consume(Client::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_mpub_then_consume() {
    scenarios::mpub_then_consume(Client::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_dpub_arrives_no_earlier_than_its_delay() {
    scenarios::dpub_arrives_no_earlier_than_its_delay(Client::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_req_with_delay_redelivers_with_attempts_2() {
    scenarios::req_with_delay_redelivers_with_attempts_2(Client::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_touch_keeps_message_beyond_msg_timeout() {
    scenarios::touch_keeps_message_beyond_msg_timeout(Client::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_unanswered_message_times_out_and_is_redelivered() {
    scenarios::unanswered_message_times_out_and_is_redelivered(Client::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_two_channels_each_get_every_message() {
    scenarios::two_channels_each_get_every_message(Client::Nsqjs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_deflate_round_trips_intact() {
    // 9 is above the default max_deflate_level: the answer says 6, and nsqjs
    // compresses at the level the answer gives.
    scenarios::compressed_round_trip(Client::Nsqjs, Codec::Deflate(9), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_snappy_round_trips_intact() {
    scenarios::compressed_round_trip(Client::Nsqjs, Codec::Snappy, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqjs_deflate_refused_falls_back_to_plain() {
    scenarios::refused_compression_falls_back_to_plain(Client::Nsqjs, Codec::Deflate(6)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_publishes_nsqjs_consumes() {
    let server = common::TestServer::start(common::test_config()).await;
    let topic = unique_topic("cross_py_js");
    let base = |scenario: &str| {
        vec![
            scenario.to_owned(),
            "--nsqd".to_owned(),
            server.tcp_addr.to_string(),
            "--topic".to_owned(),
            topic.clone(),
            "--count".to_owned(),
            "30".to_owned(),
            "--timeout".to_owned(),
            "15".to_owned(),
        ]
    };
    let published = clients::run_python("pynsq_scenarios.py", base("publish"), HARD_TIMEOUT).await;
    let published = expect_success(&published);
    let consumed = clients::run_node("nsqjs_scenarios.js", base("consume"), HARD_TIMEOUT).await;
    let consumed = expect_success(&consumed);
    let sent = sorted(strings(&published["sent"]));
    assert_eq!(sent.len(), 30);
    assert_eq!(sorted(strings(&consumed["received"])), sent, "{consumed}");
    assert_eq!(ints(&consumed["attempts"]), vec![1; 30], "{consumed}");
}

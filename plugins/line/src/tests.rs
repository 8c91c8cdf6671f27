//! LINE's session against the SDK's recording host: replies, batching of
//! PUBs into one `publish-many`, auto acks as one `finish-many`, limits
//! from `connect-info`, and config validation.

use nsq_sdk::BrokerError;
use nsq_sdk::testing::{Call, Session, message, validate};

use crate::Line;

fn open() -> Session<Line> {
    let mut s = Session::<Line>::open(b"PING", &[("greeting", "false")]);
    assert_eq!(s.text(), "");
    s
}

#[test]
fn greets_unless_told_not_to() {
    let mut s = Session::<Line>::open(b"PING", &[]);
    assert!(s.text().starts_with("OK LINE nsq-gateway"));
}

#[test]
fn consecutive_pubs_to_one_topic_are_one_publish_many() {
    let mut s = open();
    s.data(b"PUB t a\nPUB t b\nPUB u c\nPING\n");
    assert_eq!(s.text(), "OK\nOK\nOK\nPONG\n");
    assert_eq!(
        s.calls(),
        [
            Call::PublishMany {
                topic: "t".into(),
                bodies: vec![b"a".to_vec(), b"b".to_vec()]
            },
            Call::Publish {
                topic: "u".into(),
                body: b"c".to_vec()
            },
        ]
    );
}

#[test]
fn a_refused_batch_is_retried_one_by_one() {
    let mut s = open();
    s.host
        .fail_next("publish-many", BrokerError::PublishFailed("too big".into()));
    s.host
        .fail_next("publish", BrokerError::PublishFailed("too big".into()));
    s.data(b"PUB t a\nPUB t b\n");
    assert_eq!(s.text(), "ERR publish failed: too big\nOK\n");
}

#[test]
fn auto_subscription_acknowledges_a_delivery_with_one_call() {
    let mut s = open();
    s.data(b"SUB t c auto\n");
    assert_eq!(s.text(), "OK subscribed to t/c (auto, RDY 1)\n");
    s.calls();
    s.messages(0, vec![message(1, b"x y"), message(2, b"z\n")]);
    assert_eq!(
        s.text(),
        "MSG 0000000000000001 1 t x y\nMSG 0000000000000002 1 t z\\n\n"
    );
    assert_eq!(
        s.calls(),
        [Call::FinishMany {
            sub: 0,
            ids: vec!["0000000000000001".into(), "0000000000000002".into()]
        }]
    );
}

#[test]
fn rdy_is_bounded_by_the_gateways_max_rdy_count() {
    let mut s = open();
    s.data(b"SUB t c manual\nRDY 2501\nRDY 2500\n");
    assert_eq!(
        s.text(),
        "OK subscribed to t/c (manual, RDY 1)\nERR RDY 2501 is over the maximum 2500\nOK\n"
    );
}

#[test]
fn a_line_over_the_limit_closes_the_connection() {
    let mut s = Session::<Line>::open(b"PUB ", &[("greeting", "false"), ("max_line_bytes", "64")]);
    s.data(&[b'x'; 100]);
    assert_eq!(s.text(), "ERR line too long (max 64 bytes), closing\n");
    assert!(s.host.closed);
}

#[test]
fn auth_errors_point_to_protocols_that_have_auth() {
    let mut s = open();
    s.host.fail_next("publish", BrokerError::AuthRequired);
    s.data(b"PUB t x\n");
    assert!(s.text().contains("LINE has no AUTH"));
}

#[test]
fn config_typos_and_bad_values_are_refused_by_name() {
    assert!(validate::<Line>(&[("greeting", "false"), ("default_rdy", "5")]).is_ok());
    let e =
        validate::<Line>(&[("default_rdy", "many"), ("max_lin_bytes", "9")]).expect_err("refused");
    assert_eq!(
        e.to_string(),
        "config.default_rdy: \"many\" is not a valid u32: invalid digit found in string; \
         config.max_lin_bytes: unknown key"
    );
}

//! Session tests against the SDK's recording host: CONNECT and its errors,
//! SEND with a receipt, SUBSCRIBE with MESSAGE delivery and ACK/NACK in each
//! ack mode (the ACKs of one event as one `finish-many`), transactions,
//! heart-beats and the connect timeout, frames fed one byte at a time, the
//! broker's limits from `connect-info`, and config validation.

use nsq_sdk::testing::{Call, Recorder, Session, connect_info, validate};
use nsq_sdk::{AuthError, BrokerError, Identity, Message};

use super::Stomp;

const ID1: &str = "0123456789abcdef";
const ID2: &str = "0123456789abcde0";
const ID3: &str = "0123456789abcde1";

/// A session after `on-connect` as client 7 at time 1000, with a host set
/// up by `host`. The magic is left out: the frames below are fed whole.
fn open_with(pairs: &[(&str, &str)], host: impl FnOnce(&mut Recorder)) -> Session<Stomp> {
    if let Err(e) = validate::<Stomp>(pairs) {
        panic!("config refused: {e}");
    }
    let mut info = connect_info(b"CONN", pairs);
    info.magic.clear();
    info.client_id = 7;
    let mut h = Recorder::default();
    h.now_ms = 1_000;
    host(&mut h);
    Session::open_with(info, h)
}

fn open(pairs: &[(&str, &str)]) -> Session<Stomp> {
    open_with(pairs, |_| {})
}

/// A connected STOMP 1.2 session without heart-beats, output and calls
/// cleared.
fn connected() -> Session<Stomp> {
    let mut s = open(&[("heart_beat", "0,0")]);
    s.data(b"CONNECT\naccept-version:1.2\n\n\0");
    assert!(s.text().starts_with("CONNECTED\n"));
    s.calls();
    s
}

fn delivery(id: &str, attempts: u16, body: &[u8]) -> Message {
    Message {
        id: id.into(),
        timestamp: 5,
        attempts,
        body: body.to_vec(),
    }
}

/// Every id finished so far, with its subscription, in order.
fn finished(s: &Session<Stomp>) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for c in &s.host.calls {
        match c {
            Call::Finish { sub, id } => out.push((*sub, id.clone())),
            Call::FinishMany { sub, ids } => out.extend(ids.iter().map(|i| (*sub, i.clone()))),
            _ => {}
        }
    }
    out
}

/// Every id requeued so far: (subscription, id, delay).
fn requeued(s: &Session<Stomp>) -> Vec<(u32, String, u32)> {
    let mut out = Vec::new();
    for c in &s.host.calls {
        match c {
            Call::Requeue { sub, id, delay_ms } => out.push((*sub, id.clone(), *delay_ms)),
            Call::RequeueMany { sub, ids, delay_ms } => {
                out.extend(ids.iter().map(|i| (*sub, i.clone(), *delay_ms)))
            }
            _ => {}
        }
    }
    out
}

/// Every publish so far: (topic, body).
fn published(s: &Session<Stomp>) -> Vec<(String, Vec<u8>)> {
    s.host
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Publish { topic, body } => Some((topic.clone(), body.clone())),
            _ => None,
        })
        .collect()
}

/// Every subscribe so far, with the ready count set on it: (topic,
/// channel, ready).
fn subscribed(s: &Session<Stomp>) -> Vec<(String, String, u32)> {
    let mut out: Vec<(String, String, u32)> = Vec::new();
    for c in &s.host.calls {
        match c {
            Call::Subscribe { topic, channel } => out.push((topic.clone(), channel.clone(), 0)),
            Call::SetReady { sub, count } => {
                if let Some(x) = out.get_mut(*sub as usize) {
                    x.2 = *count;
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn connect_answers_connected_and_arms_the_heart_beat() {
    let mut s = open(&[]);
    assert_eq!(s.host.timer, Some(10_000), "the connect timeout is armed");
    s.data(b"CONNECT\naccept-version:1.1,1.2\nheart-beat:5000,20000\n\n\0");
    assert_eq!(
        s.text(),
        "CONNECTED\nversion:1.2\nheart-beat:10000,10000\nserver:nsq-gateway-stomp/0.1\n\
         session:7\n\n\0"
    );
    // The server sends every max(10000, 20000) and expects every
    // max(5000, 10000) with grace 2: both fall due at +20000.
    assert_eq!(s.host.timer, Some(20_000));
    assert!(!s.host.closed && !s.protocol.closed);
}

#[test]
fn the_magic_is_the_start_of_the_first_frame() {
    let mut s = Session::<Stomp>::open(b"CONN", &[("heart_beat", "0,0")]);
    s.data(b"ECT\naccept-version:1.2\n\n\0");
    assert!(s.text().starts_with("CONNECTED\nversion:1.2\n"));
}

#[test]
fn connect_errors_close_with_an_error_frame() {
    let mut s = open(&[]);
    s.data(b"SEND\ndestination:/queue/a\n\nx\0");
    let out = s.text();
    assert!(out.starts_with("ERROR\nmessage:not connected\n"), "{out}");
    assert!(out.contains("version:1.1,1.2\n"), "{out}");
    assert!(s.host.closed && s.protocol.closed);

    let mut s = open(&[]);
    s.data(b"CONNECT\naccept-version:1.0\n\n\0");
    assert!(
        s.text()
            .starts_with("ERROR\nmessage:unsupported protocol version\n")
    );

    let mut s = open(&[("login", "u"), ("passcode", "p")]);
    s.data(b"CONNECT\naccept-version:1.2\nlogin:u\npasscode:x\n\n\0");
    assert!(s.text().starts_with("ERROR\nmessage:access refused\n"));
    assert!(s.host.closed);

    let mut s = open(&[("login", "u"), ("passcode", "p")]);
    s.data(b"CONNECT\naccept-version:1.2\nlogin:u\npasscode:p\n\n\0");
    assert!(s.text().starts_with("CONNECTED\n"));

    let mut s = connected();
    s.data(b"STOMP\naccept-version:1.2\n\n\0");
    assert!(s.text().starts_with("ERROR\nmessage:already connected\n"));
}

#[test]
fn frames_fed_one_byte_at_a_time() {
    let mut s = open(&[("heart_beat", "0,0")]);
    let input = b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/queue/t\nreceipt:r1\n\nhi\0";
    for b in input {
        s.data(&[*b]);
    }
    let out = s.text();
    assert!(out.starts_with("CONNECTED\n"), "{out}");
    assert!(out.ends_with("RECEIPT\nreceipt-id:r1\n\n\0"), "{out}");
    assert_eq!(published(&s), vec![("t".to_string(), b"hi".to_vec())]);
}

#[test]
fn send_publishes_and_answers_the_receipt() {
    let mut s = connected();
    s.data(b"SEND\ndestination:/topic/news\nreceipt:77\n\nhello\0");
    assert_eq!(s.text(), "RECEIPT\nreceipt-id:77\n\n\0");
    assert_eq!(published(&s), vec![("news".to_string(), b"hello".to_vec())]);

    s.host.fail_next("publish", BrokerError::InvalidTopicName);
    s.data(b"SEND\ndestination:/queue/bad!\nreceipt:78\n\nx\0");
    let out = s.text();
    assert!(
        out.starts_with("ERROR\nmessage:publish to bad! failed\n"),
        "{out}"
    );
    assert!(out.contains("receipt-id:78\n"), "{out}");
    assert!(out.contains("invalid topic name"), "{out}");
    assert!(s.host.closed);
}

#[test]
fn send_errors() {
    for (frame, message) in [
        (&b"SEND\n\nx\0"[..], "missing destination header"),
        (b"SEND\ndestination:/x/y\n\nx\0", "unknown destination /x/y"),
        (b"SEND\ndestination:/queue/t\n\n\0", "empty message"),
        (
            b"SEND\ndestination:/queue/t\ntransaction:nope\n\nx\0",
            "unknown transaction",
        ),
    ] {
        let mut s = connected();
        s.data(frame);
        let out = s.text();
        assert!(
            out.starts_with(&format!("ERROR\nmessage:{message}\n")),
            "{message}: {out}"
        );
        assert!(s.host.closed && published(&s).is_empty());
        // Input after the error is ignored.
        s.data(b"SEND\ndestination:/queue/t\n\nx\0");
        assert!(s.text().is_empty() && published(&s).is_empty());
    }
}

#[test]
fn subscribe_delivers_messages_and_auto_finishes_in_one_call() {
    let mut s = connected();
    s.data(b"SUBSCRIBE\nid:s1\ndestination:/queue/jobs\nprefetch-count:3\n\n\0");
    assert!(s.text().is_empty());
    assert_eq!(
        subscribed(&s),
        vec![("jobs".to_string(), "stomp".to_string(), 3)]
    );
    s.calls();
    s.messages(0, vec![delivery(ID1, 1, b"a"), delivery(ID2, 2, b"bc")]);
    assert_eq!(
        s.text(),
        format!(
            "MESSAGE\nsubscription:s1\ndestination:/queue/jobs\nmessage-id:{ID1}\n\
             nsq-attempts:1\nnsq-timestamp:5\ncontent-length:1\n\na\0\
             MESSAGE\nsubscription:s1\ndestination:/queue/jobs\nmessage-id:{ID2}\n\
             redelivered:true\nnsq-attempts:2\nnsq-timestamp:5\ncontent-length:2\n\nbc\0"
        )
    );
    assert_eq!(
        s.calls(),
        [Call::FinishMany {
            sub: 0,
            ids: vec![ID1.into(), ID2.into()]
        }]
    );
}

#[test]
fn topic_subscriptions_get_ephemeral_channels() {
    let mut s = connected();
    s.data(
        b"SUBSCRIBE\nid:a\ndestination:/topic/t\n\n\0SUBSCRIBE\nid:b\ndestination:/topic/t\n\n\0",
    );
    assert_eq!(
        subscribed(&s),
        vec![
            ("t".to_string(), "stomp-7-1#ephemeral".to_string(), 100),
            ("t".to_string(), "stomp-7-2#ephemeral".to_string(), 100),
        ]
    );
}

#[test]
fn prefetch_and_subscriptions_are_bounded_by_the_broker_limits() {
    let mut info = connect_info(b"CONN", &[("heart_beat", "0,0")]);
    info.limits.max_rdy_count = 50;
    info.limits.max_subscriptions = 1;
    let mut s = Session::<Stomp>::open_with(info, Recorder::default());
    s.data(b"ECT\naccept-version:1.2\n\n\0");
    s.data(b"SUBSCRIBE\nid:a\ndestination:/queue/t\nprefetch-count:999\n\n\0");
    assert_eq!(subscribed(&s)[0].2, 50);
    s.text();
    s.data(b"SUBSCRIBE\nid:b\ndestination:/queue/u\n\n\0");
    assert!(
        s.text()
            .starts_with("ERROR\nmessage:too many subscriptions\n")
    );
}

#[test]
fn client_individual_ack_and_nack() {
    let mut s = open(&[("heart_beat", "0,0"), ("nack_delay_ms", "250")]);
    s.data(b"CONNECT\naccept-version:1.2\n\n\0");
    s.text();
    s.data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0");
    s.messages(0, vec![delivery(ID1, 1, b"a"), delivery(ID2, 1, b"b")]);
    let out = s.text();
    assert!(out.contains(&format!("ack:0.{ID1}\n")), "{out}");
    assert!(finished(&s).is_empty());
    s.data(format!("ACK\nid:0.{ID2}\n\n\0").as_bytes());
    assert_eq!(finished(&s), vec![(0, ID2.to_string())]);
    s.data(format!("NACK\nid:0.{ID1}\n\n\0").as_bytes());
    assert_eq!(requeued(&s), vec![(0, ID1.to_string(), 250)]);
    assert!(s.text().is_empty() && !s.host.closed);
}

#[test]
fn the_acks_of_one_read_are_one_finish_many() {
    let mut s = connected();
    s.data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0");
    s.messages(
        0,
        vec![
            delivery(ID1, 1, b"a"),
            delivery(ID2, 1, b"b"),
            delivery(ID3, 1, b"c"),
        ],
    );
    s.text();
    s.calls();
    s.data(format!("ACK\nid:0.{ID1}\n\n\0ACK\nid:0.{ID3}\n\n\0NACK\nid:0.{ID2}\n\n\0").as_bytes());
    assert_eq!(
        s.calls(),
        [
            Call::FinishMany {
                sub: 0,
                ids: vec![ID1.into(), ID3.into()]
            },
            Call::RequeueMany {
                sub: 0,
                ids: vec![ID2.into()],
                delay_ms: 0
            },
        ]
    );
    assert!(s.protocol.subs[0].pending.is_empty());
}

#[test]
fn acks_take_effect_before_the_frames_after_them() {
    let mut s = connected();
    s.data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0");
    s.messages(0, vec![delivery(ID1, 1, b"a")]);
    s.text();
    s.calls();
    // The ACK is sent before the UNSUBSCRIBE requeues what is in flight.
    s.data(format!("ACK\nid:0.{ID1}\n\n\0UNSUBSCRIBE\nid:s\n\n\0").as_bytes());
    assert_eq!(
        s.calls(),
        [
            Call::FinishMany {
                sub: 0,
                ids: vec![ID1.into()]
            },
            Call::Unsubscribe { sub: 0 },
        ]
    );
}

#[test]
fn a_batch_holds_at_most_max_batch_ids() {
    let mut info = connect_info(b"CONN", &[("heart_beat", "0,0")]);
    info.limits.max_batch = 2;
    let mut s = Session::<Stomp>::open_with(info, Recorder::default());
    s.data(b"ECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\n\n\0");
    let ids: Vec<String> = (1..=5).map(|n| format!("{n:016x}")).collect();
    s.messages(0, ids.iter().map(|id| delivery(id, 1, b"x")).collect());
    s.calls();
    s.data(format!("ACK\nid:0.{}\n\n\0", ids[4]).as_bytes());
    let batches: Vec<usize> = s
        .calls()
        .iter()
        .map(|c| match c {
            Call::FinishMany { ids, .. } => ids.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(batches, [2, 2, 1]);
}

#[test]
fn client_ack_is_cumulative() {
    let mut s = connected();
    s.data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\n\n\0");
    s.messages(
        0,
        vec![
            delivery(ID1, 1, b"a"),
            delivery(ID2, 1, b"b"),
            delivery(ID3, 1, b"c"),
        ],
    );
    s.text();
    s.data(format!("ACK\nid:0.{ID2}\n\n\0").as_bytes());
    assert_eq!(
        finished(&s),
        vec![(0, ID1.to_string()), (0, ID2.to_string())]
    );
    // STOMP 1.1 style: message-id (+ subscription).
    s.data(format!("ACK\nmessage-id:{ID3}\nsubscription:s\n\n\0").as_bytes());
    assert_eq!(finished(&s).len(), 3);
    assert!(!s.host.closed);
}

#[test]
fn ack_errors() {
    let mut s = connected();
    s.data(format!("ACK\nid:9.{ID1}\n\n\0").as_bytes());
    assert!(
        s.text()
            .starts_with("ERROR\nmessage:ACK for an unknown message\n")
    );
    let mut s = connected();
    s.data(b"NACK\n\n\0");
    assert!(s.text().starts_with("ERROR\nmessage:missing id header\n"));
}

#[test]
fn unsubscribe_and_late_deliveries() {
    let mut s = connected();
    s.data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\n\n\0");
    s.data(b"UNSUBSCRIBE\nid:s\n\n\0");
    assert!(s.host.calls.contains(&Call::Unsubscribe { sub: 0 }));
    // Deliveries that crossed the UNSUBSCRIBE go back.
    s.messages(0, vec![delivery(ID1, 1, b"a")]);
    assert!(s.text().is_empty());
    assert_eq!(requeued(&s), vec![(0, ID1.to_string(), 0)]);
    s.data(b"UNSUBSCRIBE\nid:s\n\n\0");
    assert!(
        s.text()
            .starts_with("ERROR\nmessage:unknown subscription\n")
    );
}

#[test]
fn refused_writes_requeue_the_batch() {
    let mut s = connected();
    s.data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\n\n\0");
    s.host.write_limit = Some(0);
    s.messages(0, vec![delivery(ID1, 1, b"a")]);
    assert_eq!(requeued(&s), vec![(0, ID1.to_string(), 0)]);
    s.host.write_limit = None;
    // Nothing is pending, so a 1.1-style ACK of it is unknown.
    s.data(format!("ACK\nmessage-id:{ID1}\n\n\0").as_bytes());
    assert!(
        s.text()
            .starts_with("ERROR\nmessage:ACK for an unknown message\n")
    );
}

#[test]
fn subscribe_errors() {
    for (frame, message, fail) in [
        (
            &b"SUBSCRIBE\ndestination:/queue/q\n\n\0"[..],
            "missing id header",
            None,
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:maybe\n\n\0",
            "invalid ack mode",
            None,
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/q\nprefetch-count:x\n\n\0",
            "invalid prefetch-count",
            None,
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/bad!\n\n\0",
            "subscribe to bad! failed",
            Some(("subscribe", BrokerError::InvalidTopicName)),
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/q\n\n\0",
            "subscribe failed",
            Some(("set-ready", BrokerError::InvalidArgument("ready".into()))),
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/q\n\n\0SUBSCRIBE\nid:s\ndestination:/queue/r\n\n\0",
            "duplicate subscription id",
            None,
        ),
    ] {
        let mut s = connected();
        if let Some((call, e)) = fail {
            s.host.fail_next(call, e);
        }
        s.data(frame);
        let out = s.text();
        assert!(
            out.starts_with(&format!("ERROR\nmessage:{message}\n")),
            "{message}: {out}"
        );
        assert!(s.host.closed);
    }
}

#[test]
fn transactions_apply_at_commit_and_drop_at_abort() {
    let mut s = connected();
    s.data(b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0");
    s.messages(0, vec![delivery(ID1, 1, b"a")]);
    s.text();
    s.data(
        format!(
            "BEGIN\ntransaction:t1\n\n\0\
             SEND\ndestination:/queue/out\ntransaction:t1\n\none\0\
             ACK\nid:0.{ID1}\ntransaction:t1\n\n\0\
             SEND\ndestination:/queue/out\ntransaction:t1\n\ntwo\0"
        )
        .as_bytes(),
    );
    assert!(published(&s).is_empty() && finished(&s).is_empty());
    s.data(b"COMMIT\ntransaction:t1\nreceipt:c\n\n\0");
    assert_eq!(s.text(), "RECEIPT\nreceipt-id:c\n\n\0");
    assert_eq!(
        published(&s),
        vec![
            ("out".to_string(), b"one".to_vec()),
            ("out".to_string(), b"two".to_vec())
        ]
    );
    assert_eq!(finished(&s), vec![(0, ID1.to_string())]);

    s.data(
        b"BEGIN\ntransaction:t2\n\n\0SEND\ndestination:/queue/out\ntransaction:t2\n\nx\0\
          ABORT\ntransaction:t2\n\n\0",
    );
    assert_eq!(published(&s).len(), 2);
    assert_eq!(s.protocol.transaction_bytes, 0);
    s.data(b"COMMIT\ntransaction:t2\n\n\0");
    assert!(s.text().starts_with("ERROR\nmessage:unknown transaction\n"));
}

#[test]
fn transaction_limits() {
    let mut s = open(&[("heart_beat", "0,0"), ("max_transaction_bytes", "4")]);
    s.data(
        b"CONNECT\naccept-version:1.2\n\n\0BEGIN\ntransaction:t\n\n\0\
          SEND\ndestination:/queue/q\ntransaction:t\n\nabc\0\
          SEND\ndestination:/queue/q\ntransaction:t\n\nde\0",
    );
    let out = s.text();
    assert!(
        out.contains("ERROR\nmessage:transaction too large\n"),
        "{out}"
    );

    let mut s = connected();
    s.data(b"BEGIN\ntransaction:t\n\n\0BEGIN\ntransaction:t\n\n\0");
    assert!(
        s.text()
            .starts_with("ERROR\nmessage:duplicate transaction\n")
    );
}

#[test]
fn disconnect_with_receipt_closes() {
    let mut s = connected();
    s.data(b"DISCONNECT\nreceipt:bye\n\n\0SEND\ndestination:/queue/q\n\nx\0");
    assert_eq!(s.text(), "RECEIPT\nreceipt-id:bye\n\n\0");
    assert!(s.host.closed && published(&s).is_empty());
}

#[test]
fn connect_timeout() {
    let mut s = open(&[("connect_timeout_ms", "500")]);
    assert_eq!(s.host.timer, Some(500));
    s.timer();
    let out = s.text();
    assert!(out.starts_with("ERROR\nmessage:connect timeout\n"), "{out}");
    assert!(
        out.contains("no complete CONNECT frame within 500 ms"),
        "{out}"
    );
    assert!(s.host.closed);
}

#[test]
fn heart_beats_are_sent_and_a_silent_client_is_closed() {
    let mut s = open(&[("heart_beat", "1000,1000")]);
    s.data(b"CONNECT\naccept-version:1.2\nheart-beat:1000,1000\n\n\0");
    assert!(s.text().starts_with("CONNECTED\n"));
    assert_eq!(s.host.timer, Some(1_000));
    // Due to send at 2000: one newline, next send at 3000, check at 3000.
    s.host.now_ms = 2_000;
    s.timer();
    assert_eq!(s.text(), "\n");
    assert_eq!(s.host.timer, Some(1_000));
    // Silent for 2000 ms = 1000 * grace 2: dead.
    s.host.now_ms = 3_000;
    s.timer();
    let out = s.text();
    assert!(
        out.starts_with("ERROR\nmessage:heart-beat timeout\n"),
        "{out}"
    );
    assert!(s.host.closed);
}

#[test]
fn malformed_frames_are_errors() {
    let mut s = connected();
    s.data(b"BOGUS\n\n\0");
    let out = s.text();
    assert!(
        out.starts_with("ERROR\nmessage:malformed frame\\c unknown command"),
        "{out}"
    );
    assert!(s.host.closed);
}

fn identity() -> Identity {
    Identity {
        identity: "who".into(),
        identity_url: String::new(),
        permission_count: 1,
    }
}

#[test]
fn with_an_auth_server_connect_waits_for_the_passcode_verdict() {
    let auth = |h: &mut Recorder| h.auth_required = true;
    let mut s = open_with(&[("heart_beat", "0,0")], auth);
    // CONNECT and a SEND behind it: the SEND waits for the verdict.
    s.data(b"CONNECT\naccept-version:1.2\npasscode:pw\nreceipt:c\n\n\0SEND\ndestination:/queue/q\n\nx\0");
    assert_eq!(s.text(), "");
    assert_eq!(
        s.calls(),
        [Call::Authenticate {
            secret: "pw".into()
        }]
    );
    s.authenticated(Ok(identity()));
    let out = s.text();
    assert!(out.starts_with("CONNECTED\n"), "{out}");
    assert!(out.contains("receipt-id:c"), "{out}");
    assert_eq!(published(&s).len(), 1);

    // A refused passcode: ERROR and the close.
    let mut s = open_with(&[], auth);
    s.data(b"CONNECT\naccept-version:1.2\npasscode:no\n\n\0");
    s.authenticated(Err(AuthError::Failed));
    let out = s.text();
    assert!(
        out.starts_with("ERROR\n") && out.contains("access refused"),
        "{out}"
    );
    assert!(out.contains("authentication failed"), "{out}");
    assert!(s.host.closed);

    // No passcode at all: refused at once, without asking.
    let mut s = open_with(&[], auth);
    s.data(b"CONNECT\naccept-version:1.2\n\n\0");
    assert!(s.text().contains("a passcode is required"));
    assert!(s.host.calls.is_empty() && s.host.closed);
}

#[test]
fn every_documented_key_is_accepted_and_a_typo_is_refused() {
    // The keys of the README's table and of gateway.yaml's `stomp` entry.
    let all = [
        ("max_frame_bytes", "1114112"),
        ("max_headers", "64"),
        ("max_header_bytes", "8192"),
        ("max_subscriptions", "16"),
        ("prefetch", "100"),
        ("queue_channel", "stomp"),
        ("heart_beat", "10000,10000"),
        ("heart_beat_grace", "2.0"),
        ("connect_timeout_ms", "10000"),
        ("nack_delay_ms", "0"),
        ("max_transactions", "8"),
        ("max_transaction_bytes", "4194304"),
        ("login", "guest"),
        ("passcode", "guest"),
    ];
    assert_eq!(validate::<Stomp>(&all), Ok(()));
    let e = validate::<Stomp>(&[("prefetch_count", "10"), ("heart_beat", "fast")])
        .expect_err("refused");
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(
        e.to_string().contains("config.prefetch_count: unknown key"),
        "{e}"
    );
    assert!(e.to_string().contains("config.heart_beat:"), "{e}");
}

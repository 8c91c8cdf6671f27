//! Session tests against a fake host that records every call: CONNECT and
//! its errors, SEND with a receipt, SUBSCRIBE with MESSAGE delivery and
//! ACK/NACK in each ack mode, transactions, heart-beats and the connect
//! timeout, and frames fed one byte at a time.

use super::*;

/// A fake gateway: a clock, a log of output and of every broker call.
#[derive(Default)]
struct Fake {
    out: Vec<u8>,
    closed: bool,
    /// The last `set_timer` call, if any.
    timer: Option<Option<u32>>,
    now: u64,
    published: Vec<(String, Vec<u8>)>,
    /// (topic, channel, ready) per subscription handle; None = unsubscribed.
    subs: Vec<Option<(String, String, u32)>>,
    finished: Vec<(u32, String)>,
    /// (handle, id, delay)
    requeued: Vec<(u32, String, u32)>,
    /// When set, `write` refuses (a full output buffer).
    refuse_writes: bool,
    /// When set, the gateway has an auth server.
    auth: bool,
    /// Secrets passed to `authenticate`.
    secrets: Vec<String>,
}

impl Host for Fake {
    fn write(&mut self, data: &[u8]) -> bool {
        if self.refuse_writes {
            return false;
        }
        self.out.extend_from_slice(data);
        true
    }
    fn close(&mut self) {
        self.closed = true;
    }
    fn set_timer(&mut self, delay_ms: Option<u32>) {
        self.timer = Some(delay_ms);
    }
    fn now_ms(&mut self) -> u64 {
        self.now
    }
    fn publish(&mut self, topic: &str, body: &[u8]) -> Result<(), String> {
        if topic.starts_with("bad") {
            return Err("invalid topic name".into());
        }
        self.published.push((topic.into(), body.to_vec()));
        Ok(())
    }
    fn subscribe(&mut self, topic: &str, channel: &str) -> Result<u32, String> {
        if topic.starts_with("bad") {
            return Err("invalid topic name".into());
        }
        self.subs.push(Some((topic.into(), channel.into(), 0)));
        Ok(u32::try_from(self.subs.len() - 1).unwrap_or(0))
    }
    fn set_ready(&mut self, sub: u32, count: u32) -> Result<(), String> {
        match self.subs.get_mut(sub as usize) {
            Some(Some(s)) => {
                s.2 = count;
                Ok(())
            }
            _ => Err("unknown subscription".into()),
        }
    }
    fn unsubscribe(&mut self, sub: u32) {
        if let Some(s) = self.subs.get_mut(sub as usize) {
            *s = None;
        }
    }
    fn finish(&mut self, sub: u32, id: &str) -> Result<(), String> {
        self.finished.push((sub, id.into()));
        Ok(())
    }
    fn requeue(&mut self, sub: u32, id: &str, delay_ms: u32) -> Result<(), String> {
        self.requeued.push((sub, id.into(), delay_ms));
        Ok(())
    }
    fn auth_required(&mut self) -> bool {
        self.auth
    }
    fn authenticate(&mut self, secret: &str) -> Result<(), String> {
        self.secrets.push(secret.into());
        Ok(())
    }
}

impl Fake {
    /// The output so far as text, cleared.
    fn take(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.out).into_owned();
        self.out.clear();
        text
    }
}

const ID1: &str = "0123456789abcdef";
const ID2: &str = "0123456789abcde0";
const ID3: &str = "0123456789abcde1";

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A session after `on-connect` (no magic consumed: the frames below are
/// fed whole through `on_data`).
fn open(pairs: &[(&str, &str)]) -> (Session, Fake) {
    let mut h = Fake {
        now: 1_000,
        ..Fake::default()
    };
    let mut s = Session::new();
    s.on_connect(&mut h, &config(pairs), 7, b"");
    (s, h)
}

/// A connected STOMP 1.2 session without heart-beats, its output cleared.
fn connected() -> (Session, Fake) {
    let (mut s, mut h) = open(&[("heart_beat", "0,0")]);
    s.on_data(&mut h, b"CONNECT\naccept-version:1.2\n\n\0".to_vec());
    assert!(h.take().starts_with("CONNECTED\n"));
    (s, h)
}

fn delivery(id: &str, attempts: u16, body: &[u8]) -> Delivery {
    Delivery {
        id: id.into(),
        timestamp: 5,
        attempts,
        body: body.to_vec(),
    }
}

#[test]
fn connect_answers_connected_and_arms_the_heart_beat() {
    let (mut s, mut h) = open(&[]);
    assert_eq!(h.timer, Some(Some(10_000)), "the connect timeout is armed");
    s.on_data(
        &mut h,
        b"CONNECT\naccept-version:1.1,1.2\nheart-beat:5000,20000\n\n\0".to_vec(),
    );
    assert_eq!(
        h.take(),
        "CONNECTED\nversion:1.2\nheart-beat:10000,10000\nserver:nsq-gateway-stomp/0.1\n\
         session:7\n\n\0"
    );
    // The server sends every max(10000, 20000) and expects every
    // max(5000, 10000) with grace 2: both fall due at +20000.
    assert_eq!(h.timer, Some(Some(20_000)));
    assert!(!h.closed && !s.closed);
}

#[test]
fn connect_errors_close_with_an_error_frame() {
    let (mut s, mut h) = open(&[]);
    s.on_data(&mut h, b"SEND\ndestination:/queue/a\n\nx\0".to_vec());
    let out = h.take();
    assert!(out.starts_with("ERROR\nmessage:not connected\n"), "{out}");
    assert!(out.contains("version:1.1,1.2\n"), "{out}");
    assert!(h.closed && s.closed);

    let (mut s, mut h) = open(&[]);
    s.on_data(&mut h, b"CONNECT\naccept-version:1.0\n\n\0".to_vec());
    assert!(
        h.take()
            .starts_with("ERROR\nmessage:unsupported protocol version\n")
    );

    let (mut s, mut h) = open(&[("login", "u"), ("passcode", "p")]);
    s.on_data(
        &mut h,
        b"CONNECT\naccept-version:1.2\nlogin:u\npasscode:x\n\n\0".to_vec(),
    );
    assert!(h.take().starts_with("ERROR\nmessage:access refused\n"));
    assert!(h.closed);

    let (mut s, mut h) = open(&[("login", "u"), ("passcode", "p")]);
    s.on_data(
        &mut h,
        b"CONNECT\naccept-version:1.2\nlogin:u\npasscode:p\n\n\0".to_vec(),
    );
    assert!(h.take().starts_with("CONNECTED\n"));

    let (mut s, mut h) = connected();
    s.on_data(&mut h, b"STOMP\naccept-version:1.2\n\n\0".to_vec());
    assert!(h.take().starts_with("ERROR\nmessage:already connected\n"));
}

#[test]
fn frames_fed_one_byte_at_a_time() {
    let (mut s, mut h) = open(&[("heart_beat", "0,0")]);
    let input = b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/queue/t\nreceipt:r1\n\nhi\0";
    for b in input {
        s.on_data(&mut h, vec![*b]);
    }
    let out = h.take();
    assert!(out.starts_with("CONNECTED\n"), "{out}");
    assert!(out.ends_with("RECEIPT\nreceipt-id:r1\n\n\0"), "{out}");
    assert_eq!(h.published, vec![("t".to_string(), b"hi".to_vec())]);
}

#[test]
fn send_publishes_and_answers_the_receipt() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"SEND\ndestination:/topic/news\nreceipt:77\n\nhello\0".to_vec(),
    );
    assert_eq!(h.take(), "RECEIPT\nreceipt-id:77\n\n\0");
    assert_eq!(h.published, vec![("news".to_string(), b"hello".to_vec())]);

    s.on_data(
        &mut h,
        b"SEND\ndestination:/queue/bad\nreceipt:78\n\nx\0".to_vec(),
    );
    let out = h.take();
    assert!(
        out.starts_with("ERROR\nmessage:publish to bad failed\n"),
        "{out}"
    );
    assert!(out.contains("receipt-id:78\n"), "{out}");
    assert!(out.contains("invalid topic name"), "{out}");
    assert!(h.closed);
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
        let (mut s, mut h) = connected();
        s.on_data(&mut h, frame.to_vec());
        let out = h.take();
        assert!(
            out.starts_with(&format!("ERROR\nmessage:{message}\n")),
            "{message}: {out}"
        );
        assert!(h.closed && h.published.is_empty());
        // Input after the error is ignored.
        s.on_data(&mut h, b"SEND\ndestination:/queue/t\n\nx\0".to_vec());
        assert!(h.take().is_empty() && h.published.is_empty());
    }
}

#[test]
fn subscribe_delivers_messages_and_auto_finishes() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"SUBSCRIBE\nid:s1\ndestination:/queue/jobs\nprefetch-count:3\n\n\0".to_vec(),
    );
    assert!(h.take().is_empty());
    assert_eq!(
        h.subs,
        vec![Some(("jobs".to_string(), "stomp".to_string(), 3))]
    );
    s.on_messages(
        &mut h,
        0,
        vec![delivery(ID1, 1, b"a"), delivery(ID2, 2, b"bc")],
    );
    assert_eq!(
        h.take(),
        format!(
            "MESSAGE\nsubscription:s1\ndestination:/queue/jobs\nmessage-id:{ID1}\n\
             nsq-attempts:1\nnsq-timestamp:5\ncontent-length:1\n\na\0\
             MESSAGE\nsubscription:s1\ndestination:/queue/jobs\nmessage-id:{ID2}\n\
             redelivered:true\nnsq-attempts:2\nnsq-timestamp:5\ncontent-length:2\n\nbc\0"
        )
    );
    assert_eq!(h.finished, vec![(0, ID1.to_string()), (0, ID2.to_string())]);
}

#[test]
fn topic_subscriptions_get_ephemeral_channels() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"SUBSCRIBE\nid:a\ndestination:/topic/t\n\n\0SUBSCRIBE\nid:b\ndestination:/topic/t\n\n\0"
            .to_vec(),
    );
    assert_eq!(
        h.subs,
        vec![
            Some(("t".to_string(), "stomp-7-1#ephemeral".to_string(), 100)),
            Some(("t".to_string(), "stomp-7-2#ephemeral".to_string(), 100)),
        ]
    );
}

#[test]
fn client_individual_ack_and_nack() {
    let (mut s, mut h) = open(&[("heart_beat", "0,0"), ("nack_delay_ms", "250")]);
    s.on_data(&mut h, b"CONNECT\naccept-version:1.2\n\n\0".to_vec());
    h.take();
    s.on_data(
        &mut h,
        b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0".to_vec(),
    );
    s.on_messages(
        &mut h,
        0,
        vec![delivery(ID1, 1, b"a"), delivery(ID2, 1, b"b")],
    );
    let out = h.take();
    assert!(out.contains(&format!("ack:0.{ID1}\n")), "{out}");
    assert!(h.finished.is_empty());
    s.on_data(&mut h, format!("ACK\nid:0.{ID2}\n\n\0").into_bytes());
    assert_eq!(h.finished, vec![(0, ID2.to_string())]);
    s.on_data(&mut h, format!("NACK\nid:0.{ID1}\n\n\0").into_bytes());
    assert_eq!(h.requeued, vec![(0, ID1.to_string(), 250)]);
    assert!(h.take().is_empty() && !h.closed);
}

#[test]
fn client_ack_is_cumulative() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\n\n\0".to_vec(),
    );
    s.on_messages(
        &mut h,
        0,
        vec![
            delivery(ID1, 1, b"a"),
            delivery(ID2, 1, b"b"),
            delivery(ID3, 1, b"c"),
        ],
    );
    h.take();
    s.on_data(&mut h, format!("ACK\nid:0.{ID2}\n\n\0").into_bytes());
    assert_eq!(h.finished, vec![(0, ID1.to_string()), (0, ID2.to_string())]);
    // STOMP 1.1 style: message-id (+ subscription).
    s.on_data(
        &mut h,
        format!("ACK\nmessage-id:{ID3}\nsubscription:s\n\n\0").into_bytes(),
    );
    assert_eq!(h.finished.len(), 3);
    assert!(!h.closed);
}

#[test]
fn ack_errors() {
    let (mut s, mut h) = connected();
    s.on_data(&mut h, format!("ACK\nid:9.{ID1}\n\n\0").into_bytes());
    assert!(
        h.take()
            .starts_with("ERROR\nmessage:ACK for an unknown message\n")
    );
    let (mut s, mut h) = connected();
    s.on_data(&mut h, b"NACK\n\n\0".to_vec());
    assert!(h.take().starts_with("ERROR\nmessage:missing id header\n"));
}

#[test]
fn unsubscribe_and_late_deliveries() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"SUBSCRIBE\nid:s\ndestination:/queue/q\n\n\0".to_vec(),
    );
    s.on_data(&mut h, b"UNSUBSCRIBE\nid:s\n\n\0".to_vec());
    assert_eq!(h.subs, vec![None]);
    // Deliveries that crossed the UNSUBSCRIBE go back.
    s.on_messages(&mut h, 0, vec![delivery(ID1, 1, b"a")]);
    assert!(h.take().is_empty());
    assert_eq!(h.requeued, vec![(0, ID1.to_string(), 0)]);
    s.on_data(&mut h, b"UNSUBSCRIBE\nid:s\n\n\0".to_vec());
    assert!(
        h.take()
            .starts_with("ERROR\nmessage:unknown subscription\n")
    );
}

#[test]
fn refused_writes_requeue_the_batch() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\n\n\0".to_vec(),
    );
    h.refuse_writes = true;
    s.on_messages(&mut h, 0, vec![delivery(ID1, 1, b"a")]);
    assert_eq!(h.requeued, vec![(0, ID1.to_string(), 0)]);
    h.refuse_writes = false;
    // Nothing is pending, so a 1.1-style ACK of it is unknown.
    s.on_data(&mut h, format!("ACK\nmessage-id:{ID1}\n\n\0").into_bytes());
    assert!(
        h.take()
            .starts_with("ERROR\nmessage:ACK for an unknown message\n")
    );
}

#[test]
fn subscribe_errors() {
    for (frame, message) in [
        (&b"SUBSCRIBE\ndestination:/queue/q\n\n\0"[..], "missing id header"),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:maybe\n\n\0",
            "invalid ack mode",
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/q\nprefetch-count:x\n\n\0",
            "invalid prefetch-count",
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/bad\n\n\0",
            "subscribe to bad failed",
        ),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/q\n\n\0SUBSCRIBE\nid:s\ndestination:/queue/r\n\n\0",
            "duplicate subscription id",
        ),
    ] {
        let (mut s, mut h) = connected();
        s.on_data(&mut h, frame.to_vec());
        let out = h.take();
        assert!(
            out.starts_with(&format!("ERROR\nmessage:{message}\n")),
            "{message}: {out}"
        );
        assert!(h.closed);
    }
}

#[test]
fn transactions_apply_at_commit_and_drop_at_abort() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0".to_vec(),
    );
    s.on_messages(&mut h, 0, vec![delivery(ID1, 1, b"a")]);
    h.take();
    s.on_data(
        &mut h,
        format!(
            "BEGIN\ntransaction:t1\n\n\0\
             SEND\ndestination:/queue/out\ntransaction:t1\n\none\0\
             ACK\nid:0.{ID1}\ntransaction:t1\n\n\0\
             SEND\ndestination:/queue/out\ntransaction:t1\n\ntwo\0"
        )
        .into_bytes(),
    );
    assert!(h.published.is_empty() && h.finished.is_empty());
    s.on_data(&mut h, b"COMMIT\ntransaction:t1\nreceipt:c\n\n\0".to_vec());
    assert_eq!(h.take(), "RECEIPT\nreceipt-id:c\n\n\0");
    assert_eq!(
        h.published,
        vec![
            ("out".to_string(), b"one".to_vec()),
            ("out".to_string(), b"two".to_vec())
        ]
    );
    assert_eq!(h.finished, vec![(0, ID1.to_string())]);

    s.on_data(
        &mut h,
        b"BEGIN\ntransaction:t2\n\n\0SEND\ndestination:/queue/out\ntransaction:t2\n\nx\0\
          ABORT\ntransaction:t2\n\n\0"
            .to_vec(),
    );
    assert_eq!(h.published.len(), 2);
    assert_eq!(s.transaction_bytes, 0);
    s.on_data(&mut h, b"COMMIT\ntransaction:t2\n\n\0".to_vec());
    assert!(h.take().starts_with("ERROR\nmessage:unknown transaction\n"));
}

#[test]
fn transaction_limits() {
    let (mut s, mut h) = open(&[("heart_beat", "0,0"), ("max_transaction_bytes", "4")]);
    s.on_data(
        &mut h,
        b"CONNECT\naccept-version:1.2\n\n\0BEGIN\ntransaction:t\n\n\0\
          SEND\ndestination:/queue/q\ntransaction:t\n\nabc\0\
          SEND\ndestination:/queue/q\ntransaction:t\n\nde\0"
            .to_vec(),
    );
    let out = h.take();
    assert!(
        out.contains("ERROR\nmessage:transaction too large\n"),
        "{out}"
    );

    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"BEGIN\ntransaction:t\n\n\0BEGIN\ntransaction:t\n\n\0".to_vec(),
    );
    assert!(
        h.take()
            .starts_with("ERROR\nmessage:duplicate transaction\n")
    );
}

#[test]
fn disconnect_with_receipt_closes() {
    let (mut s, mut h) = connected();
    s.on_data(
        &mut h,
        b"DISCONNECT\nreceipt:bye\n\n\0SEND\ndestination:/queue/q\n\nx\0".to_vec(),
    );
    assert_eq!(h.take(), "RECEIPT\nreceipt-id:bye\n\n\0");
    assert!(h.closed && h.published.is_empty());
}

#[test]
fn connect_timeout() {
    let (mut s, mut h) = open(&[("connect_timeout_ms", "500")]);
    assert_eq!(h.timer, Some(Some(500)));
    s.on_timer(&mut h);
    let out = h.take();
    assert!(out.starts_with("ERROR\nmessage:connect timeout\n"), "{out}");
    assert!(
        out.contains("no complete CONNECT frame within 500 ms"),
        "{out}"
    );
    assert!(h.closed);
}

#[test]
fn heart_beats_are_sent_and_a_silent_client_is_closed() {
    let (mut s, mut h) = open(&[("heart_beat", "1000,1000")]);
    s.on_data(
        &mut h,
        b"CONNECT\naccept-version:1.2\nheart-beat:1000,1000\n\n\0".to_vec(),
    );
    assert!(h.take().starts_with("CONNECTED\n"));
    assert_eq!(h.timer, Some(Some(1_000)));
    // Due to send at 2000: one newline, next send at 3000, check at 3000.
    h.now = 2_000;
    s.on_timer(&mut h);
    assert_eq!(h.take(), "\n");
    assert_eq!(h.timer, Some(Some(1_000)));
    // Silent for 2000 ms = 1000 * grace 2: dead.
    h.now = 3_000;
    s.on_timer(&mut h);
    let out = h.take();
    assert!(
        out.starts_with("ERROR\nmessage:heart-beat timeout\n"),
        "{out}"
    );
    assert!(h.closed);
}

#[test]
fn malformed_frames_are_errors() {
    let (mut s, mut h) = connected();
    s.on_data(&mut h, b"BOGUS\n\n\0".to_vec());
    let out = h.take();
    assert!(
        out.starts_with("ERROR\nmessage:malformed frame\\c unknown command"),
        "{out}"
    );
    assert!(h.closed);
}

#[test]
fn with_an_auth_server_connect_waits_for_the_passcode_verdict() {
    let mut h = Fake {
        now: 1_000,
        auth: true,
        ..Fake::default()
    };
    let mut s = Session::new();
    s.on_connect(&mut h, &config(&[("heart_beat", "0,0")]), 7, b"");
    // CONNECT and a SEND behind it: the SEND waits for the verdict.
    s.on_data(
        &mut h,
        b"CONNECT\naccept-version:1.2\npasscode:pw\nreceipt:c\n\n\0SEND\ndestination:/queue/q\n\nx\0".to_vec(),
    );
    assert_eq!(h.take(), "");
    assert_eq!(h.secrets, ["pw"]);
    assert!(h.published.is_empty());
    s.on_authenticated(&mut h, true);
    let out = h.take();
    assert!(out.starts_with("CONNECTED\n"), "{out}");
    assert!(out.contains("receipt-id:c"), "{out}");
    assert_eq!(h.published.len(), 1);

    // A refused passcode: ERROR and the close.
    let mut h = Fake {
        auth: true,
        ..Fake::default()
    };
    let mut s = Session::new();
    s.on_connect(&mut h, &config(&[]), 7, b"");
    s.on_data(
        &mut h,
        b"CONNECT\naccept-version:1.2\npasscode:no\n\n\0".to_vec(),
    );
    s.on_authenticated(&mut h, false);
    let out = h.take();
    assert!(
        out.starts_with("ERROR\n") && out.contains("access refused"),
        "{out}"
    );
    assert!(h.closed);

    // No passcode at all: refused at once, without asking.
    let mut h = Fake {
        auth: true,
        ..Fake::default()
    };
    let mut s = Session::new();
    s.on_connect(&mut h, &config(&[]), 7, b"");
    s.on_data(&mut h, b"CONNECT\naccept-version:1.2\n\n\0".to_vec());
    assert!(h.take().contains("a passcode is required"));
    assert!(h.secrets.is_empty() && h.closed);
}

//! Tests of `codec`: the codec over every partial prefix of every command, and its limits.

use super::*;
use crate::broker::MessageId;
use crate::protocol::v2::command::*;
use crate::protocol::v2::error::ErrorCode;
use bytes::Bytes;

fn limits() -> Limits {
    Limits::default()
}

fn framed(line: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn mpub_body(msgs: &[&[u8]]) -> Vec<u8> {
    let mut v = (msgs.len() as u32).to_be_bytes().to_vec();
    for m in msgs {
        v.extend_from_slice(&(m.len() as u32).to_be_bytes());
        v.extend_from_slice(m);
    }
    v
}

const ID: &[u8; 16] = b"0123456789abcdef";

/// Every valid command with what it must parse to.
fn valid_cases() -> Vec<(Vec<u8>, Command)> {
    let id = MessageId(*ID);
    vec![
        (b"NOP\n".to_vec(), Command::Nop(Nop)),
        (b"CLS\r\n".to_vec(), Command::Cls(Cls)),
        (b"RDY 100\n".to_vec(), Command::Rdy(Rdy { count: 100 })),
        (b"RDY\n".to_vec(), Command::Rdy(Rdy { count: 1 })),
        (b"FIN 0123456789abcdef\n".to_vec(), Command::Fin(Fin { id })),
        (
            b"REQ 0123456789abcdef 1500\n".to_vec(),
            Command::Req(Req { id, delay_ms: 1500 }),
        ),
        (
            b"TOUCH 0123456789abcdef\n".to_vec(),
            Command::Touch(Touch { id }),
        ),
        (
            b"SUB t c#ephemeral\n".to_vec(),
            Command::Sub(Sub {
                topic: "t".into(),
                channel: "c#ephemeral".into(),
            }),
        ),
        (
            framed(b"PUB t\n", b"hello"),
            Command::Pub(Pub {
                topic: "t".into(),
                body: Bytes::from_static(b"hello"),
            }),
        ),
        (
            framed(b"DPUB t 250\n", b"later"),
            Command::Dpub(Dpub {
                topic: "t".into(),
                delay_ms: 250,
                body: Bytes::from_static(b"later"),
            }),
        ),
        (
            framed(b"MPUB t\n", &mpub_body(&[b"a", b"bc", b"def"])),
            Command::Mpub(Mpub {
                topic: "t".into(),
                bodies: vec![
                    Bytes::from_static(b"a"),
                    Bytes::from_static(b"bc"),
                    Bytes::from_static(b"def"),
                ],
            }),
        ),
        (
            framed(b"AUTH\n", b"secret"),
            Command::Auth(Auth {
                secret: Bytes::from_static(b"secret"),
            }),
        ),
        (
            framed(
                b"IDENTIFY\n",
                br#"{"client_id":"x","heartbeat_interval":5000}"#,
            ),
            Command::Identify(Identify {
                data: crate::protocol::v2::identify::IdentifyData {
                    client_id: Some("x".into()),
                    heartbeat_interval: Some(5000),
                    ..Default::default()
                },
            }),
        ),
    ]
}

#[test]
fn every_prefix_is_incomplete_and_full_buffer_parses() {
    for (wire, expected) in valid_cases() {
        for cut in 0..wire.len() {
            let prefix = &wire[..cut];
            match Command::check(prefix, &limits()) {
                Ok(Check::Incomplete(n)) => assert!(
                    n > cut && n <= wire.len(),
                    "{:?} cut {cut}: needed {n}",
                    String::from_utf8_lossy(&wire)
                ),
                other => panic!("{:?} cut {cut}: {other:?}", String::from_utf8_lossy(&wire)),
            }
            let mut buf = BytesMut::from(prefix);
            assert_eq!(Command::parse(&mut buf, &limits()), Ok(None));
            assert_eq!(&buf[..], prefix, "incomplete parse must not consume");
        }
        assert_eq!(
            Command::check(&wire, &limits()),
            Ok(Check::Complete(wire.len()))
        );
        let mut buf = BytesMut::from(&wire[..]);
        buf.extend_from_slice(b"NOP\n");
        assert_eq!(Command::parse(&mut buf, &limits()), Ok(Some(expected)));
        assert_eq!(&buf[..], b"NOP\n", "exactly one command consumed");
    }
}

fn err_of(wire: &[u8]) -> ProtocolError {
    let mut buf = BytesMut::from(wire);
    match Command::parse(&mut buf, &limits()) {
        Err(e) => e,
        other => panic!(
            "{:?}: expected an error, got {other:?}",
            String::from_utf8_lossy(wire)
        ),
    }
}

#[test]
fn junk_gets_nsqd_errors() {
    let cases: Vec<(Vec<u8>, ErrorCode, String)> = vec![
        (
            b"FOO bar\n".to_vec(),
            ErrorCode::Invalid,
            "invalid command FOO".into(),
        ),
        (
            b"\n".to_vec(),
            ErrorCode::Invalid,
            "invalid command ".into(),
        ),
        (
            b"SUB t\n".to_vec(),
            ErrorCode::Invalid,
            "SUB insufficient number of parameters".into(),
        ),
        (
            b"SUB t/x c\n".to_vec(),
            ErrorCode::BadTopic,
            "SUB topic name \"t/x\" is not valid".into(),
        ),
        (
            b"SUB t c!\n".to_vec(),
            ErrorCode::BadChannel,
            "SUB channel name \"c!\" is not valid".into(),
        ),
        (
            b"PUB\n".to_vec(),
            ErrorCode::Invalid,
            "PUB insufficient number of parameters".into(),
        ),
        (
            b"PUB \n".to_vec(),
            ErrorCode::BadTopic,
            "PUB topic name \"\" is not valid".into(),
        ),
        (
            b"MPUB a*b\n".to_vec(),
            ErrorCode::BadTopic,
            "E_BAD_TOPIC MPUB topic name \"a*b\" is not valid".into(),
        ),
        (
            b"DPUB t\n".to_vec(),
            ErrorCode::Invalid,
            "DPUB insufficient number of parameters".into(),
        ),
        (
            b"DPUB t x\n".to_vec(),
            ErrorCode::Invalid,
            "DPUB could not parse timeout x".into(),
        ),
        (
            b"DPUB t 3600001\n".to_vec(),
            ErrorCode::Invalid,
            "DPUB timeout 3600001 out of range 0-3600000".into(),
        ),
        (
            b"RDY -1\n".to_vec(),
            ErrorCode::Invalid,
            "RDY could not parse count -1".into(),
        ),
        (
            b"FIN\n".to_vec(),
            ErrorCode::Invalid,
            "FIN insufficient number of params".into(),
        ),
        (
            b"FIN abc\n".to_vec(),
            ErrorCode::Invalid,
            "Invalid Message ID".into(),
        ),
        (
            b"REQ 0123456789abcdef\n".to_vec(),
            ErrorCode::Invalid,
            "REQ insufficient number of params".into(),
        ),
        (
            b"REQ 0123456789abcdef x\n".to_vec(),
            ErrorCode::Invalid,
            "REQ could not parse timeout x".into(),
        ),
        (
            b"TOUCH\n".to_vec(),
            ErrorCode::Invalid,
            "TOUCH insufficient number of params".into(),
        ),
        (
            b"TOUCH 0123456789abcdef0\n".to_vec(),
            ErrorCode::Invalid,
            "Invalid Message ID".into(),
        ),
        (
            b"AUTH x\n".to_vec(),
            ErrorCode::Invalid,
            "AUTH invalid number of parameters".into(),
        ),
        (
            framed(b"PUB t\n", b""),
            ErrorCode::BadMessage,
            "PUB invalid message body size 0".into(),
        ),
        (
            framed(b"MPUB t\n", b""),
            ErrorCode::BadBody,
            "MPUB invalid body size 0".into(),
        ),
        (
            framed(b"IDENTIFY\n", b""),
            ErrorCode::BadBody,
            "IDENTIFY invalid body size 0".into(),
        ),
        (
            framed(b"IDENTIFY\n", b"{nope"),
            ErrorCode::BadBody,
            "IDENTIFY failed to decode JSON body".into(),
        ),
        (
            framed(b"MPUB t\n", &0u32.to_be_bytes()),
            ErrorCode::BadBody,
            "MPUB invalid message count 0".into(),
        ),
        (
            framed(b"MPUB t\n", &[0, 0]),
            ErrorCode::BadBody,
            "MPUB failed to read message count".into(),
        ),
        (
            framed(b"MPUB t\n", &[0, 0, 0, 2, 0, 0, 0, 1, b'a']),
            ErrorCode::BadMessage,
            "MPUB failed to read message(1) body size".into(),
        ),
        (
            framed(b"MPUB t\n", &[0, 0, 0, 1, 0, 0, 0, 0]),
            ErrorCode::BadMessage,
            "MPUB invalid message(0) body size 0".into(),
        ),
        (
            framed(b"MPUB t\n", &[0, 0, 0, 1, 0, 0, 0, 5, b'a']),
            ErrorCode::BadMessage,
            "MPUB failed to read message body".into(),
        ),
        (
            framed(b"MPUB t\n", &[0, 0, 0, 1, 0, 0, 0, 1, b'a', b'b']),
            ErrorCode::BadBody,
            "MPUB body size 10 does not match its messages (9)".into(),
        ),
        (
            framed(b"MPUB t\n", &[0, 0, 0, 1, 0, 0x20, 0, 0, b'a']),
            ErrorCode::BadMessage,
            "MPUB message too big 2097152 > 1048576".into(),
        ),
    ];
    for (wire, code, text) in cases {
        let e = err_of(&wire);
        assert_eq!(
            (e.code, e.description.as_str()),
            (code, text.as_str()),
            "{:?}",
            String::from_utf8_lossy(&wire)
        );
        assert!(e.fatal);
    }
}

#[test]
fn huge_length_prefixes_fail_without_waiting_or_allocating() {
    let two31 = 0x8000_0000u32.to_be_bytes();
    let cases: Vec<(&[u8], ErrorCode, &str)> = vec![
        (
            b"PUB t\n",
            ErrorCode::BadMessage,
            "PUB invalid message body size -2147483648",
        ),
        (
            b"DPUB t 0\n",
            ErrorCode::BadMessage,
            "DPUB invalid message body size -2147483648",
        ),
        (
            b"MPUB t\n",
            ErrorCode::BadBody,
            "MPUB invalid body size -2147483648",
        ),
        (
            b"IDENTIFY\n",
            ErrorCode::BadBody,
            "IDENTIFY invalid body size -2147483648",
        ),
        (
            b"AUTH\n",
            ErrorCode::BadBody,
            "AUTH invalid body size -2147483648",
        ),
    ];
    for (line, code, text) in cases {
        let mut wire = line.to_vec();
        wire.extend_from_slice(&two31);
        let e = Command::check(&wire, &limits()).unwrap_err();
        assert_eq!((e.code, e.description.as_str()), (code, text));
    }
    let too_big: &[(&[u8], u32, &str)] = &[
        (b"PUB t\n", 1048577, "PUB message too big 1048577 > 1048576"),
        (b"MPUB t\n", 5242881, "MPUB body too big 5242881 > 5242880"),
        (
            b"IDENTIFY\n",
            0x7fff_ffff,
            "IDENTIFY body too big 2147483647 > 5242880",
        ),
        (b"AUTH\n", 5242881, "AUTH body too big 5242881 > 5242880"),
    ];
    for (line, len, text) in too_big {
        let mut wire = line.to_vec();
        wire.extend_from_slice(&len.to_be_bytes());
        let e = Command::check(&wire, &limits()).unwrap_err();
        assert_eq!(e.description, *text);
    }
    // A valid but large prefix only asks for what the limit allows.
    let mut wire = b"PUB t\n".to_vec();
    wire.extend_from_slice(&1048576u32.to_be_bytes());
    assert_eq!(
        Command::check(&wire, &limits()),
        Ok(Check::Incomplete(6 + 4 + 1048576))
    );
}

#[test]
fn line_without_newline_is_capped() {
    let wire = vec![b'A'; DEFAULT_MAX_LINE];
    assert_eq!(
        Command::check(&wire, &limits()),
        Ok(Check::Incomplete(DEFAULT_MAX_LINE + 1))
    );
    let wire = vec![b'A'; DEFAULT_MAX_LINE + 1];
    assert!(Command::check(&wire, &limits()).is_err());
    // A line of exactly max_line bytes plus its newline is fine (and then
    // unknown).
    let mut wire = vec![b'A'; DEFAULT_MAX_LINE];
    wire.push(b'\n');
    let e = Command::check(&wire, &limits()).unwrap_err();
    assert!(e.description.starts_with("invalid command AAA"));
}

#[test]
fn several_commands_in_one_buffer() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(b"RDY 5\n");
    buf.extend_from_slice(&framed(b"PUB t\n", b"x"));
    buf.extend_from_slice(b"NOP\n");
    buf.extend_from_slice(b"FI");
    let l = limits();
    assert!(matches!(
        Command::parse(&mut buf, &l),
        Ok(Some(Command::Rdy(_)))
    ));
    assert!(matches!(
        Command::parse(&mut buf, &l),
        Ok(Some(Command::Pub(_)))
    ));
    assert!(matches!(
        Command::parse(&mut buf, &l),
        Ok(Some(Command::Nop(_)))
    ));
    assert_eq!(Command::parse(&mut buf, &l), Ok(None));
    assert_eq!(&buf[..], b"FI");
}

#[test]
fn frames_are_byte_exact() {
    let mut out = BytesMut::new();
    write_response(&mut out, b"OK");
    assert_eq!(&out[..], &[0, 0, 0, 6, 0, 0, 0, 0, b'O', b'K']);
    out.clear();
    write_error(&mut out, &ProtocolError::invalid("x"));
    assert_eq!(&out[..], b"\x00\x00\x00\x0f\x00\x00\x00\x01E_INVALID x");
    out.clear();
    let msg = Message {
        id: MessageId(*ID),
        timestamp: 0x0102_0304_0506_0708,
        attempts: 0x0a0b,
        body: Bytes::from_static(b"hi"),
    };
    write_message(&mut out, &msg);
    let mut expected = vec![0, 0, 0, 32, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b];
    expected.extend_from_slice(ID);
    expected.extend_from_slice(b"hi");
    assert_eq!(&out[..], &expected[..]);
    assert_eq!(out.len(), message_frame_len(2));
}

//! Fuzz targets of the STOMP frame parser (run natively as unit tests, see
//! `fuzzkit`): any bytes in any chunking under small limits, which must give
//! the same frames as the whole input at once and never buffer past the
//! frame limit; and a round trip of generated frames through `encode_frame`.

use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::{Result as ArbResult, Unstructured};

use super::*;

/// Notes the largest allocation of a target run (test builds only; the
/// component keeps its own allocator).
#[global_allocator]
static TRACK: fuzzkit::TrackingAlloc = fuzzkit::TrackingAlloc;

/// Small limits, so every limit check is reached by small inputs.
const LIMITS: Limits = Limits {
    max_frame: 512,
    max_headers: 4,
    max_header_len: 64,
};

/// A frame detached from the parser's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owned {
    command: Command,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Owned {
    fn from(f: &Frame<'_>) -> Owned {
        let headers = f
            .headers
            .iter()
            .map(|&(a, b, c)| (f.text[a..b].to_string(), f.text[b..c].to_string()))
            .collect();
        Owned {
            command: f.command,
            headers,
            body: f.body.to_vec(),
        }
    }
}

/// Feeds `chunks` one by one, collecting frames until the first error, and
/// checks that the parser never holds more than a frame's worth of input.
fn feed(limits: Limits, chunks: &[&[u8]]) -> (Vec<Owned>, Option<ParseError>) {
    let mut p = Parser::new(limits);
    let mut frames = Vec::new();
    for c in chunks {
        p.push(c);
        loop {
            match p.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.body.len() < limits.max_frame);
                    assert!(f.headers.len() <= limits.max_headers);
                    frames.push(Owned::from(&f));
                }
                Ok(None) => {
                    assert!(
                        p.buffered() <= limits.max_frame,
                        "{} bytes buffered without a frame",
                        p.buffered()
                    );
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn chunking(data: &[u8]) -> String {
    let (split, data) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s), rest),
        None => (0, data),
    };
    let whole = feed(LIMITS, &[data]);
    // Chunk sizes from the first byte, cycled: 1, 2, ... bytes at a time.
    let step = split % 17 + 1;
    let chunks: Vec<&[u8]> = data.chunks(step).collect();
    let pieces = feed(LIMITS, &chunks);
    assert_eq!(whole.0, pieces.0, "frames differ with {step}-byte chunks");
    assert_eq!(
        whole.1.is_some(),
        pieces.1.is_some(),
        "{whole:?} vs {pieces:?}"
    );
    match &whole.1 {
        Some(e) => format!("{} {}", whole.0.len(), e)
            .chars()
            .take(24)
            .collect(),
        None => format!("{} ok", whole.0.len()),
    }
}

#[test]
fn fuzz_stomp_frames_in_any_chunking() {
    let mut send = Vec::new();
    encode_frame(
        &mut send,
        "SEND",
        &[("destination", "/queue/a"), ("x", "a\\b:c")],
        b"hi\0there",
    );
    Fuzzer::new("stomp_frames")
        .seeds([
            &[0u8][..],
            b"\x03CONNECT\naccept-version:1.2\nhost:h\n\n\0",
            b"\x05\nSUBSCRIBE\nid:0\ndestination:/topic/t\nack:client-individual\n\n\0\n",
            b"\x00SEND\ndestination:/queue/a\n\nbody\0\r\nACK\nid:7\n\n\0",
            b"\x01BEGIN\ntransaction:tx\n\n\0COMMIT\ntransaction:tx\n\n\0DISCONNECT\nreceipt:r\n\n\0",
        ])
        .seed([&[2u8][..], &send].concat())
        .dict([
            &b"\n"[..],
            b"\r\n",
            b"\0",
            b":",
            b"\\c",
            b"\\n",
            b"\\",
            b"content-length:",
            b"SEND\n",
            b"CONNECT\n",
            b"destination:",
        ])
        .max_len(2048)
        // The buffer is compacted only once 4 KiB are consumed, so it may
        // hold that plus a frame and the input, and doubles as it grows.
        .max_alloc(64 * 1024)
        .run(chunking);
}

fn text(u: &mut Unstructured<'_>) -> ArbResult<String> {
    let s: String = u.arbitrary()?;
    Ok(s.chars().take(12).collect())
}

/// `encode_frame` then parse: the same command, headers (with the
/// `content-length` the encoder adds) and body, under the default limits.
fn round_trip(data: &[u8]) -> usize {
    const COMMANDS: &[(&str, Command)] = &[
        ("SEND", Command::Send),
        ("SUBSCRIBE", Command::Subscribe),
        ("UNSUBSCRIBE", Command::Unsubscribe),
        ("ACK", Command::Ack),
        ("NACK", Command::Nack),
        ("BEGIN", Command::Begin),
        ("COMMIT", Command::Commit),
        ("ABORT", Command::Abort),
        ("DISCONNECT", Command::Disconnect),
    ];
    let mut u = Unstructured::new(data);
    let mut frames = Vec::new();
    let mut wire = Vec::new();
    while frames.len() < 4 && !u.is_empty() {
        let Ok(&(name, command)) = u.choose(COMMANDS) else {
            break;
        };
        let mut headers = Vec::new();
        for _ in 0..u.int_in_range(0..=5).unwrap_or(0) {
            let (Ok(k), Ok(v)) = (text(&mut u), text(&mut u)) else {
                break;
            };
            if k != "content-length" {
                headers.push((k, v));
            }
        }
        let body: Vec<u8> = u.arbitrary().unwrap_or_default();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        encode_frame(&mut wire, name, &refs, &body);
        if !body.is_empty() {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        frames.push(Owned {
            command,
            headers,
            body,
        });
    }
    let chunks: Vec<&[u8]> = fuzzkit::chunks(&wire, &mut u);
    let (got, err) = feed(Limits::default(), &chunks);
    assert_eq!(err, None);
    assert_eq!(got, frames);
    got.len()
}

#[test]
fn fuzz_stomp_round_trip() {
    Fuzzer::new("stomp_round_trip")
        .seed([7u8; 64])
        .seed((0..=255u8).collect::<Vec<_>>())
        .max_len(2048)
        .run(round_trip);
}

/// The CONNECT headers a client controls: `heart-beat` and
/// `accept-version`, parsed and negotiated against any server setting.
fn connect_headers(data: &[u8]) -> (bool, Option<&'static str>) {
    use crate::rules::{negotiate_heart_beat, negotiate_version, parse_heart_beat};
    let text = String::from_utf8_lossy(data);
    let hb = parse_heart_beat(&text);
    if let Some((cx, cy)) = hb {
        assert_eq!(parse_heart_beat(&format!("{cx},{cy}")), Some((cx, cy)));
        let mut u = Unstructured::new(data);
        let server: (u64, u64) = u.arbitrary().unwrap_or_default();
        let (send, expect) = negotiate_heart_beat((cx, cy), server);
        assert!(send == 0 || (send >= server.0 && send >= cy));
        assert!(expect == 0 || (expect >= cx && expect >= server.1));
    }
    (
        hb.is_some(),
        negotiate_version(Some(&text)).map(|v| v.as_str()),
    )
}

#[test]
fn fuzz_stomp_connect_headers() {
    Fuzzer::new("stomp_connect_headers")
        .seeds([
            "10000,10000",
            "0,0",
            " 5 , 18446744073709551615",
            "1.2",
            "1.0,1.1",
            "1.1, 1.2",
        ])
        .dict([&b","[..], b" ", b"1.2", b"1.1", b"-"])
        .max_len(128)
        .max_alloc(4096)
        .run(connect_headers);
}

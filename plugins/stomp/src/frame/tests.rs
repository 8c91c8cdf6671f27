//! Unit tests of the STOMP frame codec: parsing in every chunking, limits,
//! escapes, encoding round trips; plus the ignored parser micro-benchmark.

use super::*;

/// A frame detached from the parser, to collect across pushes.
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

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn all(parser: &mut Parser) -> Result<Vec<Owned>, ParseError> {
    let mut out = Vec::new();
    while let Some(f) = parser.next_frame()? {
        out.push(Owned::from(&f));
    }
    Ok(out)
}

/// Feeds `chunks` one by one, collecting frames until the first error.
fn feed(limits: Limits, chunks: &[&[u8]]) -> (Vec<Owned>, Option<ParseError>) {
    let mut p = Parser::new(limits);
    let mut frames = Vec::new();
    for c in chunks {
        p.push(c);
        loop {
            match p.next_frame() {
                Ok(Some(f)) => frames.push(Owned::from(&f)),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

const STREAM: &[u8] = b"STOMP\naccept-version:1.2\nhost:x\nheart-beat:100,200\n\n\0\n\r\n\
SEND\r\ndestination:/queue/a\r\ncontent-length:5\r\n\r\nab\0cd\0\n\
SEND\ndestination:/topic/b\\cc\nx-y:a\\\\b\\nc\\rd\nreceipt:7\n\nhello\0\
\n\nSUBSCRIBE\nid:0\ndestination:/queue/a\nack:client\nid:dup\n\n\0\
ACK\nid:1.0123456789abcdef\n\n\0DISCONNECT\nreceipt:bye\n\n\0";

#[test]
fn parses_a_stream() {
    let (frames, err) = feed(Limits::default(), &[STREAM]);
    assert_eq!(err, None);
    let cmds: Vec<_> = frames.iter().map(|f| f.command).collect();
    assert_eq!(
        cmds,
        [
            Command::Stomp,
            Command::Send,
            Command::Send,
            Command::Subscribe,
            Command::Ack,
            Command::Disconnect
        ]
    );
    assert_eq!(frames[0].header("heart-beat"), Some("100,200"));
    assert_eq!(frames[1].body, b"ab\0cd");
    assert_eq!(frames[1].header("destination"), Some("/queue/a"));
    assert_eq!(frames[2].header("destination"), Some("/topic/b:c"));
    assert_eq!(frames[2].header("x-y"), Some("a\\b\nc\rd"));
    assert_eq!(frames[2].body, b"hello");
    assert_eq!(frames[3].header("id"), Some("0"));
    assert_eq!(frames[5].header("receipt"), Some("bye"));
}

#[test]
fn every_split_parses_identically() {
    let (whole, _) = feed(Limits::default(), &[STREAM]);
    for i in 0..=STREAM.len() {
        let (a, b) = STREAM.split_at(i);
        let (frames, err) = feed(Limits::default(), &[a, b]);
        assert_eq!(err, None, "split at {i}");
        assert_eq!(frames, whole, "split at {i}");
    }
    let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
    assert_eq!(feed(Limits::default(), &bytes), (whole.clone(), None));
    for size in 2..9 {
        let chunks: Vec<&[u8]> = STREAM.chunks(size).collect();
        assert_eq!(feed(Limits::default(), &chunks), (whole.clone(), None));
    }
}

#[test]
fn errors_are_the_same_for_every_split() {
    let limits = Limits {
        max_frame: 64,
        max_headers: 2,
        max_header_len: 20,
    };
    let cases: &[(&[u8], ParseError)] = &[
        (b"HELLO\n\n\0", ParseError::UnknownCommand("HELLO".into())),
        (
            b"SEND\nnocolon\n\n\0",
            ParseError::MalformedHeader("nocolon".into()),
        ),
        (b"SEND\na:b\\t\n\n\0", ParseError::BadEscape("b\\t".into())),
        (
            b"SEND\ncontent-length:x\n\n\0",
            ParseError::BadContentLength("x".into()),
        ),
        (b"SEND\ncontent-length:1\n\nab\0", ParseError::MissingNul),
        (
            b"SEND\ncontent-length:100\n\n",
            ParseError::FrameTooLarge(64),
        ),
        (b"SEND\na:1\nb:2\nc:3\n\n\0", ParseError::TooManyHeaders(2)),
        (
            b"SEND\naaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1\n\n\0",
            ParseError::HeaderTooLong(20),
        ),
        (b"SEND\na:\xff\n\n\0", ParseError::NotUtf8),
    ];
    for (input, want) in cases {
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            let (frames, err) = feed(limits, &[a, b]);
            assert!(frames.is_empty());
            assert_eq!(err.as_ref(), Some(want), "{:?} split at {i}", input);
        }
    }
    // A body without NUL and without content-length hits the frame limit.
    let mut big = b"SEND\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 100));
    assert_eq!(feed(limits, &[&big]).1, Some(ParseError::FrameTooLarge(64)));
    // Endless header bytes without newline are refused before buffering more.
    let endless = vec![b'a'; 40];
    assert_eq!(
        feed(limits, &[b"SEND\n", &endless]).1,
        Some(ParseError::HeaderTooLong(20))
    );
}

/// Pseudo-random inputs built from frame fragments and noise: the parser
/// never panics and every two-chunk split gives the same frames and error.
#[test]
fn random_input_is_split_invariant() {
    let pieces: &[&[u8]] = &[
        b"SEND\n",
        b"CONNECT\n",
        b"ACK\n",
        b"NOPE\n",
        b"destination:/queue/a\n",
        b"content-length:3\n",
        b"content-length:x\n",
        b"a\\c:b\\n\n",
        b"bad\\q:1\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"\0",
        b"abc",
        b"\xff\xfe",
        b":",
        b"\\",
    ];
    let limits = Limits {
        max_frame: 96,
        max_headers: 3,
        max_header_len: 24,
    };
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..(next() % 24) {
            input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let whole = feed(limits, &[&input]);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(feed(limits, &[a, b]), whole, "{input:?} split at {i}");
        }
    }
}

#[test]
fn connect_headers_are_not_unescaped() {
    let mut p = Parser::new(Limits::default());
    p.push(b"CONNECT\nlogin:a\\b\n\n\0");
    let f = all(&mut p).expect("parses");
    assert_eq!(f[0].header("login"), Some("a\\b"));
}

#[test]
fn first_repeated_header_wins() {
    let mut p = Parser::new(Limits::default());
    p.push(b"SEND\ncontent-length:2\ncontent-length:9\nd:1\nd:2\n\nab\0");
    let f = all(&mut p).expect("parses");
    assert_eq!(f[0].body, b"ab");
    assert_eq!(f[0].header("d"), Some("1"));
}

#[test]
fn heartbeats_only_yield_nothing() {
    let mut p = Parser::new(Limits::default());
    p.push(b"\n\r\n\n\r");
    assert_eq!(all(&mut p), Ok(vec![]));
    p.push(b"\nSEND\n\nx\0");
    assert_eq!(all(&mut p).map(|f| f.len()), Ok(1));
    assert_eq!(p.buffered(), 0);
}

#[test]
fn encodes_and_escapes() {
    let mut out = Vec::new();
    encode_frame(&mut out, "RECEIPT", &[("receipt-id", "a:b\n")], b"");
    assert_eq!(out, b"RECEIPT\nreceipt-id:a\\cb\\n\n\n\0");
    out.clear();
    encode_frame(&mut out, "CONNECTED", &[("server", "x:y")], b"\0z");
    assert_eq!(out, b"CONNECTED\nserver:x:y\ncontent-length:2\n\n\0z\0");
    out.clear();
    push_decimal(&mut out, 0);
    push_decimal(&mut out, 18446744073709551615);
    assert_eq!(out, b"018446744073709551615");
}

#[test]
fn many_frames_in_a_long_stream_compact_the_buffer() {
    let mut p = Parser::new(Limits::default());
    let frame = b"SEND\ndestination:/topic/t\ncontent-length:3\n\nabc\0";
    let mut n = 0;
    for _ in 0..2000 {
        p.push(frame);
        n += all(&mut p).expect("parses").len();
    }
    assert_eq!(n, 2000);
    assert!(p.buf.capacity() < 64 * 1024);
}

/// Parser throughput on the host: `cargo test --release -p stomp micro -- --ignored --nocapture`.
#[cfg(test)]
mod micro {
    #[test]
    #[ignore]
    fn parse_speed() {
        use super::*;
        let mut one = b"SEND\ndestination:/queue/bench_topic_1234\ncontent-length:100\n\n".to_vec();
        one.extend(std::iter::repeat_n(b'x', 100));
        one.push(0);
        let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 400).collect();
        let mut p = Parser::new(Limits::default());
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..500 {
            p.push(&chunk);
            while let Ok(Some(f)) = p.next_frame() {
                n += f.body.len();
            }
        }
        let el = t.elapsed();
        eprintln!(
            "{} frames, {:?} per frame ({n})",
            500 * 400,
            el / (500 * 400)
        );
    }
}

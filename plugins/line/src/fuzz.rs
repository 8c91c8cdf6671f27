//! Fuzz targets of the LINE parser (`parse.rs`; run natively as unit tests, see
//! `fuzzkit`): any line through `parse` and the body escapes, and a round
//! trip of generated commands through the text a client would type.

use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::Unstructured;

use crate::parse::*;

/// Notes the largest allocation of a target run (test builds only; the
/// component keeps its own allocator).
#[global_allocator]
static TRACK: fuzzkit::TrackingAlloc = fuzzkit::TrackingAlloc;

fn parse_any(line: &[u8]) -> String {
    let out = match parse(line) {
        Ok(cmd) => {
            if let Command::Pub { body, .. } | Command::Dpub { body, .. } = &cmd {
                // Unescaping only ever shortens.
                assert!(!body.is_empty() && body.len() <= line.len());
            }
            format!("{cmd:?}").chars().take(6).collect()
        }
        Err(e) => e.chars().take(12).collect(),
    };
    let raw = unescape(line);
    assert!(raw.len() <= line.len());
    let mut escaped = Vec::new();
    escape(line, &mut escaped);
    assert!(!escaped.iter().any(|b| b.is_ascii_control()));
    assert_eq!(unescape(&escaped), line);
    out
}

#[test]
fn fuzz_line_parse() {
    Fuzzer::new("line_parse")
        .seeds([
            &b"PUB t hello world"[..],
            b"DPUB t 1500 later\\n\\x01",
            b"SUB t c manual",
            b"RDY 10",
            b"FIN 0123456789abcdef",
            b"REQ 0123456789abcdef 50",
            b"TOUCH 0123456789abcdef",
            b"STATS t",
            b"PING",
            b"QUIT",
            b"HELP",
        ])
        .dict([
            &b" "[..],
            b"\t",
            b"\\x",
            b"\\n",
            b"\\\\",
            b"manual",
            b"auto",
            b"\xc3\xa9",
            b"\xff",
        ])
        .max_len(1024)
        .max_alloc(16 * 1024)
        .run(parse_any);
}

/// A word as `split_word` keeps it: no separators, not starting with
/// whitespace, not empty, UTF-8.
fn word(u: &mut Unstructured<'_>) -> fuzzkit::arbitrary::Result<String> {
    let s: String = u.arbitrary()?;
    let w: String = s
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .take(80)
        .collect();
    Ok(if w.is_empty() { "t".into() } else { w })
}

fn round_trip(data: &[u8]) -> u8 {
    let mut u = Unstructured::new(data);
    let Ok(kind) = u.int_in_range(0..=1u8) else {
        return 9;
    };
    let topic = word(&mut u).unwrap_or_else(|_| "t".into());
    let mut body: Vec<u8> = u.arbitrary().unwrap_or_default();
    if body.is_empty() {
        body.push(b'x');
    }
    let mut line = Vec::new();
    let delay_ms: u32 = u.arbitrary().unwrap_or_default();
    if kind == 0 {
        line.extend_from_slice(format!("pub {topic} ").as_bytes());
    } else {
        line.extend_from_slice(format!("DPUB {topic} {delay_ms} ").as_bytes());
    }
    escape(&body, &mut line);
    let want = if kind == 0 {
        Command::Pub {
            topic: &topic,
            body,
        }
    } else {
        Command::Dpub {
            topic: &topic,
            delay_ms,
            body,
        }
    };
    assert_eq!(parse(&line), Ok(want));
    kind
}

#[test]
fn fuzz_line_round_trip() {
    Fuzzer::new("line_round_trip")
        .seed([1u8; 40])
        .seed((0..=255u8).collect::<Vec<_>>())
        .max_len(1024)
        .run(round_trip);
}

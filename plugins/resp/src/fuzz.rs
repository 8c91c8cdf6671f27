//! Fuzz targets of the RESP request parser (run natively as unit tests, see
//! `fuzzkit`): any bytes through `parse` against its contracts (ranges
//! inside the input, needs that never pass the limits, every prefix of a
//! command incomplete), and a round trip of generated commands encoded as
//! clients send them. The session's fuzz target lives with its fake host in
//! `session/tests.rs`.

use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::Unstructured;

use crate::parse::{INLINE_MAX, Limits, Parsed, parse, split_args};
use crate::reply;

/// Notes the largest allocation of a target run (test builds only; the
/// component keeps its own allocator).
#[global_allocator]
static TRACK: fuzzkit::TrackingAlloc = fuzzkit::TrackingAlloc;

/// Small limits, so the length checks are reached by small mutants.
const LIMITS: Limits = Limits {
    max_bulk: 512,
    max_array: 16,
};

/// Parses commands one after the other, checking each outcome's contract.
fn parse_stream(data: &[u8]) -> Vec<u8> {
    let mut pos = 0;
    let mut kinds = Vec::new();
    for _ in 0..32 {
        let buf = &data[pos..];
        let used = match parse(buf, LIMITS) {
            Ok(Parsed::Multibulk(f)) => {
                assert!(f.consumed <= buf.len() && f.consumed > 0);
                assert!(f.args.len() <= LIMITS.max_array);
                for r in &f.args {
                    assert!(r.end <= f.consumed && r.len() <= LIMITS.max_bulk);
                }
                kinds.push(0);
                f.consumed
            }
            Ok(Parsed::Inline { args, consumed }) => {
                assert!(consumed <= buf.len() && consumed > 0);
                assert!(args.iter().map(Vec::len).sum::<usize>() <= consumed);
                kinds.push(1);
                consumed
            }
            Ok(Parsed::Incomplete { at_least }) => {
                assert!(at_least > buf.len(), "needs {at_least}, has {}", buf.len());
                assert!(
                    at_least <= INLINE_MAX + 2 + LIMITS.max_array * (LIMITS.max_bulk + 24),
                    "needs {at_least}"
                );
                kinds.push(2);
                break;
            }
            Err(e) => {
                kinds.push(3 + e.to_string().len() as u8);
                break;
            }
        };
        // Every shorter prefix of a whole command is only incomplete.
        for cut in [used - 1, used / 2] {
            match parse(&buf[..cut], LIMITS) {
                Ok(Parsed::Incomplete { at_least }) => {
                    assert!(
                        at_least > cut && at_least <= used,
                        "prefix {cut} of {used} needs {at_least}"
                    )
                }
                other => panic!("prefix {cut} of a {used}-byte command gave {other:?}"),
            }
        }
        pos += used;
        if pos >= data.len() {
            break;
        }
    }
    kinds
}

#[test]
fn fuzz_resp_parse() {
    Fuzzer::new("resp_parse")
        .seeds([
            &b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nt\r\n$5\r\nhello\r\n"[..],
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nt\r\n*1\r\n$4\r\nPING\r\n",
            b"*0\r\n*-1\r\n",
            b"PING\r\nSET k \"a\\x41\\n\" 'b c'\n",
            b"LPUSH q \"unterminated\n",
        ])
        .dict([&b"\r\n"[..], b"*", b"$", b"-1", b"\"", b"'", b"\\x", b"\0"])
        .max_len(4096)
        .max_alloc(32 * 1024)
        .run(parse_stream);
}

/// Multibulk commands encoded like a client library does parse back to the
/// same arguments; inline ones through `split_args` too when quoted simply.
fn round_trip(data: &[u8]) -> usize {
    let mut u = Unstructured::new(data);
    let mut sent: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut wire = Vec::new();
    while sent.len() < 8 && !u.is_empty() {
        let n = u.int_in_range(1..=LIMITS.max_array).unwrap_or(1);
        let mut args = Vec::new();
        for _ in 0..n {
            let len = u.int_in_range(0..=LIMITS.max_bulk).unwrap_or(0) % 40;
            args.push(u.bytes(len.min(u.len())).unwrap_or_default().to_vec());
        }
        reply::array(&mut wire, args.len());
        for a in &args {
            reply::bulk(&mut wire, a);
        }
        sent.push(args);
    }
    let mut got = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        match parse(&wire[pos..], LIMITS) {
            Ok(Parsed::Multibulk(f)) => {
                let base = pos;
                got.push(
                    f.args
                        .iter()
                        .map(|r| wire[base + r.start..base + r.end].to_vec())
                        .collect::<Vec<_>>(),
                );
                pos += f.consumed;
            }
            other => panic!("own encoding parsed as {other:?}"),
        }
    }
    assert_eq!(got, sent);
    // Inline: words of plain letters split back as themselves.
    let words: Vec<Vec<u8>> = sent
        .iter()
        .flatten()
        .map(|a| {
            a.iter()
                .copied()
                .filter(u8::is_ascii_alphanumeric)
                .collect::<Vec<u8>>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    assert_eq!(split_args(&words.join(&b' ')), Some(words));
    sent.len()
}

#[test]
fn fuzz_resp_round_trip() {
    Fuzzer::new("resp_round_trip")
        .seed([5u8; 64])
        .seed((0..=255u8).collect::<Vec<_>>())
        .max_len(2048)
        .run(round_trip);
}

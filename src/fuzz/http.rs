//! Fuzz targets of the HTTP API's own parsers: the query string (Go's
//! `url.ParseQuery` rules) with a round trip of percent-encoded pairs, and
//! the `/mpub` bodies (binary `[count]([size][body])*` and newline-separated)
//! with the `defer` parameter, against their limits.

use std::time::Duration;

use bytes::Bytes;
use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::Unstructured;

use crate::http::params::Query;
use crate::http::publish::{parse_binary, parse_defer, split_lines};

fn query(data: &[u8]) -> bool {
    let raw = String::from_utf8_lossy(data);
    let parsed = Query::parse(Some(&raw)).is_ok();
    // Percent-encoded pairs parse back; the first value of a key wins.
    let mut u = Unstructured::new(data);
    let mut pairs: Vec<(String, String)> = Vec::new();
    while pairs.len() < 8 && !u.is_empty() {
        let (Ok(k), Ok(v)) = (u.arbitrary::<String>(), u.arbitrary::<String>()) else {
            break;
        };
        pairs.push((k, v));
    }
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(b).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let text: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let q = Query::parse(Some(&text.join("&"))).expect("encoded pairs parse");
    for (k, _) in &pairs {
        if k.is_empty() {
            continue;
        }
        let first = pairs
            .iter()
            .find(|(k2, _)| k2 == k)
            .map(|(_, v)| v.as_str());
        assert_eq!(q.get(k), first, "key {k:?}");
    }
    parsed
}

#[test]
fn fuzz_http_query() {
    Fuzzer::new("http_query")
        .seeds([
            "topic=t&defer=1500",
            "topic=a%20b&binary=true&x=%zz",
            "a=1;b=2",
            "k+with+space=v%2Bplus&&=x",
        ])
        .dict([&b"%"[..], b"&", b"=", b";", b"+", b"%2", b"%C3%A9"])
        .max_len(1024)
        .max_alloc(16 * 1024)
        .run(query);
}

const MAX_MSG: u64 = 256;
const MAX_BODY: u64 = 4096;

fn mpub(data: &[u8]) -> (u8, usize) {
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let body = Bytes::copy_from_slice(rest);
    match mode % 3 {
        0 => match parse_binary(&body, MAX_MSG, MAX_BODY) {
            Ok(msgs) => {
                assert!(!msgs.is_empty());
                let used: usize = 4 + msgs.iter().map(|m| 4 + m.len()).sum::<usize>();
                assert!(used <= body.len());
                for m in &msgs {
                    assert!(!m.is_empty() && m.len() as u64 <= MAX_MSG);
                }
                // Encoding them again gives the bytes they came from.
                let mut again = (msgs.len() as u32).to_be_bytes().to_vec();
                for m in &msgs {
                    again.extend_from_slice(&(m.len() as u32).to_be_bytes());
                    again.extend_from_slice(m);
                }
                assert_eq!(&again[..], &body[..used]);
                (0, msgs.len())
            }
            Err(e) => (1, e.to_string().len()),
        },
        1 => match split_lines(&body, MAX_MSG) {
            Ok(lines) => {
                for l in &lines {
                    assert!(!l.is_empty() && !l.contains(&b'\n') && l.len() as u64 <= MAX_MSG);
                }
                let kept: Vec<&[u8]> = body
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                assert_eq!(lines.iter().map(|l| &l[..]).collect::<Vec<_>>(), kept);
                (2, lines.len())
            }
            Err(_) => (3, 0),
        },
        _ => {
            let text = String::from_utf8_lossy(rest);
            let max = Duration::from_secs(3600);
            match parse_defer(&text, max) {
                Ok(d) => {
                    assert!(d <= max);
                    (4, 0)
                }
                Err(_) => (5, 0),
            }
        }
    }
}

#[test]
fn fuzz_http_mpub_body() {
    let mut binary = vec![0u8];
    binary.extend_from_slice(&3u32.to_be_bytes());
    for m in [&b"a"[..], b"bc", b"def"] {
        binary.extend_from_slice(&(m.len() as u32).to_be_bytes());
        binary.extend_from_slice(m);
    }
    Fuzzer::new("http_mpub_body")
        .seed(binary)
        .seed(b"\x01one\ntwo\n\nthree\n")
        .seed(b"\x021500")
        .max_len(8192)
        .max_alloc(64 * 1024)
        .run(mpub);
}

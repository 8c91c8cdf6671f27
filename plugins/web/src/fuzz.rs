//! Fuzz targets of the WEB plugin's parsers (run natively as unit tests, see
//! `fuzzkit`): any bytes through the HTTP request-head parser (and its answer
//! must not depend on how the bytes were chunked), and any bytes through the
//! WebSocket frame decoder with a small size limit, which must hold.

use fuzzkit::Fuzzer;
use fuzzkit::arbitrary::Unstructured;

use crate::http::{self, MAX_HEAD};
use crate::ws::{self, Decoder, Event};

/// Notes the largest allocation of a target run (test builds only; the
/// component keeps its own allocator).
#[global_allocator]
static TRACK: fuzzkit::TrackingAlloc = fuzzkit::TrackingAlloc;

fn http_any(data: &[u8]) -> String {
    let whole = http::parse_head(data);
    // Every prefix that is not an error yet is "incomplete" or the same answer.
    for cut in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
        if let Ok(Some((_, n))) = http::parse_head(&data[..cut]) {
            let whole_n = whole.as_ref().ok().and_then(|o| o.as_ref()).map(|o| o.1);
            assert_eq!(whole_n, Some(n));
        }
    }
    match whole {
        Ok(Some((req, n))) => {
            assert!(n <= data.len() && n <= MAX_HEAD);
            assert!(req.headers.len() <= http::MAX_HEADERS);
            assert!(req.path.starts_with('/'));
            let _ = http::websocket_accept(&req);
            format!("ok {} {}", req.headers.len(), req.query.len())
        }
        Ok(None) => {
            assert!(data.len() < MAX_HEAD);
            "incomplete".into()
        }
        Err(e) => {
            assert_eq!(e.status, 400);
            e.text.into()
        }
    }
}

#[test]
fn fuzz_http_head() {
    Fuzzer::new("web_http_head")
        .seeds([
            &b"GET / HTTP/1.1\r\nHost: 127.0.0.1:4150\r\n\r\n"[..],
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"GET /sse?topic=t&channel=c%23ephemeral&secret=a+b HTTP/1.0\nAuthorization: Bearer x\n\n",
        ])
        .dict([
            &b"\r\n"[..],
            b"\r\n\r\n",
            b": ",
            b"%",
            b"%2",
            b"?",
            b"&",
            b"=",
            b"HTTP/1.1",
            b"Upgrade",
            b"websocket",
            b"\xff",
        ])
        .max_len(2 * MAX_HEAD)
        .max_alloc(64 * 1024)
        .run(http_any);
}

fn ws_any(data: &[u8]) -> u64 {
    const MAX: usize = 256;
    let mut u = Unstructured::new(data);
    let split: u8 = u.arbitrary().unwrap_or(0);
    let bytes = u.take_rest();
    let mut d = Decoder::new(MAX);
    let mut buf: Vec<u8> = Vec::new();
    let mut kinds = 0u64;
    // Feed in chunks of `split + 1` bytes, as a socket would.
    for chunk in bytes.chunks(usize::from(split) + 1) {
        buf.extend_from_slice(chunk);
        loop {
            match d.next(&buf) {
                Ok((ev, n)) => {
                    assert!(n <= buf.len());
                    if let Some(ev) = ev {
                        kinds = kinds.wrapping_mul(7).wrapping_add(match ev {
                            Event::Text(t) => {
                                assert!(t.len() <= MAX);
                                1
                            }
                            Event::Binary(b) => {
                                assert!(b.len() <= MAX);
                                2
                            }
                            Event::Ping(p) | Event::Pong(p) => {
                                assert!(p.len() <= 125);
                                3
                            }
                            Event::Close(..) => 4,
                        });
                    }
                    if n == 0 {
                        break;
                    }
                    buf.drain(..n);
                }
                Err(e) => {
                    assert!(
                        [
                            ws::close::PROTOCOL_ERROR,
                            ws::close::BAD_DATA,
                            ws::close::TOO_BIG
                        ]
                        .contains(&e.code)
                    );
                    return 1000 + u64::from(e.code);
                }
            }
        }
    }
    kinds
}

#[test]
fn fuzz_ws_frames() {
    let m = [1, 2, 3, 4];
    let mut frags = ws::client_frame(false, 1, m, b"hel");
    frags.extend(ws::client_frame(true, 9, m, b"ping"));
    frags.extend(ws::client_frame(true, 0, m, b"lo"));
    Fuzzer::new("web_ws_frames")
        .seeds([
            [
                &[7u8][..],
                &ws::client_frame(true, 1, m, br#"{"op":"pub","topic":"t","body":"x"}"#),
            ]
            .concat(),
            [&[0u8][..], &ws::client_frame(true, 2, m, &[0xff; 200])].concat(),
            [&[3u8][..], &frags].concat(),
            [&[1u8][..], &ws::client_frame(true, 8, m, b"\x03\xe8bye")].concat(),
        ])
        .dict([
            &[0x80u8, 0xfe][..],
            &[0x80, 0xff],
            &[0x88, 0x82],
            &[0x00, 0x80],
        ])
        .max_len(2048)
        .max_alloc(16 * 1024)
        .run(ws_any);
}

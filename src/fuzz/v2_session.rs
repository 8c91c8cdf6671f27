//! Fuzz target of a whole V2 connection: the real session (IDENTIFY with
//! compression switches, SUB/RDY with deliveries, publishes, FIN/REQ/TOUCH,
//! CLS) served over a loopback socket on a real broker, fed any bytes after
//! the magic in any chunking. The session must end once the client has sent
//! everything and shut down, and must not panic, whatever it was sent.

use std::collections::BTreeSet;
use std::time::Duration;

use fuzzkit::Fuzzer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::protocol::Accepted;
use crate::protocol::v2::serve;
use crate::server::{Context, Registry};

/// Bound for one whole connection; real runs take well under a millisecond.
const CONNECTION: Duration = Duration::from_secs(10);

fn framed(line: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn seeds() -> Vec<Vec<u8>> {
    let identify = |json: &[u8]| framed(b"IDENTIFY\n", json);
    let mpub = {
        let mut b = 2u32.to_be_bytes().to_vec();
        for m in [&b"one"[..], b"two"] {
            b.extend_from_slice(&(m.len() as u32).to_be_bytes());
            b.extend_from_slice(m);
        }
        framed(b"MPUB t\n", &b)
    };
    let session = [
        identify(br#"{"client_id":"f","feature_negotiation":true,"heartbeat_interval":1000}"#),
        b"SUB t c\nRDY 10\n".to_vec(),
        framed(b"PUB t\n", b"hello"),
        mpub,
        framed(b"DPUB t 5\n", b"later"),
        b"FIN 0123456789abcdef\nREQ 0123456789abcdef 10\nTOUCH 0123456789abcdef\nNOP\nCLS\n"
            .to_vec(),
    ]
    .concat();
    let deflate = [
        identify(br#"{"feature_negotiation":true,"deflate":true,"deflate_level":1}"#),
        b"NOP\n".to_vec(),
    ]
    .concat();
    let snappy = [
        identify(br#"{"feature_negotiation":true,"snappy":true}"#),
        b"\xff\x06\x00\x00sNaPpY".to_vec(),
    ]
    .concat();
    vec![
        [&[5u8][..], &session].concat(),
        [&[1u8][..], &deflate].concat(),
        [&[9u8][..], &snappy].concat(),
        [
            &[31u8][..],
            &framed(b"AUTH\n", b"secret"),
            b"SUB t c#ephemeral\nRDY 1\n",
        ]
        .concat(),
    ]
}

/// Serves one connection that sends `data` in chunks of `step` bytes, then
/// shuts down its side, on a fresh broker (so a failure reproduces from its
/// input alone); returns what the client received.
fn connection(
    rt: &tokio::runtime::Runtime,
    listener: &TcpListener,
    data: &[u8],
    step: usize,
) -> Vec<u8> {
    rt.block_on(async {
        let addr = listener.local_addr().expect("listener address");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let conn = Accepted {
            stream: stream.into(),
            peer,
            magic: *b"  V2",
            id: 1,
        };
        let ctx = Context::new(Config::default(), Registry::new());
        let serving = tokio::spawn(serve(conn, ctx.env()));
        let talk = async {
            let mut out = Vec::new();
            let (mut rd, mut wr) = client.split();
            let send = async {
                for chunk in data.chunks(step) {
                    if wr.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            };
            let (_, _) = tokio::join!(send, rd.read_to_end(&mut out));
            out
        };
        let out = tokio::time::timeout(CONNECTION, talk)
            .await
            .unwrap_or_else(|_| panic!("the session did not end within {CONNECTION:?}"));
        match tokio::time::timeout(CONNECTION, serving).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the session task failed: {e}"),
            Err(_) => panic!("the session did not return within {CONNECTION:?}"),
        }
        out
    })
}

#[test]
fn fuzz_v2_session() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    Fuzzer::new("v2_session")
        .seeds(seeds())
        .dict([
            &b"\n"[..],
            b"SUB t c\n",
            b"RDY ",
            b"PUB t\n\x00\x00\x00\x01x",
            b"IDENTIFY\n",
            b"\"deflate\":true",
            b"\"snappy\":true",
            b"FIN ",
            b"REQ ",
            b"CLS\n",
        ])
        .max_len(2048)
        .budget_scale(0.5)
        .run(|data| {
            let (step, data) = match data.split_first() {
                Some((s, rest)) => (usize::from(*s % 32) + 1, rest),
                None => (1, data),
            };
            let out = connection(&rt, &listener, data, step);
            // The kinds of frames and error codes the client saw.
            let mut kinds = BTreeSet::new();
            let mut rest = &out[..];
            while rest.len() >= 8 {
                let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let kind = &rest[4..8];
                let head: Vec<u8> = rest[8..].iter().take(12).copied().collect();
                kinds.insert((kind.to_vec(), head));
                rest = rest.get(4 + size..).unwrap_or_default();
            }
            kinds
        });
}

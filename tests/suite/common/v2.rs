//! The one V2 test client: it encodes commands and decodes frames by hand,
//! byte for byte, independently of the server's codec, so that every test
//! speaking V2 also checks that codec. Free functions work on a raw
//! `TcpStream` for wire-level tests; `V2Client` wraps them for scenarios.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::STEP;

/// A V2 frame: `(frame type, data)`.
pub type Frame = (u32, Vec<u8>);

/// Writes `bytes`, panicking on a write error.
pub async fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).await.expect("write");
}

/// A command line followed by a `[u32 len][body]` body.
pub fn framed(line: &str, body: &[u8]) -> Vec<u8> {
    let mut v = line.as_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// `PUB <topic>\n[u32 len][body]`.
pub fn pub_cmd(topic: &str, body: &[u8]) -> Vec<u8> {
    framed(&format!("PUB {topic}\n"), body)
}

/// `MPUB <topic>\n[u32 size][u32 count]([u32 len][body])*`.
pub fn mpub_cmd<B: AsRef<[u8]>>(topic: &str, bodies: &[B]) -> Vec<u8> {
    let mut body = (bodies.len() as u32).to_be_bytes().to_vec();
    for b in bodies {
        let b = b.as_ref();
        body.extend_from_slice(&(b.len() as u32).to_be_bytes());
        body.extend_from_slice(b);
    }
    framed(&format!("MPUB {topic}\n"), &body)
}

/// `IDENTIFY\n[u32 len][json]`.
pub fn identify_cmd(json: &str) -> Vec<u8> {
    framed("IDENTIFY\n", json.as_bytes())
}

/// One V2 frame: `(frame type, data)`.
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<Frame> {
    let size = s.read_u32().await?;
    assert!((4..=16 << 20).contains(&size), "frame size {size}");
    let kind = s.read_u32().await?;
    let mut data = vec![0u8; size as usize - 4];
    s.read_exact(&mut data).await?;
    Ok((kind, data))
}

/// `read_frame` on a blocking socket, for threads racing a SIGKILL: a
/// frame size out of range (a torn stream) is an error, not a panic.
pub fn read_frame_blocking(s: &mut std::net::TcpStream) -> std::io::Result<Frame> {
    use std::io::Read;
    let mut head = [0u8; 8];
    s.read_exact(&mut head)?;
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let kind = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if !(4..=16 << 20).contains(&size) {
        return Err(std::io::Error::other(format!("frame size {size}")));
    }
    let mut data = vec![0u8; size - 4];
    s.read_exact(&mut data)?;
    Ok((kind, data))
}

fn is_heartbeat(f: &Frame) -> bool {
    f.0 == 0 && f.1 == b"_heartbeat_"
}

/// Reads frames until one that is not a `_heartbeat_` response.
pub async fn read_frame_skip_heartbeats(s: &mut TcpStream) -> std::io::Result<Frame> {
    loop {
        let f = read_frame(s).await?;
        if !is_heartbeat(&f) {
            return Ok(f);
        }
    }
}

/// Like `read_frame_skip_heartbeats` with a deadline.
pub async fn read_frame_within(s: &mut TcpStream, d: Duration) -> Frame {
    tokio::time::timeout(d, read_frame_skip_heartbeats(s))
        .await
        .expect("frame in time")
        .expect("frame")
}

/// A decoded message frame body.
pub struct Msg {
    pub timestamp: i64,
    pub attempts: u16,
    pub id: [u8; 16],
    pub body: Vec<u8>,
}

impl Msg {
    /// The id as the text FIN, REQ and TOUCH take.
    pub fn id_str(&self) -> String {
        String::from_utf8_lossy(&self.id).into_owned()
    }
}

/// Parses the data of a message frame (type 2).
pub fn parse_msg(data: &[u8]) -> Msg {
    assert!(data.len() >= 26, "message frame too short");
    Msg {
        timestamp: i64::from_be_bytes(data[0..8].try_into().expect("8 bytes")),
        attempts: u16::from_be_bytes(data[8..10].try_into().expect("2 bytes")),
        id: data[10..26].try_into().expect("16 bytes"),
        body: data[26..].to_vec(),
    }
}

/// Reads until the peer closes; returns what arrived. Panics after `d`.
pub async fn read_to_close(s: &mut TcpStream, d: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(d, s.read_to_end(&mut all))
        .await
        .expect("closed in time")
        .ok();
    all
}

/// The next frame (within `STEP`) is the response `data`.
pub async fn expect_response(s: &mut TcpStream, data: &[u8]) {
    let (kind, got) = read_frame_within(s, STEP).await;
    assert_eq!(
        (kind, String::from_utf8_lossy(&got).into_owned()),
        (0, String::from_utf8_lossy(data).into_owned())
    );
}

/// The next frame (within `STEP`) is the error `text`.
pub async fn expect_error(s: &mut TcpStream, text: &str) {
    let (kind, got) = read_frame_within(s, STEP).await;
    assert_eq!(
        (kind, String::from_utf8_lossy(&got).into_owned()),
        (1, text.to_string())
    );
}

/// The next frame (within `STEP`) is a message.
pub async fn expect_message(s: &mut TcpStream) -> Msg {
    let (kind, data) = read_frame_within(s, STEP).await;
    assert_eq!(
        kind,
        2,
        "expected a message, got {kind}: {:?}",
        String::from_utf8_lossy(&data)
    );
    parse_msg(&data)
}

/// The peer closes (within `STEP`) without sending anything more.
pub async fn expect_closed(s: &mut TcpStream) {
    let rest = read_to_close(s, STEP).await;
    assert!(rest.is_empty(), "unexpected bytes before close: {rest:?}");
}

/// Asserts nothing but heartbeats arrives for `d`.
pub async fn expect_silence(s: &mut TcpStream, d: Duration) {
    if let Ok(f) = tokio::time::timeout(d, read_frame_skip_heartbeats(s)).await {
        panic!("unexpected frame {f:?}");
    }
}

/// Sends IDENTIFY with `json` and returns the answer frame.
pub async fn identify(s: &mut TcpStream, json: &str) -> Frame {
    send(s, &identify_cmd(json)).await;
    read_frame_within(s, STEP).await
}

/// A V2 connection for scenarios: it answers heartbeats with NOP while it
/// waits for a frame, so it can sit in a test for as long as it likes.
pub struct V2Client {
    pub stream: TcpStream,
}

impl V2Client {
    /// Connects and sends the V2 magic.
    pub async fn connect(addr: SocketAddr) -> V2Client {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"  V2").await.expect("magic");
        V2Client { stream }
    }

    /// The next frame that is not a heartbeat (heartbeats are answered);
    /// panics after `STEP`.
    pub async fn frame(&mut self) -> Frame {
        loop {
            let f = tokio::time::timeout(STEP, read_frame(&mut self.stream))
                .await
                .expect("frame in time")
                .expect("frame");
            if is_heartbeat(&f) {
                send(&mut self.stream, b"NOP\n").await;
                continue;
            }
            return f;
        }
    }

    pub async fn expect_ok(&mut self) {
        let (kind, data) = self.frame().await;
        assert_eq!(
            (kind, String::from_utf8_lossy(&data).into_owned()),
            (0, "OK".into())
        );
    }

    /// PUB, answered OK.
    pub async fn publish(&mut self, topic: &str, body: &[u8]) {
        send(&mut self.stream, &pub_cmd(topic, body)).await;
        self.expect_ok().await;
    }

    /// SUB, answered OK.
    pub async fn subscribe(&mut self, topic: &str, channel: &str) {
        send(
            &mut self.stream,
            format!("SUB {topic} {channel}\n").as_bytes(),
        )
        .await;
        self.expect_ok().await;
    }

    pub async fn ready(&mut self, n: u32) {
        send(&mut self.stream, format!("RDY {n}\n").as_bytes()).await;
    }

    /// Next message: (id, attempts, body).
    pub async fn message(&mut self) -> (String, u16, Vec<u8>) {
        let (kind, data) = self.frame().await;
        assert_eq!(
            kind,
            2,
            "expected a message frame, got {kind}: {:?}",
            String::from_utf8_lossy(&data)
        );
        let m = parse_msg(&data);
        (m.id_str(), m.attempts, m.body)
    }

    pub async fn finish(&mut self, id: &str) {
        send(&mut self.stream, format!("FIN {id}\n").as_bytes()).await;
    }
}

/// A fresh V2 publisher PUBs `body` to `topic` (answered `OK`), and a fresh
/// V2 consumer on channel `ch` receives it, each step within `STEP`.
pub async fn v2_round_trip(addr: &str, topic: &str, body: &[u8]) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    send(&mut c, format!("  V2SUB {topic} ch\nRDY 1\n").as_bytes()).await;
    let mut p = TcpStream::connect(addr).await.expect("connect");
    send(&mut p, b"  V2").await;
    send(&mut p, &pub_cmd(topic, body)).await;
    let (_, data) = tokio::time::timeout(STEP, read_frame_skip_heartbeats(&mut p))
        .await
        .expect("PUB answered in time")
        .expect("frame");
    assert_eq!(data, b"OK");
    loop {
        let (ft, data) = tokio::time::timeout(STEP, read_frame_skip_heartbeats(&mut c))
            .await
            .expect("message in time")
            .expect("frame");
        if ft == 2 {
            assert_eq!(parse_msg(&data).body, body);
            return;
        }
    }
}

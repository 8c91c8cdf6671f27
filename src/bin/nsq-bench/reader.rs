//! The consuming side: subscribed connections that send one RDY and FIN every
//! message they receive, batching the FINs of one socket read into one write.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use bytes::Buf;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::cli::CommonArgs;
use crate::conn::{Conn, MAX_FRAME, READ_CHUNK, identify_json, tls_config};
use crate::run::Outcome;
use crate::wire;

pub(crate) struct Reader {
    conn: Conn,
}

pub(crate) async fn connect_readers(
    addr: SocketAddr,
    common: &CommonArgs,
    channel: &str,
    workers: usize,
) -> Result<Vec<Reader>> {
    let identify = identify_json(common, "reader");
    let tls = tls_config(common)?;
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut conn = Conn::open(addr, identify.as_deref(), &tls).await?;
        wire::put_sub(&mut conn.wbuf, &common.topic, channel);
        conn.flush().await?;
        conn.expect_ok("SUB").await?;
        out.push(Reader { conn });
    }
    Ok(out)
}

impl Reader {
    /// Sends RDY, then FINs every message until `end`. All FINs produced by
    /// one socket read go out in one write. The FINs owed at any moment are
    /// bounded by RDY (about 38 bytes each), so writing them inline cannot
    /// deadlock against a server that is itself blocked writing to us.
    pub(crate) async fn run(mut self, rdy: u64, end: Instant) -> Outcome {
        let mut count = 0;
        let error = self.pump(rdy, end, &mut count).await.err();
        Outcome { count, error }
    }

    async fn pump(&mut self, rdy: u64, end: Instant, count: &mut u64) -> Result<()> {
        let conn = &mut self.conn;
        wire::put_rdy(&mut conn.wbuf, rdy);
        conn.flush().await?;
        let mut errors = 0u64;
        let deadline = tokio::time::sleep_until(end);
        tokio::pin!(deadline);
        loop {
            let mut off = 0;
            while let Some((frame_type, total)) = wire::check_frame(&conn.rbuf[off..], MAX_FRAME)? {
                let data = &conn.rbuf[off + wire::HEADER_LEN..off + total];
                match frame_type {
                    wire::FRAME_MESSAGE => {
                        let msg = wire::decode_message(data)?;
                        wire::put_fin(&mut conn.wbuf, msg.id);
                        *count += 1;
                    }
                    wire::FRAME_RESPONSE if data == wire::HEARTBEAT => {
                        wire::put_nop(&mut conn.wbuf);
                    }
                    wire::FRAME_RESPONSE => {}
                    wire::FRAME_ERROR => {
                        errors += 1;
                        if errors <= 5 {
                            eprintln!("reader: error frame: {}", String::from_utf8_lossy(data));
                        }
                    }
                    other => bail!("reader: unknown frame type {other}"),
                }
                off += total;
            }
            conn.rbuf.advance(off);
            conn.flush().await?;
            if conn.rbuf.capacity() - conn.rbuf.len() < READ_CHUNK / 4 {
                conn.rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                _ = &mut deadline => break,
                r = conn.stream.read_buf(&mut conn.rbuf) => {
                    if r? == 0 {
                        bail!("server closed the connection after {count} messages");
                    }
                }
            }
        }
        Ok(())
    }
}

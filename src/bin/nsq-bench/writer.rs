//! The publishing side: connections that each keep one pre-encoded MPUB (or
//! PUB) in flight and count the messages the server acknowledges.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::cli::CommonArgs;
use crate::conn::{Conn, identify_json, tls_config};
use crate::run::Outcome;
use crate::wire;

pub(crate) struct Writer {
    conn: Conn,
    /// The complete MPUB frame (a PUB for a batch size of 1), encoded once
    /// and shared by every connection.
    mpub: Bytes,
    batch_size: u64,
}

pub(crate) async fn connect_writers(
    addr: SocketAddr,
    common: &CommonArgs,
    batch_size: usize,
    workers: usize,
) -> Result<Vec<Writer>> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let body = vec![b'a'; common.size];
    let mut frame = BytesMut::new();
    if batch_size == 1 {
        wire::put_pub(&mut frame, &common.topic, &body);
    } else {
        wire::put_mpub(
            &mut frame,
            &common.topic,
            std::iter::repeat_n(body.as_slice(), batch_size),
        );
    }
    let mpub = frame.freeze();
    let identify = identify_json(common, "writer");
    let tls = tls_config(common)?;
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers {
        let conn = Conn::open(addr, identify.as_deref(), &tls).await?;
        out.push(Writer {
            conn,
            mpub: mpub.clone(),
            batch_size: batch_size as u64,
        });
    }
    Ok(out)
}

impl Writer {
    /// One batch in flight at a time, as bench_writer does; stops after the
    /// first acknowledgement past `end`.
    pub(crate) async fn run(mut self, end: Instant) -> Outcome {
        let mut count = 0;
        let error = self.pump(end, &mut count).await.err();
        Outcome { count, error }
    }

    async fn pump(&mut self, end: Instant, count: &mut u64) -> Result<()> {
        loop {
            self.conn.stream.write_all(&self.mpub).await?;
            self.conn.expect_ok("PUB/MPUB").await?;
            *count += self.batch_size;
            if Instant::now() >= end {
                return Ok(());
            }
        }
    }
}

//! One V2 connection for the bench: the socket with the one read buffer and
//! one write buffer it owns, the magic and IDENTIFY handshake, and waiting for
//! an `OK` while answering heartbeats. With `--tls` the IDENTIFY asks for
//! `tls_v1` and the socket is upgraded to TLS as nsqd's clients do.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::CommonArgs;
use crate::wire;

/// Largest frame the bench accepts from the server; nsqd's default
/// `max-msg-size` is 1 MiB, so this only guards against a corrupt stream.
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Read buffer growth step.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// The socket, or TLS over it after an IDENTIFY `tls_v1` upgrade.
pub(crate) type Stream =
    tokio_util::either::Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// How to upgrade to TLS: the client configuration.
pub(crate) type Tls = Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>;

/// The client TLS configuration `common` asks for, if any.
pub(crate) fn tls_config(common: &CommonArgs) -> Result<Tls> {
    if !common.tls {
        return Ok(None);
    }
    let ca = match &common.tls_ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    Ok(Some(nsq_gateway::tls::client_config(ca.as_deref(), None)?))
}

/// One V2 connection: the socket plus the single read buffer it owns.
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr, identify: Option<&str>, tls: &Tls) -> Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream: tokio_util::either::Either::Left(stream),
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(64 * 1024),
        };
        conn.wbuf.extend_from_slice(wire::MAGIC_V2);
        if let Some(json) = identify {
            wire::put_identify(&mut conn.wbuf, json.as_bytes());
            conn.flush().await?;
            conn.expect_ok("IDENTIFY").await?;
            if let Some(config) = tls {
                let tokio_util::either::Either::Left(tcp) = conn.stream else {
                    bail!("already TLS");
                };
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?;
                conn.stream = tokio_util::either::Either::Right(tls);
                conn.expect_ok("TLS upgrade").await?;
            }
        } else {
            conn.flush().await?;
        }
        Ok(conn)
    }

    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads more bytes; an orderly close is an error here because callers only
    /// read when they still expect a frame.
    async fn fill(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        Ok(())
    }

    /// Waits for the next non-heartbeat response frame (answering heartbeats
    /// with NOP) and fails on an error frame. IDENTIFY with feature negotiation
    /// answers with JSON rather than `OK`; both count as success.
    pub(crate) async fn expect_ok(&mut self, what: &str) -> Result<()> {
        loop {
            match wire::check_frame(&self.rbuf, MAX_FRAME)? {
                Some((frame_type, total)) => {
                    let data = &self.rbuf[wire::HEADER_LEN..total];
                    match frame_type {
                        wire::FRAME_RESPONSE if data == wire::HEARTBEAT => {
                            self.rbuf.advance(total);
                            wire::put_nop(&mut self.wbuf);
                            self.flush().await?;
                        }
                        wire::FRAME_RESPONSE => {
                            self.rbuf.advance(total);
                            return Ok(());
                        }
                        wire::FRAME_ERROR => {
                            bail!("{what} failed: {}", String::from_utf8_lossy(data))
                        }
                        other => {
                            bail!("{what}: unexpected frame type {other} while awaiting a response")
                        }
                    }
                }
                None => self.fill().await?,
            }
        }
    }
}

pub(crate) fn identify_json(common: &CommonArgs, role: &str) -> Option<String> {
    if common.skip_identify {
        return None;
    }
    let tls = if common.tls {
        ",\"feature_negotiation\":true,\"tls_v1\":true"
    } else {
        ""
    };
    Some(format!(
        "{{\"client_id\":\"{role}\",\"hostname\":\"{role}\",\"user_agent\":\"nsq-bench/{}\"{tls}}}",
        env!("CARGO_PKG_VERSION")
    ))
}

//! A minimal HTTP/1.1 GET for the auth server: one request per connection
//! (`Connection: close`), the connect timeout and the whole-request timeout
//! of nsqd's `--http-client-*-timeout` flags, a bounded response, and
//! `Content-Length`, chunked or read-to-close bodies. Anything but `200` is
//! an error naming the status.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{AuthConfig, MAX_RESPONSE};

/// Longest status line plus headers accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Parts of an `http://` or `https://` URL.
#[derive(Debug, PartialEq)]
pub(super) struct Url<'a> {
    pub tls: bool,
    pub host: &'a str,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: &'a str,
}

pub(super) fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!(
            "unsupported URL {url:?} (http:// or https:// only)"
        ));
    };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if target.starts_with('?') {
        return Err(format!("URL {url:?} has no path"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("bad port in URL {url:?}"))?;
            (h, port)
        }
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    Ok(Url {
        tls,
        host,
        port,
        target,
    })
}

/// GETs `url` and returns the body of a `200` answer.
pub(super) async fn get(url: &str, cfg: &AuthConfig) -> Result<Vec<u8>, String> {
    let (connect_timeout, request_timeout) = (cfg.connect_timeout, cfg.request_timeout);
    let u = parse_url(url)?;
    let work = async {
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect((u.host, u.port)))
            .await
            .map_err(|_| {
                format!(
                    "connect to {}:{} timed out after {connect_timeout:?}",
                    u.host, u.port
                )
            })?
            .map_err(|e| format!("connect to {}:{}: {e}", u.host, u.port))?;
        let _ = tcp.set_nodelay(true);
        if u.tls {
            let tls = super::tls::connect(tcp, u.host, cfg.tls()?).await?;
            exchange(tls, &u).await
        } else {
            exchange(tcp, &u).await
        }
    };
    tokio::time::timeout(request_timeout, work)
        .await
        .map_err(|_| format!("request to {url:?} timed out after {request_timeout:?}"))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    u: &Url<'_>,
) -> Result<Vec<u8>, String> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: nsq-gateway/{}\r\nAccept: application/vnd.nsq; version=1.0\r\nConnection: close\r\n\r\n",
        u.target,
        if u.port == 80 || u.port == 443 {
            u.host.to_owned()
        } else {
            format!("{}:{}", u.host, u.port)
        },
        env!("CARGO_PKG_VERSION"),
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let limit = (MAX_HEAD + MAX_RESPONSE) as u64;
    (&mut s)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if buf.len() as u64 > limit {
        return Err(format!("response over {limit} bytes"));
    }
    parse_response(&buf)
}

/// Splits a complete response (read to close) into status and body.
pub(super) fn parse_response(buf: &[u8]) -> Result<Vec<u8>, String> {
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response ended inside the headers")?;
    if head_end > MAX_HEAD {
        return Err("response headers too long".into());
    }
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| "response headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        }
    }
    let raw = &buf[head_end + 4..];
    let body = if chunked {
        dechunk(raw)?
    } else if let Some(n) = length {
        raw.get(..n)
            .ok_or("response body shorter than its Content-Length")?
            .to_vec()
    } else {
        raw.to_vec()
    };
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
        return Err(format!("got response {status} {text:?}"));
    }
    Ok(body)
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&raw[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = raw.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        raw = raw.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:4181/auth?x=1").expect("url"),
            Url {
                tls: false,
                host: "127.0.0.1",
                port: 4181,
                target: "/auth?x=1"
            }
        );
        assert_eq!(
            parse_url("https://auth.example").expect("url"),
            Url {
                tls: true,
                host: "auth.example",
                port: 443,
                target: "/"
            }
        );
        assert_eq!(parse_url("http://[::1]:80/a").expect("url").host, "::1");
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing";
        assert_eq!(parse_response(ok).expect("ok"), b"{}");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3;x=y\r\na\":\r\n1\r\n1\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).expect("chunked"), b"{\"a\":1");
        let close = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_response(close).expect("close"), b"all of it");
        let err = parse_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
            .expect_err("403");
        assert!(err.contains("403") && err.contains("nope"), "{err}");
        for bad in [
            &b"HTTP/1.1 200"[..],
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

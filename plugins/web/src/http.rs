//! HTTP/1.1 for the WEB plugin, pure: parsing a request head out of a buffer
//! (with "not complete yet" as a normal outcome), decoding the query string,
//! checking a WebSocket upgrade, and encoding the few responses the plugin
//! sends. No IO; `lib.rs` feeds it bytes and writes what it returns.

use crate::base64;
use crate::sha1::sha1;

/// Longest request head (request line + headers + blank line) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines in one request.
pub const MAX_HEADERS: usize = 64;
/// The GUID RFC 6455 appends to `Sec-WebSocket-Key`.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST` ... as sent (case-sensitive, as RFC 9110 says).
    pub method: String,
    /// The path part of the target, percent-decoded.
    pub path: String,
    /// The query string's `key=value` pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request was refused: the status line and a short body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub text: &'static str,
}

const fn bad(text: &'static str) -> HttpError {
    HttpError { status: 400, text }
}

/// Parses one request head from the start of `buf`. `Ok(None)`: not complete
/// yet (and within `MAX_HEAD`); `Ok(Some((req, n)))`: the head took `n` bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(end) = head_end(&buf[..buf.len().min(MAX_HEAD)]) else {
        if buf.len() >= MAX_HEAD {
            return Err(bad("request head too large"));
        }
        // A request line that cannot become valid fails early, not at 8 KiB.
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            parse_request_line(&buf[..nl])?;
        }
        return Ok(None);
    };
    let head = &buf[..end];
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let first = lines.next().unwrap_or_default();
    let (method, path, query) = parse_request_line(first)?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        headers.push(parse_header(line)?);
    }
    Ok(Some((
        Request {
            method,
            path,
            query,
            headers,
        },
        end,
    )))
}

/// Index just past the blank line ending the head (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut prev_nl = false;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            if prev_nl {
                return Some(i + 1);
            }
            prev_nl = true;
        } else if b != b'\r' {
            prev_nl = false;
        }
    }
    None
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

type RequestLine = (String, String, Vec<(String, String)>);

fn parse_request_line(line: &[u8]) -> Result<RequestLine, HttpError> {
    let line = strip_cr(line);
    let text = std::str::from_utf8(line).map_err(|_| bad("malformed request line"))?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(bad("malformed request line"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad("unsupported HTTP version"));
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("malformed request target"));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path, false).ok_or(bad("malformed request target"))?;
    let query = parse_query(raw_query).ok_or(bad("malformed query string"))?;
    Ok((method.to_owned(), path, query))
}

fn parse_header(line: &[u8]) -> Result<(String, String), HttpError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(bad("malformed header"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(bad("malformed header"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(bad("malformed header"));
    }
    let value = String::from_utf8_lossy(value).trim().to_owned();
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    Ok((name, value))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Decodes `key=value&...`; `None` on a bad escape or non-UTF-8 result.
pub fn parse_query(q: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((percent_decode(k, true)?, percent_decode(v, true)?));
    }
    Some(out)
}

/// `%XX` escapes (and `+` as a space in a query); `None` if malformed.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Checks a WebSocket upgrade request (RFC 6455 4.2.1) and returns the
/// `Sec-WebSocket-Accept` value.
pub fn websocket_accept(req: &Request) -> Result<String, HttpError> {
    if !req.has_token("upgrade", "websocket") || !req.has_token("connection", "upgrade") {
        return Err(bad("expected a WebSocket upgrade"));
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err(bad("unsupported Sec-WebSocket-Version (13 only)"));
    }
    let key = req
        .header("sec-websocket-key")
        .ok_or(bad("missing Sec-WebSocket-Key"))?;
    if base64::decode(key).map(|k| k.len()) != Some(16) {
        return Err(bad("bad Sec-WebSocket-Key"));
    }
    Ok(accept_key(key))
}

/// `base64(sha1(key + GUID))`.
pub fn accept_key(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + WS_GUID.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(WS_GUID.as_bytes());
    base64::encode(&sha1(&input))
}

/// A complete response that closes the connection: status, content type,
/// extra header lines (each ending in `\r\n`) and body.
pub fn response(status: u16, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A short plain-text error response.
pub fn error_response(status: u16, text: &str) -> Vec<u8> {
    let extra = match status {
        405 => "Allow: GET\r\n",
        401 => "WWW-Authenticate: Bearer\r\n",
        400 => "Sec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    response(
        status,
        "text/plain; charset=utf-8",
        extra,
        format!("{status} {}: {text}\n", reason(status)).as_bytes(),
    )
}

/// The `101 Switching Protocols` answer to a valid upgrade.
pub fn upgrade_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// The head of an endless `text/event-stream` response.
pub fn sse_head() -> &'static [u8] {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
      Connection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\n"
}

/// Reason phrases for the statuses the plugin sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Request {
        parse_head(text.as_bytes())
            .expect("valid")
            .expect("complete")
            .0
    }

    #[test]
    fn parses_a_browser_upgrade_at_every_split() {
        let text = "GET /ws?x=1&topic=a%20b+c HTTP/1.1\r\nHost: 127.0.0.1:4150\r\n\
                    Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nrest";
        for cut in 0..text.len() - 4 {
            assert_eq!(parse_head(&text.as_bytes()[..cut]), Ok(None), "cut {cut}");
        }
        let (r, n) = parse_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(&text[n..], "rest");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/ws");
        assert_eq!(r.param("topic"), Some("a b c"));
        assert_eq!(r.header("host"), Some("127.0.0.1:4150"));
        // RFC 6455 1.3's example.
        assert_eq!(
            websocket_accept(&r).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn bare_newlines_are_accepted() {
        let r = req("GET / HTTP/1.0\nHost: x\n\n");
        assert_eq!((r.path.as_str(), r.header("host")), ("/", Some("x")));
    }

    #[test]
    fn malformed_heads_are_400() {
        for text in [
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 x\r\n\r\n",
            "GET /%zz HTTP/1.1\r\n\r\n",
            "GET /?a=%ff HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
            "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            "GET / HTTP/1.1\r\nx: a\x01b\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(text.as_bytes()).map(|_| ()).unwrap_err().status,
                400,
                "{text:?}"
            );
        }
        // A bad request line is refused before the head is complete.
        assert!(parse_head(b"GET /\x01 HTTP/1.1\r\nHost").is_err());
    }

    #[test]
    fn limits() {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        for i in 0..MAX_HEADERS {
            text.push_str(&format!("h{i}: v\r\n"));
        }
        assert!(parse_head(format!("{text}\r\n").as_bytes()).is_ok());
        text.push_str("one: more\r\n\r\n");
        assert_eq!(
            parse_head(text.as_bytes()).unwrap_err().text,
            "too many headers"
        );
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse_head(big.as_bytes()).unwrap_err().text,
            "request head too large"
        );
    }

    #[test]
    fn bad_upgrades() {
        let base = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
        for extra in [
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n",
        ] {
            assert!(websocket_accept(&req(&format!("{base}{extra}\r\n"))).is_err());
        }
        let no_upgrade = "GET /ws HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                          Sec-WebSocket-Version: 13\r\n\r\n";
        assert!(websocket_accept(&req(no_upgrade)).is_err());
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(error_response(404, "no such page")).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n404 Not Found: no such page\n"), "{r}");
        assert!(r.contains("Content-Length: 28\r\n"), "{r}");
        assert!(
            String::from_utf8(error_response(405, "x"))
                .unwrap()
                .contains("Allow: GET\r\n")
        );
        assert!(String::from_utf8_lossy(sse_head()).contains("text/event-stream"));
        assert!(
            String::from_utf8(upgrade_response("abc"))
                .unwrap()
                .ends_with("Accept: abc\r\n\r\n")
        );
    }
}

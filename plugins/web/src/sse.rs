//! Server-Sent Events encoding, pure: one event per NSQ message (`id:` the
//! message id, the body as `data:` lines) and the keep-alive comment that
//! stops proxies and browsers from timing out an idle stream.

/// How often an idle stream gets a comment line, in ms.
pub const KEEPALIVE_MS: u32 = 15_000;

/// Appends one event. The body is split on every line ending SSE knows
/// (`\r\n`, `\r`, `\n`), each piece a `data:` line, so the browser's
/// `event.data` joins them back with `\n`. Bytes that are not UTF-8 become
/// U+FFFD, as a browser would decode them anyway.
pub fn encode_event(id: &str, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.push(b'\n');
    let text = String::from_utf8_lossy(body);
    let mut rest: &str = &text;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest.as_bytes()[..end]);
        out.push(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
}

/// The keep-alive: a comment line, which `EventSource` ignores.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, body: &[u8]) -> String {
        let mut out = Vec::new();
        encode_event(id, body, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn events() {
        assert_eq!(event("0a", b"hello"), "id: 0a\ndata: hello\n\n");
        assert_eq!(event("0a", b""), "id: 0a\ndata: \n\n");
        assert_eq!(
            event("0b", b"a\nb\r\nc\rd\n"),
            "id: 0b\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
        assert_eq!(event("0c", b"\xffx"), "id: 0c\ndata: \u{fffd}x\n\n");
        assert!(KEEPALIVE.starts_with(b":") && KEEPALIVE.ends_with(b"\n\n"));
    }
}

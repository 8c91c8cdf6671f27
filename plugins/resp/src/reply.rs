//! RESP2/RESP3 reply encoding: the few reply shapes the plugin sends
//! (simple strings, errors, integers, bulk strings, arrays, nulls, RESP3
//! maps and pushes), appended to an output buffer. Shapes that differ
//! between the protocols take the connection's protocol version. Errors are
//! made single-line the way Redis does, so a client-chosen name can never
//! break the framing.

/// Appends `n` in decimal without allocating (a reply per message).
use nsq_sdk::push_decimal as decimal;

/// `+<text>\r\n`.
pub fn simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `-<text>\r\n`, with `\r` and `\n` in `text` turned into spaces. `text`
/// starts with the error code (`ERR`, `NOPROTO`, …).
pub fn error(out: &mut Vec<u8>, text: &str) {
    out.push(b'-');
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `:<n>\r\n`.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    if n < 0 {
        out.push(b'-');
    }
    decimal(out, n.unsigned_abs());
    out.extend_from_slice(b"\r\n");
}

/// `$<len>\r\n<data>\r\n`.
pub fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    decimal(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A null bulk string: `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn nil_bulk(out: &mut Vec<u8>, proto: u8) {
    out.extend_from_slice(if proto == 3 { b"_\r\n" } else { b"$-1\r\n" });
}

/// A null array (a blocking pop that timed out): `*-1\r\n` in RESP2,
/// `_\r\n` in RESP3.
pub fn nil_array(out: &mut Vec<u8>, proto: u8) {
    out.extend_from_slice(if proto == 3 { b"_\r\n" } else { b"*-1\r\n" });
}

/// The header of a pub/sub push of `n` elements: `>n` in RESP3, a plain
/// array in RESP2.
pub fn push(out: &mut Vec<u8>, n: usize, proto: u8) {
    out.push(if proto == 3 { b'>' } else { b'*' });
    decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// The header of a map of `n` key/value pairs: `%n` in RESP3, a flat array
/// of `2n` elements in RESP2.
pub fn map(out: &mut Vec<u8>, n: usize, proto: u8) {
    if proto == 3 {
        out.push(b'%');
        decimal(out, n as u64);
        out.extend_from_slice(b"\r\n");
    } else {
        array(out, 2 * n);
    }
}

/// `*<n>\r\n`, the header of an array whose `n` elements follow.
pub fn array(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Shortens a client-supplied name for an error message the way Redis's
/// `%.128s` does, lossily decoded.
pub fn clip(name: &[u8]) -> String {
    String::from_utf8_lossy(&name[..name.len().min(128)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let mut out = Vec::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR bad\r\nname");
        integer(&mut out, -3);
        bulk(&mut out, b"hi");
        nil_bulk(&mut out, 2);
        nil_array(&mut out, 2);
        array(&mut out, 2);
        push(&mut out, 3, 2);
        map(&mut out, 2, 2);
        assert_eq!(
            out,
            b"+OK\r\n-ERR bad  name\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*-1\r\n*2\r\n*3\r\n*4\r\n"
        );
        out.clear();
        nil_bulk(&mut out, 3);
        nil_array(&mut out, 3);
        push(&mut out, 3, 3);
        map(&mut out, 2, 3);
        assert_eq!(out, b"_\r\n_\r\n>3\r\n%2\r\n");
        assert_eq!(clip(&[b'a'; 200]).len(), 128);
        out.clear();
        integer(&mut out, i64::MIN);
        integer(&mut out, 0);
        bulk(&mut out, &[b'x'; 1234]);
        assert!(out.starts_with(b":-9223372036854775808\r\n:0\r\n$1234\r\nxx"));
    }
}

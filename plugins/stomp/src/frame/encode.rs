//! Encoding of the frames the server sends: header escaping (`\\ \n \c`, and
//! `\r` for 1.2 only), whole frames with their `content-length`, and the
//! allocation-free decimal writer used on the MESSAGE hot path.

/// Appends `value` escaped for a server frame other than CONNECTED. STOMP
/// 1.1 has no `\r` escape, so a CR is sent as is to 1.1 clients.
pub fn escape_into(out: &mut Vec<u8>, value: &str, v12: bool) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\r' if v12 => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Appends one server frame. Headers are escaped unless the command is
/// CONNECTED; a `content-length` is added whenever there is a body.
pub fn encode_frame(out: &mut Vec<u8>, command: &str, headers: &[(&str, &str)], body: &[u8]) {
    let escaped = command != "CONNECTED";
    out.extend_from_slice(command.as_bytes());
    out.push(b'\n');
    for (name, value) in headers {
        if escaped {
            escape_into(out, name, true);
            out.push(b':');
            escape_into(out, value, true);
        } else {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    if !body.is_empty() {
        out.extend_from_slice(b"content-length:");
        push_decimal(out, body.len() as u64);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
}

/// Appends `n` in decimal without allocating (the SDK's, one for every plugin).
pub use nsq_sdk::push_decimal;

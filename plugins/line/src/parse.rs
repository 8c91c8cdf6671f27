//! The LINE command parser and the body escapes: turns one input line into a
//! `Command` (or a readable error) and escapes/unescapes message bodies so a
//! delivered message stays on one line. Pure code, tested natively.

/// How a subscription acknowledges deliveries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// The plugin FINs each message as soon as it is written out.
    Auto,
    /// The client sends FIN/REQ itself.
    Manual,
}

/// One parsed client command, borrowing from the input line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    Pub {
        topic: &'a str,
        body: Vec<u8>,
    },
    Dpub {
        topic: &'a str,
        delay_ms: u32,
        body: Vec<u8>,
    },
    Sub {
        topic: &'a str,
        channel: &'a str,
        mode: Mode,
    },
    Rdy(u32),
    Fin(&'a str),
    Req {
        id: &'a str,
        delay_ms: u32,
    },
    Touch(&'a str),
    Stats(Option<&'a str>),
    Ping,
    Quit,
    Help,
}

/// Parses one line (without its newline) into a command, or a readable error.
pub(crate) fn parse(line: &[u8]) -> Result<Command<'_>, String> {
    let (verb, rest) = split_word(line);
    let verb = std::str::from_utf8(verb).map_err(|_| "command is not UTF-8".to_string())?;
    let verb_upper = verb.to_ascii_uppercase();
    match verb_upper.as_str() {
        "PUB" => {
            let (topic, body) = split_word(rest);
            let topic = word(topic, "PUB <topic> <body...>")?;
            if body.is_empty() {
                return Err("PUB needs a body: PUB <topic> <body...>".into());
            }
            Ok(Command::Pub {
                topic,
                body: unescape(body),
            })
        }
        "DPUB" => {
            let (topic, rest) = split_word(rest);
            let (delay, body) = split_word(rest);
            let usage = "DPUB <topic> <delay_ms> <body...>";
            let topic = word(topic, usage)?;
            let delay_ms = number(delay, usage)?;
            if body.is_empty() {
                return Err(format!("DPUB needs a body: {usage}"));
            }
            Ok(Command::Dpub {
                topic,
                delay_ms,
                body: unescape(body),
            })
        }
        "SUB" => {
            let usage = "SUB <topic> <channel> [auto|manual]";
            let mut words = words(rest)?;
            let topic = words.next().ok_or_else(|| format!("usage: {usage}"))?;
            let channel = words.next().ok_or_else(|| format!("usage: {usage}"))?;
            let mode = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("auto") => Mode::Auto,
                Some("manual") => Mode::Manual,
                Some(other) => return Err(format!("unknown mode {other:?}, usage: {usage}")),
            };
            no_more(words, usage)?;
            Ok(Command::Sub {
                topic,
                channel,
                mode,
            })
        }
        "RDY" => {
            let (n, extra) = split_word(rest);
            if !extra.is_empty() {
                return Err("usage: RDY <n>".into());
            }
            Ok(Command::Rdy(number(n, "RDY <n>")?))
        }
        "FIN" | "TOUCH" => {
            let usage = if verb_upper == "FIN" {
                "FIN <id>"
            } else {
                "TOUCH <id>"
            };
            let mut words = words(rest)?;
            let id = words.next().ok_or_else(|| format!("usage: {usage}"))?;
            no_more(words, usage)?;
            Ok(if verb_upper == "FIN" {
                Command::Fin(id)
            } else {
                Command::Touch(id)
            })
        }
        "REQ" => {
            let usage = "REQ <id> [delay_ms]";
            let mut words = words(rest)?;
            let id = words.next().ok_or_else(|| format!("usage: {usage}"))?;
            let delay_ms = match words.next() {
                Some(d) => d
                    .parse()
                    .map_err(|_| format!("{d:?} is not a number, usage: {usage}"))?,
                None => 0,
            };
            no_more(words, usage)?;
            Ok(Command::Req { id, delay_ms })
        }
        "STATS" => {
            let mut words = words(rest)?;
            let topic = words.next();
            no_more(words, "STATS [topic]")?;
            Ok(Command::Stats(topic))
        }
        "PING" => Ok(Command::Ping),
        "QUIT" => Ok(Command::Quit),
        "HELP" => Ok(Command::Help),
        _ => Err(format!("unknown command {verb:?}, try HELP")),
    }
}

/// Splits off the first space-separated word; the rest loses one separator.
fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    let line = line.trim_ascii_start();
    match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

/// A single required word as UTF-8.
fn word<'a>(w: &'a [u8], usage: &str) -> Result<&'a str, String> {
    if w.is_empty() {
        return Err(format!("usage: {usage}"));
    }
    std::str::from_utf8(w).map_err(|_| "names must be UTF-8".to_string())
}

/// A required unsigned number.
fn number(w: &[u8], usage: &str) -> Result<u32, String> {
    let w = word(w, usage)?;
    w.parse()
        .map_err(|_| format!("{w:?} is not a number, usage: {usage}"))
}

/// The whitespace-separated words of the rest of a line.
fn words(rest: &[u8]) -> Result<std::str::SplitAsciiWhitespace<'_>, String> {
    Ok(std::str::from_utf8(rest)
        .map_err(|_| "arguments must be UTF-8".to_string())?
        .split_ascii_whitespace())
}

/// Rejects trailing arguments.
fn no_more(mut words: std::str::SplitAsciiWhitespace<'_>, usage: &str) -> Result<(), String> {
    match words.next() {
        None => Ok(()),
        Some(extra) => Err(format!("unexpected {extra:?}, usage: {usage}")),
    }
}

/// Undoes `escape`: `\n \r \t \\ \xNN`; any other backslash stays literal.
pub(crate) fn unescape(body: &[u8]) -> Vec<u8> {
    if !body.contains(&b'\\') {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'\\' && i + 1 < body.len() {
            let next = body[i + 1];
            let simple = match next {
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'\\' => Some(b'\\'),
                _ => None,
            };
            if let Some(c) = simple {
                out.push(c);
                i += 2;
                continue;
            }
            if next == b'x' && i + 3 < body.len() {
                let hex = std::str::from_utf8(&body[i + 2..i + 4]).ok();
                if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Makes a body safe for one line: escapes `\`, control bytes and DEL.
pub(crate) fn escape(body: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in body {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(
            parse(b"PUB t hello world"),
            Ok(Command::Pub {
                topic: "t",
                body: b"hello world".to_vec()
            })
        );
        assert_eq!(
            parse(b"sub t c manual"),
            Ok(Command::Sub {
                topic: "t",
                channel: "c",
                mode: Mode::Manual
            })
        );
        assert_eq!(
            parse(b"REQ 0123456789abcdef 50"),
            Ok(Command::Req {
                id: "0123456789abcdef",
                delay_ms: 50
            })
        );
        assert!(parse(b"PUB t").is_err());
        assert!(parse(b"RDY x").is_err());
        assert!(parse(b"NOPE").is_err());
    }

    #[test]
    fn escape_round_trips() {
        let body = b"a\\b\nc\x01\x7f d";
        let mut out = Vec::new();
        escape(body, &mut out);
        assert!(!out.contains(&b'\n'));
        assert_eq!(unescape(&out), body);
    }
}

//! The RESP request parser: turns the bytes a client sent into one command
//! (a list of argument byte ranges) at a time, exactly as Redis reads its
//! query buffer: multibulk arrays (`*<n>\r\n$<len>\r\n<data>\r\n…`) and
//! inline commands (one line split like `sdssplitargs`). It is pure: it never
//! allocates more than the argument list, "not enough bytes yet" is a normal
//! outcome, and every length is checked against `Limits` before it is
//! trusted. Errors carry Redis's own `Protocol error: …` texts.

use std::fmt;
use std::ops::Range;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline command, and how far
/// a multibulk or bulk count line may run without its `\r`.
pub const INLINE_MAX: usize = 64 * 1024;

/// Bounds on what one command may claim, from the plugin config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (Redis `proto-max-bulk-len`).
    pub max_bulk: usize,
    /// Most elements in one command array.
    pub max_array: usize,
}

/// One complete command found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The arguments, as ranges into the parsed buffer. Empty for `*0`,
    /// `*-1` or a blank inline line, which Redis skips silently.
    pub args: Vec<Range<usize>>,
    /// Bytes of the buffer this command used; the next one starts here.
    pub consumed: usize,
}

/// Inline arguments are unescaped, so they cannot be ranges of the input;
/// `Inline` carries them owned.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A multibulk command whose arguments are ranges of the buffer.
    Multibulk(Frame),
    /// An inline command and the bytes it used.
    Inline { args: Vec<Vec<u8>>, consumed: usize },
    /// Not a whole command yet; at least this many bytes in total are
    /// needed before parsing again can succeed.
    Incomplete { at_least: usize },
}

/// A malformed request. Redis answers each with `-ERR <Display>` and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*<n>` is not a number, or over `Limits::max_array`.
    InvalidMultibulkLength,
    /// `$<n>` is not a number, negative, or over `Limits::max_bulk`.
    InvalidBulkLength,
    /// An array element does not start with `$`.
    ExpectedDollar(u8),
    /// A `*` count line with no `\r` within `INLINE_MAX` bytes.
    TooBigMbulkCount,
    /// A `$` count line with no `\r` within `INLINE_MAX` bytes.
    TooBigBulkCount,
    /// An inline command with no `\n` within `INLINE_MAX` bytes.
    TooBigInline,
    /// An inline command with an unterminated or badly closed quote.
    UnbalancedQuotes,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidMultibulkLength => {
                f.write_str("Protocol error: invalid multibulk length")
            }
            ProtocolError::InvalidBulkLength => f.write_str("Protocol error: invalid bulk length"),
            ProtocolError::ExpectedDollar(b) => {
                // Redis prints the byte with %c; keep the reply one clean line.
                let c = if b.is_ascii_graphic() || *b == b' ' {
                    char::from(*b)
                } else {
                    ' '
                };
                write!(f, "Protocol error: expected '$', got '{c}'")
            }
            ProtocolError::TooBigMbulkCount => {
                f.write_str("Protocol error: too big mbulk count string")
            }
            ProtocolError::TooBigBulkCount => {
                f.write_str("Protocol error: too big bulk count string")
            }
            ProtocolError::TooBigInline => f.write_str("Protocol error: too big inline request"),
            ProtocolError::UnbalancedQuotes => {
                f.write_str("Protocol error: unbalanced quotes in request")
            }
        }
    }
}

/// Parses the first command in `buf` (which must not be empty to make
/// progress; an empty buffer is `Incomplete`).
pub fn parse(buf: &[u8], limits: Limits) -> Result<Parsed, ProtocolError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete { at_least: 1 }),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf),
    }
}

/// What a count line (`*<n>` or `$<n>`) turned out to be.
enum Count {
    /// The whole line is there: the value and the index after its `\r\n`.
    Done(i64, usize),
    /// No `\r\n` yet, but what is there can still become a valid count.
    Partial,
}

/// Reads the number after the type byte at `buf[start]`. Like Redis's
/// `string2ll` it accepts an optional `-` and no leading zeros; unlike Redis
/// it rejects a line as soon as it cannot become a valid count (a stray byte,
/// too many digits, over `max`), so garbage fails at once instead of after
/// 64 KiB. Negative values are allowed only when `negative_ok`.
fn count(
    buf: &[u8],
    start: usize,
    max: u64,
    negative_ok: bool,
    invalid: ProtocolError,
    too_big: ProtocolError,
) -> Result<Count, ProtocolError> {
    let line = buf.get(start + 1..).unwrap_or_default();
    let (end, complete) = match line.iter().position(|&b| b == b'\r') {
        Some(cr) => (cr, true),
        None => (line.len(), false),
    };
    let text = &line[..end];
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if negative && !negative_ok {
        return Err(invalid);
    }
    if !digits.iter().all(u8::is_ascii_digit) || digits.len() > 18 {
        return Err(if !complete && text.len() > INLINE_MAX {
            too_big
        } else {
            invalid
        });
    }
    // No leading zeros and no "-0" (string2ll rejects both).
    if digits.len() > 1 && digits[0] == b'0' || negative && digits.first() == Some(&b'0') {
        return Err(invalid);
    }
    let value = digits
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
    if !negative && value > max {
        return Err(invalid);
    }
    if !complete {
        return Ok(Count::Partial);
    }
    if digits.is_empty() {
        return Err(invalid);
    }
    // Redis skips the byte after `\r` without looking at it; so do we.
    let next = start + 1 + end + 2;
    if next > buf.len() {
        return Ok(Count::Partial);
    }
    // At most 18 digits, so this fits.
    let value = i64::try_from(value).map_err(|_| invalid)?;
    Ok(Count::Done(if negative { -value } else { value }, next))
}

fn parse_multibulk(buf: &[u8], limits: Limits) -> Result<Parsed, ProtocolError> {
    let max_array = u64::try_from(limits.max_array).unwrap_or(u64::MAX);
    let (n, mut pos) = match count(
        buf,
        0,
        max_array,
        true,
        ProtocolError::InvalidMultibulkLength,
        ProtocolError::TooBigMbulkCount,
    )? {
        Count::Done(n, pos) => (n, pos),
        Count::Partial => {
            return Ok(Parsed::Incomplete {
                at_least: buf.len() + 1,
            });
        }
    };
    if n <= 0 {
        return Ok(Parsed::Multibulk(Frame {
            args: Vec::new(),
            consumed: pos,
        }));
    }
    // `n <= max_array`, checked by `count`.
    let n = usize::try_from(n).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
    let max_bulk = u64::try_from(limits.max_bulk).unwrap_or(u64::MAX);
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        match buf.get(pos) {
            None => return Ok(Parsed::Incomplete { at_least: pos + 1 }),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedDollar(other)),
        }
        let (len, data) = match count(
            buf,
            pos,
            max_bulk,
            false,
            ProtocolError::InvalidBulkLength,
            ProtocolError::TooBigBulkCount,
        )? {
            Count::Done(len, data) => (len, data),
            Count::Partial => {
                return Ok(Parsed::Incomplete {
                    at_least: buf.len() + 1,
                });
            }
        };
        // `0 <= len <= max_bulk`, checked by `count`.
        let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
        // `len` fits memory only if this does not overflow (wasm32 usize).
        let end = data
            .checked_add(len)
            .and_then(|e| e.checked_add(2))
            .ok_or(ProtocolError::InvalidBulkLength)?;
        if end > buf.len() {
            return Ok(Parsed::Incomplete { at_least: end });
        }
        // Like Redis, the two bytes after the data are skipped unchecked.
        args.push(data..data + len);
        pos = end;
    }
    Ok(Parsed::Multibulk(Frame {
        args,
        consumed: pos,
    }))
}

fn parse_inline(buf: &[u8]) -> Result<Parsed, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(Parsed::Incomplete {
            at_least: buf.len() + 1,
        });
    };
    if nl > INLINE_MAX {
        return Err(ProtocolError::TooBigInline);
    }
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
    Ok(Parsed::Inline {
        args,
        consumed: nl + 1,
    })
}

/// Redis's `isspace` set.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Splits an inline command like Redis's `sdssplitargs`: whitespace
/// separates arguments; `"…"` allows `\n \r \t \b \a \\ \" \xHH`; `'…'`
/// allows `\'`; a closing quote must be followed by a space or the end.
/// `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    // sdssplitargs works on a C string: a NUL ends the line.
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    loop {
        while line.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = line.get(i).copied();
            let next = line.get(i + 1).copied();
            if in_double {
                match (c, next) {
                    (Some(b'\\'), Some(b'x')) => {
                        let hi = line.get(i + 2).copied().and_then(hex);
                        let lo = line.get(i + 3).copied().and_then(hex);
                        if let (Some(hi), Some(lo)) = (hi, lo) {
                            current.push(hi * 16 + lo);
                            i += 3;
                        } else {
                            current.push(b'x');
                            i += 1;
                        }
                    }
                    (Some(b'\\'), Some(e)) => {
                        current.push(match e {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        i += 1;
                    }
                    (Some(b'"'), next) => {
                        if next.is_some_and(|n| !is_space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    (None, _) => return None,
                    (Some(other), _) => current.push(other),
                }
            } else if in_single {
                match (c, next) {
                    (Some(b'\\'), Some(b'\'')) => {
                        current.push(b'\'');
                        i += 1;
                    }
                    (Some(b'\''), next) => {
                        if next.is_some_and(|n| !is_space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    (None, _) => return None,
                    (Some(other), _) => current.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(b' ' | b'\n' | b'\r' | b'\t') => {
                        i += 1;
                        break;
                    }
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(other) => current.push(other),
                }
            }
            i += 1;
        }
        args.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk: 1024,
        max_array: 16,
    };

    /// A parsed command's arguments, owned, and the bytes it used.
    type Owned = (Vec<Vec<u8>>, usize);

    /// The first command of `buf`, if complete.
    fn args_of(buf: &[u8], limits: Limits) -> Result<Option<Owned>, ProtocolError> {
        Ok(match parse(buf, limits)? {
            Parsed::Multibulk(f) => Some((
                f.args.iter().map(|r| buf[r.clone()].to_vec()).collect(),
                f.consumed,
            )),
            Parsed::Inline { args, consumed } => Some((args, consumed)),
            Parsed::Incomplete { at_least } => {
                assert!(at_least > buf.len(), "at_least {at_least} for {buf:?}");
                None
            }
        })
    }

    fn strs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Every strict prefix of a valid command is `Incomplete`, and its
    /// `at_least` hint never overshoots the real length.
    fn check_prefixes(full: &[u8], limits: Limits) {
        let (want, used) = args_of(full, limits).expect("valid").expect("complete");
        assert_eq!(used, full.len(), "{full:?}");
        for i in 0..full.len() {
            match parse(&full[..i], limits) {
                Ok(Parsed::Incomplete { at_least }) => {
                    assert!(
                        at_least <= full.len(),
                        "hint {at_least} > {} at {i}",
                        full.len()
                    )
                }
                other => panic!("prefix {i} of {full:?}: {other:?}"),
            }
        }
        // And with trailing bytes of a next command, it stops at its end.
        let mut more = full.to_vec();
        more.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(args_of(&more, limits), Ok(Some((want, used))));
    }

    /// Every prefix of a bad request is `Incomplete` or the same error.
    fn check_error(bad: &[u8], limits: Limits, want: ProtocolError) {
        assert_eq!(parse(bad, limits), Err(want), "{bad:?}");
        for i in 0..bad.len() {
            match parse(&bad[..i], limits) {
                Ok(Parsed::Incomplete { .. }) => {}
                Err(e) => assert_eq!(e, want, "prefix {i} of {bad:?}"),
                other => panic!("prefix {i} of {bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn multibulk_commands_over_every_prefix() {
        for full in [
            &b"*1\r\n$4\r\nPING\r\n"[..],
            b"*3\r\n$7\r\nPUBLISH\r\n$5\r\ntopic\r\n$11\r\nhello world\r\n",
            b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
            b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*16\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n",
        ] {
            check_prefixes(full, LIMITS);
        }
        let big = format!("*2\r\n$4\r\nECHO\r\n$1024\r\n{}\r\n", "x".repeat(1024));
        check_prefixes(big.as_bytes(), LIMITS);
        assert_eq!(
            args_of(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nt\r\n$3\r\na\0b\r\n", LIMITS),
            Ok(Some((
                vec![b"PUBLISH".to_vec(), b"t".to_vec(), b"a\0b".to_vec()],
                33
            )))
        );
    }

    #[test]
    fn inline_commands_over_every_prefix() {
        check_prefixes(b"PING\r\n", LIMITS);
        check_prefixes(b"publish t \"hello world\\n\\x41\"\n", LIMITS);
        check_prefixes(b"   \r\n", LIMITS);
        assert_eq!(
            args_of(b"publish t \"hello world\\n\\x41\"\n", LIMITS),
            Ok(Some((strs(&["publish", "t", "hello world\nA"]), 30)))
        );
        assert_eq!(
            split_args(b"set 'it\\'s' a\"b c\""),
            Some(strs(&["set", "it's", "ab c"]))
        );
        assert_eq!(split_args(b""), Some(vec![]));
    }

    #[test]
    fn errors_over_every_prefix() {
        use ProtocolError::*;
        check_error(b"*17\r\n", LIMITS, InvalidMultibulkLength);
        check_error(b"*x\r\n", LIMITS, InvalidMultibulkLength);
        check_error(b"*01\r\n", LIMITS, InvalidMultibulkLength);
        check_error(b"*-0\r\n", LIMITS, InvalidMultibulkLength);
        check_error(b"*1\r\n$1025\r\n", LIMITS, InvalidBulkLength);
        check_error(b"*1\r\n$-1\r\n", LIMITS, InvalidBulkLength);
        check_error(b"*1\r\n$\r\n", LIMITS, InvalidBulkLength);
        check_error(b"*1\r\n$4x\r\nPING\r\n", LIMITS, InvalidBulkLength);
        check_error(b"*2\r\n$4\r\nECHO\r\n:1\r\n", LIMITS, ExpectedDollar(b':'));
        check_error(b"*1\r\n\xff\xfe", LIMITS, ExpectedDollar(0xff));
        check_error(
            b"*1\r\n$99999999999999999999\r\n",
            LIMITS,
            InvalidBulkLength,
        );
        check_error(b"PING \"x\n", LIMITS, UnbalancedQuotes);
        check_error(b"PING \"x\"y\n", LIMITS, UnbalancedQuotes);
        let long = vec![b'a'; INLINE_MAX + 1];
        assert_eq!(parse(&long, LIMITS), Err(TooBigInline));
        assert_eq!(
            ProtocolError::ExpectedDollar(b'x').to_string(),
            "Protocol error: expected '$', got 'x'"
        );
    }

    #[test]
    fn limits_come_from_config() {
        let tight = Limits {
            max_bulk: 3,
            max_array: 2,
        };
        assert!(matches!(
            parse(b"*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n", tight),
            Ok(Parsed::Multibulk(_))
        ));
        assert_eq!(
            parse(b"*3\r\n", tight),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse(b"*1\r\n$4\r\n", tight),
            Err(ProtocolError::InvalidBulkLength)
        );
        // A too-long count fails before its `\r` arrives.
        assert_eq!(
            parse(b"*1\r\n$4", tight),
            Err(ProtocolError::InvalidBulkLength)
        );
    }

    /// Arbitrary bytes never panic, and every prefix agrees with the whole.
    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = usize::try_from(seed % 40).unwrap_or(0);
            let mut buf = b"*2\r\n".to_vec();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pick = b"*$\r\n0123-ab \"'\\x";
                buf.push(pick[usize::try_from(seed % 16).unwrap_or(0)]);
            }
            let whole = parse(&buf, LIMITS);
            for i in 0..buf.len() {
                match (parse(&buf[..i], LIMITS), &whole) {
                    (Ok(Parsed::Incomplete { .. }), _) => {}
                    (Err(e), Err(w)) => assert_eq!(e, *w, "{buf:?} at {i}"),
                    (Ok(_), Ok(_)) => {}
                    (p, w) => panic!("{buf:?} at {i}: prefix {p:?}, whole {w:?}"),
                }
            }
        }
    }
}

//! The STOMP 1.2 frame codec, pure and socket-free: an incremental `Parser`
//! that turns bytes (in any chunking) into `Frame`s under size limits, with
//! "not enough bytes yet" as a normal outcome; the encoders for the frames
//! the server sends are in `frame/encode.rs` (re-exported here). Header
//! escaping follows the spec: `\r \n \c \\` in every frame except
//! CONNECT/STOMP/CONNECTED; an undefined escape is an error.

use std::fmt;

/// The client frames a STOMP server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
}

impl Command {
    fn parse(word: &[u8]) -> Option<Command> {
        Some(match word {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            _ => return None,
        })
    }

    /// The command as it appears on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
        }
    }

    /// CONNECT and STOMP frames carry their header values unescaped.
    fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp)
    }
}

/// One decoded client frame. Everything borrows the parser: the header
/// names and values were unescaped in place in its buffer and their spans
/// are kept in a vector it reuses, so parsing a frame allocates nothing, and
/// a SEND body reaches `broker.publish` without a copy in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub command: Command,
    /// Header names and values, unescaped, back to back.
    text: &'a str,
    /// `(name start, name end = value start, value end)` in `text`, in wire
    /// order; repeated names are kept and the first one wins in `header`
    /// (spec: "Repeated Header Entries").
    headers: &'a [(usize, usize, usize)],
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let text = self.text;
        self.headers
            .iter()
            .find(|&&(a, b, _)| text.get(a..b) == Some(name))
            .and_then(|&(_, b, c)| text.get(b..c))
    }
}

/// Size limits checked while bytes arrive, before anything is buffered past
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame: command, headers, body and the NUL.
    pub max_frame: usize,
    /// Most headers in one frame.
    pub max_headers: usize,
    /// Longest single header line (name, colon and value) or command line.
    pub max_header_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: (1 << 20) + (64 << 10),
            max_headers: 64,
            max_header_len: 8192,
        }
    }
}

/// Why the input is not a valid STOMP frame. Every one is fatal: the server
/// answers with an ERROR frame and closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    UnknownCommand(String),
    /// A header line without a colon.
    MalformedHeader(String),
    /// A backslash followed by something other than `r n c \`.
    BadEscape(String),
    /// Header names and values must be UTF-8.
    NotUtf8,
    BadContentLength(String),
    /// The byte after a `content-length` body is not NUL.
    MissingNul,
    FrameTooLarge(usize),
    TooManyHeaders(usize),
    HeaderTooLong(usize),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(c) => write!(f, "unknown command {c:?}"),
            ParseError::MalformedHeader(h) => write!(f, "malformed header {h:?} (no colon)"),
            ParseError::BadEscape(h) => write!(f, "undefined escape sequence in header {h:?}"),
            ParseError::NotUtf8 => write!(f, "headers must be UTF-8"),
            ParseError::BadContentLength(v) => write!(f, "invalid content-length {v:?}"),
            ParseError::MissingNul => {
                write!(
                    f,
                    "the body is not followed by a NUL (content-length mismatch)"
                )
            }
            ParseError::FrameTooLarge(max) => write!(f, "frame larger than {max} bytes"),
            ParseError::TooManyHeaders(max) => write!(f, "more than {max} headers"),
            ParseError::HeaderTooLong(max) => write!(f, "header line longer than {max} bytes"),
        }
    }
}

/// A parsed command line and headers waiting for their body.
#[derive(Debug)]
struct Head {
    command: Command,
    /// Where the unescaped header text lies, from the frame start.
    text: (usize, usize),
    /// Offset of the body from the frame start.
    body_start: usize,
    content_length: Option<usize>,
}

/// Incremental frame parser. Offsets are relative to `start`, the first
/// byte of the frame being parsed, so scanning resumes where it stopped and
/// a frame split over many chunks is scanned once.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// Where the current header line began.
    line_start: usize,
    /// Bytes already scanned for a newline (header section) or NUL (body).
    scanned: usize,
    /// Lines of the header section seen so far (command line included).
    lines: usize,
    head: Option<Head>,
    /// Header spans of the frame being parsed (see `Frame::headers`),
    /// reused from frame to frame.
    spans: Vec<(usize, usize, usize)>,
}

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            buf: Vec::new(),
            start: 0,
            line_start: 0,
            scanned: 0,
            lines: 0,
            head: None,
            spans: Vec::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends received bytes. A buffer left empty gives back a large
    /// allocation, so one big frame does not stay resident in an idle
    /// connection.
    pub fn push(&mut self, data: &[u8]) {
        if self.start == self.buf.len() {
            if self.buf.capacity() > 64 << 10 {
                self.buf = Vec::new();
            }
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as frames.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Drops all buffered input (after a fatal error).
    pub fn reset(&mut self) {
        *self = Parser::new(self.limits);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    /// Heart-beat EOLs between frames are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ParseError> {
        if self.head.is_none() {
            if self.lines == 0 && self.scanned == 0 && !self.skip_eols() {
                return Ok(None);
            }
            if !self.scan_head()? {
                return Ok(None);
            }
        }
        self.take_body()
    }

    /// Consumes EOLs before a frame; false if input ends inside them.
    fn skip_eols(&mut self) -> bool {
        loop {
            match self.buf.get(self.start..) {
                Some([b'\n', ..]) => self.start += 1,
                Some([b'\r', b'\n', ..]) => self.start += 2,
                Some([b'\r']) | Some([]) | None => return false,
                Some(_) => return true,
            }
        }
    }

    /// Scans for the blank line ending the headers; parses them once found.
    fn scan_head(&mut self) -> Result<bool, ParseError> {
        let limits = self.limits;
        loop {
            let frame = self.buf.get_mut(self.start..).unwrap_or_default();
            let rest = frame.get(self.scanned..).unwrap_or_default();
            let Some(nl) = find_byte(rest, b'\n') else {
                self.scanned = frame.len();
                if frame.len() - self.line_start > limits.max_header_len + 1 {
                    return Err(ParseError::HeaderTooLong(limits.max_header_len));
                }
                if frame.len() > limits.max_frame {
                    return Err(ParseError::FrameTooLarge(limits.max_frame));
                }
                return Ok(false);
            };
            let end = self.scanned + nl;
            let blank_start = self.line_start;
            let line = frame.get(self.line_start..end).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > limits.max_header_len {
                return Err(ParseError::HeaderTooLong(limits.max_header_len));
            }
            self.scanned = end + 1;
            self.line_start = end + 1;
            if end + 1 > limits.max_frame {
                return Err(ParseError::FrameTooLarge(limits.max_frame));
            }
            if line.is_empty() && self.lines > 0 {
                // The header text ends before the newline preceding the blank line.
                let text = frame
                    .get_mut(..blank_start.saturating_sub(1))
                    .unwrap_or_default();
                let head = parse_head(text, end + 1, &mut self.spans)?;
                if let Some(len) = head.content_length
                    && head.body_start.saturating_add(len).saturating_add(1) > limits.max_frame
                {
                    return Err(ParseError::FrameTooLarge(limits.max_frame));
                }
                self.head = Some(head);
                return Ok(true);
            }
            self.lines += 1;
            if self.lines > limits.max_headers + 1 {
                return Err(ParseError::TooManyHeaders(limits.max_headers));
            }
        }
    }

    /// Completes the pending frame once its body and NUL have arrived.
    fn take_body(&mut self) -> Result<Option<Frame<'_>>, ParseError> {
        let Some(head) = self.head.as_ref() else {
            return Ok(None);
        };
        let frame = self.buf.get(self.start..).unwrap_or_default();
        let body_end = match head.content_length {
            Some(len) => {
                let end = head.body_start + len;
                match frame.get(end) {
                    None => return Ok(None),
                    Some(0) => end,
                    Some(_) => return Err(ParseError::MissingNul),
                }
            }
            None => {
                let from = self.scanned.max(head.body_start);
                let rest = frame.get(from..).unwrap_or_default();
                match find_byte(rest, 0) {
                    Some(i) if from + i + 1 > self.limits.max_frame => {
                        return Err(ParseError::FrameTooLarge(self.limits.max_frame));
                    }
                    Some(i) => from + i,
                    None => {
                        self.scanned = frame.len();
                        if frame.len() >= self.limits.max_frame {
                            return Err(ParseError::FrameTooLarge(self.limits.max_frame));
                        }
                        return Ok(None);
                    }
                }
            }
        };
        let body_start = head.body_start;
        let Some(head) = self.head.take() else {
            return Ok(None);
        };
        let frame_start = self.start;
        self.start += body_end + 1;
        self.line_start = 0;
        self.scanned = 0;
        self.lines = 0;
        let frame = self.buf.get(frame_start..).unwrap_or_default();
        let body = frame.get(body_start..body_end).unwrap_or_default();
        let text = frame.get(head.text.0..head.text.1).unwrap_or_default();
        // Unescaping maps ASCII to ASCII, so the text is as valid as the
        // headers were when `parse_head` checked them.
        let text = std::str::from_utf8(text).map_err(|_| ParseError::NotUtf8)?;
        Ok(Some(Frame {
            command: head.command,
            text,
            headers: &self.spans,
            body,
        }))
    }
}

/// Parses the command line and headers (`raw` excludes the blank line),
/// unescaping the header names and values in place: each is written back
/// to back from the start of the header lines (unescaping only shortens,
/// and a line's colon and newline are dropped, so writing never overtakes
/// reading). Their spans go to `spans`.
fn parse_head(
    raw: &mut [u8],
    body_start: usize,
    spans: &mut Vec<(usize, usize, usize)>,
) -> Result<Head, ParseError> {
    let nl = find_byte(raw, b'\n').unwrap_or(raw.len());
    let word = raw.get(..nl).unwrap_or_default();
    let word = word.strip_suffix(b"\r").unwrap_or(word);
    let command = Command::parse(word)
        .ok_or_else(|| ParseError::UnknownCommand(String::from_utf8_lossy(word).into_owned()))?;
    let text_start = (nl + 1).min(raw.len());
    let rest = raw.get_mut(text_start..).unwrap_or_default();
    // Unescaping maps ASCII to ASCII, so checking UTF-8 once up front holds.
    std::str::from_utf8(rest).map_err(|_| ParseError::NotUtf8)?;
    let escaped = command.escapes_headers();
    spans.clear();
    let mut content_length = None;
    let (mut read, mut write) = (0, 0);
    while read < rest.len() {
        let line_end = find_byte(&rest[read..], b'\n').map_or(rest.len(), |i| read + i);
        let mut end = line_end;
        if end > read && rest[end - 1] == b'\r' {
            end -= 1;
        }
        let Some(colon) = find_byte(&rest[read..end], b':') else {
            let line = String::from_utf8_lossy(&rest[read..end]).into_owned();
            return Err(ParseError::MalformedHeader(line));
        };
        let a = write;
        let b = unescape_within(rest, read..read + colon, a, escaped)?;
        let c = unescape_within(rest, read + colon + 1..end, b, escaped)?;
        if content_length.is_none() && &rest[a..b] == b"content-length" {
            let v = String::from_utf8_lossy(&rest[b..c]);
            let n = v
                .trim()
                .parse::<usize>()
                .map_err(|_| ParseError::BadContentLength(v.to_string()))?;
            content_length = Some(n);
        }
        spans.push((a, b, c));
        write = c;
        read = line_end + 1;
    }
    Ok(Head {
        command,
        text: (text_start, text_start + write),
        body_start,
        content_length,
    })
}

/// Moves `buf[from]` to `buf[to..]`, STOMP 1.2-unescaped when `escaped`;
/// returns the end of what was written (`to` is at most `from.start`).
fn unescape_within(
    buf: &mut [u8],
    from: std::ops::Range<usize>,
    to: usize,
    escaped: bool,
) -> Result<usize, ParseError> {
    let raw = &buf[from.clone()];
    if !escaped || find_byte(raw, b'\\').is_none() {
        let len = from.len();
        buf.copy_within(from, to);
        return Ok(to + len);
    }
    // Checked before anything is written, so the error can quote it whole.
    let mut bytes = raw.iter();
    while let Some(&c) = bytes.next() {
        if c == b'\\' && !matches!(bytes.next(), Some(b'r' | b'n' | b'c' | b'\\')) {
            let raw = String::from_utf8_lossy(raw).into_owned();
            return Err(ParseError::BadEscape(raw));
        }
    }
    let (mut r, mut w) = (from.start, to);
    while r < from.end {
        let c = buf[r];
        if c == b'\\' {
            buf[w] = match buf[r + 1] {
                b'r' => b'\r',
                b'n' => b'\n',
                b'c' => b':',
                _ => b'\\',
            };
            r += 2;
        } else {
            buf[w] = c;
            r += 1;
        }
        w += 1;
    }
    Ok(w)
}

/// Position of `needle` in `hay`, eight bytes at a time (wasm32 has no SIMD
/// memchr by default, and the header and body scans are the hot loop).
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut offset = 0;
    for chunk in hay.chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes) ^ pattern;
        if x.wrapping_sub(LO) & !x & HI != 0 {
            break;
        }
        offset += 8;
    }
    let tail = hay.get(offset..).unwrap_or_default();
    tail.iter().position(|&b| b == needle).map(|i| i + offset)
}
mod encode;

pub use encode::{encode_frame, escape_into, push_decimal};

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;

//! The STOMP 1.2 frame codec, pure and socket-free: an incremental `Parser`
//! that turns bytes (in any chunking) into `Frame`s under size limits, with
//! "not enough bytes yet" as a normal outcome, and the encoders for the frames
//! the server sends. Header escaping follows the spec: `\r \n \c \\` in every
//! frame except CONNECT/STOMP/CONNECTED; an undefined escape is an error.

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

/// One decoded client frame; the body borrows the parser's buffer, so a
/// SEND body reaches `broker.publish` without a copy in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub command: Command,
    /// Header names and values, unescaped, back to back: one allocation
    /// per frame instead of two per header.
    text: String,
    /// `(name start, name end = value start, value end)` in `text`, in wire
    /// order; repeated names are kept and the first one wins in `header`
    /// (spec: "Repeated Header Entries").
    headers: Vec<(usize, usize, usize)>,
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|&&(a, b, _)| self.text.get(a..b) == Some(name))
            .and_then(|&(_, b, c)| self.text.get(b..c))
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
    text: String,
    headers: Vec<(usize, usize, usize)>,
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
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes received bytes; when nothing is buffered the vector itself
    /// becomes the buffer (no copy, the common case).
    pub fn push_owned(&mut self, data: Vec<u8>) {
        if self.start == self.buf.len() {
            self.buf = data;
            self.start = 0;
        } else {
            self.push(&data);
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start == self.buf.len() {
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
            let frame = self.buf.get(self.start..).unwrap_or_default();
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
                    .get(..blank_start.saturating_sub(1))
                    .unwrap_or_default();
                let head = parse_head(text, end + 1)?;
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
        let body = self
            .buf
            .get(frame_start + body_start..frame_start + body_end)
            .unwrap_or_default();
        Ok(Some(Frame {
            command: head.command,
            text: head.text,
            headers: head.headers,
            body,
        }))
    }
}

/// Parses the command line and headers (`raw` excludes the blank line).
fn parse_head(raw: &[u8], body_start: usize) -> Result<Head, ParseError> {
    let nl = find_byte(raw, b'\n').unwrap_or(raw.len());
    let word = raw.get(..nl).unwrap_or_default();
    let word = word.strip_suffix(b"\r").unwrap_or(word);
    let command = Command::parse(word)
        .ok_or_else(|| ParseError::UnknownCommand(String::from_utf8_lossy(word).into_owned()))?;
    let rest = raw.get(nl + 1..).unwrap_or_default();
    // Unescaping maps ASCII to ASCII, so checking UTF-8 once up front holds.
    let rest = std::str::from_utf8(rest).map_err(|_| ParseError::NotUtf8)?;
    let escaped = command.escapes_headers();
    let mut text = String::with_capacity(rest.len());
    let mut headers = Vec::with_capacity(rest.bytes().filter(|&b| b == b'\n').count() + 1);
    let mut content_length = None;
    let lines = rest.split('\n').filter(|_| !rest.is_empty());
    for line in lines {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::MalformedHeader(line.to_string()));
        };
        let a = text.len();
        push_decoded(&mut text, name, escaped)?;
        let b = text.len();
        push_decoded(&mut text, value, escaped)?;
        let c = text.len();
        if content_length.is_none() && text.get(a..b) == Some("content-length") {
            let v = text.get(b..c).unwrap_or_default();
            let n = v
                .trim()
                .parse::<usize>()
                .map_err(|_| ParseError::BadContentLength(v.to_string()))?;
            content_length = Some(n);
        }
        headers.push((a, b, c));
    }
    Ok(Head {
        command,
        text,
        headers,
        body_start,
        content_length,
    })
}

/// Appends `raw`, STOMP 1.2-unescaped when `escaped`.
fn push_decoded(text: &mut String, raw: &str, escaped: bool) -> Result<(), ParseError> {
    if !escaped || !raw.contains('\\') {
        text.push_str(raw);
        return Ok(());
    }
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        text.push(match chars.next() {
            Some('r') => '\r',
            Some('n') => '\n',
            Some('c') => ':',
            Some('\\') => '\\',
            _ => return Err(ParseError::BadEscape(raw.to_string())),
        });
    }
    Ok(())
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

/// Appends `n` in decimal without allocating.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame detached from the parser, to collect across pushes.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Owned {
        command: Command,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Owned {
        fn from(f: &Frame<'_>) -> Owned {
            let headers = f
                .headers
                .iter()
                .map(|&(a, b, c)| (f.text[a..b].to_string(), f.text[b..c].to_string()))
                .collect();
            Owned {
                command: f.command,
                headers,
                body: f.body.to_vec(),
            }
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn all(parser: &mut Parser) -> Result<Vec<Owned>, ParseError> {
        let mut out = Vec::new();
        while let Some(f) = parser.next_frame()? {
            out.push(Owned::from(&f));
        }
        Ok(out)
    }

    /// Feeds `chunks` one by one, collecting frames until the first error.
    fn feed(limits: Limits, chunks: &[&[u8]]) -> (Vec<Owned>, Option<ParseError>) {
        let mut p = Parser::new(limits);
        let mut frames = Vec::new();
        for c in chunks {
            p.push(c);
            loop {
                match p.next_frame() {
                    Ok(Some(f)) => frames.push(Owned::from(&f)),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    }

    const STREAM: &[u8] = b"STOMP\naccept-version:1.2\nhost:x\nheart-beat:100,200\n\n\0\n\r\n\
SEND\r\ndestination:/queue/a\r\ncontent-length:5\r\n\r\nab\0cd\0\n\
SEND\ndestination:/topic/b\\cc\nx-y:a\\\\b\\nc\\rd\nreceipt:7\n\nhello\0\
\n\nSUBSCRIBE\nid:0\ndestination:/queue/a\nack:client\nid:dup\n\n\0\
ACK\nid:1.0123456789abcdef\n\n\0DISCONNECT\nreceipt:bye\n\n\0";

    #[test]
    fn parses_a_stream() {
        let (frames, err) = feed(Limits::default(), &[STREAM]);
        assert_eq!(err, None);
        let cmds: Vec<_> = frames.iter().map(|f| f.command).collect();
        assert_eq!(
            cmds,
            [
                Command::Stomp,
                Command::Send,
                Command::Send,
                Command::Subscribe,
                Command::Ack,
                Command::Disconnect
            ]
        );
        assert_eq!(frames[0].header("heart-beat"), Some("100,200"));
        assert_eq!(frames[1].body, b"ab\0cd");
        assert_eq!(frames[1].header("destination"), Some("/queue/a"));
        assert_eq!(frames[2].header("destination"), Some("/topic/b:c"));
        assert_eq!(frames[2].header("x-y"), Some("a\\b\nc\rd"));
        assert_eq!(frames[2].body, b"hello");
        assert_eq!(frames[3].header("id"), Some("0"));
        assert_eq!(frames[5].header("receipt"), Some("bye"));
    }

    #[test]
    fn every_split_parses_identically() {
        let (whole, _) = feed(Limits::default(), &[STREAM]);
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            let (frames, err) = feed(Limits::default(), &[a, b]);
            assert_eq!(err, None, "split at {i}");
            assert_eq!(frames, whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(feed(Limits::default(), &bytes), (whole.clone(), None));
        for size in 2..9 {
            let chunks: Vec<&[u8]> = STREAM.chunks(size).collect();
            assert_eq!(feed(Limits::default(), &chunks), (whole.clone(), None));
        }
    }

    #[test]
    fn errors_are_the_same_for_every_split() {
        let limits = Limits {
            max_frame: 64,
            max_headers: 2,
            max_header_len: 20,
        };
        let cases: &[(&[u8], ParseError)] = &[
            (b"HELLO\n\n\0", ParseError::UnknownCommand("HELLO".into())),
            (
                b"SEND\nnocolon\n\n\0",
                ParseError::MalformedHeader("nocolon".into()),
            ),
            (b"SEND\na:b\\t\n\n\0", ParseError::BadEscape("b\\t".into())),
            (
                b"SEND\ncontent-length:x\n\n\0",
                ParseError::BadContentLength("x".into()),
            ),
            (b"SEND\ncontent-length:1\n\nab\0", ParseError::MissingNul),
            (
                b"SEND\ncontent-length:100\n\n",
                ParseError::FrameTooLarge(64),
            ),
            (b"SEND\na:1\nb:2\nc:3\n\n\0", ParseError::TooManyHeaders(2)),
            (
                b"SEND\naaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1\n\n\0",
                ParseError::HeaderTooLong(20),
            ),
            (b"SEND\na:\xff\n\n\0", ParseError::NotUtf8),
        ];
        for (input, want) in cases {
            for i in 0..=input.len() {
                let (a, b) = input.split_at(i);
                let (frames, err) = feed(limits, &[a, b]);
                assert!(frames.is_empty());
                assert_eq!(err.as_ref(), Some(want), "{:?} split at {i}", input);
            }
        }
        // A body without NUL and without content-length hits the frame limit.
        let mut big = b"SEND\n\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 100));
        assert_eq!(feed(limits, &[&big]).1, Some(ParseError::FrameTooLarge(64)));
        // Endless header bytes without newline are refused before buffering more.
        let endless = vec![b'a'; 40];
        assert_eq!(
            feed(limits, &[b"SEND\n", &endless]).1,
            Some(ParseError::HeaderTooLong(20))
        );
    }

    /// Pseudo-random inputs built from frame fragments and noise: the parser
    /// never panics and every two-chunk split gives the same frames and error.
    #[test]
    fn random_input_is_split_invariant() {
        let pieces: &[&[u8]] = &[
            b"SEND\n",
            b"CONNECT\n",
            b"ACK\n",
            b"NOPE\n",
            b"destination:/queue/a\n",
            b"content-length:3\n",
            b"content-length:x\n",
            b"a\\c:b\\n\n",
            b"bad\\q:1\n",
            b"\n",
            b"\r\n",
            b"\r",
            b"\0",
            b"abc",
            b"\xff\xfe",
            b":",
            b"\\",
        ];
        let limits = Limits {
            max_frame: 96,
            max_headers: 3,
            max_header_len: 24,
        };
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..(next() % 24) {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let whole = feed(limits, &[&input]);
            for i in 0..=input.len() {
                let (a, b) = input.split_at(i);
                assert_eq!(feed(limits, &[a, b]), whole, "{input:?} split at {i}");
            }
        }
    }

    #[test]
    fn connect_headers_are_not_unescaped() {
        let mut p = Parser::new(Limits::default());
        p.push(b"CONNECT\nlogin:a\\b\n\n\0");
        let f = all(&mut p).expect("parses");
        assert_eq!(f[0].header("login"), Some("a\\b"));
    }

    #[test]
    fn first_repeated_header_wins() {
        let mut p = Parser::new(Limits::default());
        p.push(b"SEND\ncontent-length:2\ncontent-length:9\nd:1\nd:2\n\nab\0");
        let f = all(&mut p).expect("parses");
        assert_eq!(f[0].body, b"ab");
        assert_eq!(f[0].header("d"), Some("1"));
    }

    #[test]
    fn heartbeats_only_yield_nothing() {
        let mut p = Parser::new(Limits::default());
        p.push(b"\n\r\n\n\r");
        assert_eq!(all(&mut p), Ok(vec![]));
        p.push(b"\nSEND\n\nx\0");
        assert_eq!(all(&mut p).map(|f| f.len()), Ok(1));
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn encodes_and_escapes() {
        let mut out = Vec::new();
        encode_frame(&mut out, "RECEIPT", &[("receipt-id", "a:b\n")], b"");
        assert_eq!(out, b"RECEIPT\nreceipt-id:a\\cb\\n\n\n\0");
        out.clear();
        encode_frame(&mut out, "CONNECTED", &[("server", "x:y")], b"\0z");
        assert_eq!(out, b"CONNECTED\nserver:x:y\ncontent-length:2\n\n\0z\0");
        out.clear();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, 18446744073709551615);
        assert_eq!(out, b"018446744073709551615");
    }

    #[test]
    fn many_frames_in_a_long_stream_compact_the_buffer() {
        let mut p = Parser::new(Limits::default());
        let frame = b"SEND\ndestination:/topic/t\ncontent-length:3\n\nabc\0";
        let mut n = 0;
        for _ in 0..2000 {
            p.push(frame);
            n += all(&mut p).expect("parses").len();
        }
        assert_eq!(n, 2000);
        assert!(p.buf.capacity() < 64 * 1024);
    }
}

/// Parser throughput on the host: `cargo test --release -p stomp micro -- --ignored --nocapture`.
#[cfg(test)]
mod micro {
    #[test]
    #[ignore]
    fn parse_speed() {
        use super::*;
        let mut one = b"SEND\ndestination:/queue/bench_topic_1234\ncontent-length:100\n\n".to_vec();
        one.extend(std::iter::repeat_n(b'x', 100));
        one.push(0);
        let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 400).collect();
        let mut p = Parser::new(Limits::default());
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..500 {
            p.push(&chunk);
            while let Ok(Some(f)) = p.next_frame() {
                n += f.body.len();
            }
        }
        let el = t.elapsed();
        eprintln!(
            "{} frames, {:?} per frame ({n})",
            500 * 400,
            el / (500 * 400)
        );
    }
}

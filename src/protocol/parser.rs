//! Incremental request parser: RESP arrays of bulk strings and inline text lines.
//!
//! The parser works on the connection's read buffer, in place, and never copies an argument:
//! a parsed request is a list of [`Span`]s into that buffer. Inline arguments with escapes are
//! unescaped *in place* (an escape sequence is always longer than the byte it stands for, so the
//! unescaped text never overtakes the raw text it is read from).
//!
//! "Incomplete" is an ordinary outcome ([`Parsed::Incomplete`]), not an error: the caller reads
//! more bytes and calls again with the same buffer start. For RESP the parser remembers how far
//! it got (arguments already framed), so a huge `MSET` that arrives in many reads is not
//! re-scanned from its first argument each time.
//!
//! Every length from the client is checked against [`Limits`] before it is trusted, and no
//! allocation is ever sized by a client's claim: the span list grows as arguments actually
//! arrive.
//!
//! # Before login
//! A connection that has not logged in gets much smaller limits ([`Limits::before_login`]):
//! bulks of at most [`BEFORE_LOGIN_MAX_BULK_LEN`] bytes and at most [`BEFORE_LOGIN_MAX_ARGS`]
//! arguments, what `AUTH` and `HELLO ... AUTH ... SETNAME` need and Redis 7's rule for
//! unauthenticated clients. Anyone who can reach the port could otherwise make the server
//! buffer a 512 MiB "password" per socket. The connection switches the parser to its normal
//! limits the moment its login succeeds ([`Parser::set_logged_in`]).
//!
//! Owned by one connection, on its shard's thread.

use std::fmt;

/// Where one argument lies in the buffer handed to [`Parser::parse`], relative to its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Longest bulk string accepted before login. Redis 7 uses the same 16 KiB for
/// unauthenticated clients: far more than a login needs (a user name is at most 64 bytes, a
/// password at most `acl::hasher::MAX_PASSWORD_LEN`, 4 KiB), and a thousand sockets that
/// never log in cost at most a few tens of MiB of read buffers instead of 512 MiB each.
pub const BEFORE_LOGIN_MAX_BULK_LEN: usize = 16 * 1024;

/// Most arguments in one request before login: `HELLO 3 AUTH <user> <password> SETNAME
/// <name>` has 7; Redis 7 allows 10 to unauthenticated clients, and so do we.
pub const BEFORE_LOGIN_MAX_ARGS: usize = 10;

/// Per-request limits, checked while parsing, before any allocation of the claimed size.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest bulk string accepted (`$<len>`).
    pub max_bulk_len: usize,
    /// Longest inline line accepted, counting up to its newline.
    pub max_inline_len: usize,
    /// Most arguments in one request (`*<count>` or words on an inline line).
    pub max_args: usize,
}

impl Limits {
    /// These limits as they apply before login: never looser than `self`, and at most
    /// [`BEFORE_LOGIN_MAX_BULK_LEN`] per bulk or inline line and [`BEFORE_LOGIN_MAX_ARGS`]
    /// arguments.
    pub fn before_login(self) -> Limits {
        Limits {
            max_bulk_len: self.max_bulk_len.min(BEFORE_LOGIN_MAX_BULK_LEN),
            max_inline_len: self.max_inline_len.min(BEFORE_LOGIN_MAX_BULK_LEN),
            max_args: self.max_args.min(BEFORE_LOGIN_MAX_ARGS),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Redis's proto-max-bulk-len: the largest value a Redis client expects to store.
            max_bulk_len: 512 * 1024 * 1024,
            // Redis's PROTO_INLINE_MAX_SIZE: inline is for people typing, 64 KiB is plenty.
            max_inline_len: 64 * 1024,
            // Redis accepts 1M arguments (a large MSET); more is a broken or hostile client.
            max_args: 1024 * 1024,
        }
    }
}

/// A malformed frame. The connection answers `-ERR Protocol error: <this>` and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(ErrorKind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    InvalidMultibulkLength,
    TooManyArgs {
        max: usize,
        before_login: bool,
    },
    ExpectedBulk {
        got: u8,
    },
    InvalidBulkLength,
    BulkTooLong {
        max: usize,
        before_login: bool,
    },
    MissingCrlf,
    InlineTooLong {
        max: usize,
        before_login: bool,
    },
    UnbalancedQuotes,
    NulInInline,
    /// A TLS record (a ClientHello) on a plain-text port: a client configured for TLS.
    TlsOnPlainPort,
    FrameTooLarge,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ErrorKind::InvalidMultibulkLength => write!(f, "invalid multibulk length"),
            ErrorKind::TooManyArgs {
                max,
                before_login: false,
            } => write!(f, "invalid multibulk length (more than {max} arguments)"),
            // Redis's words for the same refusal, and ours for why it is so small.
            ErrorKind::TooManyArgs {
                max,
                before_login: true,
            } => write!(
                f,
                "unauthenticated multibulk length (more than {max} arguments before login)"
            ),
            ErrorKind::ExpectedBulk { got } => {
                write!(f, "expected '$', got '{}'", got.escape_ascii())
            }
            ErrorKind::InvalidBulkLength => write!(f, "invalid bulk length"),
            ErrorKind::BulkTooLong {
                max,
                before_login: false,
            } => write!(f, "invalid bulk length (longer than {max} bytes)"),
            ErrorKind::BulkTooLong {
                max,
                before_login: true,
            } => write!(
                f,
                "unauthenticated bulk length (longer than {max} bytes before login)"
            ),
            ErrorKind::MissingCrlf => write!(f, "expected '\\r\\n' after bulk data"),
            ErrorKind::InlineTooLong {
                max,
                before_login: false,
            } => write!(f, "too big inline request (more than {max} bytes)"),
            ErrorKind::InlineTooLong {
                max,
                before_login: true,
            } => write!(
                f,
                "too big inline request (more than {max} bytes before login)"
            ),
            ErrorKind::UnbalancedQuotes => write!(f, "unbalanced quotes in request"),
            ErrorKind::NulInInline => write!(
                f,
                "NUL byte in inline request (send binary data as RESP bulk strings)"
            ),
            ErrorKind::TlsOnPlainPort => write!(
                f,
                "TLS handshake on a plain-text port (connect to the server's --tls-port)"
            ),
            ErrorKind::FrameTooLarge => write!(f, "request larger than 4 GiB"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// What one call of [`Parser::parse`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete request of `consumed` bytes; its arguments are [`Parser::args`].
    Request { consumed: usize },
    /// Bytes that hold no request (an empty inline line, `*0`, `*-1`): drop them and go on.
    Skip { consumed: usize },
    /// Not enough bytes yet; call again with the same buffer start once more have arrived.
    Incomplete,
}

/// Longest `*<n>\r\n` / `$<n>\r\n` header line we read before calling it malformed: a sign,
/// 20 digits and the CRLF fit easily.
const MAX_HEADER_LINE: usize = 32;

/// Most arguments of a request that [`Parser::parse_into`] frames in one pass. A GET, a SET
/// with options, an MSET of 10 keys fit; a longer request takes the general, resumable path,
/// so that one arriving in many reads is never re-scanned from its start on each.
const WHOLE_MAX_ARGS: usize = 32;

/// Resumable state of a RESP array being framed.
#[derive(Debug, Default, Clone, Copy)]
struct ArrayState {
    /// Arguments the array header announced that are not framed yet.
    remaining: usize,
    /// Offset (from the frame start) where the next argument's `$` header begins.
    pos: usize,
}

/// The request parser of one connection.
#[derive(Debug)]
pub struct Parser {
    /// The limits in force: `logged_in_limits`, or their [`Limits::before_login`] form.
    limits: Limits,
    /// The connection's configured limits, in force once it has logged in.
    logged_in_limits: Limits,
    /// `limits` are the pre-login ones (also says so in the error messages).
    before_login: bool,
    /// Spans of the request being framed (complete once `parse` returns `Request`).
    spans: Vec<Span>,
    /// `Some` while a RESP array is partly framed.
    array: Option<ArrayState>,
}

impl Parser {
    /// A parser with `limits` in force (a logged-in connection, or a test).
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            logged_in_limits: limits,
            before_login: false,
            spans: Vec::with_capacity(8),
            array: None,
        }
    }

    /// A parser for a connection that has not logged in yet: [`Limits::before_login`] are in
    /// force until [`Parser::set_logged_in`] switches to `limits`.
    pub fn before_login(limits: Limits) -> Self {
        let mut parser = Parser::new(limits);
        parser.set_logged_in(false);
        parser
    }

    /// Whether the logged-in limits are in force.
    #[inline]
    pub fn logged_in(&self) -> bool {
        !self.before_login
    }

    /// Switches between the pre-login and the logged-in limits. Also forgets a partly framed
    /// request (see [`Parser::reset`]): what was framed so far was checked against the old
    /// limits, so it is framed again under the new ones.
    pub fn set_logged_in(&mut self, logged_in: bool) {
        self.before_login = !logged_in;
        self.limits = if logged_in {
            self.logged_in_limits
        } else {
            self.logged_in_limits.before_login()
        };
        self.reset();
    }

    /// Forgets a partly framed request, so that the next call frames from scratch at the
    /// buffer start it is given. RESP framing never changes the buffer, so re-framing the same
    /// bytes later gives the same request.
    pub fn reset(&mut self) {
        self.array = None;
    }

    /// The arguments of the request last returned as [`Parsed::Request`], relative to the
    /// buffer passed to that call.
    #[inline]
    pub fn args(&self) -> &[Span] {
        &self.spans
    }

    /// Frames the request at the start of `buf`. `buf` must start at the same byte on every
    /// call until a `Request` or `Skip` is returned (bytes may only be appended).
    pub fn parse(&mut self, buf: &mut [u8]) -> Result<Parsed, ProtocolError> {
        if let Some(state) = self.array {
            return self.parse_array_args(buf, state);
        }
        match buf.first() {
            None => Ok(Parsed::Incomplete),
            Some(b'*') => self.parse_array_header(buf),
            Some(_) => self.parse_inline(buf),
        }
    }

    /// [`Parser::parse`], with the request's arguments appended to `out` (each span moved by
    /// `shift`) instead of kept in [`Parser::args`]: what the shard's batch framing wants,
    /// one copy of the spans instead of two. `out` is left as it was unless a request is
    /// returned. With `GAP`, the first argument's span is appended twice: room for one more
    /// argument after it, where the Redis face puts the selected partition (`shard::input`);
    /// the request as it came is then the spans from the second on.
    ///
    /// A request that lies whole in `buf`, with few arguments and short headers (nearly every
    /// request of a pipeline), is framed in one pass with no state kept
    /// ([`Parser::frame_whole`]); anything else (a partial request, `*0`, an inline line, a
    /// malformed or huge one) goes through [`Parser::parse`], which gives the same answer for
    /// the requests the one pass takes (the unit tests compare them at every cut of many
    /// requests, good and bad).
    ///
    /// `GAP` is a constant so that GoKV grammar's framing carries no test of it.
    #[inline]
    pub fn parse_into<const GAP: bool>(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<Span>,
        shift: u32,
    ) -> Result<Parsed, ProtocolError> {
        if self.array.is_none() {
            if let Some(consumed) = self.frame_whole::<GAP>(buf, out, shift) {
                return Ok(Parsed::Request { consumed });
            }
        }
        let parsed = self.parse(buf)?;
        if let Parsed::Request { .. } = parsed {
            let moved = |s: &Span| Span {
                start: s.start + shift,
                end: s.end + shift,
            };
            if GAP {
                // Every request has a first argument (the command's name).
                out.push(moved(&self.spans[0]));
            }
            out.extend(self.spans.iter().map(moved));
        }
        Ok(parsed)
    }

    /// The one-pass framing of [`Parser::parse_into`]: a RESP array of 1 to
    /// [`WHOLE_MAX_ARGS`] bulk strings, every header 1 to 18 digits, all of it in `buf` and
    /// within the limits. `None` (with `out` as it was) for anything else, which the general
    /// path then frames (or refuses) as always. Bounded work per call: at most
    /// [`WHOLE_MAX_ARGS`] headers are read, so a huge request that arrives in pieces is
    /// re-scanned only by the general path's resumable framing, never from its start each time.
    #[inline]
    fn frame_whole<const GAP: bool>(
        &self,
        buf: &[u8],
        out: &mut Vec<Span>,
        shift: u32,
    ) -> Option<usize> {
        // Every offset below is < buf.len(), so each moved span fits a u32 (the general
        // path's FrameTooLarge case never reaches here).
        if buf.len() > (u32::MAX - shift) as usize || buf.first() != Some(&b'*') {
            return None;
        }
        let (count, mut pos) = read_short_header(buf, 1)?;
        if count == 0 || count > WHOLE_MAX_ARGS || count > self.limits.max_args {
            return None;
        }
        let mark = out.len();
        out.reserve(count + 1);
        for i in 0..count {
            let framed = if buf.get(pos) == Some(&b'$') {
                read_short_header(buf, pos + 1).and_then(|(len, start)| {
                    // No overflow: len < 10^18 and start < buf.len().
                    let end = start + len;
                    (len <= self.limits.max_bulk_len
                        && buf.get(end..end + 2) == Some(b"\r\n".as_slice()))
                    .then_some((start, end))
                })
            } else {
                None
            };
            let Some((start, end)) = framed else {
                out.truncate(mark);
                return None;
            };
            let span = Span {
                start: start as u32 + shift,
                end: end as u32 + shift,
            };
            if GAP && i == 0 {
                out.push(span);
            }
            out.push(span);
            pos = end + 2;
        }
        Some(pos)
    }

    fn parse_array_header(&mut self, buf: &mut [u8]) -> Result<Parsed, ProtocolError> {
        let Some((value, next)) = read_number_line(buf, 1)? else {
            return Ok(Parsed::Incomplete);
        };
        let count = value.ok_or(ProtocolError(ErrorKind::InvalidMultibulkLength))?;
        if count <= 0 {
            // `*0` and `*-1` carry no command; Redis skips them silently.
            return Ok(Parsed::Skip { consumed: next });
        }
        let count = count as usize;
        if count > self.limits.max_args {
            return Err(ProtocolError(ErrorKind::TooManyArgs {
                max: self.limits.max_args,
                before_login: self.before_login,
            }));
        }
        self.spans.clear();
        self.parse_array_args(
            buf,
            ArrayState {
                remaining: count,
                pos: next,
            },
        )
    }

    fn parse_array_args(
        &mut self,
        buf: &mut [u8],
        mut state: ArrayState,
    ) -> Result<Parsed, ProtocolError> {
        while state.remaining > 0 {
            let Some(&first) = buf.get(state.pos) else {
                self.array = Some(state);
                return Ok(Parsed::Incomplete);
            };
            if first != b'$' {
                self.array = None;
                return Err(ProtocolError(ErrorKind::ExpectedBulk { got: first }));
            }
            let header = match read_number_line(&buf[state.pos..], 1) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.array = Some(state);
                    return Ok(Parsed::Incomplete);
                }
                Err(e) => {
                    self.array = None;
                    return Err(e);
                }
            };
            let len = match header.0 {
                Some(n) if n >= 0 => n as usize,
                _ => {
                    self.array = None;
                    return Err(ProtocolError(ErrorKind::InvalidBulkLength));
                }
            };
            if len > self.limits.max_bulk_len {
                self.array = None;
                return Err(ProtocolError(ErrorKind::BulkTooLong {
                    max: self.limits.max_bulk_len,
                    before_login: self.before_login,
                }));
            }
            let data_start = state.pos + header.1;
            // Checked: `len` is bounded by max_bulk_len, but a 32-bit span must hold it.
            let data_end = data_start + len;
            if buf.len() < data_end + 2 {
                self.array = Some(state);
                return Ok(Parsed::Incomplete);
            }
            if &buf[data_end..data_end + 2] != b"\r\n" {
                self.array = None;
                return Err(ProtocolError(ErrorKind::MissingCrlf));
            }
            let (Ok(start), Ok(end)) = (u32::try_from(data_start), u32::try_from(data_end)) else {
                self.array = None;
                return Err(ProtocolError(ErrorKind::FrameTooLarge));
            };
            self.spans.push(Span { start, end });
            state.pos = data_end + 2;
            state.remaining -= 1;
        }
        self.array = None;
        Ok(Parsed::Request {
            consumed: state.pos,
        })
    }

    /// An inline line is text a person typed: a raw NUL byte in it means the peer is not
    /// speaking our protocol at all (binary garbage, TLS, a port scanner), so it is refused as
    /// soon as it is seen, without waiting for a newline that may never come. Binary data,
    /// NUL included, travels in RESP bulk strings (or as `\x00` in a quoted inline word).
    fn parse_inline(&mut self, buf: &mut [u8]) -> Result<Parsed, ProtocolError> {
        let scan = buf.len().min(self.limits.max_inline_len.saturating_add(1));
        let newline = memchr(b'\n', &buf[..scan]);
        if memchr(0, &buf[..newline.unwrap_or(scan)]).is_some() {
            // A TLS record starts 0x16 0x03 (handshake, version 3.x) and its length bytes
            // hold a NUL: said so, for the operator who pointed a TLS client here.
            if buf.starts_with(&[0x16, 0x03]) {
                return Err(ProtocolError(ErrorKind::TlsOnPlainPort));
            }
            return Err(ProtocolError(ErrorKind::NulInInline));
        }
        let Some(newline) = newline else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError(ErrorKind::InlineTooLong {
                    max: self.limits.max_inline_len,
                    before_login: self.before_login,
                }));
            }
            return Ok(Parsed::Incomplete);
        };
        let consumed = newline + 1;
        let line_end = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        self.spans.clear();
        split_inline(
            &mut buf[..line_end],
            &mut self.spans,
            self.limits.max_args,
            self.before_login,
        )?;
        if self.spans.is_empty() {
            Ok(Parsed::Skip { consumed })
        } else {
            Ok(Parsed::Request { consumed })
        }
    }
}

/// Reads `<digits>\r\n` starting at `buf[from]`. Returns the number (`None` if it is not a
/// valid decimal) and the offset just past the CRLF, or `Ok(None)` when the line is not
/// complete yet.
#[allow(clippy::type_complexity)]
fn read_number_line(
    buf: &[u8],
    from: usize,
) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
    if let Some((value, next)) = read_small_number_line(buf, from) {
        return Ok(Some((Some(value), next)));
    }
    read_number_line_slow(buf, from)
}

/// The common case of [`read_number_line`] in one pass: 1 to 18 digits (no sign, no overflow
/// possible) followed by CRLF, all in `buf`. `None` for anything else, which the general
/// path then handles (incomplete lines, `-1`, errors): same answers, ~4x fewer instructions
/// per request header than finding the CR first and parsing after.
#[inline]
fn read_small_number_line(buf: &[u8], from: usize) -> Option<(i64, usize)> {
    let end = buf.len().min(from + 18);
    let mut value: i64 = 0;
    let mut i = from;
    while i < end {
        let digit = buf[i].wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value * 10 + i64::from(digit);
        i += 1;
    }
    (i > from && buf.get(i) == Some(&b'\r') && buf.get(i + 1) == Some(&b'\n'))
        .then_some((value, i + 2))
}

/// [`read_small_number_line`] for the one-pass framing, with the one- and two-digit numbers
/// of nearly every header (`*3`, `$3`, `$32`) read from one 4-byte word: same answers (a
/// unit test compares them), a third of the instructions of the digit loop.
#[inline(always)]
fn read_short_header(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    if let Some(&[b0, b1, b2, b3]) = buf.get(from..from + 4) {
        let word = u32::from_le_bytes([b0, b1, b2, b3]);
        let (d0, d1) = (b0.wrapping_sub(b'0'), b1.wrapping_sub(b'0'));
        if d0 <= 9 {
            if (word >> 8) & 0xffff == 0x0a0d {
                return Some((usize::from(d0), from + 3));
            }
            if d1 <= 9 && word >> 16 == 0x0a0d {
                return Some((usize::from(d0) * 10 + usize::from(d1), from + 4));
            }
        }
    }
    read_small_number_line(buf, from).map(|(value, next)| (value as usize, next))
}

#[cold]
fn read_number_line_slow(
    buf: &[u8],
    from: usize,
) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
    let window = &buf[from..buf.len().min(from + MAX_HEADER_LINE)];
    let Some(cr) = memchr(b'\r', window) else {
        if window.len() >= MAX_HEADER_LINE {
            return Err(ProtocolError(if buf[0] == b'*' {
                ErrorKind::InvalidMultibulkLength
            } else {
                ErrorKind::InvalidBulkLength
            }));
        }
        return Ok(None);
    };
    // The LF may lie just past the window; look it up in the whole buffer.
    let Some(&lf) = buf.get(from + cr + 1) else {
        return Ok(None);
    };
    if lf != b'\n' {
        return Err(ProtocolError(if buf[0] == b'*' {
            ErrorKind::InvalidMultibulkLength
        } else {
            ErrorKind::InvalidBulkLength
        }));
    }
    Ok(Some((parse_i64(&window[..cr]), from + cr + 2)))
}

/// Parses a plain decimal (optional `-`, digits only) without overflow.
pub fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}

#[inline]
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Splits one inline line into arguments the way `redis-cli` and Redis's `sdssplitargs` do:
/// words separated by spaces/tabs; `"double quoted"` words honour `\n \r \t \b \a \\ \" \xHH`;
/// `'single quoted'` words honour only `\'`; a closing quote must be followed by a space or the
/// end of the line. Unescaped bytes are written back into `line` in place.
/// `before_login` only words the error of a line with more than `max_args` words.
fn split_inline(
    line: &mut [u8],
    spans: &mut Vec<Span>,
    max_args: usize,
    before_login: bool,
) -> Result<(), ProtocolError> {
    let mut read = 0;
    let len = line.len();
    loop {
        while read < len && is_inline_space(line[read]) {
            read += 1;
        }
        if read == len {
            return Ok(());
        }
        if spans.len() == max_args {
            return Err(ProtocolError(ErrorKind::TooManyArgs {
                max: max_args,
                before_login,
            }));
        }
        // The unescaped word is written starting where its raw text starts.
        let start = read;
        let mut write = read;
        match line[read] {
            b'"' => {
                read += 1;
                loop {
                    let Some(&c) = line.get(read) else {
                        return Err(ProtocolError(ErrorKind::UnbalancedQuotes));
                    };
                    match c {
                        b'\\'
                            if read + 3 < len
                                && line[read + 1] == b'x'
                                && line[read + 2].is_ascii_hexdigit()
                                && line[read + 3].is_ascii_hexdigit() =>
                        {
                            line[write] = hex(line[read + 2]) << 4 | hex(line[read + 3]);
                            read += 4;
                        }
                        b'\\' if read + 1 < len => {
                            line[write] = match line[read + 1] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            };
                            read += 2;
                        }
                        b'"' => {
                            read += 1;
                            if read < len && !is_inline_space(line[read]) {
                                return Err(ProtocolError(ErrorKind::UnbalancedQuotes));
                            }
                            break;
                        }
                        other => {
                            line[write] = other;
                            read += 1;
                        }
                    }
                    write += 1;
                }
            }
            b'\'' => {
                read += 1;
                loop {
                    let Some(&c) = line.get(read) else {
                        return Err(ProtocolError(ErrorKind::UnbalancedQuotes));
                    };
                    match c {
                        b'\\' if line.get(read + 1) == Some(&b'\'') => {
                            line[write] = b'\'';
                            read += 2;
                        }
                        b'\'' => {
                            read += 1;
                            if read < len && !is_inline_space(line[read]) {
                                return Err(ProtocolError(ErrorKind::UnbalancedQuotes));
                            }
                            break;
                        }
                        other => {
                            line[write] = other;
                            read += 1;
                        }
                    }
                    write += 1;
                }
            }
            _ => {
                while read < len && !is_inline_space(line[read]) {
                    read += 1;
                }
                write = read;
            }
        }
        // Lines are bounded by max_inline_len, far below u32::MAX; checked all the same.
        let (Ok(s), Ok(e)) = (u32::try_from(start), u32::try_from(write)) else {
            return Err(ProtocolError(ErrorKind::FrameTooLarge));
        };
        spans.push(Span { start: s, end: e });
    }
}

#[inline]
fn is_inline_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

#[inline]
fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Wherever the one-pass number line path answers, the general path answers the same.
        #[test]
        fn number_line_fast_path_agrees(
            bytes in proptest::collection::vec(proptest::sample::select(
                b"0123456789-\r\nx".to_vec()), 0..30),
            from in 0usize..3,
        ) {
            let from = from.min(bytes.len());
            if let Some((value, next)) = read_small_number_line(&bytes, from) {
                proptest::prop_assert_eq!(
                    read_number_line_slow(&bytes, from),
                    Ok(Some((Some(value), next)))
                );
            }
        }
    }

    proptest::proptest! {
        /// `parse_into` (its one-pass framing, or the general path behind it) answers every
        /// byte string as `parse` does, spans and errors alike.
        #[test]
        fn parse_into_agrees_on_random_bytes(
            bytes in proptest::collection::vec(proptest::sample::select(
                b"*$0123456789-\r\nab:".to_vec()), 0..48),
            small in proptest::bool::ANY,
        ) {
            let limits = if small { SMALL } else { Limits::default() };
            both_paths_agree(&bytes, limits);
        }
    }

    const SMALL: Limits = Limits {
        max_bulk_len: 16,
        max_inline_len: 32,
        max_args: 4,
    };

    /// Frames `input` with `parse_into` (after spans already in `out`, moved by a shift) and
    /// with `parse` on a fresh parser each, and checks they agree: outcome, error and spans.
    fn both_paths_agree(input: &[u8], limits: Limits) {
        let (mut whole, mut general) = (Parser::new(limits), Parser::new(limits));
        let earlier = Span { start: 7, end: 9 };
        let mut out = vec![earlier];
        let got = whole.parse_into::<false>(&mut input.to_vec(), &mut out, 5);
        let want = general.parse(&mut input.to_vec());
        let mut spans = vec![earlier];
        if let Ok(Parsed::Request { .. }) = want {
            spans.extend(general.args().iter().map(|s| Span {
                start: s.start + 5,
                end: s.end + 5,
            }));
        }
        let shown = input.escape_ascii().to_string();
        assert_eq!(got, want, "{shown}");
        assert_eq!(out, spans, "{shown}");
        // With a gap: the first argument twice, the rest as without.
        let mut gapped = Parser::new(limits);
        let mut out = vec![earlier];
        assert_eq!(
            gapped.parse_into::<true>(&mut input.to_vec(), &mut out, 5),
            want,
            "{shown}"
        );
        if spans.len() > 1 {
            spans.insert(1, spans[1]);
        }
        assert_eq!(out, spans, "{shown} with a gap");
    }

    /// Requests good and bad, for the one-pass framing's edges: lengths of 0, 1, 2 and 18
    /// digits, binary data, too many arguments for it or for the limits, negative, non-digit
    /// and huge lengths, a missing or short CRLF, leading zeros, LF without CR.
    const EDGE_CASES: &[&[u8]] = &[
        b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$32\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
        b"*1\r\n$0\r\n\r\n",
        b"*1\r\n$4\r\na\r\nb\r\n",
        b"*01\r\n$004\r\nPING\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$-5\r\nabc\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$\r\n\r\n",
        b"*\r\n",
        b"*1\r\n:1\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n",
        b"*1\r\n$3\r\nabcde\r\n",
        b"*1\r\n$3\r\nabc\rX",
        b"*1\r\n$3\r\nabc\n\r",
        b"*1\n$3\r\nabc\r\n",
        b"*1\r\n$3\nabc\r\n",
        b"*1\r\n$3 \r\nabc\r\n",
        b"*1\r\n$17\r\n01234567890123456\r\n",
        b"*1\r\n$999999999999999999\r\nabc\r\n",
        b"*1\r\n$9999999999999999999\r\nabc\r\n",
        b"*1\r\n$99999999999999999999999\r\n",
        b"*999999999999999999\r\n$1\r\na\r\n",
        b"*99999999999999999999\r\n",
        b"*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n",
        b"*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n",
        b"PING\r\n",
        b"SET p k v\n",
    ];

    /// `n` one-byte arguments: one past the one-pass framing's 32, or within it.
    fn many_args(n: usize) -> Vec<u8> {
        let mut request = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            request.extend_from_slice(b"$1\r\nx\r\n");
        }
        request
    }

    #[test]
    fn parse_into_agrees_at_every_cut_of_every_edge_case() {
        let mut cases: Vec<Vec<u8>> = EDGE_CASES.iter().map(|c| c.to_vec()).collect();
        cases.extend([many_args(32), many_args(33)]);
        for case in &cases {
            for cut in 0..=case.len() {
                for limits in [Limits::default(), SMALL] {
                    both_paths_agree(&case[..cut], limits);
                }
            }
        }
    }

    #[test]
    fn parse_into_frames_a_pipeline_cut_anywhere_as_parse_does() {
        let mut pipeline = Vec::new();
        for case in EDGE_CASES.iter().take(5) {
            pipeline.extend_from_slice(case);
        }
        pipeline.extend(many_args(32));
        pipeline.extend(many_args(33));
        pipeline.extend_from_slice(b"PING\r\n*1\r\n$4\r\nPING\r\n");
        let expected = feed_in_chunks(&pipeline, &[]);
        assert_eq!(expected.len(), 9);
        for split in 0..=pipeline.len() {
            assert_eq!(
                feed_in_chunks_into(&pipeline, &[split]),
                expected,
                "split at {split}"
            );
        }
        let every: Vec<usize> = (1..pipeline.len()).collect();
        assert_eq!(feed_in_chunks_into(&pipeline, &every), expected);
    }

    #[test]
    fn parse_into_leaves_out_as_it_was_unless_it_frames_a_request() {
        let mut parser = Parser::new(Limits::default());
        let mut out = vec![Span { start: 1, end: 2 }];
        for bad in [
            &b"*2\r\n$3\r\nGET\r\n$5\r\nke"[..],
            b"*1\r\n$3\r\nabcde\r\n",
        ] {
            let _ = parser.parse_into::<false>(&mut bad.to_vec(), &mut out, 0);
            assert_eq!(out, [Span { start: 1, end: 2 }]);
            parser.reset();
        }
        let mut get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec();
        assert_eq!(
            parser.parse_into::<false>(&mut get, &mut out, 100),
            Ok(Parsed::Request { consumed: 20 })
        );
        assert_eq!(
            out,
            [
                Span { start: 1, end: 2 },
                Span {
                    start: 108,
                    end: 111
                },
                Span {
                    start: 117,
                    end: 118
                }
            ]
        );
    }

    /// [`feed_in_chunks`] through `parse_into`, as the shard frames: spans appended to one
    /// list, moved by the frame's offset in the buffer.
    fn feed_in_chunks_into(input: &[u8], cuts: &[usize]) -> Vec<Vec<Vec<u8>>> {
        let mut parser = Parser::new(Limits::default());
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[last..cut]);
            last = cut;
            let mut offset = 0;
            let mut spans = Vec::new();
            loop {
                let first = spans.len();
                match parser
                    .parse_into::<false>(&mut buf[offset..], &mut spans, offset as u32)
                    .unwrap()
                {
                    Parsed::Request { consumed } => {
                        out.push(
                            spans[first..]
                                .iter()
                                .map(|s| buf[s.range()].to_vec())
                                .collect(),
                        );
                        offset += consumed;
                    }
                    Parsed::Skip { consumed } => offset += consumed,
                    Parsed::Incomplete => break,
                }
            }
            buf.drain(..offset);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    proptest::proptest! {
        /// The word-at-a-time header read answers as the digit loop does.
        #[test]
        fn short_header_agrees(
            bytes in proptest::collection::vec(proptest::sample::select(
                b"0123456789-\r\nx".to_vec()), 0..8),
            from in 0usize..3,
        ) {
            let from = from.min(bytes.len());
            proptest::prop_assert_eq!(
                read_short_header(&bytes, from),
                read_small_number_line(&bytes, from).map(|(v, n)| (v as usize, n))
            );
        }
    }

    #[test]
    fn short_header_reads_one_and_two_digits_from_a_word() {
        assert_eq!(read_short_header(b"$3\r\nGET", 1), Some((3, 4)));
        assert_eq!(read_short_header(b"$32\r\nx", 1), Some((32, 5)));
        assert_eq!(read_short_header(b"$3\r\n", 1), Some((3, 4)));
        assert_eq!(read_short_header(b"$123\r\n", 1), Some((123, 6)));
        assert_eq!(read_short_header(b"$3\rx\r\n", 1), None);
        assert_eq!(read_short_header(b"$3x\r\n", 1), None);
        assert_eq!(read_short_header(b"$-1\r\n", 1), None);
        assert_eq!(read_short_header(b"$\r\n\r\n", 1), None);
        assert_eq!(read_short_header(b"$3\r", 1), None);
    }

    #[test]
    fn number_line_fast_path_takes_only_short_unsigned_numbers() {
        assert_eq!(read_small_number_line(b"$3\r\nGET", 1), Some((3, 4)));
        assert_eq!(
            read_small_number_line(b"*123456789012345678\r\n", 1),
            Some((123456789012345678, 21))
        );
        // 19 digits, a sign, no digits, a missing LF, an unfinished line: the general path.
        assert_eq!(read_small_number_line(b"*1234567890123456789\r\n", 1), None);
        assert_eq!(read_small_number_line(b"$-1\r\n", 1), None);
        assert_eq!(read_small_number_line(b"$\r\n", 1), None);
        assert_eq!(read_small_number_line(b"$3\rx", 1), None);
        assert_eq!(read_small_number_line(b"$3\r", 1), None);
        assert_eq!(read_small_number_line(b"$3", 1), None);
    }

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = Parser::new(Limits::default());
        let mut buf = input.to_vec();
        let mut pos = 0;
        let mut out = Vec::new();
        loop {
            match parser.parse(&mut buf[pos..])? {
                Parsed::Request { consumed } => {
                    let frame = &buf[pos..];
                    out.push(
                        parser
                            .args()
                            .iter()
                            .map(|s| frame[s.range()].to_vec())
                            .collect(),
                    );
                    pos += consumed;
                }
                Parsed::Skip { consumed } => pos += consumed,
                Parsed::Incomplete => return Ok(out),
            }
        }
    }

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn resp_array() {
        let got = parse_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n").unwrap();
        assert_eq!(got, vec![words(&["SET", "k", "hello"])]);
    }

    #[test]
    fn binary_safe_bulk() {
        let got = parse_all(b"*1\r\n$4\r\na\r\nb\r\n").unwrap();
        assert_eq!(got, vec![vec![b"a\r\nb".to_vec()]]);
        let got = parse_all(b"*1\r\n$0\r\n\r\n").unwrap();
        assert_eq!(got, vec![vec![Vec::<u8>::new()]]);
    }

    #[test]
    fn inline_words_and_quotes() {
        let got = parse_all(b"SET p k v\r\nGET  p\tk\n\r\n\n").unwrap();
        assert_eq!(
            got,
            vec![words(&["SET", "p", "k", "v"]), words(&["GET", "p", "k"])]
        );
        let got = parse_all(b"SET \"a b\\n\\x41\\\"\" 'it\\'s' \"\"\r\n").unwrap();
        assert_eq!(
            got,
            vec![vec![
                b"SET".to_vec(),
                b"a b\nA\"".to_vec(),
                b"it's".to_vec(),
                vec![]
            ]]
        );
        let got = parse_all(b"ECHO 'a\\nb'\n").unwrap();
        assert_eq!(got, vec![vec![b"ECHO".to_vec(), b"a\\nb".to_vec()]]);
    }

    #[test]
    fn inline_unbalanced_quotes() {
        for bad in [
            &b"GET \"abc\n"[..],
            b"GET 'abc\n",
            b"GET \"a\"b\n",
            b"GET 'a'b\n",
        ] {
            let err = parse_all(bad).unwrap_err();
            assert_eq!(err.to_string(), "unbalanced quotes in request", "{bad:?}");
        }
    }

    #[test]
    fn nul_in_inline_is_garbage_but_bulk_is_binary_safe() {
        for bad in [&b"GET p\0k\r\n"[..], b"\0\0\0", b"PING\0"] {
            let err = parse_all(bad).unwrap_err();
            assert!(err.to_string().starts_with("NUL byte in inline"), "{bad:?}");
        }
        // A ClientHello (record type 0x16, version 3.1, length 0x00c8) is named as such.
        let err = parse_all(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("TLS handshake on a plain-text port"),
            "{err}"
        );
        // A NUL after the newline belongs to the next line.
        let mut parser = Parser::new(Limits::default());
        assert_eq!(
            parser.parse(&mut b"PING\n\0".to_vec()),
            Ok(Parsed::Request { consumed: 5 })
        );
        let got = parse_all(b"*2\r\n$4\r\nECHO\r\n$3\r\na\0b\r\nECHO \"\\x00\"\n").unwrap();
        assert_eq!(
            got,
            vec![
                vec![b"ECHO".to_vec(), b"a\0b".to_vec()],
                vec![b"ECHO".to_vec(), b"\0".to_vec()]
            ]
        );
    }

    #[test]
    fn empty_arrays_are_skipped() {
        let got = parse_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![words(&["PING"])]);
    }

    #[test]
    fn every_split_point_of_a_pipeline() {
        let pipeline: &[u8] = b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$3\r\nv\r\n\r\nPING\r\nECHO \"x y\"\n*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n\r\n*0\r\n";
        let expected = parse_all(pipeline).unwrap();
        assert_eq!(expected.len(), 4);
        // Feed the bytes in two pieces, then byte by byte, and compare.
        for split in 0..=pipeline.len() {
            let got = feed_in_chunks(pipeline, &[split]);
            assert_eq!(got, expected, "split at {split}");
        }
        let every: Vec<usize> = (1..pipeline.len()).collect();
        assert_eq!(feed_in_chunks(pipeline, &every), expected);
    }

    /// Simulates a connection: bytes arrive in pieces cut at `cuts`; the buffer keeps its
    /// start until a frame is consumed, as the connection does.
    fn feed_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<Vec<Vec<u8>>> {
        let mut parser = Parser::new(Limits::default());
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[last..cut]);
            last = cut;
            loop {
                match parser.parse(&mut buf).unwrap() {
                    Parsed::Request { consumed } => {
                        out.push(
                            parser
                                .args()
                                .iter()
                                .map(|s| buf[s.range()].to_vec())
                                .collect(),
                        );
                        buf.drain(..consumed);
                    }
                    Parsed::Skip { consumed } => {
                        buf.drain(..consumed);
                    }
                    Parsed::Incomplete => break,
                }
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn malformed_frames() {
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "invalid multibulk length"),
            (b"*1x\r\n", "invalid multibulk length"),
            (b"*2\r\n:1\r\n", "expected '$', got ':'"),
            (b"*1\r\n*1\r\n", "expected '$', got '*'"),
            (b"*1\r\n$-5\r\n", "invalid bulk length"),
            (b"*1\r\n$x\r\n", "invalid bulk length"),
            (
                b"*1\r\n$3\r\nabcde\r\n",
                "expected '\\r\\n' after bulk data",
            ),
            (b"*1\r\n$99999999999999999999999\r\n", "invalid bulk length"),
            (b"*99999999999999999999\r\n", "invalid multibulk length"),
            (b"*1\r\n$3\rX", "invalid bulk length"),
            (
                b"*123456789012345678901234567890123\r\n",
                "invalid multibulk length",
            ),
        ];
        for (input, message) in cases {
            let err = parse_all(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                *message,
                "input {:?}",
                input.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn limits_are_checked_before_the_data_arrives() {
        let limits = Limits {
            max_bulk_len: 16,
            max_inline_len: 10,
            max_args: 3,
        };
        let mut parser = Parser::new(limits);
        // A claimed 1 GB bulk is refused from its header alone.
        let err = parser
            .parse(&mut b"*1\r\n$1000000000\r\n".to_vec())
            .unwrap_err();
        assert!(err.to_string().starts_with("invalid bulk length"));
        let mut parser = Parser::new(limits);
        let err = parser.parse(&mut b"*4\r\n".to_vec()).unwrap_err();
        assert!(err.to_string().contains("more than 3 arguments"));
        let mut parser = Parser::new(limits);
        let err = parser.parse(&mut b"ECHO 123456789".to_vec()).unwrap_err();
        assert!(err.to_string().starts_with("too big inline request"));
        let mut parser = Parser::new(limits);
        let err = parser.parse(&mut b"a b c d\n".to_vec()).unwrap_err();
        assert!(err.to_string().contains("more than 3 arguments"));
        // Exactly at the limits is fine.
        let mut parser = Parser::new(limits);
        assert!(matches!(
            parser.parse(&mut b"ECHO 1234\n".to_vec()).unwrap(),
            Parsed::Request { .. }
        ));
    }

    #[test]
    fn before_login_limits_are_small_and_switch_off_at_login() {
        let mut parser = Parser::before_login(Limits::default());
        assert!(!parser.logged_in());
        let err = parser
            .parse(&mut b"*3\r\n$4\r\nAUTH\r\n$5\r\nadmin\r\n$16385\r\n".to_vec())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unauthenticated bulk length (longer than 16384 bytes before login)"
        );
        let err = parser.parse(&mut b"*11\r\n".to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unauthenticated multibulk length (more than 10 arguments before login)"
        );
        let err = parser
            .parse(&mut b"a b c d e f g h i j k\n".to_vec())
            .unwrap_err();
        assert!(err.to_string().contains("before login"), "{err}");
        // At the limits: fine.
        let mut ten = b"*10\r\n".to_vec();
        for _ in 0..10 {
            ten.extend_from_slice(b"$1\r\nx\r\n");
        }
        assert!(matches!(
            parser.parse(&mut ten.clone()).unwrap(),
            Parsed::Request { .. }
        ));
        // A request partly framed before login is framed again, under the new limits.
        let mut big = b"*2\r\n$4\r\nECHO\r\n$20000\r\n".to_vec();
        assert!(parser.parse(&mut big[..14].to_vec()).unwrap() == Parsed::Incomplete);
        parser.set_logged_in(true);
        assert!(parser.logged_in());
        assert_eq!(parser.parse(&mut big.clone()).unwrap(), Parsed::Incomplete);
        big.extend(std::iter::repeat_n(b'v', 20000));
        big.extend_from_slice(b"\r\n");
        assert_eq!(
            parser.parse(&mut big.clone()).unwrap(),
            Parsed::Request {
                consumed: big.len()
            }
        );
        // Configured limits below the pre-login caps stay in force before login.
        let small = Limits {
            max_bulk_len: 16,
            max_inline_len: 32,
            max_args: 4,
        };
        let before = small.before_login();
        assert_eq!(
            (before.max_bulk_len, before.max_inline_len, before.max_args),
            (16, 32, 4)
        );
    }

    #[test]
    fn huge_count_allocates_nothing_up_front() {
        let mut parser = Parser::new(Limits::default());
        assert_eq!(
            parser.parse(&mut b"*1000000\r\n".to_vec()).unwrap(),
            Parsed::Incomplete
        );
        assert!(parser.spans.capacity() < 1024);
    }

    #[test]
    fn parse_i64_edges() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"1a"), None);
        assert_eq!(parse_i64(b"+1"), None);
    }
}

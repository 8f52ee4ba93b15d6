//! Reply encoder: RESP2 and RESP3, written straight into an output buffer.
//!
//! Commands encode their reply directly into the connection's output buffer (or, for a request
//! forwarded from another shard, into the reply batch going back), so a reply is never built as
//! a tree of values and then serialised: that saves an allocation per reply on the hot path.
//!
//! The few places where RESP2 and RESP3 differ (null, maps, doubles, verbatim text) are methods
//! here, so command code never checks the protocol version itself.

/// The protocol a connection negotiated with `HELLO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// An output buffer with the connection's protocol: everything a command needs to answer.
pub struct ReplyWriter<'a> {
    pub buf: &'a mut Vec<u8>,
    pub protocol: Protocol,
}

impl<'a> ReplyWriter<'a> {
    #[inline]
    pub fn new(buf: &'a mut Vec<u8>, protocol: Protocol) -> Self {
        ReplyWriter { buf, protocol }
    }

    /// `+OK`
    #[inline]
    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string; `s` must not contain CR or LF.
    #[inline]
    pub fn simple(&mut self, s: &str) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An error reply: `code` is its first word (`ERR`, `WRONGTYPE`, ...). CR and LF in the
    /// message are replaced by spaces, since they would end the reply early.
    pub fn error(&mut self, code: &str, message: &str) {
        self.buf.push(b'-');
        self.buf.extend_from_slice(code.as_bytes());
        self.buf.push(b' ');
        self.buf.extend(
            message
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn integer(&mut self, n: i64) {
        self.buf.push(b':');
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn bulk(&mut self, data: &[u8]) {
        self.header(b'$', data.len());
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    #[inline]
    pub fn null(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.buf.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    /// The null array (EXEC after a WATCH conflict): `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.buf.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    #[inline]
    pub fn array(&mut self, len: usize) {
        self.header(b'*', len);
    }

    /// A push of `len` items (Pub/Sub's messages and (un)subscribe confirmations): `>` in
    /// RESP3, an array in RESP2.
    #[inline]
    pub fn push(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.header(b'*', len),
            Protocol::Resp3 => self.header(b'>', len),
        }
    }

    /// A map of `pairs` entries: `%` in RESP3, a flat array of `2 * pairs` in RESP2.
    #[inline]
    pub fn map(&mut self, pairs: usize) {
        match self.protocol {
            Protocol::Resp2 => self.header(b'*', pairs * 2),
            Protocol::Resp3 => self.header(b'%', pairs),
        }
    }

    /// A set: `~` in RESP3, an array in RESP2.
    #[inline]
    pub fn set(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.header(b'*', len),
            Protocol::Resp3 => self.header(b'~', len),
        }
    }

    /// Free text (INFO): a verbatim string in RESP3, a bulk string in RESP2.
    pub fn verbatim_text(&mut self, text: &[u8]) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.header(b'=', text.len() + 4);
                self.buf.extend_from_slice(b"txt:");
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// A map key/value pair whose value is a bulk string.
    #[inline]
    pub fn field_bulk(&mut self, name: &str, value: &[u8]) {
        self.bulk(name.as_bytes());
        self.bulk(value);
    }

    /// A map key/value pair whose value is an integer.
    #[inline]
    pub fn field_int(&mut self, name: &str, value: i64) {
        self.bulk(name.as_bytes());
        self.integer(value);
    }

    #[inline]
    fn header(&mut self, kind: u8, len: usize) {
        // The short headers of nearly every reply (`$5`, `$32`, `*2`) in one copy instead
        // of three.
        if len < 10 {
            self.buf
                .extend_from_slice(&[kind, b'0' + len as u8, b'\r', b'\n']);
            return;
        }
        if len < 100 {
            let (tens, ones) = ((len / 10) as u8, (len % 10) as u8);
            self.buf
                .extend_from_slice(&[kind, b'0' + tens, b'0' + ones, b'\r', b'\n']);
            return;
        }
        self.buf.push(kind);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(protocol: Protocol, f: impl FnOnce(&mut ReplyWriter)) -> Vec<u8> {
        let mut buf = Vec::new();
        f(&mut ReplyWriter::new(&mut buf, protocol));
        buf
    }

    #[test]
    fn scalars() {
        assert_eq!(encode(Protocol::Resp2, |w| w.ok()), b"+OK\r\n");
        assert_eq!(encode(Protocol::Resp2, |w| w.integer(-42)), b":-42\r\n");
        assert_eq!(encode(Protocol::Resp2, |w| w.bulk(b"hi")), b"$2\r\nhi\r\n");
        assert_eq!(encode(Protocol::Resp2, |w| w.bulk(b"")), b"$0\r\n\r\n");
        assert_eq!(
            encode(Protocol::Resp2, |w| w.error("ERR", "bad\r\nthing")),
            b"-ERR bad  thing\r\n"
        );
    }

    /// The one-copy short headers write what the general form does, at and around the
    /// lengths where they switch.
    #[test]
    fn headers_of_every_length_read_as_decimal() {
        for len in (0..1100).chain([9_999, 10_000, 1 << 20, usize::MAX]) {
            let data = vec![b'v'; len.min(1100)];
            let mut want = format!("${}\r\n", data.len()).into_bytes();
            want.extend_from_slice(&data);
            want.extend_from_slice(b"\r\n");
            assert_eq!(encode(Protocol::Resp2, |w| w.bulk(&data)), want, "{len}");
            let mut buf = b"x".to_vec();
            ReplyWriter::new(&mut buf, Protocol::Resp2).header(b'*', len);
            assert_eq!(buf, format!("x*{len}\r\n").into_bytes());
        }
    }

    #[test]
    fn null_and_map_follow_the_protocol() {
        assert_eq!(encode(Protocol::Resp2, |w| w.null()), b"$-1\r\n");
        assert_eq!(encode(Protocol::Resp3, |w| w.null()), b"_\r\n");
        assert_eq!(encode(Protocol::Resp2, |w| w.map(3)), b"*6\r\n");
        assert_eq!(encode(Protocol::Resp3, |w| w.map(3)), b"%3\r\n");
        assert_eq!(
            encode(Protocol::Resp3, |w| w.verbatim_text(b"a")),
            b"=5\r\ntxt:a\r\n"
        );
    }
}

//! The wire protocol: bytes in ([`parser`]), bytes out ([`reply`]).
//!
//! Nothing here touches a socket or a partition: the parser frames requests in a buffer the
//! connection owns, and the reply writer appends to a buffer the caller owns.

pub mod parser;
pub mod reply;

pub use parser::{Limits, Parsed, Parser, ProtocolError, Span};
pub use reply::{Protocol, ReplyWriter};

/// The arguments of one request: spans over a byte buffer (the connection's read buffer, or a
/// forwarded batch's copy of it). Argument 0 is the command name.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    spans: &'a [Span],
}

/// `words` laid out as a parsed request's are: one buffer, a span per word (for [`Args::new`];
/// a request GoKV makes itself, like `--databases`' CREATEs, and tests and benchmarks).
pub fn lay_out<W: AsRef<[u8]>>(words: &[W]) -> (Vec<u8>, Vec<Span>) {
    let mut buf = Vec::new();
    let mut spans = Vec::with_capacity(words.len());
    for word in words {
        let start = buf.len() as u32;
        buf.extend_from_slice(word.as_ref());
        spans.push(Span {
            start,
            end: buf.len() as u32,
        });
    }
    (buf, spans)
}

impl<'a> Args<'a> {
    #[inline]
    pub fn new(buf: &'a [u8], spans: &'a [Span]) -> Self {
        Args { buf, spans }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i`. Panics if `i >= len()`: callers check arity first (the command table
    /// guarantees it before any command runs).
    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.buf[self.spans[i].range()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.spans.iter().map(|s| &self.buf[s.range()])
    }

    /// The spans themselves, for copying the request into a forwarded batch.
    #[inline]
    pub fn spans(&self) -> &'a [Span] {
        self.spans
    }

    #[inline]
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }
}

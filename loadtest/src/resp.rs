//! RESP reply framing (RESP2 and RESP3) and request encoding.
//!
//! The load generator never needs the *content* of a reply, only where it ends and whether it is
//! an error. [`parse_reply`] therefore validates and skips one complete reply at the start of a
//! buffer, or says that more bytes are needed. It keeps no state between calls: when a reply is
//! incomplete the caller keeps the bytes and calls again from the same offset once more bytes
//! have arrived, so a reply split at any byte boundary is framed correctly. Re-scanning is cheap
//! because a bulk string is skipped by its length, not by looking at its bytes.

use std::fmt;

/// Nesting deeper than this is treated as a protocol error rather than recursing further.
const MAX_DEPTH: usize = 64;
/// A bulk string longer than this is treated as a protocol error (Redis' own limit is 512 MiB).
const MAX_BULK: i64 = 512 * 1024 * 1024;

/// What kind of reply was framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Any non-error reply (simple string, integer, bulk, null, array, map, ...).
    Value,
    /// An error reply: `-ERR ...` or a RESP3 bulk error `!<len>`. Holds the text without the
    /// leading type byte.
    Error(&'a [u8]),
    /// A RESP3 out-of-band push (`>`); it answers no request.
    Push,
}

/// The bytes cannot be RESP: the stream is unusable from here on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RESP protocol error: {}", self.0)
    }
}

/// Frames one reply at the start of `buf`.
///
/// Returns `Ok(Some((len, reply)))` when `buf[..len]` is one complete reply, `Ok(None)` when
/// `buf` holds only part of a reply (nothing is consumed), and `Err` when the bytes are not RESP.
/// A RESP3 attribute (`|`) is consumed together with the reply that follows it.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(usize, Reply<'_>)>, ProtocolError> {
    let mut pos = 0;
    loop {
        let Some(&ty) = buf.get(pos) else {
            return Ok(None);
        };
        match ty {
            b'-' => {
                let Some((line, next)) = line_at(buf, pos + 1) else {
                    return Ok(None);
                };
                return Ok(Some((next, Reply::Error(line))));
            }
            b'!' => {
                let Some((len, body)) = length_at(buf, pos + 1)? else {
                    return Ok(None);
                };
                if len < 0 {
                    return Err(ProtocolError(format!("negative bulk error length {len}")));
                }
                let Some(end) = bulk_end(buf, body, len as usize)? else {
                    return Ok(None);
                };
                return Ok(Some((end, Reply::Error(&buf[body..body + len as usize]))));
            }
            b'|' => {
                // Attribute map: metadata for the reply that follows it. Skip the map itself,
                // then classify the reply it describes.
                let Some((count, mut next)) = length_at(buf, pos + 1)? else {
                    return Ok(None);
                };
                if count < 0 {
                    return Err(ProtocolError(format!("bad attribute length {count}")));
                }
                for _ in 0..count as u64 * 2 {
                    match skip_value(buf, next, 1)? {
                        Some(n) => next = n,
                        None => return Ok(None),
                    }
                }
                pos = next;
            }
            b'>' => {
                let Some(end) = skip_value(buf, pos, 0)? else {
                    return Ok(None);
                };
                return Ok(Some((end, Reply::Push)));
            }
            _ => {
                let Some(end) = skip_value(buf, pos, 0)? else {
                    return Ok(None);
                };
                return Ok(Some((end, Reply::Value)));
            }
        }
    }
}

/// Skips one value starting at `pos`; returns the offset just after it.
fn skip_value(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("reply nested too deeply".into()));
    }
    let Some(&ty) = buf.get(pos) else {
        return Ok(None);
    };
    match ty {
        // Line-shaped types: simple string, error, integer, double, boolean, big number.
        b'+' | b'-' | b':' | b',' | b'#' | b'(' => Ok(line_at(buf, pos + 1).map(|(_, next)| next)),
        b'_' => match line_at(buf, pos + 1) {
            None => Ok(None),
            Some((b"", next)) => Ok(Some(next)),
            Some(_) => Err(ProtocolError("RESP3 null with a payload".into())),
        },
        // Length-prefixed types: bulk string, bulk error, verbatim string.
        b'$' | b'!' | b'=' => {
            let Some((len, body)) = length_at(buf, pos + 1)? else {
                return Ok(None);
            };
            if len < 0 {
                if ty == b'$' && len == -1 {
                    return Ok(Some(body)); // RESP2 null bulk `$-1`
                }
                return Err(ProtocolError(format!("bad bulk length {len}")));
            }
            bulk_end(buf, body, len as usize)
        }
        // Aggregates: array, set, push (n values); map, attribute (2n values).
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some((count, mut next)) = length_at(buf, pos + 1)? else {
                return Ok(None);
            };
            if count < 0 {
                if ty == b'*' && count == -1 {
                    return Ok(Some(next)); // RESP2 null array `*-1`
                }
                return Err(ProtocolError(format!("bad aggregate length {count}")));
            }
            let items = if ty == b'%' || ty == b'|' {
                count as u64 * 2
            } else {
                count as u64
            };
            for _ in 0..items {
                match skip_value(buf, next, depth + 1)? {
                    Some(n) => next = n,
                    None => return Ok(None),
                }
            }
            if ty == b'|' {
                // An attribute is followed by the value it describes.
                return skip_value(buf, next, depth + 1);
            }
            Ok(Some(next))
        }
        other => Err(ProtocolError(format!(
            "unexpected type byte 0x{other:02x} ({:?})",
            other as char
        ))),
    }
}

/// Finds the line starting at `start` that ends in CRLF. Returns the line (without CRLF) and
/// the offset after the CRLF, or `None` if the CRLF has not arrived yet.
fn line_at(buf: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(start..)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    // A bare LF is tolerated; the CR, when present, is not part of the line.
    let line = if nl > 0 && rest[nl - 1] == b'\r' {
        &rest[..nl - 1]
    } else {
        &rest[..nl]
    };
    Some((line, start + nl + 1))
}

/// Reads the decimal length line of a bulk or aggregate.
fn length_at(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some((line, next)) = line_at(buf, start) else {
        // Fail fast on garbage instead of waiting forever for a newline that will not come.
        if let Some(rest) = buf.get(start..) {
            if rest.len() > 20
                || rest
                    .iter()
                    .any(|&b| !(b.is_ascii_digit() || b == b'-' || b == b'\r'))
            {
                return Err(ProtocolError("malformed length line".into()));
            }
        }
        return Ok(None);
    };
    let n = parse_i64(line).ok_or_else(|| {
        ProtocolError(format!(
            "bad length line {:?}",
            String::from_utf8_lossy(line)
        ))
    })?;
    if n > MAX_BULK {
        return Err(ProtocolError(format!("length {n} too large")));
    }
    Ok(Some((n, next)))
}

/// Checks that `len` body bytes plus CRLF are present at `body`; returns the offset after them.
fn bulk_end(buf: &[u8], body: usize, len: usize) -> Result<Option<usize>, ProtocolError> {
    let end = body + len + 2;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(ProtocolError("bulk string not followed by CRLF".into()));
    }
    Ok(Some(end))
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as i64;
    }
    Some(if neg { -n } else { n })
}

/// Appends `args` to `out` as a RESP array of bulk strings (the request form every server reads).
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(out, arg);
    }
}

/// Appends one bulk string `$<len>\r\n<bytes>\r\n`.
pub fn encode_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    push_decimal(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without allocating.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test expects to be framed: `None` for a value, `Some(text)` for an error.
    type Expect = Option<&'static [u8]>;

    /// A pipelined stream covering every reply shape, with what each reply should frame as.
    fn sample_stream() -> (Vec<u8>, Vec<Expect>) {
        let parts: &[(&[u8], Expect)] = &[
            (b"+OK\r\n", None),
            (
                b"-ERR unknown command 'FOO'\r\n",
                Some(b"ERR unknown command 'FOO'"),
            ),
            (b":12345\r\n", None),
            (b":-7\r\n", None),
            (b"$5\r\nhello\r\n", None),
            (b"$0\r\n\r\n", None),
            (b"$-1\r\n", None),
            (b"_\r\n", None),
            (b"*-1\r\n", None),
            (b"*0\r\n", None),
            (b"$12\r\nbin\r\n\x00ary\r\nx\r\n", None), // CRLF inside a bulk payload
            (b"*3\r\n$3\r\nfoo\r\n$-1\r\n:1\r\n", None),
            (b"*2\r\n*2\r\n+a\r\n+b\r\n*1\r\n-ERR nested\r\n", None), // nested error is a value
            (b"%2\r\n+ops\r\n:10\r\n+keys\r\n_\r\n", None),
            (b"~2\r\n+x\r\n+y\r\n", None),
            (b",3.14\r\n", None),
            (b"#t\r\n", None),
            (b"(3492890328409238509324850943850943825024385\r\n", None),
            (b"=15\r\ntxt:Some string\r\n", None),
            (
                b"!21\r\nSYNTAX invalid syntax\r\n",
                Some(b"SYNTAX invalid syntax"),
            ),
            (b"|1\r\n+ttl\r\n:3600\r\n+OK\r\n", None), // attribute then its reply
            (
                b"|1\r\n+key\r\n*1\r\n:1\r\n-ERR after attribute\r\n",
                Some(b"ERR after attribute"),
            ),
            (
                b"-WRONGPASS invalid username-password pair\r\n",
                Some(b"WRONGPASS invalid username-password pair"),
            ),
            (b"+PONG\r\n", None),
        ];
        let mut stream = Vec::new();
        let mut expect = Vec::new();
        for (bytes, e) in parts {
            stream.extend_from_slice(bytes);
            expect.push(*e);
        }
        (stream, expect)
    }

    /// Feeds `chunks` one after another into a connection-like buffer, framing as it goes.
    fn frame_chunks(chunks: &[&[u8]]) -> Vec<Expect> {
        let mut buf: Vec<u8> = Vec::new();
        let mut start = 0;
        let mut got = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some((n, reply)) = parse_reply(&buf[start..]).expect("valid RESP") {
                assert!(n > 0);
                got.push(match reply {
                    Reply::Value => None,
                    Reply::Push => panic!("no push expected"),
                    Reply::Error(text) => Some(leak(text)),
                });
                start += n;
            }
        }
        assert_eq!(start, buf.len(), "bytes left unframed");
        got
    }

    fn leak(bytes: &[u8]) -> &'static [u8] {
        Box::leak(bytes.to_vec().into_boxed_slice())
    }

    #[test]
    fn frames_whole_pipeline() {
        let (stream, expect) = sample_stream();
        assert_eq!(frame_chunks(&[&stream]), expect);
    }

    #[test]
    fn frames_pipeline_split_at_every_byte() {
        let (stream, expect) = sample_stream();
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(frame_chunks(&[a, b]), expect, "split at byte {cut}");
        }
    }

    #[test]
    fn frames_pipeline_split_at_every_pair_of_bytes() {
        let (stream, expect) = sample_stream();
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let got = frame_chunks(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(got, expect, "split at bytes {i} and {j}");
            }
        }
    }

    #[test]
    fn frames_pipeline_one_byte_at_a_time() {
        let (stream, expect) = sample_stream();
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frame_chunks(&chunks), expect);
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let (stream, _) = sample_stream();
        // Each single reply: all its proper prefixes must ask for more bytes, never mis-frame.
        let mut start = 0;
        while start < stream.len() {
            let (n, _) = parse_reply(&stream[start..]).unwrap().unwrap();
            for cut in 0..n {
                assert_eq!(
                    parse_reply(&stream[start..start + cut]).unwrap(),
                    None,
                    "prefix of {cut} bytes of reply at {start}"
                );
            }
            start += n;
        }
    }

    #[test]
    fn push_is_reported_as_push() {
        let buf = b">2\r\n+invalidate\r\n*1\r\n$3\r\nkey\r\n+OK\r\n";
        let (n, reply) = parse_reply(buf).unwrap().unwrap();
        assert_eq!(reply, Reply::Push);
        assert_eq!(parse_reply(&buf[n..]).unwrap(), Some((5, Reply::Value)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_reply(b"hello\r\n").is_err());
        assert!(parse_reply(b"$abc\r\n").is_err());
        assert!(parse_reply(b"$3\r\nabcde\r\n").is_err());
        assert!(parse_reply(b"$-2\r\n").is_err());
        assert!(parse_reply(b"_x\r\n").is_err());
        assert!(parse_reply(b"*1x").is_err());
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"GET", b"orders", b"k1"]);
        assert_eq!(out, b"*3\r\n$3\r\nGET\r\n$6\r\norders\r\n$2\r\nk1\r\n");
        let mut d = Vec::new();
        push_decimal(&mut d, 0);
        push_decimal(&mut d, 18_446_744_073_709_551_615);
        assert_eq!(d, b"018446744073709551615");
    }
}

//! The replication wire: frames as RESP arrays of bulk strings (the frame kinds are listed in
//! the [module docs](super)), their encoding and a parser that never trusts a length.
//!
//! ```text
//! *<n>\r\n            n elements, 1 to MAX_PARTS
//! $<len>\r\n<bytes>\r\n   each element, len at most MAX_PART
//! ```
//!
//! The parser checks every length against [`MAX_PARTS`] and [`MAX_PART`] before it waits for
//! the bytes, so a damaged or hostile stream is an error, never an allocation of what it
//! claims.

/// Most elements a frame has (`RECORDS` has six).
pub const MAX_PARTS: usize = 8;

/// Longest element: one pass's records of one partition. A pass is bounded by what its
/// requests carried (at most a few `max-bulk-len` values in practice, one MSET of
/// `max-args` arguments at worst); 4 GiB is past any of those and still checked arithmetic.
pub const MAX_PART: u64 = 4 << 30;

/// Appends a frame of `parts` to `out`.
pub fn encode(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(parts.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(part.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// A number as a frame element.
pub fn num(n: u64) -> itoa::Buffer {
    let mut b = itoa::Buffer::new();
    b.format(n);
    b
}

/// Appends a frame whose elements are words and numbers and, last, `tail`.
pub fn encode_with(out: &mut Vec<u8>, kind: &[u8], numbers: &[u64], tail: Option<&[u8]>) {
    let mut bufs: Vec<itoa::Buffer> = Vec::with_capacity(numbers.len());
    for _ in numbers {
        bufs.push(itoa::Buffer::new());
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(numbers.len() + 2);
    parts.push(kind);
    for (b, n) in bufs.iter_mut().zip(numbers) {
        parts.push(b.format(*n).as_bytes());
    }
    if let Some(tail) = tail {
        parts.push(tail);
    }
    encode(out, &parts);
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame, and how many bytes it took.
    Frame(Vec<&'a [u8]>, usize),
    /// Not all of it yet.
    Incomplete,
}

/// Reads a `\r\n`-terminated decimal after a one-byte marker at `at`; `Ok(None)` when the
/// line is not complete yet.
fn line_number(buf: &[u8], at: usize, marker: u8) -> Result<Option<(u64, usize)>, String> {
    let Some(&first) = buf.get(at) else {
        return Ok(None);
    };
    if first != marker {
        return Err(format!(
            "expected '{}' at byte {at}, got {:?}",
            marker as char, first as char
        ));
    }
    let mut n: u64 = 0;
    let mut i = at + 1;
    // 20 digits is more than any u64 needs: a longer line is damage.
    while i < buf.len() && i - at <= 21 {
        match buf[i] {
            b'\r' => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') if i > at + 1 => Ok(Some((n, i + 2))),
                    _ => Err(format!("bad line end at byte {i}")),
                }
            }
            d @ b'0'..=b'9' => {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d - b'0')))
                    .ok_or("number too large")?;
            }
            other => return Err(format!("expected a digit, got {:?}", other as char)),
        }
        i += 1;
    }
    if i - at > 21 {
        return Err("number too long".into());
    }
    Ok(None)
}

/// Parses the frame at the start of `buf`. `Err`: the stream is damaged (the link is
/// dropped and synced again).
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, String> {
    let Some((count, mut at)) = line_number(buf, 0, b'*')? else {
        return Ok(Parsed::Incomplete);
    };
    if count == 0 || count as usize > MAX_PARTS {
        return Err(format!("a frame of {count} elements (1 to {MAX_PARTS})"));
    }
    let mut parts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let Some((len, start)) = line_number(buf, at, b'$')? else {
            return Ok(Parsed::Incomplete);
        };
        if len > MAX_PART {
            return Err(format!("an element of {len} bytes (at most {MAX_PART})"));
        }
        let end = start + len as usize;
        let Some(rest) = buf.get(end..end + 2) else {
            return Ok(Parsed::Incomplete);
        };
        if rest != b"\r\n" {
            return Err(format!("element not followed by CRLF at byte {end}"));
        }
        parts.push(&buf[start..end]);
        at = end + 2;
    }
    Ok(Parsed::Frame(parts, at))
}

/// A decimal element.
pub fn parse_num(part: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(part)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("expected a number, got {:?}", String::from_utf8_lossy(part)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_cut_is_incomplete() {
        let mut buf = Vec::new();
        encode_with(
            &mut buf,
            b"RECORDS",
            &[1, 200, 7, 123456],
            Some(b"\x00\r\nbin"),
        );
        encode(&mut buf, &[b"PING"]);
        let Parsed::Frame(parts, used) = parse(&buf).unwrap() else {
            panic!()
        };
        assert_eq!(
            parts,
            vec![
                &b"RECORDS"[..],
                b"1",
                b"200",
                b"7",
                b"123456",
                b"\x00\r\nbin"
            ]
        );
        assert_eq!(
            parse(&buf[used..]).unwrap(),
            Parsed::Frame(vec![b"PING"], 14)
        );
        for cut in 0..used {
            assert_eq!(parse(&buf[..cut]).unwrap(), Parsed::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn damage_is_an_error_not_an_allocation() {
        for bad in [
            &b"+OK\r\n"[..],
            b"*0\r\n",
            b"*9\r\n",
            b"*1\r\n$99999999999\r\n",
            b"*1\r\n$3\r\nabcXY",
            b"*1\r\n$x\r\n",
            b"*1\r\n$\r\n",
            b"*123456789012345678901234\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_num(b"42").unwrap(), 42);
        assert!(parse_num(b"-1").is_err());
    }
}

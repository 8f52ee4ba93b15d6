//! The log record and file header: the only bytes GoKV writes to disk besides the catalog.
//!
//! # Record format
//! Every log segment and snapshot is a [`FileHeader`] followed by records, back to back:
//!
//! ```text
//! offset  size  field
//! 0       4     len: u32 LE, bytes after this 8-byte header (kind + body), at least 1
//! 4       4     crc: u32 LE, CRC32C (Castagnoli) of len (4 bytes LE) ++ kind ++ body
//! 8       1     kind
//! 9       ...   body, by kind:
//!               1 SET_STR  key_len: u32 LE, key, value (the rest of the record)
//!               2 SET_INT  key_len: u32 LE, key, value: i64 LE
//!               3 DEL      key_len: u32 LE, key
//!               4 END      count: u64 LE (snapshot trailer: records before it)
//! ```
//!
//! Records are **physical and idempotent**: they say what a key *is* after the write, never
//! how it got there (`INCR` is logged as the `SET_INT` of its result; `MSET` as one `SET` per
//! pair), so replaying a record twice, or replaying a fuzzy snapshot followed by the log
//! segment that started with it, gives the same table. The CRC covers the length, so a
//! damaged length is caught like damaged data. The partition a record belongs to is in the
//! file header (one log per partition), not repeated in every record.
//!
//! # Decoding
//! [`decode`] never trusts a length: it checks every length against the bytes it has before
//! slicing, and says [`Decoded::Incomplete`] (read more, or: the file ends mid-record) or
//! [`Decoded::Damaged`] (checksum or structure wrong) instead of panicking.

/// Bytes before a record's kind: length and checksum.
pub const RECORD_HEADER: usize = 8;

const KIND_SET_STR: u8 = 1;
const KIND_SET_INT: u8 = 2;
const KIND_DEL: u8 = 3;
const KIND_END: u8 = 4;

/// One record, borrowing its key and value from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    SetStr { key: &'a [u8], value: &'a [u8] },
    SetInt { key: &'a [u8], value: i64 },
    Del { key: &'a [u8] },
    End { count: u64 },
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, valid record of `len` bytes (header included).
    Record(Record<'a>, usize),
    /// The buffer holds the first bytes of a record that needs `need` bytes in all.
    Incomplete { need: usize },
    /// Not a valid record: bad checksum, zero length, unknown kind, or a body that does not
    /// parse.
    Damaged(&'static str),
}

/// Appends `record` to `out`. Panics never; a record longer than `u32::MAX` cannot be built
/// from a request (bulk strings are limited far below that by the configuration).
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER]);
    match *record {
        Record::SetStr { key, value } => {
            out.push(KIND_SET_STR);
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        Record::SetInt { key, value } => {
            out.push(KIND_SET_INT);
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&value.to_le_bytes());
        }
        Record::Del { key } => {
            out.push(KIND_DEL);
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
        }
        Record::End { count } => {
            out.push(KIND_END);
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
    let len = (out.len() - start - RECORD_HEADER) as u32;
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &out[start + RECORD_HEADER..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(header) = buf.get(..RECORD_HEADER) else {
        return Decoded::Incomplete {
            need: RECORD_HEADER,
        };
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        return Decoded::Damaged("zero record length");
    }
    let total = RECORD_HEADER + len as usize;
    let Some(payload) = buf.get(RECORD_HEADER..total) else {
        return Decoded::Incomplete { need: total };
    };
    let actual = crc32c::crc32c_append(crc32c::crc32c(&header[..4]), payload);
    if actual != crc {
        return Decoded::Damaged("checksum mismatch");
    }
    match parse_body(payload[0], &payload[1..]) {
        Some(record) => Decoded::Record(record, total),
        None => Decoded::Damaged("malformed record body"),
    }
}

fn parse_body(kind: u8, body: &[u8]) -> Option<Record<'_>> {
    let keyed = |body: &[u8]| -> Option<(usize, usize)> {
        let key_len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
        let key_end = 4usize.checked_add(key_len)?;
        (key_end <= body.len()).then_some((4, key_end))
    };
    match kind {
        KIND_SET_STR => {
            let (start, end) = keyed(body)?;
            Some(Record::SetStr {
                key: &body[start..end],
                value: &body[end..],
            })
        }
        KIND_SET_INT => {
            let (start, end) = keyed(body)?;
            let value = i64::from_le_bytes(body[end..].try_into().ok()?);
            Some(Record::SetInt {
                key: &body[start..end],
                value,
            })
        }
        KIND_DEL => {
            let (start, end) = keyed(body)?;
            (end == body.len()).then_some(Record::Del {
                key: &body[start..end],
            })
        }
        KIND_END => Some(Record::End {
            count: u64::from_le_bytes(body.try_into().ok()?),
        }),
        _ => None,
    }
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A log segment: the writes to a partition since its segment began.
    Segment,
    /// A snapshot: the partition's keys when the segment of the same number began (fuzzy).
    Snapshot,
}

/// The 32 bytes every log segment and snapshot starts with.
///
/// ```text
/// offset  size  field
/// 0       8     magic: "GOKVLOG" or "GOKVSNP", then the format version byte (1)
/// 8       8     partition id: u64 LE (the catalog's id, never reused for another partition)
/// 16      8     seq: u64 LE, the segment number (a snapshot takes its segment's number)
/// 24      4     hint: u32 LE, expected record count (snapshots; 0 when unknown)
/// 28      4     crc: u32 LE, CRC32C of bytes 0..28
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    pub partition: u64,
    pub seq: u64,
    pub hint: u32,
}

pub const FILE_HEADER: usize = 32;
const MAGIC_SEGMENT: &[u8; 8] = b"GOKVLOG\x01";
const MAGIC_SNAPSHOT: &[u8; 8] = b"GOKVSNP\x01";

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER] {
        let mut out = [0u8; FILE_HEADER];
        out[..8].copy_from_slice(match self.kind {
            FileKind::Segment => MAGIC_SEGMENT,
            FileKind::Snapshot => MAGIC_SNAPSHOT,
        });
        out[8..16].copy_from_slice(&self.partition.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..28].copy_from_slice(&self.hint.to_le_bytes());
        let crc = crc32c::crc32c(&out[..28]);
        out[28..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a header; `None` when it is short, damaged or not ours.
    pub fn decode(bytes: &[u8]) -> Option<FileHeader> {
        let b = bytes.get(..FILE_HEADER)?;
        let crc = u32::from_le_bytes(b[28..32].try_into().ok()?);
        if crc32c::crc32c(&b[..28]) != crc {
            return None;
        }
        let kind = match &b[..8] {
            m if m == MAGIC_SEGMENT => FileKind::Segment,
            m if m == MAGIC_SNAPSHOT => FileKind::Snapshot,
            _ => return None,
        };
        Some(FileHeader {
            kind,
            partition: u64::from_le_bytes(b[8..16].try_into().ok()?),
            seq: u64::from_le_bytes(b[16..24].try_into().ok()?),
            hint: u32::from_le_bytes(b[24..28].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Record<'static>> {
        vec![
            Record::SetStr {
                key: b"k",
                value: b"some value",
            },
            Record::SetStr {
                key: b"",
                value: b"",
            },
            Record::SetInt {
                key: b"counter",
                value: -42,
            },
            Record::Del { key: b"gone" },
            Record::End { count: 7 },
        ]
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for r in all() {
            encode(&r, &mut buf);
        }
        let mut at = 0;
        for r in all() {
            match decode(&buf[at..]) {
                Decoded::Record(got, len) => {
                    assert_eq!(got, r);
                    at += len;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn every_cut_is_incomplete_and_every_flip_is_damaged() {
        let mut buf = Vec::new();
        encode(
            &Record::SetStr {
                key: b"key",
                value: b"value",
            },
            &mut buf,
        );
        for cut in 0..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Decoded::Incomplete { .. }),
                "cut {cut}"
            );
        }
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                // A flipped length bit may also make the record look longer than the buffer.
                assert!(
                    !matches!(decode(&b), Decoded::Record(..)),
                    "flip byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = FileHeader {
            kind: FileKind::Snapshot,
            partition: 9,
            seq: 3,
            hint: 100,
        };
        let bytes = h.encode();
        assert_eq!(FileHeader::decode(&bytes), Some(h));
        let mut bad = bytes;
        bad[10] ^= 1;
        assert_eq!(FileHeader::decode(&bad), None);
        assert_eq!(FileHeader::decode(&bytes[..31]), None);
    }
}

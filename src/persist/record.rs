//! The log record and file header: the only bytes GoKV writes to disk besides the catalog.
//!
//! # Record format
//! Every log segment and snapshot is a [`FileHeader`] (a version-2 segment: also two
//! [`Checkpoint`] slots, 64 bytes in all) followed by records, back to back:
//!
//! ```text
//! offset  size  field
//! 0       4     len: u32 LE, bytes after this 8-byte header (kind + body), at least 1
//! 4       4     crc: u32 LE, CRC32C (Castagnoli) of len (4 bytes LE) ++ kind ++ body
//! 8       1     kind
//! 9       ...   body, by kind:
//!               1 SET_STR     key_len: u32 LE, key, value (the rest of the record)
//!               2 SET_INT     key_len: u32 LE, key, value: i64 LE
//!               3 DEL         key_len: u32 LE, key
//!               4 END         count: u64 LE (snapshot trailer: records before it)
//!               5 SET_STR_AT  key_len: u32 LE, key, deadline: u64 LE, value (the rest)
//!               6 SET_INT_AT  key_len: u32 LE, key, deadline: u64 LE, value: i64 LE
//!               7 DEADLINE    key_len: u32 LE, key, deadline: u64 LE (0: none)
//!               8 CLEAR       (no body: every key of the partition is gone)
//! ```
//!
//! A deadline is an absolute unix time in milliseconds, never a duration, so that replaying a
//! record later never extends a key's life; replay drops a key whose deadline has passed.
//! Kinds 5 to 8 came with deadlines: a file that holds them cannot be read by a release
//! before that (reading older files is always supported).
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

/// The smallest record a snapshot holds besides its END: a `SET_STR` of an empty key to an
/// empty value (header, kind, key length). Bounds how many records a file of N bytes can
/// hold, whatever its header claims.
pub const MIN_RECORD: usize = RECORD_HEADER + 1 + 4;

const KIND_SET_STR: u8 = 1;
const KIND_SET_INT: u8 = 2;
const KIND_DEL: u8 = 3;
const KIND_END: u8 = 4;
const KIND_SET_STR_AT: u8 = 5;
const KIND_SET_INT_AT: u8 = 6;
const KIND_DEADLINE: u8 = 7;
const KIND_CLEAR: u8 = 8;

/// One record, borrowing its key and value from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// The key holds this string, with this deadline (unix ms) or none.
    SetStr {
        key: &'a [u8],
        value: &'a [u8],
        deadline: Option<u64>,
    },
    /// The key holds this integer, with this deadline or none.
    SetInt {
        key: &'a [u8],
        value: i64,
        deadline: Option<u64>,
    },
    Del {
        key: &'a [u8],
    },
    /// The key, if present, has this deadline now (`None`: none).
    Deadline {
        key: &'a [u8],
        deadline: Option<u64>,
    },
    /// Every key is gone (FLUSH PARTITION).
    Clear,
    End {
        count: u64,
    },
}

impl<'a> Record<'a> {
    /// The record that sets `key` to `value` with `deadline`: what a snapshot holds for each
    /// key, and what a replica's full sync sends.
    pub fn set(key: &'a [u8], value: crate::store::ValueRef<'a>, deadline: Option<u64>) -> Self {
        match value {
            crate::store::ValueRef::Int(value) => Record::SetInt {
                key,
                value,
                deadline,
            },
            crate::store::ValueRef::Str(value) => Record::SetStr {
                key,
                value,
                deadline,
            },
        }
    }
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
    let keyed = |out: &mut Vec<u8>, kind: u8, key: &[u8]| {
        out.push(kind);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    };
    match *record {
        Record::SetStr {
            key,
            value,
            deadline,
        } => {
            match deadline {
                None => keyed(out, KIND_SET_STR, key),
                Some(ms) => {
                    keyed(out, KIND_SET_STR_AT, key);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
            out.extend_from_slice(value);
        }
        Record::SetInt {
            key,
            value,
            deadline,
        } => {
            match deadline {
                None => keyed(out, KIND_SET_INT, key),
                Some(ms) => {
                    keyed(out, KIND_SET_INT_AT, key);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
            out.extend_from_slice(&value.to_le_bytes());
        }
        Record::Del { key } => keyed(out, KIND_DEL, key),
        Record::Deadline { key, deadline } => {
            keyed(out, KIND_DEADLINE, key);
            out.extend_from_slice(&deadline.unwrap_or(0).to_le_bytes());
        }
        Record::Clear => out.push(KIND_CLEAR),
        Record::End { count } => {
            out.push(KIND_END);
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
    let len = (out.len() - start - RECORD_HEADER) as u32;
    let crc = record_crc(len, &out[start + RECORD_HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record's checksum: CRC32C of `len` (4 bytes LE) ++ `payload` (kind and body).
///
/// Every write a replica follows is checksummed once on the primary (its record is made once,
/// for the log and the stream alike) and once on the replica, so this is on the hot path of
/// both: it was 4-5% of the primary's CPU and ~10% of the replica's under SET -P 16. The
/// `crc32c` crate's hardware path is built for long buffers: it aligns its input a byte at a
/// time and takes the length's 4 bytes one by one, each a dependent 3-cycle instruction, which
/// for a record of a few dozen bytes costs more than the 8-byte steps themselves. Short
/// payloads here go 8 bytes at a time from wherever they start (x86 loads unaligned words at
/// full speed), the length as one 4-byte step; the value is the same CRC32C, so nothing on
/// disk or on the wire changes. Long payloads (past [`SHORT_CRC`]) keep the crate's 3-way
/// interleaved path, which is faster there.
#[inline]
pub fn record_crc(len: u32, payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if payload.len() <= SHORT_CRC && std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2, checked just above (std caches the answer).
        return unsafe { short_crc_sse42(len, payload) };
    }
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// Payloads up to this many bytes take the word-at-a-time path of [`record_crc`].
const SHORT_CRC: usize = 256;

/// [`record_crc`] with the SSE4.2 `crc32` instruction, 8 bytes per step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn short_crc_sse42(len: u32, payload: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(_mm_crc32_u32(!0, len));
    let mut words = payload.chunks_exact(8);
    for word in &mut words {
        let word: [u8; 8] = word.try_into().expect("chunks of 8");
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(word));
    }
    let mut crc = crc as u32;
    let mut rest = words.remainder();
    if let Some((word, tail)) = rest.split_first_chunk::<4>() {
        crc = _mm_crc32_u32(crc, u32::from_le_bytes(*word));
        rest = tail;
    }
    for &byte in rest {
        crc = _mm_crc32_u8(crc, byte);
    }
    !crc
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
    if record_crc(len, payload) != crc {
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
    // The deadline after the key, and where the rest starts.
    let deadline = |body: &[u8], at: usize| -> Option<(u64, usize)> {
        let raw = body.get(at..at.checked_add(8)?)?;
        Some((u64::from_le_bytes(raw.try_into().ok()?), at + 8))
    };
    match kind {
        KIND_SET_STR => {
            let (start, end) = keyed(body)?;
            Some(Record::SetStr {
                key: &body[start..end],
                value: &body[end..],
                deadline: None,
            })
        }
        KIND_SET_INT => {
            let (start, end) = keyed(body)?;
            let value = i64::from_le_bytes(body[end..].try_into().ok()?);
            Some(Record::SetInt {
                key: &body[start..end],
                value,
                deadline: None,
            })
        }
        KIND_SET_STR_AT => {
            let (start, end) = keyed(body)?;
            let (ms, rest) = deadline(body, end)?;
            Some(Record::SetStr {
                key: &body[start..end],
                value: &body[rest..],
                deadline: Some(ms),
            })
        }
        KIND_SET_INT_AT => {
            let (start, end) = keyed(body)?;
            let (ms, rest) = deadline(body, end)?;
            let value = i64::from_le_bytes(body[rest..].try_into().ok()?);
            Some(Record::SetInt {
                key: &body[start..end],
                value,
                deadline: Some(ms),
            })
        }
        KIND_DEADLINE => {
            let (start, end) = keyed(body)?;
            let (ms, rest) = deadline(body, end)?;
            (rest == body.len()).then_some(Record::Deadline {
                key: &body[start..end],
                deadline: (ms != 0).then_some(ms),
            })
        }
        KIND_CLEAR => body.is_empty().then_some(Record::Clear),
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
/// 0       8     magic: "GOKVLOG" or "GOKVSNP", then the format version byte
/// 8       8     partition id: u64 LE (the catalog's id, never reused for another partition)
/// 16      8     seq: u64 LE, the segment number (a snapshot takes its segment's number)
/// 24      4     hint: u32 LE, expected record count (snapshots; 0 when unknown)
/// 28      4     crc: u32 LE, CRC32C of bytes 0..28
/// ```
///
/// # Versions
/// - Snapshots: version 1 only.
/// - Segments, version 1 (the first release): records start at byte 32.
/// - Segments, version 2: two [`Checkpoint`] slots follow, at bytes 32 and 48
///   ([`CHECKPOINT_SLOTS`]); records start at byte 64 ([`SEGMENT_HEADER`]). Recovery reads
///   both versions; the log only writes version 2 (a version-1 segment found as the last one
///   at startup is closed and a version-2 segment started after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    pub version: u8,
    pub partition: u64,
    pub seq: u64,
    pub hint: u32,
}

/// The identity header every file starts with.
pub const FILE_HEADER: usize = 32;
/// A version-2 segment's header: the identity header and two checkpoint slots.
pub const SEGMENT_HEADER: usize = 64;
/// Where a version-2 segment's checkpoint slots are.
pub const CHECKPOINT_SLOTS: [usize; 2] = [32, 48];
/// The segment version the log writes.
pub const SEGMENT_VERSION: u8 = 2;
const MAGIC_SEGMENT: &[u8; 7] = b"GOKVLOG";
const MAGIC_SNAPSHOT: &[u8; 7] = b"GOKVSNP";

impl FileHeader {
    /// A new segment's header, in the version the log writes.
    pub fn segment(partition: u64, seq: u64) -> FileHeader {
        FileHeader {
            kind: FileKind::Segment,
            version: SEGMENT_VERSION,
            partition,
            seq,
            hint: 0,
        }
    }

    /// A snapshot's header.
    pub fn snapshot(partition: u64, seq: u64, hint: u32) -> FileHeader {
        FileHeader {
            kind: FileKind::Snapshot,
            version: 1,
            partition,
            seq,
            hint,
        }
    }

    /// Bytes before the first record: the identity header, and the checkpoint slots of a
    /// version-2 segment.
    pub fn header_len(&self) -> usize {
        if self.has_checkpoints() {
            SEGMENT_HEADER
        } else {
            FILE_HEADER
        }
    }

    /// A version-2 segment: it records its durable length.
    pub fn has_checkpoints(&self) -> bool {
        self.kind == FileKind::Segment && self.version >= 2
    }

    pub fn encode(&self) -> [u8; FILE_HEADER] {
        let mut out = [0u8; FILE_HEADER];
        out[..7].copy_from_slice(match self.kind {
            FileKind::Segment => MAGIC_SEGMENT,
            FileKind::Snapshot => MAGIC_SNAPSHOT,
        });
        out[7] = self.version;
        out[8..16].copy_from_slice(&self.partition.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..28].copy_from_slice(&self.hint.to_le_bytes());
        let crc = crc32c::crc32c(&out[..28]);
        out[28..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a header; `None` when it is short, damaged, not ours, or of a version this
    /// build does not know.
    pub fn decode(bytes: &[u8]) -> Option<FileHeader> {
        let b = bytes.get(..FILE_HEADER)?;
        let crc = u32::from_le_bytes(b[28..32].try_into().ok()?);
        if crc32c::crc32c(&b[..28]) != crc {
            return None;
        }
        let (kind, version) = match (&b[..7], b[7]) {
            (m, v @ (1 | 2)) if m == MAGIC_SEGMENT => (FileKind::Segment, v),
            (m, 1) if m == MAGIC_SNAPSHOT => (FileKind::Snapshot, 1),
            _ => return None,
        };
        Some(FileHeader {
            kind,
            version,
            partition: u64::from_le_bytes(b[8..16].try_into().ok()?),
            seq: u64::from_le_bytes(b[16..24].try_into().ok()?),
            hint: u32::from_le_bytes(b[24..28].try_into().ok()?),
        })
    }
}

/// What a version-2 segment knows about itself: how many of its bytes an fsync that
/// *completed* covered, and whether the next segment was created after it.
///
/// ```text
/// offset  size  field (each of the two 16-byte slots)
/// 0       8     durable: u64 LE, bytes of the file (header included) known to be on disk
/// 8       4     flags: u32 LE, bit 0 = sealed (segment seq + 1 exists; this one is full)
/// 12      4     crc: u32 LE, CRC32C of the segment's seq (8 bytes LE) ++ bytes 0..12
/// ```
///
/// The log rewrites one slot in place just before an fsync it does anyway, with the length
/// the *previous* fsync made durable (never the length this fsync is about to cover: the
/// slot could reach the disk before the data). Slots alternate, so a slot torn by a crash
/// leaves the other, older one; recovery takes the valid slot with the larger length. The seq
/// in the checksum keeps a slot copied from another segment from passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub durable: u64,
    pub sealed: bool,
}

impl Checkpoint {
    pub fn encode(&self, seq: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.durable.to_le_bytes());
        out[8..12].copy_from_slice(&u32::from(self.sealed).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), &out[..12]);
        out[12..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The slot at `bytes`, if its checksum holds.
    pub fn decode(seq: u64, bytes: &[u8]) -> Option<Checkpoint> {
        let b = bytes.get(..16)?;
        let crc = u32::from_le_bytes(b[12..16].try_into().ok()?);
        if crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), &b[..12]) != crc {
            return None;
        }
        let flags = u32::from_le_bytes(b[8..12].try_into().ok()?);
        Some(Checkpoint {
            durable: u64::from_le_bytes(b[..8].try_into().ok()?),
            sealed: flags & 1 != 0,
        })
    }

    /// The newer of a version-2 header's two slots (`header` is its first
    /// [`SEGMENT_HEADER`] bytes); `None` when neither is valid.
    pub fn newest(seq: u64, header: &[u8]) -> Option<Checkpoint> {
        CHECKPOINT_SLOTS
            .iter()
            .filter_map(|&at| Checkpoint::decode(seq, header.get(at..)?))
            .max_by_key(|c| (c.durable, c.sealed))
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
                deadline: None,
            },
            Record::SetStr {
                key: b"",
                value: b"",
                deadline: None,
            },
            Record::SetInt {
                key: b"counter",
                value: -42,
                deadline: None,
            },
            Record::SetStr {
                key: b"timed",
                value: b"v",
                deadline: Some(1_700_000_000_123),
            },
            Record::SetInt {
                key: b"timed counter",
                value: 7,
                deadline: Some(u64::MAX),
            },
            Record::Deadline {
                key: b"k",
                deadline: Some(1_700_000_000_000),
            },
            Record::Deadline {
                key: b"k",
                deadline: None,
            },
            Record::Clear,
            Record::Del { key: b"gone" },
            Record::End { count: 7 },
        ]
    }

    /// The short path of `record_crc` is CRC32C, as the crate computes it, for every payload
    /// length around its word steps and its cut-over, from every alignment: records written
    /// before it (and by a build without SSE4.2) still check, and the ones it writes check
    /// there.
    #[test]
    fn the_record_checksum_is_crc32c_of_length_and_payload() {
        let bytes: Vec<u8> = (0..SHORT_CRC as u32 + 80)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for len in 0..=SHORT_CRC + 64 {
                let payload = &bytes[start..start + len];
                let n = (len as u32).wrapping_mul(0x9e37_79b9);
                let expected = crc32c::crc32c_append(crc32c::crc32c(&n.to_le_bytes()), payload);
                assert_eq!(record_crc(n, payload), expected, "start {start}, len {len}");
            }
        }
        // A known value: CRC32C("123456789") is e3069283.
        let (len, rest) = b"123456789".split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap());
        assert_eq!(record_crc(len, rest), 0xe306_9283);
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
                deadline: Some(1_700_000_000_000),
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
        let h = FileHeader::snapshot(9, 3, 100);
        let bytes = h.encode();
        assert_eq!(FileHeader::decode(&bytes), Some(h));
        let mut bad = bytes;
        bad[10] ^= 1;
        assert_eq!(FileHeader::decode(&bad), None);
        assert_eq!(FileHeader::decode(&bytes[..31]), None);
        let s = FileHeader::segment(9, 3);
        assert_eq!(FileHeader::decode(&s.encode()), Some(s));
        assert_eq!(s.header_len(), SEGMENT_HEADER);
        // A version this build does not know is not ours.
        let mut future = s.encode();
        future[7] = 3;
        let crc = crc32c::crc32c(&future[..28]);
        future[28..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(FileHeader::decode(&future), None);
    }

    /// The first release's segments (version 1, records at byte 32) still decode.
    #[test]
    fn version_one_segment_headers_decode() {
        let mut v1 = [0u8; FILE_HEADER];
        v1[..8].copy_from_slice(b"GOKVLOG\x01");
        v1[8..16].copy_from_slice(&5u64.to_le_bytes());
        v1[16..24].copy_from_slice(&2u64.to_le_bytes());
        let crc = crc32c::crc32c(&v1[..28]);
        v1[28..].copy_from_slice(&crc.to_le_bytes());
        let h = FileHeader::decode(&v1).unwrap();
        assert_eq!(
            (h.kind, h.version, h.partition, h.seq),
            (FileKind::Segment, 1, 5, 2)
        );
        assert!(!h.has_checkpoints());
        assert_eq!(h.header_len(), FILE_HEADER);
    }

    #[test]
    fn checkpoints_take_the_newest_valid_slot() {
        let mut header = [0u8; SEGMENT_HEADER];
        let a = Checkpoint {
            durable: 100,
            sealed: false,
        };
        let b = Checkpoint {
            durable: 250,
            sealed: true,
        };
        header[32..48].copy_from_slice(&a.encode(7));
        assert_eq!(Checkpoint::newest(7, &header), Some(a));
        header[48..64].copy_from_slice(&b.encode(7));
        assert_eq!(Checkpoint::newest(7, &header), Some(b));
        // Torn slot: the other one stands.
        header[50] ^= 1;
        assert_eq!(Checkpoint::newest(7, &header), Some(a));
        // A slot of another segment does not pass.
        assert_eq!(Checkpoint::newest(8, &header), None);
    }
}

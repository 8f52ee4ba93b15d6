//! Where a table's entries live: packed one after another in fixed-size segments.
//!
//! An entry is `[flags: u8][deadline: u64 LE, only with EXPIRES][key_len: varint]
//! [value_len: varint][key][value]`, padded to a multiple of `ALIGN` bytes, and is named by a
//! 37-bit [`Handle`] (segment id and offset). A 16-byte key with a 32-byte value takes 52
//! bytes: no allocator header, no rounding up to an allocator size class, no pointer per entry
//! (the table keeps handles, 6 bytes each).
//!
//! A *deadline* (the unix time in ms after which the key is expired) costs a flag bit and 8
//! bytes, in the entry itself, and only for entries that have one: a key without a deadline
//! pays nothing, and there is no second table of keys with deadlines. The active expiry
//! sweep finds them by walking the segments in order ([`Arena::walk`]): sequential memory,
//! which the CPU prefetches by itself.
//!
//! An entry larger than [`MAX_INLINE`] bytes is *boxed*: its own allocation holds
//! `[key_len: u32 LE][deadline: u64 LE, only with EXPIRES][key][value]`, and the arena keeps
//! an 8-byte stub naming it (its flags carry EXPIRES). A segment therefore never holds more
//! than a few KiB of any one entry, which bounds what compaction copies at once.
//!
//! # Access bits (eviction)
//! A partition with an LRU or LFU eviction policy needs a recency or frequency mark per key
//! (`super::access`). It is a 4-byte field *after the value*, present only when the entry's
//! flags carry `ACCESS`: `[flags][deadline?][key_len][value_len][key][value][access: u32 LE]`
//! (a boxed entry's is in its stub, which grows from 8 to 12 bytes). Why there:
//! - a partition without such a policy writes entries without the flag, so it pays nothing:
//!   no byte, and no instruction on a read, because the field sits behind everything a read
//!   parses (the key and value are where they always were; only the entry's size, which reads
//!   never compute, depends on the flag);
//! - a tracked entry costs exactly 4 bytes more (the padding to [`ALIGN`] is unchanged), the
//!   same as Redis's 24-bit `lru` field rounded to a whole word: 52 -> 56 bytes for a 16-byte
//!   key with a 32-byte value;
//! - it moves with the entry: compaction copies the encoded bytes whole, and a rewrite of the
//!   entry (a new value length, a deadline added) carries it over ([`Arena::access`]).
//!
//! The slot in the table could not hold it (6 bytes, all used by the handle and the hash tag),
//! and a side array indexed by slot would have to follow every backward shift and drain move.
//!
//! # Garbage and compaction
//! Removing an entry, or changing its value's length, marks its bytes dead. A segment whose
//! last live entry goes away is freed at once. Otherwise the dead bytes stay until the owner
//! ([`super::table::Table`]) compacts: when more than a quarter of the arena is dead, it moves
//! the live entries of the emptiest segment to the tail ([`Arena::take_segment`],
//! [`Arena::append_raw`]) and re-points their slots. One segment per write at most: a write
//! never pays for more than one segment's copy (256 KiB).
//!
//! # Spare segment
//! A segment freed (emptied, or compacted away) is kept as the *spare* when the arena has none
//! and holds at least [`SPARE_MIN_USED`] bytes, and becomes the next tail. A partition
//! evicting at its quota frees a segment and starts a new one every few thousand writes:
//! without the spare each new tail was fresh memory from the kernel, 64 page faults to fill
//! (at a quota of 100k keys, 27 faults per 1,000 evicting SETs; with it none). The spare costs
//! at most one segment per arena, and only in arenas of two segments or more; like dead bytes
//! it is not counted in `used_memory` (`super::memory`).
//!
//! # The eviction hand
//! Entries are appended, so a segment's age orders its entries by when they were written.
//! `allkeys-lru` evicts in that order with a second chance (CLOCK; see `super::eviction`):
//! [`Arena::hand`] offers the oldest live entry, segment by segment in the order they became
//! the tail, and the table evicts it or, when it was read since it was written, moves it to
//! the tail ([`Arena::move_to_tail`]) with its mark cleared. The hand's segment empties as the
//! hand goes, and is freed when it is empty: compaction leaves it alone.

use std::collections::VecDeque;

/// Bytes per segment.
pub const SEGMENT_BYTES: usize = 256 * 1024;

/// Entries start on multiples of this; handles count in these units.
const ALIGN: usize = 4;

/// Bits of a handle that hold the offset (in [`ALIGN`] units) inside the segment.
const OFFSET_BITS: u32 = 16;

const _: () = assert!(SEGMENT_BYTES / ALIGN == 1 << OFFSET_BITS);

/// Largest encoded entry kept inline; larger ones are boxed.
pub const MAX_INLINE: usize = 4096;

/// Written bytes an arena must hold before it keeps a spare segment: the spare then adds at
/// most half of that again, in line with the two segments of garbage compaction lets be.
const SPARE_MIN_USED: usize = 2 * SEGMENT_BYTES;

/// Segment ids fit in 21 bits: handles are 37 bits (512 GiB of entries per table), so that a
/// table's slot has room for a probe distance beside the handle (see `super::table`).
const MAX_SEGMENTS: usize = 1 << 21;

/// `flags` bit: the entry was removed or replaced.
const DEAD: u8 = 1;
/// `flags` bit: the bytes live in their own allocation (`boxed`); the stub holds its index.
const BOXED: u8 = 2;
/// `flags` bit: the entry has a deadline (8 bytes after the flags, or after a box's key
/// length).
const EXPIRES: u8 = 4;
/// `flags` bit: the entry has access bits (4 bytes after the value, or after a box's stub).
const ACCESS: u8 = 8;

/// Bytes the access bits take in an entry (see "Access bits" in the module docs).
pub const ACCESS_BYTES: usize = 4;

/// Bytes a deadline takes in an entry.
pub const DEADLINE_BYTES: usize = 8;

/// Bytes of a boxed entry's stub: flags and a `u32` index (padded to [`ALIGN`]); the access
/// bits, when the stub has them, follow.
const STUB: usize = 8;

/// Names an entry: segment id (21 bits) and offset in `ALIGN` units (16 bits).
pub type Handle = u64;

/// Largest handle value + 1.
pub const HANDLE_LIMIT: u64 = 1 << 37;

struct Segment {
    bytes: Box<[u8]>,
    /// Which segment this is, among all that ever had its id: a walk's cursor names a segment
    /// by id and epoch, so that it never resumes at an offset of another segment that reused
    /// the id.
    epoch: u64,
    /// Bytes written (live and dead); entries are appended here.
    used: usize,
    /// Bytes of live entries.
    live: usize,
}

/// A segment taken out of the arena for compaction; walk it with [`TakenSegment::entries`].
pub struct TakenSegment {
    id: usize,
    segment: Segment,
}

/// Where an entry's parts are.
#[derive(Clone, Copy)]
struct Layout {
    flags: u8,
    /// The deadline (inline entries; a boxed one's is in its box).
    deadline: Option<u64>,
    /// Offset of the key inside the segment (inline) or the box (boxed).
    key_start: usize,
    key_len: usize,
    value_len: usize,
    /// Bytes the entry takes in the segment, padding included.
    size: usize,
}

#[inline]
fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

#[inline]
fn write_varint(out: &mut [u8], mut at: usize, mut n: usize) -> usize {
    while n >= 0x80 {
        out[at] = (n as u8) | 0x80;
        n >>= 7;
        at += 1;
    }
    out[at] = n as u8;
    at + 1
}

#[inline]
fn read_varint(bytes: &[u8], at: &mut usize) -> usize {
    // One byte (a length below 128) is nearly every key and small value: no loop for it.
    let first = bytes[*at];
    *at += 1;
    if first < 0x80 {
        return first as usize;
    }
    let mut n = (first & 0x7f) as usize;
    let mut shift = 7;
    loop {
        let b = bytes[*at];
        *at += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            return n;
        }
        shift += 7;
    }
}

#[inline]
fn align(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Bytes an entry would take inline, before padding.
#[inline]
fn encoded_len(key_len: usize, value_len: usize, deadline: Option<u64>, access: bool) -> usize {
    let deadline = if deadline.is_some() {
        DEADLINE_BYTES
    } else {
        0
    };
    let access = if access { ACCESS_BYTES } else { 0 };
    1 + deadline + varint_len(key_len) + varint_len(value_len) + key_len + value_len + access
}

/// The flags' share of an entry's size past its key and value: the access bits.
#[inline(always)]
fn access_len(flags: u8) -> usize {
    if flags & ACCESS != 0 {
        ACCESS_BYTES
    } else {
        0
    }
}

#[inline(always)]
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Reads the entry at `offset` of a segment's bytes.
#[inline(always)]
fn layout_at(bytes: &[u8], offset: usize) -> Layout {
    let flags = bytes[offset];
    if flags & BOXED != 0 {
        return Layout {
            flags,
            deadline: None,
            key_start: 0,
            key_len: 0,
            value_len: 0,
            size: STUB + access_len(flags),
        };
    }
    let mut at = offset + 1;
    let deadline = if flags & EXPIRES != 0 {
        at += DEADLINE_BYTES;
        Some(read_u64(bytes, offset + 1))
    } else {
        None
    };
    let key_len = read_varint(bytes, &mut at);
    let value_len = read_varint(bytes, &mut at);
    Layout {
        flags,
        deadline,
        key_start: at,
        key_len,
        value_len,
        size: align(at - offset + key_len + value_len + access_len(flags)),
    }
}

#[inline]
fn split(handle: Handle) -> (usize, usize) {
    (
        (handle >> OFFSET_BITS) as usize,
        (handle as usize & ((1 << OFFSET_BITS) - 1)) * ALIGN,
    )
}

#[inline]
fn join(id: usize, offset: usize) -> Handle {
    ((id as u64) << OFFSET_BITS) | (offset / ALIGN) as u64
}

/// A boxed entry's key length (the first 4 bytes of its allocation).
#[inline]
fn boxed_key_len(bytes: &[u8]) -> usize {
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(len) as usize
}

/// Where a boxed entry's key starts, and its deadline, given its stub's flags.
#[inline(always)]
fn boxed_parts(flags: u8, bytes: &[u8]) -> (usize, Option<u64>) {
    if flags & EXPIRES != 0 {
        (4 + DEADLINE_BYTES, Some(read_u64(bytes, 4)))
    } else {
        (4, None)
    }
}

/// Where a walk of the arena is: a segment (by id and epoch) and an offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkCursor {
    id: usize,
    epoch: u64,
    offset: usize,
}

/// An entry as a walk sees it.
pub struct Walked<'a> {
    pub handle: Handle,
    pub key: &'a [u8],
    pub deadline: Option<u64>,
}

/// The entries of one table. See the module docs.
#[derive(Default)]
pub struct Arena {
    /// Indexed by segment id; `None` for ids on `free_ids`.
    segments: Vec<Option<Segment>>,
    free_ids: Vec<usize>,
    /// The segment new entries go to.
    tail: Option<usize>,
    /// Sum of the segments' `used`.
    used: usize,
    /// Sum of the segments' `live`.
    live: usize,
    /// Entries larger than [`MAX_INLINE`]; `None` for indexes on `free_boxed`.
    boxed: Vec<Option<Box<[u8]>>>,
    free_boxed: Vec<u32>,
    /// Epoch of the next segment created.
    next_epoch: u64,
    /// The bytes of one segment emptied or compacted away, kept for the next tail (see "Spare
    /// segment" in the module docs).
    spare: Option<Box<[u8]>>,
    /// The segments in the order they became the tail, as (id, epoch): the eviction hand's
    /// way through them. Segments gone since are dropped when the hand reaches them, or when
    /// they are more than half of it.
    order: VecDeque<(usize, u64)>,
    /// The eviction hand: where the next entry [`Arena::hand`] offers is (a cursor like a
    /// walk's, which goes by age rather than by id).
    hand: Option<WalkCursor>,
}

impl Arena {
    /// Stores a new entry and returns its handle; with `access`, the entry carries access bits
    /// holding it (see "Access bits" in the module docs).
    pub fn alloc(
        &mut self,
        key: &[u8],
        value: &[u8],
        deadline: Option<u64>,
        access: Option<u32>,
    ) -> Handle {
        let len = encoded_len(key.len(), value.len(), deadline, access.is_some());
        if len > MAX_INLINE {
            return self.alloc_boxed(key, value, deadline, access);
        }
        let (id, offset) = self.reserve(align(len));
        let bytes = &mut self.segment_mut(id).bytes;
        let mut at = offset + 1;
        bytes[offset] = match deadline {
            Some(ms) => {
                bytes[at..at + DEADLINE_BYTES].copy_from_slice(&ms.to_le_bytes());
                at += DEADLINE_BYTES;
                EXPIRES
            }
            None => 0,
        };
        let at = write_varint(bytes, at, key.len());
        let at = write_varint(bytes, at, value.len());
        bytes[at..at + key.len()].copy_from_slice(key);
        let end = at + key.len() + value.len();
        bytes[at + key.len()..end].copy_from_slice(value);
        if let Some(bits) = access {
            bytes[end..end + ACCESS_BYTES].copy_from_slice(&bits.to_le_bytes());
            bytes[offset] |= ACCESS;
        }
        join(id, offset)
    }

    fn alloc_boxed(
        &mut self,
        key: &[u8],
        value: &[u8],
        deadline: Option<u64>,
        access: Option<u32>,
    ) -> Handle {
        let mut bytes = Vec::with_capacity(4 + DEADLINE_BYTES + key.len() + value.len());
        // Keys are bounded by max-key-len, which the config keeps within u32.
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        if let Some(ms) = deadline {
            bytes.extend_from_slice(&ms.to_le_bytes());
        }
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        let bytes = Some(bytes.into_boxed_slice());
        let index = match self.free_boxed.pop() {
            Some(i) => {
                self.boxed[i as usize] = bytes;
                i
            }
            None => {
                self.boxed.push(bytes);
                (self.boxed.len() - 1) as u32
            }
        };
        let size = STUB + if access.is_some() { ACCESS_BYTES } else { 0 };
        let (id, offset) = self.reserve(size);
        let stub = &mut self.segment_mut(id).bytes[offset..offset + size];
        stub[0] = if deadline.is_some() {
            BOXED | EXPIRES
        } else {
            BOXED
        };
        stub[1..5].copy_from_slice(&index.to_le_bytes());
        if let Some(bits) = access {
            stub[0] |= ACCESS;
            stub[STUB..].copy_from_slice(&bits.to_le_bytes());
        }
        join(id, offset)
    }

    /// Where the entry's access bits are in its segment, if it has them.
    #[inline]
    fn access_at(&self, handle: Handle) -> (usize, Option<usize>) {
        let (id, offset) = split(handle);
        let bytes = &self.segment(id).bytes;
        let flags = bytes[offset];
        if flags & ACCESS == 0 {
            return (id, None);
        }
        if flags & BOXED != 0 {
            return (id, Some(offset + STUB));
        }
        let layout = layout_at(bytes, offset);
        (
            id,
            Some(layout.key_start + layout.key_len + layout.value_len),
        )
    }

    /// The entry's access bits, if it has them.
    #[inline]
    pub fn access(&self, handle: Handle) -> Option<u32> {
        let (id, at) = self.access_at(handle);
        let at = at?;
        let bytes = &self.segment(id).bytes;
        Some(u32::from_le_bytes([
            bytes[at],
            bytes[at + 1],
            bytes[at + 2],
            bytes[at + 3],
        ]))
    }

    /// Replaces the access bits of an entry that has them with `update(old bits)`, in place,
    /// finding them once; false (nothing changed) when it has none.
    #[inline]
    pub fn update_access(&mut self, handle: Handle, update: impl FnOnce(u32) -> u32) -> bool {
        let (id, at) = self.access_at(handle);
        let Some(at) = at else {
            return false;
        };
        let field = &mut self.segment_mut(id).bytes[at..at + ACCESS_BYTES];
        let old = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
        field.copy_from_slice(&update(old).to_le_bytes());
        true
    }

    /// Replaces the access bits of an entry that has them, in place; false (nothing changed)
    /// when it has none.
    #[inline]
    pub fn set_access(&mut self, handle: Handle, bits: u32) -> bool {
        let (id, at) = self.access_at(handle);
        let Some(at) = at else {
            return false;
        };
        self.segment_mut(id).bytes[at..at + ACCESS_BYTES].copy_from_slice(&bits.to_le_bytes());
        true
    }

    /// Room for `size` bytes at the tail: (segment id, offset), counted as used and live.
    fn reserve(&mut self, size: usize) -> (usize, usize) {
        let id = match self.tail {
            Some(id) if self.segment(id).used + size <= SEGMENT_BYTES => id,
            _ => self.new_tail(),
        };
        let segment = self.segment_mut(id);
        let offset = segment.used;
        segment.used += size;
        segment.live += size;
        self.used += size;
        self.live += size;
        (id, offset)
    }

    fn new_tail(&mut self) -> usize {
        // Zeroed memory comes from the kernel untouched: a fresh segment costs RSS as it fills.
        // The spare one's stale bytes are never read: entries are written whole before their
        // handle exists, and every read stays below `used`.
        let bytes = self
            .spare
            .take()
            .unwrap_or_else(|| vec![0u8; SEGMENT_BYTES].into_boxed_slice());
        let epoch = self.next_epoch;
        let segment = Some(Segment {
            bytes,
            epoch,
            used: 0,
            live: 0,
        });
        self.next_epoch += 1;
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.segments[id] = segment;
                id
            }
            None => {
                assert!(
                    self.segments.len() < MAX_SEGMENTS,
                    "a table holds at most 512 GiB of entries"
                );
                self.segments.push(segment);
                self.segments.len() - 1
            }
        };
        self.order.push_back((id, epoch));
        if self.order.len() > 2 * self.segments.len() + 8 {
            let segments = &self.segments;
            self.order
                .retain(|&(id, epoch)| segments[id].as_ref().is_some_and(|s| s.epoch == epoch));
        }
        // A tail left with no live entry (all removed while it filled) is freed now.
        if let Some(old) = self.tail.replace(id) {
            if self.segment(old).live == 0 {
                self.release(old);
            }
        }
        id
    }

    fn release(&mut self, id: usize) {
        if let Some(segment) = self.segments[id].take() {
            self.used -= segment.used;
            self.live -= segment.live;
            self.free_ids.push(id);
            self.keep_spare(segment.bytes);
        }
    }

    /// Keeps a freed segment's bytes for the next tail when there is no spare yet and the
    /// arena is big enough (see "Spare segment" in the module docs); frees them otherwise.
    fn keep_spare(&mut self, bytes: Box<[u8]>) {
        if self.spare.is_none() && self.used >= SPARE_MIN_USED {
            self.spare = Some(bytes);
        }
    }

    #[inline]
    fn segment(&self, id: usize) -> &Segment {
        self.segments[id]
            .as_ref()
            .expect("handle names a live segment")
    }

    #[inline]
    fn segment_mut(&mut self, id: usize) -> &mut Segment {
        self.segments[id]
            .as_mut()
            .expect("handle names a live segment")
    }

    #[inline]
    fn boxed_bytes(&self, stub: &[u8]) -> &[u8] {
        let index = u32::from_le_bytes([stub[1], stub[2], stub[3], stub[4]]);
        self.boxed[index as usize]
            .as_deref()
            .expect("stub names a live box")
    }

    /// The entry's key and value.
    #[inline]
    pub fn get(&self, handle: Handle) -> (&[u8], &[u8]) {
        let (key, value, _) = self.entry(handle);
        (key, value)
    }

    /// The entry's key, value and deadline.
    #[inline(always)]
    pub fn entry(&self, handle: Handle) -> (&[u8], &[u8], Option<u64>) {
        let (id, offset) = split(handle);
        let bytes = &self.segment(id).bytes;
        let layout = layout_at(bytes, offset);
        if layout.flags & BOXED != 0 {
            let boxed = self.boxed_bytes(&bytes[offset..]);
            let key_len = boxed_key_len(boxed);
            let (key_start, deadline) = boxed_parts(layout.flags, boxed);
            let key_end = key_start + key_len;
            return (&boxed[key_start..key_end], &boxed[key_end..], deadline);
        }
        let key_end = layout.key_start + layout.key_len;
        (
            &bytes[layout.key_start..key_end],
            &bytes[key_end..key_end + layout.value_len],
            layout.deadline,
        )
    }

    /// The entry's key, value, deadline and access bits, read in one pass over its header
    /// (an evictor's sample).
    #[inline(always)]
    pub fn entry_with_access(&self, handle: Handle) -> (&[u8], &[u8], Option<u64>, Option<u32>) {
        let (id, offset) = split(handle);
        let bytes = &self.segment(id).bytes;
        let flags = bytes[offset];
        if flags & (BOXED | ACCESS) != ACCESS {
            // Boxed or untracked: the general path.
            let (key, value, deadline) = self.entry(handle);
            return (key, value, deadline, self.access(handle));
        }
        let layout = layout_at(bytes, offset);
        let key_end = layout.key_start + layout.key_len;
        let end = key_end + layout.value_len;
        let bits = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        (
            &bytes[layout.key_start..key_end],
            &bytes[key_end..end],
            layout.deadline,
            Some(bits),
        )
    }

    /// Replaces the deadline of an entry that has one, in place.
    pub fn set_deadline_in_place(&mut self, handle: Handle, deadline: u64) {
        let (id, offset) = split(handle);
        let segment = self.segments[id]
            .as_mut()
            .expect("handle names a live segment");
        let flags = segment.bytes[offset];
        debug_assert!(flags & EXPIRES != 0, "the entry has a deadline to replace");
        let raw = deadline.to_le_bytes();
        if flags & BOXED != 0 {
            let stub = &segment.bytes[offset..];
            let index = u32::from_le_bytes([stub[1], stub[2], stub[3], stub[4]]);
            let boxed = self.boxed[index as usize]
                .as_deref_mut()
                .expect("stub names a live box");
            boxed[4..4 + DEADLINE_BYTES].copy_from_slice(&raw);
        } else {
            segment.bytes[offset + 1..offset + 1 + DEADLINE_BYTES].copy_from_slice(&raw);
        }
    }

    /// The entry's key alone (what draining, backward shifts and compaction rehash): skips a
    /// deadline without reading it.
    #[inline(always)]
    pub fn key(&self, handle: Handle) -> &[u8] {
        let (id, offset) = split(handle);
        let bytes = &self.segment(id).bytes;
        let flags = bytes[offset];
        if flags & BOXED != 0 {
            return self.entry(handle).0;
        }
        let mut at = offset
            + 1
            + if flags & EXPIRES != 0 {
                DEADLINE_BYTES
            } else {
                0
            };
        let key_len = read_varint(bytes, &mut at);
        let _value_len = read_varint(bytes, &mut at);
        &bytes[at..at + key_len]
    }

    #[inline]
    pub fn value(&self, handle: Handle) -> &[u8] {
        self.get(handle).1
    }

    /// The entry's value, to change in place (its length cannot change).
    #[inline]
    pub fn value_mut(&mut self, handle: Handle) -> &mut [u8] {
        let (id, offset) = split(handle);
        let segment = self.segments[id]
            .as_mut()
            .expect("handle names a live segment");
        let layout = layout_at(&segment.bytes, offset);
        if layout.flags & BOXED != 0 {
            let stub = &segment.bytes[offset..];
            let index = u32::from_le_bytes([stub[1], stub[2], stub[3], stub[4]]);
            let boxed = self.boxed[index as usize]
                .as_deref_mut()
                .expect("stub names a live box");
            let key_len = boxed_key_len(boxed);
            let (key_start, _) = boxed_parts(layout.flags, boxed);
            return &mut boxed[key_start + key_len..];
        }
        let start = layout.key_start + layout.key_len;
        &mut segment.bytes[start..start + layout.value_len]
    }

    /// Where the entry's first byte is, for a prefetch.
    #[inline]
    pub fn address(&self, handle: Handle) -> *const u8 {
        let (id, offset) = split(handle);
        match &self.segments[id] {
            Some(segment) => segment.bytes[offset..].as_ptr(),
            None => std::ptr::null(),
        }
    }

    /// Marks the entry dead. Its handle must not be used again.
    pub fn free(&mut self, handle: Handle) {
        let (id, offset) = split(handle);
        if self.segment(id).bytes[offset] & BOXED != 0 {
            let stub = &self.segment(id).bytes[offset..];
            let index = u32::from_le_bytes([stub[1], stub[2], stub[3], stub[4]]);
            self.boxed[index as usize] = None;
            self.free_boxed.push(index);
        }
        self.free_moved(handle);
    }

    /// Marks the entry's bytes in its segment dead (a boxed entry's box stays: its stub was
    /// copied elsewhere), and frees the segment when that was its last live entry.
    fn free_moved(&mut self, handle: Handle) {
        let (id, offset) = split(handle);
        let segment = self.segment_mut(id);
        let layout = layout_at(&segment.bytes, offset);
        debug_assert_eq!(layout.flags & DEAD, 0, "entry freed twice");
        segment.bytes[offset] |= DEAD;
        segment.live -= layout.size;
        let now_empty = segment.live == 0;
        self.live -= layout.size;
        if now_empty && self.tail != Some(id) {
            self.release(id);
        }
    }

    /// Visits live entries from `cursor` on, in segment order, until `max` were visited or the
    /// walk came back round to the first segment; returns true when it did (a whole round is
    /// done), and moves `cursor` to where the next walk resumes.
    ///
    /// A cursor stays safe across any change between two walks: it names its segment by id
    /// and epoch, and a segment's entries never move inside it (they are appended, marked
    /// dead, or the whole segment goes), so an offset of the same epoch is an entry boundary.
    /// A segment that is gone or was replaced since is left out from where the cursor was.
    pub fn walk(
        &self,
        cursor: &mut WalkCursor,
        max: usize,
        mut visit: impl FnMut(Walked<'_>),
    ) -> bool {
        let mut visited = 0;
        while visited < max {
            if cursor.id >= self.segments.len() {
                *cursor = WalkCursor::default();
                return true;
            }
            let Some(segment) = self.segments[cursor.id].as_ref() else {
                cursor.id += 1;
                cursor.offset = 0;
                continue;
            };
            if segment.epoch != cursor.epoch {
                if cursor.offset > 0 {
                    // Another segment took this id since: what the cursor named is gone.
                    cursor.id += 1;
                    cursor.offset = 0;
                    continue;
                }
                cursor.epoch = segment.epoch;
            }
            let bytes = &segment.bytes;
            while cursor.offset < segment.used && visited < max {
                let at = cursor.offset;
                let layout = layout_at(bytes, at);
                cursor.offset += layout.size;
                if layout.flags & DEAD != 0 {
                    continue;
                }
                visited += 1;
                let handle = join(cursor.id, at);
                if layout.flags & BOXED != 0 {
                    let boxed = self.boxed_bytes(&bytes[at..]);
                    let key_len = boxed_key_len(boxed);
                    let (key_start, deadline) = boxed_parts(layout.flags, boxed);
                    visit(Walked {
                        handle,
                        key: &boxed[key_start..key_start + key_len],
                        deadline,
                    });
                } else {
                    visit(Walked {
                        handle,
                        key: &bytes[layout.key_start..layout.key_start + layout.key_len],
                        deadline: layout.deadline,
                    });
                }
            }
            if cursor.offset >= segment.used {
                // (Entries appended to the tail behind the cursor are seen next round.)
                cursor.id += 1;
                cursor.offset = 0;
            }
        }
        false
    }

    /// Should the owner compact a segment now? When more than a quarter of the written bytes
    /// are dead and that is more than two segments' worth.
    #[inline]
    pub fn wants_compaction(&self) -> bool {
        let dead = self.used - self.live;
        dead > 2 * SEGMENT_BYTES && dead * 4 > self.used
    }

    /// Takes the segment (other than the tail) with the fewest live bytes out of the arena, to
    /// move its live entries with [`Arena::append_raw`]; then [`Arena::recycle`] it.
    pub fn take_segment(&mut self) -> Option<TakenSegment> {
        // (The hand's segment is emptying by itself, in order.)
        let hand = self.hand.map(|h| h.id);
        let id = (0..self.segments.len())
            .filter(|&id| Some(id) != self.tail && Some(id) != hand)
            .filter_map(|id| Some((id, self.segments[id].as_ref()?.live)))
            .min_by_key(|&(_, live)| live)?
            .0;
        let segment = self.segments[id].take()?;
        self.used -= segment.used;
        self.live -= segment.live;
        Some(TakenSegment { id, segment })
    }

    /// Copies an entry's encoded bytes (as [`TakenSegment::entries`] yields them) to the tail.
    pub fn append_raw(&mut self, encoded: &[u8]) -> Handle {
        let (id, offset) = self.reserve(encoded.len());
        self.segment_mut(id).bytes[offset..offset + encoded.len()].copy_from_slice(encoded);
        join(id, offset)
    }

    /// Gives a compacted segment's id back (its memory is kept as the spare, or freed).
    pub fn recycle(&mut self, taken: TakenSegment) {
        self.free_ids.push(taken.id);
        self.keep_spare(taken.segment.bytes);
    }

    /// The entry under the eviction hand: the oldest live entry the hand has not passed (see
    /// "The eviction hand" in the module docs), or `None` when the arena holds none. The
    /// caller frees it or moves it ([`Arena::move_to_tail`]); the hand passes dead entries by
    /// itself. When the hand reaches the tail, the tail is sealed (a new one begins), so that
    /// entries moved past the hand never come back under it in the same pass.
    pub fn hand(&mut self) -> Option<Handle> {
        loop {
            let current = self.hand.filter(|h| {
                self.segments[h.id]
                    .as_ref()
                    .is_some_and(|s| s.epoch == h.epoch)
            });
            let Some(mut hand) = current else {
                let (id, epoch) = self.order.pop_front()?;
                self.hand = Some(WalkCursor {
                    id,
                    epoch,
                    offset: 0,
                });
                continue;
            };
            let segment = self.segment(hand.id);
            if Some(hand.id) == self.tail {
                if segment.live == 0 {
                    return None;
                }
                self.new_tail();
                continue;
            }
            if hand.offset >= segment.used {
                // (A live entry the caller left behind stays for compaction to move.)
                self.hand = None;
                continue;
            }
            let layout = layout_at(&segment.bytes, hand.offset);
            if layout.flags & DEAD == 0 {
                return Some(join(hand.id, hand.offset));
            }
            hand.offset += layout.size;
            self.hand = Some(hand);
        }
    }

    /// Copies the entry `handle` to the tail with `access` as its access bits when it has
    /// them, and frees the old copy: the eviction hand's second chance. Returns the new handle.
    pub fn move_to_tail(&mut self, handle: Handle, access: Option<u32>) -> Handle {
        let (id, offset) = split(handle);
        let size = layout_at(&self.segment(id).bytes, offset).size;
        let (to, at) = self.reserve(size);
        let [from_segment, to_segment] = self
            .segments
            .get_disjoint_mut([id, to])
            .expect("the tail is not the moved entry's segment");
        let from = &from_segment.as_ref().expect("a live segment").bytes;
        to_segment.as_mut().expect("the tail is live").bytes[at..at + size]
            .copy_from_slice(&from[offset..offset + size]);
        let new = join(to, at);
        if let Some(bits) = access {
            self.set_access(new, bits);
        }
        // The stub of a boxed entry moved, its box did not: free only the old bytes.
        self.free_moved(handle);
        new
    }

    /// Bytes of segments (live and dead), and of them live.
    pub fn usage(&self) -> (usize, usize) {
        (self.used, self.live)
    }
}

impl TakenSegment {
    /// The live entries: (their old handle, their encoded bytes).
    pub fn entries(&self) -> impl Iterator<Item = (Handle, &[u8])> {
        let bytes = &self.segment.bytes;
        let mut offset = 0;
        std::iter::from_fn(move || {
            while offset < self.segment.used {
                let layout = layout_at(bytes, offset);
                let at = offset;
                offset += layout.size;
                if layout.flags & DEAD == 0 {
                    return Some((join(self.id, at), &bytes[at..at + layout.size]));
                }
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arena of 1000 entries (keys 0..1000 as `u32` LE, each with `value`) and their handles.
    fn filled(value: &[u8]) -> (Arena, Vec<Handle>) {
        let mut arena = Arena::default();
        let handles = (0..1000u32)
            .map(|i| arena.alloc(&i.to_le_bytes(), value, None, None))
            .collect();
        (arena, handles)
    }

    /// The handles among `handles` in segment `id`.
    fn in_segment(handles: &[Handle], id: usize) -> Vec<Handle> {
        handles
            .iter()
            .copied()
            .filter(|&h| split(h).0 == id)
            .collect()
    }

    #[test]
    fn varints_round_trip() {
        let mut buf = [0u8; 10];
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as usize] {
            let end = write_varint(&mut buf, 0, n);
            assert_eq!(end, varint_len(n));
            let mut at = 0;
            assert_eq!(read_varint(&buf, &mut at), n);
            assert_eq!(at, end);
        }
    }

    #[test]
    fn inline_and_boxed_entries() {
        let mut arena = Arena::default();
        let small = arena.alloc(b"key:000000000001", &[7u8; 32], None, None);
        let big_value = vec![9u8; MAX_INLINE * 2];
        let big = arena.alloc(b"big", &big_value, None, None);
        assert_eq!(arena.get(small), (&b"key:000000000001"[..], &[7u8; 32][..]));
        assert_eq!(arena.get(big), (&b"big"[..], &big_value[..]));
        // 1 + 1 + 1 + 16 + 32 = 51, padded to 52; the stub takes 8.
        assert_eq!(arena.usage(), (52 + STUB, 52 + STUB));
        arena.value_mut(big)[0] = 1;
        arena.value_mut(small)[0] = 1;
        assert_eq!(arena.value(big)[0], 1);
        assert_eq!(arena.value(small)[0], 1);
        arena.free(big);
        assert_eq!(arena.usage(), (52 + STUB, 52));
        assert_eq!(arena.boxed.iter().flatten().count(), 0);
    }

    #[test]
    fn empty_segments_are_freed_and_taken_segments_walk_live_entries() {
        let value = [1u8; 1000];
        let (mut arena, handles) = filled(&value);
        let segments = arena.segments.iter().flatten().count();
        assert!(segments >= 3);
        // Free everything in the first segment: it goes back at once.
        for h in in_segment(&handles, 0) {
            arena.free(h);
        }
        assert!(arena.segments[0].is_none());
        // Free every other entry of the second; taking the emptiest yields the rest.
        let second = in_segment(&handles, 1);
        for &h in second.iter().step_by(2) {
            arena.free(h);
        }
        let taken = arena.take_segment().unwrap();
        assert_eq!(taken.id, 1);
        let kept: Vec<Handle> = taken.entries().map(|(h, _)| h).collect();
        assert_eq!(
            kept,
            second
                .iter()
                .copied()
                .skip(1)
                .step_by(2)
                .collect::<Vec<_>>()
        );
        for (_, encoded) in taken.entries() {
            let moved = arena.append_raw(encoded);
            assert_eq!(arena.value(moved), &value[..]);
        }
        arena.recycle(taken);
        assert!(arena.segments[1].is_none());
        assert!(arena.free_ids.contains(&1));
        let (used, live) = arena.usage();
        assert_eq!(used - live, 0, "only live bytes are left");
    }

    #[test]
    fn deadlines_cost_eight_bytes_and_change_in_place() {
        let mut arena = Arena::default();
        let plain = arena.alloc(b"key:000000000001", &[7u8; 32], None, None);
        let timed = arena.alloc(
            b"key:000000000002",
            &[7u8; 32],
            Some(1_700_000_000_123),
            None,
        );
        // 52 bytes without, 60 with: the deadline's 8 bytes and no more.
        assert_eq!(arena.usage(), (52 + 60, 52 + 60));
        assert_eq!(arena.entry(plain).2, None);
        let (key, value, deadline) = arena.entry(timed);
        assert_eq!(
            (key, value, deadline),
            (
                &b"key:000000000002"[..],
                &[7u8; 32][..],
                Some(1_700_000_000_123)
            )
        );
        arena.set_deadline_in_place(timed, 42);
        assert_eq!(arena.entry(timed).2, Some(42));
        arena.value_mut(timed)[0] = 1;
        assert_eq!(
            arena.entry(timed),
            (
                &b"key:000000000002"[..],
                &{
                    let mut v = [7u8; 32];
                    v[0] = 1;
                    v
                }[..],
                Some(42)
            )
        );
        // Boxed entries keep theirs in the box.
        let big_value = vec![9u8; MAX_INLINE * 2];
        let big = arena.alloc(b"big", &big_value, Some(7), None);
        assert_eq!(arena.entry(big), (&b"big"[..], &big_value[..], Some(7)));
        arena.set_deadline_in_place(big, 8);
        arena.value_mut(big)[0] = 1;
        let (key, value, deadline) = arena.entry(big);
        assert_eq!(
            (key, value[0], value.len(), deadline),
            (&b"big"[..], 1, big_value.len(), Some(8))
        );
    }

    /// A walk visits every live entry once per round, with its deadline, and a cursor kept
    /// across frees, segment releases and compaction never lands inside another segment.
    #[test]
    fn walks_visit_live_entries_and_survive_changes_between_steps() {
        let mut arena = Arena::default();
        let value = [1u8; 1000];
        let mut handles: Vec<Handle> = (0..2000u32)
            .map(|i| {
                arena.alloc(
                    &i.to_le_bytes(),
                    &value,
                    (i % 2 == 0).then_some(u64::from(i)),
                    None,
                )
            })
            .collect();
        let mut cursor = WalkCursor::default();
        let mut seen = std::collections::HashMap::new();
        while !arena.walk(&mut cursor, 100, |e| {
            assert_eq!(e.deadline, {
                let i = u32::from_le_bytes(e.key.try_into().unwrap());
                (i % 2 == 0).then_some(u64::from(i))
            });
            *seen.entry(e.handle).or_insert(0) += 1;
        }) {}
        assert_eq!(seen.len(), 2000);
        assert!(seen.values().all(|&n| n == 1));
        // Between steps: free whole segments (ids get reused), compact one.
        let mut steps = 0;
        let mut count = 0;
        loop {
            let done = arena.walk(&mut cursor, 50, |_| count += 1);
            steps += 1;
            if steps == 3 {
                for h in handles.drain(..600) {
                    arena.free(h);
                }
                for i in 0..300u32 {
                    handles.push(arena.alloc(&(10_000 + i).to_le_bytes(), &value, None, None));
                }
                if let Some(taken) = arena.take_segment() {
                    for (_, encoded) in taken.entries() {
                        arena.append_raw(encoded);
                    }
                    arena.recycle(taken);
                }
            }
            if done {
                break;
            }
            assert!(steps < 10_000);
        }
        assert!(count > 0);
    }

    /// Access bits cost exactly 4 bytes, sit after the value (key, value and deadline read as
    /// without them), change in place, and travel with the entry through compaction; a boxed
    /// entry keeps them in its stub.
    #[test]
    fn access_bits_cost_four_bytes_and_move_with_the_entry() {
        let mut arena = Arena::default();
        let plain = arena.alloc(b"key:000000000001", &[7u8; 32], None, None);
        let tracked = arena.alloc(b"key:000000000002", &[7u8; 32], Some(9), Some(0xdead_beef));
        assert_eq!(arena.usage(), (52 + 60 + 4, 52 + 60 + 4));
        assert_eq!(arena.access(plain), None);
        assert!(!arena.set_access(plain, 1), "no field to write");
        assert_eq!(arena.access(tracked), Some(0xdead_beef));
        assert_eq!(
            arena.entry(tracked),
            (&b"key:000000000002"[..], &[7u8; 32][..], Some(9))
        );
        assert!(arena.set_access(tracked, 42));
        arena.set_deadline_in_place(tracked, 10);
        arena.value_mut(tracked)[31] = 1;
        assert_eq!(arena.access(tracked), Some(42));
        assert_eq!(arena.key(tracked), b"key:000000000002");
        let big_value = vec![9u8; MAX_INLINE * 2];
        let big = arena.alloc(b"big", &big_value, None, Some(7));
        assert_eq!(arena.usage().1, 52 + 64 + STUB + ACCESS_BYTES);
        assert_eq!(arena.entry(big), (&b"big"[..], &big_value[..], None));
        assert!(arena.set_access(big, 8));
        assert_eq!(arena.access(big), Some(8));
        // The walk sizes entries with their field: it meets each entry, and nothing else.
        let mut walked = Vec::new();
        let mut cursor = WalkCursor::default();
        arena.walk(&mut cursor, 10, |e| walked.push(e.handle));
        assert_eq!(walked, vec![plain, tracked, big]);
        // Compaction copies the field with the entry.
        let mut arena2 = Arena::default();
        let handles: Vec<Handle> = (0..1000u32)
            .map(|i| arena2.alloc(&i.to_le_bytes(), &[1u8; 500], None, Some(i)))
            .collect();
        for &h in in_segment(&handles, 0).iter().step_by(2) {
            arena2.free(h);
        }
        let taken = arena2.take_segment().unwrap();
        for (_, encoded) in taken.entries() {
            let moved = arena2.append_raw(encoded);
            let i = u32::from_le_bytes(arena2.key(moved).try_into().unwrap());
            assert_eq!(arena2.access(moved), Some(i));
            assert_eq!(arena2.value(moved), &[1u8; 500][..]);
        }
        arena2.recycle(taken);
        arena.free(tracked);
        arena.free(big);
        assert_eq!(arena.usage().1, 52);
    }
    /// A segment emptied by frees or taken by compaction is kept once, in an arena of two
    /// segments or more, and its memory is the next tail's: no fresh allocation.
    #[test]
    fn a_freed_segment_is_reused_as_the_next_tail() {
        let (mut arena, handles) = filled(&[7u8; 1000]);
        let in_segment = |id| in_segment(&handles, id);
        let first_bytes = arena.segment(0).bytes.as_ptr();
        for h in in_segment(0) {
            arena.free(h);
        }
        assert!(arena.segments[0].is_none());
        assert_eq!(arena.spare.as_ref().map(|b| b.as_ptr()), Some(first_bytes));
        // A second emptied segment is freed: one spare at most.
        for h in in_segment(1) {
            arena.free(h);
        }
        assert_eq!(arena.spare.as_ref().map(|b| b.as_ptr()), Some(first_bytes));
        // Fill the tail: the next one is the spare, its stale bytes overwritten as written.
        let tail = arena.tail.unwrap();
        let mut fresh = Vec::new();
        while arena.tail == Some(tail) {
            fresh.push(arena.alloc(b"new", b"entry", Some(42), Some(9)));
        }
        assert!(arena.spare.is_none());
        let last = *fresh.last().unwrap();
        assert_eq!(arena.segment(split(last).0).bytes.as_ptr(), first_bytes);
        assert_eq!(
            arena.entry_with_access(last),
            (&b"new"[..], &b"entry"[..], Some(42), Some(9))
        );
        let mut walked = 0;
        let mut cursor = WalkCursor::default();
        while !arena.walk(&mut cursor, 100, |e| {
            assert!(e.key.len() == 3 || e.key.len() == 4);
            walked += 1;
        }) {}
        assert_eq!(
            walked,
            handles.len() - in_segment(0).len() - in_segment(1).len() + fresh.len()
        );
        // A small arena keeps no spare.
        let mut small = Arena::default();
        let h = small.alloc(b"k", b"v", None, None);
        small.free(h);
        small.new_tail();
        assert!(small.spare.is_none());
    }

    /// The hand offers live entries oldest first across segments, passing dead ones; a moved
    /// entry (its box too) comes back under the hand only after the older ones, with the bits
    /// it was given; the hand's segment is never compacted.
    #[test]
    fn the_hand_goes_oldest_first_and_moved_entries_come_last() {
        let mut arena = Arena::default();
        let value = [3u8; 1000];
        let mut handles: Vec<Handle> = (0..600u32)
            .map(|i| arena.alloc(&i.to_le_bytes(), &value, None, Some(i)))
            .collect();
        let big = vec![5u8; MAX_INLINE * 2];
        handles.push(arena.alloc(b"big", &big, Some(7), Some(1 << 31)));
        for &h in handles[..600].iter().step_by(3) {
            arena.free(h);
        }
        let mut met = Vec::new();
        let mut again = None;
        while let Some(h) = arena.hand() {
            let key = arena.key(h).to_vec();
            if met.contains(&key) {
                again = Some(key);
                break;
            }
            met.push(key.clone());
            if key.len() == 4 && u32::from_le_bytes(key[..].try_into().unwrap()) % 2 == 0 {
                // Second chance for the even ones.
                let bits = arena.access(h).unwrap();
                let moved = arena.move_to_tail(h, Some(bits | 1 << 30));
                assert_eq!(arena.access(moved), Some(bits | 1 << 30));
                assert_eq!(arena.value(moved), &value[..]);
            } else if key == b"big" {
                let moved = arena.move_to_tail(h, Some(0));
                assert_eq!(arena.entry(moved), (&b"big"[..], &big[..], Some(7)));
            } else {
                arena.free(h);
            }
        }
        let live: Vec<Vec<u8>> = (0..600u32)
            .filter(|i| i % 3 != 0)
            .map(|i| i.to_le_bytes().to_vec())
            .chain([b"big".to_vec()])
            .collect();
        assert_eq!(met, live, "every live entry, oldest first, once");
        // The hand came back to the moved ones, oldest move first.
        assert_eq!(again, Some(2u32.to_le_bytes().to_vec()));
        // Compaction never takes the hand's segment, though it has the fewest live bytes.
        let (mut arena, handles) = filled(&value);
        let first = arena.hand().unwrap();
        for h in in_segment(&handles, split(first).0).into_iter().skip(1) {
            arena.free(h);
        }
        assert_eq!(arena.hand(), Some(first));
        let taken = arena.take_segment().unwrap();
        assert_ne!(taken.id, split(first).0);
    }
}

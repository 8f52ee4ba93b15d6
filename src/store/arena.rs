//! Where a table's entries live: packed one after another in fixed-size segments.
//!
//! An entry is `[flags: u8][key_len: varint][value_len: varint][key][value]`, padded to a
//! multiple of `ALIGN` bytes, and is named by a 40-bit [`Handle`] (segment id and offset).
//! A 16-byte key with a 32-byte value takes 52 bytes: no allocator header, no rounding up to
//! an allocator size class, no pointer per entry (the table keeps handles, 6 bytes each).
//!
//! An entry larger than [`MAX_INLINE`] bytes is *boxed*: its own allocation holds
//! `[key_len: u32 LE][key][value]`, and the arena keeps an 8-byte stub naming it. A segment
//! therefore never holds more than a few KiB of any one entry, which bounds what compaction
//! copies at once.
//!
//! # Garbage and compaction
//! Removing an entry, or changing its value's length, marks its bytes dead. A segment whose
//! last live entry goes away is freed at once. Otherwise the dead bytes stay until the owner
//! ([`super::table::Table`]) compacts: when more than a quarter of the arena is dead, it moves
//! the live entries of the emptiest segment to the tail ([`Arena::take_segment`],
//! [`Arena::append_raw`]) and re-points their slots. One segment per write at most: a write
//! never pays for more than one segment's copy (256 KiB).

/// Bytes per segment.
pub const SEGMENT_BYTES: usize = 256 * 1024;

/// Entries start on multiples of this; handles count in these units.
const ALIGN: usize = 4;

/// Bits of a handle that hold the offset (in [`ALIGN`] units) inside the segment.
const OFFSET_BITS: u32 = 16;

const _: () = assert!(SEGMENT_BYTES / ALIGN == 1 << OFFSET_BITS);

/// Largest encoded entry kept inline; larger ones are boxed.
pub const MAX_INLINE: usize = 4096;

/// Segment ids fit in 24 bits: handles are 40 bits (4 TiB of entries per table).
const MAX_SEGMENTS: usize = 1 << 24;

/// `flags` bit: the entry was removed or replaced.
const DEAD: u8 = 1;
/// `flags` bit: the bytes live in their own allocation (`boxed`); the stub holds its index.
const BOXED: u8 = 2;

/// Bytes of a boxed entry's stub: flags and a `u32` index (padded to [`ALIGN`]).
const STUB: usize = 8;

/// Names an entry: segment id (24 bits) and offset in `ALIGN` units (16 bits).
pub type Handle = u64;

/// Largest handle value + 1.
pub const HANDLE_LIMIT: u64 = 1 << 40;

struct Segment {
    bytes: Box<[u8]>,
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
    let mut n = 0usize;
    let mut shift = 0;
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
fn encoded_len(key_len: usize, value_len: usize) -> usize {
    1 + varint_len(key_len) + varint_len(value_len) + key_len + value_len
}

/// Reads the entry at `offset` of a segment's bytes.
#[inline]
fn layout_at(bytes: &[u8], offset: usize) -> Layout {
    let flags = bytes[offset];
    if flags & BOXED != 0 {
        return Layout {
            flags,
            key_start: 0,
            key_len: 0,
            value_len: 0,
            size: STUB,
        };
    }
    let mut at = offset + 1;
    let key_len = read_varint(bytes, &mut at);
    let value_len = read_varint(bytes, &mut at);
    Layout {
        flags,
        key_start: at,
        key_len,
        value_len,
        size: align(at - offset + key_len + value_len),
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
}

impl Arena {
    /// Stores a new entry and returns its handle.
    pub fn alloc(&mut self, key: &[u8], value: &[u8]) -> Handle {
        let len = encoded_len(key.len(), value.len());
        if len > MAX_INLINE {
            return self.alloc_boxed(key, value);
        }
        let (id, offset) = self.reserve(align(len));
        let bytes = &mut self.segment_mut(id).bytes;
        bytes[offset] = 0;
        let at = write_varint(bytes, offset + 1, key.len());
        let at = write_varint(bytes, at, value.len());
        bytes[at..at + key.len()].copy_from_slice(key);
        bytes[at + key.len()..at + key.len() + value.len()].copy_from_slice(value);
        join(id, offset)
    }

    fn alloc_boxed(&mut self, key: &[u8], value: &[u8]) -> Handle {
        let mut bytes = Vec::with_capacity(4 + key.len() + value.len());
        // Keys are bounded by max-key-len, which the config keeps within u32.
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
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
        let (id, offset) = self.reserve(STUB);
        let stub = &mut self.segment_mut(id).bytes[offset..offset + STUB];
        stub[0] = BOXED;
        stub[1..5].copy_from_slice(&index.to_le_bytes());
        join(id, offset)
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
        // Zeroed memory comes from the kernel untouched: a segment costs RSS as it fills.
        let segment = Some(Segment {
            bytes: vec![0u8; SEGMENT_BYTES].into_boxed_slice(),
            used: 0,
            live: 0,
        });
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.segments[id] = segment;
                id
            }
            None => {
                assert!(
                    self.segments.len() < MAX_SEGMENTS,
                    "a table holds at most 4 TiB of entries"
                );
                self.segments.push(segment);
                self.segments.len() - 1
            }
        };
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
        let (id, offset) = split(handle);
        let bytes = &self.segment(id).bytes;
        let layout = layout_at(bytes, offset);
        if layout.flags & BOXED != 0 {
            let boxed = self.boxed_bytes(&bytes[offset..]);
            let key_len = boxed_key_len(boxed);
            return (&boxed[4..4 + key_len], &boxed[4 + key_len..]);
        }
        let key_end = layout.key_start + layout.key_len;
        (
            &bytes[layout.key_start..key_end],
            &bytes[key_end..key_end + layout.value_len],
        )
    }

    #[inline]
    pub fn key(&self, handle: Handle) -> &[u8] {
        self.get(handle).0
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
            return &mut boxed[4 + key_len..];
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
        let segment = self.segment_mut(id);
        let layout = layout_at(&segment.bytes, offset);
        debug_assert_eq!(layout.flags & DEAD, 0, "entry freed twice");
        segment.bytes[offset] |= DEAD;
        segment.live -= layout.size;
        let now_empty = segment.live == 0;
        self.live -= layout.size;
        if layout.flags & BOXED != 0 {
            let stub = &self.segment(id).bytes[offset..];
            let index = u32::from_le_bytes([stub[1], stub[2], stub[3], stub[4]]);
            self.boxed[index as usize] = None;
            self.free_boxed.push(index);
        }
        if now_empty && self.tail != Some(id) {
            self.release(id);
        }
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
        let id = (0..self.segments.len())
            .filter(|&id| Some(id) != self.tail)
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

    /// Gives a compacted segment's id back (its memory is freed).
    pub fn recycle(&mut self, taken: TakenSegment) {
        self.free_ids.push(taken.id);
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
        let small = arena.alloc(b"key:000000000001", &[7u8; 32]);
        let big_value = vec![9u8; MAX_INLINE * 2];
        let big = arena.alloc(b"big", &big_value);
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
        let mut arena = Arena::default();
        let value = [1u8; 1000];
        let handles: Vec<Handle> = (0..1000u32)
            .map(|i| arena.alloc(&i.to_le_bytes(), &value))
            .collect();
        let segments = arena.segments.iter().flatten().count();
        assert!(segments >= 3);
        // Free everything in the first segment: it goes back at once.
        let first: Vec<Handle> = handles
            .iter()
            .copied()
            .filter(|&h| split(h).0 == 0)
            .collect();
        for &h in &first {
            arena.free(h);
        }
        assert!(arena.segments[0].is_none());
        // Free every other entry of the second; taking the emptiest yields the rest.
        let second: Vec<Handle> = handles
            .iter()
            .copied()
            .filter(|&h| split(h).0 == 1)
            .collect();
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
}

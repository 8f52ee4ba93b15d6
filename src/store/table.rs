//! A compact hash table of byte keys. Entries (key and value side by side) live packed in an
//! [`Arena`]; the table itself is an index of 6-byte slots naming them.
//!
//! Why not `HashMap<Box<[u8]>, Box<[u8]>>`: that costs two allocations per key, each with the
//! allocator's header and size-class rounding, a 16-byte pointer pair per slot, and, on a
//! lookup, four dependent cache misses (control bytes, bucket, key bytes, value bytes). Here a
//! slot is a 2-byte control word (a hash tag, the slot's probe distance, a handle's top bits)
//! and a 4-byte handle, and a 16-byte key with a 32-byte value
//! takes 52 bytes of arena: about 64 bytes per key in all at one million keys, where one
//! allocation per entry with 16-byte slots took 100. A lookup touches a control word, a
//! handle, and one entry whose key and (small) value share a cache line, and the misses of a
//! whole batch of requests can be started together ([`Table::prefetch`],
//! [`Table::prefetch_entry`]).
//!
//! The value part is opaque bytes: STRING partitions store the value itself, INT partitions
//! store the `i64` as 8 little-endian bytes.
//!
//! # Growing without a stall
//! An index is open addressing with linear probing and backward-shift deletion (no
//! tombstones), at most 7/8 full. A removal moves back each later key of the cluster whose
//! home is not between the hole and its slot. Each slot's control word keeps how far the slot
//! is past its key's home, saturated at 14 (14 or more: one key in 50 at a load of 3/4, one
//! in 17 at 7/8), so the shift reads and hashes only those keys, not every one (a cache miss
//! each once the arena outgrows the cache: an eviction at a quota of 100k keys paid about
//! five). The field costs no memory: it replaces a `FULL` bit (a full slot's field is never
//! 0) and three handle bits (37-bit handles: 512 GiB of entries per table). (A 3-bit field,
//! saturated at 6, left 0.8 more L2 misses and 100 more instructions per write there.)
//!
//! Rehashing a big index at once stops the shard (50 ms at a
//! million keys, even with the misses overlapped), so past [`INCREMENTAL_FROM`] slots a
//! growth only allocates the new, twice larger index; the old one is *drained* into it a few
//! clusters per write (`DRAIN_STEP` entries or more), as Redis rehashes its dicts. Meanwhile
//! lookups try the new index and then the old; new keys go to the new one only.
//!
//! The old index is drained a whole *cluster* (a maximal run of full slots) at a time, walking
//! from an empty slot all the way round. A key's probe path never leaves its cluster, so
//! emptying whole clusters leaves every other key findable without tombstones; a removal in
//! the old index shifts keys back only within their cluster, and nothing is ever inserted
//! there, so no key can move into the drained part.
//!
//! # Compaction of the arena
//! Removing an entry or changing its value's length leaves dead bytes in the arena. After
//! such a write, when more than a quarter of the arena is dead, the table moves the live
//! entries of the emptiest segment to the arena's tail and re-points their slots (found by
//! their key's probe sequence and old handle), one segment per write at most; each moved
//! key's home slot is prefetched as it is copied and re-pointed a few entries later, so that
//! those probes' cache misses overlap. Slots never move for this, so the scan cursor below is
//! unaffected.
//!
//! # The scan cursor (snapshots)
//! Persistence writes a *fuzzy snapshot* of a partition a slice per event-loop pass while
//! clients keep writing (`persist::snapshot`), so it needs a walk that survives writes between
//! its steps. [`Table::scan_step`] walks the slots of the old index (while one is draining),
//! then those of the new one; the only ways an entry present at [`Table::begin_scan`] could
//! escape the cursor are handled where they happen:
//! - an insert never moves other entries, except a growth, which moves the whole table into
//!   the old index: the scan then starts over (visiting an entry twice is harmless: snapshot
//!   records are idempotent);
//! - draining moves entries from the old index into the new one, which the walk visits after
//!   the old one in full: a moved entry is either already visited or still ahead;
//! - the backward shift of `remove` moves an entry from slot `next` to `hole` of the index
//!   being walked; when that is from the unvisited part (`next >= cursor`) into the visited
//!   part (`hole < cursor`), its key is *rescued* and visited by the next step. (A move across
//!   the wrap-around only goes from visited to unvisited: a second visit, harmless.)
//!
//! Entries inserted or changed after the scan began may or may not be seen; the log segment
//! that began with the scan holds them.
//!
//! # SCAN: enumerating by hash
//! The client-facing `SCAN` cannot keep state in the table between calls (any number of them,
//! on any connection, may be in progress, and a cursor must stay valid on another
//! connection), so it cannot be rescued like the snapshot walk above. Instead a key's home slot
//! is the *top* bits of its hash ([`Index::home`]), and the SCAN cursor is a position in the
//! space of the hash's top [`CURSOR_BITS`] bits: "every key whose hash position is below the
//! cursor was returned". Each call visits a whole range of home slots, in every index at once
//! (the current one and the draining one: a key is in exactly one of them at any instant),
//! walking each range's slots up to the first empty slot past its end, since a key can sit
//! past its home within its cluster. Because the cursor names hashes, not slots, nothing that
//! moves entries between calls matters: growth (a home in an index twice as large is
//! `2 * home` or `2 * home + 1`, the same range of positions), draining, backward shifts of
//! removes, arena compaction. Every key present for the whole walk is returned at least once,
//! as Redis guarantees; one that comes or goes meanwhile may or may not be.
//!
//! # Deadlines and the expiry sweep
//! An entry may carry a deadline (see [`super::arena`]); the table stores it and counts the
//! entries that have one ([`Table::with_deadline`]), but does not know the time: the
//! partition decides what is expired. [`Table::expire_step`] walks the arena's entries in
//! memory order from where the last step stopped and removes those past a given time.
//!
//! # Access bits and eviction samples
//! A table set to track access ([`Table::set_tracking`], an LRU or LFU eviction policy) stamps
//! each entry it writes with access bits ([`super::access`]) and keeps them across rewrites of
//! the entry; [`Table::touch`] updates them. Nothing of this runs for a table that does not
//! track (the default): its entries have no field, and nobody calls `touch`.
//!
//! An evictor samples the table as Redis's `dictGetSomeKeys` samples a dict, but fairly:
//! [`Table::sample_window`] visits every entry of a run of consecutive slots of a fixed length
//! from a slot drawn uniformly over both indexes (the draining one too), so every entry is
//! equally likely to be seen; [`Table::sample`] draws slots one by one (a random policy
//! wants one key, and a walk from one random slot that stops at the first key is not fair:
//! see there).

use super::access::{AccessClock, Tracking};
use super::arena::{Arena, Handle, WalkCursor, Walked};

/// Keys one eviction by the hand moves to the tail at most ([`Table::evict_by_hand`]): what
/// bounds a write's work when every key was read since it was written.
const SECOND_CHANCES: usize = 256;

/// Smallest non-empty table.
const MIN_CAPACITY: usize = 16;

/// From this many slots on, a growth drains the old index incrementally (see the module
/// docs); smaller ones are rehashed at once, in well under a millisecond.
pub const INCREMENTAL_FROM: usize = 1 << 14;

/// Entries a write moves from the old index at least (a whole cluster past that). A growth
/// leaves the new index 7/16 full with room for as many inserts again, so one entry per write
/// would do; 32 finish the drain within a few percent of that room.
const DRAIN_STEP: usize = 32;

/// Slots of the old index one drain step looks at, at most (besides whole clusters it moves):
/// bounds a step in the long empty runs of an index drained after a shrink.
const DRAIN_WALK: usize = 4096;

/// An index with fewer than one key per this many slots is replaced by a smaller one
/// ([`Table::shrink_if_sparse`]): 1/16 full, where a growth leaves 7/16, so that a table whose
/// size goes up and down around one point does not shrink and grow again and again.
const SHRINK_BELOW: usize = 16;

/// Control word of an empty slot. A full slot's word holds, from the top: its *probe
/// distance* field (4 bits, never 0 in a full slot), 7 bits of the key's hash (the tag: a
/// probe compares keys only on a 1-in-128 false match), and the top 5 bits of the entry's
/// 37-bit handle; the slot's `u32` holds the low 32.
///
/// The distance field is how far the slot is past the key's home, plus one, saturated at
/// [`DIST_SATURATED`] (a distance of 14 or more). The backward shift of a removal must know each
/// later key's home, and reading it from the key meant a cache miss per key (the entries are
/// scattered over the arena) and a hash: with the distance in the slot, only the keys that sit
/// 14 or more slots past their home are read (see [`Index::remove_at`]).
const EMPTY: u16 = 0;
/// Where the distance field starts.
const DIST_SHIFT: u32 = 12;
/// The distance field of a slot 14 or more slots past its key's home: the key tells the rest.
const DIST_SATURATED: u16 = 15;
/// The control word's bits other than the distance field.
const DIST_CLEAR: u16 = !(15 << DIST_SHIFT);
/// The tag's bits: what a probe compares (after seeing the slot full).
const TAG_BITS: u16 = 0x7f << 5;
/// The handle's top bits.
const HANDLE_HIGH: u16 = 0x1f;

const _: () = assert!(super::arena::HANDLE_LIMIT == 1 << 37);

/// The control word's tag bits for a hash: its low 7 bits (a key's home slot is taken from
/// the top bits, see [`Index::home`], so the two never overlap).
#[inline]
fn tag(hash: u64) -> u16 {
    ((hash & 0x7f) as u16) << 5
}

/// The distance field of a slot `distance` slots past its key's home.
#[inline]
fn dist_field(distance: usize) -> u16 {
    ((distance.min(DIST_SATURATED as usize - 1) + 1) as u16) << DIST_SHIFT
}

/// Bits of the SCAN cursor: it is a position in the space of a hash's top [`CURSOR_BITS`]
/// bits (see "SCAN" in the module docs). 48 covers any index this table can have (handles are
/// 37 bits) and keeps cursors within what every client parses.
pub const CURSOR_BITS: u32 = 48;

/// One past the last cursor position.
const CURSOR_END: u64 = 1 << CURSOR_BITS;

/// Asks the CPU to start loading `p`'s cache line.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing into the program and never faults,
    // whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One open-addressing index: a control word and a handle's low 32 bits per slot.
#[derive(Default)]
struct Index {
    /// [`EMPTY`], or distance field, tag and handle's top bits; a power of two long (or
    /// empty).
    ctrl: Vec<u16>,
    /// As long as `ctrl`.
    slots: Vec<u32>,
    /// `64 - log2(capacity)`: a hash shifted right by this is its home slot.
    shift: u32,
}

impl Index {
    fn with_capacity(capacity: usize) -> Index {
        debug_assert!(capacity.is_power_of_two() && capacity >= MIN_CAPACITY);
        Index {
            ctrl: vec![EMPTY; capacity],
            slots: vec![0; capacity],
            shift: 64 - capacity.trailing_zeros(),
        }
    }

    /// The slot a key of this hash probes first: the hash's top bits, so that a key's home
    /// in an index twice as large is `2 * home` or `2 * home + 1` (SCAN relies on the order).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// log2 of the capacity (0 when empty).
    #[inline]
    fn bits(&self) -> u32 {
        if self.ctrl.is_empty() {
            0
        } else {
            64 - self.shift
        }
    }

    #[inline]
    fn capacity(&self) -> usize {
        self.ctrl.len()
    }

    #[inline]
    fn mask(&self) -> usize {
        self.ctrl.len().wrapping_sub(1)
    }

    #[inline]
    fn is_full(&self, i: usize) -> bool {
        self.ctrl[i] != EMPTY
    }

    /// The handle in full slot `i`.
    #[inline]
    fn handle(&self, i: usize) -> Handle {
        ((self.ctrl[i] & HANDLE_HIGH) as u64) << 32 | self.slots[i] as u64
    }

    /// Fills slot `i`, `distance` slots past the home of a key of tag `tag`, with `handle`.
    #[inline]
    fn fill(&mut self, i: usize, distance: usize, tag: u16, handle: Handle) {
        debug_assert!(handle < super::arena::HANDLE_LIMIT);
        self.ctrl[i] = dist_field(distance) | tag | (handle >> 32) as u16;
        self.slots[i] = handle as u32;
    }

    /// Points full slot `i` at `handle`, keeping its distance and tag.
    #[inline]
    fn repoint(&mut self, i: usize, handle: Handle) {
        self.ctrl[i] = (self.ctrl[i] & !HANDLE_HIGH) | (handle >> 32) as u16;
        self.slots[i] = handle as u32;
    }

    /// How far full slot `i` is past its key's home: from the control word, unless the
    /// distance field is saturated (then the key is read and hashed).
    #[inline(always)]
    fn distance(&self, i: usize, arena: &Arena, hasher: &ahash::RandomState) -> usize {
        match self.ctrl[i] >> DIST_SHIFT {
            DIST_SATURATED => self.distance_from_key(i, arena, hasher),
            field => field as usize - 1,
        }
    }

    /// [`Index::distance`] of a saturated slot: its key hashed (out of line: one slot in 50
    /// at a load of 3/4, and the backward shift's loop stays small without it).
    #[cold]
    #[inline(never)]
    fn distance_from_key(&self, i: usize, arena: &Arena, hasher: &ahash::RandomState) -> usize {
        let home = self.home(hasher.hash_one(arena.key(self.handle(i))));
        i.wrapping_sub(home) & self.mask()
    }

    /// The slot holding `key`, its value and its deadline.
    #[inline(always)]
    fn find<'a>(&self, arena: &'a Arena, hash: u64, key: &[u8]) -> Option<(usize, EntryRef<'a>)> {
        if self.ctrl.is_empty() {
            return None;
        }
        let (mask, tag) = (self.mask(), tag(hash));
        let mut i = self.home(hash);
        // Terminates: an index is never full, so an EMPTY slot ends every probe.
        loop {
            let c = self.ctrl[i];
            if c == EMPTY {
                return None;
            }
            if c & TAG_BITS == tag {
                let (k, value, deadline) = arena.entry(self.handle(i));
                if super::same_bytes(k, key) {
                    return Some((i, EntryRef { value, deadline }));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot holding `handle`, whose key hashes to `hash`.
    fn slot_of(&self, hash: u64, handle: Handle) -> Option<usize> {
        if self.ctrl.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        while self.ctrl[i] != EMPTY {
            if self.handle(i) == handle {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Puts an entry known to be absent into the first empty slot of its probe sequence.
    #[inline]
    fn place(&mut self, hash: u64, handle: Handle) {
        let mask = self.mask();
        let home = self.home(hash);
        let mut i = home;
        while self.ctrl[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.fill(i, i.wrapping_sub(home) & mask, tag(hash), handle);
    }

    #[inline]
    fn prefetch(&self, hash: u64) {
        if !self.ctrl.is_empty() {
            let i = self.home(hash);
            prefetch(&self.ctrl[i]);
            prefetch(&self.slots[i]);
        }
    }

    /// Prefetches the entry of the first slot whose tag matches; false if the probe met an
    /// empty slot first.
    #[inline]
    fn prefetch_entry(&self, arena: &Arena, hash: u64) -> bool {
        if self.ctrl.is_empty() {
            return false;
        }
        let (mask, tag) = (self.mask(), tag(hash));
        let mut i = self.home(hash);
        loop {
            match self.ctrl[i] {
                EMPTY => return false,
                c if c & TAG_BITS == tag => {
                    // A small entry spans at most two cache lines; at 4-byte alignment most
                    // do cross a line boundary, so ask for the second line as well.
                    let entry = arena.address(self.handle(i));
                    prefetch(entry);
                    prefetch(entry.wrapping_add(63));
                    return true;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Empties slot `hole`, then shifts back later members of its cluster whose probe path
    /// crosses the hole, so that every probe still meets its key before an empty slot.
    /// `moved(from, to, handle)` hears of each move.
    fn remove_at(
        &mut self,
        mut hole: usize,
        arena: &Arena,
        hasher: &ahash::RandomState,
        mut moved: impl FnMut(usize, usize, Handle),
    ) {
        self.ctrl[hole] = EMPTY;
        let mask = self.mask();
        // Each entry up to the cluster's end is looked at below; its distance is in its control
        // word, except for those 14 or more slots past their home, whose key is read and
        // hashed: a cache miss each once the arena outgrows the cache. Start those now, so that
        // they overlap instead of coming one per step of the loop.
        /// Slots looked at ahead, at most (clusters are rarely longer).
        const AHEAD: usize = 16;
        let mut ahead = (hole + 1) & mask;
        for _ in 0..AHEAD {
            match self.ctrl[ahead] {
                EMPTY => break,
                c if c >> DIST_SHIFT == DIST_SATURATED => {
                    prefetch(arena.address(self.handle(ahead)))
                }
                _ => {}
            }
            ahead = (ahead + 1) & mask;
        }
        let mut next = (hole + 1) & mask;
        while self.ctrl[next] != EMPTY {
            let distance = self.distance(next, arena, hasher);
            let gap = next.wrapping_sub(hole) & mask;
            // May move if its home is not cyclically inside (hole, next].
            if distance >= gap {
                moved(next, hole, self.handle(next));
                self.ctrl[hole] = self.ctrl[next] & DIST_CLEAR | dist_field(distance - gap);
                self.slots[hole] = self.slots[next];
                self.ctrl[next] = EMPTY;
                hole = next;
            }
            next = (next + 1) & mask;
        }
    }
}

impl Index {
    /// Visits every entry whose home is in `[from, to)` (`to <= capacity`): from slot `from`
    /// on, past `to`, up to the first empty slot after it (a key sits at or after its home in
    /// its cluster, possibly wrapped round to slot 0). Entries met there whose home is outside
    /// the range (displaced from before `from`, or wrapped from the end) are skipped.
    /// Returns how many were visited.
    fn visit_homes(
        &self,
        from: usize,
        to: usize,
        arena: &Arena,
        hasher: &ahash::RandomState,
        visit: &mut impl FnMut(&[u8], EntryRef),
    ) -> usize {
        let mask = self.mask();
        let mut visited = 0;
        let mut i = from;
        let mut walked = 0;
        // An index is never full, so the walk meets an empty slot within one round.
        while walked < self.capacity() {
            if self.ctrl[i] == EMPTY {
                if walked >= to - from {
                    break;
                }
            } else {
                let home = i.wrapping_sub(self.distance(i, arena, hasher)) & mask;
                if (from..to).contains(&home) {
                    let (key, value, deadline) = arena.entry(self.handle(i));
                    visit(key, EntryRef { value, deadline });
                    visited += 1;
                }
            }
            i = (i + 1) & mask;
            walked += 1;
        }
        visited
    }
}

/// An index being drained into the table's current one after a growth.
struct Draining {
    index: Index,
    /// An empty slot: the walk began after it and ends on it.
    start: usize,
    /// The next slot to drain; always the first slot of a cluster or an empty slot.
    next: usize,
    /// Entries still here.
    left: usize,
}

/// Where a key was found.
#[derive(Clone, Copy)]
enum At {
    New(usize),
    Old(usize),
}

/// An entry as a lookup finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub value: &'a [u8],
    /// Unix time in ms after which the key is expired; the table only stores it.
    pub deadline: Option<u64>,
}

/// What a write replaced or a removal removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldEntry {
    pub value_len: usize,
    pub deadline: Option<u64>,
}

/// Which memory of a sample window [`Table::prefetch_window`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowPart {
    /// The run's control words and handles.
    Slots,
    /// The entries its full slots name (read from the run's slots).
    Entries,
}

/// What one [`Table::expire_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStep {
    /// Entries looked at.
    pub visited: usize,
    /// Of them, with a deadline.
    pub with_deadline: usize,
    /// Of them, expired and removed.
    pub expired: usize,
    /// Sum of the time left (ms) of the entries with a deadline that are not expired: with
    /// `with_deadline - expired`, the sample for the average TTL.
    pub ttl_sum: u64,
    /// The walk reached the end of the arena (a round is complete).
    pub round_done: bool,
}

/// The expiry sweep's place in the arena and its reusable buffer.
#[derive(Default)]
struct Sweep {
    cursor: WalkCursor,
    expired: Vec<Handle>,
}

/// Byte keys to byte values (see the module docs).
///
/// Written here rather than taken from `hashbrown` for three reasons: the memory layout,
/// incremental growth, and prefetching. A pipelined batch of requests asks for the cache lines
/// of all its keys before the first one executes, so their cache misses overlap instead of
/// adding up (the shard's `prefetch_keys`). In a same-process A/B over 100k keys, batches of
/// 16 looked up with the two prefetch steps took ~105 ns per key against ~150 ns one by one
/// (and ~145 ns for `hashbrown`).
#[derive(Default)]
pub struct Table {
    /// Where new keys go.
    index: Index,
    /// The previous index while it drains into `index` (boxed: most tables have none).
    old: Option<Box<Draining>>,
    /// Entries in both indexes.
    len: usize,
    hasher: ahash::RandomState,
    arena: Arena,
    /// The scan in progress, if any (boxed: tables without one pay a pointer).
    scan: Option<Box<Scan>>,
    /// Entries with a deadline (expired ones not reclaimed yet included).
    with_deadline: usize,
    /// The expiry sweep's state, once one ran (boxed: most tables never sweep).
    sweep: Option<Box<Sweep>>,
    /// Whether and how entries carry access bits, and the clock that stamps them.
    access: AccessClock,
}

/// A scan in progress (see the module docs).
#[derive(Default)]
struct Scan {
    /// True once the old index was walked (or there was none): `cursor` is in the new one.
    in_new: bool,
    /// Slots below this of the index being walked were visited.
    cursor: usize,
    /// Keys of entries moved from the unvisited part into the visited part.
    rescued: Vec<Box<[u8]>>,
}

impl Table {
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The handle at a place a lookup returned.
    #[inline]
    fn handle_at(&self, at: At) -> Handle {
        match (at, &self.old) {
            (At::New(i), _) => self.index.handle(i),
            (At::Old(i), Some(old)) => old.index.handle(i),
            (At::Old(_), None) => unreachable!("a key found in the old index outlives it"),
        }
    }

    /// Where `key` is and its entry: the current index first, then the draining one.
    #[inline(always)]
    fn find_hashed(&self, hash: u64, key: &[u8]) -> Option<(At, EntryRef<'_>)> {
        if self.len == 0 {
            return None;
        }
        if let Some((i, entry)) = self.index.find(&self.arena, hash, key) {
            return Some((At::New(i), entry));
        }
        let (i, entry) = self.old.as_ref()?.index.find(&self.arena, hash, key)?;
        Some((At::Old(i), entry))
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.get_entry(key).map(|entry| entry.value)
    }

    /// The key's value and deadline.
    #[inline(always)]
    pub fn get_entry(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.find_hashed(self.hash(key), key)
            .map(|(_, entry)| entry)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut [u8]> {
        let (at, _) = self.find_hashed(self.hash(key), key)?;
        let handle = self.handle_at(at);
        Some(self.arena.value_mut(handle))
    }

    /// Entries with a deadline (expired ones not reclaimed yet included).
    #[inline]
    pub fn with_deadline(&self) -> usize {
        self.with_deadline
    }

    /// Points whichever index holds `at` at `handle`.
    #[inline]
    fn repoint(&mut self, at: At, handle: Handle) {
        match at {
            At::New(i) => self.index.repoint(i, handle),
            At::Old(i) => {
                if let Some(d) = &mut self.old {
                    d.index.repoint(i, handle);
                }
            }
        }
    }

    /// Sets (or, with `None`, removes) the deadline of `key`; returns the previous one, or
    /// `None` when the key is absent (nothing changes then).
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>) -> Option<Option<u64>> {
        let (at, entry) = self.find_hashed(self.hash(key), key)?;
        let old = entry.deadline;
        let handle = self.handle_at(at);
        match (old, deadline) {
            (Some(_), Some(ms)) => self.arena.set_deadline_in_place(handle, ms),
            (None, None) => {}
            _ => {
                // The entry changes size: write it again with or without the 8 bytes.
                let access = self.carried_access(handle);
                let (key, value) = self.arena.get(handle);
                let copy: Vec<u8> = [key, value].concat();
                let new =
                    self.arena
                        .alloc(&copy[..key.len()], &copy[key.len()..], deadline, access);
                self.arena.free(handle);
                self.repoint(at, new);
                if deadline.is_some() {
                    self.with_deadline += 1;
                } else {
                    self.with_deadline -= 1;
                }
                self.compact_if_needed();
            }
        }
        Some(old)
    }

    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find_hashed(self.hash(key), key).is_some()
    }

    /// The hash a lookup of `key` uses, for [`Table::prefetch`] and
    /// [`Table::prefetch_entry`] (computed once for both).
    #[inline]
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.hash(key)
    }

    /// Starts loading the control word and slot where a key of this hash would be: step one
    /// of a batch.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.index.prefetch(hash);
        if let Some(old) = &self.old {
            old.index.prefetch(hash);
        }
    }

    /// Starts loading the entry a key of this hash probably lives in: step two of a batch,
    /// once step one's lines have arrived. Compares tags only (comparing keys would wait for
    /// the miss).
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        if self.len == 0 || self.index.prefetch_entry(&self.arena, hash) {
            return;
        }
        if let Some(old) = &self.old {
            old.index.prefetch_entry(&self.arena, hash);
        }
    }

    /// Stores `value` under `key`; returns the previous value's length if there was one.
    #[inline]
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Option<usize> {
        self.insert_entry(key, value, None).map(|old| old.value_len)
    }

    /// Stores `value` under `key` with exactly this deadline (`None`: none, whatever the key
    /// had); returns what it replaced.
    #[inline]
    pub fn insert_entry(
        &mut self,
        key: &[u8],
        value: &[u8],
        deadline: Option<u64>,
    ) -> Option<OldEntry> {
        let hash = self.hash(key);
        if let Some((at, entry)) = self.find_hashed(hash, key) {
            let old = OldEntry {
                value_len: entry.value.len(),
                deadline: entry.deadline,
            };
            let handle = self.handle_at(at);
            if old.value_len == value.len() && old.deadline.is_some() == deadline.is_some() {
                // Same size: overwrite in place.
                self.arena.value_mut(handle).copy_from_slice(value);
                if let Some(ms) = deadline {
                    self.arena.set_deadline_in_place(handle, ms);
                }
            } else {
                let access = self.carried_access(handle);
                let new = self.arena.alloc(key, value, deadline, access);
                self.arena.free(handle);
                self.repoint(at, new);
                self.with_deadline = self.with_deadline + deadline.is_some() as usize
                    - old.deadline.is_some() as usize;
                self.compact_if_needed();
            }
            return Some(old);
        }
        if (self.len + 1) * 8 > self.index.capacity() * 7 {
            self.grow();
        }
        let access = self.access.fresh();
        let handle = self.arena.alloc(key, value, deadline, access);
        self.index.place(hash, handle);
        self.len += 1;
        self.with_deadline += deadline.is_some() as usize;
        self.drain_step();
        None
    }

    /// The access bits a rewrite of the entry `handle` keeps: its own, or fresh ones when it
    /// has none; none when the table does not track.
    #[inline]
    fn carried_access(&mut self, handle: Handle) -> Option<u32> {
        if self.access.tracking() == Tracking::Off {
            return None;
        }
        self.arena.access(handle).or_else(|| self.access.fresh())
    }

    /// Makes the entries this table writes from now on carry access bits of this kind (or
    /// none). Entries already there keep what they have until they are written or touched.
    pub fn set_tracking(&mut self, tracking: Tracking) {
        self.access.set_tracking(tracking);
    }

    /// The access clock: what the table stamps, and how an evictor ranks stamps.
    #[inline]
    pub fn access(&self) -> &AccessClock {
        &self.access
    }

    /// A random number from the table's generator (an evictor's sample position).
    #[inline]
    pub fn random(&mut self) -> u64 {
        self.access.random()
    }

    /// Records an access to `key` in its access bits (an LRU stamp, an LFU increment); an
    /// entry written before the table tracked gets its field now (it is rewritten once).
    /// Does nothing when the key is absent or the table does not track. Never moves other
    /// entries' slots, and compacts at most one segment, as any write does.
    pub fn touch(&mut self, key: &[u8]) {
        if self.access.tracking() == Tracking::Off {
            return;
        }
        let Some((at, entry)) = self.find_hashed(self.hash(key), key) else {
            return;
        };
        let deadline = entry.deadline;
        let handle = self.handle_at(at);
        let clock = &mut self.access;
        if self.arena.update_access(handle, |old| clock.touched(old)) {
            return;
        }
        let (key, value) = self.arena.get(handle);
        let copy: Vec<u8> = [key, value].concat();
        let bits = self.access.fresh().map(|fresh| self.access.touched(fresh));
        let new = self
            .arena
            .alloc(&copy[..key.len()], &copy[key.len()..], deadline, bits);
        self.arena.free(handle);
        self.repoint(at, new);
        self.compact_if_needed();
    }

    /// The key's entry and access bits (an evictor re-checking a candidate).
    #[inline]
    pub fn get_with_access(&self, key: &[u8]) -> Option<(EntryRef<'_>, Option<u32>)> {
        let (at, _) = self.find_hashed(self.hash(key), key)?;
        let (_, value, deadline, bits) = self.arena.entry_with_access(self.handle_at(at));
        Some((EntryRef { value, deadline }, bits))
    }

    /// Visits entries at random: looks at up to `tries` slots drawn uniformly from both indexes
    /// (a sequence seeded by `random`), and calls `visit(key, entry, access bits)` for each
    /// full one until it returned true `count` times. Returns how many times it did.
    ///
    /// Every entry is equally likely to be visited. Walking forward from one random slot, as
    /// Redis's `dictGetSomeKeys` does, costs fewer cache lines but is not fair here: with
    /// linear probing the first key after a run of empty slots is picked far more often, and
    /// that is usually a long-lived key sitting in its home slot, hence a hot one. On the
    /// zipf benchmark the walk cost allkeys-random 0.8 points and allkeys-lfu 0.5.
    pub fn sample(
        &self,
        random: u64,
        count: usize,
        tries: usize,
        mut visit: impl FnMut(&[u8], EntryRef, Option<u32>) -> bool,
    ) -> usize {
        if self.len == 0 || count == 0 {
            return 0;
        }
        /// Slots drawn and prefetched together: their cache misses (control word, handle,
        /// then entry) overlap instead of adding up, which at a quota of 100k keys is most of
        /// what an eviction costs.
        const BATCH: usize = 8;
        let old = self.old.as_ref().map(|d| &d.index);
        let (new_slots, old_slots) = (self.index.capacity(), old.map_or(0, |i| i.capacity()));
        let slots = (new_slots + old_slots) as u64;
        /// Entries remembered to be visited once per sample (samples are small).
        const SEEN: usize = 16;
        let mut taken_slots = [usize::MAX; SEEN];
        let mut state = random;
        let mut taken = 0;
        let mut tried = 0;
        while tried < tries {
            // (About two draws per entry wanted: the index is 7/16 to 7/8 full.)
            let n = BATCH
                .min(tries - tried)
                .min((count - taken).saturating_mul(2))
                .max(1);
            tried += n;
            let mut picks = [(&self.index, 0usize, 0usize); BATCH];
            for pick in picks.iter_mut().take(n) {
                // splitmix64: a fresh draw per try from one seed.
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                // Both sizes are powers of two, so a slot of either is a uniform draw below
                // their sum (multiply-shift: no division).
                let slot = ((u128::from(z) * u128::from(slots)) >> 64) as usize;
                *pick = match old {
                    Some(old) if slot >= new_slots => (old, slot - new_slots, slot),
                    _ => (&self.index, slot, slot),
                };
                prefetch(&pick.0.ctrl[pick.1]);
                prefetch(&pick.0.slots[pick.1]);
            }
            for &(index, i, _) in picks.iter().take(n) {
                if index.is_full(i) {
                    let entry = self.arena.address(index.handle(i));
                    prefetch(entry);
                    prefetch(entry.wrapping_add(63));
                }
            }
            for &(index, i, slot) in picks.iter().take(n) {
                // (An entry drawn twice counts once: a sample of 5 is 5 different keys.)
                if !index.is_full(i) || taken_slots[..taken.min(SEEN)].contains(&slot) {
                    continue;
                }
                let (key, value, deadline, bits) = self.arena.entry_with_access(index.handle(i));
                if visit(key, EntryRef { value, deadline }, bits) {
                    if taken < SEEN {
                        taken_slots[taken] = slot;
                    }
                    taken += 1;
                    if taken == count {
                        return taken;
                    }
                }
            }
        }
        taken
    }

    /// Visits every full slot of a run of `window` consecutive slots, starting at a slot drawn
    /// uniformly (from `random`) over both indexes, calling `visit(key, entry, access bits)`
    /// for each; returns how many it visited. What an LRU, LFU or TTL evictor samples with
    /// (Redis's `dictGetSomeKeys` takes keys from consecutive buckets too).
    ///
    /// Fair, unlike a walk that stops after a number of keys (see [`Table::sample`]): every
    /// slot lies in the run with the same probability (`window` over the slots of both
    /// indexes), so every entry is equally likely to be visited, wherever it sits in its
    /// cluster. Cheaper than as many slots drawn one by one: one random number, and the run's
    /// control words and handles share one or two cache lines, where each drawn slot is two
    /// cache misses of its own; the entries (the remaining misses, one each) are prefetched
    /// together before any is read.
    pub fn sample_window(
        &self,
        random: u64,
        window: usize,
        mut visit: impl FnMut(&[u8], EntryRef, Option<u32>),
    ) -> usize {
        if self.len == 0 || window == 0 {
            return 0;
        }
        /// Entries prefetched together: their misses overlap instead of adding up.
        const BATCH: usize = 16;
        let (index, mut i) = self.window_start(random);
        let mask = index.mask();
        let mut left = window.min(index.capacity());
        let mut visited = 0;
        let mut handles = [0 as Handle; BATCH];
        while left > 0 {
            let mut n = 0;
            while left > 0 && n < BATCH {
                if index.is_full(i) {
                    let handle = index.handle(i);
                    let entry = self.arena.address(handle);
                    prefetch(entry);
                    // (An entry may straddle two lines; its access bits are at its end.)
                    prefetch(entry.wrapping_add(63));
                    handles[n] = handle;
                    n += 1;
                }
                i = (i + 1) & mask;
                left -= 1;
            }
            for &handle in &handles[..n] {
                let (key, value, deadline, bits) = self.arena.entry_with_access(handle);
                visit(key, EntryRef { value, deadline }, bits);
            }
            visited += n;
        }
        visited
    }

    /// The index and slot a [`Table::sample_window`] of `random` starts at: a slot drawn
    /// uniformly over both indexes.
    #[inline]
    fn window_start(&self, random: u64) -> (&Index, usize) {
        let old = self.old.as_ref().map(|d| &d.index);
        let (new_slots, old_slots) = (self.index.capacity(), old.map_or(0, |i| i.capacity()));
        // splitmix64's finalizer: every bit of `random` reaches the top ones, which pick the
        // slot. Both sizes are powers of two: a uniform draw below their sum by multiply-shift.
        let mut z = random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let slot = ((u128::from(z) * (new_slots + old_slots) as u128) >> 64) as usize;
        match old {
            Some(old) if slot >= new_slots => (old, slot - new_slots),
            _ => (&self.index, slot),
        }
    }

    /// Starts loading what a later [`Table::sample_window`] of the same `random` and `window`
    /// will read: its run's control words and handles ([`WindowPart::Slots`]), or, once those
    /// are in cache, the entries they name ([`WindowPart::Entries`]). An evictor draws its
    /// next samples' positions ahead and asks for each part an eviction before it needs it,
    /// so that a sample finds its memory in cache instead of waiting for two misses in a
    /// row. Only a hint: whatever changes in between, the sample reads the table as it is.
    pub fn prefetch_window(&self, random: u64, window: usize, part: WindowPart) {
        if self.len == 0 || window == 0 {
            return;
        }
        /// Slots of a window prefetched at most (a `volatile-*` policy's window over a table
        /// with few deadlines may span thousands: its first slots are what a sample reads first).
        const MOST: usize = 64;
        let (index, start) = self.window_start(random);
        let window = window.min(index.capacity()).min(MOST);
        let mask = index.mask();
        match part {
            WindowPart::Slots => {
                let end = (start + window - 1) & mask;
                for i in [start, end] {
                    prefetch(&index.ctrl[i]);
                    prefetch(&index.slots[i]);
                }
            }
            WindowPart::Entries => {
                let mut i = start;
                for _ in 0..window {
                    if index.is_full(i) {
                        let entry = self.arena.address(index.handle(i));
                        prefetch(entry);
                        prefetch(entry.wrapping_add(63));
                    }
                    i = (i + 1) & mask;
                }
            }
        }
    }

    /// Looks `key` up once (by `hash`, when the caller has it: [`Table::hash_key`]) and removes
    /// it when `decide(entry, access bits, clock)` says so:
    /// an evictor checks that a pooled candidate still ranks as it did, then removes it, with
    /// one lookup for both. Returns what the removed entry held; `None` when the key is absent
    /// or `decide` kept it.
    pub fn remove_if(
        &mut self,
        key: &[u8],
        hash: Option<u64>,
        decide: impl FnOnce(EntryRef, Option<u32>, &AccessClock) -> bool,
    ) -> Option<OldEntry> {
        let hash = hash.unwrap_or_else(|| self.hash(key));
        let (at, _) = self.find_hashed(hash, key)?;
        let (_, value, deadline, bits) = self.arena.entry_with_access(self.handle_at(at));
        let old = OldEntry {
            value_len: value.len(),
            deadline,
        };
        if !decide(EntryRef { value, deadline }, bits, &self.access) {
            return None;
        }
        self.remove_at(at, deadline.is_some());
        self.compact_if_needed();
        Some(old)
    }

    /// Evicts the entry under the eviction hand (`allkeys-lru`, CLOCK: see "The eviction
    /// hand" in `super::arena`): the oldest entry, except that one touched since it was
    /// written (up to [`SECOND_CHANCES`] of them), or one `keep(key)` names, is moved to the
    /// tail with its mark cleared and the hand goes on; an expired one goes whatever its mark.
    /// Reports the victim to `evicted` before it goes and returns its key and what it held;
    /// `None` when there is no entry, or only kept ones.
    pub fn evict_by_hand(
        &mut self,
        now: u64,
        keep: impl Fn(&[u8]) -> bool,
        evicted: impl FnOnce(&[u8], EntryRef),
    ) -> Option<(Vec<u8>, OldEntry)> {
        // A mark is cleared as its entry moves: every entry is met at most twice (kept ones
        // once per round) before the hand finds a victim. One eviction gives at most
        // SECOND_CHANCES of them, then takes the next key that is not kept, marked or not: a
        // table whose every key was read since it was written (a client can read them all)
        // would otherwise have one write move all of them.
        let mut chances = 0;
        for _ in 0..=2 * self.len {
            let handle = self.arena.hand()?;
            let (key, value, deadline, bits) = self.arena.entry_with_access(handle);
            let hash = self.hash(key);
            let at = self
                .slot_of(hash, handle)
                .expect("every live entry has a slot");
            let expired = deadline.is_some_and(|d| now > d);
            let marked = !expired && AccessClock::read_since_written(bits);
            let kept = keep(key);
            if kept || (marked && chances < SECOND_CHANCES) {
                chances += usize::from(!kept);
                let new = self
                    .arena
                    .move_to_tail(handle, bits.map(AccessClock::passed));
                self.repoint(at, new);
                continue;
            }
            evicted(key, EntryRef { value, deadline });
            let victim = (
                key.to_vec(),
                OldEntry {
                    value_len: value.len(),
                    deadline,
                },
            );
            self.remove_at(at, deadline.is_some());
            self.compact_if_needed();
            return Some(victim);
        }
        None
    }

    /// [`Table::sample`] over every slot of both indexes, from their first: what an evictor
    /// falls back to when random samples found nothing it may evict (a `volatile-*` policy on
    /// a table with few deadlines), so that it finds one whenever there is one.
    pub fn sample_all(
        &self,
        count: usize,
        mut visit: impl FnMut(&[u8], EntryRef, Option<u32>) -> bool,
    ) -> usize {
        let mut taken = 0;
        for index in std::iter::once(&self.index).chain(self.old.as_ref().map(|d| &d.index)) {
            if taken < count {
                taken += self.sample_index(index, 0, count - taken, usize::MAX, &mut visit);
            }
        }
        taken
    }

    fn sample_index(
        &self,
        index: &Index,
        start: usize,
        count: usize,
        walk: usize,
        visit: &mut impl FnMut(&[u8], EntryRef, Option<u32>) -> bool,
    ) -> usize {
        if index.capacity() == 0 || count == 0 {
            return 0;
        }
        let mask = index.mask();
        let mut i = start & mask;
        let mut taken = 0;
        for _ in 0..walk.min(index.capacity()) {
            if index.is_full(i) {
                let handle = index.handle(i);
                let (key, value, deadline) = self.arena.entry(handle);
                if visit(key, EntryRef { value, deadline }, self.arena.access(handle)) {
                    taken += 1;
                    if taken == count {
                        break;
                    }
                }
            }
            i = (i + 1) & mask;
        }
        taken
    }

    fn grow(&mut self) {
        let capacity = (self.index.capacity() * 2).max(MIN_CAPACITY);
        if capacity <= INCREMENTAL_FROM {
            self.resize(capacity);
            return;
        }
        self.drain_into(capacity);
    }

    /// Gives a table that lost most of its keys (an expiry storm, a mass DEL) a smaller index:
    /// once fewer than one slot in [`SHRINK_BELOW`] is used, the index is replaced by one of two
    /// to four slots per key (at most half full), drained into incrementally like a growth, so
    /// that the memory of the big one comes back without a stall.
    #[inline]
    fn shrink_if_sparse(&mut self) {
        let capacity = self.index.capacity();
        if capacity <= MIN_CAPACITY || self.len * SHRINK_BELOW >= capacity || self.old.is_some() {
            return;
        }
        let target = (self.len * 2).next_power_of_two().max(MIN_CAPACITY);
        if capacity <= INCREMENTAL_FROM {
            self.resize(target);
        } else {
            self.drain_into(target);
        }
    }

    /// Makes a new index of `capacity` slots the current one, and the current one the index
    /// being drained into it (see the module docs).
    fn drain_into(&mut self, capacity: usize) {
        // Finish the previous drain first: its index is half this one's and was given as many
        // writes as the last growth left room for, so little is usually left.
        while self.old.is_some() {
            self.drain_step();
        }
        let old = std::mem::replace(&mut self.index, Index::with_capacity(capacity));
        // Never fails: an index is at most 7/8 full.
        let start = (0..old.capacity()).find(|&i| !old.is_full(i)).unwrap_or(0);
        self.old = Some(Box::new(Draining {
            next: (start + 1) & old.mask(),
            start,
            left: self.len,
            index: old,
        }));
        if let Some(scan) = &mut self.scan {
            // Every entry is in the old index now: walk again from its start.
            **scan = Scan::default();
        }
    }

    /// Moves at least [`DRAIN_STEP`] entries (whole clusters) from the draining index into
    /// the current one; drops the old index once it is empty.
    fn drain_step(&mut self) {
        let Some(d) = &mut self.old else {
            return;
        };
        let mask = d.index.mask();
        let (mut moved, mut walked) = (0, 0);
        while d.next != d.start && d.left > 0 {
            let i = d.next;
            walked += 1;
            if d.index.is_full(i) {
                let handle = d.index.handle(i);
                let hash = self.hasher.hash_one(self.arena.key(handle));
                self.index.place(hash, handle);
                d.index.ctrl[i] = EMPTY;
                d.left -= 1;
                moved += 1;
            } else if moved >= DRAIN_STEP || walked >= DRAIN_WALK {
                // At a cluster boundary: the old index is consistent again. (A sparse index,
                // after a shrink, has long runs of empty slots: the walk is bounded too.)
                break;
            }
            d.next = (i + 1) & mask;
        }
        if d.left == 0 || d.next == d.start {
            if d.left > 0 {
                // The walk went all the way round and keys are left: the invariants above
                // were broken. Never seen; recover by rehashing everything into one index.
                debug_assert!(false, "{} keys left after draining", d.left);
                self.resize(self.index.capacity());
                return;
            }
            self.old = None;
            if let Some(scan) = &mut self.scan {
                if !scan.in_new {
                    // Whatever the walk had not reached in the old index is in the new one,
                    // which it walks in full.
                    **scan = Scan {
                        in_new: true,
                        ..Scan::default()
                    };
                }
            }
        }
    }

    /// Drains a step of the old index, if one is draining. Writes drain as they go; a data
    /// command of any kind calls this too, so that a table that grew and then is only read
    /// (or only overwritten) stops paying a second probe and the old index's memory.
    #[inline]
    pub fn maintain(&mut self) {
        if self.old.is_some() {
            self.drain_step();
        }
    }

    /// Makes room for `additional` more keys at once (recovery knows how many are coming:
    /// one rehash instead of twenty).
    pub fn reserve(&mut self, additional: usize) {
        let want = (self.len + additional).saturating_mul(8) / 7 + 1;
        let capacity = want.next_power_of_two().max(MIN_CAPACITY);
        if capacity > self.index.capacity() {
            self.resize(capacity);
        }
    }

    /// Rehashes every entry, the draining index's too, into one index of `capacity` slots, at
    /// once (small tables and [`Table::reserve`]).
    ///
    /// Rehashing reads each entry's key from the arena and writes a random slot of the new
    /// index: two cache misses per entry, which one at a time took ~110 ms at a million keys.
    /// The misses are overlapped instead: the entry `2 * AHEAD` places ahead is prefetched,
    /// the one `AHEAD` ahead is hashed and its new slot prefetched (~50 ms).
    fn resize(&mut self, capacity: usize) {
        const AHEAD: usize = 8;
        if let Some(scan) = &mut self.scan {
            // Every entry moves: start the walk again.
            **scan = Scan::default();
        }
        let mut handles = Vec::with_capacity(self.len);
        for index in std::iter::once(&self.index).chain(self.old.as_ref().map(|d| &d.index)) {
            handles.extend(
                (0..index.capacity())
                    .filter(|&i| index.is_full(i))
                    .map(|i| index.handle(i)),
            );
        }
        // Free the old indexes before the new one is touched.
        self.index = Index::default();
        self.old = None;
        self.index = Index::with_capacity(capacity);
        let mut hashes = [0u64; AHEAD];
        let hash_ahead = |table: &Table, at: usize| {
            let hash = table.hash(table.arena.key(handles[at]));
            table.index.prefetch(hash);
            hash
        };
        for (at, slot) in hashes.iter_mut().enumerate().take(handles.len()) {
            *slot = hash_ahead(self, at);
        }
        for i in 0..handles.len() {
            if let Some(&h) = handles.get(i + 2 * AHEAD) {
                prefetch(self.arena.address(h));
            }
            let hash = hashes[i % AHEAD];
            if i + AHEAD < handles.len() {
                hashes[i % AHEAD] = hash_ahead(self, i + AHEAD);
            }
            self.index.place(hash, handles[i]);
        }
    }

    /// Removes `key`; returns its value's length if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Option<usize> {
        self.remove_entry(key).map(|old| old.value_len)
    }

    /// Removes `key`; returns what it held if it was there.
    pub fn remove_entry(&mut self, key: &[u8]) -> Option<OldEntry> {
        let (at, entry) = self.find_hashed(self.hash(key), key)?;
        let old = OldEntry {
            value_len: entry.value.len(),
            deadline: entry.deadline,
        };
        self.remove_at(at, old.deadline.is_some());
        self.compact_if_needed();
        Some(old)
    }

    /// Removes `key`, showing its entry to `before` just before it goes (one lookup for both:
    /// an eviction reports what it removes); returns what it held if it was there.
    pub fn remove_reporting(
        &mut self,
        key: &[u8],
        before: impl FnOnce(EntryRef),
    ) -> Option<OldEntry> {
        let (at, entry) = self.find_hashed(self.hash(key), key)?;
        let old = OldEntry {
            value_len: entry.value.len(),
            deadline: entry.deadline,
        };
        before(entry);
        self.remove_at(at, old.deadline.is_some());
        self.compact_if_needed();
        Some(old)
    }

    /// Removes `key`; returns its value and deadline if it was there.
    pub fn take(&mut self, key: &[u8]) -> Option<(Box<[u8]>, Option<u64>)> {
        let (at, entry) = self.find_hashed(self.hash(key), key)?;
        let (value, deadline) = (entry.value.into(), entry.deadline);
        self.remove_at(at, deadline.is_some());
        self.compact_if_needed();
        Some((value, deadline))
    }

    /// Removes every entry (and any scan or sweep in progress), keeping nothing allocated.
    pub fn clear(&mut self) {
        // (The table's tracking is its partition's policy: it stays.)
        let access = std::mem::take(&mut self.access);
        *self = Table::default();
        self.access = access;
    }

    /// Removes the entry at `at` from its index and the arena. Does not compact the arena
    /// (callers do, once they hold no handle that compaction could move).
    fn remove_at(&mut self, at: At, had_deadline: bool) {
        self.unlink(at, had_deadline);
        self.drain_step();
        self.shrink_if_sparse();
    }

    /// [`Table::remove_at`] without its drain step and shrink check: the expiry sweep removes
    /// many entries in a row and does those once for the whole slice (a drain step per removal
    /// made a slice of 64 removals during a shrink take milliseconds).
    fn unlink(&mut self, at: At, had_deadline: bool) {
        self.arena.free(self.handle_at(at));
        self.len -= 1;
        self.with_deadline -= had_deadline as usize;
        let Table {
            index,
            old,
            arena,
            hasher,
            scan,
            ..
        } = self;
        // Keys that the backward shift moves from the unvisited part of the index being
        // walked into its visited part are rescued (see the module docs).
        let (index, hole, walked) = match at {
            At::New(i) => (index, i, scan.as_ref().is_some_and(|s| s.in_new)),
            At::Old(i) => {
                let d = old
                    .as_mut()
                    .expect("a key found in the old index outlives it");
                d.left -= 1;
                (&mut d.index, i, scan.as_ref().is_some_and(|s| !s.in_new))
            }
        };
        index.remove_at(hole, arena, hasher, |from, to, handle| {
            if let Some(scan) = scan.as_mut().filter(|_| walked) {
                if to < scan.cursor && from >= scan.cursor {
                    scan.rescued.push(arena.key(handle).into());
                }
            }
        });
    }

    /// Moves the live entries of the arena's emptiest segment to its tail when the arena is
    /// more than a quarter dead (see the module docs).
    fn compact_if_needed(&mut self) {
        if !self.arena.wants_compaction() {
            return;
        }
        let Some(taken) = self.arena.take_segment() else {
            return;
        };
        // Re-pointing a moved entry's slot probes from its key's home: a cache miss per entry
        // once the index outgrows the cache (at a quota of 100k keys, compaction was a
        // twentieth of an evicting SET's time). Each entry's home is prefetched when it is
        // copied and its slot re-pointed AHEAD entries later, so that the misses overlap.
        // (Until then the slot names the old handle, which stays unique: the taken
        // segment's id is recycled last.)
        const AHEAD: usize = 8;
        let mut pending = [(0 as Handle, 0 as Handle, 0u64); AHEAD];
        let mut copied = 0;
        for (old, encoded) in taken.entries() {
            let new = self.arena.append_raw(encoded);
            let hash = self.hash(self.arena.key(new));
            self.prefetch(hash);
            let slot = &mut pending[copied % AHEAD];
            let due = std::mem::replace(slot, (old, new, hash));
            if copied >= AHEAD {
                self.repoint_moved(due);
            }
            copied += 1;
        }
        for k in copied.saturating_sub(AHEAD)..copied {
            self.repoint_moved(pending[k % AHEAD]);
        }
        self.arena.recycle(taken);
    }

    /// Points the slot of the entry compaction moved from `old` to `new` (its key hashing to
    /// `hash`) at `new`.
    #[inline]
    fn repoint_moved(&mut self, (old, new, hash): (Handle, Handle, u64)) {
        if let Some(at) = self.slot_of(hash, old) {
            self.repoint(at, new);
        }
    }

    /// Where the entry `handle` (whose key hashes to `hash`) has its slot: the current index
    /// first, then the draining one. Every live entry has a slot in one of the two.
    fn slot_of(&self, hash: u64, handle: Handle) -> Option<At> {
        if let Some(i) = self.index.slot_of(hash, handle) {
            return Some(At::New(i));
        }
        let i = self.old.as_ref()?.index.slot_of(hash, handle)?;
        Some(At::Old(i))
    }

    /// One SCAN call: visits the entries whose hash position (the top [`CURSOR_BITS`] bits)
    /// is from `cursor` on, a range of home slots at a time, until about `count` were visited
    /// (or ten times `count` homes were looked at: a sparse table answers in bounded time);
    /// returns the cursor to continue from, 0 when the walk is complete.
    ///
    /// Keys are enumerated by hash, not by where they happen to sit, so nothing that moves
    /// entries between calls can make a walk miss one (see "SCAN" in the module docs).
    pub fn scan_keys(
        &self,
        cursor: u64,
        count: usize,
        mut visit: impl FnMut(&[u8], EntryRef),
    ) -> u64 {
        let indexes = [Some(&self.index), self.old.as_ref().map(|d| &d.index)];
        let indexes = indexes.iter().flatten().filter(|i| i.capacity() > 0);
        let (Some(fine), Some(coarse)) = (
            indexes.clone().map(|i| i.bits()).max(),
            indexes.clone().map(|i| i.bits()).min(),
        ) else {
            return 0;
        };
        if cursor >= CURSOR_END {
            return 0;
        }
        // Work in whole homes of the smaller index, so that a range is whole homes in both.
        let unit = 1u64 << (CURSOR_BITS - coarse);
        let fine_unit = 1u64 << (CURSOR_BITS - fine);
        let count = count.max(1);
        let chunk = ((count as u64).saturating_mul(fine_unit)).div_ceil(unit) * unit;
        let mut pos = cursor & !(unit - 1);
        let (mut visited, mut homes) = (0usize, 0u64);
        while pos < CURSOR_END {
            let end = pos.saturating_add(chunk).min(CURSOR_END);
            for index in indexes.clone() {
                let shift = CURSOR_BITS - index.bits();
                let (from, to) = ((pos >> shift) as usize, (end >> shift) as usize);
                visited += index.visit_homes(from, to, &self.arena, &self.hasher, &mut visit);
            }
            homes += (end - pos) / fine_unit;
            pos = end;
            if visited >= count || homes >= 10 * count as u64 {
                break;
            }
        }
        if pos >= CURSOR_END {
            0
        } else {
            pos
        }
    }

    /// One step of the active expiry sweep: walks up to `max` entries of the arena from where
    /// the last step stopped, and removes those whose deadline is before `now` (unix ms),
    /// calling `expired(key, entry)` for each just before it goes.
    pub fn expire_step(
        &mut self,
        now: u64,
        max: usize,
        mut expired: impl FnMut(&[u8], EntryRef),
    ) -> SweepStep {
        let mut step = SweepStep::default();
        if self.with_deadline == 0 {
            step.round_done = true;
            return step;
        }
        let mut sweep = self.sweep.take().unwrap_or_default();
        sweep.expired.clear();
        let round_done = self.arena.walk(&mut sweep.cursor, max, |e: Walked| {
            step.visited += 1;
            if let Some(deadline) = e.deadline {
                step.with_deadline += 1;
                if now > deadline {
                    sweep.expired.push(e.handle);
                } else {
                    step.ttl_sum = step.ttl_sum.saturating_add(deadline - now);
                }
            }
        });
        step.round_done = round_done;
        // No compaction until every collected handle is removed: it would move entries.
        for &handle in &sweep.expired {
            let (key, value, deadline) = self.arena.entry(handle);
            let hash = self.hash(key);
            let Some(at) = self.slot_of(hash, handle) else {
                continue;
            };
            expired(key, EntryRef { value, deadline });
            self.unlink(at, true);
            step.expired += 1;
        }
        self.sweep = Some(sweep);
        if step.expired > 0 {
            self.drain_step();
            self.shrink_if_sparse();
            self.compact_if_needed();
        }
        step
    }

    /// Bytes of arena (live and dead) and of them live: for tests and INFO-style reports.
    pub fn arena_usage(&self) -> (usize, usize) {
        self.arena.usage()
    }

    /// Bytes the indexes take (control words and handles), the draining one's included.
    pub fn index_bytes(&self) -> usize {
        let slots = self.index.capacity() + self.old.as_ref().map_or(0, |d| d.index.capacity());
        slots * (std::mem::size_of::<u16>() + std::mem::size_of::<u32>())
    }

    /// Entries still in the index being drained, if one is (tests).
    pub fn draining(&self) -> Option<usize> {
        self.old.as_ref().map(|d| d.left)
    }

    /// Starts a scan over every entry present now (restarts one in progress).
    pub fn begin_scan(&mut self) {
        self.scan = Some(Box::default());
    }

    /// Stops the scan in progress, if any.
    pub fn end_scan(&mut self) {
        self.scan = None;
    }

    /// Visits up to `max` entries of the scan in progress. True when the scan is complete:
    /// every entry present at `begin_scan` and still present was visited at least once. True
    /// at once without a scan.
    pub fn scan_step(&mut self, max: usize, mut visit: impl FnMut(&[u8], &[u8])) -> bool {
        self.scan_step_by(max, |key, entry| {
            visit(key, entry.value);
            1
        })
    }

    /// [`Table::scan_step`] with a budget in the caller's units: each visit returns what it
    /// cost, and the step stops once `budget` is spent (the visit that overspends it still
    /// happens, so every step makes progress).
    pub fn scan_step_by(
        &mut self,
        budget: usize,
        mut visit: impl FnMut(&[u8], EntryRef) -> usize,
    ) -> bool {
        let Some(mut scan) = self.scan.take() else {
            return true;
        };
        let mut budget = budget;
        while budget > 0 {
            let Some(key) = scan.rescued.pop() else {
                break;
            };
            // A rescued key that is gone again still cost a lookup.
            budget -= 1;
            if let Some((at, _)) = self.find_hashed(self.hash(&key), &key) {
                let (key, value, deadline) = self.arena.entry(self.handle_at(at));
                budget = budget.saturating_sub(visit(key, EntryRef { value, deadline }));
            }
        }
        while budget > 0 {
            let index = match (&self.old, scan.in_new) {
                (Some(d), false) => &d.index,
                (None, false) => {
                    scan.in_new = true;
                    scan.cursor = 0;
                    continue;
                }
                (_, true) => &self.index,
            };
            if scan.cursor >= index.capacity() {
                if scan.in_new {
                    break;
                }
                scan.in_new = true;
                scan.cursor = 0;
                continue;
            }
            if index.is_full(scan.cursor) {
                let (key, value, deadline) = self.arena.entry(index.handle(scan.cursor));
                budget = budget.saturating_sub(visit(key, EntryRef { value, deadline }).max(1));
            }
            scan.cursor += 1;
        }
        let done = scan.in_new && scan.cursor >= self.index.capacity() && scan.rescued.is_empty();
        self.scan = Some(scan);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_overwrite_remove() {
        let mut t = Table::default();
        assert_eq!(t.insert(b"k", b"abc"), None);
        assert_eq!(t.get(b"k"), Some(&b"abc"[..]));
        assert_eq!(t.insert(b"k", b"xyz"), Some(3));
        assert_eq!(t.get(b"k"), Some(&b"xyz"[..]));
        assert_eq!(t.insert(b"k", b"a longer value"), Some(3));
        assert_eq!(t.get(b"k"), Some(&b"a longer value"[..]));
        assert_eq!(t.insert(b"", b""), None);
        assert_eq!(t.get(b""), Some(&b""[..]));
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(b"k"), Some(14));
        assert_eq!(t.remove(b"k"), None);
        assert!(!t.contains(b"k"));
        assert_eq!(t.len(), 1);
    }

    proptest::proptest! {
        /// Random inserts and removes over a small key space (long clusters, wrap-around,
        /// backward shifts) agree with a HashMap.
        #[test]
        fn agrees_with_a_hashmap(ops in proptest::collection::vec((0u8..3, 0u16..300, 0u8..4), 1..2000)) {
            let mut table = Table::default();
            let mut model = std::collections::HashMap::new();
            for (op, k, v) in ops {
                let key = format!("k{k}").into_bytes();
                let value = vec![v; v as usize];
                if op < 2 {
                    let old = model.insert(key.clone(), value.clone()).map(|o: Vec<u8>| o.len());
                    proptest::prop_assert_eq!(table.insert(&key, &value), old);
                } else {
                    let old = model.remove(&key).map(|o| o.len());
                    proptest::prop_assert_eq!(table.remove(&key), old);
                }
                proptest::prop_assert_eq!(table.len(), model.len());
            }
            for k in 0u16..300 {
                let key = format!("k{k}").into_bytes();
                proptest::prop_assert_eq!(table.get(&key), model.get(&key).map(|v| v.as_slice()));
            }
            saturated_distances(&table);
        }
    }

    /// Checks that every full slot's distance field tells its true distance past its key's
    /// home (saturated), in both indexes; returns how many fields are saturated.
    fn saturated_distances(t: &Table) -> usize {
        let mut saturated = 0;
        for index in std::iter::once(&t.index).chain(t.old.as_ref().map(|d| &d.index)) {
            for i in (0..index.capacity()).filter(|&i| index.is_full(i)) {
                let home = index.home(t.hash(t.arena.key(index.handle(i))));
                let distance = i.wrapping_sub(home) & index.mask();
                let field = index.ctrl[i] >> DIST_SHIFT;
                assert_eq!(
                    field,
                    dist_field(distance) >> DIST_SHIFT,
                    "slot {i}, {distance}"
                );
                assert_eq!(index.distance(i, &t.arena, &t.hasher), distance);
                saturated += (field == DIST_SATURATED) as usize;
            }
        }
        saturated
    }

    /// The probe distances kept in the control words stay true through everything that moves
    /// slots: backward shifts (also of keys 14 or more slots past their home, whose field is
    /// saturated), growth at once and incremental, removes in the draining index, and a
    /// shrink; and every key stays findable.
    #[test]
    fn probe_distances_stay_true_through_shifts_drains_and_shrinks() {
        let (mut t, n) = filled_until_draining("k", b"v");
        let mut next = lcg(3);
        let mut saturated = saturated_distances(&t);
        let mut live: std::collections::BTreeSet<u32> = (0..n).collect();
        for round in 0..40 {
            for _ in 0..n as usize / 20 {
                let i = (next() % n as usize) as u32;
                if live.remove(&i) {
                    assert_eq!(t.remove(format!("k{i}").as_bytes()), Some(1));
                } else {
                    t.insert(format!("k{i}").as_bytes(), b"v");
                    live.insert(i);
                }
            }
            if round >= 20 {
                // Mostly removes from here on: down to a sparse table, which shrinks.
                let drop: Vec<u32> = live.iter().copied().step_by(3).collect();
                for i in drop {
                    t.remove(format!("k{i}").as_bytes());
                    live.remove(&i);
                }
            }
            saturated = saturated.max(saturated_distances(&t));
        }
        assert!(
            saturated > 100,
            "{saturated}: the saturated path must be exercised"
        );
        assert!(t.index_bytes() < INCREMENTAL_FROM * 6, "the index shrank");
        assert_eq!(t.len(), live.len());
        for i in 0..n {
            assert_eq!(
                t.contains(format!("k{i}").as_bytes()),
                live.contains(&i),
                "k{i}"
            );
        }
    }

    /// The scan invariant: every key present at `begin_scan` and never removed is visited,
    /// whatever inserts (growth included) and removes (backward shifts) happen between steps.
    #[test]
    fn scan_survives_writes_between_steps() {
        for seed in 0..30u64 {
            let mut t = Table::default();
            for i in 0..1000u32 {
                t.insert(format!("k{i}").as_bytes(), &i.to_le_bytes());
            }
            t.begin_scan();
            let mut seen = std::collections::HashSet::new();
            let mut removed = std::collections::HashSet::new();
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut next = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as usize
            };
            let mut steps = 0;
            while !t.scan_step(37, |k, _| {
                seen.insert(k.to_vec());
            }) {
                steps += 1;
                assert!(steps < 10_000, "scan does not finish");
                for _ in 0..20 {
                    let key = format!("k{}", next() % 3000);
                    if next() % 2 == 0 {
                        if t.remove(key.as_bytes()).is_some() {
                            removed.insert(key.into_bytes());
                        }
                    } else {
                        t.insert(key.as_bytes(), b"x");
                    }
                }
            }
            for i in 0..1000 {
                let key = format!("k{i}").into_bytes();
                assert!(
                    seen.contains(&key) || removed.contains(&key),
                    "seed {seed}: k{i} missed"
                );
            }
        }
    }

    /// Overwrites that change a value's length and removes leave dead bytes; compaction keeps
    /// them under about a quarter of the arena while every key keeps its value.
    #[test]
    fn compaction_bounds_garbage_and_keeps_every_value() {
        use super::super::arena::SEGMENT_BYTES;
        let mut t = Table::default();
        let mut model = std::collections::HashMap::new();
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for round in 0..200_000 {
            let key = format!("key:{:06}", next() % 20_000).into_bytes();
            if next() % 4 == 0 {
                assert_eq!(t.remove(&key), model.remove(&key).map(|v: Vec<u8>| v.len()));
            } else {
                // Mostly small values, now and then one past the inline limit (boxed).
                let len = if round % 997 == 0 { 5000 } else { next() % 64 };
                let value = vec![(round % 251) as u8; len];
                assert_eq!(
                    t.insert(&key, &value),
                    model.insert(key, value).map(|v| v.len())
                );
            }
            let (used, live) = t.arena_usage();
            assert!(
                used - live <= (used / 4).max(2 * SEGMENT_BYTES) + SEGMENT_BYTES,
                "round {round}: {used} used, {live} live"
            );
        }
        assert_eq!(t.len(), model.len());
        for (key, value) in &model {
            assert_eq!(t.get(key), Some(&value[..]));
        }
        // Remove everything: every segment but the tail goes back.
        let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        for key in keys {
            assert!(t.remove(&key).is_some());
        }
        assert!(t.arena_usage().0 <= SEGMENT_BYTES, "{:?}", t.arena_usage());
    }

    /// Compaction moves entries in the arena while a scan is in progress: the scan still
    /// visits every key present at its start and not removed since, with its current value.
    #[test]
    fn scan_survives_compaction_between_steps() {
        let mut t = Table::default();
        for i in 0..20_000u32 {
            t.insert(format!("k{i}").as_bytes(), &[1u8; 40]);
        }
        t.begin_scan();
        let mut seen = std::collections::HashMap::new();
        let mut compacted = false;
        let mut round = 0u32;
        while !t.scan_step(100, |k, v| {
            seen.insert(k.to_vec(), v.len());
        }) {
            // Shrink and regrow values: every write leaves dead bytes behind.
            let before = t.arena_usage().0;
            for j in 0..1000u32 {
                let key = format!("k{}", (round * 1000 + j) % 20_000);
                let len = 8 + ((round + j) % 4) as usize * 10;
                t.insert(key.as_bytes(), &vec![2u8; len]);
            }
            compacted |= t.arena_usage().0 < before;
            round += 1;
        }
        assert!(compacted, "the test must make the arena compact");
        for i in 0..20_000u32 {
            let key = format!("k{i}").into_bytes();
            assert!(seen.contains_key(&key), "k{i} missed");
        }
    }

    /// A tiny deterministic generator for the tests below.
    fn lcg(seed: u64) -> impl FnMut() -> usize {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        }
    }

    /// A table filled with `<prefix><i>` = `value` for `i` in `0..n`, up to the insert that
    /// started a drain; returns it and `n`.
    fn filled_until_draining(prefix: &str, value: &[u8]) -> (Table, u32) {
        let mut t = Table::default();
        let mut n = 0u32;
        while t.draining().is_none() {
            t.insert(format!("{prefix}{n}").as_bytes(), value);
            n += 1;
        }
        (t, n)
    }

    /// Growing past INCREMENTAL_FROM slots does not rehash at once: the insert that grows
    /// the table leaves (nearly) every entry in the old index, and later writes drain it.
    #[test]
    fn growth_of_a_big_table_drains_a_little_per_write() {
        let (mut t, mut i) = filled_until_draining("key:", b"v");
        let at_growth = t.len();
        assert!(at_growth > INCREMENTAL_FROM * 7 / 8, "grew at {at_growth}");
        // The growing insert drained one step (whole clusters, a few hundred at most).
        let left = t.draining().unwrap();
        assert!(left > at_growth / 2, "{left} of {at_growth} left");
        let mut writes = 0;
        while t.draining().is_some() {
            t.insert(format!("key:{i}").as_bytes(), b"v");
            i += 1;
            writes += 1;
            // Between drain steps every key is found, in whichever index it is.
            for k in 0..i {
                assert!(t.contains(format!("key:{k}").as_bytes()), "key:{k} lost");
            }
        }
        assert!(
            writes <= at_growth / DRAIN_STEP + 1,
            "{writes} writes to drain"
        );
        for k in 0..i {
            assert_eq!(
                t.get(format!("key:{k}").as_bytes()),
                Some(&b"v"[..]),
                "key:{k}"
            );
        }
    }

    /// Inserts, overwrites (some changing length, so that compaction runs too) and removes
    /// across several incremental growths agree with a HashMap at every point.
    #[test]
    fn draining_agrees_with_a_hashmap() {
        let mut t = Table::default();
        let mut model = std::collections::HashMap::new();
        let mut next = lcg(11);
        let mut drained_checks = 0;
        for round in 0..300_000usize {
            let key = format!("k{}", next() % 120_000).into_bytes();
            match next() % 8 {
                0 | 1 => {
                    assert_eq!(t.remove(&key), model.remove(&key).map(|v: Vec<u8>| v.len()));
                }
                2 => assert_eq!(t.get(&key), model.get(&key).map(|v| v.as_slice())),
                _ => {
                    let value = vec![(round % 251) as u8; 1 + next() % 24];
                    let old = model.insert(key.clone(), value.clone()).map(|v| v.len());
                    assert_eq!(t.insert(&key, &value), old);
                }
            }
            assert_eq!(t.len(), model.len());
            if t.draining().is_some() && round % 97 == 0 {
                drained_checks += 1;
                for probe in 0..50 {
                    let key = format!("k{}", (round + probe * 2399) % 120_000).into_bytes();
                    assert_eq!(t.get(&key), model.get(&key).map(|v| v.as_slice()));
                }
            }
        }
        assert!(drained_checks > 10, "the test must look up keys mid-drain");
        for (key, value) in &model {
            assert_eq!(t.get(key), Some(&value[..]));
        }
        saturated_distances(&t);
    }

    /// A scan that starts while the old index drains, and growths, drains and removes between
    /// its steps, still visits every key present at its start and not removed since.
    #[test]
    fn scan_survives_draining_between_steps() {
        for seed in 0..4u64 {
            let (mut t, i) = filled_until_draining("k", b"start");
            let mut next = lcg(seed);
            let present: Vec<Vec<u8>> = (0..i).map(|k| format!("k{k}").into_bytes()).collect();
            t.begin_scan();
            let mut seen = std::collections::HashSet::new();
            let mut removed = std::collections::HashSet::new();
            let mut steps = 0;
            while !t.scan_step(200, |k, _| {
                seen.insert(k.to_vec());
            }) {
                steps += 1;
                assert!(steps < 100_000, "scan does not finish");
                for _ in 0..40 {
                    let key = format!("k{}", next() % 60_000).into_bytes();
                    if next().is_multiple_of(3) {
                        if t.remove(&key).is_some() {
                            removed.insert(key);
                        }
                    } else {
                        t.insert(&key, &vec![1u8; next() % 16]);
                    }
                }
            }
            for key in &present {
                assert!(
                    seen.contains(key) || removed.contains(key),
                    "seed {seed}: {} missed",
                    String::from_utf8_lossy(key)
                );
            }
        }
    }

    /// A remove in the draining index whose backward shift moves a key from the cursor's
    /// slot to the one just behind it rescues that key: it would stay in the visited part of
    /// the old index, far from the drain, and the walk would miss it.
    #[test]
    fn scan_rescues_keys_shifted_in_the_draining_index() {
        let (mut t, _) = filled_until_draining("k", b"x");
        // A full slot `c - 1` followed by a key at `c` whose home is before `c`, far from
        // where the drain is.
        let (c, k1, k2) = {
            let d = t.old.as_ref().unwrap();
            let mask = d.index.mask();
            let home = |h: Handle| d.index.home(t.hash(t.arena.key(h)));
            (2..d.index.capacity())
                .filter(|&c| (c.wrapping_sub(d.next) & mask) > 4096)
                .find(|&c| {
                    d.index.is_full(c - 1) && d.index.is_full(c) && home(d.index.handle(c)) != c
                })
                .map(|c| {
                    let key = |i: usize| t.arena.key(d.index.handle(i)).to_vec();
                    (c, key(c - 1), key(c))
                })
                .expect("a cluster of two or more")
        };
        t.scan = Some(Box::new(Scan {
            in_new: false,
            cursor: c,
            rescued: Vec::new(),
        }));
        assert!(t.remove(&k1).is_some());
        let mut seen = std::collections::HashSet::new();
        assert!(t.scan_step(usize::MAX, |k, _| {
            seen.insert(k.to_vec());
        }));
        assert!(
            seen.contains(&k2),
            "{} missed",
            String::from_utf8_lossy(&k2)
        );
    }

    /// Values past the arena's inline limit are stored, read, changed in place and removed
    /// like small ones.
    #[test]
    fn large_values() {
        let mut t = Table::default();
        let big = vec![3u8; 100_000];
        assert_eq!(t.insert(b"big", &big), None);
        assert_eq!(t.get(b"big"), Some(&big[..]));
        t.get_mut(b"big").unwrap()[99_999] = 4;
        assert_eq!(t.get(b"big").unwrap()[99_999], 4);
        assert_eq!(t.insert(b"big", b"small now"), Some(100_000));
        assert_eq!(t.get(b"big"), Some(&b"small now"[..]));
        assert_eq!(t.insert(b"big", &big), Some(9));
        assert_eq!(t.take(b"big").map(|(v, _)| v).as_deref(), Some(&big[..]));
        assert!(t.is_empty());
        // A key past the inline limit is boxed with its value.
        let long_key = vec![b'k'; 10_000];
        assert_eq!(t.insert(&long_key, b"v"), None);
        assert_eq!(t.get(&long_key), Some(&b"v"[..]));
        assert!(!t.contains(&long_key[1..]));
        assert_eq!(t.remove(&long_key), Some(1));
        assert!(t.is_empty());
    }

    /// A million 16-byte keys with 32-byte values: the table's own accounting of what it
    /// holds stays within 70 bytes per key (the index at its 2^21 slots, the arena's 52-byte
    /// entries and the tail's spare room).
    #[test]
    fn a_million_entries_take_about_sixty_four_bytes_each() {
        let mut t = Table::default();
        for i in 0..1_000_000u64 {
            t.insert(format!("key:{i:012}").as_bytes(), &[b'x'; 32]);
        }
        let (used, live) = t.arena_usage();
        assert_eq!(live, 52 * 1_000_000);
        let per_key = (used + t.index_bytes()) as f64 / 1e6;
        assert!(per_key < 70.0, "{per_key} bytes per key");
    }

    #[test]
    fn many_keys_survive_growth() {
        let mut t = Table::default();
        for i in 0..10_000u32 {
            t.insert(format!("key:{i}").as_bytes(), &i.to_le_bytes());
        }
        for i in 0..10_000u32 {
            assert_eq!(
                t.get(format!("key:{i}").as_bytes()),
                Some(&i.to_le_bytes()[..])
            );
        }
        if let Some(v) = t.get_mut(b"key:7") {
            v.copy_from_slice(&99u32.to_le_bytes());
        }
        assert_eq!(t.get(b"key:7"), Some(&99u32.to_le_bytes()[..]));
    }

    /// Runs a whole SCAN walk of `count` per call, with `between(t, calls)` run after each
    /// call; returns the keys seen (with how often) and the number of calls.
    fn scan_all(
        t: &mut Table,
        count: usize,
        mut between: impl FnMut(&mut Table, usize),
    ) -> (std::collections::HashMap<Vec<u8>, usize>, usize) {
        let mut seen = std::collections::HashMap::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            cursor = t.scan_keys(cursor, count, |k, _| {
                *seen.entry(k.to_vec()).or_insert(0) += 1
            });
            calls += 1;
            assert!(calls < 1_000_000, "the walk does not end");
            if cursor == 0 {
                return (seen, calls);
            }
            between(t, calls);
        }
    }

    #[test]
    fn scan_of_a_quiet_table_returns_every_key_once() {
        let mut t = Table::default();
        assert_eq!(t.scan_keys(0, 10, |_, _| panic!("empty")), 0);
        for i in 0..5000u32 {
            t.insert(format!("k{i}").as_bytes(), b"v");
        }
        for count in [1, 10, 1000, 100_000] {
            let (seen, calls) = scan_all(&mut t, count, |_, _| {});
            assert_eq!(seen.len(), 5000, "count {count}");
            assert!(
                seen.values().all(|&n| n == 1),
                "count {count}: a key seen twice"
            );
            if count == 10 {
                assert!(
                    calls > 100,
                    "{calls} calls: COUNT is roughly what one call returns"
                );
            }
        }
        // A cursor that was never issued is a place in the walk, never a crash.
        for cursor in [1, 12345, CURSOR_END - 1, CURSOR_END, u64::MAX] {
            t.scan_keys(cursor, 10, |_, _| {});
        }
    }

    /// Redis's guarantee: every key present for the whole walk is returned at least once,
    /// whatever happens between the calls: growth (at once, and incremental with draining),
    /// removes (backward shifts), overwrites that change a value's size (compaction).
    #[test]
    fn scan_returns_every_key_present_throughout_across_growth_drain_and_compaction() {
        for seed in 0..6u64 {
            let mut t = Table::default();
            let stable: Vec<Vec<u8>> = (0..3000u32).map(|i| format!("s{i}").into_bytes()).collect();
            for k in &stable {
                t.insert(k, &[1u8; 20]);
            }
            let mut next = lcg(seed);
            let mut grew_incrementally = false;
            let (seen, _) = scan_all(&mut t, 1 + seed as usize * 7, |t, _| {
                // Churn of other keys: growth, drain steps, removes, size changes.
                for _ in 0..300 {
                    let key = format!("c{}", next() % 40_000).into_bytes();
                    match next() % 4 {
                        0 => {
                            t.remove(&key);
                        }
                        _ => {
                            t.insert(&key, &vec![2u8; next() % 30]);
                        }
                    }
                }
                // Resize the stable keys' values now and then: dead bytes, compaction.
                let k = &stable[next() % stable.len()];
                t.insert(k, &vec![3u8; 1 + next() % 40]);
                grew_incrementally |= t.draining().is_some();
            });
            for k in &stable {
                assert!(
                    seen.contains_key(k),
                    "seed {seed}: {} missed",
                    String::from_utf8_lossy(k)
                );
            }
            assert!(
                grew_incrementally || seed > 0,
                "the churn must drain an index mid-walk"
            );
        }
    }

    #[test]
    fn a_table_emptied_by_removes_scans_in_few_calls() {
        let mut t = Table::default();
        for i in 0..100_000u32 {
            t.insert(format!("k{i}").as_bytes(), b"v");
        }
        for i in 0..99_990u32 {
            t.remove(format!("k{i}").as_bytes());
        }
        while t.draining().is_some() {
            t.maintain();
        }
        // The index shrank with the keys (a call looks at 10 x COUNT homes at most, so a
        // sparse index would take thousands of calls to walk 10 keys).
        let (seen, calls) = scan_all(&mut t, 10, |_, _| {});
        assert_eq!(seen.len(), 10);
        assert!(calls <= 20, "{calls}");
        assert!(t.index_bytes() <= 128 * 6, "{}", t.index_bytes());
    }

    #[test]
    fn expire_step_removes_what_is_past_the_time_and_keeps_the_rest_findable() {
        let mut t = Table::default();
        for i in 0..50_000u32 {
            let deadline = (i % 3 == 0).then_some(u64::from(i % 100));
            t.insert_entry(format!("k{i}").as_bytes(), &[1u8; 24], deadline);
        }
        assert_eq!(t.with_deadline(), 16_667);
        let mut removed = 0;
        loop {
            let step = t.expire_step(50, 777, |key, entry| {
                assert!(
                    entry.deadline.unwrap() < 50,
                    "{}",
                    String::from_utf8_lossy(key)
                );
            });
            removed += step.expired;
            if step.round_done {
                break;
            }
        }
        let expect = (0..50_000u32)
            .filter(|i| i % 3 == 0 && i % 100 < 50)
            .count();
        assert_eq!(removed, expect);
        assert_eq!(t.len(), 50_000 - expect);
        for i in 0..50_000u32 {
            let gone = i % 3 == 0 && i % 100 < 50;
            assert_eq!(t.contains(format!("k{i}").as_bytes()), !gone, "k{i}");
        }
        let (used, live) = t.arena_usage();
        assert!(used - live <= used / 4 + 3 * super::super::arena::SEGMENT_BYTES);
    }

    /// A table that lost most of its keys gets a smaller index, drained into without a stall,
    /// and every key left stays findable throughout.
    #[test]
    fn a_table_that_lost_most_keys_shrinks_its_index() {
        let mut t = Table::default();
        for i in 0..200_000u32 {
            t.insert(format!("k{i}").as_bytes(), b"v");
        }
        while t.draining().is_some() {
            t.maintain();
        }
        let big = t.index_bytes();
        for i in 0..195_000u32 {
            assert!(t.remove(format!("k{i}").as_bytes()).is_some());
            if i % 5000 == 0 {
                for j in (195_000..200_000u32).step_by(97) {
                    assert!(t.contains(format!("k{j}").as_bytes()), "k{j} lost at {i}");
                }
            }
        }
        let mut steps = 0;
        while t.draining().is_some() {
            t.maintain();
            steps += 1;
            assert!(steps < 10_000, "the shrink's drain does not end");
        }
        assert!(
            t.index_bytes() * 4 <= big,
            "{} -> {} bytes of index",
            big,
            t.index_bytes()
        );
        assert_eq!(t.len(), 5000);
        for j in 195_000..200_000u32 {
            assert!(t.contains(format!("k{j}").as_bytes()), "k{j}");
        }
        // Growing again works as before.
        for i in 0..50_000u32 {
            t.insert(format!("again{i}").as_bytes(), b"v");
        }
        assert_eq!(t.len(), 55_000);
    }

    /// Samples are fair: every entry about equally likely, in both indexes during a drain
    /// (a forward walk from one random slot favours the first key after an empty run).
    #[test]
    fn samples_are_uniform_over_entries_in_both_indexes() {
        for draining in [false, true] {
            let mut t = if draining {
                filled_until_draining("k", b"v").0
            } else {
                let mut t = Table::default();
                for i in 0..3000u32 {
                    t.insert(format!("k{i}").as_bytes(), b"v");
                }
                t
            };
            assert_eq!(t.draining().is_some(), draining);
            let n = t.len();
            let mut counts = std::collections::HashMap::new();
            let mut next = lcg(5);
            let draws = 40 * n;
            for _ in 0..draws {
                let random = (next() as u64) << 32 | next() as u64;
                let got = t.sample(random, 1, 64, |key, _, _| {
                    *counts.entry(key.to_vec()).or_insert(0usize) += 1;
                    true
                });
                assert_eq!(got, 1);
            }
            // 40 draws per key on average: Poisson, so nearly all are between 15 and 80.
            let seen = counts.len();
            assert!(seen > n * 99 / 100, "{seen} of {n} keys ever drawn");
            let skewed = counts
                .values()
                .filter(|&&c| !(15..=80).contains(&c))
                .count();
            assert!(skewed < n / 200, "{skewed} keys drawn far off 40 times");
            // A tracking table reports each entry's access bits.
            t.set_tracking(Tracking::Lru);
            t.insert(b"fresh", b"v");
            assert!(t.get_with_access(b"fresh").unwrap().1.is_some());
            assert!(t.get_with_access(b"k1").unwrap().1.is_none());
            t.touch(b"k1");
            assert!(t.get_with_access(b"k1").unwrap().1.is_some());
            assert_eq!(t.get(b"k1"), Some(&b"v"[..]));
        }
    }

    /// A window sample visits every full slot of its run, and is fair: every entry is about
    /// equally likely to be seen, in both indexes during a drain, wherever it sits in its
    /// cluster (so runs of consecutive slots still reach every key).
    #[test]
    fn window_samples_reach_every_entry_equally_in_both_indexes() {
        for draining in [false, true] {
            let t = if draining {
                filled_until_draining("k", b"v").0
            } else {
                let mut t = Table::default();
                for i in 0..3000u32 {
                    t.insert(format!("k{i}").as_bytes(), b"v");
                }
                t
            };
            assert_eq!(t.draining().is_some(), draining);
            let (n, slots) = (t.len(), t.index_bytes() / 6);
            let window = 8;
            let mut counts = std::collections::HashMap::new();
            let mut next = lcg(7);
            // 40 visits per key on average: each is in a run with probability window / slots.
            let draws = 40 * slots / window;
            let mut visited = 0;
            for _ in 0..draws {
                let random = (next() as u64) << 32 | next() as u64;
                let mut here = Vec::new();
                let got = t.sample_window(random, window, |key, entry, _| {
                    assert_eq!(entry.value, b"v");
                    here.push(key.to_vec());
                });
                assert_eq!(got, here.len());
                assert!(got <= window);
                here.sort();
                here.dedup();
                assert_eq!(here.len(), got, "a run visits an entry once");
                for key in here {
                    *counts.entry(key).or_insert(0usize) += 1;
                }
                visited += got;
            }
            assert_eq!(counts.len(), n, "every key visited at least once");
            // Binomial with mean 40: nearly all between 15 and 80.
            let skewed = counts
                .values()
                .filter(|&&c| !(15..=80).contains(&c))
                .count();
            assert!(skewed < n / 200, "{skewed} keys visited far off 40 times");
            // On average a run holds window * load entries.
            let mean = visited as f64 / draws as f64;
            let expected = window as f64 * n as f64 / slots as f64;
            assert!(
                (mean - expected).abs() < 0.05 * expected,
                "{mean} vs {expected}"
            );
        }
        let empty = Table::default();
        assert_eq!(empty.sample_window(1, 8, |_, _, _| unreachable!()), 0);
    }

    /// `remove_if` shows the entry and its access bits, removes it only when told to, with
    /// the caller's hash or its own, and never calls `decide` for an absent key.
    #[test]
    fn remove_if_removes_only_what_decide_accepts() {
        let mut t = Table::default();
        t.set_tracking(Tracking::Lru);
        for i in 0..100u32 {
            t.insert(format!("k{i}").as_bytes(), b"value");
        }
        t.set_deadline(b"k7", Some(5));
        let kept = t.remove_if(b"k7", None, |entry, bits, _| {
            assert_eq!((entry.value, entry.deadline), (&b"value"[..], Some(5)));
            assert!(bits.is_some());
            false
        });
        assert_eq!(kept, None);
        assert!(t.contains(b"k7"));
        let hash = t.hash_key(b"k7");
        let removed = t.remove_if(b"k7", Some(hash), |_, _, _| true);
        assert_eq!(
            removed,
            Some(OldEntry {
                value_len: 5,
                deadline: Some(5)
            })
        );
        assert!(!t.contains(b"k7"));
        assert_eq!((t.len(), t.with_deadline()), (99, 0));
        assert_eq!(t.remove_if(b"k7", None, |_, _, _| unreachable!()), None);
        assert_eq!(
            t.remove_if(b"k8", None, |_, _, _| true).unwrap().value_len,
            5
        );
        for i in (0..100u32).filter(|&i| i != 7 && i != 8) {
            assert!(t.contains(format!("k{i}").as_bytes()), "k{i}");
        }
    }
}

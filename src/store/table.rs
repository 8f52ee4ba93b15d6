//! A compact hash table of byte keys. Entries (key and value side by side) live packed in an
//! [`Arena`]; the table itself is an index of 6-byte slots naming them.
//!
//! Why not `HashMap<Box<[u8]>, Box<[u8]>>`: that costs two allocations per key, each with the
//! allocator's header and size-class rounding, a 16-byte pointer pair per slot, and, on a
//! lookup, four dependent cache misses (control bytes, bucket, key bytes, value bytes). Here a
//! slot is a 2-byte control word and a 4-byte handle, and a 16-byte key with a 32-byte value
//! takes 52 bytes of arena: about 64 bytes per key in all at one million keys, where one
//! allocation per entry with 16-byte slots took 100. A lookup touches a control word, a
//! handle, and one entry whose key and (small) value share a cache line, and the misses of a
//! whole batch of requests can be started together ([`Table::prefetch`],
//! [`Table::prefetch_entry`]).
//!
//! The value part is opaque bytes: STRING partitions store the value itself, INT partitions
//! store the `i64` as 8 little-endian bytes.
//!
//! # Compaction of the arena
//! Removing an entry or changing its value's length leaves dead bytes in the arena. After
//! such a write, when more than a quarter of the arena is dead, the table moves the live
//! entries of the emptiest segment to the arena's tail and re-points their slots (found by
//! their key's probe sequence and old handle), one segment per write at most. Slots never move
//! for this, so the scan cursor below is unaffected.
//!
//! # The scan cursor (snapshots)
//! Persistence writes a *fuzzy snapshot* of a partition a slice per event-loop pass while
//! clients keep writing (`persist::snapshot`), so it needs a walk that survives writes between
//! its steps. [`Table::scan_step`] walks slot indexes; the only ways an entry present at
//! [`Table::begin_scan`] could escape the cursor are handled where they happen:
//! - an insert never moves other entries, except `grow`, which rehashes everything: the scan
//!   then starts over (visiting an entry twice is harmless: snapshot records are idempotent);
//! - the backward shift of `remove` moves an entry from slot `next` to `hole`; when that is
//!   from the unvisited part (`next >= cursor`) into the visited part (`hole < cursor`), its
//!   key is *rescued* and visited by the next step. (A move across the wrap-around only goes
//!   from visited to unvisited: a second visit, harmless.)
//!
//! Entries inserted or changed after the scan began may or may not be seen; the log segment
//! that began with the scan holds them.

use super::arena::{Arena, Handle};

/// Smallest non-empty table.
const MIN_CAPACITY: usize = 16;

/// Control word of an empty slot. A full slot holds [`FULL`], 7 bits of the key's hash (so a
/// probe compares keys only on a 1-in-128 false match) and the top 8 bits of the entry's
/// 40-bit handle; the slot's `u32` holds the low 32.
const EMPTY: u16 = 0;
const FULL: u16 = 0x8000;
/// The part of a control word a probe compares: [`FULL`] and the tag.
const TAG_MASK: u16 = 0xff00;

/// Byte keys to byte values: open addressing with linear probing and backward-shift deletion
/// (no tombstones), at most 7/8 full.
///
/// Written here rather than taken from `hashbrown` for two reasons: the memory layout (above)
/// and prefetching. A pipelined batch of requests asks for the cache lines of all its keys
/// before the first one executes, so their cache misses overlap instead of adding up (the
/// shard's `process_input`). In a same-process A/B over 100k keys, batches of 16 looked up
/// with the two prefetch steps took ~105 ns per key against ~150 ns one by one (and ~145 ns
/// for `hashbrown`).
#[derive(Default)]
pub struct Table {
    /// One control word per slot: [`EMPTY`] or tag and handle's top bits.
    ctrl: Vec<u16>,
    /// As long as `ctrl`, a power of two (or zero): the low 32 bits of each entry's handle.
    slots: Vec<u32>,
    len: usize,
    hasher: ahash::RandomState,
    arena: Arena,
    /// The scan in progress, if any (boxed: tables without one pay a pointer).
    scan: Option<Box<Scan>>,
}

/// A scan in progress (see the module docs).
#[derive(Default)]
struct Scan {
    /// Slots below this were visited.
    cursor: usize,
    /// Keys of entries moved from the unvisited part into the visited part.
    rescued: Vec<Box<[u8]>>,
}

/// The control word's tag bits for a hash.
#[inline]
fn tag(hash: u64) -> u16 {
    FULL | (((hash >> 57) as u16) << 8)
}

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

    #[inline]
    fn mask(&self) -> usize {
        self.ctrl.len().wrapping_sub(1)
    }

    /// The handle in full slot `i`.
    #[inline]
    fn handle(&self, i: usize) -> Handle {
        ((self.ctrl[i] as u64 & 0xff) << 32) | self.slots[i] as u64
    }

    /// Fills slot `i` with `handle` under the tag bits `tag`.
    #[inline]
    fn set_slot(&mut self, i: usize, tag: u16, handle: Handle) {
        self.ctrl[i] = tag | (handle >> 32) as u16;
        self.slots[i] = handle as u32;
    }

    /// The slot holding `key`, if any.
    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        self.find_entry(key).map(|(i, _)| i)
    }

    /// The slot holding `key` and its value (one decoding of the entry for both).
    #[inline]
    fn find_entry(&self, key: &[u8]) -> Option<(usize, &[u8])> {
        if self.len == 0 {
            return None;
        }
        let hash = self.hash(key);
        let (mask, tag) = (self.mask(), tag(hash));
        let mut i = hash as usize & mask;
        // Terminates: the table is never full, so an EMPTY slot ends every probe.
        loop {
            let c = self.ctrl[i];
            if c == EMPTY {
                return None;
            }
            if c & TAG_MASK == tag {
                let (k, value) = self.arena.get(self.handle(i));
                if k == key {
                    return Some((i, value));
                }
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find_entry(key).map(|(_, value)| value)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut [u8]> {
        let i = self.find(key)?;
        let handle = self.handle(i);
        Some(self.arena.value_mut(handle))
    }

    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
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
        if self.ctrl.is_empty() {
            return;
        }
        let i = hash as usize & self.mask();
        prefetch(&self.ctrl[i]);
        prefetch(&self.slots[i]);
    }

    /// Starts loading the entry a key of this hash probably lives in: step two of a batch,
    /// once step one's lines have arrived. Compares tags only (comparing keys would wait for
    /// the miss).
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        if self.len == 0 {
            return;
        }
        let (mask, tag) = (self.mask(), tag(hash));
        let mut i = hash as usize & mask;
        loop {
            match self.ctrl[i] {
                EMPTY => return,
                c if c & TAG_MASK == tag => {
                    // A small entry spans at most two cache lines; at 4-byte alignment most
                    // do cross a line boundary, so ask for the second line as well.
                    let entry = self.arena.address(self.handle(i));
                    prefetch(entry);
                    prefetch(entry.wrapping_add(63));
                    return;
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Stores `value` under `key`; returns the previous value's length if there was one.
    #[inline]
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Option<usize> {
        if let Some((i, old_value)) = self.find_entry(key) {
            let old_len = old_value.len();
            let old = self.handle(i);
            if old_len == value.len() {
                // Same size: overwrite in place.
                self.arena.value_mut(old).copy_from_slice(value);
            } else {
                let new = self.arena.alloc(key, value);
                self.arena.free(old);
                let tag = self.ctrl[i] & TAG_MASK;
                self.set_slot(i, tag, new);
                self.compact_if_needed();
            }
            return Some(old_len);
        }
        if (self.len + 1) * 8 > self.ctrl.len() * 7 {
            self.grow();
        }
        let hash = self.hash(key);
        let handle = self.arena.alloc(key, value);
        self.place(hash, handle);
        self.len += 1;
        None
    }

    /// Puts an entry known to be absent into the first empty slot of its probe sequence.
    fn place(&mut self, hash: u64, handle: Handle) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        while self.ctrl[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.set_slot(i, tag(hash), handle);
    }

    fn grow(&mut self) {
        self.resize((self.ctrl.len() * 2).max(MIN_CAPACITY));
    }

    /// Makes room for `additional` more keys at once (recovery knows how many are coming:
    /// one rehash instead of twenty).
    pub fn reserve(&mut self, additional: usize) {
        let want = (self.len + additional).saturating_mul(8) / 7 + 1;
        let capacity = want.next_power_of_two().max(MIN_CAPACITY);
        if capacity > self.ctrl.len() {
            self.resize(capacity);
        }
    }

    /// Rehashes every entry into a table of `capacity` slots.
    ///
    /// Rehashing reads each entry's key from the arena and writes a random slot of the new
    /// index: two cache misses per entry, which one at a time made growing past 917,504 keys
    /// stall the shard for ~150 ms. The misses are overlapped instead: the entry `2 * AHEAD`
    /// places ahead is prefetched, the one `AHEAD` ahead is hashed and its new slot prefetched.
    fn resize(&mut self, capacity: usize) {
        const AHEAD: usize = 8;
        let started = std::time::Instant::now();
        if let Some(scan) = &mut self.scan {
            // Every entry moves: start the walk again.
            scan.cursor = 0;
            scan.rescued.clear();
        }
        let handles: Vec<Handle> = self
            .ctrl
            .iter()
            .zip(&self.slots)
            .filter(|(&c, _)| c != EMPTY)
            .map(|(&c, &lo)| ((c as u64 & 0xff) << 32) | lo as u64)
            .collect();
        // Free the old index before the new one is touched.
        self.ctrl = Vec::new();
        self.slots = Vec::new();
        self.ctrl = vec![EMPTY; capacity];
        self.slots = vec![0; capacity];
        let mask = self.mask();
        let mut hashes = [0u64; AHEAD];
        let hash_ahead = |table: &Table, at: usize| {
            let hash = table.hash(table.arena.key(handles[at]));
            prefetch(&table.ctrl[hash as usize & mask]);
            prefetch(&table.slots[hash as usize & mask]);
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
            self.place(hash, handles[i]);
        }
        // The shard serves nothing while this runs: worth a line once tables get big.
        if capacity >= 1 << 20 {
            log::info!(
                "table of {} keys grew to {capacity} slots in {:.1} ms",
                handles.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }

    /// Removes `key`; returns its value's length if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Option<usize> {
        let (i, value) = self.find_entry(key)?;
        let len = value.len();
        self.remove_slot(i);
        Some(len)
    }

    /// Removes `key`; returns its value if it was there.
    pub fn take(&mut self, key: &[u8]) -> Option<Box<[u8]>> {
        let (i, value) = self.find_entry(key)?;
        let value = value.into();
        self.remove_slot(i);
        Some(value)
    }

    fn remove_slot(&mut self, mut hole: usize) {
        self.arena.free(self.handle(hole));
        self.ctrl[hole] = EMPTY;
        self.len -= 1;
        // Backward shift: pull later members of the cluster into the hole when the hole lies
        // on their probe path, so that every probe still meets its key before an EMPTY slot.
        let mask = self.mask();
        let mut next = (hole + 1) & mask;
        while self.ctrl[next] != EMPTY {
            let key = self.arena.key(self.handle(next));
            let home = self.hash(key) as usize & mask;
            // May move if its home is not cyclically inside (hole, next].
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                if let Some(scan) = &mut self.scan {
                    if hole < scan.cursor && next >= scan.cursor {
                        scan.rescued.push(key.into());
                    }
                }
                self.ctrl[hole] = self.ctrl[next];
                self.slots[hole] = self.slots[next];
                self.ctrl[next] = EMPTY;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.compact_if_needed();
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
        let mask = self.mask();
        for (old, encoded) in taken.entries() {
            let new = self.arena.append_raw(encoded);
            let hash = self.hasher.hash_one(self.arena.key(new));
            let mut i = hash as usize & mask;
            // Terminates: the entry is in the table, so its probe sequence reaches its slot.
            while self.ctrl[i] == EMPTY || self.handle(i) != old {
                i = (i + 1) & mask;
            }
            let tag = self.ctrl[i] & TAG_MASK;
            self.set_slot(i, tag, new);
        }
        self.arena.recycle(taken);
    }

    /// Bytes of arena (live and dead) and of them live: for tests and INFO-style reports.
    pub fn arena_usage(&self) -> (usize, usize) {
        self.arena.usage()
    }

    /// Bytes the index takes (control words and handles).
    pub fn index_bytes(&self) -> usize {
        self.ctrl.len() * (std::mem::size_of::<u16>() + std::mem::size_of::<u32>())
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
        let Some(mut scan) = self.scan.take() else {
            return true;
        };
        let mut budget = max;
        while budget > 0 {
            let Some(key) = scan.rescued.pop() else {
                break;
            };
            budget -= 1;
            if let Some(i) = self.find(&key) {
                let (key, value) = self.arena.get(self.handle(i));
                visit(key, value);
            }
        }
        while budget > 0 && scan.cursor < self.ctrl.len() {
            if self.ctrl[scan.cursor] != EMPTY {
                let (key, value) = self.arena.get(self.handle(scan.cursor));
                visit(key, value);
                budget -= 1;
            }
            scan.cursor += 1;
        }
        let done = scan.cursor >= self.ctrl.len() && scan.rescued.is_empty();
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
        assert_eq!(t.take(b"big").as_deref(), Some(&big[..]));
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
}

//! One partition's table.
//!
//! Both schemas use the compact [`Table`] (one allocation per key holding key and value).
//! INT partitions keep the `i64` natively, as 8 bytes in the entry: no parsing on INCR, no
//! formatting until a reply needs it. The table is owned by one shard thread.
//!
//! Every change keeps the partition's memory estimate ([`Partition::used_memory`], see
//! [`super::memory`]) exact, and [`Partition::set_growth`] says beforehand what a write would
//! add, so that the `max-memory` check happens before anything changes.
//!
//! # Expiry
//! A key may have a deadline (unix ms, [`super::clock`]); it is *expired* once the clock is
//! past it (`now > deadline`, as Redis counts), and from that instant this type hides it from
//! everything: reads, SCAN, and writes, which treat it as absent. The table keeps the entry
//! until it is reclaimed: by a write that meets it (the write replaces or removes it), or by
//! the active sweep ([`Partition::expire_step`]). Reads take the partition read-only and do
//! not reclaim: their shard's sweep does, and a durable partition logs each as a `DEL`.
//! `len` counts unreclaimed expired keys, as Redis's `DBSIZE` does.

use std::sync::Arc;

use super::clock;
use super::memory::{entry_size, INT_VALUE_SIZE};
use super::table::{EntryRef, SweepStep, Table};
use super::{parse_canonical_i64, PartitionStats, Schema};

/// A value as read from a partition.
#[derive(Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Int(i64),
    Str(&'a [u8]),
}

/// An owned value: what a write replaced, kept so that a failed commit can put it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(Box<[u8]>),
}

impl ValueRef<'_> {
    pub fn to_owned(&self) -> Value {
        match *self {
            ValueRef::Int(n) => Value::Int(n),
            ValueRef::Str(s) => Value::Str(s.into()),
        }
    }
}

/// Why an increment did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum IncrError {
    /// A STRING partition's value that is not a canonical 64-bit integer (Redis's
    /// `value is not an integer or out of range`).
    NotAnInteger,
    /// The result would not fit an `i64`; nothing changed.
    Overflow,
}

/// What a write of a value does to the key's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No deadline, whatever the key had (a plain SET).
    Clear,
    /// The deadline the key has, if any (`KEEPTTL`, INCR, APPEND, ...).
    Keep,
    /// This deadline, unix ms.
    At(u64),
}

/// A key as a read sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub value: ValueRef<'a>,
    /// Unix ms after which the key is expired, if it has a deadline.
    pub deadline: Option<u64>,
}

/// Every key of a partition, taken out whole by [`Partition::take_contents`]: the table
/// (with its hasher, so SCAN cursors issued before stay valid once it is back) and its
/// memory estimate.
pub struct Contents {
    table: Table,
    used: u64,
}

impl Contents {
    /// Keys held (expired ones not reclaimed yet included).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// A partition's data and counters. Owned by one shard.
pub struct Partition {
    schema: Schema,
    table: Table,
    stats: Arc<PartitionStats>,
    /// Estimated bytes of the entries (see [`super::memory`]).
    used: u64,
}

#[inline]
fn decode_int(bytes: &[u8]) -> i64 {
    let mut raw = [0u8; 8];
    // INT entries always hold exactly 8 bytes (only `set_int`/`incr_by` write them).
    raw.copy_from_slice(&bytes[..8]);
    i64::from_le_bytes(raw)
}

/// A table entry as a partition of `schema` reads it.
#[inline(always)]
fn decode_entry(schema: Schema, entry: EntryRef<'_>) -> Entry<'_> {
    Entry {
        value: match schema {
            Schema::Int => ValueRef::Int(decode_int(entry.value)),
            Schema::String => ValueRef::Str(entry.value),
        },
        deadline: entry.deadline,
    }
}

/// Is an entry with this deadline expired at `now`?
#[inline]
fn is_expired(deadline: Option<u64>, now: u64) -> bool {
    deadline.is_some_and(|d| now > d)
}

impl Partition {
    pub fn new(schema: Schema, stats: Arc<PartitionStats>) -> Self {
        Partition {
            schema,
            table: Table::default(),
            stats,
            used: 0,
        }
    }

    /// Estimated bytes of this partition's entries.
    #[inline]
    pub fn used_memory(&self) -> u64 {
        self.used
    }

    /// Bytes storing `value_len` bytes (STRING) or an integer (INT) under `key`, with or
    /// without a deadline, would add to the estimate; 0 when it would not grow.
    #[inline]
    pub fn set_growth(&self, key: &[u8], value_len: usize, deadline: bool) -> u64 {
        let value_len = match self.schema {
            Schema::Int => INT_VALUE_SIZE,
            Schema::String => value_len,
        };
        let new = entry_size(key.len(), value_len, deadline);
        match self.table.get_entry(key) {
            Some(old) => new.saturating_sub(entry_size(
                key.len(),
                old.value.len(),
                old.deadline.is_some(),
            )),
            None => new,
        }
    }

    /// Does the table hold `key`, expired or not? (What `max-keys` asks of a write: replacing
    /// an expired key not reclaimed yet adds no key.)
    #[inline]
    pub fn holds(&self, key: &[u8]) -> bool {
        self.table.get_entry(key).is_some()
    }

    /// The estimate after an entry of `key` went from `old` (if any) to `new` (if any).
    #[inline]
    fn account(&mut self, key: &[u8], old: Option<(usize, bool)>, new: Option<(usize, bool)>) {
        let size = |e: Option<(usize, bool)>| e.map_or(0, |(len, d)| entry_size(key.len(), len, d));
        self.used = self.used + size(new) - size(old);
        PartitionStats::set(&self.stats.memory, self.used);
        let deadline = |e: Option<(usize, bool)>| e.is_some_and(|(_, d)| d);
        if deadline(old) != deadline(new) {
            PartitionStats::set(&self.stats.expires, self.with_deadline() as u64);
        }
    }

    pub fn schema(&self) -> Schema {
        self.schema
    }

    pub fn stats(&self) -> &PartitionStats {
        &self.stats
    }

    /// The shared counters themselves: their identity tells a partition from a namesake that
    /// was dropped and created again.
    pub fn stats_arc(&self) -> &Arc<PartitionStats> {
        &self.stats
    }

    /// Keys stored, expired ones not reclaimed yet included (Redis's `DBSIZE`).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Keys with a deadline (expired ones not reclaimed yet included).
    pub fn with_deadline(&self) -> usize {
        self.table.with_deadline()
    }

    #[inline(always)]
    fn decode<'a>(&self, entry: EntryRef<'a>) -> Entry<'a> {
        decode_entry(self.schema, entry)
    }

    /// The key's value and deadline, unless it is absent or expired.
    #[inline(always)]
    pub fn lookup(&self, key: &[u8]) -> Option<Entry<'_>> {
        let entry = self.table.get_entry(key)?;
        if entry.deadline.is_some() && is_expired(entry.deadline, clock::now_ms()) {
            return None;
        }
        Some(self.decode(entry))
    }

    #[inline(always)]
    pub fn get(&self, key: &[u8]) -> Option<ValueRef<'_>> {
        self.lookup(key).map(|entry| entry.value)
    }

    /// The hash of `key` that the two prefetch steps take (see [`Table::hash_key`]).
    #[inline]
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.table.hash_key(key)
    }

    /// Starts fetching the memory a lookup of a key of this hash will touch (see
    /// [`Table::prefetch`]).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.table.prefetch(hash);
    }

    /// Second prefetch step, after [`Partition::prefetch`] had time to land.
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        self.table.prefetch_entry(hash);
    }

    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        self.lookup(key).is_some()
    }

    /// Reclaims `key` if it is there but expired, so that a write finds it absent; returns
    /// the deadline the key has if it is there and live (`Some(None)`: no deadline).
    #[inline]
    fn reclaim_if_expired(&mut self, key: &[u8]) -> Option<Option<u64>> {
        let deadline = self.table.get_entry(key)?.deadline;
        if deadline.is_some() && is_expired(deadline, clock::now_ms()) {
            self.remove_raw(key);
            return None;
        }
        Some(deadline)
    }

    /// The deadline a write of `expiry` leaves on `key`.
    #[inline]
    fn deadline_for(&mut self, key: &[u8], expiry: Expiry) -> Option<u64> {
        match expiry {
            Expiry::Clear => None,
            Expiry::At(ms) => Some(ms),
            Expiry::Keep => self.reclaim_if_expired(key).flatten(),
        }
    }

    #[inline]
    fn insert(&mut self, key: &[u8], value: &[u8], deadline: Option<u64>) {
        let old = self.table.insert_entry(key, value, deadline);
        self.account(
            key,
            old.map(|o| (o.value_len, o.deadline.is_some())),
            Some((value.len(), deadline.is_some())),
        );
        if old.is_none() {
            self.update_keys();
        }
    }

    /// Stores a byte string. The caller has checked the schema is STRING.
    #[inline]
    pub fn set_str(&mut self, key: &[u8], value: &[u8], expiry: Expiry) {
        debug_assert_eq!(self.schema, Schema::String);
        let deadline = self.deadline_for(key, expiry);
        self.insert(key, value, deadline);
    }

    /// Stores an integer. The caller has checked the schema is INT.
    #[inline]
    pub fn set_int(&mut self, key: &[u8], value: i64, expiry: Expiry) {
        debug_assert_eq!(self.schema, Schema::Int);
        let deadline = self.deadline_for(key, expiry);
        self.insert(key, &value.to_le_bytes(), deadline);
    }

    /// Stores an owned value with exactly this deadline (rollback, recovery). Callers pass
    /// values of the partition's schema.
    pub fn set_value(&mut self, key: &[u8], value: &Value, deadline: Option<u64>) {
        match value {
            Value::Int(n) => self.put(key, ValueRef::Int(*n), deadline),
            Value::Str(s) => self.put(key, ValueRef::Str(s), deadline),
        }
    }

    /// Stores a borrowed value with exactly this deadline (recovery). Callers pass values of
    /// the partition's schema.
    pub fn put(&mut self, key: &[u8], value: ValueRef, deadline: Option<u64>) {
        match value {
            ValueRef::Int(n) => self.insert(key, &n.to_le_bytes(), deadline),
            ValueRef::Str(s) => self.insert(key, s, deadline),
        }
    }

    /// Sets (or with `None` removes) the deadline of a live key; false (nothing changed) when
    /// the key is absent or expired.
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>) -> bool {
        let Some(old) = self.reclaim_if_expired(key) else {
            return false;
        };
        if old.is_some() == deadline.is_some() && old == deadline {
            return true;
        }
        let Some(entry) = self.table.get_entry(key) else {
            return false;
        };
        let len = entry.value.len();
        self.table.set_deadline(key, deadline);
        self.account(
            key,
            Some((len, old.is_some())),
            Some((len, deadline.is_some())),
        );
        true
    }

    /// A step of the table's background work (see [`Table::maintain`]); cheap when none.
    #[inline]
    pub fn maintain(&mut self) {
        self.table.maintain();
    }

    /// Entries still in the table's draining index, if one is (tests).
    pub fn draining(&self) -> Option<usize> {
        self.table.draining()
    }

    /// Makes room for `additional` more keys (recovery knows roughly how many are coming).
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
    }

    /// Removes a key, expired or not, keeping the estimate; returns its deadline if it was
    /// there.
    fn remove_raw(&mut self, key: &[u8]) -> Option<Option<u64>> {
        let old = self.table.remove_entry(key)?;
        self.account(key, Some((old.value_len, old.deadline.is_some())), None);
        self.update_keys();
        Some(old.deadline)
    }

    /// Removes a key and returns its value and deadline; `None` when it is absent or expired
    /// (an expired one is reclaimed).
    pub fn take(&mut self, key: &[u8]) -> Option<(Value, Option<u64>)> {
        self.reclaim_if_expired(key)?;
        let (raw, deadline) = self.table.take(key)?;
        self.account(key, Some((raw.len(), deadline.is_some())), None);
        self.update_keys();
        let value = match self.schema {
            Schema::Int => Value::Int(decode_int(&raw)),
            Schema::String => Value::Str(raw),
        };
        Some((value, deadline))
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        drop(self.take_contents());
    }

    /// Removes every key and hands them back whole (FLUSH PARTITION on a durable partition:
    /// its journal keeps them until the commit, so that a failed commit can put them back
    /// with [`Partition::restore_contents`]). Costs no copy: the table moves out and an
    /// empty one takes its place. The counters (`ops`, `expired_keys`, ...) stay.
    pub fn take_contents(&mut self) -> Contents {
        let contents = Contents {
            table: std::mem::take(&mut self.table),
            used: std::mem::replace(&mut self.used, 0),
        };
        PartitionStats::set(&self.stats.memory, 0);
        self.update_keys();
        contents
    }

    /// Puts back what [`Partition::take_contents`] took, replacing whatever is in the table
    /// now (rollback undoes the later writes of the pass first, so that is nothing).
    pub fn restore_contents(&mut self, contents: Contents) {
        self.table = contents.table;
        self.used = contents.used;
        PartitionStats::set(&self.stats.memory, self.used);
        self.update_keys();
    }

    /// Starts a walk over every entry present now that survives writes between its steps
    /// (compaction's fuzzy snapshot; see `store::table`).
    pub fn begin_scan(&mut self) {
        self.table.begin_scan();
    }

    pub fn end_scan(&mut self) {
        self.table.end_scan();
    }

    /// Visits entries of the walk until `budget` is spent, each visit returning what it cost
    /// (in the caller's units: compaction counts bytes); true when the walk is complete.
    /// Expired entries are visited too (with their deadline: a snapshot keeps it, and
    /// recovery drops what is past it).
    pub fn scan_step(
        &mut self,
        budget: usize,
        mut visit: impl FnMut(&[u8], Entry) -> usize,
    ) -> bool {
        let schema = self.schema;
        self.table
            .scan_step_by(budget, |key, entry| visit(key, decode_entry(schema, entry)))
    }

    /// One SCAN call (see [`Table::scan_keys`]): visits live keys from `cursor` on, about
    /// `count` of them, and returns the next cursor (0: done). Expired keys are not visited.
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(&[u8], Entry)) -> u64 {
        let now = clock::now_ms();
        self.table.scan_keys(cursor, count, |key, entry| {
            if !is_expired(entry.deadline, now) {
                visit(key, self.decode(entry));
            }
        })
    }

    /// One step of the active expiry sweep: looks at up to `max` entries from where the last
    /// step stopped and removes the expired ones, calling `expired(key, entry)` for each just
    /// before it goes (a durable partition logs it as a `DEL`).
    pub fn expire_step(&mut self, max: usize, mut expired: impl FnMut(&[u8], Entry)) -> SweepStep {
        let now = clock::now_ms();
        let schema = self.schema;
        let mut freed = 0;
        // A step of a growth's or a shrink's drain too: a partition that only expires (no
        // command touches it) still finishes one, and gives back the old index.
        self.table.maintain();
        let step = self.table.expire_step(now, max, |key, entry| {
            freed += entry_size(key.len(), entry.value.len(), true);
            expired(key, decode_entry(schema, entry));
        });
        if step.expired > 0 {
            self.used -= freed;
            PartitionStats::set(&self.stats.memory, self.used);
            PartitionStats::add(&self.stats.expired_keys, step.expired as u64);
            self.update_keys();
        }
        // Redis's running estimate: each sample moves the average by a fiftieth.
        let sampled = (step.with_deadline - step.expired) as u64;
        let avg = match step.ttl_sum.checked_div(sampled) {
            _ if self.with_deadline() == 0 => 0,
            None => PartitionStats::get(&self.stats.avg_ttl),
            Some(sample) => match PartitionStats::get(&self.stats.avg_ttl) {
                0 => sample,
                avg => avg / 50 * 49 + sample / 50,
            },
        };
        PartitionStats::set(&self.stats.avg_ttl, avg);
        step
    }

    /// Removes a key; true if it was there (an expired key counts as absent, and is
    /// reclaimed).
    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.remove_raw(key) {
            Some(deadline) => !is_expired(deadline, clock::now_ms()),
            None => false,
        }
    }

    /// Adds `delta` to an integer (absent or expired counts as 0) and returns the new value.
    /// The key keeps its deadline, as Redis's INCR does. On a STRING partition the value must
    /// be a canonical 64-bit integer and is stored back as its decimal string.
    #[inline]
    pub fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        let live = self.reclaim_if_expired(key);
        match self.schema {
            Schema::Int => {
                if live.is_some() {
                    if let Some(raw) = self.table.get_mut(key) {
                        let value = decode_int(raw)
                            .checked_add(delta)
                            .ok_or(IncrError::Overflow)?;
                        raw.copy_from_slice(&value.to_le_bytes());
                        return Ok(value);
                    }
                }
                self.insert(key, &delta.to_le_bytes(), None);
                Ok(delta)
            }
            Schema::String => {
                let (current, deadline) = match (live, self.table.get_entry(key)) {
                    (Some(deadline), Some(entry)) => (
                        parse_canonical_i64(entry.value).ok_or(IncrError::NotAnInteger)?,
                        deadline,
                    ),
                    _ => (0, None),
                };
                let value = current.checked_add(delta).ok_or(IncrError::Overflow)?;
                let mut text = itoa::Buffer::new();
                self.insert(key, text.format(value).as_bytes(), deadline);
                Ok(value)
            }
        }
    }

    #[inline]
    fn update_keys(&self) {
        PartitionStats::set(&self.stats.keys, self.len() as u64);
        PartitionStats::set(&self.stats.expires, self.with_deadline() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_table() {
        let mut p = Partition::new(Schema::String, Arc::default());
        assert_eq!(p.get(b"k"), None);
        p.set_str(b"k", b"abc", Expiry::Clear);
        p.set_str(b"k", b"xyz", Expiry::Clear);
        assert_eq!(p.get(b"k"), Some(ValueRef::Str(b"xyz")));
        p.set_str(b"k", b"longer value", Expiry::Clear);
        assert_eq!(p.get(b"k"), Some(ValueRef::Str(b"longer value")));
        assert_eq!(p.stats().keys.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(p.incr_by(b"k", 1), Err(IncrError::NotAnInteger));
        assert!(p.remove(b"k"));
        assert!(!p.remove(b"k"));
        assert!(p.is_empty());
    }

    #[test]
    fn int_table_and_overflow() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert_eq!(p.incr_by(b"n", 5), Ok(5));
        assert_eq!(p.incr_by(b"n", -7), Ok(-2));
        p.set_int(b"n", i64::MAX, Expiry::Clear);
        assert_eq!(p.incr_by(b"n", 1), Err(IncrError::Overflow));
        assert_eq!(p.get(b"n"), Some(ValueRef::Int(i64::MAX)));
        assert!(p.contains(b"n"));
    }

    #[test]
    fn take_and_set_value_keep_memory_exact() {
        let mut p = Partition::new(Schema::String, Arc::default());
        p.set_str(b"k", b"hello", Expiry::Clear);
        let full = p.used_memory();
        assert_eq!(p.take(b"k"), Some((Value::Str(b"hello"[..].into()), None)));
        assert_eq!(p.used_memory(), 0);
        p.set_value(b"k", &Value::Str(b"hello"[..].into()), None);
        assert_eq!(p.used_memory(), full);
    }

    #[test]
    fn memory_estimate_follows_every_change() {
        use crate::store::memory::ENTRY_OVERHEAD as O;
        let mut p = Partition::new(Schema::String, Arc::default());
        assert_eq!(p.set_growth(b"key", 5, false), 3 + 5 + O);
        p.set_str(b"key", b"value", Expiry::Clear);
        assert_eq!(p.used_memory(), 3 + 5 + O);
        assert_eq!(p.set_growth(b"key", 5, false), 0);
        assert_eq!(p.set_growth(b"key", 2, false), 0);
        assert_eq!(p.set_growth(b"key", 9, false), 4);
        p.set_str(b"key", b"v", Expiry::Clear);
        assert_eq!(p.used_memory(), 3 + 1 + O);
        p.set_str(b"key", b"longer", Expiry::Clear);
        assert_eq!(p.used_memory(), 3 + 6 + O);
        assert!(p.remove(b"key"));
        assert_eq!(p.used_memory(), 0);
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert_eq!(p.set_growth(b"n", 20, false), 1 + 8 + O);
        p.incr_by(b"n", 1).unwrap();
        p.set_int(b"m", 7, Expiry::Clear);
        p.incr_by(b"m", 1).unwrap();
        assert_eq!(p.set_growth(b"n", 20, false), 0);
        assert_eq!(p.used_memory(), 2 * (1 + 8 + O));
        assert_eq!(
            p.stats().memory.load(std::sync::atomic::Ordering::Relaxed),
            p.used_memory()
        );
        p.remove(b"n");
        p.remove(b"m");
        assert_eq!(p.used_memory(), 0);
    }

    const NOW: u64 = 1_800_000_000_000;

    /// A partition whose thread's clock is pinned at `NOW`.
    fn pinned(schema: Schema) -> Partition {
        clock::pin_for_tests(NOW);
        Partition::new(schema, Arc::default())
    }

    #[test]
    fn an_expired_key_is_invisible_from_the_next_millisecond() {
        let mut p = pinned(Schema::String);
        p.set_str(b"k", b"v", Expiry::At(NOW + 10));
        p.set_str(b"plain", b"v", Expiry::Clear);
        assert_eq!(p.lookup(b"k").unwrap().deadline, Some(NOW + 10));
        assert_eq!(p.with_deadline(), 1);
        clock::pin_for_tests(NOW + 10);
        assert!(
            p.contains(b"k"),
            "at its deadline the key still lives (Redis: now > when)"
        );
        clock::pin_for_tests(NOW + 11);
        assert_eq!(p.get(b"k"), None);
        assert!(!p.contains(b"k"));
        assert_eq!(p.take(b"k"), None, "take reclaims and finds nothing");
        assert_eq!(p.len(), 1);
        assert_eq!(p.with_deadline(), 0);
        // Writes find it absent: KEEPTTL keeps nothing, INCR starts from 0.
        p.set_str(b"j", b"5", Expiry::At(NOW + 20));
        clock::pin_for_tests(NOW + 21);
        assert_eq!(p.incr_by(b"j", 1), Ok(1));
        assert_eq!(p.lookup(b"j").unwrap().deadline, None);
        assert!(!p.set_deadline(b"j2", Some(NOW + 100)));
        assert!(!p.remove(b"gone"));
        clock::end_passes();
    }

    #[test]
    fn deadlines_keep_memory_exact() {
        let mut p = pinned(Schema::String);
        p.set_str(b"key", b"value", Expiry::Clear);
        let plain = p.used_memory();
        assert_eq!(p.set_growth(b"key", 5, true), 8);
        assert!(p.set_deadline(b"key", Some(NOW + 1000)));
        assert_eq!(p.used_memory(), plain + 8);
        assert_eq!(
            p.stats().expires.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        p.set_str(b"key", b"value", Expiry::Keep);
        assert_eq!(p.lookup(b"key").unwrap().deadline, Some(NOW + 1000));
        assert_eq!(p.used_memory(), plain + 8);
        assert!(p.set_deadline(b"key", None));
        assert_eq!(p.used_memory(), plain);
        p.set_str(b"key", b"value", Expiry::At(NOW + 5));
        assert_eq!(p.used_memory(), plain + 8);
        p.set_str(b"key", b"value", Expiry::Clear);
        assert_eq!(p.used_memory(), plain);
        assert_eq!(p.with_deadline(), 0);
        clock::end_passes();
    }

    #[test]
    fn incr_on_strings_is_redis_incr() {
        let mut p = pinned(Schema::String);
        p.set_str(b"n", b"10", Expiry::At(NOW + 1000));
        assert_eq!(p.incr_by(b"n", 1), Ok(11));
        let n = p.lookup(b"n").unwrap();
        assert_eq!(
            (n.value, n.deadline),
            (ValueRef::Str(b"11"), Some(NOW + 1000))
        );
        assert_eq!(p.incr_by(b"fresh", -3), Ok(-3));
        assert_eq!(p.get(b"fresh"), Some(ValueRef::Str(b"-3")));
        for bad in [&b"abc"[..], b" 1", b"01", b"+1", b"-0", b"1.5", b""] {
            p.set_str(b"bad", bad, Expiry::Clear);
            assert_eq!(
                p.incr_by(b"bad", 1),
                Err(IncrError::NotAnInteger),
                "{bad:?}"
            );
            assert_eq!(p.get(b"bad"), Some(ValueRef::Str(bad)));
        }
        p.set_str(b"max", b"9223372036854775807", Expiry::Clear);
        assert_eq!(p.incr_by(b"max", 1), Err(IncrError::Overflow));
        let used = p.used_memory();
        p.set_str(b"nine", b"9", Expiry::Clear);
        assert_eq!(p.incr_by(b"nine", 1), Ok(10));
        assert_eq!(p.used_memory(), used + entry_size(4, 2, false));
        clock::end_passes();
    }

    #[test]
    fn the_sweep_reclaims_expired_keys_and_counts_them() {
        let mut p = pinned(Schema::String);
        for i in 0..10_000u32 {
            let expiry = if i % 2 == 0 {
                Expiry::At(NOW + 5)
            } else {
                Expiry::Clear
            };
            p.set_str(format!("k{i}").as_bytes(), &[b'x'; 32], expiry);
        }
        let full = p.used_memory();
        clock::pin_for_tests(NOW + 6);
        let mut logged = Vec::new();
        let mut rounds = 0;
        loop {
            let step = p.expire_step(1000, |key, entry| {
                assert_eq!(entry.deadline, Some(NOW + 5));
                logged.push(key.to_vec());
            });
            rounds += 1;
            if step.round_done {
                break;
            }
            assert!(rounds < 100);
        }
        assert_eq!(logged.len(), 5000);
        assert_eq!(p.len(), 5000);
        assert_eq!(p.with_deadline(), 0);
        let odd: u64 = (1..10_000u32)
            .step_by(2)
            .map(|i| entry_size(format!("k{i}").len(), 32, false))
            .sum();
        assert!(full > odd);
        assert_eq!(p.used_memory(), odd);
        assert_eq!(PartitionStats::get(&p.stats().expired_keys), 5000);
        for i in (1..10_000u32).step_by(2) {
            assert!(p.contains(format!("k{i}").as_bytes()));
        }
        assert_eq!(
            PartitionStats::get(&p.stats().avg_ttl),
            0,
            "none left to average"
        );
        // Nothing left with a deadline: a step costs nothing.
        assert_eq!(p.expire_step(1000, |_, _| unreachable!()).visited, 0);
        clock::end_passes();
    }

    #[test]
    fn scan_hides_expired_keys() {
        let mut p = pinned(Schema::Int);
        p.set_int(b"live", 1, Expiry::Clear);
        p.set_int(b"dying", 2, Expiry::At(NOW + 1));
        clock::pin_for_tests(NOW + 2);
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            cursor = p.scan(cursor, 10, |k, _| seen.push(k.to_vec()));
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen, vec![b"live".to_vec()]);
        clock::end_passes();
    }

    #[test]
    fn the_sweep_estimates_the_average_ttl() {
        let mut p = pinned(Schema::String);
        for i in 0..1000u64 {
            p.set_str(
                format!("k{i}").as_bytes(),
                b"v",
                Expiry::At(NOW + 10_000 + i * 20),
            );
        }
        while !p.expire_step(100, |_, _| {}).round_done {}
        let avg = PartitionStats::get(&p.stats().avg_ttl);
        // The true average is 10_000 + 999 * 10 = 19_990 ms; the estimate starts at the first
        // sample and moves towards it.
        assert!((10_000..=20_000).contains(&avg), "{avg}");
        clock::end_passes();
    }
}

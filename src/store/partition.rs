//! One partition's table.
//!
//! INT partitions keep `i64`s natively (8 bytes, no allocation per value, no parsing on INCR);
//! STRING partitions keep boxed byte slices. Keys are boxed byte slices in both. The tables are
//! insertion-ordered hash maps (`indexmap` with `ahash`: a hash index over a dense entry
//! vector), owned by one shard thread.
//!
//! # Why a dense, indexed table: the scan cursor
//! Compaction writes a *fuzzy snapshot* of a partition a few thousand entries per event-loop
//! pass while clients keep writing to it (see `persist::snapshot`). A plain hash map cannot be
//! iterated across mutations; a dense vector of entries can, by position. Entries only ever
//! move *down* (a removal moves the last entry into the hole) and new entries are appended, so
//! a cursor walking positions `0..end` (where `end` is the length when the scan began) sees
//! every entry that existed when the scan began, with one exception that [`Partition::remove`]
//! catches: a removal below the cursor that moves a not-yet-visited entry into the visited
//! part. That entry's key is put on the scan's *rescued* list and emitted by the next step.
//! Entries added or changed after the scan began may or may not be seen, which is what a
//! fuzzy snapshot allows (the log segment started with the scan has them).

use std::sync::Arc;

use super::{PartitionStats, Schema};

type Map<V> = indexmap::IndexMap<Box<[u8]>, V, ahash::RandomState>;

enum Table {
    Int(Map<i64>),
    Str(Map<Box<[u8]>>),
}

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
    /// The partition is not INT.
    WrongType,
    /// The result would not fit an `i64`; nothing changed.
    Overflow,
}

/// A scan in progress (see the module docs).
struct Scan {
    /// Positions below this were visited.
    cursor: usize,
    /// The table's length when the scan began: entries at or past it were added later.
    end: usize,
    /// Keys of entries a removal moved from the unvisited part into the visited part.
    rescued: Vec<Box<[u8]>>,
}

/// A partition's data and counters. Owned by one shard.
pub struct Partition {
    table: Table,
    stats: Arc<PartitionStats>,
    scan: Option<Scan>,
}

impl Partition {
    pub fn new(schema: Schema, stats: Arc<PartitionStats>) -> Self {
        let table = match schema {
            Schema::Int => Table::Int(Map::default()),
            Schema::String => Table::Str(Map::default()),
        };
        Partition {
            table,
            stats,
            scan: None,
        }
    }

    pub fn schema(&self) -> Schema {
        match self.table {
            Table::Int(_) => Schema::Int,
            Table::Str(_) => Schema::String,
        }
    }

    pub fn stats(&self) -> &PartitionStats {
        &self.stats
    }

    /// The shared counters themselves: their identity tells a partition from a namesake that
    /// was dropped and created again.
    pub fn stats_arc(&self) -> &Arc<PartitionStats> {
        &self.stats
    }

    pub fn len(&self) -> usize {
        match &self.table {
            Table::Int(m) => m.len(),
            Table::Str(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `additional` more keys (recovery knows roughly how many are coming).
    pub fn reserve(&mut self, additional: usize) {
        match &mut self.table {
            Table::Int(m) => m.reserve(additional),
            Table::Str(m) => m.reserve(additional),
        }
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<ValueRef<'_>> {
        match &self.table {
            Table::Int(m) => m.get(key).map(|&v| ValueRef::Int(v)),
            Table::Str(m) => m.get(key).map(|v| ValueRef::Str(v)),
        }
    }

    #[inline]
    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.table {
            Table::Int(m) => m.contains_key(key),
            Table::Str(m) => m.contains_key(key),
        }
    }

    /// Stores a byte string. The caller has checked the schema is STRING.
    #[inline]
    pub fn set_str(&mut self, key: &[u8], value: &[u8]) {
        let Table::Str(m) = &mut self.table else {
            debug_assert!(false, "set_str on an INT partition");
            return;
        };
        match m.get_mut(key) {
            // Overwrite in place when the size matches: no allocator round trip.
            Some(old) if old.len() == value.len() => old.copy_from_slice(value),
            Some(old) => *old = value.into(),
            None => {
                m.insert(key.into(), value.into());
            }
        }
        self.update_keys();
    }

    /// Stores an integer. The caller has checked the schema is INT.
    #[inline]
    pub fn set_int(&mut self, key: &[u8], value: i64) {
        let Table::Int(m) = &mut self.table else {
            debug_assert!(false, "set_int on a STRING partition");
            return;
        };
        match m.get_mut(key) {
            Some(old) => *old = value,
            None => {
                m.insert(key.into(), value);
            }
        }
        self.update_keys();
    }

    /// Stores an owned value of either kind (recovery, rollback). A value of the wrong kind
    /// for the schema is ignored (callers check the schema first).
    pub fn set_value(&mut self, key: &[u8], value: &Value) {
        match value {
            Value::Int(n) => self.set_int(key, *n),
            Value::Str(s) => self.set_str(key, s),
        }
    }

    /// Removes a key; true if it was there.
    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.take(key).is_some()
    }

    /// Removes a key and returns its value.
    #[inline]
    pub fn take(&mut self, key: &[u8]) -> Option<Value> {
        let (index, value) = match &mut self.table {
            Table::Int(m) => m
                .swap_remove_full(key)
                .map(|(i, _, v)| (i, Value::Int(v)))?,
            Table::Str(m) => m
                .swap_remove_full(key)
                .map(|(i, _, v)| (i, Value::Str(v)))?,
        };
        // The entry that was last (position `len` now) moved into `index`.
        let moved_from = self.len();
        if let Some(scan) = &mut self.scan {
            if index < scan.cursor && moved_from >= scan.cursor && moved_from < scan.end {
                let key = match &self.table {
                    Table::Int(m) => m.get_index(index).map(|(k, _)| k.clone()),
                    Table::Str(m) => m.get_index(index).map(|(k, _)| k.clone()),
                };
                scan.rescued.extend(key);
            }
        }
        self.update_keys();
        Some(value)
    }

    /// Adds `delta` to an integer (absent counts as 0) and returns the new value.
    #[inline]
    pub fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        let Table::Int(m) = &mut self.table else {
            return Err(IncrError::WrongType);
        };
        let result = match m.get_mut(key) {
            Some(value) => {
                *value = value.checked_add(delta).ok_or(IncrError::Overflow)?;
                *value
            }
            None => {
                m.insert(key.into(), delta);
                delta
            }
        };
        self.update_keys();
        Ok(result)
    }

    /// Starts a scan over every entry present now (restarts one in progress).
    pub fn begin_scan(&mut self) {
        self.scan = Some(Scan {
            cursor: 0,
            end: self.len(),
            rescued: Vec::new(),
        });
    }

    /// Stops the scan in progress, if any.
    pub fn end_scan(&mut self) {
        self.scan = None;
    }

    /// Visits up to `max` entries of the scan in progress, calling `visit` for each. Returns
    /// true when the scan is complete (every entry present at `begin_scan` was visited at
    /// least once, unless removed since). Without a scan in progress, returns true at once.
    pub fn scan_step(&mut self, max: usize, mut visit: impl FnMut(&[u8], ValueRef)) -> bool {
        let Some(scan) = &mut self.scan else {
            return true;
        };
        let mut budget = max;
        // Rescued entries first: they sit below the cursor now.
        while budget > 0 {
            let Some(key) = scan.rescued.pop() else {
                break;
            };
            budget -= 1;
            match &self.table {
                Table::Int(m) => {
                    if let Some(&v) = m.get(&key) {
                        visit(&key, ValueRef::Int(v));
                    }
                }
                Table::Str(m) => {
                    if let Some(v) = m.get(&key) {
                        visit(&key, ValueRef::Str(v));
                    }
                }
            }
        }
        let len = match &self.table {
            Table::Int(m) => m.len(),
            Table::Str(m) => m.len(),
        };
        let stop = scan.end.min(len);
        while budget > 0 && scan.cursor < stop {
            match &self.table {
                Table::Int(m) => {
                    if let Some((k, &v)) = m.get_index(scan.cursor) {
                        visit(k, ValueRef::Int(v));
                    }
                }
                Table::Str(m) => {
                    if let Some((k, v)) = m.get_index(scan.cursor) {
                        visit(k, ValueRef::Str(v));
                    }
                }
            }
            scan.cursor += 1;
            budget -= 1;
        }
        scan.cursor >= stop && scan.rescued.is_empty()
    }

    #[inline]
    fn update_keys(&self) {
        PartitionStats::set(&self.stats.keys, self.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_table() {
        let mut p = Partition::new(Schema::String, Arc::default());
        assert_eq!(p.get(b"k"), None);
        p.set_str(b"k", b"abc");
        p.set_str(b"k", b"xyz");
        assert_eq!(p.get(b"k"), Some(ValueRef::Str(b"xyz")));
        p.set_str(b"k", b"longer value");
        assert_eq!(p.get(b"k"), Some(ValueRef::Str(b"longer value")));
        assert_eq!(p.stats().keys.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(p.incr_by(b"k", 1), Err(IncrError::WrongType));
        assert!(p.remove(b"k"));
        assert!(!p.remove(b"k"));
        assert!(p.is_empty());
    }

    #[test]
    fn int_table_and_overflow() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert_eq!(p.incr_by(b"n", 5), Ok(5));
        assert_eq!(p.incr_by(b"n", -7), Ok(-2));
        p.set_int(b"n", i64::MAX);
        assert_eq!(p.incr_by(b"n", 1), Err(IncrError::Overflow));
        assert_eq!(p.get(b"n"), Some(ValueRef::Int(i64::MAX)));
        assert!(p.contains(b"n"));
        assert_eq!(p.take(b"n"), Some(Value::Int(i64::MAX)));
    }

    /// The scan invariant: every key present at `begin_scan` and never removed is visited,
    /// whatever removals and inserts happen between steps.
    #[test]
    fn scan_survives_mutation_between_steps() {
        for seed in 0..20u64 {
            let mut p = Partition::new(Schema::Int, Arc::default());
            for i in 0..1000 {
                p.set_int(format!("k{i}").as_bytes(), i);
            }
            p.begin_scan();
            let mut seen = std::collections::HashSet::new();
            let mut removed = std::collections::HashSet::new();
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut next = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as usize
            };
            loop {
                let done = p.scan_step(37, |k, _| {
                    seen.insert(k.to_vec());
                });
                if done {
                    break;
                }
                for _ in 0..20 {
                    let i = next() % 1500;
                    let key = format!("k{i}");
                    if next() % 2 == 0 {
                        if p.remove(key.as_bytes()) {
                            removed.insert(key.into_bytes());
                        }
                    } else {
                        p.set_int(key.as_bytes(), 7);
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
}

//! One partition's table.
//!
//! Both schemas use the compact [`Table`] (one allocation per key holding key and value).
//! INT partitions keep the `i64` natively, as 8 bytes in the entry: no parsing on INCR, no
//! formatting until a reply needs it. The table is owned by one shard thread.
//!
//! Every change keeps the partition's memory estimate ([`Partition::used_memory`], see
//! [`super::memory`]) exact, and [`Partition::set_growth`] says beforehand what a write would
//! add, so that the `max-memory` check happens before anything changes.

use std::sync::Arc;

use super::memory::{entry_size, INT_VALUE_SIZE};
use super::table::Table;
use super::{PartitionStats, Schema};

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

    /// Bytes storing `value_len` bytes (STRING) or an integer (INT) under `key` would add to
    /// the estimate; 0 when it would not grow.
    #[inline]
    pub fn set_growth(&self, key: &[u8], value_len: usize) -> u64 {
        let value_len = match self.schema {
            Schema::Int => INT_VALUE_SIZE,
            Schema::String => value_len,
        };
        match self.table.get(key) {
            Some(old) => value_len.saturating_sub(old.len()) as u64,
            None => entry_size(key.len(), value_len),
        }
    }

    /// Accounts for storing `value_len` bytes under `key`, given what `Table::insert` said.
    #[inline]
    fn account_insert(&mut self, key: &[u8], value_len: usize, old_len: Option<usize>) {
        match old_len {
            Some(old) => self.used = self.used - old as u64 + value_len as u64,
            None => self.used += entry_size(key.len(), value_len),
        }
        PartitionStats::set(&self.stats.memory, self.used);
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

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<ValueRef<'_>> {
        let value = self.table.get(key)?;
        Some(match self.schema {
            Schema::Int => ValueRef::Int(decode_int(value)),
            Schema::String => ValueRef::Str(value),
        })
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
        self.table.contains(key)
    }

    /// Stores a byte string. The caller has checked the schema is STRING.
    #[inline]
    pub fn set_str(&mut self, key: &[u8], value: &[u8]) {
        debug_assert_eq!(self.schema, Schema::String);
        let old = self.table.insert(key, value);
        self.account_insert(key, value.len(), old);
        if old.is_none() {
            self.update_keys();
        }
    }

    /// Stores an integer. The caller has checked the schema is INT.
    #[inline]
    pub fn set_int(&mut self, key: &[u8], value: i64) {
        debug_assert_eq!(self.schema, Schema::Int);
        let old = self.table.insert(key, &value.to_le_bytes());
        self.account_insert(key, INT_VALUE_SIZE, old);
        if old.is_none() {
            self.update_keys();
        }
    }

    /// Stores an owned value (rollback). Callers pass values of the partition's schema.
    pub fn set_value(&mut self, key: &[u8], value: &Value) {
        match value {
            Value::Int(n) => self.set_int(key, *n),
            Value::Str(s) => self.set_str(key, s),
        }
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

    /// Removes a key and returns its value.
    pub fn take(&mut self, key: &[u8]) -> Option<Value> {
        let raw = self.table.take(key)?;
        self.used -= entry_size(key.len(), raw.len());
        PartitionStats::set(&self.stats.memory, self.used);
        self.update_keys();
        Some(match self.schema {
            Schema::Int => Value::Int(decode_int(&raw)),
            Schema::String => Value::Str(raw),
        })
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
    pub fn scan_step(
        &mut self,
        budget: usize,
        mut visit: impl FnMut(&[u8], ValueRef) -> usize,
    ) -> bool {
        let schema = self.schema;
        self.table.scan_step_by(budget, |key, value| {
            let value = match schema {
                Schema::Int => ValueRef::Int(decode_int(value)),
                Schema::String => ValueRef::Str(value),
            };
            visit(key, value)
        })
    }

    /// Removes a key; true if it was there.
    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let Some(value_len) = self.table.remove(key) else {
            return false;
        };
        self.used -= entry_size(key.len(), value_len);
        PartitionStats::set(&self.stats.memory, self.used);
        self.update_keys();
        true
    }

    /// Adds `delta` to an integer (absent counts as 0) and returns the new value.
    #[inline]
    pub fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        if self.schema != Schema::Int {
            return Err(IncrError::WrongType);
        }
        if let Some(raw) = self.table.get_mut(key) {
            let value = decode_int(raw)
                .checked_add(delta)
                .ok_or(IncrError::Overflow)?;
            raw.copy_from_slice(&value.to_le_bytes());
            return Ok(value);
        }
        self.set_int(key, delta);
        Ok(delta)
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
    }

    #[test]
    fn take_and_set_value_keep_memory_exact() {
        let mut p = Partition::new(Schema::String, Arc::default());
        p.set_str(b"k", b"hello");
        let full = p.used_memory();
        assert_eq!(p.take(b"k"), Some(Value::Str(b"hello"[..].into())));
        assert_eq!(p.used_memory(), 0);
        p.set_value(b"k", &Value::Str(b"hello"[..].into()));
        assert_eq!(p.used_memory(), full);
    }

    #[test]
    fn memory_estimate_follows_every_change() {
        use crate::store::memory::ENTRY_OVERHEAD as O;
        let mut p = Partition::new(Schema::String, Arc::default());
        assert_eq!(p.set_growth(b"key", 5), 3 + 5 + O);
        p.set_str(b"key", b"value");
        assert_eq!(p.used_memory(), 3 + 5 + O);
        assert_eq!(p.set_growth(b"key", 5), 0);
        assert_eq!(p.set_growth(b"key", 2), 0);
        assert_eq!(p.set_growth(b"key", 9), 4);
        p.set_str(b"key", b"v");
        assert_eq!(p.used_memory(), 3 + 1 + O);
        p.set_str(b"key", b"longer");
        assert_eq!(p.used_memory(), 3 + 6 + O);
        assert!(p.remove(b"key"));
        assert_eq!(p.used_memory(), 0);
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert_eq!(p.set_growth(b"n", 20), 1 + 8 + O);
        p.incr_by(b"n", 1).unwrap();
        p.set_int(b"m", 7);
        p.incr_by(b"m", 1).unwrap();
        assert_eq!(p.set_growth(b"n", 20), 0);
        assert_eq!(p.used_memory(), 2 * (1 + 8 + O));
        assert_eq!(
            p.stats().memory.load(std::sync::atomic::Ordering::Relaxed),
            p.used_memory()
        );
        p.remove(b"n");
        p.remove(b"m");
        assert_eq!(p.used_memory(), 0);
    }
}

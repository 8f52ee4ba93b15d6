//! One partition's table.
//!
//! INT partitions keep `i64`s natively (8 bytes, no allocation per value, no parsing on INCR);
//! STRING partitions keep boxed byte slices. Keys are boxed byte slices in both. The tables are
//! `hashbrown` maps with `ahash`, owned by one shard thread.
//!
//! Every change keeps the partition's memory estimate ([`Partition::used_memory`], see
//! [`super::memory`]) exact, and the `*_growth` methods say beforehand what a write would add,
//! so that the `max-memory` check happens before anything changes.

use std::sync::Arc;

use super::memory::{entry_size, INT_VALUE_SIZE};
use super::{PartitionStats, Schema};

type Map<V> = hashbrown::HashMap<Box<[u8]>, V, ahash::RandomState>;

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
    table: Table,
    stats: Arc<PartitionStats>,
    /// Estimated bytes of the entries (see [`super::memory`]).
    used: u64,
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
        match &self.table {
            Table::Int(m) if m.contains_key(key) => 0,
            Table::Int(_) => entry_size(key.len(), INT_VALUE_SIZE),
            Table::Str(m) => match m.get(key) {
                Some(old) => value_len.saturating_sub(old.len()) as u64,
                None => entry_size(key.len(), value_len),
            },
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
            Some(old) => {
                self.used = self.used - old.len() as u64 + value.len() as u64;
                *old = value.into();
            }
            None => {
                m.insert(key.into(), value.into());
                self.used += entry_size(key.len(), value.len());
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
                self.used += entry_size(key.len(), INT_VALUE_SIZE);
            }
        }
        self.update_keys();
    }

    /// Removes a key; true if it was there.
    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let freed = match &mut self.table {
            Table::Int(m) => m.remove(key).map(|_| entry_size(key.len(), INT_VALUE_SIZE)),
            Table::Str(m) => m.remove(key).map(|v| entry_size(key.len(), v.len())),
        };
        let Some(freed) = freed else {
            return false;
        };
        self.used -= freed;
        self.update_keys();
        true
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
                self.used += entry_size(key.len(), INT_VALUE_SIZE);
                delta
            }
        };
        self.update_keys();
        Ok(result)
    }

    #[inline]
    fn update_keys(&self) {
        PartitionStats::set(&self.stats.keys, self.len() as u64);
        PartitionStats::set(&self.stats.memory, self.used);
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

//! One partition's table.
//!
//! INT partitions keep `i64`s natively (8 bytes, no allocation per value, no parsing on INCR);
//! STRING partitions keep boxed byte slices. Keys are boxed byte slices in both. The tables are
//! `hashbrown` maps with `ahash`, owned by one shard thread.

use std::sync::Arc;

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
}

impl Partition {
    pub fn new(schema: Schema, stats: Arc<PartitionStats>) -> Self {
        let table = match schema {
            Schema::Int => Table::Int(Map::default()),
            Schema::String => Table::Str(Map::default()),
        };
        Partition { table, stats }
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

    /// Removes a key; true if it was there.
    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let removed = match &mut self.table {
            Table::Int(m) => m.remove(key).is_some(),
            Table::Str(m) => m.remove(key).is_some(),
        };
        if removed {
            self.update_keys();
        }
        removed
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
}

//! The journal of one durable partition during one event-loop pass: the log records of the
//! pass's writes (committed together at the end of the pass) and how to undo each write if the
//! commit fails.
//!
//! Every write to a durable partition goes through these methods instead of the partition's
//! own: each applies the change in memory at once (later commands of the same pass must see
//! it), appends the physical record, and remembers the key's previous value. When the commit
//! fails, [`Journal::rollback`] restores the previous values in reverse order, so "not applied
//! in memory" holds for every write whose reply becomes `-IOERR`.

use crate::store::{IncrError, Partition, Value};

use super::record::{self, Record};

#[derive(Default)]
pub struct Journal {
    /// Encoded records, in order, not yet written to the file.
    records: Vec<u8>,
    /// `(key, value before the write)`, in order; `None` means the key was absent.
    undo: Vec<(Box<[u8]>, Option<Value>)>,
}

impl Journal {
    /// Nothing was logged since the last commit.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of records waiting for the commit.
    #[inline]
    pub fn pending(&self) -> &[u8] {
        &self.records
    }

    /// Writes done since the last commit (one per record).
    #[inline]
    pub fn writes(&self) -> usize {
        self.undo.len()
    }

    fn remember(&mut self, partition: &Partition, key: &[u8]) {
        let before = partition.get(key).map(|v| v.to_owned());
        self.undo.push((key.into(), before));
    }

    pub fn set_str(&mut self, partition: &mut Partition, key: &[u8], value: &[u8]) {
        self.remember(partition, key);
        record::encode(&Record::SetStr { key, value }, &mut self.records);
        partition.set_str(key, value);
    }

    pub fn set_int(&mut self, partition: &mut Partition, key: &[u8], value: i64) {
        self.remember(partition, key);
        record::encode(&Record::SetInt { key, value }, &mut self.records);
        partition.set_int(key, value);
    }

    /// Removes a key; logs only when it was there (nothing changed otherwise).
    pub fn remove(&mut self, partition: &mut Partition, key: &[u8]) -> bool {
        match partition.take(key) {
            Some(before) => {
                self.undo.push((key.into(), Some(before)));
                record::encode(&Record::Del { key }, &mut self.records);
                true
            }
            None => false,
        }
    }

    /// Increments and logs the *result* as a SET (idempotent on replay).
    pub fn incr_by(
        &mut self,
        partition: &mut Partition,
        key: &[u8],
        delta: i64,
    ) -> Result<i64, IncrError> {
        let before = partition.get(key).map(|v| v.to_owned());
        let value = partition.incr_by(key, delta)?;
        self.undo.push((key.into(), before));
        record::encode(&Record::SetInt { key, value }, &mut self.records);
        Ok(value)
    }

    /// The commit succeeded: forget the pass.
    pub fn clear(&mut self) {
        self.records.clear();
        self.undo.clear();
        // A huge pass (a giant MSET) should not pin its memory.
        const KEEP: usize = 1 << 20;
        if self.records.capacity() > KEEP {
            self.records = Vec::new();
        }
        if self.undo.capacity() > KEEP / 64 {
            self.undo = Vec::new();
        }
    }

    /// The commit failed: put every key back as it was before the pass, newest write first.
    pub fn rollback(&mut self, partition: &mut Partition) {
        for (key, before) in self.undo.drain(..).rev() {
            match before {
                Some(value) => partition.set_value(&key, &value),
                None => {
                    partition.remove(&key);
                }
            }
        }
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Schema, ValueRef};
    use std::sync::Arc;

    #[test]
    fn rollback_restores_the_pass() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        p.set_int(b"a", 1);
        p.set_int(b"b", 2);
        let mut j = Journal::default();
        j.set_int(&mut p, b"a", 10);
        assert_eq!(j.incr_by(&mut p, b"a", 5), Ok(15));
        assert!(j.remove(&mut p, b"b"));
        assert!(!j.remove(&mut p, b"zz"));
        j.set_int(&mut p, b"c", 3);
        assert_eq!(j.writes(), 4);
        j.rollback(&mut p);
        assert_eq!(p.get(b"a"), Some(ValueRef::Int(1)));
        assert_eq!(p.get(b"b"), Some(ValueRef::Int(2)));
        assert_eq!(p.get(b"c"), None);
        assert!(j.is_empty());
    }
}

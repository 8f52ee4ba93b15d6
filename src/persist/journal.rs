//! The journal of one durable partition during one event-loop pass: the log records of the
//! pass's writes (committed together at the end of the pass) and how to undo each write if the
//! commit fails.
//!
//! Every write to a durable partition goes through these methods instead of the partition's
//! own: each applies the change in memory at once (later commands of the same pass must see
//! it), appends the physical record, and remembers the key's previous value. When the commit
//! fails, [`Journal::rollback`] restores the previous values in reverse order, so "not applied
//! in memory" holds for every write whose reply becomes `-IOERR`.
//!
//! A *stream* journal ([`Journal::stream`]) records the same records for a MEMORY partition
//! while replicas are attached (`crate::replication`), and keeps nothing to undo: a MEMORY
//! partition's commit never fails, its records only go to the replicas.
//!
//! FLUSH PARTITION is one write too: it logs [`Record::Clear`] and keeps the whole table it
//! took out ([`Partition::take_contents`], a move, no copy) until the commit; a rollback
//! undoes the writes after it first (newest first), then puts the table back.

use crate::store::{Contents, Entry, Expiry, IncrError, Partition, Value, ValueRef};

use super::record::{self, Record};

/// A key as it was before a write: its value and deadline, or `None` if it was absent (or
/// expired, which is the same to every command).
type Before = Option<(Value, Option<u64>)>;

/// How to undo one write.
enum Undo {
    /// Put one key back as it was.
    Key(Box<[u8]>, Before),
    /// Put back every key a FLUSH took out.
    Flush(Box<Contents>),
}

/// What `key` is now, to put back on rollback.
fn before(partition: &Partition, key: &[u8]) -> Before {
    partition
        .lookup(key)
        .map(|e| (e.value.to_owned(), e.deadline))
}

#[derive(Default)]
pub struct Journal {
    /// Encoded records, in order, not yet written to the file.
    records: Vec<u8>,
    /// How to undo each write, in order (empty in a stream journal).
    undo: Vec<Undo>,
    /// A stream journal: records only, nothing to undo.
    stream: bool,
    /// Replicas follow the partition: a write that finds a key expired (and reclaims it
    /// without changing anything a client sees) logs a `DEL`, or a replica, which never
    /// expires keys by itself, would hold the key, hidden, for good.
    replicated: bool,
}

impl Journal {
    /// A journal of a MEMORY partition whose records only go to replicas: nothing to undo.
    pub fn stream() -> Journal {
        Journal {
            stream: true,
            replicated: true,
            ..Journal::default()
        }
    }

    /// Replicas follow (or no longer follow) the partition (see `replicated`).
    pub fn set_replicated(&mut self, replicated: bool) {
        self.replicated = replicated || self.stream;
    }

    /// Logs the `DEL` of a key a write found expired and reclaimed, when replicas follow.
    #[cold]
    fn reclaimed(&mut self, key: &[u8]) {
        record::encode(&Record::Del { key }, &mut self.records);
    }

    /// Appends records logged elsewhere (a durable partition turned MEMORY mid-pass hands
    /// its uncommitted records to its stream journal).
    pub fn adopt_records(&mut self, records: &[u8]) {
        self.records.extend_from_slice(records);
    }

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

    /// Writes done since the last commit (one per undo entry; an expiry logged by the sweep
    /// is not one).
    #[inline]
    pub fn writes(&self) -> usize {
        self.undo.len()
    }

    fn remember(&mut self, partition: &Partition, key: &[u8]) {
        if self.stream {
            return;
        }
        let before = before(partition, key);
        self.undo.push(Undo::Key(key.into(), before));
    }

    /// The deadline `key` has after a write of `expiry` (read back only for `Keep`).
    fn deadline_after(partition: &Partition, key: &[u8], expiry: Expiry) -> Option<u64> {
        match expiry {
            Expiry::Clear => None,
            Expiry::At(ms) => Some(ms),
            Expiry::Keep => partition.lookup(key).and_then(|e| e.deadline),
        }
    }

    pub fn set_str(&mut self, partition: &mut Partition, key: &[u8], value: &[u8], expiry: Expiry) {
        self.remember(partition, key);
        partition.set_str(key, value, expiry);
        let deadline = Self::deadline_after(partition, key, expiry);
        let record = Record::SetStr {
            key,
            value,
            deadline,
        };
        record::encode(&record, &mut self.records);
    }

    pub fn set_int(&mut self, partition: &mut Partition, key: &[u8], value: i64, expiry: Expiry) {
        self.remember(partition, key);
        partition.set_int(key, value, expiry);
        let deadline = Self::deadline_after(partition, key, expiry);
        let record = Record::SetInt {
            key,
            value,
            deadline,
        };
        record::encode(&record, &mut self.records);
    }

    /// Sets or removes a live key's deadline; logs only when the key was there.
    pub fn set_deadline(
        &mut self,
        partition: &mut Partition,
        key: &[u8],
        deadline: Option<u64>,
    ) -> bool {
        let before = if self.stream {
            None
        } else {
            before(partition, key)
        };
        let held = self.replicated && partition.holds(key);
        if !partition.set_deadline(key, deadline) {
            if held && !partition.holds(key) {
                self.reclaimed(key);
            }
            return false;
        }
        if !self.stream {
            self.undo.push(Undo::Key(key.into(), before));
        }
        record::encode(&Record::Deadline { key, deadline }, &mut self.records);
        true
    }

    /// Removes a key; logs only when it was there (nothing changed otherwise).
    pub fn remove(&mut self, partition: &mut Partition, key: &[u8]) -> bool {
        self.take(partition, key).is_some()
    }

    /// Removes a key and returns its value and deadline; logs only when it was there.
    pub fn take(&mut self, partition: &mut Partition, key: &[u8]) -> Option<(Value, Option<u64>)> {
        let held = self.replicated && partition.holds(key);
        let Some(before) = partition.take(key) else {
            if held && !partition.holds(key) {
                self.reclaimed(key);
            }
            return None;
        };
        if !self.stream {
            self.undo.push(Undo::Key(key.into(), Some(before.clone())));
        }
        record::encode(&Record::Del { key }, &mut self.records);
        Some(before)
    }

    /// Increments and logs the *result* as a SET, with the deadline the key keeps
    /// (idempotent on replay).
    pub fn incr_by(
        &mut self,
        partition: &mut Partition,
        key: &[u8],
        delta: i64,
    ) -> Result<i64, IncrError> {
        let before = if self.stream {
            None
        } else {
            before(partition, key)
        };
        let value = partition.incr_by(key, delta)?;
        if !self.stream {
            self.undo.push(Undo::Key(key.into(), before));
        }
        let after = partition.lookup(key).map(|e| (e.value, e.deadline));
        let record = match after {
            Some((ValueRef::Str(text), deadline)) => Record::SetStr {
                key,
                value: text,
                deadline,
            },
            Some((ValueRef::Int(_), deadline)) => Record::SetInt {
                key,
                value,
                deadline,
            },
            None => Record::SetInt {
                key,
                value,
                deadline: None,
            },
        };
        record::encode(&record, &mut self.records);
        Ok(value)
    }

    /// Removes every key (FLUSH PARTITION) and logs it as one [`Record::Clear`]; the keys are
    /// kept, whole, until the commit (see the module docs).
    pub fn flush(&mut self, partition: &mut Partition) {
        if self.stream {
            partition.clear();
            record::encode(&Record::Clear, &mut self.records);
            return;
        }
        let contents = partition.take_contents();
        self.undo.push(Undo::Flush(Box::new(contents)));
        record::encode(&Record::Clear, &mut self.records);
    }

    /// Logs a key the expiry sweep removed, as a `DEL`. Nothing to undo: a commit that fails
    /// leaves the key gone in memory, where it was expired anyway, and replay drops a key
    /// past its deadline by itself.
    pub fn expired(&mut self, key: &[u8]) {
        record::encode(&Record::Del { key }, &mut self.records);
    }

    /// Logs a key evicted to make room for a write of this pass (the partition removes it
    /// right after), as a `DEL`, and keeps it to put back should the commit fail: the write
    /// that evicted it is then undone, and so is the eviction.
    pub fn evicted(&mut self, key: &[u8], entry: Entry) {
        if self.stream {
            record::encode(&Record::Del { key }, &mut self.records);
            return;
        }
        let before = Some((entry.value.to_owned(), entry.deadline));
        self.undo.push(Undo::Key(key.into(), before));
        record::encode(&Record::Del { key }, &mut self.records);
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
        for undo in self.undo.drain(..).rev() {
            match undo {
                Undo::Key(key, Some((value, deadline))) => {
                    partition.set_value(&key, &value, deadline)
                }
                Undo::Key(key, None) => {
                    partition.remove(&key);
                }
                Undo::Flush(contents) => partition.restore_contents(*contents),
            }
        }
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Schema;
    use std::sync::Arc;

    #[test]
    fn an_eviction_is_logged_and_undone_with_its_pass() {
        let far = crate::store::clock::system_now_ms() + 3_600_000;
        let mut p = Partition::new(Schema::Int, Arc::default());
        p.set_eviction(crate::store::Eviction::AllKeysRandom);
        p.set_int(b"old", 7, Expiry::At(far));
        let mut j = Journal::default();
        assert!(p.evict_one(|_| false, |key, entry| j.evicted(key, entry)));
        assert_eq!(p.get(b"old"), None);
        j.set_int(&mut p, b"new", 1, Expiry::Clear);
        let mut del = Vec::new();
        record::encode(&Record::Del { key: b"old" }, &mut del);
        assert!(j.pending().starts_with(&del), "the DEL is logged first");
        j.rollback(&mut p);
        let old = p.lookup(b"old").unwrap();
        assert_eq!((old.value, old.deadline), (ValueRef::Int(7), Some(far)));
        assert_eq!(p.get(b"new"), None);
    }

    #[test]
    fn a_stream_journal_records_the_same_and_keeps_nothing_to_undo() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        let mut q = Partition::new(Schema::Int, Arc::default());
        let (mut j, mut s) = (Journal::default(), Journal::stream());
        for (p, j) in [(&mut p, &mut j), (&mut q, &mut s)] {
            j.set_int(p, b"a", 1, Expiry::Clear);
            assert_eq!(j.incr_by(p, b"a", 2), Ok(3));
            assert!(j.set_deadline(p, b"a", Some(u64::MAX)));
            assert!(j.remove(p, b"a"));
            j.set_int(p, b"b", 1, Expiry::Clear);
            j.flush(p);
        }
        assert_eq!(j.pending(), s.pending());
        assert_eq!((j.writes(), s.writes()), (6, 0));
        assert!(q.is_empty());
    }

    /// A DEL or EXPIRE that finds its key expired reclaims it silently; with replicas
    /// following, that is logged as a DEL (they never expire keys by themselves).
    #[test]
    fn a_reclaimed_expired_key_is_a_del_when_replicas_follow() {
        let past = crate::store::clock::system_now_ms() - 1000;
        for replicated in [false, true] {
            let mut p = Partition::new(Schema::Int, Arc::default());
            p.set_int(b"a", 1, Expiry::At(past));
            p.set_int(b"b", 1, Expiry::At(past));
            let mut j = Journal::default();
            j.set_replicated(replicated);
            assert!(!j.remove(&mut p, b"a"));
            assert!(!j.set_deadline(&mut p, b"b", None));
            assert!(!j.remove(&mut p, b"never"));
            assert!(p.is_empty(), "both reclaimed");
            let mut dels = Vec::new();
            record::encode(&Record::Del { key: b"a" }, &mut dels);
            record::encode(&Record::Del { key: b"b" }, &mut dels);
            let want: &[u8] = if replicated { &dels } else { &[] };
            assert_eq!(j.pending(), want, "replicated {replicated}");
        }
    }

    #[test]
    fn rollback_restores_the_pass() {
        let far = crate::store::clock::system_now_ms() + 3_600_000;
        let mut p = Partition::new(Schema::Int, Arc::default());
        p.set_int(b"a", 1, Expiry::At(far));
        p.set_int(b"b", 2, Expiry::Clear);
        let mut j = Journal::default();
        j.set_int(&mut p, b"a", 10, Expiry::Clear);
        assert_eq!(j.incr_by(&mut p, b"a", 5), Ok(15));
        assert!(j.remove(&mut p, b"b"));
        assert!(!j.remove(&mut p, b"zz"));
        j.set_int(&mut p, b"c", 3, Expiry::Clear);
        assert!(j.set_deadline(&mut p, b"c", Some(far)));
        assert!(!j.set_deadline(&mut p, b"zz", Some(far)));
        assert_eq!(j.writes(), 5);
        j.rollback(&mut p);
        let a = p.lookup(b"a").unwrap();
        assert_eq!((a.value, a.deadline), (ValueRef::Int(1), Some(far)));
        assert_eq!(p.get(b"b"), Some(ValueRef::Int(2)));
        assert_eq!(p.get(b"c"), None);
        assert!(j.is_empty());
    }

    #[test]
    fn rollback_of_a_flush_puts_every_key_back() {
        let far = crate::store::clock::system_now_ms() + 3_600_000;
        let mut p = Partition::new(Schema::String, Arc::default());
        for i in 0..1000 {
            p.set_str(format!("k{i}").as_bytes(), b"v", Expiry::Clear);
        }
        p.set_str(b"ttl", b"t", Expiry::At(far));
        let used = p.used_memory();
        let mut j = Journal::default();
        j.set_str(&mut p, b"k1", b"before the flush", Expiry::Clear);
        j.flush(&mut p);
        assert!(p.is_empty());
        assert_eq!(p.used_memory(), 0);
        // Writes after the flush in the same pass are undone before it.
        j.set_str(&mut p, b"k2", b"after", Expiry::Clear);
        j.set_str(&mut p, b"new", b"after", Expiry::Clear);
        assert_eq!(j.writes(), 4);
        assert!(!j.pending().is_empty());
        j.rollback(&mut p);
        assert_eq!(p.len(), 1001);
        assert_eq!(p.used_memory(), used);
        assert_eq!(p.get(b"k1"), Some(ValueRef::Str(b"v")));
        assert_eq!(p.get(b"k2"), Some(ValueRef::Str(b"v")));
        assert_eq!(p.get(b"new"), None);
        assert_eq!(p.lookup(b"ttl").unwrap().deadline, Some(far));
        assert_eq!(p.with_deadline(), 1);
        assert_eq!(
            crate::store::PartitionStats::get(&p.stats().keys),
            1001,
            "the counters follow the restored table"
        );
    }
}

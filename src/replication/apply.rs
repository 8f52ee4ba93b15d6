//! Applying replicated records to a replica's partition, on the shard that owns it.
//!
//! The records are the primary's log records ([`crate::persist::record`]), checked (length
//! and CRC32C) before anything is applied. A durable partition applies them through its
//! journal, so they are logged and committed with the pass like a client's writes; a MEMORY
//! partition applies them directly. A key written with a deadline already past is stored as
//! it is (and hidden by every read): the primary's `DEL` removes it.

use crate::persist::record::{self, Decoded, Record};
use crate::persist::Journal;
use crate::store::{Expiry, Partition, Schema};

/// What a run of records did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub records: u64,
    /// Records of the wrong kind for the partition's schema (a STRING value in an INT
    /// partition): skipped, which only a damaged or foreign stream can cause.
    pub skipped: u64,
}

/// Most keys a replica makes room for at a `FULL` frame's count (a bigger partition grows
/// past it as usual): the primary's word cannot size an index of more than 32M slots
/// (6 bytes each, ~200 MB) up front.
pub const MAX_RESERVE: usize = 1 << 24;

fn expiry(deadline: Option<u64>) -> Expiry {
    deadline.map_or(Expiry::Clear, Expiry::At)
}

/// Records decoded and prefetched together before they are applied (see [`apply`]).
const WINDOW: usize = 16;

/// The key a record touches, if any.
fn key_of<'a>(rec: &Record<'a>) -> Option<&'a [u8]> {
    match *rec {
        Record::SetStr { key, .. }
        | Record::SetInt { key, .. }
        | Record::Del { key }
        | Record::Deadline { key, .. } => Some(key),
        Record::Clear | Record::End { .. } => None,
    }
}

/// Applies every record of `records` to `partition` (through `journal` when it is durable).
/// `Err`: a record is damaged (nothing after it is applied; the link must sync again).
///
/// Records go [`WINDOW`] at a time: decoded, then the table lines of all their keys
/// prefetched in the two steps a client's batch takes (`shard::input::prefetch_keys`), then
/// applied in order. One at a time, each write waited for two cache misses (its slot, then
/// its entry) in turn: on a replica of a 1M-key partition under SET -P 16 that was three
/// quarters of its shard's time.
pub fn apply(
    records: &[u8],
    partition: &mut Partition,
    mut journal: Option<&mut Journal>,
) -> Result<Applied, String> {
    let mut done = Applied::default();
    let mut at = 0;
    let mut window: [(Record<'_>, u64); WINDOW] = [(Record::Clear, 0); WINDOW];
    while at < records.len() {
        let mut n = 0;
        let mut damaged = None;
        while n < WINDOW && at < records.len() {
            match record::decode(&records[at..]) {
                Decoded::Record(rec, len) => {
                    let hash = key_of(&rec).map_or(0, |k| partition.hash_key(k));
                    window[n] = (rec, hash);
                    n += 1;
                    at += len;
                }
                Decoded::Incomplete { .. } => {
                    damaged = Some(format!("a record cut short at byte {at} of a frame"));
                    break;
                }
                Decoded::Damaged(why) => {
                    damaged = Some(format!("record at byte {at}: {why}"));
                    break;
                }
            }
        }
        if n > 1 {
            for (rec, hash) in &window[..n] {
                if key_of(rec).is_some() {
                    partition.prefetch(*hash);
                }
            }
            for (rec, hash) in &window[..n] {
                if key_of(rec).is_some() {
                    partition.prefetch_entry(*hash);
                }
            }
        }
        for &(rec, _) in &window[..n] {
            apply_one(rec, partition, &mut journal, &mut done);
        }
        if let Some(why) = damaged {
            return Err(why);
        }
    }
    Ok(done)
}

/// Applies one decoded record.
fn apply_one(
    rec: Record<'_>,
    partition: &mut Partition,
    journal: &mut Option<&mut Journal>,
    done: &mut Applied,
) {
    {
        done.records += 1;
        let schema = partition.schema();
        match (rec, journal) {
            (Record::SetStr { .. }, _) if schema == Schema::Int => done.skipped += 1,
            (Record::SetInt { .. }, _) if schema == Schema::String => done.skipped += 1,
            (
                Record::SetStr {
                    key,
                    value,
                    deadline,
                },
                Some(j),
            ) => j.set_str(partition, key, value, expiry(deadline)),
            (
                Record::SetStr {
                    key,
                    value,
                    deadline,
                },
                None,
            ) => partition.set_str(key, value, expiry(deadline)),
            (
                Record::SetInt {
                    key,
                    value,
                    deadline,
                },
                Some(j),
            ) => j.set_int(partition, key, value, expiry(deadline)),
            (
                Record::SetInt {
                    key,
                    value,
                    deadline,
                },
                None,
            ) => partition.set_int(key, value, expiry(deadline)),
            (Record::Del { key }, Some(j)) => {
                j.remove(partition, key);
            }
            (Record::Del { key }, None) => {
                partition.remove(key);
            }
            (Record::Deadline { key, deadline }, Some(j)) => {
                j.set_deadline(partition, key, deadline);
            }
            (Record::Deadline { key, deadline }, None) => {
                partition.set_deadline(key, deadline);
            }
            (Record::Clear, Some(j)) => j.flush(partition),
            (Record::Clear, None) => partition.clear(),
            // A snapshot trailer has no business in a stream; harmless.
            (Record::End { .. }, _) => done.skipped += 1,
        }
    }
}

/// Empties a partition for its full sync (through its journal when it is durable: a
/// `CLEAR` record).
pub fn clear(partition: &mut Partition, journal: Option<&mut Journal>) {
    match journal {
        Some(j) => j.flush(partition),
        None => partition.clear(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ValueRef;
    use std::sync::Arc;

    fn recs(list: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in list {
            record::encode(r, &mut out);
        }
        out
    }

    #[test]
    fn records_apply_and_a_past_deadline_is_stored_hidden() {
        let past = crate::store::clock::system_now_ms() - 1000;
        let far = crate::store::clock::system_now_ms() + 3_600_000;
        let mut p = Partition::new(Schema::String, Arc::default());
        let bytes = recs(&[
            Record::SetStr {
                key: b"a",
                value: b"1",
                deadline: None,
            },
            Record::SetStr {
                key: b"b",
                value: b"2",
                deadline: Some(far),
            },
            Record::SetStr {
                key: b"old",
                value: b"x",
                deadline: Some(past),
            },
            Record::Deadline {
                key: b"a",
                deadline: Some(far),
            },
            Record::Del { key: b"b" },
            Record::SetInt {
                key: b"n",
                value: 5,
                deadline: None,
            },
        ]);
        let done = apply(&bytes, &mut p, None).unwrap();
        assert_eq!(
            done,
            Applied {
                records: 6,
                skipped: 1
            },
            "SET_INT on STRING"
        );
        assert_eq!(p.get(b"a"), Some(ValueRef::Str(b"1")));
        assert_eq!(p.lookup(b"a").unwrap().deadline, Some(far));
        assert_eq!(p.get(b"b"), None);
        assert_eq!(p.get(b"old"), None, "hidden");
        assert_eq!(p.len(), 2, "but still held until the primary's DEL");
        apply(&recs(&[Record::Del { key: b"old" }]), &mut p, None).unwrap();
        assert_eq!(p.len(), 1);
    }

    /// Records go a window at a time: many windows apply in order (a key written, deleted
    /// and written again across window boundaries ends as the last record says), and damage
    /// in the middle of a window still applies everything before it and nothing after.
    #[test]
    fn windows_apply_in_order_and_damage_mid_window_stops_there() {
        let mut p = Partition::new(Schema::String, Arc::default());
        let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i}").into_bytes()).collect();
        let mut list = Vec::new();
        for round in 0..3u8 {
            for (i, k) in keys.iter().enumerate() {
                if i % 7 == round as usize {
                    list.push(Record::Del { key: k });
                } else {
                    list.push(Record::SetStr {
                        key: k,
                        value: std::slice::from_ref(&[b'a', b'b', b'c'][round as usize]),
                        deadline: None,
                    });
                }
            }
        }
        let done = apply(&recs(&list), &mut p, None).unwrap();
        assert_eq!(done.records, 300);
        for (i, k) in keys.iter().enumerate() {
            let want = (i % 7 != 2).then_some(ValueRef::Str(b"c"));
            assert_eq!(p.get(k), want, "key {i}");
        }
        // Damage in record 20 (the second window's fifth): 20 applied, none after.
        let mut q = Partition::new(Schema::String, Arc::default());
        let list: Vec<Record> = keys[..40]
            .iter()
            .map(|k| Record::SetStr {
                key: k,
                value: b"v",
                deadline: None,
            })
            .collect();
        let mut bytes = recs(&list[..20]);
        let damaged_at = bytes.len();
        bytes.extend(recs(&list[20..]));
        bytes[damaged_at + 5] ^= 0xff;
        assert!(apply(&bytes, &mut q, None).is_err());
        assert_eq!(q.len(), 20);
        assert!(keys[..20].iter().all(|k| q.get(k).is_some()));
    }

    #[test]
    fn a_durable_partition_journals_what_it_applies_and_damage_stops() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        let mut j = Journal::default();
        let mut bytes = recs(&[
            Record::SetInt {
                key: b"n",
                value: 7,
                deadline: None,
            },
            Record::Clear,
        ]);
        apply(&bytes, &mut p, Some(&mut j)).unwrap();
        assert_eq!(j.pending(), &bytes[..], "logged as received");
        assert!(p.is_empty());
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(apply(&bytes, &mut p, None)
            .unwrap_err()
            .contains("checksum"));
        assert!(apply(&bytes[..3], &mut p, None)
            .unwrap_err()
            .contains("cut short"));
    }
}

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

fn expiry(deadline: Option<u64>) -> Expiry {
    deadline.map_or(Expiry::Clear, Expiry::At)
}

/// Applies every record of `records` to `partition` (through `journal` when it is durable).
/// `Err`: a record is damaged (nothing after it is applied; the link must sync again).
pub fn apply(
    records: &[u8],
    partition: &mut Partition,
    mut journal: Option<&mut Journal>,
) -> Result<Applied, String> {
    let mut done = Applied::default();
    let mut at = 0;
    while at < records.len() {
        let (rec, len) = match record::decode(&records[at..]) {
            Decoded::Record(rec, len) => (rec, len),
            Decoded::Incomplete { .. } => {
                return Err(format!("a record cut short at byte {at} of a frame"))
            }
            Decoded::Damaged(why) => return Err(format!("record at byte {at}: {why}")),
        };
        at += len;
        done.records += 1;
        let schema = partition.schema();
        match (rec, &mut journal) {
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
    Ok(done)
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

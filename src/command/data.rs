//! Data commands: SET GET DEL EXISTS INCR DECR INCRBY DECRBY MGET MSET.
//!
//! They run on the shard that owns the partition, with the partition in hand — the same code
//! whether the request came from a local connection or was forwarded by another shard. Every
//! command validates all of its input before it changes anything, so an error reply always
//! means "nothing was written".
//!
//! Writes to a durable partition go through its [`Journal`] (given as `journal`), which
//! applies them, logs a physical record per change (INCR as the SET of its result) and keeps
//! what to undo should the pass's commit fail. A MEMORY partition passes `None`.

use crate::persist::Journal;
use crate::protocol::{Args, ReplyWriter};
use crate::store::partition::ValueRef;
use crate::store::{parse_canonical_i64, IncrError, Partition, PartitionStats, Schema};

use super::{check_key, CommandError, CommandId};

/// Limits a data command checks.
#[derive(Clone, Copy, Debug)]
pub struct DataLimits {
    pub max_key_len: usize,
}

/// True for the commands that may change a partition.
#[inline]
pub fn is_write(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::Set
            | CommandId::MSet
            | CommandId::Del
            | CommandId::Incr
            | CommandId::Decr
            | CommandId::IncrBy
            | CommandId::DecrBy
    )
}

/// The partition's mutations, journaled when the partition is durable.
struct Writes<'a, 'j> {
    partition: &'a mut Partition,
    journal: Option<&'j mut Journal>,
}

impl Writes<'_, '_> {
    #[inline]
    fn set_str(&mut self, key: &[u8], value: &[u8]) {
        match &mut self.journal {
            Some(j) => j.set_str(self.partition, key, value),
            None => self.partition.set_str(key, value),
        }
    }

    #[inline]
    fn set_int(&mut self, key: &[u8], value: i64) {
        match &mut self.journal {
            Some(j) => j.set_int(self.partition, key, value),
            None => self.partition.set_int(key, value),
        }
    }

    #[inline]
    fn remove(&mut self, key: &[u8]) -> bool {
        match &mut self.journal {
            Some(j) => j.remove(self.partition, key),
            None => self.partition.remove(key),
        }
    }

    #[inline]
    fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        match &mut self.journal {
            Some(j) => j.incr_by(self.partition, key, delta),
            None => self.partition.incr_by(key, delta),
        }
    }
}

/// Runs a data command (`args[1]` is the partition, already resolved to `partition`) and
/// writes its reply. On `Err` nothing was written to the reply or the partition.
pub fn execute(
    id: CommandId,
    args: &Args,
    partition: &mut Partition,
    journal: Option<&mut Journal>,
    limits: DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let mut writes = Writes { partition, journal };
    let stats = writes.partition.stats();
    PartitionStats::add(&stats.ops, 1);
    match id {
        CommandId::Get | CommandId::MGet | CommandId::Exists => {
            PartitionStats::add(&stats.reads, 1)
        }
        _ => PartitionStats::add(&stats.writes, 1),
    }
    match id {
        CommandId::Get => {
            let key = args.get(2);
            check_key(key, limits.max_key_len)?;
            let found = write_value(writes.partition.get(key), w);
            count_lookups(writes.partition, found as u64, !found as u64);
            Ok(())
        }
        CommandId::MGet => {
            let keys = keys(args, 2, 1);
            for key in keys.clone() {
                check_key(key, limits.max_key_len)?;
            }
            w.array(args.len() - 2);
            let mut hits = 0;
            for key in keys {
                hits += write_value(writes.partition.get(key), w) as u64;
            }
            count_lookups(writes.partition, hits, (args.len() - 2) as u64 - hits);
            Ok(())
        }
        CommandId::Exists => {
            let mut present = 0;
            for key in keys(args, 2, 1) {
                check_key(key, limits.max_key_len)?;
                present += writes.partition.contains(key) as i64;
            }
            w.integer(present);
            Ok(())
        }
        CommandId::Set => {
            let (key, value) = (args.get(2), args.get(3));
            check_key(key, limits.max_key_len)?;
            match writes.partition.schema() {
                Schema::String => writes.set_str(key, value),
                Schema::Int => {
                    let n = parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
                    writes.set_int(key, n);
                }
            }
            w.ok();
            Ok(())
        }
        CommandId::MSet => {
            if !args.len().is_multiple_of(2) {
                return Err(CommandError::WrongArity("mset"));
            }
            // Validate every pair before writing any, so MSET is all or nothing.
            for key in keys(args, 2, 2) {
                check_key(key, limits.max_key_len)?;
            }
            match writes.partition.schema() {
                Schema::String => {
                    for i in (2..args.len()).step_by(2) {
                        writes.set_str(args.get(i), args.get(i + 1));
                    }
                }
                Schema::Int => {
                    for value in keys(args, 3, 2) {
                        parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
                    }
                    for i in (2..args.len()).step_by(2) {
                        // Parsed above; cannot fail here.
                        let n = parse_canonical_i64(args.get(i + 1)).unwrap_or_default();
                        writes.set_int(args.get(i), n);
                    }
                }
            }
            w.ok();
            Ok(())
        }
        CommandId::Del => {
            for key in keys(args, 2, 1) {
                check_key(key, limits.max_key_len)?;
            }
            let mut removed = 0;
            for key in keys(args, 2, 1) {
                removed += writes.remove(key) as i64;
            }
            w.integer(removed);
            Ok(())
        }
        CommandId::Incr | CommandId::Decr | CommandId::IncrBy | CommandId::DecrBy => {
            let key = args.get(2);
            check_key(key, limits.max_key_len)?;
            if writes.partition.schema() != Schema::Int {
                return Err(CommandError::WrongSchema("INT"));
            }
            let delta = match id {
                CommandId::Incr => 1,
                CommandId::Decr => -1,
                _ => {
                    let n = crate::protocol::parser::parse_i64(args.get(3))
                        .ok_or(CommandError::ValueNotInteger)?;
                    if id == CommandId::DecrBy {
                        n.checked_neg().ok_or(CommandError::Overflow)?
                    } else {
                        n
                    }
                }
            };
            match writes.incr_by(key, delta) {
                Ok(value) => {
                    w.integer(value);
                    Ok(())
                }
                Err(IncrError::Overflow) => Err(CommandError::Overflow),
                Err(IncrError::WrongType) => Err(CommandError::WrongSchema("INT")),
            }
        }
        _ => Err(CommandError::UnknownCommand(format!("{id:?}"))),
    }
}

/// Arguments `from, from + step, ...` to the end.
#[inline]
fn keys<'a>(args: &Args<'a>, from: usize, step: usize) -> impl Iterator<Item = &'a [u8]> + Clone {
    let args = *args;
    (from..args.len()).step_by(step).map(move |i| args.get(i))
}

/// Writes a value (or null); true if there was one.
#[inline]
fn write_value(value: Option<ValueRef>, w: &mut ReplyWriter) -> bool {
    match value {
        Some(ValueRef::Str(bytes)) => w.bulk(bytes),
        Some(ValueRef::Int(n)) => w.integer(n),
        None => {
            w.null();
            return false;
        }
    }
    true
}

#[inline]
fn count_lookups(partition: &Partition, hits: u64, misses: u64) {
    let stats = partition.stats();
    if hits > 0 {
        PartitionStats::add(&stats.hits, hits);
    }
    if misses > 0 {
        PartitionStats::add(&stats.misses, misses);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Protocol, Span};
    use std::sync::Arc;

    fn run(p: &mut Partition, words: &[&str]) -> String {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for w in words {
            let start = buf.len() as u32;
            buf.extend_from_slice(w.as_bytes());
            spans.push(Span {
                start,
                end: buf.len() as u32,
            });
        }
        let args = Args::new(&buf, &spans);
        let spec = crate::command::lookup(&args).expect("known command");
        let mut out = Vec::new();
        let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
        let limits = DataLimits { max_key_len: 8 };
        if let Err(e) = execute(spec.id, &args, p, None, limits, &mut w) {
            e.write_to(&mut w);
        }
        String::from_utf8(out).expect("ascii replies")
    }

    #[test]
    fn mset_on_int_is_all_or_nothing() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert!(run(&mut p, &["MSET", "p", "a", "1", "b", "x"]).starts_with("-WRONGTYPE"));
        assert_eq!(run(&mut p, &["EXISTS", "p", "a", "b"]), ":0\r\n");
        assert_eq!(run(&mut p, &["MSET", "p", "a", "1", "b", "2"]), "+OK\r\n");
        assert_eq!(
            run(&mut p, &["MGET", "p", "a", "b", "c"]),
            "*3\r\n:1\r\n:2\r\n$-1\r\n"
        );
    }

    #[test]
    fn key_limit_rejects_before_writing() {
        let mut p = Partition::new(Schema::String, Arc::default());
        assert!(run(&mut p, &["MSET", "p", "a", "1", "waytoolongkey", "2"])
            .starts_with("-ERR key too long"));
        assert_eq!(run(&mut p, &["EXISTS", "p", "a"]), ":0\r\n");
        assert!(run(&mut p, &["DEL", "p", "a", "waytoolongkey"]).starts_with("-ERR key too long"));
    }

    #[test]
    fn decrby_min_is_overflow() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert_eq!(
            run(&mut p, &["DECRBY", "p", "k", "-9223372036854775808"]),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(run(&mut p, &["EXISTS", "p", "k"]), ":0\r\n");
    }

    #[test]
    fn stats_count_commands_and_lookups() {
        let mut p = Partition::new(Schema::String, Arc::default());
        run(&mut p, &["SET", "p", "a", "1"]);
        run(&mut p, &["MGET", "p", "a", "b", "a"]);
        run(&mut p, &["GET", "p", "zz"]);
        let s = p.stats();
        let g = PartitionStats::get;
        assert_eq!((g(&s.ops), g(&s.reads), g(&s.writes)), (3, 2, 1));
        assert_eq!((g(&s.hits), g(&s.misses), g(&s.keys)), (2, 2, 1));
    }
}

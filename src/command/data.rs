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
use crate::store::{
    parse_canonical_i64, IncrError, MemoryBudget, Partition, PartitionStats, Schema,
};

use super::{check_key, CommandError, CommandId};

/// Limits a data command checks.
#[derive(Clone, Copy)]
pub struct DataLimits<'a> {
    pub max_key_len: usize,
    /// `max-memory`: checked before a write that would grow the data.
    pub memory: MemoryBudget<'a>,
    /// Largest reply a read may build (what is left of the client's output limit): a GET or
    /// MGET past it is refused before its reply is built, so that no single request can make
    /// the server copy gigabytes of values into an output buffer only to drop them.
    pub max_reply: usize,
}

impl DataLimits<'_> {
    /// Refuses a write that would grow the data by `growth` bytes past `max-memory`.
    #[inline]
    fn admit(&self, growth: u64) -> Result<(), CommandError> {
        if self.memory.admits(growth) {
            Ok(())
        } else {
            Err(CommandError::OutOfMemory)
        }
    }
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
    partition.maintain();
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
            let value = writes.partition.get(key);
            if encoded_size(&value) > limits.max_reply {
                return Err(CommandError::ReplyTooLarge);
            }
            let found = write_value(value, w);
            count_lookups(writes.partition, found as u64, !found as u64);
            Ok(())
        }
        CommandId::MGet => {
            let keys = keys(args, 2, 1);
            for key in keys.clone() {
                check_key(key, limits.max_key_len)?;
            }
            let start = w.buf.len();
            w.array(args.len() - 2);
            let mut hits = 0;
            for key in keys {
                let value = writes.partition.get(key);
                if w.buf.len() - start + encoded_size(&value) > limits.max_reply {
                    // Nothing written on error: take back the part already encoded.
                    w.buf.truncate(start);
                    return Err(CommandError::ReplyTooLarge);
                }
                hits += write_value(value, w) as u64;
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
                Schema::String => {
                    limits.admit(writes.partition.set_growth(key, value.len()))?;
                    writes.set_str(key, value);
                }
                Schema::Int => {
                    let n = parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
                    limits.admit(writes.partition.set_growth(key, 0))?;
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
            // A key named twice counts twice: an overestimate, never an underestimate.
            let growth = (2..args.len())
                .step_by(2)
                .map(|i| {
                    writes
                        .partition
                        .set_growth(args.get(i), args.get(i + 1).len())
                })
                .sum();
            match writes.partition.schema() {
                Schema::String => {
                    limits.admit(growth)?;
                    for i in (2..args.len()).step_by(2) {
                        writes.set_str(args.get(i), args.get(i + 1));
                    }
                }
                Schema::Int => {
                    for value in keys(args, 3, 2) {
                        parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
                    }
                    limits.admit(growth)?;
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
            limits.admit(writes.partition.set_growth(key, 0))?;
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

/// An upper bound of a value's encoded size (header, data, CRLF).
#[inline]
fn encoded_size(value: &Option<ValueRef>) -> usize {
    // `$` + up to 20 digits + CRLF + CRLF; integers and nulls fit in it.
    const FRAMING: usize = 25;
    match value {
        Some(ValueRef::Str(bytes)) => bytes.len() + FRAMING,
        _ => FRAMING,
    }
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
        let limits = DataLimits {
            max_key_len: 8,
            memory: MemoryBudget::unlimited(),
            max_reply: 1000,
        };
        if let Err(e) = execute(spec.id, &args, p, None, limits, &mut w) {
            e.write_to(&mut w);
        }
        String::from_utf8(out).expect("ascii replies")
    }

    /// A partition that grew and then only serves reads still finishes draining its old
    /// index (each data command does a step).
    #[test]
    fn reads_alone_finish_a_growth() {
        let mut p = Partition::new(Schema::String, Arc::default());
        let mut i = 0;
        while p.draining().is_none() {
            p.set_str(format!("k{i}").as_bytes(), b"v");
            i += 1;
        }
        let mut reads = 0;
        while p.draining().is_some() {
            assert_eq!(run(&mut p, &["GET", "p", "k1"]), "$1\r\nv\r\n");
            reads += 1;
            assert!(reads <= i, "{reads} reads and still draining");
        }
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
    fn max_memory_refuses_growth_but_not_shrinking() {
        use crate::metrics::{ServerMetrics, ShardMetrics};
        use crate::store::memory::ENTRY_OVERHEAD;
        let metrics = ServerMetrics::new(2);
        let limits = DataLimits {
            max_key_len: 64,
            memory: MemoryBudget::new(1000, &metrics),
            max_reply: 1 << 20,
        };
        let exec = |p: &mut Partition, words: &[&str]| {
            let buf: Vec<u8> = words.concat().into_bytes();
            let mut spans = Vec::new();
            let mut at = 0u32;
            for w in words {
                spans.push(Span {
                    start: at,
                    end: at + w.len() as u32,
                });
                at += w.len() as u32;
            }
            let args = Args::new(&buf, &spans);
            let spec = crate::command::lookup(&args).expect("known command");
            let mut out = Vec::new();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            if let Err(e) = execute(spec.id, &args, p, None, limits, &mut w) {
                e.write_to(&mut w);
            }
            String::from_utf8(out).expect("ascii replies")
        };
        let mut p = Partition::new(Schema::String, Arc::default());
        // Another shard holds 900 bytes: 100 are left.
        ShardMetrics::set(&metrics.shards[1].used_memory, 900);
        let fits = "x".repeat(100 - ENTRY_OVERHEAD as usize - 1);
        assert_eq!(exec(&mut p, &["SET", "p", "k", &fits]), "+OK\r\n");
        ShardMetrics::set(&metrics.shards[0].used_memory, p.used_memory());
        assert_eq!(
            exec(&mut p, &["SET", "p", "j", "v"]),
            "-OOM command not allowed when used memory > 'max-memory'\r\n"
        );
        assert_eq!(exec(&mut p, &["GET", "p", "j"]), "$-1\r\n");
        assert!(exec(&mut p, &["MSET", "p", "a", "1", "b", "2"]).starts_with("-OOM"));
        assert_eq!(exec(&mut p, &["EXISTS", "p", "a", "b"]), ":0\r\n");
        // Overwriting with a shorter value does not grow: allowed at the limit.
        assert_eq!(exec(&mut p, &["SET", "p", "k", "short"]), "+OK\r\n");
        assert_eq!(exec(&mut p, &["DEL", "p", "k"]), ":1\r\n");
        let mut ints = Partition::new(Schema::Int, Arc::default());
        ShardMetrics::set(&metrics.shards[1].used_memory, 1000);
        assert!(exec(&mut ints, &["INCR", "p", "n"]).starts_with("-OOM"));
        assert!(ints.is_empty());
    }

    #[test]
    fn oversized_reads_are_refused_before_building_the_reply() {
        let mut p = Partition::new(Schema::String, Arc::default());
        let big = "v".repeat(400);
        run(&mut p, &["SET", "p", "a", &big]);
        assert!(run(&mut p, &["GET", "p", "a"]).starts_with("$400\r\n"));
        assert!(run(&mut p, &["MGET", "p", "a", "a"]).starts_with("*2\r\n$400"));
        // Three copies pass the 1000-byte reply limit of `run`: nothing is encoded.
        assert_eq!(
            run(&mut p, &["MGET", "p", "a", "a", "a"]),
            "-ERR reply larger than the client output limit\r\n"
        );
        run(&mut p, &["SET", "p", "b", &"v".repeat(1000)]);
        assert!(run(&mut p, &["GET", "p", "b"]).starts_with("-ERR reply larger"));
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

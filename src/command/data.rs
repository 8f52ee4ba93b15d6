//! Data commands: SET GET DEL EXISTS INCR DECR INCRBY DECRBY MGET MSET.
//!
//! They run on the shard that owns the partition, with the partition in hand — the same code
//! whether the request came from a local connection or was forwarded by another shard. Every
//! command validates all of its input before it changes anything, so an error reply always
//! means "nothing was written".
//!
//! Each command is one function, named by its row in the command table ([`super::COMMANDS`]):
//! a [`ReadFn`] gets the partition read-only, a [`WriteFn`] gets [`Writes`], the only way to
//! change it. [`execute`] does what every data command shares (the partition's maintenance
//! step, its counters, the key-length check of the row's key arguments) and calls the row's
//! function.
//!
//! Writes to a durable partition go through its [`Journal`] (given as `journal`), which
//! applies them, logs a physical record per change (INCR as the SET of its result) and keeps
//! what to undo should the pass's commit fail. A MEMORY partition passes `None`. The shard
//! passes the journal exactly when the row is flagged `write`, which the table's compile-time
//! check ties to its handler being a [`WriteFn`]: a command that can change data is logged.

use crate::persist::Journal;
use crate::protocol::{Args, ReplyWriter};
use crate::store::partition::ValueRef;
use crate::store::{
    parse_canonical_i64, Expiry, IncrError, MemoryBudget, Partition, PartitionStats, Schema, Value,
};

use super::{check_key, CommandError, CommandSpec, Handler, Keys};

/// Limits a data command checks.
#[derive(Clone, Copy)]
pub struct DataLimits<'a> {
    pub max_key_len: usize,
    /// Longest value a write may build (APPEND, SETRANGE): `max-bulk-len`, so that every value
    /// stored can also be sent back in a request.
    pub max_value_len: usize,
    /// Most keys a KEYS reply may hold (`max-keys-reply`).
    pub max_keys_reply: usize,
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

/// Runs a read: the partition is read-only to it.
pub type ReadFn = fn(&Args, &Partition, &DataLimits, &mut ReplyWriter) -> Result<(), CommandError>;

/// Runs a write: every change goes through [`Writes`], which journals it on a durable
/// partition.
pub type WriteFn =
    fn(&Args, &mut Writes, &DataLimits, &mut ReplyWriter) -> Result<(), CommandError>;

/// The partition's mutations, journaled when the partition is durable: the only way a data
/// command can change a partition, and only [`Handler::Write`]s get one.
pub struct Writes<'a, 'j> {
    partition: &'a mut Partition,
    journal: Option<&'j mut Journal>,
}

impl Writes<'_, '_> {
    /// The partition, read-only (to look before writing).
    #[inline]
    pub fn partition(&self) -> &Partition {
        self.partition
    }

    #[inline]
    pub fn set_str(&mut self, key: &[u8], value: &[u8], expiry: Expiry) {
        match &mut self.journal {
            Some(j) => j.set_str(self.partition, key, value, expiry),
            None => self.partition.set_str(key, value, expiry),
        }
    }

    #[inline]
    pub fn set_int(&mut self, key: &[u8], value: i64, expiry: Expiry) {
        match &mut self.journal {
            Some(j) => j.set_int(self.partition, key, value, expiry),
            None => self.partition.set_int(key, value, expiry),
        }
    }

    /// Sets or removes a live key's deadline; false when the key is absent or expired.
    #[inline]
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>) -> bool {
        match &mut self.journal {
            Some(j) => j.set_deadline(self.partition, key, deadline),
            None => self.partition.set_deadline(key, deadline),
        }
    }

    #[inline]
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match &mut self.journal {
            Some(j) => j.remove(self.partition, key),
            None => self.partition.remove(key),
        }
    }

    /// Removes a live key and returns its value and deadline.
    #[inline]
    pub fn take(&mut self, key: &[u8]) -> Option<(Value, Option<u64>)> {
        match &mut self.journal {
            Some(j) => j.take(self.partition, key),
            None => self.partition.take(key),
        }
    }

    /// Removes every key (FLUSH PARTITION); a durable partition logs one `CLEAR` and keeps
    /// the old keys until the commit (see `persist::journal`).
    pub fn flush(&mut self) {
        match &mut self.journal {
            Some(j) => j.flush(self.partition),
            None => self.partition.clear(),
        }
    }

    #[inline]
    pub fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        match &mut self.journal {
            Some(j) => j.incr_by(self.partition, key, delta),
            None => self.partition.incr_by(key, delta),
        }
    }
}

/// Runs a data command (its partition, argument `spec.partition_index()`, already resolved
/// to `partition`) and
/// writes its reply. On `Err` nothing was written to the reply or the partition. Every key
/// argument (the row's [`Keys`](super::Keys)) is checked against `max-key-len` first.
/// `spec` is the request's row, which the caller already holds (taking the row rather than
/// its id saves looking it up again: GET 1423 -> 1416 user-space instructions per request,
/// `scripts/count-instructions.sh`).
#[inline]
pub fn execute(
    spec: &CommandSpec,
    args: &Args,
    partition: &mut Partition,
    journal: Option<&mut Journal>,
    limits: DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    partition.maintain();
    let stats = partition.stats();
    PartitionStats::add(&stats.ops, 1);
    check_keys(spec.keys, args, limits.max_key_len)?;
    match spec.handler {
        Handler::Read(read) => {
            PartitionStats::add(&stats.reads, 1);
            read(args, partition, &limits, w)
        }
        Handler::Write(write) => {
            PartitionStats::add(&stats.writes, 1);
            write(args, &mut Writes { partition, journal }, &limits, w)
        }
        // Only a row routed to a partition reaches here (the route is the handler's kind).
        Handler::Connection(_) | Handler::Coordinator(_) => Err(CommandError::NotAvailable(
            format!("{} is not a data command", spec.name),
        )),
    }
}

/// Checks every key argument against `max-key-len` (a plain loop: this runs for every data
/// request).
#[inline]
fn check_keys(keys: Keys, args: &Args, max_key_len: usize) -> Result<(), CommandError> {
    let argc = args.len();
    let (first, step) = (usize::from(keys.first), usize::from(keys.step.max(1)));
    if first == 0 {
        return Ok(());
    }
    let end = if keys.last < 0 {
        (argc + 1).saturating_sub(keys.last.unsigned_abs() as usize)
    } else {
        (keys.last as usize + 1).min(argc)
    };
    let mut at = first;
    while at < end {
        check_key(args.get(at), max_key_len)?;
        at += step;
    }
    Ok(())
}

/// `GET <partition> <key>`
pub fn get(
    args: &Args,
    partition: &Partition,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let value = partition.get(args.get(2));
    if encoded_size(&value) > limits.max_reply {
        return Err(CommandError::ReplyTooLarge);
    }
    let found = write_value(value, w);
    count_lookups(partition, found as u64, !found as u64);
    Ok(())
}

/// `MGET <partition> <key> [key ...]`
pub fn mget(
    args: &Args,
    partition: &Partition,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let start = w.buf.len();
    w.array(args.len() - 2);
    let mut hits = 0;
    for key in keys(args, 2, 1) {
        let value = partition.get(key);
        if w.buf.len() - start + encoded_size(&value) > limits.max_reply {
            // Nothing written on error: take back the part already encoded.
            w.buf.truncate(start);
            return Err(CommandError::ReplyTooLarge);
        }
        hits += write_value(value, w) as u64;
    }
    count_lookups(partition, hits, (args.len() - 2) as u64 - hits);
    Ok(())
}

/// `EXISTS <partition> <key> [key ...]`
pub fn exists(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let present = keys(args, 2, 1)
        .filter(|key| partition.contains(key))
        .count();
    w.integer(present as i64);
    Ok(())
}

/// `SET <partition> <key> <value>`
pub fn set(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let (key, value) = (args.get(2), args.get(3));
    match writes.partition.schema() {
        Schema::String => {
            limits.admit(writes.partition.set_growth(key, value.len(), false))?;
            writes.set_str(key, value, Expiry::Clear);
        }
        Schema::Int => {
            let n = parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
            limits.admit(writes.partition.set_growth(key, 0, false))?;
            writes.set_int(key, n, Expiry::Clear);
        }
    }
    w.ok();
    Ok(())
}

/// `MSET <partition> <key> <value> [key value ...]`: all or nothing.
pub fn mset(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity("mset"));
    }
    // A key named twice counts twice: an overestimate, never an underestimate.
    let growth = (2..args.len())
        .step_by(2)
        .map(|i| {
            writes
                .partition
                .set_growth(args.get(i), args.get(i + 1).len(), false)
        })
        .sum();
    match writes.partition.schema() {
        Schema::String => {
            limits.admit(growth)?;
            for i in (2..args.len()).step_by(2) {
                writes.set_str(args.get(i), args.get(i + 1), Expiry::Clear);
            }
        }
        Schema::Int => {
            // Validate every value before writing any.
            for value in keys(args, 3, 2) {
                parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
            }
            limits.admit(growth)?;
            for i in (2..args.len()).step_by(2) {
                // Parsed above; cannot fail here.
                let n = parse_canonical_i64(args.get(i + 1)).unwrap_or_default();
                writes.set_int(args.get(i), n, Expiry::Clear);
            }
        }
    }
    w.ok();
    Ok(())
}

/// `DEL <partition> <key> [key ...]`
pub fn del(
    args: &Args,
    writes: &mut Writes,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let mut removed = 0;
    for key in keys(args, 2, 1) {
        removed += writes.remove(key) as i64;
    }
    w.integer(removed);
    Ok(())
}

/// `INCR <partition> <key>`
pub fn incr(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    add(args.get(2), 1, writes, limits, w)
}

/// `DECR <partition> <key>`
pub fn decr(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    add(args.get(2), -1, writes, limits, w)
}

/// `INCRBY <partition> <key> <increment>`
pub fn incrby(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    need_int(writes)?;
    let delta = parse_increment(args.get(3))?;
    add(args.get(2), delta, writes, limits, w)
}

/// `DECRBY <partition> <key> <decrement>`
pub fn decrby(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    need_int(writes)?;
    let delta = parse_increment(args.get(3))?
        .checked_neg()
        .ok_or(CommandError::Overflow)?;
    add(args.get(2), delta, writes, limits, w)
}

/// An INCRBY/DECRBY argument, parsed as Redis 7 parses it (`string2ll`): the canonical
/// decimal form only, so `01`, `-0`, `+1` and ` 1` are refused as SET refuses them.
#[inline]
fn parse_increment(raw: &[u8]) -> Result<i64, CommandError> {
    parse_canonical_i64(raw).ok_or(CommandError::ValueNotInteger)
}

/// The INCR family works on INT partitions only (checked before the increment is parsed).
#[inline]
fn need_int(writes: &Writes) -> Result<(), CommandError> {
    if writes.partition.schema() == Schema::Int {
        Ok(())
    } else {
        Err(CommandError::WrongSchema("INT"))
    }
}

/// The INCR family: adds `delta` to an INT partition's key (missing counts as 0).
fn add(
    key: &[u8],
    delta: i64,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    need_int(writes)?;
    limits.admit(writes.partition.set_growth(key, 0, false))?;
    match writes.incr_by(key, delta) {
        Ok(value) => {
            w.integer(value);
            Ok(())
        }
        Err(IncrError::Overflow) => Err(CommandError::Overflow),
        Err(IncrError::NotAnInteger) => Err(CommandError::ValueNotInteger),
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
            max_value_len: 1 << 20,
            max_keys_reply: 1000,
            memory: MemoryBudget::unlimited(),
            max_reply: 1000,
        };
        if let Err(e) = execute(spec, &args, p, None, limits, &mut w) {
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
            p.set_str(format!("k{i}").as_bytes(), b"v", Expiry::Clear);
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
            max_value_len: 1 << 20,
            max_keys_reply: 1000,
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
            if let Err(e) = execute(spec, &args, p, None, limits, &mut w) {
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

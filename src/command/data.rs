//! What every data command shares, and DEL and EXISTS.
//!
//! Data commands run on the shard that owns the partition, with the partition in hand — the
//! same code whether the request came from a local connection or was forwarded by another
//! shard. Every command validates all of its input before it changes anything, so an error
//! reply always means "nothing was written".
//!
//! Each command is one function in its family's file (`string.rs`: GET SET MGET MSET the
//! INCR family and the rest of the string family; `expire.rs`: EXPIRE TTL PERSIST and their
//! kin), named by its row in the command table ([`super::COMMANDS`]): a [`ReadFn`] gets the
//! partition read-only, a [`WriteFn`] gets [`Writes`], the only way to change it. [`execute`]
//! does what every data command shares (the partition's maintenance step, its counters, the
//! key-length check of the row's key arguments) and calls the row's function.
//!
//! Every write that can grow the partition asks [`Writes::admit_set`] (or
//! [`Writes::admit_keys`]) first: the server-wide `max-memory`, then the partition's own
//! quotas ([`Quota`]: `max-memory`, `max-keys`), exactly, since the owning shard is the only
//! writer. The partition's `default-ttl` is applied where a value is stored
//! ([`Writes::set_str`] and its kin), so no command has to know about it: a key written
//! without a deadline (a plain SET, MSET, INCR or APPEND creating it, ...) gets
//! `now + default-ttl`; `KEEPTTL` (and the INCR family, APPEND, SETRANGE, which keep the
//! deadline) on an existing key keep what it has; PERSIST still removes it; RENAME moves the
//! key with the deadline it had.
//!
//! Writes to a durable partition go through its [`Journal`] (given as `journal`), which
//! applies them, logs a physical record per change (INCR as the SET of its result) and keeps
//! what to undo should the pass's commit fail. A MEMORY partition passes `None`. The shard
//! passes the journal exactly when the row is flagged `write`, which the table's compile-time
//! check ties to its handler being a [`WriteFn`]: a command that can change data is logged.

use crate::persist::Journal;
use crate::protocol::{Args, ReplyWriter};
use crate::store::{clock, Expiry, IncrError, MemoryBudget, Partition, PartitionStats, Value};

use super::quota::Quota;
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
    /// The partition's quotas and default TTL.
    quota: &'a Quota,
}

impl Writes<'_, '_> {
    /// The partition, read-only (to look before writing).
    #[inline]
    pub fn partition(&self) -> &Partition {
        self.partition
    }

    /// May a write storing `value_len` bytes (STRING; any for INT) under `key`, with a deadline
    /// or not, go ahead? Asks the server-wide `max-memory` and the partition's quotas before
    /// anything changes (see [`Partition::set_growth`]). `&mut`: a partition with an eviction
    /// policy will evict its own keys here to make room, so a caller holds no borrow of the
    /// partition across it.
    #[inline]
    pub fn admit_set(
        &mut self,
        limits: &DataLimits,
        key: &[u8],
        value_len: usize,
        deadline: bool,
    ) -> Result<(), CommandError> {
        let (growth, new) = self.partition.set_growth_and_new(key, value_len, deadline);
        self.admit_counted(limits, std::iter::once(key), growth, Some(new as u64))
    }

    /// May a write of `keys` that grows the data by `growth` bytes go ahead? (MSET: every
    /// key at once, all or none.)
    #[inline]
    pub fn admit_keys<'k>(
        &mut self,
        limits: &DataLimits,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        growth: u64,
    ) -> Result<(), CommandError> {
        self.admit_counted(limits, keys, growth, None)
    }

    /// [`Writes::admit_keys`], given how many of `keys` the table lacks when the caller knows
    /// (`None`: counted here, when a `max-keys` asks): a write of one key learns it from the
    /// lookup that measured its growth, and the quota check need not look the key up again.
    #[inline]
    fn admit_counted<'k>(
        &mut self,
        limits: &DataLimits,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        growth: u64,
        new_keys: Option<u64>,
    ) -> Result<(), CommandError> {
        if !limits.memory.admits(growth) {
            self.make_room(limits, keys.clone(), growth)?;
        }
        if self.quota.limited {
            return self.admit_quota(limits, keys, growth, new_keys);
        }
        Ok(())
    }

    /// The server is at `max-memory`: a partition with an eviction policy evicts its own
    /// keys (never one of `keys`) until the write fits; one without a policy, or without
    /// enough keys of its own to free the room, answers `-OOM` and evicts nothing. Another
    /// partition never loses a key to this write.
    #[cold]
    #[inline(never)]
    fn make_room<'k>(
        &mut self,
        limits: &DataLimits,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        growth: u64,
    ) -> Result<(), CommandError> {
        let _event = crate::latency::Timer::start(crate::latency::Event::Eviction);
        let shortfall = limits.memory.shortfall(growth);
        if !self.partition.eviction().evicts() || shortfall > self.partition.used_memory() {
            return Err(CommandError::OutOfMemory);
        }
        let start = self.partition.used_memory();
        while start - self.partition.used_memory() < shortfall {
            if !self.evict_one(keys.clone()) {
                return Err(CommandError::OutOfMemory);
            }
        }
        Ok(())
    }

    /// Evicts one key of the partition chosen by its policy, never one of `keys`: through the
    /// journal on a durable partition (a `DEL`, undone with the pass if its commit fails).
    /// False when there is nothing the policy may evict.
    fn evict_one<'k>(&mut self, keys: impl Iterator<Item = &'k [u8]> + Clone) -> bool {
        let spare = |key: &[u8]| keys.clone().any(|k| k == key);
        match &mut self.journal {
            Some(journal) => self
                .partition
                .evict_one(spare, |key, entry| journal.evicted(key, entry)),
            None => self.partition.evict_one(spare, |_, _| {}),
        }
    }

    /// The partition's own limits, out of line (a partition without them never comes here).
    /// Exact: the owning shard is the partition's only writer. `max-keys` counts the keys the
    /// table holds, expired ones not reclaimed yet included (`DBSIZE`), so a write replacing
    /// an expired key adds none.
    #[cold]
    #[inline(never)]
    fn admit_quota<'k>(
        &mut self,
        limits: &DataLimits,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        mut growth: u64,
        new_keys: Option<u64>,
    ) -> Result<(), CommandError> {
        let quota = self.quota;
        if quota.default_ttl != 0 {
            // Each key may get a deadline its growth did not count: 8 bytes more at most (an
            // overestimate for keys that keep theirs or keep none).
            growth += keys.clone().count() as u64 * crate::store::arena::DEADLINE_BYTES as u64;
            if !limits.memory.admits(growth) {
                self.make_room(limits, keys.clone(), growth)?;
            }
        }
        let over_memory = quota.max_memory != 0
            && growth > 0
            && self.partition.used_memory().saturating_add(growth) > quota.max_memory;
        let new_keys = if quota.max_keys != 0 {
            new_keys.unwrap_or_else(|| self.new_keys(keys.clone()))
        } else {
            0
        };
        // (The refusal is a function, called only when the write is refused: building its
        // message formats the partition's name and allocates: ~300 instructions a write.)
        let refusal: Option<fn(&Quota) -> CommandError> = if over_memory {
            Some(Quota::over_memory)
        } else if quota.max_keys != 0
            && (self.partition.len() as u64).saturating_add(new_keys) > quota.max_keys
        {
            Some(Quota::over_keys)
        } else {
            None
        };
        match refusal {
            None => Ok(()),
            Some(refusal) if !self.partition.eviction().evicts() => Err(refusal(quota)),
            Some(refusal) => self.evict_to_quota(keys, growth, new_keys, refusal),
        }
    }

    /// The write would take the partition past its `max-memory` or `max-keys`, and it has an
    /// eviction policy: evicts its keys (never one of `keys`) one at a time, checking both
    /// limits again after each, until the write fits; `refusal` (`-OOM`) when it never can
    /// (more than the whole quota, or nothing left the policy may evict: a `volatile-*`
    /// policy and no key with a deadline, as Redis answers).
    fn evict_to_quota<'k>(
        &mut self,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        growth: u64,
        new_keys: u64,
        refusal: fn(&Quota) -> CommandError,
    ) -> Result<(), CommandError> {
        let _event = crate::latency::Timer::start(crate::latency::Event::Eviction);
        let quota = self.quota;
        // (Eviction never removes one of `keys`: what they add, `new_keys` of them and
        // `growth` bytes, stays the same.)
        if (quota.max_memory != 0 && growth > quota.max_memory)
            || (quota.max_keys != 0 && new_keys > quota.max_keys)
        {
            return Err(refusal(quota));
        }
        loop {
            let over_memory = quota.max_memory != 0
                && growth > 0
                && self.partition.used_memory() + growth > quota.max_memory;
            let over_keys =
                quota.max_keys != 0 && self.partition.len() as u64 + new_keys > quota.max_keys;
            if !over_memory && !over_keys {
                return Ok(());
            }
            if !self.evict_one(keys.clone()) {
                return Err(refusal(quota));
            }
        }
    }

    /// How many of `keys` the table does not hold (each counted once).
    fn new_keys<'k>(&self, keys: impl Iterator<Item = &'k [u8]> + Clone) -> u64 {
        let absent = keys.clone().filter(|k| !self.partition.holds(k)).count();
        if absent <= 1 {
            return absent as u64;
        }
        // A key named twice (MSET a 1 a 2) is one key.
        let mut seen = hashbrown::HashSet::with_capacity(absent);
        keys.filter(|k| !self.partition.holds(k) && seen.insert(*k))
            .count() as u64
    }

    /// The deadline a value stored with `expiry` gets, given the partition's default TTL
    /// (see the module docs): out of line, only a partition with one comes here.
    #[cold]
    #[inline(never)]
    fn default_expiry(&self, key: &[u8], expiry: Expiry) -> Expiry {
        match expiry {
            Expiry::Clear => Expiry::At(self.default_deadline()),
            Expiry::Keep if !self.partition.contains(key) => Expiry::At(self.default_deadline()),
            expiry => expiry,
        }
    }

    /// Now + the default TTL (at most 100 years: no overflow).
    fn default_deadline(&self) -> u64 {
        clock::now_ms() + self.quota.default_ttl
    }

    /// Stores a STRING value (the partition's default TTL applies, see the module docs).
    #[inline]
    pub fn set_str(&mut self, key: &[u8], value: &[u8], expiry: Expiry) {
        let expiry = if self.quota.default_ttl == 0 {
            expiry
        } else {
            self.default_expiry(key, expiry)
        };
        self.store_str(key, value, expiry)
    }

    /// Stores an INT value (the partition's default TTL applies).
    #[inline]
    pub fn set_int(&mut self, key: &[u8], value: i64, expiry: Expiry) {
        let expiry = if self.quota.default_ttl == 0 {
            expiry
        } else {
            self.default_expiry(key, expiry)
        };
        self.store_int(key, value, expiry)
    }

    /// Stores a value with exactly this deadline, whatever the default TTL: a key moved
    /// (RENAME) keeps the deadline it had, or none.
    pub fn set_moved(&mut self, key: &[u8], value: &Value, deadline: Option<u64>) {
        let expiry = deadline.map_or(Expiry::Clear, Expiry::At);
        match value {
            Value::Int(n) => self.store_int(key, *n, expiry),
            Value::Str(bytes) => self.store_str(key, bytes, expiry),
        }
    }

    #[inline]
    fn store_int(&mut self, key: &[u8], value: i64, expiry: Expiry) {
        match &mut self.journal {
            Some(j) => j.set_int(self.partition, key, value, expiry),
            None => self.partition.set_int(key, value, expiry),
        }
    }

    #[inline]
    fn store_str(&mut self, key: &[u8], value: &[u8], expiry: Expiry) {
        match &mut self.journal {
            Some(j) => j.set_str(self.partition, key, value, expiry),
            None => self.partition.set_str(key, value, expiry),
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

    /// The INCR family's store: a key it creates gets the partition's default TTL.
    #[inline]
    pub fn incr_by(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        if self.quota.default_ttl != 0 {
            return self.incr_with_default_ttl(key, delta);
        }
        self.store_incr(key, delta)
    }

    #[cold]
    #[inline(never)]
    fn incr_with_default_ttl(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        let created = !self.partition.contains(key);
        let value = self.store_incr(key, delta)?;
        if created {
            // Logged as its own record after the SET of the result, on a durable partition.
            let deadline = self.default_deadline();
            self.set_deadline(key, Some(deadline));
        }
        Ok(value)
    }

    #[inline]
    fn store_incr(&mut self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
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
    quota: &Quota,
    limits: DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    partition.maintain();
    PartitionStats::add(&partition.stats().ops, 1);
    check_keys(spec.keys, args, limits.max_key_len)?;
    if partition.tracks_access() {
        // (An LRU or LFU policy only: everything else pays this one branch. GET without a
        // policy 1484 -> 1491 user-space instructions per request, SET 2042 -> 2039; with
        // allkeys-lru the touch, a second lookup, takes GET to 1788 and SET to 2354,
        // `scripts/count-instructions.sh`, OPTIONS="eviction allkeys-lru".)
        touch_keys(spec.keys, args, partition);
    }
    let stats = partition.stats();
    match spec.handler {
        Handler::Read(read) => {
            PartitionStats::add(&stats.reads, 1);
            read(args, partition, &limits, w)
        }
        Handler::Write(write) => {
            PartitionStats::add(&stats.writes, 1);
            let writes = &mut Writes {
                partition,
                journal,
                quota,
            };
            write(args, writes, &limits, w)
        }
        // Only a row routed to a partition reaches here (the route is the handler's kind).
        Handler::Connection(_) | Handler::Coordinator(_) => Err(CommandError::NotAvailable(
            format!("{} is not a data command", spec.name),
        )),
    }
}

/// Records an access to every key argument (as Redis's `lookupKey` does for reads and writes)
/// for a partition whose eviction policy ranks keys by recency or frequency. Out of line: only
/// such partitions call it.
#[inline(never)]
fn touch_keys(keys: Keys, args: &Args, partition: &mut Partition) {
    let argc = args.len();
    let (first, step) = (usize::from(keys.first), usize::from(keys.step.max(1)));
    if first == 0 {
        return;
    }
    let end = if keys.last < 0 {
        (argc + 1).saturating_sub(keys.last.unsigned_abs() as usize)
    } else {
        (keys.last as usize + 1).min(argc)
    };
    let mut at = first;
    while at < end {
        partition.touch(args.get(at));
        at += step;
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

/// Arguments `from, from + step, ...` to the end.
#[inline]
pub(super) fn keys<'a>(
    args: &Args<'a>,
    from: usize,
    step: usize,
) -> impl Iterator<Item = &'a [u8]> + Clone {
    let args = *args;
    (from..args.len()).step_by(step).map(move |i| args.get(i))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::PartitionOptions;
    use crate::protocol::Protocol;
    use crate::store::Schema;
    use std::sync::Arc;

    /// Runs a request on `p` with small limits (8-byte keys, 1 MiB values, 1000-byte
    /// replies, no `max-memory`) and returns the reply, an error's included.
    pub(crate) fn run(p: &mut Partition, words: &[&str]) -> String {
        let limits = DataLimits {
            max_key_len: 8,
            max_value_len: 1 << 20,
            max_keys_reply: 1000,
            memory: MemoryBudget::unlimited(),
            max_reply: 1000,
        };
        run_with(p, words, limits)
    }

    /// [`run`] with these limits.
    pub(crate) fn run_with(p: &mut Partition, words: &[&str], limits: DataLimits) -> String {
        run_quota(p, &Quota::default(), words, limits)
    }

    /// [`run`] on a partition with these options (and the limits of [`run`]).
    fn run_opts(p: &mut Partition, options: &PartitionOptions, words: &[&str]) -> String {
        let limits = DataLimits {
            max_key_len: 8,
            max_value_len: 1 << 20,
            max_keys_reply: 1000,
            memory: MemoryBudget::unlimited(),
            max_reply: 1000,
        };
        run_quota(p, &Quota::new("p", options), words, limits)
    }

    /// [`run_with`] under a quota.
    fn run_quota(p: &mut Partition, quota: &Quota, words: &[&str], limits: DataLimits) -> String {
        let (buf, spans) = crate::protocol::lay_out(words);
        let args = Args::new(&buf, &spans);
        let spec = crate::command::lookup(&args).expect("known command");
        let mut out = Vec::new();
        let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
        if let Err(e) = execute(spec, &args, p, None, quota, limits, &mut w) {
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
            let (buf, spans) = crate::protocol::lay_out(words);
            let args = Args::new(&buf, &spans);
            let spec = crate::command::lookup(&args).expect("known command");
            let mut out = Vec::new();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            if let Err(e) = execute(spec, &args, p, None, &Quota::default(), limits, &mut w) {
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

    fn keys_quota(max_keys: u64) -> PartitionOptions {
        PartitionOptions {
            max_keys,
            ..Default::default()
        }
    }

    #[test]
    fn max_keys_refuses_new_keys_and_nothing_else() {
        let mut p = Partition::new(Schema::String, Arc::default());
        let o = keys_quota(3);
        let run = |p: &mut Partition, w: &[&str]| run_opts(p, &o, w);
        assert_eq!(run(&mut p, &["MSET", "p", "a", "1", "b", "2"]), "+OK\r\n");
        // A key named twice is one new key: fits exactly.
        assert_eq!(run(&mut p, &["MSET", "p", "c", "1", "c", "2"]), "+OK\r\n");
        let full = "-OOM command not allowed when keys > 'max-keys' of partition 'p' (3 keys)\r\n";
        for refused in [
            &["SET", "p", "d", "1"][..],
            &["SET", "p", "d", "1", "EX", "100"],
            &["SETNX", "p", "d", "1"],
            &["MSET", "p", "a", "9", "d", "1"],
            &["INCR", "p", "d"],
            &["APPEND", "p", "d", "x"],
            &["SETRANGE", "p", "d", "0", "x"],
            &["GETSET", "p", "d", "1"],
            &["SET", "p", "d", "1", "GET"],
        ] {
            assert_eq!(run(&mut p, refused), full, "{refused:?}");
        }
        // Nothing of the refused writes is there (not even MSET's first pair).
        assert_eq!(
            run(&mut p, &["MGET", "p", "a", "d"]),
            "*2\r\n$1\r\n1\r\n$-1\r\n"
        );
        // Overwrites, growing or not, and writes to existing keys are no new key.
        assert_eq!(run(&mut p, &["SET", "p", "a", "longer value"]), "+OK\r\n");
        assert_eq!(run(&mut p, &["APPEND", "p", "b", "x"]), ":2\r\n");
        assert_eq!(run(&mut p, &["EXPIRE", "p", "a", "100"]), ":1\r\n");
        assert_eq!(run(&mut p, &["DEL", "p", "c"]), ":1\r\n");
        assert_eq!(run(&mut p, &["SET", "p", "d", "1"]), "+OK\r\n");
        assert_eq!(run(&mut p, &["RENAME", "p", "d", "e"]), "+OK\r\n");
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn partition_max_memory_refuses_growth_but_not_shrinking() {
        use crate::store::memory::entry_size;
        let mut p = Partition::new(Schema::String, Arc::default());
        let max = entry_size(1, 10, false) + entry_size(1, 1, false);
        let o = PartitionOptions {
            max_memory: max,
            ..Default::default()
        };
        let run = |p: &mut Partition, w: &[&str]| run_opts(p, &o, w);
        assert_eq!(run(&mut p, &["SET", "p", "a", "0123456789"]), "+OK\r\n");
        assert_eq!(run(&mut p, &["SET", "p", "b", "x"]), "+OK\r\n");
        assert_eq!(p.used_memory(), max);
        let full = format!(
            "-OOM command not allowed when used memory > 'max-memory' of partition 'p' ({max} \
             bytes)\r\n"
        );
        assert_eq!(run(&mut p, &["SET", "p", "c", "x"]), full);
        assert_eq!(run(&mut p, &["APPEND", "p", "b", "y"]), full);
        assert_eq!(
            run(&mut p, &["EXPIRE", "p", "b", "100"]),
            full,
            "a deadline is 8 bytes"
        );
        assert_eq!(run(&mut p, &["MSET", "p", "a", "", "c", "x"]), full);
        assert_eq!(run(&mut p, &["GET", "p", "a"]), "$10\r\n0123456789\r\n");
        // Shrinking makes room, which the next write may take.
        assert_eq!(run(&mut p, &["SET", "p", "a", "01234"]), "+OK\r\n");
        assert_eq!(run(&mut p, &["APPEND", "p", "b", "yyyyy"]), ":6\r\n");
        assert_eq!(run(&mut p, &["APPEND", "p", "b", "z"]), full);
        assert_eq!(run(&mut p, &["DEL", "p", "a"]), ":1\r\n");
        assert_eq!(run(&mut p, &["SET", "p", "c", "x"]), "+OK\r\n");
        assert!(p.used_memory() <= max);
    }

    #[test]
    fn default_ttl_is_given_to_keys_written_without_a_deadline() {
        let now = 1_000_000_000;
        crate::store::clock::pin_for_tests(now);
        let o = PartitionOptions {
            default_ttl: 60_000,
            ..Default::default()
        };
        let mut p = Partition::new(Schema::String, Arc::default());
        let run = |p: &mut Partition, w: &[&str]| run_opts(p, &o, w);
        let pttl = |p: &mut Partition, k: &str| run(p, &["PTTL", "p", k]);
        let default = ":60000\r\n";
        // A key written before the option (nothing applied): has none.
        p.set_str(b"old", b"v", Expiry::Clear);
        for write in [
            &["SET", "p", "a", "v"][..],
            &["MSET", "p", "b", "v", "c", "v"],
            &["INCR", "p", "n"],
            &["APPEND", "p", "ap", "v"],
            &["SETNX", "p", "nx", "v"],
            &["SET", "p", "kt", "v", "KEEPTTL"],
            &["SETRANGE", "p", "sr", "2", "v"],
        ] {
            assert!(!run(&mut p, write).starts_with('-'), "{write:?}");
            assert_eq!(pttl(&mut p, write[2]), default, "{write:?}");
        }
        assert_eq!(pttl(&mut p, "c"), default);
        // An explicit deadline wins.
        run(&mut p, &["SET", "p", "ex", "v", "PX", "5000"]);
        assert_eq!(pttl(&mut p, "ex"), ":5000\r\n");
        // A write that keeps the deadline keeps what the key has: none, for `old`.
        for keep in [
            &["SET", "p", "old", "w", "KEEPTTL"][..],
            &["APPEND", "p", "old", "x"],
            &["INCR", "p", "n"],
        ] {
            run(&mut p, keep);
        }
        assert_eq!(pttl(&mut p, "old"), ":-1\r\n");
        // A plain SET is written without a deadline: it gets a fresh default one.
        crate::store::clock::pin_for_tests(now + 10_000);
        assert_eq!(pttl(&mut p, "a"), ":50000\r\n");
        run(&mut p, &["SET", "p", "a", "again"]);
        assert_eq!(pttl(&mut p, "a"), default);
        assert_eq!(
            pttl(&mut p, "n"),
            ":50000\r\n",
            "INCR of an existing key keeps it"
        );
        // PERSIST still removes it; RENAME moves the key with what it had.
        assert_eq!(run(&mut p, &["PERSIST", "p", "a"]), ":1\r\n");
        assert_eq!(pttl(&mut p, "a"), ":-1\r\n");
        run(&mut p, &["RENAME", "p", "a", "moved"]);
        assert_eq!(pttl(&mut p, "moved"), ":-1\r\n");
        run(&mut p, &["RENAME", "p", "b", "b2"]);
        assert_eq!(pttl(&mut p, "b2"), ":50000\r\n");
        // And the key goes once the default TTL has passed.
        crate::store::clock::pin_for_tests(now + 60_001);
        assert_eq!(run(&mut p, &["GET", "p", "c"]), "$-1\r\n");
        crate::store::clock::end_passes();
    }
}

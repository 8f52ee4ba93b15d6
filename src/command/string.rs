//! The string family: GET SET (NX XX GET EX PX EXAT PXAT KEEPTTL) SETNX SETEX PSETEX GETSET
//! GETDEL GETEX MGET MSET MSETNX APPEND SETRANGE GETRANGE SUBSTR STRLEN and INCR DECR INCRBY
//! DECRBY.
//!
//! Each is Redis 7.2's command of the same name with the partition as argument 1 (Redis's
//! `t_string.c`): the same options, replies and error texts, checked in the same order, so
//! that an error reply means nothing was written. The schema rules (docs/commands.md) are the only
//! differences:
//! - an `INT` partition's values are integers: a write of a value that is not a canonical
//!   `i64` is `-WRONGTYPE` ([`CommandError::NotAnInteger`]), checked before anything else is
//!   looked at; APPEND and SETRANGE are `-WRONGTYPE` there ([`CommandError::NeedsStringPartition`]);
//!   a value read back (GET, SET ... GET, GETSET, GETDEL, GETEX) is an integer reply; STRLEN
//!   and GETRANGE work on its decimal form;
//! - a `STRING` partition holds Redis strings, and the INCR family works on them as Redis's
//!   does (the store parses and stores back the decimal text, keeping the deadline).
//!
//! Every write that can grow the data asks `max-memory` ([`DataLimits::admit`]) before it
//! changes anything, and every reply that carries a stored value is checked against the
//! client's output limit before it is built (and before the write it comes with).
//!
//! The hot path: a plain `SET <p> <k> <v>` and `GET <p> <k>` run exactly what they ran before
//! the options existed; `SET` with options goes out of line ([`set_with_options`]).

use crate::protocol::{Args, ReplyWriter};
use crate::store::partition::ValueRef;
use crate::store::{
    clock, parse_canonical_i64, Expiry, IncrError, Partition, PartitionStats, Schema,
};

use super::data::{keys, DataLimits, Writes};
use super::expire::{option_deadline, Unit};
use super::{CommandError, CommandId};

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

/// `SET <partition> <key> <value> [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`
pub fn set(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    if args.len() > 4 {
        return set_with_options(args, writes, limits, w);
    }
    let (key, value) = (args.get(2), args.get(3));
    match writes.partition().schema() {
        Schema::String => {
            writes.admit_set(limits, key, value.len(), false)?;
            writes.set_str(key, value, Expiry::Clear);
        }
        Schema::Int => {
            let n = parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
            writes.admit_set(limits, key, 0, false)?;
            writes.set_int(key, n, Expiry::Clear);
        }
    }
    w.ok();
    Ok(())
}

/// The options of SET and GETEX, a bit each (Redis's `OBJ_SET_NX` ...).
mod opt {
    pub const NX: u16 = 1 << 0;
    pub const XX: u16 = 1 << 1;
    pub const GET: u16 = 1 << 2;
    pub const KEEPTTL: u16 = 1 << 3;
    pub const EX: u16 = 1 << 4;
    pub const PX: u16 = 1 << 5;
    pub const EXAT: u16 = 1 << 6;
    pub const PXAT: u16 = 1 << 7;
    pub const PERSIST: u16 = 1 << 8;
    /// The options that take a time.
    pub const TIMES: u16 = EX | PX | EXAT | PXAT;
}

/// Which command's options [`parse_options`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OptionsOf {
    Set,
    GetEx,
}

/// Options as parsed: their bits and the time argument, if one was given (the last one).
struct Options<'a> {
    flags: u16,
    time: Option<&'a [u8]>,
}

impl Options<'_> {
    fn has(&self, bits: u16) -> bool {
        self.flags & bits != 0
    }

    /// The deadline the time option gives, if any (errors as Redis's, naming `command`).
    fn deadline(&self, command: &'static str) -> Result<Option<u64>, CommandError> {
        let Some(raw) = self.time else {
            return Ok(None);
        };
        let unit = if self.has(opt::PX | opt::PXAT) {
            Unit::Millis
        } else {
            Unit::Seconds
        };
        option_deadline(raw, unit, self.has(opt::EX | opt::PX), command).map(Some)
    }
}

/// Redis's `parseExtendedStringArgumentsOrReply`: the options from argument `from` on. An
/// option is refused (`syntax error`) when it conflicts with one already read, belongs to
/// the other command, or lacks its time argument; the same option twice is allowed, and the
/// last time argument wins.
fn parse_options<'a>(
    args: &Args<'a>,
    from: usize,
    of: OptionsOf,
) -> Result<Options<'a>, CommandError> {
    let set = of == OptionsOf::Set;
    let mut flags = 0u16;
    let mut time = None;
    let mut i = from;
    while i < args.len() {
        let word = args.get(i);
        let has_next = i + 1 < args.len();
        let is = |name: &[u8]| word.eq_ignore_ascii_case(name);
        // The options each one may not come with.
        let (bit, conflicts, takes_time) = if set && is(b"NX") {
            (opt::NX, opt::XX, false)
        } else if set && is(b"XX") {
            (opt::XX, opt::NX, false)
        } else if set && is(b"GET") {
            (opt::GET, 0, false)
        } else if set && is(b"KEEPTTL") {
            (opt::KEEPTTL, opt::PERSIST | opt::TIMES, false)
        } else if !set && is(b"PERSIST") {
            (opt::PERSIST, opt::KEEPTTL | opt::TIMES, false)
        } else if is(b"EX") {
            (
                opt::EX,
                opt::KEEPTTL | opt::PERSIST | (opt::TIMES & !opt::EX),
                true,
            )
        } else if is(b"PX") {
            (
                opt::PX,
                opt::KEEPTTL | opt::PERSIST | (opt::TIMES & !opt::PX),
                true,
            )
        } else if is(b"EXAT") {
            (
                opt::EXAT,
                opt::KEEPTTL | opt::PERSIST | (opt::TIMES & !opt::EXAT),
                true,
            )
        } else if is(b"PXAT") {
            (
                opt::PXAT,
                opt::KEEPTTL | opt::PERSIST | (opt::TIMES & !opt::PXAT),
                true,
            )
        } else {
            return Err(syntax());
        };
        if flags & conflicts != 0 || (takes_time && !has_next) {
            return Err(syntax());
        }
        flags |= bit;
        if takes_time {
            i += 1;
            time = Some(args.get(i));
        }
        i += 1;
    }
    Ok(Options { flags, time })
}

/// Redis's bare `syntax error`.
#[cold]
fn syntax() -> CommandError {
    CommandError::Syntax(String::new())
}

/// SET with options (Redis's `setCommand` and `setGenericCommand`): options, then the time,
/// then the schema's check of the value; with GET the old value is the reply (nil if none),
/// whether or not NX/XX let the write happen.
///
/// Cold, so that the plain SET around its call keeps the code it had before options existed:
/// merely warm, the call reshuffled the plain path's registers (`scripts/count-instructions.sh`
/// set: 2122 -> 2134 instructions per request; cold: 2125-2127, the run-to-run noise is 2).
#[cold]
#[inline(never)]
fn set_with_options(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let options = parse_options(args, 4, OptionsOf::Set)?;
    let deadline = options.deadline("set")?;
    let expiry = match deadline {
        Some(ms) => Expiry::At(ms),
        None if options.has(opt::KEEPTTL) => Expiry::Keep,
        None => Expiry::Clear,
    };
    let (key, value) = (args.get(2), args.get(3));
    let int = int_value(writes.partition(), value)?;
    let old = writes.partition().lookup(key);
    let found = old.is_some();
    let get = options.has(opt::GET);
    if get {
        check_reply(old.as_ref().map(|e| &e.value), limits)?;
    }
    let skip = (options.has(opt::NX) && found) || (options.has(opt::XX) && !found);
    let keeps = match expiry {
        Expiry::Clear => false,
        Expiry::At(_) => true,
        Expiry::Keep => old.as_ref().is_some_and(|e| e.deadline.is_some()),
    };
    // The old value goes into the reply before the write is admitted (which may evict, and
    // so may not run while `old` borrows the partition), and is taken back if it is not.
    let start = w.buf.len();
    if get {
        write_value(old.map(|e| e.value), w);
    }
    if !skip {
        admit_or_take_back(writes, limits, key, value.len(), keeps, w, start)?;
    }
    if skip {
        if !get {
            w.null();
        }
        return Ok(());
    }
    store(writes, key, value, int, expiry);
    if !get {
        w.ok();
    }
    Ok(())
}

/// The integer an INT partition stores for `value` (refused if it is not one); `None` on a
/// STRING partition.
#[inline]
fn int_value(partition: &Partition, value: &[u8]) -> Result<Option<i64>, CommandError> {
    match partition.schema() {
        Schema::String => Ok(None),
        Schema::Int => parse_canonical_i64(value)
            .map(Some)
            .ok_or(CommandError::NotAnInteger),
    }
}

/// Stores a value checked by [`int_value`].
#[inline]
fn store(writes: &mut Writes, key: &[u8], value: &[u8], int: Option<i64>, expiry: Expiry) {
    match int {
        Some(n) => writes.set_int(key, n, expiry),
        None => writes.set_str(key, value, expiry),
    }
}

/// Refuses a reply carrying `value` past the client's output limit.
#[inline]
fn check_reply(value: Option<&ValueRef>, limits: &DataLimits) -> Result<(), CommandError> {
    let size = match value {
        Some(ValueRef::Str(bytes)) => bytes.len() + FRAMING,
        _ => FRAMING,
    };
    if size > limits.max_reply {
        Err(CommandError::ReplyTooLarge)
    } else {
        Ok(())
    }
}

/// `SETNX <partition> <key> <value>`: 1 if set, 0 if the key was there.
pub fn setnx(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let (key, value) = (args.get(2), args.get(3));
    let int = int_value(writes.partition(), value)?;
    if writes.partition().contains(key) {
        w.integer(0);
        return Ok(());
    }
    writes.admit_set(limits, key, value.len(), false)?;
    store(writes, key, value, int, Expiry::Clear);
    w.integer(1);
    Ok(())
}

/// SETEX and PSETEX: `<partition> <key> <time> <value>`.
fn set_expiring(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
    unit: Unit,
    command: &'static str,
) -> Result<(), CommandError> {
    let deadline = option_deadline(args.get(3), unit, true, command)?;
    let (key, value) = (args.get(2), args.get(4));
    let int = int_value(writes.partition(), value)?;
    writes.admit_set(limits, key, value.len(), true)?;
    store(writes, key, value, int, Expiry::At(deadline));
    w.ok();
    Ok(())
}

/// `SETEX <partition> <key> <seconds> <value>`
pub fn setex(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    set_expiring(args, writes, limits, w, Unit::Seconds, "setex")
}

/// `PSETEX <partition> <key> <milliseconds> <value>`
pub fn psetex(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    set_expiring(args, writes, limits, w, Unit::Millis, "psetex")
}

/// `GETSET <partition> <key> <value>`: the old value (nil if none); the key loses its
/// deadline, as with a plain SET.
pub fn getset(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let (key, value) = (args.get(2), args.get(3));
    let int = int_value(writes.partition(), value)?;
    let old = writes.partition().get(key);
    check_reply(old.as_ref(), limits)?;
    let start = w.buf.len();
    write_value(old, w);
    admit_or_take_back(writes, limits, key, value.len(), false, w, start)?;
    store(writes, key, value, int, Expiry::Clear);
    Ok(())
}

/// [`Writes::admit_set`] for a write whose reply (from `start` on) is already written: a
/// refusal takes it back, so that an error still means nothing was written.
#[inline]
fn admit_or_take_back(
    writes: &mut Writes,
    limits: &DataLimits,
    key: &[u8],
    value_len: usize,
    deadline: bool,
    w: &mut ReplyWriter,
    start: usize,
) -> Result<(), CommandError> {
    writes
        .admit_set(limits, key, value_len, deadline)
        .inspect_err(|_| w.buf.truncate(start))
}

/// `GETDEL <partition> <key>`: the value (nil if none), and the key is gone.
pub fn getdel(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let key = args.get(2);
    let old = writes.partition().get(key);
    check_reply(old.as_ref(), limits)?;
    if write_value(old, w) {
        writes.remove(key);
    }
    Ok(())
}

/// `GETEX <partition> <key> [EX s|PX ms|EXAT s|PXAT ms|PERSIST]` (Redis's `getexCommand`):
/// the value, with the deadline changed as the option says; EXAT/PXAT in the past deletes
/// the key. A missing key answers nil before the time is checked, as in Redis.
pub fn getex(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let options = parse_options(args, 3, OptionsOf::GetEx)?;
    let key = args.get(2);
    let Some(entry) = writes.partition().lookup(key) else {
        w.null();
        return Ok(());
    };
    let deadline = options.deadline("getex")?;
    check_reply(Some(&entry.value), limits)?;
    let had_deadline = entry.deadline.is_some();
    // Redis's `checkAlreadyExpired`: only an absolute time can be in the past.
    let delete =
        options.has(opt::EXAT | opt::PXAT) && deadline.is_some_and(|ms| ms <= clock::now_ms());
    let len = value_len(&entry.value);
    let start = w.buf.len();
    write_value(Some(entry.value), w);
    if deadline.is_some() && !delete && !had_deadline {
        admit_or_take_back(writes, limits, key, len, true, w, start)?;
    }
    if delete {
        writes.remove(key);
    } else if let Some(ms) = deadline {
        writes.set_deadline(key, Some(ms));
    } else if options.has(opt::PERSIST) && had_deadline {
        writes.set_deadline(key, None);
    }
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
        return Err(CommandError::arity_of(CommandId::MSet));
    }
    set_pairs(args, writes, limits)?;
    w.ok();
    Ok(())
}

/// `MSETNX <partition> <key> <value> [key value ...]`: sets every pair (1) unless any of the
/// keys is there (0, nothing set).
pub fn msetnx(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::arity_of(CommandId::MSetNx));
    }
    if writes.partition().schema() == Schema::Int {
        check_int_values(args)?;
    }
    if keys(args, 2, 2).any(|key| writes.partition().contains(key)) {
        w.integer(0);
        return Ok(());
    }
    set_pairs(args, writes, limits)?;
    w.integer(1);
    Ok(())
}

/// Every value of an MSET-like request is an INT partition's canonical integer.
fn check_int_values(args: &Args) -> Result<(), CommandError> {
    for value in keys(args, 3, 2) {
        parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?;
    }
    Ok(())
}

/// Stores every pair of an MSET-like request, without deadlines, after checking every value
/// (INT) and the growth of all of them (`max-memory`).
fn set_pairs(args: &Args, writes: &mut Writes, limits: &DataLimits) -> Result<(), CommandError> {
    // A key named twice counts twice: an overestimate, never an underestimate.
    let growth = (2..args.len())
        .step_by(2)
        .map(|i| {
            writes
                .partition()
                .set_growth(args.get(i), args.get(i + 1).len(), false)
        })
        .sum();
    match writes.partition().schema() {
        Schema::String => {
            writes.admit_keys(limits, keys(args, 2, 2), growth)?;
            for i in (2..args.len()).step_by(2) {
                writes.set_str(args.get(i), args.get(i + 1), Expiry::Clear);
            }
        }
        Schema::Int => {
            // Validate every value before writing any.
            check_int_values(args)?;
            writes.admit_keys(limits, keys(args, 2, 2), growth)?;
            for i in (2..args.len()).step_by(2) {
                // Parsed above; cannot fail here.
                let n = parse_canonical_i64(args.get(i + 1)).unwrap_or_default();
                writes.set_int(args.get(i), n, Expiry::Clear);
            }
        }
    }
    Ok(())
}

/// APPEND and SETRANGE work on bytes: refused on an INT partition.
#[inline]
fn need_string(partition: &Partition, command: &'static str) -> Result<(), CommandError> {
    match partition.schema() {
        Schema::String => Ok(()),
        Schema::Int => Err(CommandError::NeedsStringPartition(command)),
    }
}

/// `APPEND <partition> <key> <value>`: the new length. A missing key is created (also with
/// an empty value, as in Redis); the key keeps its deadline.
pub fn append(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    need_string(writes.partition(), "append")?;
    let (key, tail) = (args.get(2), args.get(3));
    let Some(entry) = writes.partition().lookup(key) else {
        writes.admit_set(limits, key, tail.len(), false)?;
        writes.set_str(key, tail, Expiry::Clear);
        w.integer(tail.len() as i64);
        return Ok(());
    };
    let old = str_bytes(&entry.value);
    let total = checked_len(old.len(), tail.len(), limits)?;
    let had_deadline = entry.deadline.is_some();
    // Built before the write is admitted, which may evict (and so may not run while `old`
    // borrows the partition); at most `max-bulk-len`, checked above.
    let mut value = Vec::with_capacity(total);
    value.extend_from_slice(old);
    value.extend_from_slice(tail);
    writes.admit_set(limits, key, total, had_deadline)?;
    writes.set_str(key, &value, Expiry::Keep);
    w.integer(total as i64);
    Ok(())
}

/// `SETRANGE <partition> <key> <offset> <value>`: overwrites from `offset`, padding with zero
/// bytes; the new length. An empty value changes nothing (a missing key stays missing).
pub fn setrange(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let offset = parse_canonical_i64(args.get(3)).ok_or(CommandError::ValueNotInteger)?;
    if offset < 0 {
        return Err(CommandError::OffsetOutOfRange);
    }
    need_string(writes.partition(), "setrange")?;
    let (key, patch) = (args.get(2), args.get(4));
    let entry = writes.partition().lookup(key);
    let old = entry.as_ref().map_or(&[][..], |e| str_bytes(&e.value));
    if patch.is_empty() {
        w.integer(old.len() as i64);
        return Ok(());
    }
    // Fits a usize: offset is an i64 >= 0, and usize is 64 bits wide here.
    let end = checked_len(offset as usize, patch.len(), limits)?;
    let total = end.max(old.len());
    let had_deadline = entry.as_ref().is_some_and(|e| e.deadline.is_some());
    let expiry = if entry.is_some() {
        Expiry::Keep
    } else {
        Expiry::Clear
    };
    // Built before the write is admitted, as APPEND's.
    let mut value = Vec::with_capacity(total);
    value.extend_from_slice(old);
    value.resize(total, 0);
    value[offset as usize..end].copy_from_slice(patch);
    writes.admit_set(limits, key, total, had_deadline)?;
    writes.set_str(key, &value, expiry);
    w.integer(total as i64);
    Ok(())
}

/// `a + b`, refused past `max-bulk-len` (Redis's `checkStringLength`, overflow included).
#[inline]
fn checked_len(a: usize, b: usize, limits: &DataLimits) -> Result<usize, CommandError> {
    match a.checked_add(b) {
        Some(total) if total <= limits.max_value_len => Ok(total),
        _ => Err(CommandError::StringTooLong),
    }
}

/// A STRING partition's value's bytes (callers checked the schema).
#[inline]
fn str_bytes<'a>(value: &ValueRef<'a>) -> &'a [u8] {
    match *value {
        ValueRef::Str(bytes) => bytes,
        ValueRef::Int(_) => &[],
    }
}

/// The stored length of a value (what [`Partition::set_growth`] takes).
#[inline]
fn value_len(value: &ValueRef) -> usize {
    match value {
        ValueRef::Str(bytes) => bytes.len(),
        ValueRef::Int(_) => 0,
    }
}

/// `GETRANGE <partition> <key> <start> <end>` (and `SUBSTR`, its old name): the bytes from
/// `start` to `end` inclusive, negative counting from the end, clamped to the value (Redis's
/// `getrangeCommand`); an INT partition's value as its decimal text.
pub fn getrange(
    args: &Args,
    partition: &Partition,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let start = parse_canonical_i64(args.get(3)).ok_or(CommandError::ValueNotInteger)?;
    let end = parse_canonical_i64(args.get(4)).ok_or(CommandError::ValueNotInteger)?;
    let mut digits = itoa::Buffer::new();
    let bytes = match partition.get(args.get(2)) {
        None => &[][..],
        Some(ValueRef::Str(bytes)) => bytes,
        Some(ValueRef::Int(n)) => digits.format(n).as_bytes(),
    };
    let range = byte_range(bytes.len(), start, end);
    if range.len() + FRAMING > limits.max_reply {
        return Err(CommandError::ReplyTooLarge);
    }
    w.bulk(&bytes[range]);
    Ok(())
}

/// Redis's GETRANGE index rules on a value of `len` bytes, as a range of it (empty when
/// nothing is selected).
fn byte_range(len: usize, start: i64, end: i64) -> std::ops::Range<usize> {
    // Values are at most `max-bulk-len` (far below i64::MAX) bytes long.
    let n = len as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return 0..0;
    }
    let start = if start < 0 { n + start } else { start }.max(0);
    let end = if end < 0 { n + end } else { end }.clamp(0, n - 1);
    if start > end {
        0..0
    } else {
        start as usize..end as usize + 1
    }
}

/// `STRLEN <partition> <key>`: the value's length in bytes (0 if missing); an INT
/// partition's value counts its decimal text.
pub fn strlen(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let len = match partition.get(args.get(2)) {
        None => 0,
        Some(ValueRef::Str(bytes)) => bytes.len(),
        Some(ValueRef::Int(n)) => itoa::Buffer::new().format(n).len(),
    };
    w.integer(len as i64);
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
    let delta = parse_increment(args.get(3))?
        .checked_neg()
        .ok_or(CommandError::DecrementOverflow)?;
    add(args.get(2), delta, writes, limits, w)
}

/// An INCRBY/DECRBY argument, parsed as Redis 7 parses it (`string2ll`): the canonical
/// decimal form only, so `01`, `-0`, `+1` and ` 1` are refused as SET refuses them.
#[inline]
fn parse_increment(raw: &[u8]) -> Result<i64, CommandError> {
    parse_canonical_i64(raw).ok_or(CommandError::ValueNotInteger)
}

/// Longest decimal text of an `i64` (`-9223372036854775808`).
const MAX_I64_TEXT: usize = 20;

/// The INCR family: adds `delta` to the key's integer (missing counts as 0). On a STRING
/// partition the value must be a canonical integer's text, and the result is stored back as
/// text, keeping the deadline.
fn add(
    key: &[u8],
    delta: i64,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let growth = match writes.partition().schema() {
        Schema::Int => writes.partition().set_growth(key, 0, false),
        // The longest result, with a deadline: an overestimate of at most 28 bytes, without
        // a second lookup for the old value's length and deadline.
        Schema::String => writes.partition().set_growth(key, MAX_I64_TEXT, true),
    };
    writes.admit_keys(limits, std::iter::once(key), growth)?;
    match writes.incr_by(key, delta) {
        Ok(value) => {
            w.integer(value);
            Ok(())
        }
        Err(IncrError::Overflow) => Err(CommandError::Overflow),
        Err(IncrError::NotAnInteger) => Err(CommandError::ValueNotInteger),
    }
}

/// `$` + up to 20 digits + CRLF + CRLF: the framing of a bulk reply; integers and nulls fit
/// in it.
const FRAMING: usize = 25;

/// An upper bound of a value's encoded size (header, data, CRLF).
#[inline]
fn encoded_size(value: &Option<ValueRef>) -> usize {
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
    use crate::command::data::tests::run;
    use crate::store::Schema;
    use std::sync::Arc;

    fn args_of(words: &[&str]) -> (Vec<u8>, Vec<crate::protocol::Span>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for w in words {
            let start = buf.len() as u32;
            buf.extend_from_slice(w.as_bytes());
            spans.push(crate::protocol::Span {
                start,
                end: buf.len() as u32,
            });
        }
        (buf, spans)
    }

    /// The options' bits and time, or the error, of `SET p k v <words>`.
    fn set_options(words: &[&str]) -> Result<(u16, Option<String>), CommandError> {
        let all: Vec<&str> = ["SET", "p", "k", "v"]
            .iter()
            .chain(words)
            .copied()
            .collect();
        let (buf, spans) = args_of(&all);
        let args = Args::new(&buf, &spans);
        parse_options(&args, 4, OptionsOf::Set).map(|o| {
            (
                o.flags,
                o.time.map(|t| String::from_utf8_lossy(t).into_owned()),
            )
        })
    }

    #[test]
    fn set_options_parse_as_redis_does() {
        use opt::*;
        assert_eq!(set_options(&["nx", "Get"]), Ok((NX | GET, None)));
        assert_eq!(
            set_options(&["EX", "5", "ex", "7"]),
            Ok((EX, Some("7".into())))
        );
        // A time option's argument is taken whatever it looks like; it is checked later.
        assert_eq!(set_options(&["PX", "NX"]), Ok((PX, Some("NX".into()))));
        assert_eq!(set_options(&["KEEPTTL", "XX"]), Ok((KEEPTTL | XX, None)));
        for bad in [
            &["NX", "XX"][..],
            &["EX"],
            &["EX", "1", "PXAT", "2"],
            &["KEEPTTL", "EXAT", "1"],
            &["PXAT", "1", "KEEPTTL"],
            // GETEX's option, not SET's.
            &["PERSIST"],
            &["NXX"],
            &[""],
        ] {
            assert_eq!(
                set_options(bad),
                Err(CommandError::Syntax(String::new())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn getex_refuses_sets_options() {
        let (buf, spans) = args_of(&["GETEX", "p", "k", "NX"]);
        let args = Args::new(&buf, &spans);
        assert!(parse_options(&args, 3, OptionsOf::GetEx).is_err());
        let (buf, spans) = args_of(&["GETEX", "p", "k", "persist", "PERSIST"]);
        let args = Args::new(&buf, &spans);
        assert_eq!(
            parse_options(&args, 3, OptionsOf::GetEx).map(|o| o.flags),
            Ok(opt::PERSIST)
        );
    }

    #[test]
    fn getrange_indexes_as_redis() {
        let r = |start, end| byte_range(5, start, end);
        assert_eq!(r(0, -1), 0..5);
        assert_eq!(r(1, 3), 1..4);
        assert_eq!(r(-3, -1), 2..5);
        assert_eq!(r(0, -100), 0..1, "Redis 7.2 answers 'h' for 'hello'");
        assert_eq!(r(-100, 100), 0..5);
        assert_eq!(r(3, 1).len(), 0);
        assert_eq!(r(5, 10).len(), 0);
        assert_eq!(r(-1, -3).len(), 0);
        assert_eq!(r(i64::MIN, i64::MAX), 0..5);
        assert_eq!(byte_range(0, 0, -1).len(), 0);
        assert_eq!(byte_range(0, -1, 0).len(), 0);
    }

    #[test]
    fn int_partitions_read_their_values_as_integers() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert_eq!(run(&mut p, &["SET", "p", "k", "-42", "GET"]), "$-1\r\n");
        assert_eq!(run(&mut p, &["GETSET", "p", "k", "7"]), ":-42\r\n");
        assert_eq!(run(&mut p, &["STRLEN", "p", "k"]), ":1\r\n");
        assert_eq!(run(&mut p, &["SET", "p", "k", "-12345"]), "+OK\r\n");
        assert_eq!(run(&mut p, &["STRLEN", "p", "k"]), ":6\r\n");
        assert_eq!(
            run(&mut p, &["GETRANGE", "p", "k", "0", "2"]),
            "$3\r\n-12\r\n"
        );
        assert_eq!(
            run(&mut p, &["SUBSTR", "p", "k", "-2", "-1"]),
            "$2\r\n45\r\n"
        );
        assert_eq!(
            run(&mut p, &["GETEX", "p", "k", "EX", "100"]),
            ":-12345\r\n"
        );
        assert_eq!(run(&mut p, &["GETDEL", "p", "k"]), ":-12345\r\n");
        assert_eq!(run(&mut p, &["EXISTS", "p", "k"]), ":0\r\n");
        // A non-integer is refused before the options are acted on.
        assert!(run(&mut p, &["SET", "p", "k", "x", "NX", "GET"]).starts_with("-WRONGTYPE"));
        assert!(run(&mut p, &["APPEND", "p", "k", "1"]).starts_with("-WRONGTYPE 'append'"));
        assert!(run(&mut p, &["SETRANGE", "p", "k", "0", "1"]).starts_with("-WRONGTYPE"));
        assert!(p.is_empty());
    }

    #[test]
    fn value_replies_are_refused_before_the_write_past_the_output_limit() {
        let mut p = Partition::new(Schema::String, Arc::default());
        let big = "v".repeat(1000);
        run(&mut p, &["SET", "p", "k", &big]);
        for words in [
            &["GETDEL", "p", "k"][..],
            &["GETSET", "p", "k", "x"],
            &["GETEX", "p", "k", "PERSIST"],
            &["SET", "p", "k", "x", "GET"],
            &["GETRANGE", "p", "k", "0", "-1"],
        ] {
            assert_eq!(
                run(&mut p, words),
                "-ERR reply larger than the client output limit\r\n",
                "{words:?}"
            );
        }
        assert_eq!(run(&mut p, &["STRLEN", "p", "k"]), ":1000\r\n");
        assert_eq!(
            run(&mut p, &["GETRANGE", "p", "k", "0", "9"]),
            "$10\r\nvvvvvvvvvv\r\n"
        );
    }

    #[test]
    fn append_and_setrange_stop_at_max_value_len() {
        let mut p = Partition::new(Schema::String, Arc::default());
        let limit = 1 << 20; // `run`'s max_value_len
        let off = (limit - 1).to_string();
        assert_eq!(
            run(&mut p, &["SETRANGE", "p", "k", &off, "x"]),
            format!(":{limit}\r\n")
        );
        assert_eq!(
            run(&mut p, &["APPEND", "p", "k", "y"]),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
        );
        assert_eq!(
            run(&mut p, &["SETRANGE", "p", "k", &off, "xy"]),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
        );
        assert_eq!(
            run(&mut p, &["SETRANGE", "p", "k", "0", "ab"]),
            format!(":{limit}\r\n")
        );
        assert_eq!(
            run(&mut p, &["GETRANGE", "p", "k", "0", "2"]),
            "$3\r\nab\0\r\n"
        );
    }

    #[test]
    fn decrby_min_is_redis_decrement_overflow() {
        let mut p = Partition::new(Schema::Int, Arc::default());
        assert_eq!(
            run(&mut p, &["DECRBY", "p", "k", "-9223372036854775808"]),
            "-ERR decrement would overflow\r\n"
        );
        assert_eq!(run(&mut p, &["EXISTS", "p", "k"]), ":0\r\n");
    }

    #[test]
    fn growing_writes_ask_max_memory_first() {
        use crate::metrics::{ServerMetrics, ShardMetrics};
        let metrics = ServerMetrics::new(1);
        let limits = DataLimits {
            max_key_len: 64,
            max_value_len: 1 << 20,
            max_keys_reply: 1000,
            memory: crate::store::MemoryBudget::new(1000, &metrics),
            max_reply: 1 << 20,
        };
        let mut p = Partition::new(Schema::String, Arc::default());
        assert_eq!(
            crate::command::data::tests::run_with(&mut p, &["SET", "p", "k", "v"], limits),
            "+OK\r\n"
        );
        ShardMetrics::set(&metrics.shards[0].used_memory, 1000);
        for words in [
            &["SET", "p", "j", "v", "EX", "10"][..],
            &["SETNX", "p", "j", "v"],
            &["SETEX", "p", "j", "10", "v"],
            &["PSETEX", "p", "j", "10", "v"],
            &["GETSET", "p", "j", "v"],
            &["MSETNX", "p", "j", "v"],
            &["APPEND", "p", "k", "more"],
            &["SETRANGE", "p", "k", "5", "x"],
            &["EXPIRE", "p", "k", "100"],
            &["PEXPIREAT", "p", "k", "4102444800000"],
            &["GETEX", "p", "k", "EX", "100"],
        ] {
            let reply = crate::command::data::tests::run_with(&mut p, words, limits);
            assert!(reply.starts_with("-OOM"), "{words:?}: {reply}");
        }
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.lookup(b"k").map(|e| (e.value, e.deadline)),
            Some((ValueRef::Str(b"v"), None))
        );
        // What does not grow still runs at the limit.
        let run = |p: &mut Partition, words: &[&str]| {
            crate::command::data::tests::run_with(p, words, limits)
        };
        assert_eq!(run(&mut p, &["SET", "p", "k", "w", "GET"]), "$1\r\nv\r\n");
        assert_eq!(run(&mut p, &["PERSIST", "p", "k"]), ":0\r\n");
        assert_eq!(run(&mut p, &["EXPIRE", "p", "k", "-1"]), ":1\r\n");
        assert!(p.is_empty());
    }
}

//! The expire family: EXPIRE PEXPIRE EXPIREAT PEXPIREAT (with NX XX GT LT), TTL PTTL
//! EXPIRETIME PEXPIRETIME PERSIST, and the time arguments SET and GETEX share with them.
//!
//! Each command is Redis 7.2's of the same name with the partition as argument 1 (Redis's
//! `expire.c` and `getExpireMillisecondsOrReply` in `t_string.c`): the same options, replies
//! and error texts, in the same order of checks. Deadlines are unix ms ([`clock::now_ms`],
//! one instant per event-loop pass, as Redis's `commandTimeSnapshot`), stored as the store's
//! `u64`; every deadline a command stores is positive and at most `i64::MAX`, so the replies'
//! arithmetic in `i64` cannot overflow.
//!
//! What Redis does with a time in the past, GoKV does too: EXPIRE and its kin *delete* the key
//! and answer 1 (Redis's `checkAlreadyExpired`: `when <= now`); GETEX with EXAT/PXAT in the
//! past deletes it too; SET with EXAT/PXAT in the past stores the key with that deadline, so
//! it is expired (invisible) at once and reclaimed like any other expired key.

use crate::protocol::{Args, ReplyWriter};
use crate::store::{clock, parse_canonical_i64, Partition, ValueRef};

use super::data::{DataLimits, Writes};
use super::CommandError;

/// What a time argument counts in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Seconds,
    Millis,
}

/// A time argument, parsed as Redis parses it (`string2ll`: the canonical decimal form).
#[inline]
fn parse_time(raw: &[u8]) -> Result<i64, CommandError> {
    parse_canonical_i64(raw).ok_or(CommandError::ValueNotInteger)
}

/// The deadline (unix ms, positive) that a SET/SETEX/PSETEX/GETEX time argument gives:
/// relative (`EX`, `PX`) or absolute (`EXAT`, `PXAT`). Redis refuses a time that is not
/// positive and one that overflows when converted to ms or added to now, naming `command`.
pub(super) fn option_deadline(
    raw: &[u8],
    unit: Unit,
    relative: bool,
    command: &'static str,
) -> Result<u64, CommandError> {
    let invalid = CommandError::InvalidExpireTime(command);
    let n = parse_time(raw)?;
    if n <= 0 || (unit == Unit::Seconds && n > i64::MAX / 1000) {
        return Err(invalid);
    }
    let ms = if unit == Unit::Seconds { n * 1000 } else { n };
    let ms = if relative {
        // Redis adds and then refuses a result <= 0, which is what an overflow of two
        // positive numbers wraps to.
        ms.checked_add(now()).ok_or(invalid)?
    } else {
        ms
    };
    // Positive: both operands were.
    Ok(ms as u64)
}

/// Now, in unix ms, as an `i64` (the clock's `u64` is far below `i64::MAX`).
#[inline]
fn now() -> i64 {
    clock::now_ms() as i64
}

/// EXPIRE's conditions (Redis's `EXPIRE_NX` ...).
mod cond {
    pub const NX: u8 = 1 << 0;
    pub const XX: u8 = 1 << 1;
    pub const GT: u8 = 1 << 2;
    pub const LT: u8 = 1 << 3;
}

/// Redis's `parseExtendedExpireArgumentsOrReply`: the options after the time, any order,
/// repeats allowed; then the combinations it refuses.
fn parse_conditions(args: &Args) -> Result<u8, CommandError> {
    let mut flags = 0;
    for i in 4..args.len() {
        let opt = args.get(i);
        flags |= if opt.eq_ignore_ascii_case(b"NX") {
            cond::NX
        } else if opt.eq_ignore_ascii_case(b"XX") {
            cond::XX
        } else if opt.eq_ignore_ascii_case(b"GT") {
            cond::GT
        } else if opt.eq_ignore_ascii_case(b"LT") {
            cond::LT
        } else {
            return Err(CommandError::UnsupportedOption(super::error::printable(
                opt,
            )));
        };
    }
    if flags & cond::NX != 0 && flags & (cond::XX | cond::GT | cond::LT) != 0 {
        return Err(CommandError::IncompatibleOptions("NX and XX, GT or LT"));
    }
    if flags & (cond::GT | cond::LT) == cond::GT | cond::LT {
        return Err(CommandError::IncompatibleOptions("GT and LT"));
    }
    Ok(flags)
}

/// Redis's `expireGenericCommand`: `base` is added to the time (now for EXPIRE and PEXPIRE,
/// 0 for the AT forms), `unit` is what it counts in.
fn expire_generic(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
    base: i64,
    unit: Unit,
    command: &'static str,
) -> Result<(), CommandError> {
    let flags = parse_conditions(args)?;
    let invalid = CommandError::InvalidExpireTime(command);
    let mut when = parse_time(args.get(3))?;
    // Negative times are allowed (they delete the key); only an overflow is refused.
    if unit == Unit::Seconds {
        when = when.checked_mul(1000).ok_or(invalid.clone())?;
    }
    let when = when.checked_add(base).ok_or(invalid)?;
    let key = args.get(2);
    let Some(entry) = writes.partition().lookup(key) else {
        w.integer(0);
        return Ok(());
    };
    let current = entry.deadline.map(|d| d.min(i64::MAX as u64) as i64);
    let refused = (flags & cond::NX != 0 && current.is_some())
        || (flags & cond::XX != 0 && current.is_none())
        // No deadline counts as infinite: nothing is greater.
        || (flags & cond::GT != 0 && current.is_none_or(|c| when <= c))
        || (flags & cond::LT != 0 && current.is_some_and(|c| when >= c));
    if refused {
        w.integer(0);
        return Ok(());
    }
    if when <= now() {
        writes.remove(key);
    } else {
        let len = value_len(&entry.value);
        writes.admit_set(limits, key, len, true)?;
        // Positive: it is past now.
        writes.set_deadline(key, Some(when as u64));
    }
    w.integer(1);
    Ok(())
}

/// The stored length of a value (what [`Partition::set_growth`] takes).
#[inline]
fn value_len(value: &ValueRef) -> usize {
    match value {
        ValueRef::Str(bytes) => bytes.len(),
        ValueRef::Int(_) => 0,
    }
}

/// `EXPIRE <partition> <key> <seconds> [NX|XX|GT|LT]`
pub fn expire(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    expire_generic(args, writes, limits, w, now(), Unit::Seconds, "expire")
}

/// `PEXPIRE <partition> <key> <milliseconds> [NX|XX|GT|LT]`
pub fn pexpire(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    expire_generic(args, writes, limits, w, now(), Unit::Millis, "pexpire")
}

/// `EXPIREAT <partition> <key> <unix-seconds> [NX|XX|GT|LT]`
pub fn expireat(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    expire_generic(args, writes, limits, w, 0, Unit::Seconds, "expireat")
}

/// `PEXPIREAT <partition> <key> <unix-ms> [NX|XX|GT|LT]`
pub fn pexpireat(
    args: &Args,
    writes: &mut Writes,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    expire_generic(args, writes, limits, w, 0, Unit::Millis, "pexpireat")
}

/// Redis's `ttlGenericCommand`: -2 for a missing key, -1 for one without a deadline, else
/// the time left (or, `absolute`, the deadline) in `unit`, seconds rounded to nearest.
fn ttl_generic(
    args: &Args,
    partition: &Partition,
    w: &mut ReplyWriter,
    unit: Unit,
    absolute: bool,
) {
    let Some(entry) = partition.lookup(args.get(2)) else {
        w.integer(-2);
        return;
    };
    let Some(deadline) = entry.deadline else {
        w.integer(-1);
        return;
    };
    let deadline = deadline.min(i64::MAX as u64) as i64;
    let ms = if absolute {
        deadline
    } else {
        deadline.saturating_sub(now()).max(0)
    };
    w.integer(match unit {
        Unit::Millis => ms,
        // Redis's `(ttl + 500) / 1000`; saturating where Redis's would wrap (a deadline within
        // 500 ms of i64::MAX, which only PXAT 9223372036854775807 sets).
        Unit::Seconds => ms.saturating_add(500) / 1000,
    });
}

/// `TTL <partition> <key>`
pub fn ttl(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    ttl_generic(args, partition, w, Unit::Seconds, false);
    Ok(())
}

/// `PTTL <partition> <key>`
pub fn pttl(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    ttl_generic(args, partition, w, Unit::Millis, false);
    Ok(())
}

/// `EXPIRETIME <partition> <key>`: the deadline in unix seconds.
pub fn expiretime(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    ttl_generic(args, partition, w, Unit::Seconds, true);
    Ok(())
}

/// `PEXPIRETIME <partition> <key>`: the deadline in unix ms.
pub fn pexpiretime(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    ttl_generic(args, partition, w, Unit::Millis, true);
    Ok(())
}

/// `PERSIST <partition> <key>`: 1 if the key had a deadline (now gone), else 0.
pub fn persist(
    args: &Args,
    writes: &mut Writes,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let key = args.get(2);
    let had = writes
        .partition()
        .lookup(key)
        .is_some_and(|e| e.deadline.is_some());
    // Removing a deadline never grows the data.
    let removed = had && writes.set_deadline(key, None);
    w.integer(removed as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn option_times_follow_redis_rules() {
        clock::pin_for_tests(NOW);
        let at = |raw: &str, unit, relative| option_deadline(raw.as_bytes(), unit, relative, "set");
        assert_eq!(at("10", Unit::Seconds, true), Ok(NOW + 10_000));
        assert_eq!(at("10", Unit::Millis, true), Ok(NOW + 10));
        assert_eq!(at("10", Unit::Seconds, false), Ok(10_000));
        assert_eq!(at("1", Unit::Millis, false), Ok(1));
        let invalid = Err(CommandError::InvalidExpireTime("set"));
        for (raw, unit, relative) in [
            ("0", Unit::Seconds, true),
            ("-1", Unit::Millis, false),
            // Past i64::MAX once in ms ...
            ("9223372036854776", Unit::Seconds, false),
            // ... or once now is added.
            ("9223372036854775", Unit::Seconds, true),
            ("9223372036854775807", Unit::Millis, true),
        ] {
            assert_eq!(at(raw, unit, relative), invalid, "{raw}");
        }
        // In range when absolute: the largest second count that fits in ms.
        assert_eq!(
            at("9223372036854775", Unit::Seconds, false),
            Ok(9_223_372_036_854_775_000)
        );
        assert_eq!(
            at("9223372036854775807", Unit::Millis, false),
            Ok(i64::MAX as u64)
        );
        for raw in ["", "1.5", " 1", "+1", "01", "1e3", "9223372036854775808"] {
            assert_eq!(
                at(raw, Unit::Seconds, true),
                Err(CommandError::ValueNotInteger),
                "{raw:?}"
            );
        }
        clock::end_passes();
    }

    fn conditions(words: &[&str]) -> Result<u8, CommandError> {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for w in ["EXPIRE", "p", "k", "10"].iter().chain(words) {
            let start = buf.len() as u32;
            buf.extend_from_slice(w.as_bytes());
            spans.push(crate::protocol::Span {
                start,
                end: buf.len() as u32,
            });
        }
        parse_conditions(&Args::new(&buf, &spans))
    }

    #[test]
    fn expire_conditions_are_checked_after_all_are_read() {
        assert_eq!(conditions(&[]), Ok(0));
        assert_eq!(conditions(&["nx", "NX"]), Ok(cond::NX));
        assert_eq!(conditions(&["xx", "gt"]), Ok(cond::XX | cond::GT));
        assert_eq!(conditions(&["LT", "xx"]), Ok(cond::XX | cond::LT));
        // An unknown word is reported before an incompatible pair that came first.
        assert_eq!(
            conditions(&["NX", "XX", "FOO"]),
            Err(CommandError::UnsupportedOption("FOO".into()))
        );
        let nx = Err(CommandError::IncompatibleOptions("NX and XX, GT or LT"));
        assert_eq!(conditions(&["GT", "NX"]), nx);
        // NX with GT and LT: NX's text wins, as in Redis.
        assert_eq!(conditions(&["GT", "LT", "NX"]), nx);
        assert_eq!(
            conditions(&["LT", "GT"]),
            Err(CommandError::IncompatibleOptions("GT and LT"))
        );
    }
}

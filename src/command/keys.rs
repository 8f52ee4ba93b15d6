//! The keys family: TYPE TOUCH DBSIZE SCAN KEYS RENAME RENAMENX and FLUSH PARTITION (UNLINK's
//! row runs DEL's function, EXISTS is in [`super::data`]).
//!
//! Each is the Redis 7.2 command of the same name with the partition inserted as argument 1
//! (FLUSH PARTITION names it as argument 2): same options, replies and error texts. They run
//! on the shard that owns the partition, like every data command ([`super::data::execute`]);
//! reads get the partition read-only, writes go through [`Writes`], so a durable partition
//! journals them.
//!
//! # What a call may cost
//! - `SCAN` visits about `COUNT` keys (Redis's hint), never more than [`MAX_SCAN_COUNT`] a
//!   call, and looks at no more than ten times that many empty hash positions
//!   ([`Partition::scan`]): a call is bounded whatever the client asks, and a walk over a huge
//!   partition is many short calls, each between other clients' requests.
//! - `KEYS` is a full walk of the partition in one command, as in Redis: its time grows with
//!   the partition (about 100 ns a key), whatever the pattern. What it may *answer* is bounded
//!   by `--max-keys-reply`: past that many matches it stops walking and answers an error that
//!   says to use SCAN (no partial reply). That flag is the operator's knob; the walk itself
//!   cannot be cut short without giving a wrong answer, which is why SCAN exists.
//! - `FLUSH PARTITION` moves the table out (no copy); a MEMORY partition frees it at once
//!   (one free per 256 KiB arena segment, plus one per value larger than 4 KiB), a durable one
//!   once its `CLEAR` record is committed (see `persist::journal`).

use crate::protocol::{Args, ReplyWriter};
use crate::store::{parse_canonical_i64, Partition};

use super::data::{DataLimits, Writes};
use super::{glob, CommandError};

/// Most keys one SCAN call looks for, whatever its COUNT: a call visits about this many
/// entries (a cache miss each, ~100 ns) and at most ten times as many empty hash positions
/// (sequential bytes), so it stays under half a millisecond, about what one pipelined batch of
/// reads costs, while still amortizing the round trip. A larger COUNT is a hint Redis also
/// treats loosely: the walk is the same, in more calls.
pub const MAX_SCAN_COUNT: usize = 4096;

/// Redis's default COUNT.
const DEFAULT_SCAN_COUNT: usize = 10;

/// Keys one step of the KEYS walk visits between checks of the reply's size.
const KEYS_STEP: usize = 1024;

/// Every value a partition holds is a Redis string (an INT partition's integers too).
const TYPE_NAME: &str = "string";

/// `TYPE <partition> <key>`: `string`, or `none` when absent or expired.
pub fn key_type(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    w.simple(if partition.contains(args.get(2)) {
        TYPE_NAME
    } else {
        "none"
    });
    Ok(())
}

/// `TOUCH <partition> <key> [key ...]`: how many of the keys exist, a key named twice
/// counted twice (as Redis). There is no access time to update: the keys are only looked up.
pub fn touch(
    args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let found = (2..args.len())
        .filter(|&i| partition.contains(args.get(i)))
        .count();
    w.integer(found as i64);
    Ok(())
}

/// `DBSIZE <partition>`: keys stored, counting expired keys not reclaimed yet, as Redis does.
pub fn dbsize(
    _args: &Args,
    partition: &Partition,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    w.integer(partition.len() as i64);
    Ok(())
}

/// A SCAN cursor: a decimal `u64` (Redis parses it with `strtoul`; a cursor this server
/// never issued walks from that hash position, or is already past the end: never a crash).
fn parse_cursor(raw: &[u8]) -> Result<u64, CommandError> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return Err(CommandError::InvalidCursor);
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(CommandError::InvalidCursor)
}

/// SCAN's options.
struct ScanOptions<'a> {
    count: usize,
    /// `None`: every key (also for `MATCH *`, as Redis).
    pattern: Option<&'a [u8]>,
    /// False after `TYPE <anything but string>`: the walk goes on, returning no keys.
    type_matches: bool,
}

/// Parses `[MATCH <glob>] [COUNT <n>] [TYPE <type>]` from argument 3 on, as Redis's
/// `scanGenericCommand` does: any order, a later one wins, `COUNT` < 1 is a syntax error.
fn parse_scan_options<'a>(args: &Args<'a>) -> Result<ScanOptions<'a>, CommandError> {
    let mut options = ScanOptions {
        count: DEFAULT_SCAN_COUNT,
        pattern: None,
        type_matches: true,
    };
    let mut i = 3;
    while i < args.len() {
        let (option, has_value) = (args.get(i), i + 1 < args.len());
        if option.eq_ignore_ascii_case(b"count") && has_value {
            let n = parse_canonical_i64(args.get(i + 1)).ok_or(CommandError::ValueNotInteger)?;
            if n < 1 {
                return Err(CommandError::Syntax(String::new()));
            }
            options.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if option.eq_ignore_ascii_case(b"match") && has_value {
            let pattern = args.get(i + 1);
            options.pattern = (pattern != b"*").then_some(pattern);
        } else if option.eq_ignore_ascii_case(b"type") && has_value {
            // Redis 7.2 compares the name and filters everything on an unknown type (an
            // error only from 8.0).
            options.type_matches = args.get(i + 1).eq_ignore_ascii_case(TYPE_NAME.as_bytes());
        } else {
            return Err(CommandError::Syntax(String::new()));
        }
        i += 2;
    }
    Ok(options)
}

/// `SCAN <partition> <cursor> [MATCH <glob>] [COUNT <n>] [TYPE <type>]`: `[next cursor as a
/// bulk string, [keys]]`. Every key present for the whole walk is returned at least once
/// (the table enumerates by hash position; see `store::table`); MATCH and TYPE filter what a
/// call collected, so a call may return no keys and a cursor that is not 0.
pub fn scan(
    args: &Args,
    partition: &Partition,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let cursor = parse_cursor(args.get(2))?;
    let options = parse_scan_options(args)?;
    let mut keys = Vec::new();
    let mut found = 0usize;
    let mut encoded = ReplyWriter::new(&mut keys, w.protocol);
    let next = partition.scan(cursor, options.count.min(MAX_SCAN_COUNT), |key, _| {
        let wanted = options.type_matches
            && options
                .pattern
                .is_none_or(|pattern| glob::matches(pattern, key, false));
        if wanted {
            encoded.bulk(key);
            found += 1;
        }
    });
    if keys.len() > limits.max_reply {
        return Err(CommandError::ReplyTooLarge);
    }
    w.array(2);
    w.bulk(itoa::Buffer::new().format(next).as_bytes());
    w.array(found);
    w.buf.extend_from_slice(&keys);
    Ok(())
}

/// `KEYS <partition> <glob>`: every live key that matches, or, past `max-keys-reply`
/// matches, an error that says to SCAN (see the module docs for what it costs).
pub fn keys(
    args: &Args,
    partition: &Partition,
    limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let pattern = args.get(2);
    let all = pattern == b"*";
    let mut keys = Vec::new();
    let mut found = 0usize;
    let mut cursor = 0;
    loop {
        let mut encoded = ReplyWriter::new(&mut keys, w.protocol);
        cursor = partition.scan(cursor, KEYS_STEP, |key, _| {
            if found <= limits.max_keys_reply && (all || glob::matches(pattern, key, false)) {
                found += 1;
                if found <= limits.max_keys_reply {
                    encoded.bulk(key);
                }
            }
        });
        if found > limits.max_keys_reply {
            return Err(CommandError::TooManyKeys {
                max: limits.max_keys_reply,
            });
        }
        if keys.len() > limits.max_reply {
            return Err(CommandError::ReplyTooLarge);
        }
        if cursor == 0 {
            break;
        }
    }
    w.array(found);
    w.buf.extend_from_slice(&keys);
    Ok(())
}

/// `RENAME <partition> <key> <newkey>`
pub fn rename(
    args: &Args,
    writes: &mut Writes,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    if move_key(args.get(2), args.get(3), false, writes)? {
        w.ok();
    }
    Ok(())
}

/// `RENAMENX <partition> <key> <newkey>`: 1 if renamed, 0 if `newkey` exists.
pub fn renamenx(
    args: &Args,
    writes: &mut Writes,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let renamed = move_key(args.get(2), args.get(3), true, writes)?;
    w.integer(renamed as i64);
    Ok(())
}

/// Redis's `renameGenericCommand`: `from` must exist (`no such key`, even onto itself);
/// onto itself changes nothing; with `nx` an existing `to` stays; otherwise `to` is
/// overwritten and gets `from`'s value and deadline. Returns whether the key moved (or, for
/// RENAME onto itself, stayed): false only for RENAMENX's 0.
///
/// Not refused at `max-memory` (Redis's RENAME is not `denyoom` either): the value moves, so
/// the data grows by at most the difference of the key lengths.
fn move_key(from: &[u8], to: &[u8], nx: bool, writes: &mut Writes) -> Result<bool, CommandError> {
    if !writes.partition().contains(from) {
        return Err(CommandError::NoSuchKey);
    }
    if from == to {
        return Ok(!nx);
    }
    if nx && writes.partition().contains(to) {
        return Ok(false);
    }
    let (value, deadline) = writes.take(from).ok_or(CommandError::NoSuchKey)?;
    writes.set_moved(to, &value, deadline);
    Ok(true)
}

/// `FLUSH PARTITION <partition>`: every key gone (durably on a durable partition: one `CLEAR`
/// record); the partition, its settings and its grants stay.
pub fn flush(
    _args: &Args,
    writes: &mut Writes,
    _limits: &DataLimits,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    // Nothing stored, not even an expired key: nothing to remove, nothing to log.
    if !writes.partition().is_empty() {
        writes.flush();
    }
    w.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::data::execute;
    use crate::protocol::{Protocol, Span};
    use crate::store::{Expiry, MemoryBudget, Schema};
    use std::sync::Arc;

    fn run_with(p: &mut Partition, words: &[&[u8]], max_keys_reply: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for w in words {
            let start = buf.len() as u32;
            buf.extend_from_slice(w);
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
            max_key_len: 64,
            max_value_len: 1 << 20,
            max_keys_reply,
            memory: MemoryBudget::unlimited(),
            max_reply: 1 << 20,
        };
        if let Err(e) = execute(spec, &args, p, None, &Default::default(), limits, &mut w) {
            e.write_to(&mut w);
        }
        out
    }

    fn run(p: &mut Partition, words: &[&str]) -> String {
        let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        String::from_utf8(run_with(p, &words, 1000)).expect("ascii replies")
    }

    fn filled(n: usize) -> Partition {
        let mut p = Partition::new(Schema::String, Arc::default());
        for i in 0..n {
            p.set_str(format!("k{i}").as_bytes(), b"v", Expiry::Clear);
        }
        p
    }

    #[test]
    fn cursors_are_decimal_u64s() {
        assert_eq!(parse_cursor(b"0"), Ok(0));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1x",
            b"1.5",
            b"18446744073709551616",
        ] {
            assert_eq!(
                parse_cursor(bad),
                Err(CommandError::InvalidCursor),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scan_count_is_capped_per_call() {
        let mut p = filled(3 * MAX_SCAN_COUNT);
        let reply = run(&mut p, &["SCAN", "p", "0", "COUNT", "1000000000"]);
        let keys = reply.matches("\r\n$").count() - 1; // minus the cursor's bulk
        assert!(
            (MAX_SCAN_COUNT / 2..2 * MAX_SCAN_COUNT).contains(&keys),
            "one call returned {keys} keys"
        );
        assert!(
            !reply.starts_with("*2\r\n$1\r\n0\r\n"),
            "not done in one call"
        );
    }

    #[test]
    fn keys_past_the_limit_is_an_error_and_nothing_else() {
        let mut p = filled(50);
        let reply = run_with(&mut p, &[b"KEYS", b"p", b"*"], 49);
        assert_eq!(
            reply,
            b"-ERR KEYS would return more than 49 keys (max-keys-reply); use SCAN to iterate \
              the partition\r\n"
        );
        assert!(run_with(&mut p, &[b"KEYS", b"p", b"*"], 50).starts_with(b"*50\r\n"));
        // The limit counts matches, not keys walked.
        assert!(run_with(&mut p, &[b"KEYS", b"p", b"k1*"], 11).starts_with(b"*11\r\n"));
    }

    #[test]
    fn flush_empties_and_keeps_counting() {
        let mut p = filled(100);
        assert_eq!(run(&mut p, &["FLUSH", "PARTITION", "p"]), "+OK\r\n");
        assert!(p.is_empty());
        assert_eq!(p.used_memory(), 0);
        assert_eq!(run(&mut p, &["DBSIZE", "p"]), ":0\r\n");
        assert_eq!(run(&mut p, &["FLUSH", "PARTITION", "p"]), "+OK\r\n");
        assert_eq!(run(&mut p, &["SET", "p", "a", "1"]), "+OK\r\n");
        assert_eq!(run(&mut p, &["DBSIZE", "p"]), ":1\r\n");
    }

    #[test]
    fn rename_moves_int_values_and_deadlines() {
        let far = crate::store::clock::system_now_ms() + 3_600_000;
        let mut p = Partition::new(Schema::Int, Arc::default());
        p.set_int(b"a", 7, Expiry::At(far));
        let used = p.used_memory();
        assert_eq!(run(&mut p, &["RENAME", "p", "a", "b"]), "+OK\r\n");
        let b = p.lookup(b"b").expect("renamed");
        assert_eq!(
            (b.value, b.deadline),
            (crate::store::ValueRef::Int(7), Some(far))
        );
        assert_eq!(p.used_memory(), used);
        assert_eq!(run(&mut p, &["RENAMENX", "p", "b", "c"]), ":1\r\n");
        assert_eq!(
            run(&mut p, &["RENAME", "p", "b", "c"]),
            "-ERR no such key\r\n"
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn expired_keys_are_invisible_to_the_family() {
        use crate::store::clock;
        const NOW: u64 = 1_800_000_000_000;
        clock::pin_for_tests(NOW);
        let mut p = Partition::new(Schema::String, Arc::default());
        p.set_str(b"dying", b"v", Expiry::At(NOW + 5));
        p.set_str(b"live", b"v", Expiry::Clear);
        assert_eq!(run(&mut p, &["TYPE", "p", "dying"]), "+string\r\n");
        clock::pin_for_tests(NOW + 6);
        assert_eq!(run(&mut p, &["TYPE", "p", "dying"]), "+none\r\n");
        assert_eq!(run(&mut p, &["TOUCH", "p", "dying", "live"]), ":1\r\n");
        assert_eq!(run(&mut p, &["KEYS", "p", "*"]), "*1\r\n$4\r\nlive\r\n");
        assert_eq!(
            run(&mut p, &["SCAN", "p", "0", "COUNT", "100"]),
            "*2\r\n$1\r\n0\r\n*1\r\n$4\r\nlive\r\n"
        );
        // Redis's DBSIZE counts a key until it is reclaimed.
        assert_eq!(run(&mut p, &["DBSIZE", "p"]), ":2\r\n");
        assert_eq!(
            run(&mut p, &["RENAME", "p", "dying", "x"]),
            "-ERR no such key\r\n"
        );
        assert_eq!(
            run(&mut p, &["RENAMENX", "p", "dying", "dying"]),
            "-ERR no such key\r\n"
        );
        // A live key renamed onto an expired one takes its place.
        assert_eq!(run(&mut p, &["SET", "p", "old", "v"]), "+OK\r\n");
        p.set_str(b"dead", b"w", Expiry::At(NOW));
        assert_eq!(run(&mut p, &["RENAMENX", "p", "old", "dead"]), ":1\r\n");
        assert_eq!(p.lookup(b"dead").unwrap().deadline, None);
        clock::end_passes();
    }

    #[test]
    fn key_arguments_of_rename_are_length_checked() {
        let mut p = filled(1);
        let long = "x".repeat(65);
        assert!(run(&mut p, &["RENAME", "p", "k0", &long]).starts_with("-ERR key too long"));
        assert!(p.contains(b"k0"));
    }
}

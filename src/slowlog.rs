//! The slow log (`SLOWLOG GET|LEN|RESET`): commands that ran at least
//! `slowlog-log-slower-than` microseconds, in Redis 7's entry shape.
//!
//! # Where entries live
//! Per shard, in a thread-local of the shard's thread ([`ShardLog`]): the shard that runs a
//! command is the only one that writes its entry, so recording takes no lock and touches no
//! other core's cache line. `SLOWLOG` asks every shard for its part through the shards'
//! mailboxes (`shard::observe`) and merges them, newest first; ids come from one process-wide
//! counter, so they are global and increasing across shards. Why not a structure other threads
//! read directly: an entry holds up to 32 arguments of up to 128 bytes, too much for a
//! lock-free slot, and a lock the shard takes (even only on the slow path) could make a
//! command wait behind a reader; a message costs a round trip on a rare operator command.
//!
//! # What it costs the request path
//! Every command is timed exactly: two time-stamp counter reads around its execution (which
//! per-command statistics sample 1 in 8 anyway, [`crate::metrics::CommandStats`]), one
//! compare against [`watch_ticks`], and, only past it, the out-of-line [`after_command`].
//! `scripts/count-instructions.sh` (user-space instructions per request, one shard, P16):
//! GET 1521 -> 1548 (+1.8%), SET 2074 -> 2100 (+1.3%), nearly all of it the clock reads and
//! what keeping their value across the command costs. Timing only the 1 in 8 calls the
//! statistics sample would save that, and miss 7 slow commands in 8: Redis's slow log sees
//! every one.
//!
//! # The entry
//! `[id, unix time (s), duration (us), [arguments], "ip:port", client name]`, as Redis 7:
//! at most [`MAX_ARGS`] arguments (the last then says `... (N more arguments)`), each at most
//! [`MAX_ARG_BYTES`] bytes (`... (N more bytes)`). Passwords are never logged: the arguments
//! of AUTH and LOGIN, the user and password of `HELLO ... AUTH`, the password of CREATE USER
//! and of ALTER USER are each `(redacted)`, as Redis redacts them. The client's address is that
//! of the connection whose request it was; a request run for a connection of another shard
//! (forwarded) has an empty address and name, as the shard that ran it does not know them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::command::{CommandId, CommandSpec};
use crate::protocol::Args;

/// Redis's `SLOWLOG_ENTRY_MAX_ARGC`: arguments kept per entry.
pub const MAX_ARGS: usize = 32;
/// Redis's `SLOWLOG_ENTRY_MAX_STRING`: bytes kept per argument.
pub const MAX_ARG_BYTES: usize = 128;

/// One logged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowEntry {
    pub id: u64,
    /// When it ran, in seconds since the Unix epoch.
    pub time: u64,
    pub micros: u64,
    pub args: Vec<Vec<u8>>,
    /// `ip:port` of its client; empty when forwarded from another shard.
    pub client: String,
    pub name: Vec<u8>,
}

/// One shard's entries, newest at the back.
struct ShardLog {
    entries: VecDeque<SlowEntry>,
}

thread_local! {
    // `const`: no lazy initialisation to test on each access.
    static LOG: RefCell<ShardLog> = const {
        RefCell::new(ShardLog {
            entries: VecDeque::new(),
        })
    };
    /// Entries at the back of `LOG` still waiting for their client's address (see [`claim`]):
    /// apart, so that the test after every read is one thread-local load.
    static UNCLAIMED: Cell<usize> = const { Cell::new(0) };
}

/// Source of entry ids, process-wide (global and increasing across shards).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// `slowlog-log-slower-than` in ticks (`u64::MAX`: off).
static SLOWLOG_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);
/// The smaller of that and the latency monitor's threshold: the one compare after every
/// command (see [`watch_ticks`]).
static WATCH_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);
/// `slowlog-max-len`.
static MAX_LEN: AtomicU64 = AtomicU64::new(128);

/// Takes the live settings (at start, and after each CONFIG SET): the thresholds in
/// time-stamp counter ticks, the length. Shards trim their logs to a new length as they next
/// record or answer.
pub fn configure(live: &crate::config::LiveValues) {
    let slow = u64::try_from(live.slowlog_log_slower_than).map_or(u64::MAX, |us| {
        crate::metrics::ns_to_ticks(us.saturating_mul(1000))
    });
    let latency = match live.latency_monitor_threshold {
        0 => u64::MAX,
        ms => crate::metrics::ns_to_ticks(ms.saturating_mul(1_000_000)),
    };
    SLOWLOG_TICKS.store(slow, Relaxed);
    WATCH_TICKS.store(slow.min(latency), Relaxed);
    SAMPLE_BOUNDED.store(
        slow.min(latency) >= crate::metrics::ns_to_ticks(1_000_000),
        Relaxed,
    );
    MAX_LEN.store(live.slowlog_max_len, Relaxed);
}

/// Whether a data command's call must be timed whatever the sample says: yes unless the
/// command is [`flag::BOUNDED`](crate::command::flag::BOUNDED) (single key, its work bounded
/// by its arguments and by the one value it reads, writes or frees; or PING and ECHO, bounded
/// by their arguments), the buffer its
/// arguments lie in holds at most [`BOUNDED_BYTES`] (which bounds the arguments themselves),
/// and the slow log and the latency monitor only watch for calls of a millisecond or more.
/// Such a call on a small value does well under 100 µs of work, so it reaches a millisecond
/// only when its thread is descheduled mid-call, which the one call in `DATA_SAMPLE` that the
/// statistics time still shows. One on a big value (a GET of a 10 MB string, a SET that frees
/// one) is seen after the fact ([`heavy`]) and timed from the start of its batch.
/// Skipping the clock saves two time-stamp counter reads, about 3% of a P16 GET's server
/// CPU.
#[inline(always)]
pub fn time_every_call(spec: &CommandSpec, args: &Args) -> bool {
    !spec.has(crate::command::flag::BOUNDED)
        || args.buf().len() > BOUNDED_BYTES
        || !SAMPLE_BOUNDED.load(Relaxed)
}

/// Whether an untimed call turned out to move a big value: a reply of more than
/// [`BOUNDED_BYTES`], or a partition whose memory estimate moved by more than that.
#[inline(always)]
pub fn heavy(reply_bytes: usize, memory_before: u64, memory_after: u64) -> bool {
    reply_bytes > BOUNDED_BYTES || memory_before.abs_diff(memory_after) > BOUNDED_BYTES as u64
}

thread_local! {
    /// The clock when this shard began running its current batch of requests.
    static BATCH_STARTED: Cell<u64> = const { Cell::new(0) };
}

/// A batch of requests (one connection's framed requests, or one forwarded batch) begins to
/// run: one clock read per batch, for [`since_batch_began`].
#[inline(always)]
pub fn batch_begins() {
    BATCH_STARTED.set(crate::metrics::ticks());
}

/// Ticks since the batch began: the time of an untimed call found [`heavy`], an upper bound
/// that includes the batch's earlier requests (small ones: a heavy call's own time dwarfs
/// them).
#[cold]
pub fn since_batch_began() -> u64 {
    crate::metrics::ticks().wrapping_sub(BATCH_STARTED.get())
}

/// See [`time_every_call`]: 64 KiB, the default `max-key-len`.
pub const BOUNDED_BYTES: usize = 64 << 10;

/// Whether the slow log and the latency monitor watch only for calls of a millisecond or
/// more (set by [`configure`]), so that [`time_every_call`] may leave bounded calls to the
/// sample.
static SAMPLE_BOUNDED: AtomicBool = AtomicBool::new(false);

/// Ticks from which a command is slow enough for the slow log or the latency monitor.
#[inline(always)]
pub fn watch_ticks() -> u64 {
    WATCH_TICKS.load(Relaxed)
}

/// After a command that took `ticks` (at least [`watch_ticks`]): a slow-log entry if it
/// reaches `slowlog-log-slower-than`, a `command` latency event if it reaches
/// `latency-monitor-threshold`.
#[cold]
#[inline(never)]
pub fn after_command(spec: &CommandSpec, args: &Args, ticks: u64) {
    let micros = crate::metrics::ticks_to_ns(ticks) / 1000;
    crate::latency::record(crate::latency::Event::Command, micros / 1000);
    if ticks >= SLOWLOG_TICKS.load(Relaxed) {
        record(spec.id, args.iter(), micros);
    }
}

/// A login (AUTH, LOGIN, HELLO ... AUTH), which the shard hands to the hasher pool rather than
/// runs: logged (redacted) when every command is (`slowlog-log-slower-than 0`), as Redis logs
/// AUTH.
pub fn after_login(spec: &CommandSpec, args: &Args) {
    if SLOWLOG_TICKS.load(Relaxed) == 0 {
        record(spec.id, args.iter(), 0);
    }
}

/// Adds an entry for command `id` with these arguments, on this thread's shard.
pub fn record<'a>(id: CommandId, args: impl Iterator<Item = &'a [u8]>, micros: u64) {
    let max_len = MAX_LEN.load(Relaxed) as usize;
    if max_len == 0 {
        return;
    }
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let entry = SlowEntry {
        id: NEXT_ID.fetch_add(1, Relaxed),
        time,
        micros,
        args: entry_args(id, args),
        client: String::new(),
        name: Vec::new(),
    };
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.entries.push_back(entry);
        UNCLAIMED.set(UNCLAIMED.get() + 1);
        trim(&mut log, max_len);
    });
}

fn trim(log: &mut ShardLog, max_len: usize) {
    while log.entries.len() > max_len {
        log.entries.pop_front();
    }
    UNCLAIMED.set(UNCLAIMED.get().min(log.entries.len()));
}

/// The arguments as an entry keeps them: redacted, at most [`MAX_ARGS`], each at most
/// [`MAX_ARG_BYTES`] (Redis's `slowlogCreateEntry`).
fn entry_args<'a>(id: CommandId, args: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let args: Vec<&[u8]> = args.collect();
    let redacted = redacted_positions(id, &args);
    let kept = args.len().min(MAX_ARGS);
    let mut out = Vec::with_capacity(kept);
    for (i, arg) in args.iter().enumerate().take(kept) {
        if kept != args.len() && i == kept - 1 {
            out.push(format!("... ({} more arguments)", args.len() - kept + 1).into_bytes());
        } else if redacted(i) {
            out.push(b"(redacted)".to_vec());
        } else if arg.len() > MAX_ARG_BYTES {
            let mut cut = arg[..MAX_ARG_BYTES].to_vec();
            cut.extend_from_slice(
                format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES).as_bytes(),
            );
            out.push(cut);
        } else {
            out.push(arg.to_vec());
        }
    }
    out
}

/// Which arguments of a command carry a password (or the user it goes with).
fn redacted_positions(id: CommandId, args: &[&[u8]]) -> impl Fn(usize) -> bool {
    let hello_auth = (id == CommandId::Hello)
        .then(|| args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH")))
        .flatten();
    move |i: usize| match id {
        CommandId::Auth | CommandId::Login => i >= 1,
        CommandId::Hello => hello_auth.is_some_and(|at| i == at + 1 || i == at + 2),
        // CREATE USER <name> <password> ..., ALTER USER <name> PASSWORD <password>.
        CommandId::CreateUser => i == 3,
        CommandId::AlterUser => i == 4,
        _ => false,
    }
}

/// Gives the entries recorded since the last call that lack a client this connection's
/// address and name (called after a connection's requests ran, once per read, not per
/// request).
#[inline]
pub fn claim(peer: std::net::SocketAddr, name: Option<&[u8]>) {
    if UNCLAIMED.get() != 0 {
        claim_slow(peer, name);
    }
}

#[cold]
#[inline(never)]
fn claim_slow(peer: std::net::SocketAddr, name: Option<&[u8]>) {
    LOG.with(|log| {
        let Ok(mut log) = log.try_borrow_mut() else {
            return;
        };
        let len = log.entries.len();
        let n = UNCLAIMED.get().min(len);
        for entry in log.entries.range_mut(len - n..) {
            entry.client = peer.to_string();
            entry.name = name.unwrap_or_default().to_vec();
        }
        UNCLAIMED.set(0);
    });
}

/// Entries recorded for requests forwarded from another shard keep an empty client (called
/// after a forwarded batch ran).
#[inline]
pub fn claim_forwarded() {
    UNCLAIMED.set(0);
}

/// This shard's newest `count` entries (all: `usize::MAX`), newest first.
pub fn newest(count: usize) -> Vec<SlowEntry> {
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        trim(&mut log, MAX_LEN.load(Relaxed) as usize);
        log.entries.iter().rev().take(count).cloned().collect()
    })
}

/// This shard's number of entries.
pub fn len() -> usize {
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        trim(&mut log, MAX_LEN.load(Relaxed) as usize);
        log.entries.len()
    })
}

/// Empties this shard's log.
pub fn reset() {
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.entries.clear();
        UNCLAIMED.set(0);
    });
}

/// Merges shards' parts (each newest first) into the newest `count`, newest first (by id:
/// ids grow with time across shards).
pub fn merge(parts: Vec<Vec<SlowEntry>>, count: usize) -> Vec<SlowEntry> {
    let mut all: Vec<SlowEntry> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
    all.truncate(count);
    all
}

/// Writes entries in Redis 7's shape.
pub fn write_entries(entries: &[SlowEntry], w: &mut crate::protocol::ReplyWriter) {
    w.array(entries.len());
    for e in entries {
        w.array(6);
        w.integer(e.id as i64);
        w.integer(e.time as i64);
        w.integer(e.micros as i64);
        w.array(e.args.len());
        for arg in &e.args {
            w.bulk(arg);
        }
        w.bulk(e.client.as_bytes());
        w.bulk(&e.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut_as_redis_cuts_them() {
        let long = [b'x'; 200];
        let args: Vec<&[u8]> = std::iter::once(&b"MSET"[..])
            .chain(std::iter::repeat_n(&long[..], 40))
            .collect();
        let kept = entry_args(CommandId::MSet, args.iter().copied());
        assert_eq!(kept.len(), MAX_ARGS);
        assert_eq!(kept[0], b"MSET");
        assert_eq!(kept[31], b"... (10 more arguments)");
        let mut cut = vec![b'x'; 128];
        cut.extend_from_slice(b"... (72 more bytes)");
        assert_eq!(kept[1], cut);
        // Exactly 32 arguments: all kept.
        let args: Vec<&[u8]> = std::iter::repeat_n(&b"a"[..], 32).collect();
        assert_eq!(entry_args(CommandId::MSet, args.into_iter()).len(), 32);
    }

    #[test]
    fn passwords_are_redacted() {
        let run = |id, words: &[&str]| -> Vec<String> {
            entry_args(id, words.iter().map(|w| w.as_bytes()))
                .into_iter()
                .map(|a| String::from_utf8(a).unwrap())
                .collect()
        };
        assert_eq!(
            run(CommandId::Auth, &["AUTH", "pw"]),
            ["AUTH", "(redacted)"]
        );
        assert_eq!(
            run(CommandId::Login, &["LOGIN", "u", "pw"]),
            ["LOGIN", "(redacted)", "(redacted)"]
        );
        assert_eq!(
            run(
                CommandId::Hello,
                &["HELLO", "3", "auth", "u", "pw", "SETNAME", "n"]
            ),
            [
                "HELLO",
                "3",
                "auth",
                "(redacted)",
                "(redacted)",
                "SETNAME",
                "n"
            ]
        );
        assert_eq!(
            run(
                CommandId::CreateUser,
                &["CREATE", "USER", "u", "pw", "DEFAULT", "p"]
            ),
            ["CREATE", "USER", "u", "(redacted)", "DEFAULT", "p"]
        );
        assert_eq!(
            run(
                CommandId::AlterUser,
                &["ALTER", "USER", "u", "PASSWORD", "pw"]
            ),
            ["ALTER", "USER", "u", "PASSWORD", "(redacted)"]
        );
    }

    #[test]
    fn entries_merge_newest_first_and_are_claimed_by_their_connection() {
        reset();
        MAX_LEN.store(3, Relaxed);
        for i in 0..5 {
            record(
                CommandId::Get,
                [&b"GET"[..], format!("{i}").as_bytes()].into_iter(),
                i,
            );
        }
        let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        claim(peer, Some(b"me"));
        record(CommandId::Get, [&b"GET"[..]].into_iter(), 9);
        claim_forwarded();
        let mine = newest(usize::MAX);
        assert_eq!(mine.len(), 3);
        assert_eq!(mine[0].client, "");
        assert_eq!(
            (mine[1].client.as_str(), &mine[1].name[..]),
            ("127.0.0.1:5000", &b"me"[..])
        );
        assert!(mine[0].id > mine[1].id && mine[1].id > mine[2].id);
        let other = vec![SlowEntry {
            id: mine[1].id,
            ..mine[1].clone()
        }];
        let merged = merge(vec![mine.clone(), other], 2);
        assert_eq!(merged[0].id, mine[0].id);
        assert_eq!(len(), 3);
        reset();
        assert_eq!(len(), 0);
        MAX_LEN.store(128, Relaxed);
    }
}

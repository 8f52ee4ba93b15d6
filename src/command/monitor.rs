//! `SLOWLOG GET [count]|LEN|RESET|HELP` and `LATENCY LATEST|HISTORY <event>|RESET [event
//! ...]|HISTOGRAM [command ...]|HELP`, in Redis 7's reply shapes (ADMIN on `*`).
//!
//! The slow log and the latency samples live on each shard ([`crate::slowlog`],
//! [`crate::latency`]), so most forms are a [`Query`] that every shard answers about itself
//! and the connection's shard merges ([`merge`]; the messages are `shard::observe`'s). HELP,
//! LATENCY HISTOGRAM (from the per-command statistics every thread can read) and every
//! refusal are answered where the connection lives, by the handlers here.

use std::borrow::Cow;

use crate::latency::{Event, Events, Series};
use crate::protocol::{Args, ReplyWriter};
use crate::slowlog::{self, SlowEntry};

use super::error::printable;
use super::server::{command_totals_since_reset, stat_name, ServerView, Session};
use super::{CommandError, CommandId};

/// What every shard is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The newest `n` entries (`usize::MAX`: all).
    SlowlogGet(usize),
    SlowlogLen,
    SlowlogReset,
    LatencyLatest,
    LatencyHistory(Event),
    LatencyReset(Vec<Event>),
}

/// One shard's answer to a [`Query`].
#[derive(Debug, Clone)]
pub enum Answer {
    Slow(Vec<SlowEntry>),
    Count(usize),
    Events(Box<Events>),
    Reset(Vec<Event>),
}

/// Redis's default count for `SLOWLOG GET`.
const DEFAULT_COUNT: usize = 10;

/// The query a valid SLOWLOG or LATENCY request asks every shard; `None` for everything the
/// handlers answer here (HELP, HISTOGRAM, any refusal).
pub fn query(id: CommandId, args: &Args) -> Option<Query> {
    if !matches!(id, CommandId::Slowlog | CommandId::Latency) || args.len() < 2 {
        return None;
    }
    let sub = args.get(1);
    let is = |word: &[u8]| sub.eq_ignore_ascii_case(word);
    match id {
        CommandId::Slowlog if is(b"GET") => match args.len() {
            2 => Some(Query::SlowlogGet(DEFAULT_COUNT)),
            3 => slowlog_count(args.get(2)).ok().map(Query::SlowlogGet),
            _ => None,
        },
        CommandId::Slowlog if is(b"LEN") && args.len() == 2 => Some(Query::SlowlogLen),
        CommandId::Slowlog if is(b"RESET") && args.len() == 2 => Some(Query::SlowlogReset),
        CommandId::Latency if is(b"LATEST") && args.len() == 2 => Some(Query::LatencyLatest),
        // An event GoKV does not know has no samples: Redis's empty array, answered here.
        CommandId::Latency if is(b"HISTORY") && args.len() == 3 => {
            Event::named(args.get(2)).map(Query::LatencyHistory)
        }
        CommandId::Latency if is(b"RESET") => {
            let events = if args.len() == 2 {
                Event::ALL.to_vec()
            } else {
                args.iter().skip(2).filter_map(Event::named).collect()
            };
            Some(Query::LatencyReset(events))
        }
        _ => None,
    }
}

/// `SLOWLOG GET`'s count: `-1` all, else at least 0 (Redis 7's text for anything else).
fn slowlog_count(arg: &[u8]) -> Result<usize, CommandError> {
    match crate::protocol::parser::parse_i64(arg) {
        Some(-1) => Ok(usize::MAX),
        Some(n) if n >= 0 => Ok(n as usize),
        _ => Err(CommandError::NotAvailable(
            "count should be greater than or equal to -1".into(),
        )),
    }
}

/// This shard's answer (runs on every shard, reading its own thread's state).
pub fn answer(query: &Query) -> Answer {
    match query {
        Query::SlowlogGet(n) => Answer::Slow(slowlog::newest(*n)),
        Query::SlowlogLen => Answer::Count(slowlog::len()),
        Query::SlowlogReset => {
            slowlog::reset();
            Answer::Count(0)
        }
        Query::LatencyLatest | Query::LatencyHistory(_) => {
            Answer::Events(Box::new(crate::latency::snapshot()))
        }
        Query::LatencyReset(events) => Answer::Reset(crate::latency::reset(events)),
    }
}

/// Every shard's answer merged into the one reply, in Redis 7's shape.
pub fn merge(query: &Query, answers: Vec<Answer>, w: &mut ReplyWriter) {
    match query {
        Query::SlowlogGet(n) => {
            let parts = answers
                .into_iter()
                .filter_map(|a| match a {
                    Answer::Slow(entries) => Some(entries),
                    _ => None,
                })
                .collect();
            slowlog::write_entries(&slowlog::merge(parts, *n), w);
        }
        Query::SlowlogLen => {
            let n: usize = answers
                .iter()
                .map(|a| match a {
                    Answer::Count(n) => *n,
                    _ => 0,
                })
                .sum();
            w.integer(n as i64);
        }
        Query::SlowlogReset => w.ok(),
        Query::LatencyLatest | Query::LatencyHistory(_) => {
            let mut merged: Events = Default::default();
            for answer in &answers {
                if let Answer::Events(events) = answer {
                    for (all, one) in merged.iter_mut().zip(events.iter()) {
                        all.merge(one);
                    }
                }
            }
            match query {
                Query::LatencyHistory(event) => {
                    let series = &merged[*event as usize];
                    w.array(series.samples.len());
                    for (time, ms) in &series.samples {
                        w.array(2);
                        w.integer(*time as i64);
                        w.integer(*ms as i64);
                    }
                }
                _ => write_latest(&merged, w),
            }
        }
        Query::LatencyReset(_) => {
            let mut reset: Vec<Event> = Vec::new();
            for answer in answers {
                if let Answer::Reset(events) = answer {
                    for e in events {
                        if !reset.contains(&e) {
                            reset.push(e);
                        }
                    }
                }
            }
            w.integer(reset.len() as i64);
        }
    }
}

/// `LATENCY LATEST`: `[event, time of the latest sample, its ms, the largest ms]` per event
/// with samples.
fn write_latest(events: &Events, w: &mut ReplyWriter) {
    let held: Vec<(Event, &Series)> = Event::ALL
        .iter()
        .map(|&e| (e, &events[e as usize]))
        .filter(|(_, s)| !s.samples.is_empty())
        .collect();
    w.array(held.len());
    for (event, series) in held {
        let (time, ms) = series.samples.back().copied().unwrap_or_default();
        w.array(4);
        w.bulk(event.name().as_bytes());
        w.integer(time as i64);
        w.integer(ms as i64);
        w.integer(series.max as i64);
    }
}

/// Redis 7's `unknown subcommand` text for these commands.
fn unknown(sub: &[u8], command: &str) -> CommandError {
    CommandError::NotAvailable(format!(
        "unknown subcommand '{}'. Try {command} HELP.",
        printable(sub)
    ))
}

fn arity(command: &'static str) -> CommandError {
    CommandError::WrongArity {
        command,
        usage: Cow::Borrowed(""),
    }
}

fn write_help(lines: &[&str], w: &mut ReplyWriter) {
    w.array(lines.len());
    for line in lines {
        w.simple(line);
    }
}

/// `SLOWLOG ...`: what is not a [`Query`] (HELP and the refusals).
pub fn slowlog_command(
    args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"GET") {
        if args.len() > 3 {
            return Err(CommandError::NotAvailable(format!(
                "unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
                printable(sub)
            )));
        }
        slowlog_count(args.get(2))?;
        // A valid GET is a query; it never gets here.
        Err(CommandError::NotAvailable(
            "SLOWLOG GET must be asked of every shard".into(),
        ))
    } else if sub.eq_ignore_ascii_case(b"LEN") {
        Err(arity("slowlog|len"))
    } else if sub.eq_ignore_ascii_case(b"RESET") {
        Err(arity("slowlog|reset"))
    } else if sub.eq_ignore_ascii_case(b"HELP") {
        if args.len() != 2 {
            return Err(arity("slowlog|help"));
        }
        write_help(
            &[
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Prints this help.",
            ],
            w,
        );
        Ok(())
    } else {
        Err(unknown(sub, "SLOWLOG"))
    }
}

/// `LATENCY ...`: HISTOGRAM, HELP, an unknown event's empty HISTORY, and the refusals.
pub fn latency_command(
    args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"HISTOGRAM") {
        histogram(args, view, w);
        Ok(())
    } else if sub.eq_ignore_ascii_case(b"HISTORY") {
        if args.len() != 3 {
            return Err(arity("latency|history"));
        }
        // An event no shard knows: no samples.
        w.array(0);
        Ok(())
    } else if sub.eq_ignore_ascii_case(b"LATEST") {
        Err(arity("latency|latest"))
    } else if sub.eq_ignore_ascii_case(b"HELP") {
        if args.len() != 2 {
            return Err(arity("latency|help"));
        }
        write_help(
            &[
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram \
                 for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
                "HELP",
                "    Prints this help.",
            ],
            w,
        );
        Ok(())
    } else {
        Err(unknown(sub, "LATENCY"))
    }
}

/// `LATENCY HISTOGRAM [command ...]`: Redis 7's map of command name to `calls` and
/// `histogram_usec`, a cumulative count at each power of two from 1 us (Redis's
/// `hdr_iter_log` from 1024 ns, doubling), listed where it grows. Commands without calls are
/// left out; unknown names are ignored. Data commands are timed one call in 8
/// ([`crate::metrics::CommandStats`]): the counts are the timed calls' scaled to `calls`, so
/// the last one is `calls`.
fn histogram(args: &Args, view: &ServerView, w: &mut ReplyWriter) {
    let wanted: Vec<&[u8]> = args.iter().skip(2).collect();
    let rows: Vec<_> = command_totals_since_reset(view.metrics)
        .filter(|(spec, t)| {
            t.calls > 0
                && (wanted.is_empty()
                    || wanted
                        .iter()
                        .any(|name| name.eq_ignore_ascii_case(stat_name(spec).as_bytes())))
        })
        .collect();
    w.map(rows.len());
    for (spec, t) in rows {
        w.bulk(stat_name(spec).as_bytes());
        w.map(2);
        w.bulk(b"calls");
        w.integer(t.calls as i64);
        w.bulk(b"histogram_usec");
        let timed: u64 = t.buckets.iter().sum();
        let scale = |n: u64| {
            if timed == 0 {
                0
            } else {
                (u128::from(n) * u128::from(t.calls) / u128::from(timed)) as u64
            }
        };
        // Cumulative counts below 2^k ns, k = 10 .. (our buckets' bounds include every power
        // of two from 64 ns), then everything.
        let mut points: Vec<(u64, u64)> = Vec::new();
        let mut seen = 0u64;
        let mut bucket = 0;
        let mut pow = 10u32;
        let mut previous = 0u64;
        while seen < timed && pow < 64 {
            let bound = 1u64 << pow;
            while bucket < t.buckets.len() && crate::metrics::latency_bucket_bound(bucket) <= bound
            {
                seen += t.buckets[bucket];
                bucket += 1;
            }
            if seen > previous {
                points.push((bound / 1000, scale(seen)));
                previous = seen;
            }
            pow += 1;
        }
        w.map(points.len());
        for (usec, count) in points {
            w.integer(usec as i64);
            w.integer(count as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(words: &[&str], f: impl FnOnce(&Args) -> Option<Query>) -> Option<Query> {
        let (buf, spans) = crate::protocol::lay_out(words);
        f(&Args::new(&buf, &spans))
    }

    #[test]
    fn only_valid_forms_are_asked_of_every_shard() {
        let q = |id, words: &[&str]| args_of(words, |a| query(id, a));
        assert_eq!(
            q(CommandId::Slowlog, &["SLOWLOG", "get"]),
            Some(Query::SlowlogGet(10))
        );
        assert_eq!(
            q(CommandId::Slowlog, &["SLOWLOG", "GET", "-1"]),
            Some(Query::SlowlogGet(usize::MAX))
        );
        assert_eq!(q(CommandId::Slowlog, &["SLOWLOG", "GET", "-5"]), None);
        assert_eq!(q(CommandId::Slowlog, &["SLOWLOG", "GET", "x"]), None);
        assert_eq!(q(CommandId::Slowlog, &["SLOWLOG", "LEN", "x"]), None);
        assert_eq!(q(CommandId::Slowlog, &["SLOWLOG", "HELP"]), None);
        assert_eq!(
            q(CommandId::Latency, &["LATENCY", "history", "FSYNC"]),
            Some(Query::LatencyHistory(Event::Fsync))
        );
        assert_eq!(
            q(CommandId::Latency, &["LATENCY", "HISTORY", "nosuch"]),
            None
        );
        assert_eq!(
            q(CommandId::Latency, &["LATENCY", "RESET", "drain", "nosuch"]),
            Some(Query::LatencyReset(vec![Event::Drain]))
        );
        assert_eq!(q(CommandId::Latency, &["LATENCY", "HISTOGRAM"]), None);
        // Other commands, and a bare word, are never queries (and never read past their end).
        assert_eq!(q(CommandId::Ping, &["PING"]), None);
        assert_eq!(q(CommandId::Slowlog, &["SLOWLOG"]), None);
    }

    #[test]
    fn slowlog_counts_as_redis_7() {
        assert_eq!(slowlog_count(b"0").unwrap(), 0);
        assert_eq!(slowlog_count(b"-1").unwrap(), usize::MAX);
        for bad in [&b"-2"[..], b"abc", b""] {
            assert_eq!(
                slowlog_count(bad).unwrap_err().to_string(),
                "count should be greater than or equal to -1"
            );
        }
    }
}

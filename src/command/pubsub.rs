//! Pub/Sub's commands: `SUBSCRIBE`, `UNSUBSCRIBE`, `PSUBSCRIBE`, `PUNSUBSCRIBE`, `PUBLISH`
//! and `PUBSUB CHANNELS|NUMSUB|NUMPAT|HELP`, with Redis 7's replies. What a connection is
//! subscribed to ([`Subscriptions`], in its session), who may use which channel
//! ([`check_channel`], [`check_pattern`]), the frames subscribers get ([`message_frame`],
//! [`pmessage_frame`]) and the PUBSUB questions every shard answers ([`Query`], [`merge`]).
//! The registry of subscribers and the delivery across shards are the shard's
//! (`shard::pubsub`, whose module docs hold the design).
//!
//! # Replies, as Redis 7
//! - `(P)(UN)SUBSCRIBE` answer one frame per channel or pattern: `[kind, name, count]`,
//!   `count` the connection's subscriptions (channels plus patterns) after it; an
//!   `(P)UNSUBSCRIBE` without arguments names each subscription it ends, or, with none,
//!   answers one frame with a nil name and 0. In RESP3 every one of them is a push (`>`).
//! - A subscriber gets `[message, channel, payload]`, or `[pmessage, pattern, channel,
//!   payload]` for a pattern's match (a push in RESP3).
//! - A RESP2 connection with a subscription is in *subscribed mode*: only
//!   `(P)(UN)SUBSCRIBE`, `PING` (answered `[pong, message]`), `QUIT` and `RESET` run; any
//!   other command answers Redis's `Can't execute '<name>': ...` ([`refused_when_subscribed`]).
//!   A RESP3 connection may run anything while subscribed.
//! - `PUBLISH` answers how many receivers got the message on every shard, as Redis counts
//!   them: one per subscribed channel and one per matching pattern of each connection.
//!
//! # Permissions
//! A channel named `<partition>:...` (the part before the first `:` a valid partition name)
//! needs READ on that partition to subscribe and WRITE to publish; any other channel needs
//! ADMIN on `*`. A pattern is allowed only if every channel it can match is: it must start
//! with a literal `<partition>:` (no glob character before the colon), and then needs READ on
//! that partition; any other pattern needs ADMIN on `*`. Grants are by name, as everywhere
//! (the partition need not exist). A subscription outlives no revocation: when a new ACL
//! version arrives each shard checks its subscribers again and closes the connections whose
//! user may no longer hold one of their subscriptions (as Redis kills the clients of a user
//! whose channel permissions shrink).
//!
//! # Bounds
//! At most [`MAX_SUBSCRIPTIONS`] channels plus patterns per connection (past it a subscribe
//! answers an error for the rest); a channel or pattern is at most `max-key-len` bytes; a
//! message at most `max-bulk-len` (the request's own bound). What a subscriber is sent is
//! its output, under `client-output-limit` like any reply: a subscriber that does not read
//! is closed once it passes the limit, and the publisher never waits for it.

use std::borrow::Cow;

use hashbrown::HashSet;

use crate::acl::{Perms, User, ALL};
use crate::protocol::{Args, Protocol, ReplyWriter};

use super::error::printable;
use super::server::{ServerView, Session};
use super::{CommandError, CommandId};

/// Channels plus patterns one connection may be subscribed to.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// What one connection is subscribed to; in its session while it has at least one
/// subscription (`Session::pubsub` is `None` otherwise).
#[derive(Debug, Default, Clone)]
pub struct Subscriptions {
    pub channels: HashSet<Box<[u8]>>,
    pub patterns: HashSet<Box<[u8]>>,
}

impl Subscriptions {
    /// Channels plus patterns: the count every confirmation carries.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// The four kinds of confirmation frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
}

impl Kind {
    fn word(self) -> &'static [u8] {
        match self {
            Kind::Subscribe => b"subscribe",
            Kind::Unsubscribe => b"unsubscribe",
            Kind::PSubscribe => b"psubscribe",
            Kind::PUnsubscribe => b"punsubscribe",
        }
    }

    /// A pattern kind (PSUBSCRIBE, PUNSUBSCRIBE)?
    pub fn is_pattern(self) -> bool {
        matches!(self, Kind::PSubscribe | Kind::PUnsubscribe)
    }
}

/// One confirmation frame: `[kind, name, count]` (a nil name: nothing to unsubscribe from).
pub fn confirmation(w: &mut ReplyWriter, kind: Kind, name: Option<&[u8]>, count: usize) {
    w.push(3);
    w.bulk(kind.word());
    match name {
        Some(name) => w.bulk(name),
        None => w.null(),
    }
    w.integer(count as i64);
}

/// A channel's message as a subscriber of that channel gets it.
pub fn message_frame(buf: &mut Vec<u8>, protocol: Protocol, channel: &[u8], payload: &[u8]) {
    let mut w = ReplyWriter::new(buf, protocol);
    w.push(3);
    w.bulk(b"message");
    w.bulk(channel);
    w.bulk(payload);
}

/// A channel's message as a subscriber of a pattern matching it gets it.
pub fn pmessage_frame(
    buf: &mut Vec<u8>,
    protocol: Protocol,
    pattern: &[u8],
    channel: &[u8],
    payload: &[u8],
) {
    let mut w = ReplyWriter::new(buf, protocol);
    w.push(4);
    w.bulk(b"pmessage");
    w.bulk(pattern);
    w.bulk(channel);
    w.bulk(payload);
}

/// Does `pattern` match `channel` (Redis's glob, case-sensitive)?
#[inline]
pub fn pattern_matches(pattern: &[u8], channel: &[u8]) -> bool {
    super::glob::matches(pattern, channel, false)
}

/// The partition a channel belongs to: the part before its first `:`, when that is a valid
/// partition name.
pub fn channel_partition(channel: &[u8]) -> Option<&[u8]> {
    let colon = channel.iter().position(|&b| b == b':')?;
    let prefix = &channel[..colon];
    crate::catalog::is_valid_name(prefix).then_some(prefix)
}

/// The partition every channel a pattern can match belongs to: its literal prefix before
/// the first `:`, when that holds no glob character (a partition name has none of `*?[\`,
/// so a valid name is literal) and is a valid partition name.
pub fn pattern_partition(pattern: &[u8]) -> Option<&[u8]> {
    channel_partition(pattern)
}

/// May `user` see `channel` in PUBSUB's answers (could it subscribe to it)?
pub fn visible(user: Option<&User>, channel: &[u8]) -> bool {
    user.is_some_and(|u| check_channel(u, channel, Perms::READ).is_ok())
}

/// May `user` subscribe to (`Perms::READ`) or publish on (`Perms::WRITE`) `channel`?
pub fn check_channel(user: &User, channel: &[u8], needed: Perms) -> Result<(), CommandError> {
    check_target(user, channel_partition(channel), needed)
}

/// May `user` subscribe to `pattern`?
pub fn check_pattern(user: &User, pattern: &[u8]) -> Result<(), CommandError> {
    check_target(user, pattern_partition(pattern), Perms::READ)
}

fn check_target(user: &User, partition: Option<&[u8]>, needed: Perms) -> Result<(), CommandError> {
    let (needed, target) = match partition {
        Some(partition) => (needed, partition),
        None => (Perms::ADMIN, ALL.as_bytes()),
    };
    if user.allows(needed, target) {
        return Ok(());
    }
    Err(CommandError::NoPerm {
        user: user.name.clone(),
        needed: if needed == Perms::READ {
            "READ"
        } else if needed == Perms::WRITE {
            "WRITE"
        } else {
            "ADMIN"
        },
        target: printable(target),
    })
}

/// Does `user` still hold every subscription of `subs`?
pub fn still_allowed(user: &User, subs: &Subscriptions) -> bool {
    subs.channels
        .iter()
        .all(|c| check_channel(user, c, Perms::READ).is_ok())
        && subs.patterns.iter().all(|p| check_pattern(user, p).is_ok())
}

/// Checks a channel or pattern's length against `max-key-len`.
pub fn check_name(name: &[u8], max: usize) -> Result<(), CommandError> {
    if name.len() > max {
        return Err(CommandError::NotAvailable(format!(
            "channel or pattern longer than max-key-len ({max} bytes)"
        )));
    }
    Ok(())
}

/// The refusal past [`MAX_SUBSCRIPTIONS`].
pub fn too_many() -> CommandError {
    CommandError::NotAvailable(format!(
        "too many subscriptions on this connection (at most {MAX_SUBSCRIPTIONS})"
    ))
}

/// Refused on a RESP2 connection in subscribed mode? (Redis 7's list: the subscribe
/// commands, PING, QUIT, RESET.)
#[inline]
pub fn refused_when_subscribed(id: CommandId) -> bool {
    !matches!(
        id,
        CommandId::Subscribe
            | CommandId::Unsubscribe
            | CommandId::PSubscribe
            | CommandId::PUnsubscribe
            | CommandId::Ping
            | CommandId::Quit
            | CommandId::Reset
    )
}

/// Redis 7's refusal of a request of `spec` in subscribed mode, naming the command as
/// Redis does (`client|list`; `pubsub|numpat` for a PUBSUB subcommand Redis knows).
#[cold]
#[inline(never)]
pub fn subscribed_mode_error(spec: &super::CommandSpec, args: &Args) -> CommandError {
    let mut name = super::server::stat_name(spec);
    if spec.id == CommandId::Pubsub && args.len() > 1 {
        let sub = args.get(1).to_ascii_lowercase();
        if matches!(&sub[..], b"channels" | b"numsub" | b"numpat" | b"help") {
            name = format!("pubsub|{}", String::from_utf8_lossy(&sub));
        }
    }
    CommandError::NotAvailable(format!(
        "Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    ))
}

/// A PUBSUB question every shard answers about its own subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Channels with a subscriber, matching the pattern if any.
    Channels(Option<Vec<u8>>),
    /// Subscribers of each channel, in the order asked.
    NumSub(Vec<Vec<u8>>),
    /// Patterns with a subscriber (the shards' sets are merged: Redis counts each once).
    NumPat,
}

/// One shard's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Channel (or pattern) names.
    Names(Vec<Box<[u8]>>),
    /// One count per channel asked.
    Counts(Vec<u64>),
}

/// The query of a valid `PUBSUB CHANNELS|NUMSUB|NUMPAT`; the error Redis 7 answers for any
/// other form, or `Ok(None)` for HELP (answered by [`help`]).
pub fn parse_pubsub(args: &Args) -> Result<Option<Query>, CommandError> {
    let sub = args.get(1);
    let is = |word: &[u8]| sub.eq_ignore_ascii_case(word);
    if is(b"CHANNELS") && args.len() <= 3 {
        Ok(Some(Query::Channels(
            (args.len() == 3).then(|| args.get(2).to_vec()),
        )))
    } else if is(b"NUMSUB") {
        Ok(Some(Query::NumSub(
            args.iter().skip(2).map(<[u8]>::to_vec).collect(),
        )))
    } else if is(b"NUMPAT") {
        if args.len() != 2 {
            return Err(CommandError::WrongArity {
                command: "pubsub|numpat",
                usage: Cow::Borrowed(""),
            });
        }
        Ok(Some(Query::NumPat))
    } else if is(b"HELP") && args.len() == 2 {
        Ok(None)
    } else if is(b"CHANNELS") || is(b"HELP") {
        Err(CommandError::NotAvailable(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            printable(sub)
        )))
    } else {
        Err(CommandError::NotAvailable(format!(
            "unknown subcommand '{}'. Try PUBSUB HELP.",
            printable(sub)
        )))
    }
}

/// `PUBSUB HELP`, Redis 7's lines (less the shard-channel forms GoKV does not have).
pub fn help(w: &mut ReplyWriter) {
    let lines = [
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "HELP",
        "    Prints this help.",
    ];
    w.array(lines.len());
    for line in lines {
        w.simple(line);
    }
}

/// Every shard's answer merged into the one reply, in Redis 7's shape, for a caller that
/// may see the channels `visible` allows: CHANNELS lists only those, NUMSUB counts 0 for any
/// other (so that no channel, and so no partition name, leaks to a user without a grant on
/// it); NUMPAT is a number and counts every pattern.
pub fn merge(
    query: &Query,
    answers: Vec<Answer>,
    visible: impl Fn(&[u8]) -> bool,
    w: &mut ReplyWriter,
) {
    match query {
        Query::Channels(_) | Query::NumPat => {
            let mut names: HashSet<Box<[u8]>> = HashSet::new();
            for answer in answers {
                if let Answer::Names(part) = answer {
                    names.extend(part);
                }
            }
            if *query == Query::NumPat {
                w.integer(names.len() as i64);
            } else {
                names.retain(|name| visible(name));
                w.array(names.len());
                for name in &names {
                    w.bulk(name);
                }
            }
        }
        Query::NumSub(channels) => {
            let mut counts = vec![0u64; channels.len()];
            for answer in answers {
                if let Answer::Counts(part) = answer {
                    for (total, n) in counts.iter_mut().zip(part) {
                        *total += n;
                    }
                }
            }
            // An array of pairs in both protocols, as Redis 7 answers it.
            w.array(2 * channels.len());
            for (channel, n) in channels.iter().zip(counts) {
                w.bulk(channel);
                w.integer(if visible(channel) { n as i64 } else { 0 });
            }
        }
    }
}

/// The handler of every Pub/Sub row: the shard runs these commands itself
/// (`shard::pubsub`, which needs its registry of subscribers), so this answers only if a
/// request ever gets past that.
pub fn shard_path(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "this command must go through the shard's Pub/Sub registry".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn user(all: Perms, grants: &[(&str, Perms)]) -> User {
        User {
            id: 7,
            name: "u".into(),
            hash: Arc::from(""),
            all,
            grants: grants
                .iter()
                .map(|(p, g)| (p.to_string(), *g))
                .collect::<BTreeMap<_, _>>(),
            default_partition: None,
        }
    }

    #[test]
    fn channels_belong_to_the_partition_before_their_first_colon() {
        assert_eq!(channel_partition(b"app:news"), Some(&b"app"[..]));
        assert_eq!(channel_partition(b"app:a:b"), Some(&b"app"[..]));
        assert_eq!(channel_partition(b"news"), None);
        assert_eq!(channel_partition(b":x"), None);
        assert_eq!(channel_partition(b"a b:x"), None);
        // A glob character before the colon: the pattern may match any partition's channels.
        assert_eq!(pattern_partition(b"app:*"), Some(&b"app"[..]));
        assert_eq!(pattern_partition(b"ap*:x"), None);
        assert_eq!(pattern_partition(b"a?p:x"), None);
        assert_eq!(pattern_partition(b"[ab]:x"), None);
        assert_eq!(pattern_partition(b"a\\p:x"), None);
        assert_eq!(pattern_partition(b"*"), None);
    }

    #[test]
    fn permissions_follow_the_partition_or_need_admin_on_all() {
        let reader = user(Perms::NONE, &[("app", Perms::READ)]);
        assert!(check_channel(&reader, b"app:x", Perms::READ).is_ok());
        let e = check_channel(&reader, b"app:x", Perms::WRITE).unwrap_err();
        assert_eq!(e.to_string(), "user 'u' has no WRITE permission on 'app'");
        let e = check_channel(&reader, b"other", Perms::READ).unwrap_err();
        assert_eq!(e.to_string(), "user 'u' has no ADMIN permission on '*'");
        assert!(check_pattern(&reader, b"app:*").is_ok());
        assert!(check_pattern(&reader, b"ap*").is_err());
        let admin = user(Perms::ADMIN, &[]);
        assert!(check_pattern(&admin, b"*").is_ok());
        assert!(check_channel(&admin, b"__sentinel__:hello", Perms::WRITE).is_ok());
        let mut subs = Subscriptions::default();
        subs.channels.insert(b"app:x"[..].into());
        assert!(still_allowed(&reader, &subs));
        subs.patterns.insert(b"*"[..].into());
        assert!(!still_allowed(&reader, &subs));
    }

    #[test]
    fn frames_are_pushes_in_resp3_and_arrays_in_resp2() {
        let mut buf = Vec::new();
        confirmation(
            &mut ReplyWriter::new(&mut buf, Protocol::Resp2),
            Kind::Unsubscribe,
            None,
            0,
        );
        assert_eq!(buf, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        buf.clear();
        confirmation(
            &mut ReplyWriter::new(&mut buf, Protocol::Resp3),
            Kind::Unsubscribe,
            None,
            0,
        );
        assert_eq!(buf, b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        buf.clear();
        pmessage_frame(&mut buf, Protocol::Resp3, b"a*", b"ab", b"m");
        assert_eq!(
            buf,
            b">4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$2\r\nab\r\n$1\r\nm\r\n"
        );
    }

    #[test]
    fn numsub_sums_and_numpat_counts_each_pattern_once() {
        let mut buf = Vec::new();
        let q = Query::NumSub(vec![b"a".to_vec(), b"b".to_vec()]);
        merge(
            &q,
            vec![Answer::Counts(vec![1, 0]), Answer::Counts(vec![2, 0])],
            |_| true,
            &mut ReplyWriter::new(&mut buf, Protocol::Resp2),
        );
        assert_eq!(buf, b"*4\r\n$1\r\na\r\n:3\r\n$1\r\nb\r\n:0\r\n");
        buf.clear();
        merge(
            &Query::NumPat,
            vec![
                Answer::Names(vec![b"x*"[..].into()]),
                Answer::Names(vec![b"x*"[..].into(), b"y*"[..].into()]),
            ],
            |_| false,
            &mut ReplyWriter::new(&mut buf, Protocol::Resp2),
        );
        assert_eq!(buf, b":2\r\n");
        // What the caller may not subscribe to is neither listed nor counted.
        let reader = user(Perms::NONE, &[("app", Perms::READ)]);
        let visible = |c: &[u8]| super::visible(Some(&reader), c);
        buf.clear();
        merge(
            &Query::Channels(None),
            vec![Answer::Names(vec![
                b"app:a"[..].into(),
                b"secret:b"[..].into(),
            ])],
            visible,
            &mut ReplyWriter::new(&mut buf, Protocol::Resp2),
        );
        assert_eq!(buf, b"*1\r\n$5\r\napp:a\r\n");
        buf.clear();
        merge(
            &Query::NumSub(vec![b"secret:b".to_vec()]),
            vec![Answer::Counts(vec![4])],
            visible,
            &mut ReplyWriter::new(&mut buf, Protocol::Resp2),
        );
        assert_eq!(buf, b"*2\r\n$8\r\nsecret:b\r\n:0\r\n");
    }
}

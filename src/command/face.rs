//! The Redis face: `SELECT <partition>` puts a connection in Redis grammar on that partition
//! (PROTOCOL.md, "The Redis face: SELECT a partition"); `RESET` takes it back to GoKV's.
//!
//! In Redis grammar a data or keyspace command names no partition (`SET k v`, `DBSIZE`): it
//! is the GoKV-form request with the selected partition inserted as argument 1. The shard
//! makes that request ([`RedisForm::rewrite`]) before anything looks at it: in place, the
//! partition's span inserted among the request's own (`shard::input`), or built in one
//! reusable buffer; so authorization, routing, local execution, forwarding and the durable
//! path see a GoKV-form request and stay exactly as they are; a connection in GoKV grammar never comes
//! here (one test of [`Session::selected`] per request), so it pays nothing for the face.
//! Which commands take the partition is read from the command table: every one-word row
//! routed to a partition at argument 1. `FLUSHDB` becomes `FLUSH PARTITION <selected>`.
//! Everything else (partition, user and server commands) is passed through as it came.
//!
//! The selection is the partition's name, not its id: a partition dropped while selected
//! answers the next data command with the error any command on a missing partition gets
//! (and one created again under that name is the selected one again).
//!
//! A user's default partition (`CREATE USER ... DEFAULT <partition>`) is selected by each of
//! its logins (`shard::session`), so an application that never sends SELECT (every Redis
//! client on db 0) starts in Redis grammar. It is a selection like SELECT's and nothing more:
//! it grants nothing (each request is authorized as any, with the no-leak rule), may name a
//! partition that does not exist, and changing it affects later logins only.
//!
//! The commands here run on the connection's shard, on its [`Session`]:
//! - `SELECT <partition>`: any grant on it ([`Permission::Any`](super::Permission::Any),
//!   checked by `access` before this runs, with its no-leak rule). Numeric names are
//!   ordinary names: `SELECT 3` selects partition `3`, which is what `redis-benchmark
//!   --dbnum 3` and redis-py's `db=3` send.
//! - `RESET`: what Redis 7's RESET does that applies to GoKV: back to GoKV grammar, RESP2,
//!   no client name, and logged out. Redis deauthenticates on RESET ("mimicking the effect
//!   of disconnecting and reconnecting"); a fresh GoKV connection is not logged in (default
//!   deny), so after RESET neither is this one: a connection pool that hands a RESET
//!   connection to its next borrower never hands it the previous borrower's rights. The next
//!   login lands on its user's default partition again, if it has one.
//! - `FLUSHDB` in GoKV grammar, `SWAPDB`, `MOVE`: refused with an error that says why (and
//!   what to use instead). `FLUSHALL` (every partition the caller holds ADMIN on) runs in
//!   `shard::flushall`, since its partitions live on several shards.

use std::borrow::Cow;

use crate::protocol::{Args, Protocol, ReplyWriter, Span};

use super::server::{ServerView, Session};
use super::{lookup_one_word, CommandError, CommandSpec, Keys, Route};

/// `SELECT <partition>`: Redis grammar on it from the next request on. The caller holds
/// something on it (checked by `access`); it must exist.
pub fn select(
    args: &Args,
    session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let name = args.get(1);
    if view.catalog.get(name).is_none() {
        return Err(CommandError::NoPartition(super::error::printable(name)));
    }
    session.selected = Some(name.into());
    w.ok();
    Ok(())
}

/// `RESET`: back to how a new connection starts (see the module docs); answers `+RESET`.
pub fn reset(
    _args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    session.selected = None;
    session.protocol = Protocol::Resp2;
    session.name = None;
    session.user = None;
    w.protocol = Protocol::Resp2;
    w.simple("RESET");
    Ok(())
}

/// `FLUSHDB` in GoKV grammar: there is no selected partition to empty. (In Redis grammar
/// the shard runs `FLUSH PARTITION <selected>` instead: [`RedisForm::rewrite`].)
pub fn flushdb(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "FLUSHDB needs a selected partition: SELECT <partition> first, or use FLUSH \
         PARTITION <partition>"
            .into(),
    ))
}

/// `FLUSHALL`: the shard runs it before any handler (`shard::flushall`: a FLUSH PARTITION on
/// every partition the caller holds ADMIN on, on their shards); this one only answers if a
/// request ever gets past that.
pub fn flushall(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "FLUSHALL must go through the shard's FLUSHALL path".into(),
    ))
}

/// `SWAPDB`: refused. Partitions are not numbered slots that could trade places: each has
/// its own schema, persist mode, grants and shard.
pub fn swapdb(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "SWAPDB is not supported: GoKV partitions cannot swap (each has its own schema, \
         persistence, grants and shard)"
            .into(),
    ))
}

/// `MOVE`: refused. A key moving between partitions would be a write on two shards at once,
/// which GoKV never makes.
pub fn move_key(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "MOVE is not supported: a key cannot move between partitions (GET it, SET it on the \
         other partition, DEL it)"
            .into(),
    ))
}

/// What [`RedisForm::rewrite`] made of a request.
#[derive(Debug)]
pub enum Rewrite {
    /// Run the request as it came (a partition, user or server command).
    AsIs,
    /// Run the request with the selected partition inserted as argument 1, which the caller
    /// does in place (it asked for this with `in_place`): a request of this row, its arity
    /// checked.
    Insert(&'static CommandSpec),
    /// Run [`RedisForm::args`] instead: a request of this row, its arity checked.
    Rewritten(&'static CommandSpec),
    /// Answer this error (a FLUSHDB with options Redis refuses too).
    Refused(CommandError),
}

impl PartialEq for Rewrite {
    /// Rows are compared by identity: each command has exactly one.
    fn eq(&self, other: &Rewrite) -> bool {
        match (self, other) {
            (Rewrite::AsIs, Rewrite::AsIs) => true,
            (Rewrite::Insert(a), Rewrite::Insert(b)) => std::ptr::eq(*a, *b),
            (Rewrite::Rewritten(a), Rewrite::Rewritten(b)) => std::ptr::eq(*a, *b),
            (Rewrite::Refused(a), Rewrite::Refused(b)) => a == b,
            _ => false,
        }
    }
}

/// Redis's arity error for a request of `spec` (out of line: the hot path never fails it).
#[cold]
#[inline(never)]
fn wrong_arity(spec: &'static CommandSpec) -> Rewrite {
    Rewrite::Refused(CommandError::WrongArity {
        command: spec.name,
        usage: Cow::Borrowed(""),
    })
}

/// The GoKV-form request built from a Redis-grammar one: reused from request to request
/// (one per shard), so that once warm it allocates nothing.
///
/// `buf` is the selected partition's name followed by one copy of the request's bytes, from
/// its first word to its last (the framing between them comes along: one copy, not one per
/// word); `spans` are the request's own, shifted, with the name's inserted as argument 1.
#[derive(Debug, Default)]
pub struct RedisForm {
    buf: Vec<u8>,
    spans: Vec<Span>,
}

impl RedisForm {
    /// Builds the GoKV form of `args`, a request in Redis grammar on partition `selected`.
    ///
    /// With `in_place` (the caller has laid `selected` in the request's buffer and has room
    /// for its span after the first: `shard::input`), a data command is answered
    /// [`Rewrite::Insert`] and nothing is built: no byte is copied, and Redis grammar costs
    /// what GoKV grammar does but for a few instructions (get-face 1,812 -> 1,444 user-space
    /// instructions per request, 81 -> 24 more than the same GET in GoKV grammar as the
    /// same user, `scripts/count-instructions.sh get-face` and `get-user`). The row found here
    /// goes on with the request, so nothing looks it up twice.
    #[inline]
    pub fn rewrite(&mut self, args: &Args, selected: &[u8], in_place: bool) -> Rewrite {
        if args.is_empty() {
            return Rewrite::AsIs;
        }
        // WATCH runs on the shard's transaction path, but names its partition first as a data
        // command does: `WATCH k` watches `k` of the selected partition.
        let Some(spec) = lookup_one_word(args.get(0)).filter(|spec| {
            (spec.route() == Route::Partition || spec.id == super::CommandId::Watch)
                && spec.partition_arg == Some(1)
        }) else {
            return self.other(args, selected);
        };
        // Arity is checked here, on the Redis form, so that the error is Redis's text alone:
        // GoKV's would append the GoKV form of the command, with its partition. MSET and
        // MSETNX take pairs (their handlers' check, made here for the same reason).
        let argc = args.len() + 1;
        let pairs_ok = spec.keys != Keys::PAIRS || argc.is_multiple_of(2);
        if !spec.arity_ok(argc) || !pairs_ok {
            return wrong_arity(spec);
        }
        if in_place {
            return Rewrite::Insert(spec);
        }
        self.buf.clear();
        self.spans.clear();
        self.insert(args, selected);
        Rewrite::Rewritten(spec)
    }

    /// [`RedisForm::rewrite`] of a request that is no data command: FLUSHDB, or as it came.
    #[inline(never)]
    fn other(&mut self, args: &Args, selected: &[u8]) -> Rewrite {
        self.buf.clear();
        self.spans.clear();
        let name = args.get(0);
        if name.eq_ignore_ascii_case(b"FLUSHDB") {
            // FLUSHDB [ASYNC|SYNC]: GoKV empties a partition at once either way.
            let fine = match args.len() {
                1 => true,
                2 => {
                    let mode = args.get(1);
                    mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC")
                }
                _ => false,
            };
            if !fine {
                return Rewrite::Refused(CommandError::Syntax(String::new()));
            }
            self.push(b"FLUSH");
            self.push(b"PARTITION");
            self.push(selected);
            return match super::lookup(&self.args()) {
                Ok(spec) => Rewrite::Rewritten(spec),
                Err(e) => Rewrite::Refused(e),
            };
        }
        Rewrite::AsIs
    }

    /// `args` with `selected` inserted as argument 1, in one copy (see [`RedisForm`]).
    fn insert(&mut self, args: &Args, selected: &[u8]) {
        let spans = args.spans();
        let (from, to) = (spans[0].start, spans[spans.len() - 1].end);
        self.buf.extend_from_slice(selected);
        self.buf
            .extend_from_slice(&args.buf()[from as usize..to as usize]);
        // A request's words fit `u32` offsets in the read buffer already (the parser's
        // limits); the partition name before them (at most 64 bytes) cannot overflow it.
        let name = selected.len() as u32;
        let moved = |s: &Span| Span {
            start: s.start - from + name,
            end: s.end - from + name,
        };
        self.spans.push(moved(&spans[0]));
        self.spans.push(Span {
            start: 0,
            end: name,
        });
        self.spans.extend(spans[1..].iter().map(moved));
    }

    /// The request [`RedisForm::rewrite`] built last.
    pub fn args(&self) -> Args<'_> {
        Args::new(&self.buf, &self.spans)
    }

    fn push(&mut self, word: &[u8]) {
        // A request's words fit `u32` offsets in the read buffer already (the parser's
        // limits); one more word, the partition name (at most 64 bytes), cannot overflow it.
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(word);
        self.spans.push(Span {
            start,
            end: self.buf.len() as u32,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(words: &[&str]) -> (Vec<u8>, Vec<Span>) {
        let mut form = RedisForm::default();
        for w in words {
            form.push(w.as_bytes());
        }
        (form.buf, form.spans)
    }

    /// Rewrites `words` on partition `p`, both ways: built, and answered `Insert` (what the
    /// shard then does in place is the built request).
    fn rewrite(words: &[&str]) -> (Rewrite, Vec<String>) {
        let (buf, spans) = args_of(words);
        let args = Args::new(&buf, &spans);
        let mut form = RedisForm::default();
        let outcome = form.rewrite(&args, b"p", false);
        let out: Vec<String> = form
            .args()
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let in_place = RedisForm::default().rewrite(&args, b"p", true);
        match &outcome {
            Rewrite::Rewritten(spec) if !words[0].eq_ignore_ascii_case("flushdb") => {
                assert_eq!(in_place, Rewrite::Insert(spec), "{words:?}");
                let mut inserted: Vec<String> = words.iter().map(|w| w.to_string()).collect();
                inserted.insert(1, "p".into());
                assert_eq!(inserted, out, "{words:?}");
            }
            _ => assert_eq!(in_place, outcome, "{words:?}"),
        }
        (outcome, out)
    }

    #[test]
    fn data_commands_get_the_selected_partition_as_argument_one() {
        assert_eq!(
            rewrite(&["GET", "k"]),
            (
                Rewrite::Rewritten(lookup_one_word(b"GET").unwrap()),
                vec!["GET".into(), "p".into(), "k".into()]
            )
        );
        assert_eq!(rewrite(&["dbsize"]).1, ["dbsize", "p"]);
        assert_eq!(rewrite(&["WATCH", "a", "b"]).1, ["WATCH", "p", "a", "b"]);
        assert_eq!(rewrite(&["UNWATCH"]).0, Rewrite::AsIs);
        assert_eq!(
            rewrite(&["MSET", "a", "1", "b", "2"]).1,
            ["MSET", "p", "a", "1", "b", "2"]
        );
        // Arity is judged on the Redis form, and answered as Redis words it.
        for short in [
            &["SET"][..],
            &["GET", "a", "b"],
            &["MSET", "a", "1", "b"],
            &["DBSIZE", "x"],
        ] {
            let (outcome, _) = rewrite(short);
            let Rewrite::Refused(e) = outcome else {
                panic!("{short:?}: {outcome:?}");
            };
            let name = short[0].to_ascii_lowercase();
            assert_eq!(
                e.to_string(),
                format!("wrong number of arguments for '{name}' command")
            );
        }
        assert_eq!(rewrite(&["FLUSHDB"]).1, ["FLUSH", "PARTITION", "p"]);
        assert_eq!(
            rewrite(&["flushdb", "async"]).1,
            ["FLUSH", "PARTITION", "p"]
        );
        assert!(matches!(rewrite(&["FLUSHDB", "x"]).0, Rewrite::Refused(_)));
    }

    #[test]
    fn other_commands_pass_as_they_came() {
        for words in [
            &["PING"][..],
            &["SELECT", "q"],
            &["CREATE", "PARTITION", "q", "INT", "MEMORY"],
            &["FLUSH", "PARTITION", "q"],
            &["DESCRIBE", "PARTITION", "q"],
            &["INFO"],
            &["NOSUCHCOMMAND", "x"],
            &["AUTH", "u", "pw"],
        ] {
            assert_eq!(rewrite(words).0, Rewrite::AsIs, "{words:?}");
        }
    }
}

//! Transactions: `MULTI`, `EXEC`, `DISCARD`, `WATCH <partition> <key> [key ...]`, `UNWATCH`,
//! as Redis 7 answers them (PROTOCOL.md, "Failover, Pub/Sub and transactions").
//!
//! This file holds what a connection keeps ([`Transaction`], the queue between MULTI and
//! EXEC, and [`Watching`]) and the queue-time rules ([`Transaction::queue`]); the shard runs
//! the commands (`shard::transaction`, whose module docs tell how EXEC stays atomic, also
//! when its partition lives on another shard, and how WATCH is checked).
//!
//! # Queue-time rules
//! Between MULTI and EXEC every request is checked as it would be alone (name, arity,
//! permission, a write on a replica), and then:
//! - MULTI answers `-ERR MULTI calls can not be nested`, WATCH `-ERR WATCH inside MULTI is
//!   not allowed`; neither is queued nor spoils the transaction (as Redis). EXEC, DISCARD,
//!   QUIT and RESET run at once.
//! - The data commands of one transaction name one partition, the one WATCH named if the
//!   connection watches keys: a second is `-ERR a transaction may touch only one partition`.
//!   FLUSHALL (every partition) is refused the same way.
//! - Commands flagged `no_multi` (MONITOR, SELECT, logins, a replica's handshake) and
//!   catalog and user changes (which go through the coordinator, behind a barrier) are
//!   refused: `-ERR Command not allowed inside a transaction`, Redis's text.
//! - The queue is bounded: its arguments plus [`COMMAND_OVERHEAD`] bytes a command may take at
//!   most the `client-output-limit` (64 MiB by default, never more than [`MAX_QUEUE_BYTES`]):
//!   past it the command is refused with `-ERR transaction too large ...`.
//!
//! Any refusal at queue time makes EXEC answer `-EXECABORT Transaction discarded because of
//! previous errors.` and run nothing. Everything else answers `+QUEUED`. An error a queued
//! command meets when EXEC runs it (`WRONGTYPE`, `NOPERM` after a REVOKE, `READONLY` on a
//! node that became a replica) is that command's element of EXEC's reply, and the others
//! run, as in Redis.

use std::ops::Range;

use crate::protocol::{Args, ReplyWriter, Span};

use super::server::{ServerView, Session};
use super::{flag, CommandError, CommandId, CommandSpec, Handler, Route};

/// Bytes a queued command counts besides its arguments (its row, its spans).
pub const COMMAND_OVERHEAD: usize = 32;

/// The most a queue may hold whatever the output limit says: a transaction travels to
/// another shard as one request, whose offsets are `u32`s.
pub const MAX_QUEUE_BYTES: usize = 1 << 30;

/// The commands queued since MULTI, in GoKV form (a Redis-grammar request is rewritten before
/// it is queued), back to back in one buffer.
#[derive(Debug, Default)]
pub struct Transaction {
    buf: Vec<u8>,
    spans: Vec<Span>,
    commands: Vec<(&'static CommandSpec, Range<usize>)>,
    /// Where each command's bytes start in `buf` (its spans count from there).
    starts: Vec<usize>,
    /// The partition the data commands name (the first one's).
    partition: Option<Box<[u8]>>,
    /// A command failed to queue: EXEC answers EXECABORT.
    pub failed: bool,
    /// Bytes counted against the bound.
    bytes: usize,
}

/// The partition whose keys the connection watches (one at a time: see the module docs).
#[derive(Debug, Clone)]
pub struct Watching {
    pub name: Box<[u8]>,
    pub id: u64,
}

impl Transaction {
    /// Queues a request after its name, arity and permission were checked; the error to
    /// answer when a rule above refuses it (the caller marks the transaction failed).
    pub fn queue(
        &mut self,
        spec: &'static CommandSpec,
        args: &Args,
        watching: Option<&Watching>,
        max_bytes: usize,
    ) -> Result<(), CommandError> {
        if spec.has(flag::NO_MULTI) || matches!(spec.handler, Handler::Coordinator(_)) {
            return Err(not_allowed());
        }
        if spec.id == CommandId::FlushAll {
            return Err(one_partition());
        }
        if spec.route() == Route::Partition {
            let name = spec.partition_name(args);
            let fixed = self.partition.as_deref().or(watching.map(|w| &*w.name));
            match fixed {
                Some(fixed) if fixed != name => return Err(one_partition()),
                Some(_) => {}
                None => self.partition = Some(name.into()),
            }
        }
        let size = args.iter().map(<[u8]>::len).sum::<usize>() + COMMAND_OVERHEAD;
        let max = max_bytes.min(MAX_QUEUE_BYTES);
        if self.bytes + size > max {
            return Err(CommandError::NotAvailable(format!(
                "transaction too large: the queued commands may take at most {max} bytes \
                 (client-output-limit)"
            )));
        }
        self.bytes += size;
        let first = self.spans.len();
        let base = self.buf.len();
        for arg in args.iter() {
            // Bounded by MAX_QUEUE_BYTES, below u32::MAX.
            let start = (self.buf.len() - base) as u32;
            self.buf.extend_from_slice(arg);
            self.spans.push(Span {
                start,
                end: (self.buf.len() - base) as u32,
            });
        }
        self.commands.push((spec, first..self.spans.len()));
        self.starts.push(base);
        Ok(())
    }

    /// How many commands are queued (CLIENT LIST's `multi`).
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The partition the data commands name, if any does.
    pub fn partition(&self) -> Option<&[u8]> {
        self.partition.as_deref()
    }

    /// Whether a queued command runs on the connection's shard (a server command).
    pub fn has_server_commands(&self) -> bool {
        self.commands
            .iter()
            .any(|(spec, _)| spec.route() != Route::Partition)
    }

    /// The queued commands, in order.
    pub fn commands(&self) -> impl Iterator<Item = (&'static CommandSpec, Args<'_>)> + '_ {
        self.commands
            .iter()
            .zip(&self.starts)
            .map(|((spec, spans), &base)| {
                (
                    *spec,
                    Args::new(&self.buf[base..], &self.spans[spans.clone()]),
                )
            })
    }
}

/// Redis's refusal of a `no-multi` command inside MULTI.
pub fn not_allowed() -> CommandError {
    CommandError::NotAvailable("Command not allowed inside a transaction".into())
}

/// A transaction's data commands naming a second partition (PROTOCOL.md's text).
pub fn one_partition() -> CommandError {
    CommandError::NotAvailable("a transaction may touch only one partition".into())
}

pub fn nested() -> CommandError {
    CommandError::NotAvailable("MULTI calls can not be nested".into())
}

pub fn watch_inside_multi() -> CommandError {
    CommandError::NotAvailable("WATCH inside MULTI is not allowed".into())
}

pub fn without_multi(command: &str) -> CommandError {
    CommandError::NotAvailable(format!("{command} without MULTI"))
}

/// EXEC after a command failed to queue (its code is `EXECABORT`).
pub const EXECABORT: &str = "Transaction discarded because of previous errors.";

/// The handler of MULTI, EXEC, DISCARD, WATCH and UNWATCH: the shard runs them before any
/// handler (`shard::transaction`), since they need its routes and the connection's reply
/// queue; this one only answers if a request ever gets past that.
pub fn shard_path(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "transaction commands must go through the shard's path".into(),
    ))
}

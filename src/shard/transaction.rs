//! The shard's side of transactions: MULTI queues, EXEC runs the queue in one go on the
//! partition's shard, WATCH is checked there (the queue-time rules: [`crate::command::multi`]).
//!
//! # Atomicity
//! A partition is touched only by its shard's thread, so commands run back to back within
//! one call on that thread have nothing interleaved:
//! - **Partition here** (or no partition: server commands only): EXEC checks the watched keys,
//!   then runs every queued command through [`Core::dispatch`], one after the other in this
//!   call, each answering one element of EXEC's array (the array's header is pushed first,
//!   each element takes its reply slot after it). A durable write's element waits for the
//!   group commit as any write's reply does, so EXEC's reply leaves only once all its writes
//!   are on disk as the partition's persist mode promises; a failed commit answers each of
//!   them `-IOERR`.
//! - **Partition on another shard**: the whole queue travels there as **one** forwarded
//!   request (`EXEC <partition> <client> <flags> {<argc> <word>...}...`, in the same outbox as
//!   the connection's other requests, so it runs after them and before later ones), and
//!   the owner checks the watched keys and runs the data commands in one go
//!   ([`run_forwarded`]), building EXEC's whole reply, held for the commit if it logged
//!   anything (a failed commit answers EXEC `-IOERR`). A queue that also holds server
//!   commands (CLIENT KILL, CONFIG REWRITE, ...) asks for the data commands' replies as parts
//!   instead; the connection waits behind a barrier until they are back, then the server
//!   commands run here, in their places, and nothing runs at all after a WATCH conflict.
//! - Replication streams a pass's records per partition in one frame
//!   (`shard::replicate`): a transaction runs within one pass, so its records reach a
//!   replica together, in order, with nothing between them.
//!
//! # WATCH
//! WATCH runs on the partition's shard (forwarded there like a read when it is another
//! one's): each key gets a watch in the partition's table of watched keys
//! ([`crate::store::watch`]: a version per key, bumped by every store into it, kept only
//! while some connection watches the key), and [`Watches`] keeps, per (partition, client),
//! each key's version and whether it was live. EXEC fails (nil) when a version moved or a key
//! live at WATCH is absent or expired now; [`crate::store::watch`] says why that is Redis's
//! rule, deletions and expiry included. A connection watches keys of one partition at a time
//! (it must be the transaction's). With nothing watched, a partition's stores pay one test
//! of an `Option`; a request outside a transaction pays one test of `Session::multi`.
//!
//! The record of a connection's watches lives on the owner, keyed by the client id (so it
//! survives the connection moving to another shard); EXEC, DISCARD, UNWATCH, RESET and
//! closing the connection drop it (for another shard's partition with a forwarded UNWATCH
//! whose reply goes nowhere, [`NO_REPLY`]). A missing record at EXEC (the partition was
//! dropped, or a race with a connection's move dropped it) fails EXEC: never a false success.
//! A connection may watch [`MAX_WATCH_BYTES`] of keys.

use hashbrown::HashMap;

use crate::acl::Acl;
use crate::catalog::Catalog;
use crate::command::access::authorize;
use crate::command::error::printable;
use crate::command::multi::{self, Transaction, Watching};
use crate::command::server::Session;
use crate::command::{check_key, lookup, CommandError, CommandId, CommandSpec, Handler, Route};
use crate::metrics::ShardMetrics;
use crate::protocol::{Args, Protocol, ReplyWriter, Span};

use super::connection::{self, Connection, ReplyQueue};
use super::dispatch::{execute_logged, execute_memory};
use super::durability::{not_applied, Durability, GroupCommit, LocalPartition};
use super::mailbox::{self, ConnRef, ForwardedRequest};
use super::routes::{Routes, Target};
use super::{Core, Shared};

/// Key bytes (plus [`WATCH_KEY_OVERHEAD`] a key) one connection may watch: thousands of
/// keys, while a client watching from every connection it may open stays within the memory
/// its output limits allow it anyway.
pub const MAX_WATCH_BYTES: usize = 1 << 20;

/// What a watched key costs besides its bytes (its version, its entry in two tables).
const WATCH_KEY_OVERHEAD: usize = 48;

/// The sequence number of a forwarded request whose reply is dropped (UNWATCH on another
/// shard): no reply slot has it, so filling it fails quietly.
pub const NO_REPLY: u64 = u64::MAX;

/// Leads a forwarded EXEC's reply in parts (see [`run_forwarded`]); never the first byte of
/// a RESP reply.
const PARTS: u8 = 0;

/// One connection's watched keys of one partition, on the partition's shard.
#[derive(Default)]
struct ClientWatch {
    /// Key, its version when watched, and whether it was live then.
    keys: Vec<(Box<[u8]>, u64, bool)>,
    bytes: usize,
}

/// Every connection's watches of this shard's partitions, by (partition id, client id).
#[derive(Default)]
pub(super) struct Watches(HashMap<(u64, u64), ClientWatch>);

impl Watches {
    /// WATCH of `keys` of `local` by `client`.
    fn watch<'k>(
        &mut self,
        local: &mut LocalPartition,
        client: u64,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
    ) -> Result<(), CommandError> {
        let record = self.0.entry((local.id, client)).or_default();
        let adds: usize = keys.clone().map(|k| k.len() + WATCH_KEY_OVERHEAD).sum();
        if record.bytes + adds > MAX_WATCH_BYTES {
            return Err(CommandError::NotAvailable(format!(
                "too many watched keys: a connection may watch at most {MAX_WATCH_BYTES} bytes \
                 of keys (UNWATCH first)"
            )));
        }
        record.bytes += adds;
        for key in keys {
            let version = local.data.watch(key);
            let live = local.data.contains(key);
            record.keys.push((key.into(), version, live));
        }
        Ok(())
    }

    /// Drops `client`'s watches of partition `id` (named `name` when it was watched).
    fn unwatch(&mut self, routes: &mut Routes, name: &[u8], id: u64, client: u64) {
        let Some(record) = self.0.remove(&(id, client)) else {
            return;
        };
        if let Some(Target::Local(local)) = routes.get_mut(name) {
            if local.id == id {
                for (key, ..) in &record.keys {
                    local.data.unwatch(key);
                }
            }
        }
    }

    /// EXEC's check: true when no key `client` watched on `local` changed. Drops the watches.
    fn intact(&mut self, local: &mut LocalPartition, client: u64) -> bool {
        let Some(record) = self.0.remove(&(local.id, client)) else {
            return false;
        };
        let data = &mut local.data;
        let intact = record.keys.iter().all(|(key, version, live)| {
            data.watch_version(key) == Some(*version) && (!*live || data.contains(key))
        });
        for (key, ..) in &record.keys {
            data.unwatch(key);
        }
        intact
    }
}

/// Marks the transaction failed when a request in it is refused before it could queue
/// (unknown, wrong arity, no permission, a write on a replica): EXEC answers EXECABORT.
#[inline]
pub(super) fn spoil(session: &mut Session) {
    if let Some(tx) = &mut session.multi {
        tx.failed = true;
    }
}

/// Whether a request runs at once even between MULTI and EXEC (as in Redis).
#[inline]
pub(super) fn runs_in_multi(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::Exec
            | CommandId::Discard
            | CommandId::Multi
            | CommandId::Watch
            | CommandId::Quit
            | CommandId::Reset
    )
}

/// Words of a forwarded request, laid out as a parsed request's buffer and spans.
#[derive(Default)]
struct Words {
    buf: Vec<u8>,
    spans: Vec<Span>,
}

impl Words {
    fn push(&mut self, word: &[u8]) {
        // A transaction is bounded by `multi::MAX_QUEUE_BYTES`, far below u32::MAX.
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(word);
        self.spans.push(Span {
            start,
            end: self.buf.len() as u32,
        });
    }

    fn args(&self) -> Args<'_> {
        Args::new(&self.buf, &self.spans)
    }
}

impl Core {
    /// Queues a request between MULTI and EXEC (its name, arity and permission checked).
    #[cold]
    #[inline(never)]
    pub(super) fn queue(
        &mut self,
        spec: &'static CommandSpec,
        args: &Args,
        session: &mut Session,
        replies: &mut ReplyQueue,
    ) {
        let protocol = session.protocol;
        let watching = session.watching.as_deref();
        let Some(tx) = session.multi.as_mut() else {
            return;
        };
        match tx.queue(spec, args, watching, self.output_limit) {
            Ok(()) => replies.push_ready(protocol, |w| w.simple("QUEUED")),
            Err(e) => {
                tx.failed = true;
                replies.push_ready(protocol, |w| e.write_to(w));
            }
        }
    }

    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH. Returns true when a reply was not built because
    /// it would pass the client output limit (as `dispatch`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn transaction_command(
        &mut self,
        affinity: &mut connection::Affinity,
        conn_ref: ConnRef,
        spec: &'static CommandSpec,
        args: &Args,
        session: &mut Session,
        replies: &mut ReplyQueue,
        barrier: &mut bool,
    ) -> bool {
        let protocol = session.protocol;
        let stats = &self.shared.metrics.shards[self.id].command_stats[spec.id as usize];
        stats.record(0, crate::metrics::Outcome::Ok);
        let result = match spec.id {
            CommandId::Multi if session.multi.is_some() => Err(multi::nested()),
            CommandId::Multi => {
                session.multi = Some(Box::default());
                Ok(())
            }
            CommandId::Discard => match session.multi.take() {
                None => Err(multi::without_multi("DISCARD")),
                Some(_) => {
                    self.unwatch_all(conn_ref, session);
                    Ok(())
                }
            },
            CommandId::Unwatch => {
                self.unwatch_all(conn_ref, session);
                Ok(())
            }
            CommandId::Watch if session.multi.is_some() => Err(multi::watch_inside_multi()),
            CommandId::Watch => return self.watch(affinity, conn_ref, args, session, replies),
            CommandId::Exec => return self.exec(affinity, conn_ref, session, replies, barrier),
            _ => Ok(()),
        };
        replies.push_ready(protocol, |w| match result {
            Ok(()) => w.ok(),
            Err(e) => e.write_to(w),
        });
        false
    }

    /// `WATCH <partition> <key> [key ...]`: here, or forwarded to the partition's shard.
    fn watch(
        &mut self,
        affinity: &mut connection::Affinity,
        conn_ref: ConnRef,
        args: &Args,
        session: &mut Session,
        replies: &mut ReplyQueue,
    ) -> bool {
        let protocol = session.protocol;
        let name = args.get(1);
        let max_key_len = self.shared.config.live.max_key_len();
        let checked = (2..args.len()).try_for_each(|i| check_key(args.get(i), max_key_len));
        let refused = match (&session.watching, checked) {
            (_, Err(e)) => Some(e),
            (Some(w), _) if &*w.name != name => Some(multi::one_partition()),
            _ => None,
        };
        if let Some(e) = refused {
            replies.push_ready(protocol, |w| e.write_to(w));
            return false;
        }
        let id = match self.routes.get(name) {
            Some(Target::Local(local)) => local.id,
            Some(Target::Remote { id, .. }) => *id,
            None => {
                let e = CommandError::NoPartition(printable(name));
                replies.push_ready(protocol, |w| e.write_to(w));
                return false;
            }
        };
        // Watched under a namesake since dropped: that record goes.
        if session.watching.as_ref().is_some_and(|w| w.id != id) {
            self.unwatch_all(conn_ref, session);
        }
        session.watching = Some(Box::new(Watching {
            name: name.into(),
            id,
        }));
        match self.routes.get_mut(name) {
            Some(Target::Local(local)) => {
                affinity.local();
                let keys = (2..args.len()).map(|i| args.get(i));
                let result = self.watches.watch(local, session.id, keys);
                replies.push_ready(protocol, |w| match result {
                    Ok(()) => w.ok(),
                    Err(e) => e.write_to(w),
                });
            }
            Some(&mut Target::Remote { shard, id }) => {
                affinity.remote(shard);
                let mut words = Words::default();
                words.push(b"WATCH");
                words.push(name);
                words.push(itoa::Buffer::new().format(session.id).as_bytes());
                for i in 2..args.len() {
                    words.push(args.get(i));
                }
                let seq = replies.push_waiting();
                self.forward(
                    shard,
                    id,
                    conn_ref,
                    seq,
                    session,
                    replies,
                    CommandId::Watch,
                    &words,
                );
            }
            None => {}
        }
        false
    }

    /// Copies a request built here into `shard`'s outbox, approved as of now.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        shard: usize,
        partition: u64,
        conn_ref: ConnRef,
        seq: u64,
        session: &Session,
        replies: &ReplyQueue,
        command: CommandId,
        words: &Words,
    ) {
        let approval = mailbox::Approval {
            partition,
            acl_version: self.acl.version,
            user: session.user.as_ref().map_or(0, |u| u.id),
            max_reply: self.output_limit.saturating_sub(replies.pending()) as u64,
        };
        let args = words.args();
        self.outboxes[shard].push(conn_ref, seq, session.protocol, command, &args, approval);
        ShardMetrics::add(&self.shared.metrics.shards[self.id].forwarded_out, 1);
    }

    /// Drops the connection's watches (UNWATCH, DISCARD, RESET, EXEC, closing), here or with
    /// an UNWATCH to the partition's shard.
    pub(super) fn unwatch_all(&mut self, conn_ref: ConnRef, session: &mut Session) {
        let Some(watching) = session.watching.take() else {
            return;
        };
        match self.routes.get(&watching.name) {
            Some(&Target::Remote { shard, .. }) => {
                let mut words = Words::default();
                words.push(b"UNWATCH");
                words.push(&watching.name);
                words.push(itoa::Buffer::new().format(session.id).as_bytes());
                let approval = mailbox::Approval {
                    partition: watching.id,
                    acl_version: self.acl.version,
                    user: session.user.as_ref().map_or(0, |u| u.id),
                    max_reply: 0,
                };
                let protocol = session.protocol;
                let args = words.args();
                self.outboxes[shard].push(
                    conn_ref,
                    NO_REPLY,
                    protocol,
                    CommandId::Unwatch,
                    &args,
                    approval,
                );
            }
            _ => self
                .watches
                .unwatch(&mut self.routes, &watching.name, watching.id, session.id),
        }
    }

    /// EXEC: see the module docs.
    fn exec(
        &mut self,
        affinity: &mut connection::Affinity,
        conn_ref: ConnRef,
        session: &mut Session,
        replies: &mut ReplyQueue,
        barrier: &mut bool,
    ) -> bool {
        let protocol = session.protocol;
        let Some(tx) = session.multi.take() else {
            let e = multi::without_multi("EXEC");
            replies.push_ready(protocol, |w| e.write_to(w));
            return false;
        };
        if tx.failed {
            self.unwatch_all(conn_ref, session);
            replies.push_ready(protocol, |w| {
                crate::metrics::count_error("EXECABORT");
                w.error("EXECABORT", multi::EXECABORT)
            });
            return false;
        }
        let target: Option<Box<[u8]>> = tx
            .partition()
            .map(Into::into)
            .or_else(|| session.watching.as_ref().map(|w| w.name.clone()));
        let Some(name) = target else {
            return self.exec_here(affinity, conn_ref, &tx, session, replies, barrier);
        };
        match self.routes.get_mut(&name) {
            Some(Target::Local(local)) => {
                if let Some(watching) = session.watching.take() {
                    let intact = watching.id == local.id && self.watches.intact(local, session.id);
                    if watching.id != local.id {
                        self.watches
                            .unwatch(&mut self.routes, &name, watching.id, session.id);
                    }
                    if !intact {
                        replies.push_ready(protocol, |w| w.null_array());
                        return false;
                    }
                }
                self.exec_here(affinity, conn_ref, &tx, session, replies, barrier)
            }
            Some(&mut Target::Remote { shard, id }) => {
                affinity.remote(shard);
                let watching = session.watching.take();
                let parts = tx.has_server_commands();
                let mut words = Words::default();
                words.push(b"EXEC");
                words.push(&name);
                words.push(itoa::Buffer::new().format(session.id).as_bytes());
                let flags: &[u8] = match (watching.as_ref().map(|w| w.id == id), parts) {
                    (None, false) => b"-",
                    (None, true) => b"p",
                    (Some(true), false) => b"w",
                    (Some(true), true) => b"wp",
                    // Watched a namesake since dropped: fails, as a change would.
                    (Some(false), _) => b"x",
                };
                words.push(flags);
                let mut count = itoa::Buffer::new();
                for (spec, args) in tx.commands() {
                    if spec.route() == Route::Partition {
                        words.push(count.format(args.len()).as_bytes());
                        for arg in args.iter() {
                            words.push(arg);
                        }
                    }
                }
                let seq = replies.push_waiting();
                self.forward(
                    shard,
                    id,
                    conn_ref,
                    seq,
                    session,
                    replies,
                    CommandId::Exec,
                    &words,
                );
                if let Some(watching) = watching.filter(|w| w.id != id) {
                    session.watching = Some(watching);
                    self.unwatch_all(conn_ref, session);
                }
                if parts {
                    session.exec_pending = Some(Box::new((seq, *tx)));
                    *barrier = true;
                }
                false
            }
            // Dropped: its watches went with it; each data command answers NOPARTITION.
            None => {
                self.unwatch_all(conn_ref, session);
                self.exec_here(affinity, conn_ref, &tx, session, replies, barrier)
            }
        }
    }

    /// Runs a transaction whose partition is here (or that has none) in one go: the array's
    /// header, then each command as it would run alone, an element each.
    fn exec_here(
        &mut self,
        affinity: &mut connection::Affinity,
        conn_ref: ConnRef,
        tx: &Transaction,
        session: &mut Session,
        replies: &mut ReplyQueue,
        barrier: &mut bool,
    ) -> bool {
        let mut header = Vec::new();
        ReplyWriter::new(&mut header, session.protocol).array(tx.len());
        replies.push_bytes(&header);
        let mut refused = false;
        for (spec, args) in tx.commands() {
            refused |= self.dispatch(
                affinity,
                conn_ref,
                &args,
                Some(spec),
                session,
                replies,
                barrier,
            );
        }
        refused
    }

    /// A forwarded EXEC's parts are back (a queue with server commands): answers EXEC with
    /// them and the server commands, each in its place; or with what came back instead (nil
    /// after a WATCH conflict, an error).
    pub(super) fn finish_exec(&mut self, conn: &mut Connection, reply: &[u8]) {
        let Some(pending) = conn.session.exec_pending.take() else {
            return;
        };
        let (seq, tx) = *pending;
        conn.barrier = false;
        conn.needs_service = true;
        let Some(parts) = decode_parts(reply) else {
            conn.replies.fill(seq, reply);
            return;
        };
        let mut header = Vec::new();
        ReplyWriter::new(&mut header, conn.session.protocol).array(tx.len());
        conn.replies.fill(seq, &header);
        let mut parts = parts.into_iter();
        let mut refused = false;
        for (spec, args) in tx.commands() {
            if spec.route() == Route::Partition {
                match parts.next() {
                    Some(part) => conn.replies.push_bytes(part),
                    // (The owner answers every data command; a short answer is a bug.)
                    None => conn.replies.push_ready(conn.session.protocol, |w| {
                        w.error("ERR", "the transaction's partition gave no reply")
                    }),
                }
            } else {
                refused |= self.dispatch(
                    &mut conn.affinity,
                    conn.conn_ref,
                    &args,
                    Some(spec),
                    &mut conn.session,
                    &mut conn.replies,
                    &mut conn.barrier,
                );
            }
        }
        if refused || conn.replies.pending() > self.output_limit {
            conn.over_output_limit = true;
        }
    }
}

/// The elements of a forwarded EXEC's reply in parts: [`PARTS`], then per element its length
/// (8 bytes, little-endian) and bytes. `None`: not parts (nil, an error).
fn decode_parts(reply: &[u8]) -> Option<Vec<&[u8]>> {
    let (&first, mut rest) = reply.split_first()?;
    if first != PARTS {
        return None;
    }
    let mut parts = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if len > tail.len() {
            return None;
        }
        let (part, tail) = tail.split_at(len);
        parts.push(part);
        rest = tail;
    }
    Some(parts)
}

/// What [`run_forwarded`] needs of the owner's [`Core`] (its fields, apart from the reply
/// batch being written).
pub(super) struct Owner<'a> {
    pub routes: &'a mut Routes,
    pub watches: &'a mut Watches,
    pub commit: &'a mut GroupCommit,
    pub acl: &'a Acl,
    pub catalog: &'a Catalog,
    pub shared: &'a Shared,
    pub shard: usize,
    /// The shard the request came from, and where its reply goes in that shard's batch.
    pub from: usize,
    pub reply_index: usize,
}

/// Runs a forwarded WATCH, UNWATCH or EXEC on the partition's shard, its reply into `buf`.
pub(super) fn run_forwarded(
    owner: Owner,
    request: &ForwardedRequest,
    args: &Args,
    buf: &mut Vec<u8>,
) -> Result<(), CommandError> {
    let name = args.get(1);
    let client = std::str::from_utf8(args.get(2))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if request.command == CommandId::Unwatch {
        owner
            .watches
            .unwatch(owner.routes, name, request.partition, client);
        ReplyWriter::new(buf, request.protocol).ok();
        return Ok(());
    }
    let local = match owner.routes.get_mut(name) {
        Some(Target::Local(local)) if local.id == request.partition => local,
        _ => return Err(CommandError::NoPartition(printable(name))),
    };
    if request.command == CommandId::Watch {
        // A REVOKE answered since it left stops it, as any forwarded read.
        if request.acl_version < owner.acl.version {
            let user = owner.acl.user_by_id(request.user);
            authorize(
                CommandId::Watch.spec(),
                args,
                user.map(|u| &**u),
                owner.catalog,
            )?;
        }
        let keys = (3..args.len()).map(|i| args.get(i));
        owner.watches.watch(local, client, keys)?;
        ReplyWriter::new(buf, request.protocol).ok();
        return Ok(());
    }
    let flags = args.get(3);
    let parts = flags.contains(&b'p');
    if flags.contains(&b'x') || (flags.contains(&b'w') && !owner.watches.intact(local, client)) {
        ReplyWriter::new(buf, request.protocol).null_array();
        return Ok(());
    }
    // The queued data commands: `<argc> <word>...` each, from argument 4 on.
    let mut commands = Vec::new();
    let mut at = 4;
    while at < args.len() {
        let argc = std::str::from_utf8(args.get(at))
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0 && at + 1 + n <= args.len())
            .ok_or_else(|| CommandError::NotAvailable("malformed forwarded transaction".into()))?;
        let spans = &args.spans()[at + 1..at + 1 + argc];
        commands.push(Args::new(args.buf(), spans));
        at += 1 + argc;
    }
    let start = buf.len();
    if parts {
        buf.push(PARTS);
    } else {
        ReplyWriter::new(buf, request.protocol).array(commands.len());
    }
    let user = owner.acl.user_by_id(request.user);
    let metrics = &owner.shared.metrics.shards[owner.shard];
    let mut logged = false;
    for command in &commands {
        let at = buf.len();
        if parts {
            buf.extend_from_slice(&[0; 8]);
        }
        let built = buf.len() - start;
        let limits = owner
            .shared
            .data_limits((request.max_reply as usize).saturating_sub(built));
        let mut w = ReplyWriter::new(buf, request.protocol);
        // Authorized again as of this shard's ACL (a REVOKE since it queued), and a write
        // refused on a node that became a replica since, each as its own element.
        let result = lookup(command).and_then(|spec| {
            authorize(spec, command, user.map(|u| &**u), owner.catalog)?;
            if spec.is_write() && owner.shared.replication.is_replica() {
                return Err(CommandError::ReadOnly);
            }
            if !matches!(spec.handler, Handler::Read(_) | Handler::Write(_)) {
                return Err(multi::one_partition());
            }
            match &mut local.log {
                Durability::Logged(log) if spec.is_write() => {
                    let (id, partition) = (local.id, &mut local.data);
                    let dirty = &mut owner.commit.dirty;
                    let quota = &mut local.quota;
                    let (result, wrote) = execute_logged(
                        spec, command, partition, log, id, dirty, quota, limits, metrics, &mut w,
                    );
                    logged |= wrote;
                    result
                }
                Durability::Broken(why) if spec.is_write() => Err(not_applied(why)),
                _ => {
                    let dirty = &mut owner.commit.dirty;
                    execute_memory(spec, command, local, dirty, limits, metrics, &mut w)
                }
            }
        });
        match result {
            Err(CommandError::ReplyTooLarge) => return Err(CommandError::ReplyTooLarge),
            Err(e) => e.write_to(&mut w),
            Ok(()) => {}
        }
        if parts {
            let len = (buf.len() - at - 8) as u64;
            buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
        }
    }
    if logged {
        let protocol: Protocol = request.protocol;
        owner
            .commit
            .hold_remote(owner.from, owner.reply_index, protocol, local.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(elements: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![PARTS];
        for e in elements {
            out.extend_from_slice(&(e.len() as u64).to_le_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    #[test]
    fn parts_decode_and_anything_else_is_answered_as_it_came() {
        let reply = parts_of(&[b"+OK\r\n", b"", b":1\r\n"]);
        assert_eq!(
            decode_parts(&reply),
            Some(vec![&b"+OK\r\n"[..], b"", b":1\r\n"])
        );
        assert_eq!(decode_parts(&parts_of(&[])), Some(vec![]));
        // Nil, an error (IOERR patched in by a failed commit): not parts.
        for other in [&b"*-1\r\n"[..], b"_\r\n", b"-IOERR fsync failed\r\n", b""] {
            assert_eq!(decode_parts(other), None);
        }
        // A length past the end, or cut short: refused, never a panic.
        let mut bad = parts_of(&[b"+OK\r\n"]);
        bad.truncate(bad.len() - 1);
        assert_eq!(decode_parts(&bad), None);
        assert_eq!(decode_parts(&[PARTS, 1, 2, 3]), None);
    }
}

//! The shard: one pinned thread, its `mio::Poll`, its connections and its partitions.
//!
//! # Invariants
//! - A partition is owned by exactly one shard and touched only by that shard's thread, so a
//!   command on a partition runs alone, without locks. No `Mutex`/`RwLock` exists in here.
//! - A connection lives on one shard for its whole life.
//! - The event loop never blocks except in `poll` and in the disk work of durable partitions,
//!   done at most once per pass and never per request: the group commit's `write` and
//!   `fdatasync` (that wait is what SYNC promises), the ASYNC fsync every 500 ms, one slice of
//!   a compaction, and the coordinator's catalog fsyncs on CREATE/DROP.
//!
//! # One pass of the loop
//! 1. `poll` for socket events (without blocking when work is already waiting).
//! 2. For each readable connection: read (bounded), parse every complete request, and for each
//!    one either execute it now (local partition, connection command) with its reply encoded
//!    into the connection's reply queue, or copy it into the outbox of the shard that owns its
//!    partition, keeping a waiting slot for its reply.
//! 3. Drain the inbox: execute request batches from other shards (their replies go into a
//!    reply outbox per shard, up to its cap; the rest waits for the next pass, ahead of
//!    anything newer from that shard), fill slots from reply batches, apply catalog and ACL
//!    versions, answer logins the hasher pool has checked.
//! 4. Group commit ([`durability`]): write this pass's log records, one `write` per durable
//!    partition with writes and one `fdatasync` per SYNC one; release the replies held for
//!    them, or turn them into `-IOERR` and roll the writes back.
//! 5. Send every non-empty outbox as one message per destination (one wake at most).
//! 6. Write every connection with new output, in one `write` when the socket takes it all.
//! 7. Persistence timers: the ASYNC fsync, a step of any compaction in progress.
//! 8. Once a second, when `timeout` is on: close connections idle for longer.
//!
//! Steps 4 to 6 are in that order so that no reply to a durable write, local or forwarded,
//! leaves before its record is on disk as its persist mode promises.
//!
//! # Access control
//! Every request is checked against the session's user, as of this shard's own copy of the
//! ACL, before it is routed ([`crate::command::access`]). A forwarded request carries what it
//! was allowed under (partition id, ACL version, user): the owner runs it only on that
//! partition, and checks it again when its own ACL is newer (see `Core::execute_forwarded`),
//! so a REVOKE, DROP PARTITION or DROP USER that answered `+OK` stops requests already on
//! their way too. Changes sent to the coordinator are checked again there the same way.
//! Password checks never run here: they go to the hasher pool
//! ([`crate::acl::hasher`]) while the connection waits behind a barrier, holding one of the
//! pool's bounded login slots (none free: `-ERR too many logins in progress` at once). A
//! connection whose peer hangs up while its login is checked is closed at once, unanswered,
//! which frees its client slot and cancels its check; failed logins are logged at most once a
//! second per shard, with a count of the rest.
//! A connection moved to another shard carries its session (and so its user) with it; it
//! never moves while a login or a change is pending (the barrier is up).
//!
//! # What bounds a connection's memory
//! - Input: a request is at most `max-bulk-len` per argument and `max-args` arguments (the
//!   parser refuses more before the bytes arrive), and reading pauses (below). Before login
//!   both are much smaller (16 KiB and 10, see [`crate::protocol::parser`]), and the switch
//!   to the configured limits happens between two requests, the moment a login succeeds.
//! - Requests waiting for other shards: at most [`MAX_IN_FLIGHT`]; reading pauses past it.
//! - Output: reading pauses while [`OUTPUT_HIGH_WATER`] bytes are unwritten, so a client that
//!   pipelines without reading costs little. What can still pile up is replies already on
//!   their way: one large read, or forwarded replies coming back. For those the
//!   `client-output-limit` holds: a read whose reply would not fit what is left of it is not
//!   built (here, or on the shard that executes it for us: a forwarded request carries what
//!   was left of the limit when it left), and a connection whose pending replies (unwritten +
//!   parked) pass it is closed on the spot.
//! - Replies built for another shard's connections: at most
//!   [`mailbox::REPLY_BATCH_BYTES`] (plus one reply) per requesting shard per pass; the
//!   rest of its requests wait in `Core::backlog` for the next pass.

pub mod connection;
pub mod coordinator;
pub mod durability;
pub mod mailbox;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::acl::hasher::{Hasher, LoginCache};
use crate::acl::{Acl, User};
use crate::catalog::Catalog;
use crate::command::access::authorize;
use crate::command::data::{self, DataLimits};
use crate::command::error::printable;
use crate::command::server::{self as server_cmd, PendingLogin, ServerView, MAX_AUTH_FAILURES};
use crate::command::user as user_cmd;
use crate::command::{lookup, CommandError, CommandId, CommandSpec, CoordinatorWork, Handler};
use crate::config::Config;
use crate::log_limit::RateLimitedWarn;
use crate::metrics::{ServerMetrics, ShardMetrics};
use crate::protocol::{Args, Parsed, ReplyWriter, Span};
use crate::store::{MemoryBudget, Partition};

use connection::{Connection, ReadOutcome};
use coordinator::Coordinator;
use durability::{Durability, GroupCommit, LocalPartition};
use mailbox::{Change, ConnRef, Mailbox, Message, ReplyBatch, ReplyTo, RequestBatch, ShardHandle};

/// The inbox's waker. Connection tokens are slab indexes, which never reach this value.
pub const WAKER: Token = Token(usize::MAX);

/// The shard that runs the catalog coordinator.
pub const COORDINATOR: usize = 0;

/// Bytes read from one connection before the loop moves on to others (fairness): a client
/// streaming a huge pipeline cannot starve the rest of the shard.
const READ_BUDGET: usize = 256 * 1024;

/// Requests of one connection that may wait for another shard at once. Past it the shard stops
/// reading that connection until replies come back, which bounds memory and can never deadlock
/// two shards (the channels between them are unbounded; this is what bounds them).
const MAX_IN_FLIGHT: usize = 1024;

/// Encoded output of one connection past which the shard stops reading it until the client
/// has read some: a client that pipelines without reading gets backpressure, not a server
/// that buffers without limit.
const OUTPUT_HIGH_WATER: usize = 1024 * 1024;

/// How often idle connections are looked for when `timeout` is on: a connection is closed
/// between `timeout` and `timeout` + 1 s after its last byte, for one pass over the
/// connections per second (no timer per connection, no clock read per request).
const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a shutdown waits for replies in flight before giving up on slow clients.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Server-wide shutdown: requested once, by a signal or SHUTDOWN, seen by every thread.
pub struct Shutdown {
    requested: AtomicBool,
    /// Shards still finishing their replies; a shard exits when this reaches zero, so that
    /// until then it keeps answering requests other shards forwarded before the shutdown.
    draining: AtomicUsize,
    shards: Vec<ShardHandle>,
    acceptor: Arc<mio::Waker>,
}

impl Shutdown {
    pub fn new(shards: Vec<ShardHandle>, acceptor: Arc<mio::Waker>) -> Self {
        Shutdown {
            requested: AtomicBool::new(false),
            draining: AtomicUsize::new(shards.len()),
            shards,
            acceptor,
        }
    }

    /// Starts the shutdown (idempotent).
    pub fn request(&self) {
        if self.requested.swap(true, Ordering::SeqCst) {
            return;
        }
        log::info!("shutdown requested: no new connections, finishing replies in flight");
        if let Err(e) = self.acceptor.wake() {
            log::error!("cannot wake the acceptor: {e}");
        }
        for shard in &self.shards {
            shard.send(Message::Shutdown);
        }
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// What every shard shares (read-only, or atomics).
pub struct Shared {
    pub config: Arc<Config>,
    pub metrics: Arc<ServerMetrics>,
    pub shards: Vec<ShardHandle>,
    pub shutdown: Arc<Shutdown>,
    /// Open client connections, server-wide (the acceptor checks it against max-clients).
    pub clients: Arc<AtomicUsize>,
    /// Source of CLIENT IDs.
    pub next_client_id: AtomicU64,
    /// Where password checks and hashes go, so that no shard ever runs argon2.
    pub hasher: Hasher,
}

/// Requests framed together before any of them runs (see `Core::process_input`). Enough to
/// cover a typical pipeline window (redis-benchmark -P 16), small enough to stay in L1.
const BATCH: usize = 16;

/// What one framed piece of input is.
enum FrameKind {
    Request,
    /// Bytes that carry no request (`*0`, an empty line).
    Skip,
    Malformed(crate::protocol::ProtocolError),
}

struct Frame {
    /// This request's arguments in `Batch::spans`.
    spans: std::ops::Range<usize>,
    /// Offset just past this frame, from the batch's start in the read buffer.
    end: usize,
    kind: FrameKind,
}

/// A batch of framed requests; reused, so framing allocates nothing once warm.
#[derive(Default)]
struct Batch {
    /// Arguments of all frames, relative to the batch's start in the read buffer.
    spans: Vec<Span>,
    frames: Vec<Frame>,
}

impl Batch {
    fn clear(&mut self) {
        self.spans.clear();
        self.frames.clear();
    }
}

/// Where a partition named in a request lives, as this shard sees it.
///
/// `Local` is a few hundred bytes and `Remote` one word, but there is one `Target` per
/// partition: boxing `Local` would only add a pointer chase to every local request.
#[allow(clippy::large_enum_variant)]
enum Target {
    Local(LocalPartition),
    /// Owned by `shard`; `id` goes with every request forwarded there, so the owner can tell
    /// the partition the request was approved for from a new one under the same name.
    Remote {
        shard: usize,
        id: u64,
    },
}

type Routes = hashbrown::HashMap<Box<[u8]>, Target, ahash::RandomState>;

/// A batch of forwarded requests, run from `next` on.
struct Forwarded {
    batch: RequestBatch,
    next: usize,
    /// The connection whose requests ran last, and the reply bytes built for its current
    /// run of requests (`usize::MAX` once one was over its output limit).
    run: Option<(ConnRef, usize)>,
}

/// Starts loading the table lines that the (partition name, key) pairs of `requests` will
/// touch, [`BATCH`] at a time and in two steps, so that the misses of a batch overlap: step
/// one fetches each key's slot, step two, once those lines have had time to arrive, the entry
/// the slot names. Each key is hashed once for both steps, and a partition named by
/// consecutive requests is looked up once. Requests for other shards' partitions are skipped.
fn prefetch_keys<'a>(routes: &Routes, requests: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    let mut requests = requests.peekable();
    while requests.peek().is_some() {
        let mut hashed: [Option<(&Partition, u64)>; BATCH] = [None; BATCH];
        let mut last: Option<(&[u8], Option<&Partition>)> = None;
        // `zip` asks `hashed` first, so no request is taken without a slot.
        for (slot, (name, key)) in hashed.iter_mut().zip(requests.by_ref()) {
            let partition = match last {
                Some((previous, partition)) if previous == name => partition,
                _ => {
                    let partition = match routes.get(name) {
                        Some(Target::Local(p)) => Some(&p.data),
                        _ => None,
                    };
                    last = Some((name, partition));
                    partition
                }
            };
            if let Some(partition) = partition {
                let hash = partition.hash_key(key);
                partition.prefetch(hash);
                *slot = Some((partition, hash));
            }
        }
        for (partition, hash) in hashed.iter().flatten() {
            partition.prefetch_entry(*hash);
        }
    }
}

/// Everything a request may touch besides its own connection.
struct Core {
    id: usize,
    shared: Arc<Shared>,
    catalog: Arc<Catalog>,
    /// This shard's copy of users and grants, replaced whole by the coordinator's broadcast.
    acl: Arc<Acl>,
    /// Logins this shard has seen succeed, so a reconnecting client is answered without the
    /// hasher pool (see [`crate::acl::hasher`] for what it holds and why that is acceptable).
    login_cache: LoginCache,
    /// The failed-login log line, at most one a second.
    failed_logins: RateLimitedWarn,
    /// Partition name -> the partition itself (local) or its shard: one hash lookup routes a
    /// request and, when local, finds its table.
    routes: Routes,
    max_key_len: usize,
    /// `client-output-limit`, in bytes.
    output_limit: usize,
    /// `timeout`, when on.
    idle_timeout: Option<Duration>,
    /// Coarse clock: read once per loop pass, used for idle time.
    now: Instant,
    /// When to look for idle connections next.
    next_sweep: Instant,
    /// Requests for each other shard, collected during this pass.
    outboxes: Vec<RequestBatch>,
    /// Replies to each other shard's forwarded requests, collected during this pass.
    reply_outboxes: Vec<ReplyBatch>,
    /// Per sending shard, in arrival order: forwarded requests not run yet because that
    /// shard's reply batch was full this pass ([`mailbox::REPLY_BATCH_BYTES`]).
    backlog: Vec<VecDeque<Forwarded>>,
    /// Catalog and ACL changes to send to the coordinator after the outboxes, so that requests a
    /// connection sent before a CREATE/DROP reach their shard before the new catalog does.
    changes: Vec<Message>,
    /// Present on the coordinator shard only.
    coordinator: Option<Coordinator>,
    next_generation: u32,
    /// Connections with new output to write at the end of the pass.
    to_write: Vec<usize>,
    /// Connections to come back to without a poll event (input left after a budget or pause).
    to_service: Vec<usize>,
    draining: bool,
    /// Reused by `process_input`.
    batch: Batch,
    /// This shard has counted itself out of `Shutdown::draining`.
    drain_reported: bool,
    /// This pass's durable writes and the replies held for their commit.
    commit: GroupCommit,
    /// Partitions loaded by recovery, until the first catalog takes them.
    recovered: hashbrown::HashMap<u64, LocalPartition>,
}

pub struct Shard {
    poll: Poll,
    mailbox: Mailbox,
    conns: Slab<Connection>,
    core: Core,
}

impl Shard {
    /// Creates shard `id`'s poll and inbox. Its handle goes to everyone who sends to it.
    pub fn create() -> std::io::Result<(Poll, Mailbox, ShardHandle)> {
        let poll = Poll::new()?;
        let (mailbox, handle) = Mailbox::new(poll.registry(), WAKER)?;
        Ok((poll, mailbox, handle))
    }

    /// Builds shard `id`, recovering its durable partitions from disk first (in the calling
    /// thread: each shard's thread recovers its own, all in parallel).
    pub fn new(
        id: usize,
        poll: Poll,
        mailbox: Mailbox,
        shared: Arc<Shared>,
        catalog: Arc<Catalog>,
        acl: Arc<Acl>,
        resume: coordinator::Resume,
    ) -> Result<Self, String> {
        let shards = shared.shards.len();
        let coordinator = (id == COORDINATOR).then(|| {
            Coordinator::new(
                catalog.clone(),
                acl.clone(),
                resume,
                shared.config.data_dir.clone(),
            )
        });
        let config = &shared.config;
        let now = Instant::now();
        let mut core = Core {
            id,
            max_key_len: config.max_key_len,
            output_limit: config.client_output_limit,
            idle_timeout: (config.timeout_secs > 0)
                .then(|| Duration::from_secs(config.timeout_secs)),
            now,
            next_sweep: now + IDLE_SWEEP_INTERVAL,
            shared,
            catalog: Arc::new(Catalog::default()),
            acl,
            login_cache: LoginCache::new(),
            failed_logins: RateLimitedWarn::new("failed logins", now),
            routes: Routes::default(),
            outboxes: (0..shards).map(|_| RequestBatch::default()).collect(),
            reply_outboxes: (0..shards).map(|_| ReplyBatch::default()).collect(),
            backlog: (0..shards).map(|_| VecDeque::new()).collect(),
            changes: Vec::new(),
            coordinator,
            next_generation: 0,
            to_write: Vec::new(),
            to_service: Vec::new(),
            draining: false,
            batch: Batch::default(),
            drain_reported: false,
            commit: GroupCommit::default(),
            recovered: hashbrown::HashMap::new(),
        };
        core.recover(&catalog)?;
        core.apply_catalog(catalog);
        Ok(Shard {
            poll,
            mailbox,
            conns: Slab::new(),
            core,
        })
    }

    /// Runs the event loop until shutdown completes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut drain_started: Option<Instant> = None;
        loop {
            let persist_timeout = self.core.commit.poll_timeout(Instant::now());
            let timeout = if !self.core.to_service.is_empty() || self.core.has_backlog() {
                Some(Duration::ZERO)
            } else if self.core.draining {
                // While draining, check often whether every shard is done.
                Some(Duration::from_millis(5).min(persist_timeout.unwrap_or(Duration::MAX)))
            } else if persist_timeout == Some(Duration::ZERO) {
                Some(Duration::ZERO)
            } else if self.mailbox.prepare_to_sleep() {
                // Idle: sleep until an event, the next idle sweep (when it is on), the next
                // persistence timer, or the count of unlogged failed logins is due,
                // whichever comes first.
                let now = Instant::now();
                let sweep = self
                    .core
                    .idle_timeout
                    .map(|_| self.core.next_sweep.saturating_duration_since(now));
                [sweep, persist_timeout, self.core.failed_logins.due_in(now)]
                    .into_iter()
                    .flatten()
                    .min()
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("shard {}: poll failed: {e}", self.core.id);
                }
            }
            self.mailbox.woke_up();
            self.core.now = Instant::now();

            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue;
                }
                let index = token.0;
                if !self.conns.contains(index) {
                    continue; // closed earlier in this pass
                }
                if event.is_read_closed() || event.is_error() {
                    if let Some(conn) = self.conns.get_mut(index) {
                        conn.peer_closed = true;
                    }
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.service(index);
                }
                if event.is_writable() {
                    self.queue_write(index);
                }
            }
            for index in std::mem::take(&mut self.core.to_service) {
                if self.conns.contains(index) {
                    self.service(index);
                }
            }
            self.drain_inbox();
            // Before anything leaves: replies to durable writes wait for their commit.
            self.commit();
            self.core.flush_outboxes();
            self.flush_writes();
            self.core.persistence_tick();
            if self.core.idle_timeout.is_some() && self.core.now >= self.core.next_sweep {
                self.close_idle();
            }
            self.core
                .failed_logins
                .flush(self.core.now, &format_args!("shard {}", self.core.id));

            if self.core.draining {
                let started = *drain_started.get_or_insert_with(Instant::now);
                if self.drain_step(started) {
                    self.sync_all();
                    return;
                }
            }
        }
    }

    /// Reads and processes one connection, within the fairness budget.
    fn service(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        conn.needs_service = false;
        let outcome = if conn.closing || conn.input_closed || is_paused(conn) {
            None
        } else {
            match conn.read(READ_BUDGET, self.core.now) {
                Ok(outcome) => Some(outcome),
                Err(e) => {
                    log::debug!("read from {}: {e}", conn.peer);
                    self.close(index);
                    return;
                }
            }
        };
        if outcome == Some(ReadOutcome::Closed) {
            conn.input_closed = true;
        }
        self.core.process_input(conn);
        // A peer that hung up while its login is checked is dropped now, unanswered: that
        // frees its client slot and cancels its argon2 job (a flood of connect, AUTH, close
        // would otherwise keep thousands of both). Other requests of a half-closed peer are
        // still answered (below).
        if (conn.peer_closed || conn.input_closed) && conn.session.pending_login.is_some() {
            log::debug!("{} hung up while its login was checked", conn.peer);
            self.close(index);
            return;
        }
        if !conn.closing {
            if is_paused(conn) {
                // Requests may wait in the buffer or the socket, and an edge-triggered poll
                // will not report them again: come back when the pause ends.
                conn.needs_service = true;
            } else if conn.input_closed {
                // The peer closed its side and every complete request it sent is processed.
                conn.closing = true;
            } else if outcome == Some(ReadOutcome::More) {
                // Input may remain in the socket: come back after the other connections.
                conn.needs_service = true;
                self.core.to_service.push(index);
            }
        }
        if conn.session.shutdown_requested {
            self.core.shared.shutdown.request();
        }
        if !self.close_if_over_output_limit(index) {
            self.after_progress(index);
        }
    }

    /// Closes a connection whose pending replies passed the client output limit (or one of
    /// whose replies would have). True when it was closed.
    fn close_if_over_output_limit(&mut self, index: usize) -> bool {
        let limit = self.core.output_limit;
        let Some(conn) = self.conns.get(index) else {
            return false;
        };
        if !conn.over_output_limit && conn.replies.pending() <= limit {
            return false;
        }
        log::warn!(
            "closing client {} ({}): pending output passed client-output-limit ({limit} bytes)",
            conn.session.id,
            conn.peer
        );
        let metrics = &self.core.shared.metrics.shards[self.core.id];
        ShardMetrics::add(&metrics.output_limit_disconnects, 1);
        self.close(index);
        true
    }

    /// Closes connections that neither read nor wrote a byte for longer than `timeout`.
    fn close_idle(&mut self) {
        let Some(timeout) = self.core.idle_timeout else {
            return;
        };
        let now = self.core.now;
        self.core.next_sweep = now + IDLE_SWEEP_INTERVAL;
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| now.saturating_duration_since(conn.last_active) > timeout)
            .map(|(index, _)| index)
            .collect();
        if idle.is_empty() {
            return;
        }
        let metrics = &self.core.shared.metrics.shards[self.core.id];
        ShardMetrics::add(&metrics.timeout_disconnects, idle.len() as u64);
        for index in idle {
            if let Some(conn) = self.conns.get(index) {
                log::debug!("closing idle client {} ({})", conn.session.id, conn.peer);
            }
            self.close(index);
        }
    }

    /// Bookkeeping after a connection's state moved: queue its output, resume its input, or
    /// close it when it is done.
    fn after_progress(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.replies.has_output() {
            if !conn.queued_for_write {
                conn.queued_for_write = true;
                self.core.to_write.push(index);
            }
        } else if conn.closing && conn.replies.in_flight() == 0 {
            self.close(index);
            return;
        } else if let Some(shard) = conn.affinity.target() {
            // Idle between requests (nothing owed, nothing unwritten): the moment to move.
            let idle = conn.replies.in_flight() == 0 && !conn.barrier && !conn.closing;
            if idle && !self.core.draining && self.core.shared.config.migrate_connections {
                self.migrate(index, shard);
                return;
            }
        }
        if conn.needs_service && !conn.closing && !is_paused(conn) {
            conn.needs_service = false;
            self.core.to_service.push(index);
        }
    }

    fn queue_write(&mut self, index: usize) {
        if let Some(conn) = self.conns.get_mut(index) {
            if conn.replies.has_output() && !conn.queued_for_write {
                conn.queued_for_write = true;
                self.core.to_write.push(index);
            }
        }
    }

    fn flush_writes(&mut self) {
        for index in std::mem::take(&mut self.core.to_write) {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            conn.queued_for_write = false;
            let unwritten = conn.replies.unwritten();
            let result = conn.replies.write_to(&mut conn.socket);
            if conn.replies.unwritten() < unwritten {
                conn.last_active = self.core.now;
            }
            match result {
                // All out: maybe resume reading, maybe close.
                Ok(true) => self.after_progress(index),
                // The socket is full: the writable event brings us back.
                Ok(false) => {
                    if conn.needs_service && !conn.closing && !is_paused(conn) {
                        conn.needs_service = false;
                        self.core.to_service.push(index);
                    }
                }
                Err(e) => {
                    log::debug!("write to {}: {e}", conn.peer);
                    self.close(index);
                }
            }
        }
    }

    fn close(&mut self, index: usize) {
        if !self.conns.contains(index) {
            return;
        }
        let mut conn = self.conns.remove(index);
        if let Err(e) = self.poll.registry().deregister(&mut conn.socket) {
            log::debug!("deregister {}: {e}", conn.peer);
        }
        let metrics = &self.core.shared.metrics.shards[self.core.id];
        ShardMetrics::sub(&metrics.connections, 1);
        self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
    }

    fn drain_inbox(&mut self) {
        // What earlier passes left for lack of room in a reply batch goes first.
        self.core.run_backlog(true);
        while let Some(message) = self.mailbox.try_recv() {
            match message {
                Message::NewConnection(socket, peer) => self.accept(socket, peer),
                Message::Migrate(conn) => self.adopt(conn),
                Message::Requests(batch) => self.core.take_forwarded(batch),
                Message::Replies(batch) => {
                    for (reply, bytes) in batch.iter() {
                        let index = reply.conn.index as usize;
                        match self.conns.get_mut(index) {
                            Some(conn) if conn.conn_ref == reply.conn => {
                                if reply.over_output_limit {
                                    conn.over_output_limit = true;
                                } else {
                                    conn.replies.fill(reply.seq, bytes);
                                }
                            }
                            // The connection closed while its request was away.
                            _ => continue,
                        }
                        // Output grows here without any read: the limit is checked here too.
                        if !self.close_if_over_output_limit(index) {
                            self.after_progress(index);
                        }
                    }
                }
                Message::Change {
                    reply_to,
                    change,
                    by,
                } => {
                    let shards = &self.core.shared.shards;
                    match &mut self.core.coordinator {
                        Some(coordinator) => coordinator.submit(reply_to, change, by, shards),
                        None => log::error!(
                            "shard {} got a catalog change but is not the coordinator",
                            self.core.id
                        ),
                    }
                }
                Message::Update {
                    epoch,
                    catalog,
                    acl,
                } => {
                    // Requests that arrived before this version run before it, as they would
                    // have without the reply cap (rare: only past the cap, and then a pass
                    // may build more than the cap once).
                    self.core.run_backlog(false);
                    if !Arc::ptr_eq(&self.core.catalog, &catalog) {
                        self.core.apply_catalog(catalog);
                    }
                    if !Arc::ptr_eq(&self.core.acl, &acl) {
                        self.apply_acl(acl);
                    }
                    self.core.shared.shards[COORDINATOR].send(Message::UpdateAck { epoch });
                }
                Message::UpdateAck { epoch } => {
                    let shards = &self.core.shared.shards;
                    if let Some(coordinator) = &mut self.core.coordinator {
                        coordinator.ack(epoch, shards);
                    }
                }
                Message::AuthChecked {
                    reply_to,
                    user_id,
                    hash,
                    ok,
                } => self.finish_login(reply_to, user_id, hash, ok),
                Message::ChangeDone { reply_to, result } => {
                    let index = reply_to.conn.index as usize;
                    let Some(conn) = self.conns.get_mut(index) else {
                        continue;
                    };
                    if conn.conn_ref != reply_to.conn {
                        continue;
                    }
                    let mut reply = Vec::new();
                    let mut w = ReplyWriter::new(&mut reply, conn.session.protocol);
                    match result {
                        Ok(()) => w.ok(),
                        Err(e) => e.write_to(&mut w),
                    }
                    conn.replies.fill(reply_to.seq, &reply);
                    conn.barrier = false;
                    // Requests queued behind the change run now.
                    conn.needs_service = true;
                    self.after_progress(index);
                }
                Message::Shutdown => self.begin_drain(),
            }
        }
    }

    /// Answers a login once the hasher pool has checked its password.
    fn finish_login(&mut self, reply_to: ReplyTo, user_id: u64, hash: Option<Arc<str>>, ok: bool) {
        let index = reply_to.conn.index as usize;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.conn_ref != reply_to.conn {
            return;
        }
        // Dropping the pending login (its ticket) at the end frees its slot in the pool.
        let Some(PendingLogin {
            user, mac, hello, ..
        }) = conn.session.pending_login.take()
        else {
            return;
        };
        // The user must still be the one whose hash was checked: dropped and re-created, or
        // given a new password meanwhile, the old password proves nothing.
        let acl = &self.core.acl;
        let found = acl
            .get(&user)
            .filter(|u| ok && u.id == user_id && Some(&u.hash) == hash.as_ref())
            .cloned();
        let mut reply = Vec::new();
        let mut w = ReplyWriter::new(&mut reply, conn.session.protocol);
        match found {
            Some(found) => {
                if let Some(mac) = mac {
                    self.core.login_cache.remember(mac);
                }
                log::debug!("{}: logged in as '{}'", conn.peer, found.name);
                logged_in(&mut conn.session, found, acl.version, hello, &mut w);
            }
            None => {
                conn.session.auth_failures += 1;
                let failures = conn.session.auth_failures;
                CommandError::WrongPass.write_to(&mut w);
                let closing = failures >= MAX_AUTH_FAILURES;
                if closing {
                    conn.closing = true;
                }
                self.core.failed_logins.event(self.core.now, || {
                    format!(
                        "failed login as '{}' from {} ({failures} in a row{})",
                        log_safe(&user),
                        conn.peer,
                        if closing {
                            ", closing the connection"
                        } else {
                            ""
                        }
                    )
                });
            }
        }
        conn.replies.fill(reply_to.seq, &reply);
        conn.barrier = false;
        // Requests queued behind the login run now.
        conn.needs_service = true;
        self.after_progress(index);
    }

    /// Switches to a new ACL version and closes the connections of users that are gone
    /// (dropped, or dropped and re-created: a new user is a new id).
    fn apply_acl(&mut self, acl: Arc<Acl>) {
        self.core.acl = acl;
        let gone: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| user_gone(&self.core.acl, conn))
            .map(|(index, _)| index)
            .collect();
        for index in gone {
            self.close_dropped_user(index);
        }
    }

    /// Closes a connection whose user was dropped, once its replies in flight are written.
    fn close_dropped_user(&mut self, index: usize) {
        if let Some(conn) = self.conns.get_mut(index) {
            log::info!(
                "closing connection {} from {}: its user was dropped",
                conn.session.id,
                conn.peer
            );
            conn.session.user = None;
            conn.closing = true;
        }
        self.after_progress(index);
    }

    /// Hands an idle connection to the shard that owns the partitions it uses.
    fn migrate(&mut self, index: usize, shard: usize) {
        let mut conn = self.conns.remove(index);
        if let Err(e) = self.poll.registry().deregister(&mut conn.socket) {
            log::warn!("cannot move connection from {}: {e}", conn.peer);
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        conn.affinity = connection::Affinity::default();
        conn.queued_for_write = false;
        ShardMetrics::sub(
            &self.core.shared.metrics.shards[self.core.id].connections,
            1,
        );
        ShardMetrics::add(
            &self.core.shared.metrics.shards[self.core.id].migrated_out,
            1,
        );
        log::debug!(
            "connection {} moves from shard {} to shard {shard}",
            conn.session.id,
            self.core.id
        );
        self.core.shared.shards[shard].send(Message::Migrate(Box::new(conn)));
    }

    /// Takes in a connection moved here by another shard.
    fn adopt(&mut self, mut conn: Box<Connection>) {
        if self.core.draining {
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut conn.socket,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot take in connection from {}: {e}", conn.peer);
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.core.next_generation = self.core.next_generation.wrapping_add(1);
        conn.conn_ref = ConnRef {
            index: index as u32,
            generation: self.core.next_generation,
        };
        let gone = user_gone(&self.core.acl, &conn);
        entry.insert(*conn);
        ShardMetrics::add(
            &self.core.shared.metrics.shards[self.core.id].connections,
            1,
        );
        if gone {
            // Its user was dropped while it travelled here: this shard's ACL already says so,
            // so `apply_acl` will not come back to it.
            self.close_dropped_user(index);
            return;
        }
        // Requests may already wait in its buffer or socket.
        self.core.to_service.push(index);
    }

    fn accept(&mut self, socket: mio::net::TcpStream, peer: std::net::SocketAddr) {
        if self.core.draining {
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return; // dropping the socket closes it
        }
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        let mut socket = socket;
        // Edge-triggered, both directions, registered once: no re-registration syscalls when
        // output backs up.
        if let Err(e) = self.poll.registry().register(
            &mut socket,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register connection from {peer}: {e}");
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return; // the vacant entry is dropped unused: the slab rolls back
        }
        self.core.next_generation = self.core.next_generation.wrapping_add(1);
        let conn_ref = ConnRef {
            index: index as u32,
            generation: self.core.next_generation,
        };
        let id = self
            .core
            .shared
            .next_client_id
            .fetch_add(1, Ordering::Relaxed);
        entry.insert(Connection::new(
            socket,
            peer,
            conn_ref,
            id,
            self.core.shared.config.limits,
            self.core.now,
        ));
        let metrics = &self.core.shared.metrics.shards[self.core.id];
        ShardMetrics::add(&metrics.connections, 1);
        ShardMetrics::add(&metrics.connections_total, 1);
        log::debug!("shard {}: connection {id} from {peer}", self.core.id);
    }

    /// Shutdown, step one: take in what clients already sent, then read nothing more.
    fn begin_drain(&mut self) {
        if self.core.draining {
            return;
        }
        self.core.draining = true;
        let indexes: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for index in indexes {
            // Answer what is already here (bounded by the read budget), then stop reading.
            self.service(index);
            if let Some(conn) = self.conns.get_mut(index) {
                conn.closing = true;
            }
            self.after_progress(index);
        }
    }

    /// Shutdown, step two, once a pass: true when this thread may exit.
    fn drain_step(&mut self, started: Instant) -> bool {
        let shutdown = self.core.shared.shutdown.clone();
        let late = started.elapsed() > DRAIN_DEADLINE;
        if (!self.conns.is_empty() || self.core.has_backlog()) && !late {
            return false;
        }
        if !self.conns.is_empty() {
            log::warn!(
                "shard {}: {} connections still had replies pending at the shutdown deadline",
                self.core.id,
                self.conns.len()
            );
            let indexes: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
            for index in indexes {
                self.close(index);
            }
        }
        if !self.core.drain_reported {
            self.core.drain_reported = true;
            shutdown.draining.fetch_sub(1, Ordering::SeqCst);
        }
        shutdown.draining.load(Ordering::SeqCst) == 0 || late
    }
}

/// The connection's user no longer exists as it logged in (dropped, or dropped and
/// re-created: a new user is a new id).
fn user_gone(acl: &Acl, conn: &Connection) -> bool {
    conn.session
        .user
        .as_ref()
        .is_some_and(|user| acl.users.get(&user.name).map(|u| u.id) != Some(user.id))
}

/// Binds a session to the user it proved to be, and answers the login.
fn logged_in(
    session: &mut server_cmd::Session,
    user: Arc<User>,
    acl_version: u64,
    hello: Option<server_cmd::Hello>,
    w: &mut ReplyWriter,
) {
    session.user = Some(user);
    session.acl_version = acl_version;
    session.auth_failures = 0;
    match hello {
        Some(hello) => server_cmd::finish_hello(hello, session, w),
        None => w.ok(),
    }
}

/// Client bytes fit for one log line: printable ASCII kept, anything else (a newline that
/// would forge a log line, say) shown as `?`, cut at 64 bytes.
fn log_safe(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(64)
        .map(|&b| {
            if (b' '..=b'~').contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Stop reading this connection for now?
#[inline]
fn is_paused(conn: &Connection) -> bool {
    conn.barrier
        || conn.replies.in_flight() >= MAX_IN_FLIGHT
        || conn.replies.unwritten() >= OUTPUT_HIGH_WATER
}

impl Core {
    /// Parses and runs every complete request in the connection's buffer, until it runs out,
    /// the connection pauses (backpressure, catalog barrier), or the input is malformed.
    ///
    /// Requests are framed in batches of up to [`BATCH`] before any of them runs, so that the
    /// table lines of all their keys are fetched together ([`Core::prefetch`]): with a
    /// pipelining client the cache misses of a batch overlap instead of adding up.
    fn process_input(&mut self, conn: &mut Connection) {
        let mut batch = std::mem::take(&mut self.batch);
        let mut commands = 0;
        'batches: while !conn.closing
            && !conn.over_output_limit
            && !is_paused(conn)
            && conn.has_input()
        {
            // 1. Frame, under the limits of the session as it is now (pre-login ones until a
            // login has succeeded).
            conn.sync_limits();
            batch.clear();
            let base = conn.rstart;
            let mut offset = 0;
            while batch.frames.len() < BATCH && base + offset < conn.rend {
                let at = base + offset;
                // An inline request is framed only first in its batch: its unescaping rewrites
                // the buffer in place, so it must run before anything could make us re-frame
                // it (and the first frame of a batch always runs).
                let inline = conn.rbuf[at] != b'*';
                if inline && !batch.frames.is_empty() {
                    break;
                }
                let parsed = conn.parser.parse(&mut conn.rbuf[at..conn.rend]);
                let first_span = batch.spans.len();
                let kind = match parsed {
                    Ok(Parsed::Request { consumed }) => {
                        let shift = offset as u32;
                        batch.spans.extend(conn.parser.args().iter().map(|s| Span {
                            start: s.start + shift,
                            end: s.end + shift,
                        }));
                        offset += consumed;
                        FrameKind::Request
                    }
                    Ok(Parsed::Skip { consumed }) => {
                        offset += consumed;
                        FrameKind::Skip
                    }
                    Ok(Parsed::Incomplete) => break,
                    Err(e) => FrameKind::Malformed(e),
                };
                let stop = matches!(kind, FrameKind::Malformed(_));
                batch.frames.push(Frame {
                    spans: first_span..batch.spans.len(),
                    end: offset,
                    kind,
                });
                if stop {
                    break;
                }
            }
            if batch.frames.is_empty() {
                break; // only an incomplete request is left
            }
            // 2. Prefetch what the local requests will look up.
            let input = &conn.rbuf[base..conn.rend];
            self.prefetch(input, &batch);
            // 3. Run, in order.
            for frame in &batch.frames {
                if conn.closing || conn.over_output_limit || is_paused(conn) {
                    // The rest is framed again later; forget any partly framed request that
                    // lies beyond the point we stop at.
                    conn.parser.reset();
                    break 'batches;
                }
                match &frame.kind {
                    FrameKind::Request => {
                        let args = Args::new(input, &batch.spans[frame.spans.clone()]);
                        commands += 1;
                        let refused = self.dispatch(
                            &mut conn.affinity,
                            conn.conn_ref,
                            &args,
                            &mut conn.session,
                            &mut conn.replies,
                            &mut conn.barrier,
                        );
                        // The shard closes it once this pass over its input ends.
                        if refused || conn.replies.pending() > self.output_limit {
                            conn.over_output_limit = true;
                        }
                        if conn.session.close_after_reply {
                            conn.closing = true;
                        }
                        // A login answered at once (the login cache) lifts the pre-login
                        // limits: the frames behind it were framed under those, so they are
                        // framed again (one that was refused may be fine now).
                        if connection::sync_limits(&mut conn.parser, &conn.session) {
                            conn.rstart = base + frame.end;
                            continue 'batches;
                        }
                    }
                    FrameKind::Skip => {}
                    FrameKind::Malformed(e) => {
                        log::debug!("protocol error from {}: {e}", conn.peer);
                        let protocol = conn.session.protocol;
                        conn.replies.push_ready(protocol, |w| {
                            w.error("ERR", &format!("Protocol error: {e}"))
                        });
                        conn.closing = true;
                    }
                }
                conn.rstart = base + frame.end;
            }
        }
        self.batch = batch;
        ShardMetrics::add(&self.shared.metrics.shards[self.id].commands, commands);
    }

    /// Prefetches the table lines of the keys that a batch's local data requests will touch
    /// (argument 2: the first key; see [`prefetch_keys`]).
    fn prefetch(&self, input: &[u8], batch: &Batch) {
        if batch.frames.len() < 2 {
            return; // nothing to overlap with
        }
        prefetch_keys(
            &self.routes,
            batch.frames.iter().filter_map(|frame| {
                let spans = &batch.spans[frame.spans.clone()];
                (spans.len() >= 3).then(|| (&input[spans[1].range()], &input[spans[2].range()]))
            }),
        );
    }

    /// Runs one request: here, on another shard, on the coordinator, or (a login) on the
    /// hasher pool. Returns true when its reply was not built because it would pass the
    /// client output limit.
    fn dispatch(
        &mut self,
        affinity: &mut connection::Affinity,
        conn_ref: ConnRef,
        args: &Args,
        session: &mut server_cmd::Session,
        replies: &mut connection::ReplyQueue,
        barrier: &mut bool,
    ) -> bool {
        let protocol = session.protocol;
        // Grants and revocations apply from the next command: a moved ACL version means the
        // session's user must be looked up again (gone: logged out; its connection is closing).
        if session.acl_version != self.acl.version {
            session.acl_version = self.acl.version;
            if let Some(user) = session.user.take() {
                session.user = self
                    .acl
                    .users
                    .get(&user.name)
                    .filter(|u| u.id == user.id)
                    .cloned();
            }
        }
        let spec = match lookup(args) {
            Ok(spec) => spec,
            // Before login, even an unknown command is only "log in first".
            Err(_) if session.user.is_none() => {
                replies.push_ready(protocol, |w| CommandError::NoAuth.write_to(w));
                return false;
            }
            Err(e) => {
                replies.push_ready(protocol, |w| e.write_to(w));
                return false;
            }
        };
        if let Err(e) = authorize(spec, args, session.user.as_deref(), &self.catalog) {
            replies.push_ready(protocol, |w| e.write_to(w));
            return false;
        }
        // The partition a data command runs on (argument 1, or FLUSH PARTITION's 2).
        let name = spec.partition_name(args);
        match spec.handler {
            Handler::Read(_) | Handler::Write(_) => match self.routes.get_mut(name) {
                // The local path: execute now, encode straight into the output...
                Some(Target::Local(local)) => {
                    affinity.local();
                    let limits = DataLimits {
                        max_key_len: self.max_key_len,
                        max_value_len: self.shared.config.limits.max_bulk_len,
                        max_keys_reply: self.shared.config.max_keys_reply,
                        memory: MemoryBudget::new(
                            self.shared.config.max_memory,
                            &self.shared.metrics,
                        ),
                        max_reply: self.output_limit.saturating_sub(replies.pending()),
                    };
                    let metrics = &self.shared.metrics.shards[self.id];
                    match &mut local.log {
                        // ... except a durable write, whose reply waits for the group commit.
                        Durability::Logged(log) if spec.is_write() => {
                            let seq = replies.push_waiting();
                            let writes = log.journal.writes();
                            let start = self.commit.buf.len();
                            let mut w = ReplyWriter::new(&mut self.commit.buf, protocol);
                            let journal = Some(&mut log.journal);
                            let partition = &mut local.data;
                            // A write's reply is small: it is never over the output limit.
                            if let Err(e) = execute_data(
                                spec, args, partition, journal, limits, metrics, &mut w,
                            ) {
                                e.write_to(&mut w);
                            }
                            if log.journal.writes() > writes {
                                self.commit.logged(writes == 0, name, local.id);
                                self.commit.hold(conn_ref, seq, protocol, local.id, start);
                            } else {
                                // Changed nothing: nothing to wait for.
                                replies.fill(seq, &self.commit.buf[start..]);
                                self.commit.buf.truncate(start);
                            }
                        }
                        Durability::Broken(why) if spec.is_write() => {
                            let e = CommandError::Io(format!("{why}; the write was not applied"));
                            replies.push_ready(protocol, |w| e.write_to(w));
                        }
                        _ => {
                            let partition = &mut local.data;
                            return replies.push_ready(protocol, |w| {
                                match execute_data(spec, args, partition, None, limits, metrics, w)
                                {
                                    Ok(()) => false,
                                    Err(CommandError::ReplyTooLarge) => true,
                                    Err(e) => {
                                        e.write_to(w);
                                        false
                                    }
                                }
                            });
                        }
                    }
                }
                // The forwarded path: copy into the owner's outbox, answer later in order.
                Some(&mut Target::Remote { shard, id }) => {
                    affinity.remote(shard);
                    let approval = mailbox::Approval {
                        partition: id,
                        acl_version: self.acl.version,
                        user: session.user.as_ref().map_or(0, |u| u.id),
                        max_reply: self.output_limit.saturating_sub(replies.pending()) as u64,
                    };
                    let seq = replies.push_waiting();
                    self.outboxes[shard].push(conn_ref, seq, protocol, spec.id, args, approval);
                    ShardMetrics::add(&self.shared.metrics.shards[self.id].forwarded_out, 1);
                }
                None => {
                    let e = CommandError::NoPartition(printable(name));
                    replies.push_ready(protocol, |w| e.write_to(w));
                }
            },
            Handler::Connection(run) => {
                if let Some(login) = self.parse_login(spec.id, args, session) {
                    match login {
                        Ok(pending) => {
                            self.start_login(conn_ref, pending, session, replies, barrier)
                        }
                        Err(e) => replies.push_ready(protocol, |w| e.write_to(w)),
                    }
                    return false;
                }
                let catalog = self.catalog.clone();
                let acl = self.acl.clone();
                replies.push_ready(protocol, |w| {
                    let view = ServerView {
                        catalog: &catalog,
                        acl: &acl,
                        config: &self.shared.config,
                        metrics: &self.shared.metrics,
                        shard: self.id,
                    };
                    if let Err(e) = run(args, session, &view, w) {
                        e.write_to(w);
                    }
                });
            }
            Handler::Coordinator(parse) => {
                let work = if self.draining {
                    Err(CommandError::ShuttingDown)
                } else {
                    parse(args)
                };
                match work {
                    Err(e) => replies.push_ready(protocol, |w| e.write_to(w)),
                    Ok(work) => {
                        let seq = replies.push_waiting();
                        *barrier = true;
                        let reply_to = ReplyTo {
                            shard: self.id,
                            conn: conn_ref,
                            seq,
                        };
                        let user = session.user.as_ref().map_or(0, |u| u.id);
                        let by = mailbox::Approved::new(user, self.acl.version, args);
                        let change = match work {
                            CoordinatorWork::Create(c) => Change::Create(c),
                            CoordinatorWork::Drop(name) => Change::Drop(name),
                            CoordinatorWork::Acl(c) => Change::Acl(c),
                            // Hashed on the pool, which then hands the change to the
                            // coordinator itself.
                            CoordinatorWork::HashThen(password, then) => {
                                self.shared.hasher.hash_then(reply_to, password, then, by);
                                return false;
                            }
                        };
                        self.changes.push(Message::Change {
                            reply_to,
                            change,
                            by,
                        });
                    }
                }
            }
        }
        false
    }

    /// A login request (AUTH, LOGIN, HELLO ... AUTH): `None` when the command is not one.
    fn parse_login(
        &self,
        id: CommandId,
        args: &Args,
        session: &server_cmd::Session,
    ) -> Option<Result<(user_cmd::Credentials, PendingLogin), CommandError>> {
        match id {
            CommandId::Auth | CommandId::Login => Some(user_cmd::parse_auth(args).map(|c| {
                let pending = PendingLogin {
                    user: c.user.clone(),
                    mac: None,
                    hello: None,
                    ticket: None,
                };
                (c, pending)
            })),
            CommandId::Hello => match server_cmd::parse_hello(args, session) {
                Ok(mut hello) => hello.auth.take().map(|c| {
                    let pending = PendingLogin {
                        user: c.user.clone(),
                        mac: None,
                        hello: Some(hello),
                        ticket: None,
                    };
                    Ok((c, pending))
                }),
                Err(e) => Some(Err(e)),
            },
            _ => None,
        }
    }

    /// Answers a login this shard's cache knows at once; otherwise sends its password check to
    /// the hasher pool while the connection waits behind a barrier, so a pipelined command
    /// after AUTH runs as the new user.
    fn start_login(
        &mut self,
        conn_ref: ConnRef,
        (credentials, mut pending): (user_cmd::Credentials, PendingLogin),
        session: &mut server_cmd::Session,
        replies: &mut connection::ReplyQueue,
        barrier: &mut bool,
    ) {
        let user = self.acl.get(&credentials.user);
        if let Some(user) = user {
            pending.mac = self.login_cache.mac(&user.hash, &credentials.password);
            if pending
                .mac
                .is_some_and(|mac| self.login_cache.contains(&mac))
            {
                let (user, version) = (user.clone(), self.acl.version);
                replies.push_ready(session.protocol, |w| {
                    logged_in(session, user, version, pending.hello, w)
                });
                return;
            }
        }
        // Past the pool's bound the answer is "try again later", at once: no barrier, no
        // slot, nothing queued.
        let ticket = match self.shared.hasher.reserve_login() {
            Ok(ticket) => ticket,
            Err(e) => {
                replies.push_ready(session.protocol, |w| e.write_to(w));
                return;
            }
        };
        let seq = replies.push_waiting();
        let reply_to = ReplyTo {
            shard: self.id,
            conn: conn_ref,
            seq,
        };
        let (user_id, hash) = (user.map_or(0, |u| u.id), user.map(|u| u.hash.clone()));
        if let Err(e) =
            self.shared
                .hasher
                .verify(&ticket, reply_to, user_id, hash, credentials.password)
        {
            let mut reply = Vec::new();
            e.write_to(&mut ReplyWriter::new(&mut reply, session.protocol));
            replies.fill(seq, &reply);
            return;
        }
        *barrier = true;
        pending.ticket = Some(ticket);
        session.pending_login = Some(pending);
    }

    /// Whether forwarded requests wait for a later pass (the loop must not sleep then).
    fn has_backlog(&self) -> bool {
        self.backlog.iter().any(|queue| !queue.is_empty())
    }

    /// Runs a batch of requests another shard forwarded, or as much of it as fits this pass's
    /// reply batch for that shard; the rest waits, behind anything that shard sent earlier.
    fn take_forwarded(&mut self, batch: RequestBatch) {
        let from = batch.from;
        let mut work = Forwarded {
            batch,
            next: 0,
            run: None,
        };
        if self.backlog[from].is_empty() {
            self.execute_forwarded(&mut work, true);
            if work.next == work.batch.requests.len() {
                return;
            }
        }
        self.backlog[from].push_back(work);
    }

    /// Runs waiting forwarded requests, in arrival order per sending shard: up to each reply
    /// batch's cap when `capped`, all of them otherwise.
    fn run_backlog(&mut self, capped: bool) {
        for from in 0..self.backlog.len() {
            while let Some(mut work) = self.backlog[from].pop_front() {
                self.execute_forwarded(&mut work, capped);
                if work.next < work.batch.requests.len() {
                    self.backlog[from].push_front(work);
                    break;
                }
            }
        }
    }

    /// Executes requests another shard forwarded, from `work.next` on, into the reply batch
    /// for that shard; stops early (when `capped`) once that batch is full.
    ///
    /// # Why a forwarded request carries its approval
    /// The sending shard authorized each request against its own ACL and catalog copies.
    /// Between that and this run, a REVOKE, DROP PARTITION or DROP USER may have been
    /// acknowledged by every shard and answered `+OK`: the sender acknowledges a version while
    /// requests approved under the old one still sit in its outbox (the ack leaves from
    /// `drain_inbox`, the outboxes after the commit), or in our backlog. Acknowledging only
    /// once they have *left* would not be enough, since we may run them after the `+OK`; we
    /// would have to acknowledge once they have *run*, a round trip through every owner per
    /// change. Instead the request names what it was approved for, and the owner checks:
    /// - the partition by id, not by name: a name dropped (and created again) since answers
    ///   `-NOPARTITION`, so a request never lands in a partition it was not approved for;
    /// - the ACL version: when ours is newer than the one it was approved under, the user
    ///   (by id: a dropped and re-created user is someone else) is authorized again against
    ///   our ACL. The common case costs one compare; a change costs one check per request in
    ///   flight at that moment.
    ///
    /// Our version is at least the new one once REVOKE has answered (every shard applied it
    /// before acknowledging), so no request approved under the old version runs after that.
    fn execute_forwarded(&mut self, work: &mut Forwarded, capped: bool) {
        let batch = &work.batch;
        let requests = &batch.requests[work.next..];
        if work.next == 0 {
            // Same two-step prefetch as for a connection's batch (see `Core::prefetch`).
            prefetch_keys(
                &self.routes,
                requests.iter().filter_map(|r| {
                    let args = batch.args(r);
                    (args.len() >= 3).then(|| (args.get(1), args.get(2)))
                }),
            );
        }
        let from = batch.from;
        let out = &mut self.reply_outboxes[from];
        let metrics = &self.shared.metrics.shards[self.id];
        let memory = MemoryBudget::new(self.shared.config.max_memory, &self.shared.metrics);
        // The user of the last request that needed authorizing again, looked up once per run.
        let mut reauthorized: Option<(u64, Option<Arc<User>>)> = None;
        let mut executed = 0;
        for request in requests {
            if capped && out.is_full() {
                break;
            }
            executed += 1;
            let args = batch.args(request);
            // Reply bytes built so far for the current run of one connection's requests
            // (here or in earlier passes): together they may not pass what was left of its
            // output limit when they left, or a pipeline of large GETs would pile up before
            // its own shard could count them. (A connection's requests come in runs, one per
            // time its shard serviced it in a pass.)
            let built = match work.run {
                Some((conn, bytes)) if conn == request.conn => bytes,
                _ => 0,
            };
            let limits = DataLimits {
                max_key_len: self.max_key_len,
                max_value_len: self.shared.config.limits.max_bulk_len,
                max_keys_reply: self.shared.config.max_keys_reply,
                memory,
                max_reply: (request.max_reply as usize).saturating_sub(built),
            };
            let start = out.buf.len();
            let mut w = ReplyWriter::new(&mut out.buf, request.protocol);
            let allowed = if request.acl_version < self.acl.version {
                let user = match &reauthorized {
                    Some((id, user)) if *id == request.user => user.clone(),
                    _ => {
                        let user = self.acl.user_by_id(request.user).cloned();
                        reauthorized = Some((request.user, user.clone()));
                        user
                    }
                };
                lookup(&args)
                    .and_then(|spec| authorize(spec, &args, user.as_deref(), &self.catalog))
            } else {
                Ok(())
            };
            let spec = request.command.spec();
            let name = spec.partition_name(&args);
            let result = match self.routes.get_mut(name) {
                _ if allowed.is_err() => allowed,
                Some(Target::Local(local)) if local.id == request.partition => match &mut local.log
                {
                    // A durable write: the batch leaves after the commit, which may still
                    // patch this reply into -IOERR.
                    Durability::Logged(log) if spec.is_write() => {
                        let writes = log.journal.writes();
                        let journal = Some(&mut log.journal);
                        let partition = &mut local.data;
                        let result =
                            execute_data(spec, &args, partition, journal, limits, metrics, &mut w);
                        if log.journal.writes() > writes {
                            self.commit.logged(writes == 0, name, local.id);
                            let index = out.replies.len();
                            self.commit
                                .hold_remote(from, index, request.protocol, local.id);
                        }
                        result
                    }
                    Durability::Broken(why) if spec.is_write() => Err(CommandError::Io(format!(
                        "{why}; the write was not applied"
                    ))),
                    _ => execute_data(spec, &args, &mut local.data, None, limits, metrics, &mut w),
                },
                // Dropped (or moved, or dropped and created again) since the sender routed it.
                _ => Err(CommandError::NoPartition(printable(name))),
            };
            let over_output_limit = matches!(result, Err(CommandError::ReplyTooLarge));
            match result {
                Err(e) if !over_output_limit => e.write_to(&mut w),
                _ => {}
            }
            let built = if over_output_limit {
                usize::MAX
            } else {
                built.saturating_add(out.buf.len() - start)
            };
            work.run = Some((request.conn, built));
            out.replies.push(mailbox::ForwardedReply {
                conn: request.conn,
                seq: request.seq,
                end: out.buf.len() as u64,
                over_output_limit,
            });
        }
        work.next += executed;
        ShardMetrics::add(
            &self.shared.metrics.shards[self.id].forwarded_in,
            executed as u64,
        );
    }

    /// Sends this pass's outboxes: one message per destination shard, then catalog changes.
    fn flush_outboxes(&mut self) {
        let metrics = &self.shared.metrics.shards[self.id];
        for shard in 0..self.outboxes.len() {
            if !self.outboxes[shard].is_empty() {
                let mut batch = std::mem::take(&mut self.outboxes[shard]);
                batch.from = self.id;
                self.shared.shards[shard].send(Message::Requests(batch));
                ShardMetrics::add(&metrics.batches_out, 1);
            }
            if !self.reply_outboxes[shard].replies.is_empty() {
                let batch = std::mem::take(&mut self.reply_outboxes[shard]);
                self.shared.shards[shard].send(Message::Replies(batch));
                ShardMetrics::add(&metrics.batches_out, 1);
            }
        }
        for change in self.changes.drain(..) {
            self.shared.shards[COORDINATOR].send(change);
        }
    }

    /// Switches to a new catalog version: creates the partitions this shard now owns, drops
    /// the ones that are gone, and rebuilds the routes.
    fn apply_catalog(&mut self, catalog: Arc<Catalog>) {
        let mut old = std::mem::take(&mut self.routes);
        let mut owned = 0;
        // Memory of the partitions this shard no longer owns, and of those recovered.
        let mut freed = 0;
        let mut added = 0;
        for (name, meta) in &catalog.partitions {
            let key: Box<[u8]> = name.as_bytes().into();
            let target = if meta.shard == self.id {
                owned += 1;
                match old.remove(&key) {
                    // Same partition as before (a name dropped and created again has a new id).
                    Some(Target::Local(p)) if p.id == meta.id => Target::Local(p),
                    previous => {
                        if let Some(Target::Local(p)) = previous {
                            freed += p.data.used_memory();
                            self.retire(p);
                        }
                        let local = self.open_partition(meta);
                        added += local.data.used_memory();
                        Target::Local(local)
                    }
                }
            } else {
                Target::Remote {
                    shard: meta.shard,
                    id: meta.id,
                }
            };
            self.routes.insert(key, target);
        }
        self.shared.metrics.shards[self.id]
            .partitions
            .store(owned, Ordering::Relaxed);
        self.catalog = catalog;
        // Whatever is left in `old` was dropped: its memory goes now, and its files.
        for (_, target) in old.drain() {
            if let Target::Local(p) = target {
                freed += p.data.used_memory();
                self.retire(p);
            }
        }
        self.count_durable();
        let gauge = &self.shared.metrics.shards[self.id].used_memory;
        ShardMetrics::set(
            gauge,
            (ShardMetrics::get(gauge) + added).saturating_sub(freed),
        );
    }
}

/// Runs a data command on a partition this shard owns, and keeps the shard's memory gauge
/// (what every shard's `max-memory` check reads) in step with the partition's estimate.
///
/// Always inline (each caller is one request's path, local or forwarded): out of line, its
/// arguments and its large `Result` go through memory (inline: GET 1442 -> 1423 user-space
/// instructions per request, SET 2096 -> 2073, `scripts/count-instructions.sh`).
#[inline(always)]
fn execute_data(
    spec: &CommandSpec,
    args: &Args,
    partition: &mut Partition,
    journal: Option<&mut crate::persist::Journal>,
    limits: DataLimits,
    metrics: &ShardMetrics,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let before = partition.used_memory();
    let result = data::execute(spec, args, partition, journal, limits, w);
    let after = partition.used_memory();
    if after != before {
        let gauge = &metrics.used_memory;
        ShardMetrics::set(
            gauge,
            (ShardMetrics::get(gauge) + after).saturating_sub(before),
        );
    }
    if matches!(result, Err(CommandError::OutOfMemory)) {
        ShardMetrics::add(&metrics.oom_rejections, 1);
    }
    result
}

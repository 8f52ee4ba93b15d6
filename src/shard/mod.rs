//! The shard: one pinned thread, its `mio::Poll`, its connections and its partitions.
//!
//! # Invariants
//! - A partition is owned by exactly one shard and touched only by that shard's thread, so a
//!   command on a partition runs alone, without locks. No `Mutex`/`RwLock` exists in here.
//! - A connection is touched by one shard at a time: it moves, idle and whole, only to the
//!   owner of the partitions it uses (`session`) or, using none, onto a lower-numbered shard
//!   with room (`gather`).
//! - The event loop never blocks except in `poll` and in the disk work of durable partitions,
//!   done at most once per pass and never per request: the group commit's `write` and
//!   `fdatasync` (that wait is what SYNC promises), the ASYNC fsync every 500 ms, one slice of
//!   a compaction, and the coordinator's catalog fsyncs on CREATE/ALTER/DROP; and, the one
//!   exception bounded by a partition's size rather than by a pass, the whole snapshot an
//!   `ALTER PARTITION ... SET persist ASYNC|SYNC` of a MEMORY partition writes on its shard
//!   before the ALTER answers (`durability::Core::change_persist`).
//!
//! # One pass of the loop
//! 1. `poll` for socket events (without blocking when work is already waiting, or for
//!    the idle poll after the last work, which a client's next request usually arrives
//!    within: [`idle_poll`]),
//!    for no longer than until the next housekeeping step is due.
//! 2. For each readable connection: read (bounded), parse every complete request, and for each
//!    one either execute it now (local partition, connection command) with its reply encoded
//!    into the connection's reply queue, or copy it into the outbox of the shard that owns its
//!    partition, keeping a waiting slot for its reply.
//! 3. Drain the inbox: execute request batches from other shards (their replies go into a
//!    reply outbox per shard, up to its cap; the rest waits for the next pass, ahead of
//!    anything newer from that shard), fill slots from reply batches, apply catalog and ACL
//!    versions, answer logins the hasher pool has checked.
//! 4. Housekeeping that changes partitions, when due (`expire-cycle`, the active expiry
//!    sweep), so that what it logs joins this pass's commit.
//! 5. Group commit ([`durability`]): write this pass's log records, one `write` per durable
//!    partition with writes and one `fdatasync` per SYNC one; release the replies held for
//!    them, or turn them into `-IOERR` and roll the writes back. With replicas attached, what
//!    committed (and what MEMORY partitions recorded) goes into their feeds.
//! 6. Send every non-empty outbox as one message per destination (one wake at most).
//! 7. Write every connection with new output, in one `write` when the socket takes it all.
//! 8. Housekeeping that makes no reply, when due: the ASYNC fsync, a slice of any compaction
//!    in progress, a slice of each replica's full sync, the idle sweep (once a second, when
//!    `timeout` is on), the count of failed logins not logged one by one.
//! 9. While shutting down: exit once every shard has finished its replies.
//!
//! Steps 5 to 7 are in that order so that no reply to a durable write, local or forwarded,
//! leaves before its record is on disk as its persist mode promises. The housekeeping steps
//! are a list, each with a name and a time budget: see `housekeeping`, which also says how to
//! add one.
//!
//! # Where each part lives
//! The way of one request, file by file:
//! - `input`: reading a connection, framing its requests in batches, prefetching their keys;
//! - `dispatch`: authorizing a request and routing it: run here, forward, coordinator, login;
//! - `forward`: running batches other shards forwarded, filling slots from their replies,
//!   sending the outboxes;
//! - [`durability`]: the group commit that durable writes wait for, recovery, ASYNC fsync and
//!   compaction;
//! - `output`: writing replies out, and what follows progress (resume, move, close);
//! - `session`: logins, changes waited for behind a barrier, ACL versions, migration;
//! - `gather`: where a connection that uses no partition moves (the lowest-numbered shard
//!   with room), so that shards with nothing else to do sleep;
//! - `replicate`: replication's shard side: feeds to replicas, full-sync walks, the commit's
//!   frames, and (on a replica) applying what the link sends ([`crate::replication`]);
//! - `transaction`: MULTI's queue, EXEC run in one go on the partition's shard, WATCH;
//! - `clients`: CLIENT LIST, INFO and KILL across shards, and MONITOR's lines;
//! - `routes`: where each partition lives, and applying a new catalog;
//! - `housekeeping/`: the per-pass steps no request asks for, one file each;
//! - `shutdown`: draining before exit;
//! - [`connection`], [`mailbox`], [`coordinator`]: a connection's buffers and reply queue, the
//!   messages between threads, the catalog coordinator (shard 0 only).
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
//! - Requests waiting for other shards: at most `input::MAX_IN_FLIGHT`; reading pauses past
//!   it.
//! - A MULTI queue: at most the `client-output-limit` of arguments (`command::multi`);
//!   watched keys: at most `transaction::MAX_WATCH_BYTES`, kept on the partition's shard.
//! - Output: reading pauses while `input::OUTPUT_HIGH_WATER` bytes are unwritten, so a client
//!   that pipelines without reading costs little. What can still pile up is replies already on
//!   their way: one large read, or forwarded replies coming back. For those the
//!   `client-output-limit` holds: a read whose reply would not fit what is left of it is not
//!   built (here, or on the shard that executes it for us: a forwarded request carries what
//!   was left of the limit when it left), and a connection whose pending replies (unwritten +
//!   parked) pass it is closed on the spot.
//! - TLS (see [`crate::tls`]): rustls holds at most one handshake message (64 KiB) of a
//!   connection's input and 64 KiB of its encrypted output (past it the replies wait in the
//!   reply queue, under the limits above); a handshake not done within
//!   `tls-handshake-timeout-ms` closes the connection (`housekeeping/tls_handshakes.rs`).
//! - Replies built for another shard's connections: at most
//!   [`mailbox::REPLY_BATCH_BYTES`] (plus one reply) per requesting shard per pass; the
//!   rest of its requests wait in `Core::backlog` for the next pass.

mod clients;
pub mod connection;
pub mod coordinator;
mod dispatch;
pub mod durability;
mod flushall;
mod forward;
mod gather;
mod housekeeping;
mod input;
pub mod mailbox;
mod observe;
mod output;
mod pubsub;
mod replicate;
mod routes;
mod session;
mod shutdown;
mod tls;
mod transaction;
mod wait;

pub use clients::Monitors;
pub use shutdown::Shutdown;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::acl::hasher::{Hasher, LoginCache};
use crate::acl::Acl;
use crate::catalog::Catalog;
use crate::command::data::DataLimits;
use crate::config::Config;
use crate::log_limit::RateLimitedWarn;
use crate::metrics::{ServerMetrics, ShardMetrics};
use crate::store::MemoryBudget;

use connection::Connection;
use coordinator::Coordinator;
use durability::{GroupCommit, LocalPartition};
use forward::Forwarded;
use housekeeping::{Housekeeping, Phase};
use input::Batch;
use mailbox::{ConnRef, Mailbox, Message, ReplyBatch, RequestBatch, ShardHandle};
use routes::Routes;

/// The inbox's waker. Connection tokens are slab indexes, which never reach this value.
pub const WAKER: Token = Token(usize::MAX);

/// The shard that runs the catalog coordinator.
pub const COORDINATOR: usize = 0;

/// The idle poll (`--idle-poll-us`, live; 50 µs by default): how long a shard that just
/// had work keeps polling without blocking before it sleeps in `poll`. A client that answers
/// each reply with its next request (`redis-benchmark -P 1`: a few microseconds later) then
/// finds the shard awake: it does not have to wake a sleeping thread from its `write`, and
/// the shard does not pay the context switch. On the 2-core machine, GET `-P 1` at
/// `--shards 2` had a voluntary context switch every 2.3 requests, Redis one every 40
/// (`scripts/wakeups.sh`): the idle poll is what Redis gets for free by being slower. Short
/// enough that an idle shard stops within one tick of the scheduler; a pass that finds
/// nothing yields the core to any thread waiting for it (the client, when it shares the
/// core) and does not count as busy (`busy_ns`, which gathering reads). 0 sleeps at once.
///
/// It pays only for clients that wait for each reply before they send again: a pass that
/// served a pipelining client's batch (`-P 16`) is followed by the next batch anyway, and
/// polling in between only costs CPU (about 20% per request at `-P 16`, measured), so the
/// shard spins after a pass only when that pass served at most two requests per readable
/// connection ([`spin_pays`]).
fn idle_poll(config: &crate::config::Config) -> Duration {
    Duration::from_micros(config.live.idle_poll_us())
}

/// Whether the idle poll pays after a pass that ran `commands` requests for `conn_events`
/// readable connections (and any number of messages from other shards): true for clients
/// that send one request at a time.
fn spin_pays(commands: u64, conn_events: usize) -> bool {
    commands <= 2 * conn_events.max(1) as u64
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
    /// With a `--tls-port`: the certificate new TLS connections get, and its reload
    /// ([`crate::tls::TlsContext::reload`]).
    pub tls: Option<Arc<crate::tls::TlsContext>>,
    /// Replication: role, offsets, feeds, the link (`crate::replication`).
    pub replication: Arc<crate::replication::State>,
    /// Connections in MONITOR mode, in all and per shard (`clients`).
    pub monitors: Monitors,
}

impl Shared {
    /// The limits a data command runs under, from the configuration, with `max_reply` bytes
    /// left of its client's output limit.
    #[inline]
    pub(super) fn data_limits(&self, max_reply: usize) -> DataLimits<'_> {
        let config = &self.config;
        DataLimits {
            max_key_len: config.live.max_key_len(),
            max_value_len: config.limits.max_bulk_len,
            max_keys_reply: config.live.max_keys_reply(),
            memory: MemoryBudget::new(config.live.max_memory(), &self.metrics),
            max_reply,
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
    /// `client-output-limit`, in bytes.
    output_limit: usize,
    /// Coarse clock: read once per loop pass, used for idle time.
    now: Instant,
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
    /// SLOWLOG/LATENCY questions to send after the outboxes (see `observe`): (shard, message).
    questions: Vec<(usize, Message)>,
    /// Questions of this shard's connections waiting for every shard's answer.
    gatherings: Vec<observe::Gathering>,
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
    /// The GoKV form of a Redis-grammar request, built just before it runs (reused by
    /// `process_input`; connections in GoKV grammar never touch it).
    redis_form: crate::command::face::RedisForm,
    /// This shard has counted itself out of `Shutdown::draining`.
    drain_reported: bool,
    /// This pass's durable writes and the replies held for their commit.
    commit: GroupCommit,
    /// Partitions loaded by recovery, until the first catalog takes them.
    recovered: hashbrown::HashMap<u64, LocalPartition>,
    /// TLS connections in their handshake, with its deadline, oldest first (see `tls`).
    tls_handshakes: VecDeque<(ConnRef, Instant)>,
    /// The line for TLS connections refused (bad handshake, certificate, timeout), at most
    /// one a second: a peer can cause them as fast as it connects.
    tls_refusals: RateLimitedWarn,
    /// Replicas attached to this shard, and the pass's frames for them (`replicate`).
    feeds: replicate::Feeds,
    /// CLIENT LIST, INFO and KILL of this shard's connections waiting for shards' answers.
    gathers: Vec<clients::Gather>,
    /// This pass's MONITOR lines, sent to the monitors' shards at its end (`clients`).
    monitor_feed: Vec<u8>,
    /// This shard's connections in MONITOR mode.
    monitor_conns: Vec<ConnRef>,
    /// Connections' WATCHes of this shard's partitions (`transaction`).
    watches: transaction::Watches,
    /// Its connections' parked `WAIT`s (`wait`).
    waits: wait::Waits,
    /// This shard's Pub/Sub subscribers and messages in flight (`pubsub`).
    pubsub: pubsub::PubSub,
    /// This shard's view of every shard's busy share, for gathering (`gather`).
    loads: gather::Loads,
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
            output_limit: config.live.client_output_limit(),
            now,
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
            questions: Vec::new(),
            gatherings: Vec::new(),
            coordinator,
            next_generation: 0,
            to_write: Vec::new(),
            to_service: Vec::new(),
            draining: false,
            batch: Batch::default(),
            redis_form: Default::default(),
            drain_reported: false,
            commit: GroupCommit::default(),
            recovered: hashbrown::HashMap::new(),
            tls_handshakes: VecDeque::new(),
            tls_refusals: RateLimitedWarn::new("TLS connections refused", now),
            feeds: replicate::Feeds::default(),
            gathers: Vec::new(),
            monitor_feed: Vec::new(),
            monitor_conns: Vec::new(),
            watches: Default::default(),
            waits: wait::Waits::default(),
            pubsub: pubsub::PubSub::new(shards),
            loads: gather::Loads::default(),
        };
        core.recover(&catalog)?;
        // At startup no persist change is pending (recovery opened every durable partition).
        let _ = core.apply_catalog(catalog);
        Ok(Shard {
            poll,
            mailbox,
            conns: Slab::new(),
            core,
        })
    }

    /// Runs the event loop until shutdown completes.
    pub fn run(mut self) {
        crate::metrics::count_errors_of(self.core.shared.metrics.clone(), self.core.id);
        let mut events = Events::with_capacity(1024);
        let mut drain_started: Option<Instant> = None;
        let config = self.core.shared.config.clone();
        let mut housekeeping = Housekeeping::new(self.core.id, &config, self.core.now);
        // When a pass last found a socket event or a message (see `idle_poll`).
        let mut worked_at = self.core.now;
        // The pass that ended polled only because of the spin, and found nothing.
        let mut idle_spin = false;
        // The last pass that worked served its clients' requests one or two at a time (see
        // `spin_pays`).
        let mut unpipelined = false;
        loop {
            let now = Instant::now();
            // The pass that ended: poll's return (`core.now`) to here, for the busy-time
            // counter (`gokv_shard_busy_seconds_total`): the clock reads are the ones the
            // loop takes anyway, so this is a subtraction and a store a pass. A pass of the
            // spin that found nothing is not busy.
            if !idle_spin {
                let busy = &self.core.shared.metrics.shards[self.core.id].busy_ns;
                ShardMetrics::add(
                    busy,
                    now.saturating_duration_since(self.core.now).as_nanos() as u64,
                );
            }
            let due = housekeeping.due_in(&self, now);
            let mut spin = false;
            let timeout = if !self.core.to_service.is_empty()
                || self.core.has_backlog()
                || due == Some(Duration::ZERO)
            {
                Some(Duration::ZERO)
            } else if self.core.draining {
                // While draining, check often whether every shard is done.
                Some(Duration::from_millis(5).min(due.unwrap_or(Duration::MAX)))
            } else if unpipelined && now.saturating_duration_since(worked_at) < idle_poll(&config) {
                // Work came lately: more is likely within microseconds (`idle_poll`).
                spin = true;
                Some(Duration::ZERO)
            } else if self.mailbox.prepare_to_sleep() {
                // Idle: sleep until an event or the next housekeeping step is due.
                due
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
            // A live setting (CONFIG SET) read once a pass: the copy every request reads.
            self.core.output_limit = self.core.shared.config.live.client_output_limit();
            // The instant every command of this pass sees (expiry, see `store::clock`).
            crate::store::clock::start_pass();
            let mut worked = !events.is_empty();
            let commands_before = self.core.commands_run();
            let conn_events = events.iter().filter(|e| e.token() != WAKER).count();

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
            // The `drain` latency event, measured only while the monitor is on.
            let inbox_started = crate::latency::on().then(Instant::now);
            worked |= self.drain_inbox();
            if worked {
                worked_at = self.core.now;
                unpipelined = spin_pays(self.core.commands_run() - commands_before, conn_events);
            }
            idle_spin = spin && !worked;
            if idle_spin {
                // A polite spin: a thread waiting for this core (on a machine shared with
                // the client, often the client itself) runs first.
                std::thread::yield_now();
            }
            if let Some(started) = inbox_started {
                crate::latency::record_since(crate::latency::Event::Drain, started);
            }
            housekeeping.run(Phase::BeforeCommit, &mut self);
            // Before anything leaves: replies to durable writes wait for their commit.
            self.commit();
            self.core.flush_outboxes();
            self.flush_writes();
            housekeeping.run(Phase::AfterWrites, &mut self);

            if self.core.draining {
                let started = *drain_started.get_or_insert_with(Instant::now);
                if self.drain_step(started) {
                    self.sync_all();
                    return;
                }
            }
        }
    }

    /// Closes a connection now: unanswered replies are dropped, its client slot is freed.
    fn close(&mut self, index: usize) {
        if !self.conns.contains(index) {
            return;
        }
        let mut conn = self.conns.remove(index);
        // A TLS peer is told the end is deliberate (close_notify), as far as the socket takes
        // it now; a plain one is only closed. (Not a replica: its session goes on as a feed.)
        if conn.session.replica_port.is_none() {
            conn.socket.close_notify();
        }
        if let Err(e) = self.poll.registry().deregister(conn.socket.tcp()) {
            log::debug!("deregister {}: {e}", conn.peer);
        }
        if conn.session.monitoring {
            self.core.monitor_gone(conn.conn_ref);
        }
        if conn.session.watching.is_some() {
            self.core.unwatch_all(conn.conn_ref, &mut conn.session);
        }
        if let Some(subs) = conn.session.pubsub.take() {
            self.pubsub_closed(conn.conn_ref, &subs);
        }
        let metrics = &self.core.shared.metrics.shards[self.core.id];
        ShardMetrics::sub(&metrics.connections, 1);
        self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
        // A replica that was answered `+FULLSYNC`: its socket becomes its feed.
        // (`REPLSYNC` needs a login with ADMIN on `*`, so it has a user.)
        if let (Some(port), Some(user)) = (conn.session.replica_port, conn.session.user.take()) {
            let resume = conn.session.replica_resume.take();
            let announce_ip = conn.session.replica_ip.take();
            self.become_feed(conn.socket, conn.peer, port, user, announce_ip, resume);
        }
    }

    /// Step 3 of the pass: everything other threads sent, each message to its handler.
    /// True when there was any.
    fn drain_inbox(&mut self) -> bool {
        // What earlier passes left for lack of room in a reply batch goes first.
        self.core.run_backlog(true);
        let mut any = false;
        while let Some(message) = self.mailbox.try_recv() {
            any = true;
            match message {
                Message::NewConnection(socket, peer) => self.accept(socket, peer),
                Message::Migrate(conn) => self.adopt(conn),
                Message::Requests(batch) => self.core.take_forwarded(batch),
                Message::Replies(batch) => self.take_replies(batch),
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
                    let failed = if !Arc::ptr_eq(&self.core.catalog, &catalog) {
                        self.core.apply_catalog(catalog)
                    } else {
                        None
                    };
                    if !Arc::ptr_eq(&self.core.acl, &acl) {
                        self.apply_acl(acl);
                        self.recheck_subscribers();
                        self.recheck_monitors();
                    }
                    self.core.shared.shards[COORDINATOR].send(Message::UpdateAck { epoch, failed });
                }
                Message::UpdateAck { epoch, failed } => {
                    let shards = &self.core.shared.shards;
                    if let Some(coordinator) = &mut self.core.coordinator {
                        coordinator.ack(epoch, failed, shards);
                    }
                }
                Message::AuthChecked {
                    reply_to,
                    user_id,
                    hash,
                    ok,
                } => self.finish_login(reply_to, user_id, hash, ok),
                Message::ChangeDone { reply_to, result } => self.finish_change(reply_to, result),
                Message::Clients { reply_to, query } => self.answer_clients(reply_to, &query),
                Message::ClientsAnswer {
                    reply_to,
                    lines,
                    killed,
                } => self.take_clients_answer(reply_to, lines, killed),
                Message::MonitorFeed(feed) => self.feed_local_monitors(&feed),
                Message::Publish(batch) => self.take_publish(&batch),
                Message::Published(counts) => self.take_published(&counts),
                Message::PubsubQuery { from, token, query } => {
                    self.answer_pubsub(from, token, &query)
                }
                Message::PubsubAnswer { token, answer } => self.take_pubsub_answer(token, answer),
                Message::Shutdown => self.begin_drain(),
                Message::Reconfigured => {}
                Message::Observe { reply_to, query } => self.answer_observe(reply_to, query),
                Message::Observed { reply_to, answer } => self.take_observed(reply_to, answer),
                Message::FeedAttach(feed) => {
                    let shards = &self.core.shared.shards;
                    match &mut self.core.coordinator {
                        Some(coordinator) => coordinator.attach_feed(feed, shards),
                        None => log::error!(
                            "shard {} got a replica but is not the coordinator",
                            self.core.id
                        ),
                    }
                }
                Message::FeedStart(feed) => self.core.start_feed(feed),
                Message::ReplApply(batch) => {
                    for (channel, payload) in self.core.apply_replicated(*batch) {
                        self.deliver_replicated(&channel, &payload);
                    }
                }
                Message::ReplAcked => {}
                Message::ReplInstall {
                    generation,
                    catalog,
                    acl,
                    done,
                } => {
                    let shards = &self.core.shared.shards;
                    let current = self
                        .core
                        .shared
                        .replication
                        .status
                        .generation
                        .load(Ordering::Relaxed);
                    match &mut self.core.coordinator {
                        Some(_) if generation != current => {
                            let _ = done.send(Err("the link was replaced".into()));
                        }
                        Some(coordinator) => coordinator.install(catalog, acl, done, shards),
                        None => log::error!(
                            "shard {} got a replicated catalog but is not the coordinator",
                            self.core.id
                        ),
                    }
                }
            }
        }
        any
    }

    /// Takes in a new connection from the acceptor.
    fn accept(&mut self, socket: crate::tls::stream::Transport, peer: std::net::SocketAddr) {
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
            socket.tcp(),
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
        if let crate::tls::stream::Transport::Tls(tls) = &socket {
            if let Some(deadline) = tls.handshake_deadline {
                self.core.tls_handshakes.push_back((conn_ref, deadline));
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::spin_pays;

    /// The idle poll follows a pass of clients that send a request at a time (or only
    /// messages from other shards), not one that served pipelined batches.
    #[test]
    fn the_idle_poll_pays_only_after_unpipelined_passes() {
        assert!(spin_pays(0, 0), "messages only");
        assert!(spin_pays(1, 1));
        assert!(spin_pays(50, 50), "50 -P 1 clients");
        assert!(spin_pays(2, 0), "forwarded requests run for other shards");
        assert!(!spin_pays(16, 1), "one -P 16 batch");
        assert!(!spin_pays(800, 50), "50 -P 16 clients");
    }
}

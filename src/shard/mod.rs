//! The shard: one pinned thread, its `mio::Poll`, its connections and its partitions.
//!
//! # Invariants
//! - A partition is owned by exactly one shard and touched only by that shard's thread, so a
//!   command on a partition runs alone, without locks. No `Mutex`/`RwLock` exists in here.
//! - A connection lives on one shard for its whole life.
//! - The event loop never blocks except in `poll`.
//!
//! # One pass of the loop
//! 1. `poll` for socket events (without blocking when work is already waiting).
//! 2. For each readable connection: read (bounded), parse every complete request, and for each
//!    one either execute it now (local partition, connection command) with its reply encoded
//!    into the connection's reply queue, or copy it into the outbox of the shard that owns its
//!    partition, keeping a waiting slot for its reply.
//! 3. Drain the inbox: execute request batches from other shards (their replies go into a
//!    reply outbox per shard), fill slots from reply batches, apply catalog and ACL versions,
//!    answer logins the hasher pool has checked.
//!
//! # Access control
//! Every request is checked against the session's user, as of this shard's own copy of the
//! ACL, before it is routed ([`crate::command::access`]); a forwarded request was allowed by
//! the shard that forwarded it. Password checks never run here: they go to the hasher pool
//! ([`crate::acl::hasher`]) while the connection waits behind a barrier.
//! 4. Send every non-empty outbox as one message per destination (one wake at most).
//! 5. Write every connection with new output, in one `write` when the socket takes it all.

pub mod connection;
pub mod coordinator;
pub mod mailbox;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::acl::hasher::{Hasher, Job, LoginCache, NewPassword};
use crate::acl::{Acl, AclChange, User};
use crate::catalog::Catalog;
use crate::command::access::authorize;
use crate::command::data::{self, DataLimits};
use crate::command::error::printable;
use crate::command::partition as partition_cmd;
use crate::command::server::{self as server_cmd, PendingLogin, ServerView, MAX_AUTH_FAILURES};
use crate::command::user as user_cmd;
use crate::command::{lookup, CommandError, CommandId, Route};
use crate::config::Config;
use crate::metrics::{ServerMetrics, ShardMetrics};
use crate::protocol::{Args, Parsed, ReplyWriter, Span};
use crate::store::Partition;

use connection::{Connection, ReadOutcome};
use coordinator::Coordinator;
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
enum Target {
    Local(Partition),
    Remote(usize),
}

type Routes = hashbrown::HashMap<Box<[u8]>, Target, ahash::RandomState>;

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
    /// Partition name -> the partition itself (local) or its shard: one hash lookup routes a
    /// request and, when local, finds its table.
    routes: Routes,
    data_limits: DataLimits,
    /// Requests for each other shard, collected during this pass.
    outboxes: Vec<RequestBatch>,
    /// Replies to each other shard's forwarded requests, collected during this pass.
    reply_outboxes: Vec<ReplyBatch>,
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

    pub fn new(
        id: usize,
        poll: Poll,
        mailbox: Mailbox,
        shared: Arc<Shared>,
        catalog: Arc<Catalog>,
        acl: Arc<Acl>,
    ) -> Self {
        let shards = shared.shards.len();
        let coordinator = (id == COORDINATOR).then(|| {
            Coordinator::new(catalog.clone(), acl.clone(), shared.config.data_dir.clone())
        });
        let data_limits = DataLimits {
            max_key_len: shared.config.max_key_len,
        };
        let mut core = Core {
            id,
            shared,
            catalog: Arc::new(Catalog::default()),
            acl,
            login_cache: LoginCache::new(),
            routes: Routes::default(),
            data_limits,
            outboxes: (0..shards).map(|_| RequestBatch::default()).collect(),
            reply_outboxes: (0..shards).map(|_| ReplyBatch::default()).collect(),
            changes: Vec::new(),
            coordinator,
            next_generation: 0,
            to_write: Vec::new(),
            to_service: Vec::new(),
            draining: false,
            batch: Batch::default(),
            drain_reported: false,
        };
        core.apply_catalog(catalog);
        Shard {
            poll,
            mailbox,
            conns: Slab::new(),
            core,
        }
    }

    /// Runs the event loop until shutdown completes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut drain_started: Option<Instant> = None;
        loop {
            let timeout = if !self.core.to_service.is_empty() {
                Some(Duration::ZERO)
            } else if self.core.draining {
                // While draining, check often whether every shard is done.
                Some(Duration::from_millis(5))
            } else if self.mailbox.prepare_to_sleep() {
                None
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("shard {}: poll failed: {e}", self.core.id);
                }
            }
            self.mailbox.woke_up();

            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue;
                }
                let index = token.0;
                if !self.conns.contains(index) {
                    continue; // closed earlier in this pass
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
            self.core.flush_outboxes();
            self.flush_writes();

            if self.core.draining {
                let started = *drain_started.get_or_insert_with(Instant::now);
                if self.drain_step(started) {
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
        let outcome = if conn.closing || is_paused(conn) {
            None
        } else {
            match conn.read(READ_BUDGET) {
                Ok(outcome) => Some(outcome),
                Err(e) => {
                    log::debug!("read from {}: {e}", conn.peer);
                    self.close(index);
                    return;
                }
            }
        };
        let stalled = self.core.process_input(index, conn);
        match outcome {
            Some(ReadOutcome::Closed) => conn.closing = true,
            // Input may remain in the socket: come back after the other connections.
            Some(ReadOutcome::More) if !conn.closing => {
                conn.needs_service = true;
                if !is_paused(conn) {
                    self.core.to_service.push(index);
                }
            }
            // Paused before reading, or paused with requests left in the buffer: resume when
            // the pause ends (replies drained, catalog change answered).
            _ if stalled || (outcome.is_none() && !conn.closing) => conn.needs_service = true,
            _ => {}
        }
        if conn.session.shutdown_requested {
            self.core.shared.shutdown.request();
        }
        self.after_progress(index);
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
            match conn.replies.write_to(&mut conn.socket) {
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
        while let Some(message) = self.mailbox.try_recv() {
            match message {
                Message::NewConnection(socket, peer) => self.accept(socket, peer),
                Message::Requests(batch) => self.core.execute_forwarded(batch),
                Message::Replies(batch) => {
                    for (conn_ref, seq, bytes) in batch.iter() {
                        let index = conn_ref.index as usize;
                        match self.conns.get_mut(index) {
                            Some(conn) if conn.conn_ref == conn_ref => {
                                conn.replies.fill(seq, bytes);
                            }
                            // The connection closed while its request was away.
                            _ => continue,
                        }
                        self.after_progress(index);
                    }
                }
                Message::Change { reply_to, change } => {
                    let shards = &self.core.shared.shards;
                    match &mut self.core.coordinator {
                        Some(coordinator) => coordinator.submit(reply_to, change, shards),
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
        let Some(PendingLogin { user, mac, hello }) = conn.session.pending_login.take() else {
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
                log::warn!(
                    "failed login as '{}' from {} ({failures} in a row)",
                    log_safe(&user),
                    conn.peer
                );
                CommandError::WrongPass.write_to(&mut w);
                if failures >= MAX_AUTH_FAILURES {
                    log::warn!(
                        "closing the connection from {}: {failures} failed logins in a row",
                        conn.peer
                    );
                    conn.closing = true;
                }
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
            .filter(|(_, conn)| {
                conn.session.user.as_ref().is_some_and(|user| {
                    self.core.acl.users.get(&user.name).map(|u| u.id) != Some(user.id)
                })
            })
            .map(|(index, _)| index)
            .collect();
        for index in gone {
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
        if !self.conns.is_empty() && !late {
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

/// What a coordinator command becomes once parsed on the connection's shard.
enum CoordinatorWork {
    Change(Change),
    /// A new password to hash first (CREATE USER, ALTER USER).
    HashThen(Vec<u8>, NewPassword),
}

/// Parses and validates a coordinator command where the connection lives, so the coordinator
/// (and the hasher pool) only ever sees well-formed changes.
fn coordinator_work(id: CommandId, args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(match id {
        CommandId::CreatePartition => {
            CoordinatorWork::Change(Change::Create(partition_cmd::parse_create(args)?))
        }
        CommandId::DropPartition => {
            CoordinatorWork::Change(Change::Drop(partition_cmd::parse_name(args.get(2))?))
        }
        CommandId::CreateUser => {
            let name = user_cmd::parse_user_name(args.get(2))?;
            let password = user_cmd::parse_password(args.get(3))?;
            CoordinatorWork::HashThen(password, NewPassword::CreateUser(name))
        }
        CommandId::AlterUser => {
            let (name, password) = user_cmd::parse_alter(args)?;
            CoordinatorWork::HashThen(password, NewPassword::SetPassword(name))
        }
        CommandId::DropUser => CoordinatorWork::Change(Change::Acl(AclChange::DropUser(
            user_cmd::parse_user_name(args.get(2))?,
        ))),
        CommandId::Grant => CoordinatorWork::Change(Change::Acl(AclChange::Grant(
            user_cmd::parse_grant(id, args)?,
        ))),
        CommandId::Revoke => CoordinatorWork::Change(Change::Acl(AclChange::Revoke(
            user_cmd::parse_grant(id, args)?,
        ))),
        _ => return Err(CommandError::UnknownCommand(format!("{id:?}"))),
    })
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
    /// Returns true if it stopped on a pause with input left to process.
    ///
    /// Requests are framed in batches of up to [`BATCH`] before any of them runs, so that the
    /// table lines of all their keys are fetched together ([`Core::prefetch`]): with a
    /// pipelining client the cache misses of a batch overlap instead of adding up.
    fn process_input(&mut self, index: usize, conn: &mut Connection) -> bool {
        let mut batch = std::mem::take(&mut self.batch);
        let mut commands = 0;
        'batches: while !conn.closing && !is_paused(conn) && conn.has_input() {
            // 1. Frame.
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
                if conn.closing || is_paused(conn) {
                    // The rest is framed again later; forget any partly framed request that
                    // lies beyond the point we stop at.
                    conn.parser.reset();
                    break 'batches;
                }
                match &frame.kind {
                    FrameKind::Request => {
                        let args = Args::new(input, &batch.spans[frame.spans.clone()]);
                        commands += 1;
                        self.dispatch(
                            index,
                            conn.conn_ref,
                            &args,
                            &mut conn.session,
                            &mut conn.replies,
                            &mut conn.barrier,
                        );
                        if conn.session.close_after_reply {
                            conn.closing = true;
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
        !conn.closing && is_paused(conn) && conn.has_input()
    }

    /// Prefetches the table lines of the keys that a batch's local data requests will touch
    /// (argument 2: the first key), in two steps so that the second finds the first's lines.
    fn prefetch(&self, input: &[u8], batch: &Batch) {
        let local_keys = || {
            batch.frames.iter().filter_map(|f| {
                let spans = &batch.spans[f.spans.clone()];
                if spans.len() < 3 {
                    return None;
                }
                match self.routes.get(&input[spans[1].range()]) {
                    Some(Target::Local(p)) => Some((p, &input[spans[2].range()])),
                    _ => None,
                }
            })
        };
        if batch.frames.len() < 2 {
            return; // nothing to overlap with
        }
        for (partition, key) in local_keys() {
            partition.prefetch(key);
        }
        for (partition, key) in local_keys() {
            partition.prefetch_entry(key);
        }
    }

    /// Runs one request: here, on another shard, on the coordinator, or (a login) on the
    /// hasher pool.
    fn dispatch(
        &mut self,
        _index: usize,
        conn_ref: ConnRef,
        args: &Args,
        session: &mut server_cmd::Session,
        replies: &mut connection::ReplyQueue,
        barrier: &mut bool,
    ) {
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
                return;
            }
            Err(e) => {
                replies.push_ready(protocol, |w| e.write_to(w));
                return;
            }
        };
        if let Err(e) = authorize(spec, args, session.user.as_deref(), &self.catalog) {
            replies.push_ready(protocol, |w| e.write_to(w));
            return;
        }
        match spec.route {
            Route::Partition => match self.routes.get_mut(args.get(1)) {
                // The local path: execute now, encode straight into the output.
                Some(Target::Local(partition)) => {
                    let limits = self.data_limits;
                    replies.push_ready(protocol, |w| {
                        if let Err(e) = data::execute(spec.id, args, partition, limits, w) {
                            e.write_to(w);
                        }
                    });
                }
                // The forwarded path: copy into the owner's outbox, answer later in order.
                Some(Target::Remote(shard)) => {
                    let shard = *shard;
                    let seq = replies.push_waiting();
                    self.outboxes[shard].push(conn_ref, seq, protocol, spec.id, args);
                    ShardMetrics::add(&self.shared.metrics.shards[self.id].forwarded_out, 1);
                }
                None => {
                    let e = CommandError::NoPartition(printable(args.get(1)));
                    replies.push_ready(protocol, |w| e.write_to(w));
                }
            },
            Route::Connection => {
                if let Some(login) = self.parse_login(spec.id, args, session) {
                    match login {
                        Ok(pending) => {
                            self.start_login(conn_ref, pending, session, replies, barrier)
                        }
                        Err(e) => replies.push_ready(protocol, |w| e.write_to(w)),
                    }
                    return;
                }
                let catalog = self.catalog.clone();
                let acl = self.acl.clone();
                replies.push_ready(protocol, |w| {
                    let result = match (spec.id, session.user.as_deref()) {
                        (CommandId::ListPartitions, Some(user)) => {
                            partition_cmd::list(&catalog, user, w);
                            Ok(())
                        }
                        (CommandId::Whoami, Some(user)) => {
                            user_cmd::whoami(user, w);
                            Ok(())
                        }
                        (CommandId::ListUsers, _) => {
                            user_cmd::list(&acl, w);
                            Ok(())
                        }
                        (CommandId::DescribeUser, _) => user_cmd::describe(&acl, args.get(2), w),
                        (CommandId::DescribePartition, _) => {
                            partition_cmd::find(&catalog, args.get(2))
                                .map(|m| partition_cmd::describe(m, w))
                        }
                        (CommandId::StatsPartition, _) => {
                            partition_cmd::find(&catalog, args.get(2))
                                .map(|m| partition_cmd::stats(m, w))
                        }
                        _ => {
                            let view = ServerView {
                                catalog: &catalog,
                                config: &self.shared.config,
                                metrics: &self.shared.metrics,
                                shard: self.id,
                            };
                            server_cmd::execute(spec.id, args, session, &view, w)
                        }
                    };
                    if let Err(e) = result {
                        e.write_to(w);
                    }
                });
            }
            Route::Coordinator => {
                let work = if self.draining {
                    Err(CommandError::ShuttingDown)
                } else {
                    coordinator_work(spec.id, args)
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
                        match work {
                            CoordinatorWork::Change(change) => {
                                self.changes.push(Message::Change { reply_to, change })
                            }
                            // Hashed on the pool, which then hands the change to the
                            // coordinator itself.
                            CoordinatorWork::HashThen(password, then) => {
                                self.shared.hasher.submit(Job::Hash {
                                    reply_to,
                                    password,
                                    then,
                                })
                            }
                        }
                    }
                }
            }
        }
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
                };
                (c, pending)
            })),
            CommandId::Hello => match server_cmd::parse_hello(args, session) {
                Ok(mut hello) => hello.auth.take().map(|c| {
                    let pending = PendingLogin {
                        user: c.user.clone(),
                        mac: None,
                        hello: Some(hello),
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
        let seq = replies.push_waiting();
        *barrier = true;
        session.pending_login = Some(pending);
        self.shared.hasher.submit(Job::Verify {
            reply_to: ReplyTo {
                shard: self.id,
                conn: conn_ref,
                seq,
            },
            user_id: user.map_or(0, |u| u.id),
            hash: user.map(|u| u.hash.clone()),
            password: credentials.password,
        });
    }

    /// Executes a batch of requests another shard forwarded; replies go back in one batch.
    fn execute_forwarded(&mut self, batch: RequestBatch) {
        // Same two-step prefetch as for a connection's batch (see `Core::prefetch`).
        let local = |r: &mailbox::ForwardedRequest| {
            let args = batch.args(r);
            match self.routes.get(args.get(1)) {
                Some(Target::Local(p)) if args.len() >= 3 => Some((p, args.get(2))),
                _ => None,
            }
        };
        for (partition, key) in batch.requests.iter().filter_map(local) {
            partition.prefetch(key);
        }
        for (partition, key) in batch.requests.iter().filter_map(local) {
            partition.prefetch_entry(key);
        }
        let from = batch.from;
        let out = &mut self.reply_outboxes[from];
        for request in &batch.requests {
            let args = batch.args(request);
            let mut w = ReplyWriter::new(&mut out.buf, request.protocol);
            let result = match self.routes.get_mut(args.get(1)) {
                Some(Target::Local(partition)) => {
                    data::execute(request.command, &args, partition, self.data_limits, &mut w)
                }
                // Dropped (or moved) since the sender routed it.
                _ => Err(CommandError::NoPartition(printable(args.get(1)))),
            };
            if let Err(e) = result {
                e.write_to(&mut w);
            }
            out.replies.push(mailbox::ForwardedReply {
                conn: request.conn,
                seq: request.seq,
                end: out.buf.len() as u32,
            });
        }
        ShardMetrics::add(
            &self.shared.metrics.shards[self.id].forwarded_in,
            batch.requests.len() as u64,
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
        for (name, meta) in &catalog.partitions {
            let key: Box<[u8]> = name.as_bytes().into();
            let target = if meta.shard == self.id {
                owned += 1;
                match old.remove(&key) {
                    // Same partition as before (a name dropped and created again has a new id).
                    Some(Target::Local(p)) if Arc::ptr_eq(p.stats_arc(), &meta.stats) => {
                        Target::Local(p)
                    }
                    _ => Target::Local(Partition::new(meta.schema, meta.stats.clone())),
                }
            } else {
                Target::Remote(meta.shard)
            };
            self.routes.insert(key, target);
        }
        self.shared.metrics.shards[self.id]
            .partitions
            .store(owned, Ordering::Relaxed);
        self.catalog = catalog;
        // Whatever is left in `old` was dropped: its memory goes now.
        drop(old);
    }
}

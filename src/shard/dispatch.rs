//! Authorize and route one request: a data command runs here when its partition is local
//! (or is copied into the outbox of the shard that owns it), a connection command runs on
//! the session (FLUSHALL, whose partitions live on several shards, in
//! [`flushall`](super::flushall)), a catalog or ACL change goes to the coordinator, a login to
//! [`session`](super::session).
//!
//! The local path and the forwarded path ([`forward`](super::forward)) both run a data
//! command through [`execute_data`].

use crate::command::access::authorize_remembered;
use crate::command::data::{self, DataLimits};
use crate::command::error::printable;
use crate::command::quota::Quota;
use crate::command::server::{self as server_cmd, ServerView};
use crate::command::{
    flag, lookup, CommandError, CommandId, CommandSpec, CoordinatorWork, Handler,
};
use crate::metrics::{outcome, Outcome, ShardMetrics, DATA_SAMPLE};
use crate::persist::PartitionLog;
use crate::protocol::{Args, ReplyWriter};
use crate::slowlog;
use crate::store::{Partition, PartitionStats};

use super::connection;
use super::durability::{not_applied, DirtyPartitions, Durability, LocalPartition};
use super::mailbox::{self, Change, ConnRef, Message, ReplyTo};
use super::routes::Target;
use super::{transaction, Core};

impl Core {
    /// Runs one request: here, on another shard, on the coordinator, or (a login) on the
    /// hasher pool. Returns true when its reply was not built because it would pass the
    /// client output limit. `known` is the request's row when the caller has looked it up
    /// and checked its arity already (the Redis face's rewrite).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch(
        &mut self,
        affinity: &mut connection::Affinity,
        conn_ref: ConnRef,
        args: &Args,
        known: Option<&'static CommandSpec>,
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
        let spec = match known.map_or_else(|| lookup(args), Ok) {
            Ok(spec) => spec,
            // Before login, even an unknown command is only "log in first".
            Err(_) if session.user.is_none() => {
                replies.push_ready(protocol, |w| CommandError::NoAuth.write_to(w));
                return false;
            }
            Err(e) => {
                transaction::spoil(session);
                replies.push_ready(protocol, |w| e.write_to(w));
                return false;
            }
        };
        // CLIENT LIST's `cmd`: one store.
        session.last_command = Some(spec);
        let user = session.user.as_ref();
        if let Err(e) =
            authorize_remembered(spec, args, user, &self.catalog, &mut session.grant_memo)
        {
            self.shared.metrics.shards[self.id].command_stats[spec.id as usize].rejected();
            transaction::spoil(session);
            replies.push_ready(protocol, |w| e.write_to(w));
            return false;
        }
        // A replica takes writes from its primary only (one flag test for a read; a write
        // also reads the role). With `execute_memory`'s one branch, replication costs the
        // path without replicas GET 1530 -> 1540..1543 and SET 2201..2204 -> 2220..2223
        // user-space instructions per request (`scripts/count-instructions.sh`, two runs
        // each; the spread is how a run's passes batch the requests).
        // `--min-replicas-to-write`: one more load (the setting), and the good-replica count
        // only while it is on. `wrote` is what WAIT waits for.
        if spec.is_write() {
            let replication = &self.shared.replication;
            if replication.is_replica() {
                transaction::spoil(session);
                replies.push_ready(protocol, |w| CommandError::ReadOnly.write_to(w));
                return false;
            }
            if replication.too_few_replicas(self.shared.config.live.min_replicas_to_write()) {
                transaction::spoil(session);
                replies.push_ready(protocol, |w| CommandError::NoReplicas.write_to(w));
                return false;
            }
            session.wrote = true;
        }
        // RESP2 subscribed mode: only the Pub/Sub commands, PING, QUIT and RESET (one test of
        // a field while the connection has no subscription).
        if session.pubsub.is_some()
            && protocol == crate::protocol::Protocol::Resp2
            && crate::command::pubsub::refused_when_subscribed(spec.id)
        {
            let e = crate::command::pubsub::subscribed_mode_error(spec, args);
            replies.push_ready(protocol, |w| e.write_to(w));
            return false;
        }
        // Between MULTI and EXEC: queued (`transaction`). Outside, this one test (with the
        // store's test of watched keys: GET 1476 -> 1478, SET 2026 -> 2031..2037 user-space
        // instructions per request, `scripts/count-instructions.sh`, two to three runs each).
        if session.multi.is_some() && !transaction::runs_in_multi(spec.id) {
            self.queue(spec, args, session, replies);
            return false;
        }
        match spec.handler {
            Handler::Read(_) | Handler::Write(_) => {
                match self.routes.get_mut(spec.partition_name(args)) {
                    // The local path: execute now, encode straight into the output...
                    Some(Target::Local(local)) => {
                        affinity.local();
                        // CLIENT LIST's `db`: one store.
                        session.last_partition = local.id;
                        let limits = self
                            .shared
                            .data_limits(self.output_limit.saturating_sub(replies.pending()));
                        let metrics = &self.shared.metrics.shards[self.id];
                        match &mut local.log {
                            // ... except a durable write, whose reply waits for the group commit.
                            Durability::Logged(log) if spec.is_write() => {
                                let seq = replies.push_waiting();
                                let start = self.commit.buf.len();
                                let mut w = ReplyWriter::new(&mut self.commit.buf, protocol);
                                let (id, partition) = (local.id, &mut local.data);
                                let dirty = &mut self.commit.dirty;
                                let quota = &mut local.quota;
                                let (result, logged) = execute_logged(
                                    spec, args, partition, log, id, dirty, quota, limits, metrics,
                                    &mut w,
                                );
                                // A write's reply is small: it is never over the output limit.
                                if let Err(e) = result {
                                    e.write_to(&mut w);
                                }
                                if logged {
                                    self.commit.hold(conn_ref, seq, protocol, id, start);
                                } else {
                                    // Changed nothing: nothing to wait for.
                                    replies.fill(seq, &self.commit.buf[start..]);
                                    self.commit.buf.truncate(start);
                                }
                            }
                            Durability::Broken(why) if spec.is_write() => {
                                let e = not_applied(why);
                                replies.push_ready(protocol, |w| e.write_to(w));
                            }
                            _ => {
                                let dirty = &mut self.commit.dirty;
                                return replies.push_ready(protocol, |w| {
                                    match execute_memory(
                                        spec, args, local, dirty, limits, metrics, w,
                                    ) {
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
                        session.last_partition = id;
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
                        let e = CommandError::NoPartition(printable(spec.partition_name(args)));
                        replies.push_ready(protocol, |w| e.write_to(w));
                    }
                }
            }
            Handler::Connection(run) => {
                // The connection commands the shard itself answers (they touch its
                // connections, other shards or the hasher pool), by id: one jump for the
                // rest (PING, ECHO, INFO, ...), which run on the session below. Each
                // handler's own `match` covers the ids routed to it here.
                match spec.id {
                    // MULTI's queue and WATCH: see `transaction`.
                    CommandId::Multi
                    | CommandId::Exec
                    | CommandId::Discard
                    | CommandId::Watch
                    | CommandId::Unwatch => {
                        return self.transaction_command(
                            affinity, conn_ref, spec, args, session, replies, barrier,
                        );
                    }
                    // Pub/Sub: see `pubsub`.
                    CommandId::Subscribe
                    | CommandId::PSubscribe
                    | CommandId::Unsubscribe
                    | CommandId::PUnsubscribe
                    | CommandId::Publish
                    | CommandId::Pubsub => {
                        self.pubsub_command(conn_ref, spec, args, session, replies);
                        if spec.id == CommandId::Publish {
                            // Its messages reach every shard's subscribers from any shard: a
                            // publisher may gather (`gather`; a subscriber never moves).
                            affinity.unbound();
                        }
                        return false;
                    }
                    // RESET ends a transaction, its watches, its subscriptions and MONITOR
                    // too; its handler (below) does the rest.
                    CommandId::Reset => {
                        session.multi = None;
                        self.unwatch_all(conn_ref, session);
                        self.pubsub_command(conn_ref, spec, args, session, replies);
                        self.client_command(conn_ref, spec, args, session, replies, barrier);
                    }
                    // Partitions on every shard, answered as one reply: see `flushall`.
                    CommandId::FlushAll => {
                        self.flush_all(conn_ref, args, session, replies);
                        return false;
                    }
                    // Parked until the replicas acknowledge: see `wait`.
                    CommandId::Wait => {
                        self.wait_command(conn_ref, args, session, replies, barrier);
                        return false;
                    }
                    // SLOWLOG and LATENCY forms that every shard answers: see `observe`.
                    CommandId::Slowlog | CommandId::Latency => {
                        if let Some(query) = crate::command::monitor::query(spec.id, args) {
                            self.shared.metrics.shards[self.id].command_stats[spec.id as usize]
                                .record(0, Outcome::Ok);
                            self.observe(conn_ref, query, protocol, replies);
                            return false;
                        }
                    }
                    // The connections of every shard: see `clients`.
                    CommandId::Monitor
                    | CommandId::ClientInfo
                    | CommandId::ClientList
                    | CommandId::ClientKill
                        if self.client_command(conn_ref, spec, args, session, replies, barrier) =>
                    {
                        return false;
                    }
                    // Logins: see `session` (HELLO without AUTH runs below).
                    CommandId::Auth | CommandId::Login | CommandId::Hello => {
                        if let Some(login) = self.parse_login(spec.id, args, session) {
                            slowlog::after_login(spec, args);
                            let outcome = if login.is_ok() {
                                Outcome::Ok
                            } else {
                                Outcome::Failed
                            };
                            self.shared.metrics.shards[self.id].command_stats[spec.id as usize]
                                .record(0, outcome);
                            match login {
                                Ok(pending) => {
                                    self.start_login(conn_ref, pending, session, replies, barrier)
                                }
                                Err(e) => replies.push_ready(protocol, |w| e.write_to(w)),
                            }
                            return false;
                        }
                    }
                    _ => {}
                }
                // Any shard could run it: a streak of these may gather the connection
                // onto another shard (`gather`).
                affinity.unbound();
                let shards = &self.shared.shards;
                replies.push_ready(protocol, |w| {
                    let view = ServerView {
                        catalog: &self.catalog,
                        acl: &self.acl,
                        config: &self.shared.config,
                        metrics: &self.shared.metrics,
                        shard: self.id,
                        reconfigured: &|| {
                            for shard in shards {
                                shard.send(mailbox::Message::Reconfigured);
                            }
                        },
                        replication: &self.shared.replication,
                        tls: self.shared.tls.as_ref(),
                    };
                    let stats = &view.metrics.shards[view.shard].command_stats[spec.id as usize];
                    // PING and ECHO are timed as the bounded data commands are (one call in
                    // `DATA_SAMPLE`, the slow log's clock only when it could matter): the two
                    // clock reads and the histogram update were ~45 of PING's ~640
                    // user-space instructions per request.
                    let every = if spec.has(flag::BOUNDED) {
                        DATA_SAMPLE
                    } else {
                        1
                    };
                    let started = stats.begin_timed(every, slowlog::time_every_call(spec, args));
                    let result = run(args, session, &view, w);
                    let took = stats.end(started, outcome(&result));
                    if took >= slowlog::watch_ticks() {
                        slowlog::after_command(spec, args, took);
                    }
                    if let Err(e) = result {
                        e.write_to(w);
                    }
                });
            }
            // The catalog and the users come from the primary.
            Handler::Coordinator(_) if self.shared.replication.is_replica() => {
                replies.push_ready(protocol, |w| CommandError::ReadOnly.write_to(w));
            }
            Handler::Coordinator(parse) => {
                let stats = &self.shared.metrics.shards[self.id].command_stats[spec.id as usize];
                let started = stats.begin(1);
                let work = if self.draining {
                    Err(CommandError::ShuttingDown)
                } else {
                    parse(args)
                };
                // The shard's part (parsing): the coordinator's is not timed.
                let outcome = if work.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                };
                let took = stats.end(started, outcome);
                if took >= slowlog::watch_ticks() {
                    slowlog::after_command(spec, args, took);
                }
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
                            CoordinatorWork::Alter(a) => Change::Alter(a),
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
}

/// Runs a data command on a partition this shard owns, and keeps the shard's memory gauge
/// (what every shard's `max-memory` check reads) in step with the partition's estimate.
/// First the partition's `max-ops` (`quota`): a command its token bucket cannot pay for is
/// `-THROTTLED` and does nothing (one predictable branch when the partition has no
/// `max-ops`).
///
/// Always inline (each caller is one request's path, local or forwarded): out of line, its
/// arguments and its large `Result` go through memory (inline: GET 1442 -> 1423 user-space
/// instructions per request, SET 2096 -> 2073, `scripts/count-instructions.sh`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn execute_data(
    spec: &CommandSpec,
    args: &Args,
    partition: &mut Partition,
    journal: Option<&mut crate::persist::Journal>,
    quota: &mut Quota,
    limits: DataLimits,
    metrics: &ShardMetrics,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    if quota.throttles() {
        throttle(spec, args, partition, quota)
            .inspect_err(|_| metrics.command_stats[spec.id as usize].rejected())?;
    }
    let before = partition.used_memory();
    let stats = &metrics.command_stats[spec.id as usize];
    let reply_start = w.buf.len();
    let started = stats.begin_timed(DATA_SAMPLE, slowlog::time_every_call(spec, args));
    let result = data::execute(spec, args, partition, journal, quota, limits, w);
    let mut took = stats.end(started, outcome(&result));
    let after = partition.used_memory();
    // An untimed call (it took "0") that moved a big value is timed from its batch's start.
    if took == 0 && slowlog::heavy(w.buf.len().saturating_sub(reply_start), before, after) {
        took = slowlog::since_batch_began();
    }
    // The slow log and the latency monitor's `command` event.
    if took >= slowlog::watch_ticks() {
        slowlog::after_command(spec, args, took);
    }
    if after != before {
        let gauge = &metrics.used_memory;
        ShardMetrics::set(
            gauge,
            (ShardMetrics::get(gauge) + after).saturating_sub(before),
        );
    }
    if matches!(
        result,
        Err(CommandError::OutOfMemory | CommandError::PartitionFull { .. })
    ) {
        ShardMetrics::add(&metrics.oom_rejections, 1);
    }
    result
}

/// Runs a data command on a MEMORY partition (or a read on any): with no replica attached
/// (`stream` is `None`) exactly [`execute_data`]; with replicas, a write's records go to the
/// partition's stream journal, and the partition onto this pass's commit (`dirty`), which
/// sends them (`shard::replicate`). The reply never waits for them: replication is
/// asynchronous.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn execute_memory(
    spec: &CommandSpec,
    args: &Args,
    local: &mut LocalPartition,
    dirty: &mut DirtyPartitions,
    limits: DataLimits,
    metrics: &ShardMetrics,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let (partition, quota) = (&mut local.data, &mut local.quota);
    match &mut local.stream {
        None => execute_data(spec, args, partition, None, quota, limits, metrics, w),
        Some(stream) => execute_streamed(
            spec, args, partition, stream, local.id, dirty, quota, limits, metrics, w,
        ),
    }
}

/// [`execute_memory`] with replicas attached (out of line: the path without pays nothing
/// for it).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn execute_streamed(
    spec: &CommandSpec,
    args: &Args,
    partition: &mut Partition,
    stream: &mut crate::persist::Journal,
    id: u64,
    dirty: &mut DirtyPartitions,
    quota: &mut Quota,
    limits: DataLimits,
    metrics: &ShardMetrics,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let before = stream.pending().len();
    let journal = spec.is_write().then_some(&mut *stream);
    let result = execute_data(spec, args, partition, journal, quota, limits, metrics, w);
    if stream.pending().len() > before {
        dirty.logged(before == 0, spec.partition_name(args), id);
    }
    result
}

/// Takes a command's tokens from its partition's `max-ops` bucket: one per key it names, one
/// if it names none (`command::quota` says why); counts a refusal in `throttled`.
#[cold]
#[inline(never)]
fn throttle(
    spec: &CommandSpec,
    args: &Args,
    partition: &Partition,
    quota: &mut Quota,
) -> Result<(), CommandError> {
    let cost = spec.keys.positions(args.len()).count().max(1) as u64;
    quota
        .take(cost, crate::store::clock::now_ms())
        .inspect_err(|_| PartitionStats::add(&partition.stats().throttled, 1))
}

/// Runs a write on durable partition `id`: applied in memory, its records logged into the
/// partition's journal, and the partition put on this pass's group commit (`dirty`) when they
/// are its first of the pass. The second value is true when the write logged anything: its
/// reply must then wait for the commit, held by the caller (in a connection's reply slot, or
/// in the reply batch to another shard); a write that changed nothing logs nothing and is
/// answered at once.
///
/// The one place where a durable write meets the group commit, for the local path and the
/// forwarded one alike. Always inline for the same reason as [`execute_data`]; the two extra
/// arguments then cost nothing.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn execute_logged(
    spec: &CommandSpec,
    args: &Args,
    partition: &mut Partition,
    log: &mut PartitionLog,
    id: u64,
    dirty: &mut DirtyPartitions,
    quota: &mut Quota,
    limits: DataLimits,
    metrics: &ShardMetrics,
    w: &mut ReplyWriter,
) -> (Result<(), CommandError>, bool) {
    let writes = log.journal.writes();
    let journal = Some(&mut log.journal);
    let result = execute_data(spec, args, partition, journal, quota, limits, metrics, w);
    let logged = log.journal.writes() > writes;
    if logged {
        dirty.logged(writes == 0, spec.partition_name(args), id);
    }
    (result, logged)
}

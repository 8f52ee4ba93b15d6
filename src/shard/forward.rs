//! Requests other shards forwarded here, and the batches that carry requests and replies
//! between shards.
//!
//! A batch from another shard runs as far as that shard's reply batch has room this pass
//! ([`mailbox::REPLY_BATCH_BYTES`]); the rest waits in `Core::backlog`, ahead of anything newer
//! from the same shard. Replies coming back fill the waiting slots of our connections. Every
//! batch leaves from [`Core::flush_outboxes`], after the group commit, so that a forwarded
//! durable write's reply can still become `-IOERR`.

use std::sync::Arc;

use crate::acl::User;
use crate::command::access::authorize;
use crate::command::error::printable;
use crate::command::{lookup, CommandError};
use crate::metrics::ShardMetrics;
use crate::protocol::ReplyWriter;

use super::dispatch::{execute_logged, execute_memory};
use super::durability::{not_applied, Durability};
use super::input::prefetch_keys;
use super::mailbox::{self, ConnRef, Message, ReplyBatch, RequestBatch};
use super::routes::Target;
use super::{Core, Shard, COORDINATOR};

/// A batch of forwarded requests, run from `next` on.
pub(super) struct Forwarded {
    batch: RequestBatch,
    next: usize,
    /// The connection whose requests ran last, and the reply bytes built for its current
    /// run of requests (`usize::MAX` once one was over its output limit).
    run: Option<(ConnRef, usize)>,
}

impl Shard {
    /// Fills our connections' waiting slots from a batch of replies another shard built.
    pub(super) fn take_replies(&mut self, batch: ReplyBatch) {
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
}

impl Core {
    /// Whether forwarded requests wait for a later pass (the loop must not sleep then).
    pub(super) fn has_backlog(&self) -> bool {
        self.backlog.iter().any(|queue| !queue.is_empty())
    }

    /// Runs a batch of requests another shard forwarded, or as much of it as fits this pass's
    /// reply batch for that shard; the rest waits, behind anything that shard sent earlier.
    pub(super) fn take_forwarded(&mut self, batch: RequestBatch) {
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
    pub(super) fn run_backlog(&mut self, capped: bool) {
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
    pub(super) fn execute_forwarded(&mut self, work: &mut Forwarded, capped: bool) {
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
        // The user of the last request that needed authorizing again, looked up once per run.
        let mut reauthorized: Option<(u64, Option<Arc<User>>)> = None;
        let mut executed = 0;
        crate::slowlog::batch_begins();
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
            let limits = self
                .shared
                .data_limits((request.max_reply as usize).saturating_sub(built));
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
            let result = match self.routes.get_mut(spec.partition_name(&args)) {
                _ if allowed.is_err() => allowed,
                Some(Target::Local(local)) if local.id == request.partition => match &mut local.log
                {
                    // A durable write: the batch leaves after the commit, which may still
                    // patch this reply into -IOERR.
                    Durability::Logged(log) if spec.is_write() => {
                        let (id, partition) = (local.id, &mut local.data);
                        let dirty = &mut self.commit.dirty;
                        let quota = &mut local.quota;
                        let (result, logged) = execute_logged(
                            spec, &args, partition, log, id, dirty, quota, limits, metrics, &mut w,
                        );
                        if logged {
                            let index = out.replies.len();
                            self.commit.hold_remote(from, index, request.protocol, id);
                        }
                        result
                    }
                    Durability::Broken(why) if spec.is_write() => Err(not_applied(why)),
                    _ => {
                        let dirty = &mut self.commit.dirty;
                        execute_memory(spec, &args, local, dirty, limits, metrics, &mut w)
                    }
                },
                // Dropped (or moved, or dropped and created again) since the sender routed it.
                _ => Err(CommandError::NoPartition(printable(
                    spec.partition_name(&args),
                ))),
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
        // Slow-log entries of these requests keep an empty client: it is another shard's.
        crate::slowlog::claim_forwarded();
        ShardMetrics::add(
            &self.shared.metrics.shards[self.id].forwarded_in,
            executed as u64,
        );
    }

    /// Sends this pass's outboxes: one message per destination shard, then catalog changes.
    pub(super) fn flush_outboxes(&mut self) {
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
        for (shard, question) in self.questions.drain(..) {
            self.shared.shards[shard].send(question);
        }
        self.flush_monitor_feed();
        self.flush_publishes();
    }
}

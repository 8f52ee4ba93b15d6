//! `WAIT <numreplicas> <timeout>` without blocking the shard: the connection is parked and
//! answered later (the design of acks: [`crate::replication::acks`]).
//!
//! A `WAIT` that the replicas already satisfy is answered at once. Otherwise its reply takes
//! a waiting slot and the connection's barrier goes up, so that, as in Redis where the
//! client is blocked, nothing it sends after `WAIT` runs before `WAIT` answers; the shard
//! serves every other connection meanwhile. The parked `WAIT` is a [`Waiter`] here, looked
//! at by the `wait` housekeeping step (after the pass's writes) when the ack epoch moved (a
//! feed's ack reader woke the shard), when its deadline passed, or when its connection
//! reached it.
//!
//! # What a connection's writes are
//! Redis keeps the replication offset of a client's last write. A GoKV write is framed for
//! the replicas by its partition's commit, on the shard that owns the partition, so its
//! offsets are known only once its partition's commit ran; therefore the target is taken by
//! the `wait` step (after the pass's commit) once every reply owed before the `WAIT` has been
//! answered (its slot is the head of the connection's reply queue): then every shard offset
//! now covers every write the connection made, on this shard or another. It may cover
//! other clients' writes made since, never less than the connection's own. A connection
//! that never wrote waits for offsets of zero (any online replica counts), as Redis's
//! `woff` of 0 does.
//!
//! # Bounds
//! One `WAIT` parks per connection at most (the barrier), so the list is bounded by the
//! connections of the shard. A connection whose peer went away is answered (its count now,
//! or 0 before it has a target) so that it can close; one closed before is forgotten.

use std::time::{Duration, Instant};

use crate::command::replication::{parse_wait, wait_target};
use crate::command::server::Session;
use crate::command::CommandId;
use crate::metrics::Outcome;
use crate::protocol::{Args, Protocol, ReplyWriter};

use super::connection::ReplyQueue;
use super::mailbox::ConnRef;
use super::{Core, Shard};

/// A parked `WAIT`.
pub(super) struct Waiter {
    conn: ConnRef,
    seq: u64,
    protocol: Protocol,
    replicas: i64,
    /// `None`: forever (a timeout of 0, or one past what an `Instant` holds).
    deadline: Option<Instant>,
    /// The shard offsets to be acknowledged; `None` until every earlier reply of the
    /// connection is answered (see the module docs).
    target: Option<Box<[u64]>>,
}

/// This shard's parked `WAIT`s.
#[derive(Default)]
pub(super) struct Waits {
    list: Vec<Waiter>,
    /// The ack epoch when they were last counted.
    seen: u64,
}

impl Core {
    /// `WAIT` from one of this shard's connections: answered now, or parked.
    pub(super) fn wait_command(
        &mut self,
        conn: ConnRef,
        args: &Args,
        session: &Session,
        replies: &mut ReplyQueue,
        barrier: &mut bool,
    ) {
        let protocol = session.protocol;
        let state = self.shared.replication.clone();
        let stats = &self.shared.metrics.shards[self.id].command_stats[CommandId::Wait as usize];
        let wait = match parse_wait(args, state.is_replica()) {
            Ok(wait) => {
                stats.record(0, Outcome::Ok);
                wait
            }
            Err(e) => {
                stats.record(0, Outcome::Failed);
                replies.push_ready(protocol, |w| e.write_to(w));
                return;
            }
        };
        // A connection that never wrote is counted now. One that did is counted by the
        // `wait` step of this pass at the earliest: a write of this pass to one of this
        // shard's partitions is framed (its offsets known) by the pass's commit.
        let target = (!session.wrote).then(|| wait_target(session, &state));
        if let Some(target) = &target {
            let acked = state.count_acks(target) as i64;
            if acked >= wait.replicas {
                replies.push_ready(protocol, |w| w.integer(acked));
                return;
            }
        }
        let seq = replies.push_waiting();
        *barrier = true;
        if self.waits.list.is_empty() {
            self.waits.seen = state.want_ack_wake(self.id);
        }
        self.waits.list.push(Waiter {
            conn,
            seq,
            protocol,
            replicas: wait.replicas,
            deadline: wait
                .timeout_ms
                .and_then(|ms| self.now.checked_add(Duration::from_millis(ms))),
            target,
        });
    }
}

impl Shard {
    /// When the `wait` step has work: `None` with nothing parked.
    pub(super) fn waits_due_in(&self, now: Instant) -> Option<Duration> {
        let waits = &self.core.waits;
        if waits.list.is_empty() {
            return None;
        }
        if self.core.shared.replication.ack_epoch() != waits.seen {
            return Some(Duration::ZERO);
        }
        let mut due: Option<Duration> = None;
        for w in &waits.list {
            let Some(conn) = self
                .conns
                .get(w.conn.index as usize)
                .filter(|c| c.conn_ref == w.conn)
            else {
                return Some(Duration::ZERO);
            };
            if conn.closing || conn.input_closed || conn.peer_closed {
                return Some(Duration::ZERO);
            }
            if w.target.is_none() && conn.replies.is_head(w.seq) {
                return Some(Duration::ZERO);
            }
            if let Some(deadline) = w.deadline {
                let left = deadline.saturating_duration_since(now);
                due = Some(due.map_or(left, |d| d.min(left)));
            }
        }
        due
    }

    /// The `wait` step: answers every parked `WAIT` that is satisfied, past its deadline,
    /// or whose client went away; writes the answers out.
    pub(super) fn run_waits(&mut self, now: Instant) {
        let state = self.core.shared.replication.clone();
        // Asked before counting: an ack from here on wakes the shard again.
        self.core.waits.seen = state.want_ack_wake(self.core.id);
        let list = std::mem::take(&mut self.core.waits.list);
        let mut answered = Vec::new();
        for mut w in list {
            let index = w.conn.index as usize;
            let Some(conn) = self.conns.get_mut(index).filter(|c| c.conn_ref == w.conn) else {
                continue; // closed while parked
            };
            if w.target.is_none() && conn.replies.is_head(w.seq) {
                w.target = Some(wait_target(&conn.session, &state));
            }
            let gone = conn.closing || conn.input_closed || conn.peer_closed;
            let expired = w.deadline.is_some_and(|d| d <= now);
            let answer = match &w.target {
                Some(target) => {
                    let acked = state.count_acks(target) as i64;
                    (acked >= w.replicas || expired || gone).then_some(acked)
                }
                // Its earlier writes are not answered yet: their offsets are unknown, so
                // it waits for them even past its deadline (they answer within a pass or
                // two), unless nobody is there to answer.
                None => gone.then_some(0),
            };
            match answer {
                None => self.core.waits.list.push(w),
                Some(acked) => {
                    let mut reply = Vec::with_capacity(16);
                    ReplyWriter::new(&mut reply, w.protocol).integer(acked);
                    conn.replies.fill(w.seq, &reply);
                    conn.barrier = false;
                    // Requests queued behind the WAIT run now.
                    conn.needs_service = true;
                    answered.push(index);
                }
            }
        }
        if answered.is_empty() {
            return;
        }
        for index in answered {
            self.after_progress(index);
        }
        // After the pass's writes: these go out now, not after the next poll.
        self.flush_writes();
    }
}

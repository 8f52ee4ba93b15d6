//! SLOWLOG and LATENCY across the shards: each shard keeps its own slow log and latency
//! samples (thread-locals of its thread, written by it alone: see [`crate::slowlog`]), so a
//! `SLOWLOG GET` or `LATENCY LATEST` asks every shard, this one included, and answers once all
//! have answered.
//!
//! The questions leave after the pass's outboxes (`Core::flush_outboxes`), so a request the
//! connection sent before (forwarded to another shard) has run there when that shard answers,
//! and the entries of this pass's own requests have their client by then (`slowlog::claim`
//! runs after a connection's input). Each shard answers from its inbox drain; the reply fills
//! the connection's waiting slot like any reply from another shard. Nothing here is on the
//! data path: it is reached from the connection-command branch of dispatch only.

use crate::command::monitor::{self, Answer, Query};
use crate::protocol::{Protocol, ReplyWriter};

use super::connection::ReplyQueue;
use super::mailbox::{ConnRef, Message, ReplyTo};
use super::{Core, Shard};

/// A question on its way to every shard, and the answers so far.
pub(super) struct Gathering {
    conn: ConnRef,
    seq: u64,
    protocol: Protocol,
    query: Query,
    answers: Vec<Answer>,
}

impl Core {
    /// Asks every shard `query` for the connection `conn_ref`; its reply waits in a slot.
    pub(super) fn observe(
        &mut self,
        conn_ref: ConnRef,
        query: Query,
        protocol: Protocol,
        replies: &mut ReplyQueue,
    ) {
        let seq = replies.push_waiting();
        let reply_to = ReplyTo {
            shard: self.id,
            conn: conn_ref,
            seq,
        };
        for shard in 0..self.shared.shards.len() {
            self.questions.push((
                shard,
                Message::Observe {
                    reply_to,
                    query: query.clone(),
                },
            ));
        }
        self.gatherings.push(Gathering {
            conn: conn_ref,
            seq,
            protocol,
            query,
            answers: Vec::new(),
        });
    }
}

impl Shard {
    /// Answers another shard's (or our own) question about this shard.
    pub(super) fn answer_observe(&mut self, reply_to: ReplyTo, query: Query) {
        let answer = monitor::answer(&query);
        self.core.shared.shards[reply_to.shard].send(Message::Observed { reply_to, answer });
    }

    /// Takes one shard's answer; the last one completes the reply.
    pub(super) fn take_observed(&mut self, reply_to: ReplyTo, answer: Answer) {
        let Some(at) = self
            .core
            .gatherings
            .iter()
            .position(|g| g.conn == reply_to.conn && g.seq == reply_to.seq)
        else {
            return;
        };
        let gathering = &mut self.core.gatherings[at];
        gathering.answers.push(answer);
        if gathering.answers.len() < self.core.shared.shards.len() {
            return;
        }
        let gathering = self.core.gatherings.swap_remove(at);
        let index = gathering.conn.index as usize;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.conn_ref != gathering.conn {
            return; // closed meanwhile (its slot went with it)
        }
        let mut reply = Vec::new();
        let mut w = ReplyWriter::new(&mut reply, gathering.protocol);
        monitor::merge(&gathering.query, gathering.answers, &mut w);
        conn.replies.fill(gathering.seq, &reply);
        if !self.close_if_over_output_limit(index) {
            self.after_progress(index);
        }
    }
}

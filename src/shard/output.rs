//! Writing replies out, and what a connection's progress leads to: queue its output, resume
//! its input, move it to another shard, or close it (done, or over `client-output-limit`).

use crate::metrics::ShardMetrics;

use super::input::is_paused;
use super::Shard;

impl Shard {
    /// Closes a connection whose pending replies passed the client output limit (or one of
    /// whose replies would have). True when it was closed.
    pub(super) fn close_if_over_output_limit(&mut self, index: usize) -> bool {
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

    /// Bookkeeping after a connection's state moved: queue its output, resume its input, or
    /// close it when it is done.
    pub(super) fn after_progress(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.has_output() {
            if !conn.queued_for_write {
                conn.queued_for_write = true;
                self.core.to_write.push(index);
            }
        } else if conn.closing && conn.replies.in_flight() == 0 {
            self.close(index);
            return;
        } else if conn.affinity.target().is_some() || conn.affinity.gather_due() {
            // Idle between requests (nothing owed, nothing unwritten): the moment to move.
            // A monitor stays where its shard counts it (`clients::Monitors`), a subscriber
            // where its shard's registry has it (`pubsub`).
            let idle = conn.replies.in_flight() == 0
                && !conn.barrier
                && !conn.closing
                && !conn.session.monitoring
                && conn.session.pubsub.is_none();
            if idle && !self.core.draining && self.core.shared.config.live.migrate_connections() {
                // To the owner of the partitions it uses; or, using none, onto a lower shard
                // with room (`gather`), asking again only after another streak.
                let to = conn.affinity.target().or_else(|| {
                    conn.affinity.stay();
                    self.core.gather_target()
                });
                if let Some(shard) = to {
                    self.migrate(index, shard);
                    return;
                }
            }
        }
        if conn.needs_service && !conn.closing && !is_paused(conn) {
            conn.needs_service = false;
            self.core.to_service.push(index);
        }
    }

    pub(super) fn queue_write(&mut self, index: usize) {
        if let Some(conn) = self.conns.get_mut(index) {
            if conn.has_output() && !conn.queued_for_write {
                conn.queued_for_write = true;
                self.core.to_write.push(index);
            }
        }
    }

    pub(super) fn flush_writes(&mut self) {
        for index in std::mem::take(&mut self.core.to_write) {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            conn.queued_for_write = false;
            let unwritten = conn.replies.unwritten();
            let result = conn.write_out();
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
}

//! Shutdown: requested once for the whole server, then each shard drains (answers what its
//! clients already sent, reads nothing more) and exits once every shard is done or
//! [`DRAIN_DEADLINE`] has passed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mailbox::{Message, ShardHandle};
use super::Shard;

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

impl Shard {
    /// Shutdown, step one: take in what clients already sent, then read nothing more.
    pub(super) fn begin_drain(&mut self) {
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
    pub(super) fn drain_step(&mut self, started: Instant) -> bool {
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

//! `replication`: one slice of each replica's full sync of this shard's partitions (see
//! `shard::replicate`), after the pass's writes so that a slice only sees committed data;
//! and forgetting feeds whose replica was dropped. A step yields to requests that arrive
//! while it runs (`Waiting`). Due now while a walk has a feed with
//! room, unless the walks rest after a step taken while clients were served (`WalkPace` in
//! `shard::replicate`); every millisecond while the feeds it waits for are full (their
//! sender threads drain them without waking this shard); not at all without replicas.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::shard::replicate::Waiting;
use crate::shard::Shard;

/// A slice is at most 64 KiB of records or 250 us (`shard::replicate`).
const BUDGET: Duration = Duration::from_millis(2);

/// How soon to look again while every feed a walk waits for is full.
const FULL_FEED_RETRY: Duration = Duration::from_millis(1);

pub(super) struct Replication;

impl Step for Replication {
    fn name(&self) -> &'static str {
        "replication"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, now: Instant) -> Option<Duration> {
        if shard.core.has_dropped_feed() {
            return Some(Duration::ZERO);
        }
        match shard.core.walks_due() {
            None => None,
            // Resting after a step taken while clients were served (`WalkPace`).
            Some(true) => Some(shard.core.walk_wait(now)),
            Some(false) => Some(FULL_FEED_RETRY.max(shard.core.walk_wait(now))),
        }
    }

    fn run(&mut self, shard: &mut Shard, _budget: Budget) {
        use std::os::fd::AsRawFd;
        let waiting = Waiting {
            poll: shard.poll.as_raw_fd(),
            mailbox: &shard.mailbox,
        };
        shard.core.walk_steps(&waiting);
    }
}

//! `fsync`: the ASYNC partitions' fsync, once their oldest unsynced commit is
//! [`ASYNC_FSYNC_INTERVAL`](crate::shard::durability::ASYNC_FSYNC_INTERVAL) old. What is
//! unsynced and since when is the group commit's ([`crate::shard::durability`]); this step
//! is only its timer.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::shard::Shard;

/// One `fdatasync` per ASYNC partition with unsynced commits, which cannot stop part-way: on
/// an SSD that takes a few milliseconds for half a second of writes; a run past this means
/// the disk, not the shard, sets the pace.
const BUDGET: Duration = Duration::from_millis(10);

pub(super) struct AsyncFsync;

impl Step for AsyncFsync {
    fn name(&self) -> &'static str {
        "fsync"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, now: Instant) -> Option<Duration> {
        shard.core.commit.fsync_due_in(now)
    }

    fn run(&mut self, shard: &mut Shard, budget: Budget) {
        shard.core.sync_async(budget.started);
    }
}

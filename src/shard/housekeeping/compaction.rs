//! `compaction`: one slice of each log compaction in progress, about
//! [`COMPACTION_STEP_BYTES`](crate::shard::durability::COMPACTION_STEP_BYTES) of snapshot per
//! partition per pass (a byte budget: with large values an entry count would be an unbounded
//! buffer). Which partitions compact is the group commit's ([`crate::shard::durability`]);
//! while any does, this step stays due and the loop does not sleep.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::shard::Shard;

/// A slice of `COMPACTION_STEP_BYTES` takes a fraction of a millisecond to encode and write
/// (see [`crate::persist::snapshot::STEP_BYTES`]); this leaves room for a few partitions
/// compacting at once. The last slice also fsyncs the snapshot and may take longer.
const BUDGET: Duration = Duration::from_millis(2);

pub(super) struct Compaction;

impl Step for Compaction {
    fn name(&self) -> &'static str {
        "compaction"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, _now: Instant) -> Option<Duration> {
        shard.core.commit.compacting().then_some(Duration::ZERO)
    }

    fn run(&mut self, shard: &mut Shard, budget: Budget) {
        shard.core.compaction_steps(budget.started);
    }
}

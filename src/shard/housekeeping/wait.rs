//! `wait`: answers the parked `WAIT`s that are satisfied, past their timeout, or whose
//! client went away (`shard::wait`). Due now when an ack arrived since they were last
//! counted (a feed's ack reader wakes the shard for it), when a parked `WAIT` became the
//! head of its connection's replies, or when a client went away; otherwise at the soonest
//! deadline; not at all with nothing parked.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::shard::Shard;

/// Counting is a pass over the replicas per parked `WAIT`: microseconds.
const BUDGET: Duration = Duration::from_millis(1);

pub(super) struct Wait;

impl Step for Wait {
    fn name(&self) -> &'static str {
        "wait"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, now: Instant) -> Option<Duration> {
        shard.waits_due_in(now)
    }

    fn run(&mut self, shard: &mut Shard, budget: Budget) {
        shard.run_waits(budget.started);
    }
}

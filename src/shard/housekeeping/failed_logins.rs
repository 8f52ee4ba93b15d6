//! `failed-login-log`: the count of failed logins that were not logged one by one (at most one
//! line a second per shard, see [`crate::log_limit`]), logged once its interval is over even
//! when no further failure comes to carry it.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::shard::Shard;

/// One log line.
const BUDGET: Duration = Duration::from_millis(1);

pub(super) struct FailedLoginLog;

impl Step for FailedLoginLog {
    fn name(&self) -> &'static str {
        "failed-login-log"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, now: Instant) -> Option<Duration> {
        shard.core.failed_logins.due_in(now)
    }

    fn run(&mut self, shard: &mut Shard, budget: Budget) {
        let core = &mut shard.core;
        core.failed_logins
            .flush(budget.started, &format_args!("shard {}", core.id));
    }
}

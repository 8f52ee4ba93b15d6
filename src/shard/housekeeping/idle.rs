//! `idle-sweep`: with `timeout` on, closes connections that neither read nor wrote a byte for
//! longer, looking once every [`IDLE_SWEEP_INTERVAL`]. `timeout` is live (CONFIG SET): read
//! from the shared configuration each time the loop asks whether the sweep is due.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::config::Config;
use crate::metrics::ShardMetrics;
use crate::shard::Shard;

/// How often idle connections are looked for when `timeout` is on: a connection is closed
/// between `timeout` and `timeout` + 1 s after its last byte, for one pass over the
/// connections per second (no timer per connection, no clock read per request).
const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One look at each of the shard's connections: thousands of them take well under this.
const BUDGET: Duration = Duration::from_millis(1);

pub(super) struct IdleSweep {
    /// When to look next.
    next: Instant,
}

impl IdleSweep {
    pub(super) fn new(_config: &Config, now: Instant) -> Self {
        IdleSweep {
            next: now + IDLE_SWEEP_INTERVAL,
        }
    }
}

/// `timeout` as it is now, when on.
fn timeout(shard: &Shard) -> Option<Duration> {
    let secs = shard.core.shared.config.live.timeout_secs();
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl Step for IdleSweep {
    fn name(&self) -> &'static str {
        "idle-sweep"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, now: Instant) -> Option<Duration> {
        // Switched on by CONFIG SET while the loop slept without a timer for it: the sweep
        // runs at once and goes on every second (`next` is a second old by then).
        timeout(shard).map(|_| self.next.saturating_duration_since(now))
    }

    fn run(&mut self, shard: &mut Shard, budget: Budget) {
        let Some(timeout) = timeout(shard) else {
            return;
        };
        let now = budget.started;
        self.next = now + IDLE_SWEEP_INTERVAL;
        let idle: Vec<usize> = shard
            .conns
            .iter()
            .filter(|(_, conn)| now.saturating_duration_since(conn.last_active) > timeout)
            .map(|(index, _)| index)
            .collect();
        if idle.is_empty() {
            return;
        }
        let metrics = &shard.core.shared.metrics.shards[shard.core.id];
        ShardMetrics::add(&metrics.timeout_disconnects, idle.len() as u64);
        for index in idle {
            if let Some(conn) = shard.conns.get(index) {
                log::debug!("closing idle client {} ({})", conn.session.id, conn.peer);
            }
            shard.close(index);
        }
    }
}

//! `tls-handshakes`: closes TLS connections whose handshake is not done by its deadline
//! (`--tls-handshake-timeout-ms`), and logs the count of refused TLS connections not logged
//! one by one. Due only while a handshake is queued or a count waits: a server without TLS
//! never runs it.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::shard::Shard;

/// Popping the front of a queue and closing a socket or two: far below this.
const BUDGET: Duration = Duration::from_millis(1);

pub(super) struct TlsHandshakes;

impl Step for TlsHandshakes {
    fn name(&self) -> &'static str {
        "tls-handshakes"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, now: Instant) -> Option<Duration> {
        let handshake = shard
            .next_handshake_deadline()
            .map(|deadline| deadline.saturating_duration_since(now));
        match (handshake, shard.tls_refusals_due_in(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn run(&mut self, shard: &mut Shard, budget: Budget) {
        shard.close_late_handshakes(budget.started);
    }
}

//! Per-pass housekeeping.

use std::time::Duration;

use crate::metrics::ShardMetrics;

use super::Shard;

/// How often idle connections are looked for when `timeout` is on: a connection is closed
/// between `timeout` and `timeout` + 1 s after its last byte, for one pass over the
/// connections per second (no timer per connection, no clock read per request).
pub(super) const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Shard {
    /// Closes connections that neither read nor wrote a byte for longer than `timeout`.
    pub(super) fn close_idle(&mut self) {
        let Some(timeout) = self.core.idle_timeout else {
            return;
        };
        let now = self.core.now;
        self.core.next_sweep = now + IDLE_SWEEP_INTERVAL;
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| now.saturating_duration_since(conn.last_active) > timeout)
            .map(|(index, _)| index)
            .collect();
        if idle.is_empty() {
            return;
        }
        let metrics = &self.core.shared.metrics.shards[self.core.id];
        ShardMetrics::add(&metrics.timeout_disconnects, idle.len() as u64);
        for index in idle {
            if let Some(conn) = self.conns.get(index) {
                log::debug!("closing idle client {} ({})", conn.session.id, conn.peer);
            }
            self.close(index);
        }
    }
}

//! How much memory the data takes, and the `max-memory` check.
//!
//! # The estimate
//! Every entry counts `key bytes + value bytes + ENTRY_OVERHEAD`, plus 8 when it has a
//! deadline, where an INT value counts 8 bytes. [`ENTRY_OVERHEAD`] stands for what an entry costs besides its bytes: its 6-byte
//! slot in the table (`store::table`, divided by the 7/8 load factor) and its header and
//! padding in the arena (`store::arena`: flags, two varint lengths, up to 3 bytes to the next
//! 4-byte boundary). It does not count the table's spare capacity after growth, dead arena
//! bytes not yet compacted (up to a quarter), read and write buffers, or large values'
//! allocator headers, so the process's RSS is above `used_memory`: as with Redis's `maxmemory`,
//! leave headroom.
//!
//! # Who writes what
//! Each partition keeps its own exact sum (its shard is the only writer). Each shard mirrors
//! the sum over its partitions in its `ShardMetrics::used_memory`, a single-writer relaxed
//! atomic. A write's check reads every shard's gauge (relaxed loads, no locked instruction):
//! its own shard's value is exact, another shard's may trail that shard's newest writes by an
//! instant, so two shards writing at once can pass the limit by at most what they write in
//! that instant.

use crate::metrics::ServerMetrics;

/// Bytes an entry costs besides its key and value bytes (see the module docs): an estimate of
/// its table slot and arena header, not a measurement. Compare INFO's
/// `used_memory` with `used_memory_rss` under your own data to see how far off it is.
pub const ENTRY_OVERHEAD: u64 = 16;

/// Estimated bytes of an entry whose key and value have these lengths, and which has a
/// deadline or not (8 bytes more in the arena, see `store::arena`).
#[inline]
pub fn entry_size(key_len: usize, value_len: usize, deadline: bool) -> u64 {
    let deadline = if deadline {
        super::arena::DEADLINE_BYTES as u64
    } else {
        0
    };
    key_len as u64 + value_len as u64 + ENTRY_OVERHEAD + deadline
}

/// What an INT value counts: the `i64` itself.
pub const INT_VALUE_SIZE: usize = 8;

/// The `max-memory` check a write makes before it changes anything.
#[derive(Clone, Copy)]
pub struct MemoryBudget<'a> {
    /// The limit in bytes; 0 means none.
    max: u64,
    metrics: Option<&'a ServerMetrics>,
}

impl<'a> MemoryBudget<'a> {
    pub fn new(max: u64, metrics: &'a ServerMetrics) -> Self {
        MemoryBudget {
            max,
            metrics: Some(metrics),
        }
    }

    /// No limit (tests, tools).
    pub fn unlimited() -> Self {
        MemoryBudget {
            max: 0,
            metrics: None,
        }
    }

    /// May a write that grows the data by `growth` bytes go ahead? A write that does not grow
    /// it (an overwrite with a value no longer than the old, any DEL) always may.
    #[inline]
    pub fn admits(&self, growth: u64) -> bool {
        if self.max == 0 || growth == 0 {
            return true;
        }
        let used = self.metrics.map_or(0, |m| m.total(|s| &s.used_memory));
        used.saturating_add(growth) <= self.max
    }

    /// Bytes that must go before a write growing the data by `growth` fits (0: it fits now):
    /// what a partition with an eviction policy frees from its own keys first. Read once: this
    /// shard's gauge follows a command only when it is done.
    pub fn shortfall(&self, growth: u64) -> u64 {
        if self.max == 0 || growth == 0 {
            return 0;
        }
        let used = self.metrics.map_or(0, |m| m.total(|s| &s.used_memory));
        used.saturating_add(growth).saturating_sub(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ShardMetrics;

    #[test]
    fn the_shortfall_is_what_must_go_before_a_write_fits() {
        let metrics = ServerMetrics::new(2);
        let budget = MemoryBudget::new(1000, &metrics);
        ShardMetrics::set(&metrics.shards[0].used_memory, 600);
        ShardMetrics::set(&metrics.shards[1].used_memory, 380);
        assert!(budget.admits(20));
        assert!(!budget.admits(21));
        assert_eq!(budget.shortfall(20), 0);
        assert_eq!(budget.shortfall(121), 101);
        assert_eq!(budget.shortfall(0), 0, "no growth always fits");
        assert_eq!(MemoryBudget::unlimited().shortfall(u64::MAX), 0);
    }
}

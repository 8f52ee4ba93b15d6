//! Per-partition counters: written by the owning shard only, readable from any thread.
//!
//! Each counter has exactly one writer, so an increment is a relaxed `load` plus a relaxed
//! `store` (a plain `mov` on x86) instead of a locked `fetch_add`: the hot path pays nothing
//! for other threads being able to read. A reader may see a value an instant old, never a torn
//! or invented one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct PartitionStats {
    /// Data commands executed on the partition (reads + writes).
    pub ops: AtomicU64,
    /// GET, MGET, EXISTS commands.
    pub reads: AtomicU64,
    /// SET, MSET, DEL and INCR-family commands.
    pub writes: AtomicU64,
    /// Keys stored now.
    pub keys: AtomicU64,
    /// Keys found by GET and MGET (one per key looked up).
    pub hits: AtomicU64,
    /// Keys not found by GET and MGET (one per key looked up).
    pub misses: AtomicU64,
    /// Estimated bytes of the partition's entries (see `store::memory`).
    pub memory: AtomicU64,
    /// Keys with a deadline now (expired ones not reclaimed yet included).
    pub expires: AtomicU64,
    /// Keys the expiry sweep reclaimed (Redis's `expired_keys`).
    pub expired_keys: AtomicU64,
    /// Keys evicted to make room (eviction policies come with partition configuration).
    pub evicted_keys: AtomicU64,
    /// Commands refused by the partition's `max-ops` (`-THROTTLED`).
    pub throttled: AtomicU64,
    /// Average time to live in ms of the keys with a deadline, as the expiry sweep last
    /// sampled it (Redis's `avg_ttl`: an estimate, 0 when none was sampled).
    pub avg_ttl: AtomicU64,
}

impl PartitionStats {
    /// Adds `n` to a counter. Only the owning shard may call this (single writer).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets a gauge. Only the owning shard may call this (single writer).
    #[inline]
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Relaxed);
    }

    #[inline]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

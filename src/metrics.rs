//! Server-wide counters for INFO: one [`ShardMetrics`] per shard, each written only by its
//! shard (single-writer relaxed atomics, like partition stats), readable from any thread.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Connections open on this shard now.
    pub connections: AtomicU64,
    /// Connections this shard ever accepted.
    pub connections_total: AtomicU64,
    /// Requests this shard parsed from its own connections.
    pub commands: AtomicU64,
    /// Of those, requests sent to another shard.
    pub forwarded_out: AtomicU64,
    /// Requests other shards sent here and this shard executed.
    pub forwarded_in: AtomicU64,
    /// Messages (batches) this shard sent to other shards.
    pub batches_out: AtomicU64,
    /// Connections this shard handed to another shard (see `Affinity`).
    pub migrated_out: AtomicU64,
    /// Partitions this shard owns.
    pub partitions: AtomicU64,
    /// Estimated bytes of the data in this shard's partitions (see `store::memory`).
    pub used_memory: AtomicU64,
    /// Clients this shard disconnected for passing the client output limit.
    pub output_limit_disconnects: AtomicU64,
    /// Clients this shard disconnected for being idle past the timeout.
    pub timeout_disconnects: AtomicU64,
    /// Writes refused with `-OOM` because of max-memory.
    pub oom_rejections: AtomicU64,
    /// Keys the expiry sweep reclaimed (Redis's `expired_keys`).
    pub expired_keys: AtomicU64,
    /// The core this shard's thread is pinned to, or -1.
    pub core: AtomicI64,
    /// Durable (ASYNC/SYNC) partitions this shard owns.
    pub durable_partitions: AtomicU64,
    /// Bytes of this shard's partitions on disk (log segments and snapshots).
    pub log_bytes: AtomicU64,
    /// Group commits that wrote records (one per partition per pass with writes).
    pub log_commits: AtomicU64,
    /// fsyncs (fdatasync) of log segments: SYNC commits and the ASYNC timer.
    pub fsyncs: AtomicU64,
    /// Failed log writes or fsyncs (each answered -IOERR, or logged for the ASYNC timer).
    pub io_errors: AtomicU64,
    /// Compactions completed.
    pub compactions: AtomicU64,
    /// When the last compaction completed (ms since the Unix epoch; 0: never).
    pub last_compaction_ms: AtomicU64,
    /// How long the last compaction took, from the new segment to the durable snapshot.
    pub last_compaction_duration_ms: AtomicU64,
    /// How long this shard's recovery took at startup.
    pub recovery_ms: AtomicU64,
    /// Keys loaded by this shard's recovery.
    pub recovered_keys: AtomicU64,
}

impl ShardMetrics {
    /// Adds to a counter. Only the owning shard may call this (single writer).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets a gauge. Only the owning shard may call this (single writer).
    #[inline]
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Relaxed);
    }

    /// Subtracts from a gauge. Only the owning shard may call this (single writer).
    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).saturating_sub(n), Relaxed);
    }

    #[inline]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// What INFO reads about the whole server.
#[derive(Debug)]
pub struct ServerMetrics {
    pub started: Instant,
    pub shards: Vec<ShardMetrics>,
}

impl ServerMetrics {
    pub fn new(shards: usize) -> Self {
        ServerMetrics {
            started: Instant::now(),
            shards: (0..shards)
                .map(|_| ShardMetrics {
                    core: AtomicI64::new(-1),
                    ..Default::default()
                })
                .collect(),
        }
    }

    pub fn total(&self, field: impl Fn(&ShardMetrics) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| ShardMetrics::get(field(s)))
            .sum()
    }
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`), 0 if unknown.
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

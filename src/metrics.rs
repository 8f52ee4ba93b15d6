//! Server-wide counters for INFO: one [`ShardMetrics`] per shard, each written only by its
//! shard (single-writer relaxed atomics, like partition stats), readable from any thread.
//!
//! Per command ([`CommandStats`], INFO's `commandstats` and `latencystats`): calls, failed and
//! rejected calls, total time and a log-linear latency histogram, counted by the shard that
//! ran the command. The time is two reads of the CPU's time-stamp counter around the
//! execution ([`ticks`]), converted with a rate calibrated once at startup; error replies
//! count per code ([`ERROR_CODES`], INFO's `errorstats`) through a thread-local set by each
//! shard thread, so the error path needs no metrics argument.

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
    /// Wall time this shard's loop spent outside `poll` (serving), in ns, less the passes of
    /// its spin after work that found nothing (`shard::idle_poll`): its busy share is
    /// the rate of this (`gokv_shard_busy_seconds_total`); 1 s/s is a saturated shard.
    pub busy_ns: AtomicU64,
    /// Connections this shard handed to another shard (see `Affinity`).
    pub migrated_out: AtomicU64,
    /// Partitions this shard owns.
    pub partitions: AtomicU64,
    /// Estimated bytes of the data in this shard's partitions (see `store::memory`).
    pub used_memory: AtomicU64,
    /// Clients this shard disconnected for passing the client output limit.
    pub output_limit_disconnects: AtomicU64,
    /// Pub/Sub on this shard now (gauges, `shard::pubsub`): channels and patterns with a
    /// subscriber here, and connections with a subscription. A publishing shard reads the
    /// first two of every other shard to know where a message must go.
    pub pubsub_channels: AtomicU64,
    pub pubsub_patterns: AtomicU64,
    pub pubsub_clients: AtomicU64,
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
    /// How long each of those fsyncs took (`gokv_fsync_duration_seconds`).
    pub fsync_latency: LatencyHistogram,
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
    /// Per command, indexed by `CommandId as usize`: what this shard executed (data commands
    /// where their partition lives, the rest where the connection lives).
    pub command_stats: Vec<CommandStats>,
    /// Error replies this shard wrote, per code of [`ERROR_CODES`] (Redis's `errorstats`).
    pub errors: [AtomicU64; ERROR_CODES.len()],
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
    /// Connections the acceptor refused at `max-clients` (its thread is the only writer).
    pub rejected_connections: AtomicU64,
    /// Replica links answered (primary side, `crate::replication`, "Partial resync"): with
    /// at least one partition sent whole; with every partition resumed; asked to resume
    /// and not given it for every partition.
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// 40 random hex digits, new at every start (Redis's `run_id`).
    pub run_id: String,
    /// The catalog the shards run, as shard 0 last applied it (for the metrics endpoint,
    /// which has no shard's copy).
    catalog: std::sync::RwLock<std::sync::Arc<crate::catalog::Catalog>>,
    /// Recent (when, total commands) readings for `instantaneous_ops_per_sec`.
    ops_samples: std::sync::Mutex<std::collections::VecDeque<(Instant, u64)>>,
    /// What INFO's statistics subtract: the counters as of the last CONFIG RESETSTAT.
    baseline: std::sync::Mutex<std::sync::Arc<Baseline>>,
}

impl ServerMetrics {
    pub fn new(shards: usize) -> Self {
        calibrate();
        ServerMetrics {
            started: Instant::now(),
            shards: (0..shards)
                .map(|_| ShardMetrics {
                    core: AtomicI64::new(-1),
                    command_stats: (0..crate::command::CommandId::ALL.len())
                        .map(|_| CommandStats::default())
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            rejected_connections: AtomicU64::new(0),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            run_id: {
                let mut bytes = [0u8; 20];
                // Without randomness the id is still an id for this process.
                if getrandom::getrandom(&mut bytes).is_err() {
                    bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
                }
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            },
            catalog: Default::default(),
            ops_samples: Default::default(),
            baseline: Default::default(),
        }
    }

    /// The statistics as of the last CONFIG RESETSTAT (all zero before the first).
    pub fn baseline(&self) -> std::sync::Arc<Baseline> {
        self.baseline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// CONFIG RESETSTAT: INFO's statistics count from `baseline` on.
    pub fn set_baseline(&self, baseline: Baseline) {
        *self.baseline.lock().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(baseline);
    }

    /// The catalog shard 0 runs now.
    pub fn catalog(&self) -> std::sync::Arc<crate::catalog::Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes the catalog shard 0 applied (shard 0 only).
    pub fn set_catalog(&self, catalog: std::sync::Arc<crate::catalog::Catalog>) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog;
    }

    /// One command's statistics summed over the shards.
    pub fn command_totals(&self, id: crate::command::CommandId) -> CommandTotals {
        let mut t = CommandTotals {
            calls: 0,
            sampled: 0,
            nanos: 0,
            failed: 0,
            rejected: 0,
            buckets: vec![0; LATENCY_BUCKETS],
        };
        for shard in &self.shards {
            let s = &shard.command_stats[id as usize];
            t.calls += ShardMetrics::get(&s.calls);
            t.sampled += ShardMetrics::get(&s.sampled);
            t.nanos += ShardMetrics::get(&s.nanos);
            t.failed += ShardMetrics::get(&s.failed);
            t.rejected += ShardMetrics::get(&s.rejected);
            for (sum, b) in t.buckets.iter_mut().zip(&s.buckets) {
                *sum += ShardMetrics::get(b);
            }
        }
        t
    }

    /// Commands per second lately (Redis's `instantaneous_ops_per_sec`): the rate between
    /// the oldest of the readings of the last ~2 s and now. A reading is kept at most every
    /// 100 ms, taken by whoever asks (INFO, the metrics endpoint); after a long time without
    /// a reader the first answer is the average since the last one.
    pub fn instantaneous_ops_per_sec(&self) -> u64 {
        let now = Instant::now();
        let total = self.total(|s| &s.commands);
        let mut samples = self.ops_samples.lock().unwrap_or_else(|e| e.into_inner());
        while samples.len() > 1
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at).as_millis() >= 2000)
        {
            samples.pop_front();
        }
        let rate = match samples.front() {
            Some(&(at, before)) => {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    (total.saturating_sub(before) as f64 / secs).round() as u64
                } else {
                    0
                }
            }
            None => 0,
        };
        if samples
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at).as_millis() >= 100)
        {
            samples.push_back((now, total));
        }
        rate
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

/// The clock per-command statistics read: the CPU's time-stamp counter on x86_64 (a couple of
/// instructions, no system call: two reads per command cost what one `Instant::now()` would
/// several times over), elsewhere nanoseconds since the first read. [`ticks_to_ns`] converts,
/// with the rate [`calibrate`] measured once per process.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC only reads a register; every x86_64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Nanoseconds per tick, as a 32.32 fixed-point number (1 << 32 until calibrated).
static NS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(1 << 32);

/// Measures the tick rate against `Instant` over a few milliseconds, once per process (the
/// first [`ServerMetrics::new`]). Time-stamp counters of current x86_64 CPUs run at a constant
/// rate whatever the core's frequency (`constant_tsc`).
pub fn calibrate() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !cfg!(target_arch = "x86_64") {
            return;
        }
        let (t0, i0) = (ticks(), Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (t1, ns) = (ticks(), i0.elapsed().as_nanos());
        let dt = u128::from(t1.wrapping_sub(t0)).max(1);
        let q32 = ((ns << 32) / dt).clamp(1, u128::from(u64::MAX)) as u64;
        NS_PER_TICK_Q32.store(q32, Relaxed);
    });
}

/// Converts nanoseconds to ticks (for thresholds, set rarely).
pub fn ns_to_ticks(ns: u64) -> u64 {
    let q32 = u128::from(NS_PER_TICK_Q32.load(Relaxed).max(1));
    ((u128::from(ns) << 32) / q32).min(u128::from(u64::MAX)) as u64
}

/// Converts a tick difference to nanoseconds (a multiply and a shift).
#[inline(always)]
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ((u128::from(ticks) * u128::from(NS_PER_TICK_Q32.load(Relaxed))) >> 32) as u64
}

/// Sub-buckets per power of two in a latency histogram: 4, so a bucket spans at most 25% of
/// its lower bound (what p50/p99/p99.9 need, in a few hundred bytes per command).
const SUB_BITS: u32 = 2;
/// Below 2^MIN_POW2 ns (64 ns) everything is bucket 0.
const MIN_POW2: u32 = 6;
/// At and above 2^MAX_POW2 ns (about 69 s) everything is the last bucket.
const MAX_POW2: u32 = 36;
/// Buckets of a [`CommandStats`] latency histogram.
pub const LATENCY_BUCKETS: usize = 2 + ((MAX_POW2 - MIN_POW2) << SUB_BITS) as usize;

/// The histogram bucket of a latency: log-linear (4 per power of two) from 64 ns to 69 s.
#[inline(always)]
pub fn latency_bucket(ns: u64) -> usize {
    if ns < 1 << MIN_POW2 {
        return 0;
    }
    let pow2 = 63 - ns.leading_zeros();
    if pow2 >= MAX_POW2 {
        return LATENCY_BUCKETS - 1;
    }
    let sub = (ns >> (pow2 - SUB_BITS)) as usize & ((1 << SUB_BITS) - 1);
    1 + (((pow2 - MIN_POW2) as usize) << SUB_BITS) + sub
}

/// The exclusive upper bound of a bucket in ns (`u64::MAX` for the last one): every latency
/// in bucket `i` is `< latency_bucket_bound(i)` and `>=` the bound of `i - 1`.
pub fn latency_bucket_bound(i: usize) -> u64 {
    if i == 0 {
        return 1 << MIN_POW2;
    }
    if i >= LATENCY_BUCKETS - 1 {
        return u64::MAX;
    }
    let k = i - 1;
    let pow2 = MIN_POW2 + (k >> SUB_BITS) as u32;
    let sub = (k & ((1 << SUB_BITS) - 1)) as u64;
    (1u64 << pow2) + ((sub + 1) << (pow2 - SUB_BITS))
}

/// A latency histogram of one kind of event on one shard (its fsyncs), written only by that
/// shard: the total time and the [`latency_bucket`] buckets (their sum is the count). Unlike
/// [`CommandStats`] every event is timed: these events are system calls of microseconds to
/// seconds, beside which an `Instant::now()` pair and two stores are nothing.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Total time of the events, in ns.
    pub nanos: AtomicU64,
    pub buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            nanos: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LatencyHistogram {
    /// Counts one event that took `took`. Only the owning shard may call this.
    pub fn record(&self, took: std::time::Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        ShardMetrics::add(&self.nanos, ns);
        ShardMetrics::add(&self.buckets[latency_bucket(ns)], 1);
    }
}

/// One command's statistics on one shard (Redis's `cmdstat_<name>` and
/// `latency_percentiles_usec_<name>`), written only by that shard.
///
/// Redis's meaning: `calls` counts executions (failed ones included), `failed` those that
/// answered an error, `rejected` those refused before they ran (permission, `-OOM`,
/// `-THROTTLED`), which are not in `calls`.
///
/// Data commands (GET, SET, ...: the hot path), PING and ECHO put their time into these
/// statistics one call in [`DATA_SAMPLE`]: the counts are exact, the time (`nanos`,
/// `buckets`) is that of the `sampled` calls, and the total time is estimated as
/// `nanos * calls / sampled` (an unbiased estimate: which calls are sampled depends only on
/// their order). Other commands are sampled every call.
#[derive(Debug)]
pub struct CommandStats {
    pub calls: AtomicU64,
    /// Calls timed.
    pub sampled: AtomicU64,
    /// Execution time of the timed calls, in ns.
    pub nanos: AtomicU64,
    pub failed: AtomicU64,
    pub rejected: AtomicU64,
    /// Execution times of the timed calls, see [`latency_bucket`].
    pub buckets: [AtomicU64; LATENCY_BUCKETS],
}

/// One data command in this many puts its time into the statistics (a power of two): the
/// histogram update is about 50 instructions (`scripts/count-instructions.sh`), one in 8
/// costs a GET a handful in all. The slow log times every call but those of bounded cost
/// on small arguments, which it sees through this sample (`slowlog::time_every_call`).
pub const DATA_SAMPLE: u64 = 8;

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            calls: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A call [`CommandStats::begin`] started: when (if its clock runs), and whether its time
/// is sampled.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The clock at the start; 0 when the call is not timed at all.
    started: u64,
    sampled: bool,
}

impl Timing {
    /// Whether this call's time goes into the statistics.
    pub fn sampled(&self) -> bool {
        self.sampled
    }
}

/// How a command ended, for its [`CommandStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Rejected,
}

impl CommandStats {
    /// Counts a call about to run and starts its clock; its time goes into the statistics
    /// for every call when `every` is 1, one in `every` (a power of two) otherwise. Hand the
    /// result to [`Self::end`]. Only the owning shard may call this.
    #[inline(always)]
    pub fn begin(&self, every: u64) -> Timing {
        self.begin_timed(every, true)
    }

    /// [`Self::begin`], where the clock runs for every call only when `every_call`: else only
    /// for the sampled ones, and [`Self::end`] answers 0 for the others. A time-stamp
    /// counter read costs 40 to 50 cycles here (about 17 ns, `perf annotate`: the two reads
    /// were half of `dispatch`'s samples, 3% of a P16 GET's server CPU), so calls that
    /// cannot be slow skip them (see `slowlog::time_every_call`).
    #[inline(always)]
    pub fn begin_timed(&self, every: u64, every_call: bool) -> Timing {
        let calls = ShardMetrics::get(&self.calls);
        ShardMetrics::set(&self.calls, calls.wrapping_add(1));
        let sampled = calls & (every - 1) == 0;
        Timing {
            started: if sampled || every_call { ticks() } else { 0 },
            sampled,
        }
    }

    /// Finishes a call [`Self::begin`] counted: its time when it is sampled, and how it ended.
    /// Returns how long it took in ticks (0 for a call whose clock did not run).
    #[inline(always)]
    pub fn end(&self, timing: Timing, outcome: Outcome) -> u64 {
        let took = if timing.started == 0 {
            0
        } else {
            ticks().wrapping_sub(timing.started)
        };
        if timing.sampled {
            self.timed(ticks_to_ns(took));
        }
        if outcome != Outcome::Ok {
            self.not_ok(outcome);
        }
        took
    }

    /// Counts one timed call that took `ns`.
    #[inline(never)]
    pub fn timed(&self, ns: u64) {
        ShardMetrics::add(&self.sampled, 1);
        ShardMetrics::add(&self.nanos, ns);
        ShardMetrics::add(&self.buckets[latency_bucket(ns)], 1);
    }

    #[cold]
    #[inline(never)]
    fn not_ok(&self, outcome: Outcome) {
        if outcome == Outcome::Rejected {
            // Counted as a call by `begin`, but it never ran.
            ShardMetrics::sub(&self.calls, 1);
            ShardMetrics::add(&self.rejected, 1);
        } else {
            ShardMetrics::add(&self.failed, 1);
        }
    }

    /// Counts a call refused before it was counted (permission, `-THROTTLED`).
    #[cold]
    pub fn rejected(&self) {
        ShardMetrics::add(&self.rejected, 1);
    }

    /// Counts one call that took `ns` and ended so (a command timed every call, tests).
    pub fn record(&self, ns: u64, outcome: Outcome) {
        if outcome == Outcome::Rejected {
            return self.rejected();
        }
        ShardMetrics::add(&self.calls, 1);
        self.timed(ns);
        if outcome == Outcome::Failed {
            ShardMetrics::add(&self.failed, 1);
        }
    }
}

/// One command's statistics summed over the shards.
#[derive(Debug, Clone)]
pub struct CommandTotals {
    pub calls: u64,
    pub sampled: u64,
    /// Of the timed calls.
    pub nanos: u64,
    pub failed: u64,
    pub rejected: u64,
    pub buckets: Vec<u64>,
}

/// INFO's statistics as of a CONFIG RESETSTAT: what INFO (and LATENCY HISTOGRAM) subtract
/// from the counters, which themselves never go back (the Prometheus endpoint reads them).
#[derive(Debug, Default)]
pub struct Baseline {
    /// Per command, by `CommandId as usize` (empty before the first RESETSTAT).
    pub commands: Vec<CommandTotals>,
    /// Per code of [`ERROR_CODES`].
    pub errors: [u64; ERROR_CODES.len()],
    /// INFO `stats` counters by field name.
    pub stats: Vec<(&'static str, u64)>,
}

impl Baseline {
    /// The baseline of a command (zero when none was taken).
    pub fn command(&self, id: crate::command::CommandId) -> Option<&CommandTotals> {
        self.commands.get(id as usize)
    }

    /// A `stats` counter's baseline.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }
}

impl CommandTotals {
    /// These totals less an earlier reading of the same counters (CONFIG RESETSTAT).
    pub fn since(mut self, base: Option<&CommandTotals>) -> CommandTotals {
        let Some(base) = base else {
            return self;
        };
        self.calls = self.calls.saturating_sub(base.calls);
        self.sampled = self.sampled.saturating_sub(base.sampled);
        self.nanos = self.nanos.saturating_sub(base.nanos);
        self.failed = self.failed.saturating_sub(base.failed);
        self.rejected = self.rejected.saturating_sub(base.rejected);
        for (n, b) in self.buckets.iter_mut().zip(&base.buckets) {
            *n = n.saturating_sub(*b);
        }
        self
    }

    /// The estimated total execution time of all calls, in ns (see [`CommandStats`]).
    pub fn total_nanos(&self) -> u64 {
        if self.sampled == 0 {
            return 0;
        }
        (u128::from(self.nanos) * u128::from(self.calls) / u128::from(self.sampled)) as u64
    }

    /// The latency (in ns) below which a fraction `q` of the calls fell, as the upper bound of
    /// the bucket holding it (0 without calls).
    pub fn percentile_ns(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = latency_bucket_bound(i);
                // The last bucket has no bound: say its lower one.
                return if bound == u64::MAX {
                    latency_bucket_bound(i - 1)
                } else {
                    bound
                };
            }
        }
        0
    }
}

/// Reply error codes counted in INFO's `errorstats` (what `CommandError::code` answers).
pub const ERROR_CODES: [&str; 13] = [
    "ERR",
    "NOPARTITION",
    "WRONGTYPE",
    "NOPROTO",
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
    "IOERR",
    "OOM",
    "THROTTLED",
    "READONLY",
    "NOREPLICAS",
    "EXECABORT",
];

thread_local! {
    /// The metrics and shard of the shard thread running here, for [`count_error`].
    static ERROR_SINK: std::cell::OnceCell<(std::sync::Arc<ServerMetrics>, usize)> =
        const { std::cell::OnceCell::new() };
}

/// Makes this thread's error replies count in shard `shard`'s `errors` (called once, by the
/// shard's thread as it starts).
pub fn count_errors_of(metrics: std::sync::Arc<ServerMetrics>, shard: usize) {
    ERROR_SINK.with(|sink| {
        let _ = sink.set((metrics, shard));
    });
}

/// Counts one error reply with this code on this thread's shard (none off the shards).
#[cold]
pub fn count_error(code: &str) {
    let index = ERROR_CODES.iter().position(|c| *c == code).unwrap_or(0);
    ERROR_SINK.with(|sink| {
        if let Some((metrics, shard)) = sink.get() {
            ShardMetrics::add(&metrics.shards[*shard].errors[index], 1);
        }
    });
}

/// The [`Outcome`] of a command's result: refused before it ran (`-OOM`, `-THROTTLED`,
/// permission) or failed while running.
#[inline(always)]
pub fn outcome(result: &Result<(), crate::command::CommandError>) -> Outcome {
    use crate::command::CommandError as E;
    match result {
        Ok(()) => Outcome::Ok,
        Err(
            E::OutOfMemory
            | E::PartitionFull { .. }
            | E::Throttled(_)
            | E::NoPerm { .. }
            | E::NoAuth,
        ) => Outcome::Rejected,
        Err(_) => Outcome::Failed,
    }
}

/// CPU time this process used, (system, user) in seconds (`getrusage`), or zeros.
pub fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes only into the struct it is given, zeroed here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage that lives across the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_stime), secs(usage.ru_utime))
}

/// The kernel as Redis's `os` field words it: `uname -s -r -m` (`Linux 6.1.0 x86_64`), or the
/// compile-time names when uname fails.
pub fn os_name() -> String {
    // SAFETY: uname writes only into the struct it is given, zeroed here.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname that lives across the call.
    if unsafe { libc::uname(&mut names) } != 0 {
        return format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    }
    let field = |f: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        field(&names.sysname),
        field(&names.release),
        field(&names.machine)
    )
}

/// Physical memory of the machine in bytes (Redis's `total_system_memory`), 0 if unknown.
pub fn total_system_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads system constants.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64).saturating_mul(page.max(0) as u64)
}

/// Bytes as Redis's `*_human` fields print them: `918.94K`, `11.66M`, `0B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_ordered_and_hold_their_values() {
        let mut previous = 0;
        for i in 0..LATENCY_BUCKETS - 1 {
            let bound = latency_bucket_bound(i);
            assert!(bound > previous, "bucket {i}: {bound} after {previous}");
            // The bound is the first value of the next bucket; the one before is in this one.
            assert_eq!(latency_bucket(bound - 1), i, "{}", bound - 1);
            assert_eq!(latency_bucket(bound), i + 1, "{bound}");
            previous = bound;
        }
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        // 4 per power of two: a bucket is at most a quarter of its lower bound wide.
        for i in 2..LATENCY_BUCKETS - 1 {
            let (lo, hi) = (latency_bucket_bound(i - 1), latency_bucket_bound(i));
            assert!((hi - lo) * 4 <= lo, "bucket {i}: {lo}..{hi}");
        }
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let stats = CommandStats::default();
        for _ in 0..990 {
            stats.record(1_000, Outcome::Ok);
        }
        for _ in 0..10 {
            stats.record(1_000_000, Outcome::Failed);
        }
        stats.record(5, Outcome::Rejected);
        let t = CommandTotals {
            calls: ShardMetrics::get(&stats.calls),
            sampled: ShardMetrics::get(&stats.sampled),
            nanos: ShardMetrics::get(&stats.nanos),
            failed: ShardMetrics::get(&stats.failed),
            rejected: ShardMetrics::get(&stats.rejected),
            buckets: stats.buckets.iter().map(ShardMetrics::get).collect(),
        };
        assert_eq!((t.calls, t.failed, t.rejected), (1000, 10, 1));
        assert_eq!(t.nanos, 990 * 1_000 + 10 * 1_000_000);
        assert_eq!(t.total_nanos(), t.nanos);
        let p50 = t.percentile_ns(0.5);
        assert!((1_000..=1_250).contains(&p50), "{p50}");
        assert_eq!(t.percentile_ns(0.99), p50);
        let p999 = t.percentile_ns(0.999);
        assert!((1_000_000..=1_250_000).contains(&p999), "{p999}");
    }

    #[test]
    fn data_commands_are_timed_one_in_eight_and_counted_every_time() {
        let stats = CommandStats::default();
        for i in 0..80 {
            let started = stats.begin(DATA_SAMPLE);
            // The rejected call (2) is taken back out of `calls`.
            let before = if i <= 2 { i } else { i - 1 };
            assert_eq!(started.sampled(), before % 8 == 0, "call {i}");
            let outcome = match i {
                1 => Outcome::Failed,
                2 => Outcome::Rejected,
                _ => Outcome::Ok,
            };
            stats.end(started, outcome);
        }
        let g = |c: &AtomicU64| ShardMetrics::get(c);
        assert_eq!(g(&stats.calls), 79);
        assert_eq!((g(&stats.failed), g(&stats.rejected)), (1, 1));
        assert_eq!(g(&stats.sampled), 10);
        assert_eq!(stats.buckets.iter().map(g).sum::<u64>(), 10);
        // Every call timed.
        let all = CommandStats::default();
        for _ in 0..5 {
            let started = all.begin(1);
            assert!(started.sampled());
            all.end(started, Outcome::Ok);
        }
        assert_eq!(g(&all.sampled), 5);
    }

    #[test]
    fn ticks_convert_to_about_the_elapsed_time() {
        calibrate();
        let (t0, i0) = (ticks(), Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let ns = ticks_to_ns(ticks() - t0) as f64;
        let real = i0.elapsed().as_nanos() as f64;
        assert!(
            (ns / real - 1.0).abs() < 0.05,
            "{ns} ns by ticks, {real} ns"
        );
    }

    #[test]
    fn human_bytes_as_redis_prints_them() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(940_992), "918.94K");
        assert_eq!(human_bytes(12_222_464), "11.66M");
        assert_eq!(human_bytes(25_276_510_208), "23.54G");
    }
}

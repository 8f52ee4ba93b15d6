//! `expire-cycle`: the active expiry sweep. Reclaims keys past their deadline that nobody
//! touches, so that their memory comes back without a read or write meeting them.
//!
//! # How it finds them
//! There is no list of keys with deadlines (a deadline costs 8 bytes in the entry and nothing
//! elsewhere, see `store::arena`), so each partition that has any is walked in memory order
//! from a cursor kept in its table ([`Partition::expire_step`]), a slice at a time.
//!
//! # How much it does
//! As Redis's and Dragonfly's active expiry do, it adapts to what it finds:
//! - normally a run every [`CYCLE`] (Redis's `hz 10`), of at most [`BUDGET`] of walking;
//! - when more than [`STALE_PERCENT`]% of the deadlines a run met were past, the next pass
//!   runs again at once (the step stays due), until a run finds them mostly reclaimed: a
//!   million keys expiring at once are reclaimed at [`BUDGET`] per pass, never in one stall;
//! - a shard with no key with a deadline looks again only every [`IDLE_CYCLE`].
//!
//! Each reclaimed key of a durable partition is logged as a `DEL` through the partition's
//! journal (this step runs before the pass's group commit, see [`super`]), and the shard's
//! memory gauge follows what was freed.

use std::time::{Duration, Instant};

use super::{Budget, Step};
use crate::metrics::ShardMetrics;
use crate::shard::durability::Durability;
use crate::shard::routes::Target;
use crate::shard::Shard;

/// The time between two normal runs (as Redis's default `hz 10`).
const CYCLE: Duration = Duration::from_millis(100);

/// How often a shard with no key with a deadline looks for one.
const IDLE_CYCLE: Duration = Duration::from_secs(1);

/// The most one run spends. Short, because during an expiry storm the step runs every pass,
/// with client requests waiting behind it: what a request may wait for it is about this. At
/// ~150 ns per reclaimed key this is ~300 keys per pass; passes come back to back while the
/// step is eager, so a storm is still reclaimed at nearly the full speed of a core (1M keys in
/// about a second, `scripts/bench-expiry.sh`). 300 us per pass doubled the p99 of a
/// concurrent GET load at 20k requests/s (0.07 -> 0.8 ms); this keeps it near one slice.
const BUDGET: Duration = Duration::from_micros(50);

/// Entries walked between two looks at the clock (~25 ns each, against ~10 us of work).
const SLICE: usize = 64;

/// Above this share of expired deadlines in what a run met, run again at once (Redis's
/// `ACTIVE_EXPIRE_CYCLE_ACCEPTABLE_STALE`).
const STALE_PERCENT: usize = 10;

pub(super) struct ExpiryCycle {
    /// When the next normal run is due.
    next: Instant,
    /// The last run found many stale keys: run again now.
    eager: bool,
    /// Partitions to skip at the start of the next run, so that one with a long walk does not
    /// always go first and the others wait.
    rotate: usize,
}

impl ExpiryCycle {
    pub(super) fn new(now: Instant) -> Self {
        ExpiryCycle {
            next: now + CYCLE,
            eager: false,
            rotate: 0,
        }
    }
}

impl Step for ExpiryCycle {
    fn name(&self) -> &'static str {
        "expire-cycle"
    }

    fn budget(&self) -> Duration {
        BUDGET
    }

    fn due_in(&self, shard: &Shard, now: Instant) -> Option<Duration> {
        // A replica never expires a key by itself: the primary's DEL does (the key is
        // hidden once its deadline passed, by the check every read makes).
        if shard.core.shared.replication.is_replica() {
            return None;
        }
        if self.eager {
            return Some(Duration::ZERO);
        }
        Some(self.next.saturating_duration_since(now))
    }

    fn run(&mut self, shard: &mut Shard, budget: Budget) {
        let core = &mut shard.core;
        let metrics = &core.shared.metrics.shards[core.id];
        let (mut met, mut expired, mut volatile_partitions) = (0usize, 0usize, 0usize);
        let mut out_of_time = false;
        let mut locals: Vec<_> = core
            .routes
            .iter_mut()
            .filter_map(|(name, target)| match target {
                // (A partition whose keys all expired may still drain its index into a
                // smaller one: a few more steps finish that.)
                Target::Local(local)
                    if local.data.with_deadline() > 0 || local.data.draining().is_some() =>
                {
                    Some((name, local))
                }
                _ => None,
            })
            .collect();
        if !locals.is_empty() {
            let rotate = self.rotate % locals.len();
            locals.rotate_left(rotate);
        }
        for (name, local) in locals {
            volatile_partitions += 1;
            if out_of_time {
                continue;
            }
            let before = local.data.used_memory();
            let (data, log, id) = (&mut local.data, &mut local.log, local.id);
            let stream = &mut local.stream;
            loop {
                let step = data.expire_step(SLICE, |key, _| {
                    if let Durability::Logged(log) = log {
                        core.commit.dirty.logged(log.journal.is_empty(), name, id);
                        log.journal.expired(key);
                    } else if let Some(stream) = stream {
                        // A MEMORY partition with replicas: they hear the expiry as a DEL.
                        core.commit.dirty.logged(stream.is_empty(), name, id);
                        stream.expired(key);
                    }
                });
                met += step.with_deadline;
                expired += step.expired;
                if Instant::now() >= budget.deadline {
                    out_of_time = true;
                    break;
                }
                if step.round_done {
                    break;
                }
            }
            let freed = before - data.used_memory();
            if freed > 0 {
                ShardMetrics::sub(&metrics.used_memory, freed);
            }
        }
        ShardMetrics::add(&metrics.expired_keys, expired as u64);
        self.rotate = self.rotate.wrapping_add(1);
        if met > 0 {
            self.eager = expired * 100 > met * STALE_PERCENT;
        } else if volatile_partitions == 0 {
            self.eager = false;
        }
        // (A run that met no deadline at all, walking past keys without one, says nothing
        // about the stale share: an eager sweep stays eager.)
        let cycle = if volatile_partitions == 0 {
            IDLE_CYCLE
        } else {
            CYCLE
        };
        self.next = budget.started + cycle;
    }
}

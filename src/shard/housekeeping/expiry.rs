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
/// with client requests waiting behind it: at ~150 ns per reclaimed key this is ~2,000 keys
/// per pass, and walking past keys that are not expired is ~5 ns each.
const BUDGET: Duration = Duration::from_micros(300);

/// Entries walked between two looks at the clock.
const SLICE: usize = 256;

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

    fn due_in(&self, _shard: &Shard, now: Instant) -> Option<Duration> {
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
                Target::Local(local) if local.data.with_deadline() > 0 => Some((name, local)),
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
            loop {
                let step = data.expire_step(SLICE, |key, _| {
                    if let Durability::Logged(log) = log {
                        core.commit.dirty.logged(log.journal.is_empty(), name, id);
                        log.journal.expired(key);
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
                let gauge = &metrics.used_memory;
                ShardMetrics::set(gauge, ShardMetrics::get(gauge).saturating_sub(freed));
            }
        }
        ShardMetrics::add(&metrics.expired_keys, expired as u64);
        self.rotate = self.rotate.wrapping_add(1);
        self.eager = expired * 100 > met * STALE_PERCENT;
        let cycle = if volatile_partitions == 0 {
            IDLE_CYCLE
        } else {
            CYCLE
        };
        self.next = budget.started + cycle;
    }
}

//! Gathering: a connection that uses no partition (PING, ECHO, INFO, CLIENT SETNAME, ...)
//! moves to the lowest-numbered shard that has room, so that shards with nothing else to
//! do sleep instead of sharing the cores with the client and with the shards that work.
//!
//! # Why
//! The acceptor deals connections round-robin. A connection that uses a partition moves to
//! its owner (`connection::Affinity`), so a benchmark of one partition ends up on one
//! shard; one that uses none stayed where it was dealt, and every shard then woke for a
//! share of it. On a 2-core machine with `--shards 2` and the client on the same machine,
//! that is two shard threads and the client on two cores: `redis-benchmark -c 50 -P 16
//! PING` ran at 0.75M requests/s, with 20,700 voluntary context switches per 1M requests,
//! against 1.09M and 10,000 with `--shards 1` (`scripts/wakeups.sh`). Which shard runs a
//! partition-less request makes no difference to its reply, so the placement that wakes
//! the fewest threads is the best one, as long as the shard it lands on keeps up.
//!
//! # The rule
//! - A connection that made `MIGRATE_AFTER` (64, `connection`) partition-less requests in a
//!   row (`FIRST_MOVE_AFTER`, 4, while it is new: see there; no data request between them;
//!   PUBLISH counts, as its messages reach every
//!   shard's subscribers from any shard; connection commands other than the plain ones,
//!   such as CLIENT, MULTI or SUBSCRIBE, neither count nor break the streak),
//!   and is idle as a migrating connection must be, moves to the lowest-numbered shard
//!   below its own that has room, if there is one. Moves only ever go to a lower number, so
//!   no connection goes back and forth between two shards on gathering alone.
//! - A shard has room while its busy share (the rate of `gokv_shard_busy_seconds_total`,
//!   its loop's wall time outside `poll`, its idle spin not counted) is under
//!   [`ROOM_BELOW`] and it took fewer than [`ARRIVALS_PER_WINDOW`] gathered connections in
//!   the current [`WINDOW`]. The first
//!   keeps a working shard from being loaded further; the second bounds how far connections
//!   that all qualify at once (a benchmark's, at its start) overshoot before the busy share
//!   catches up: with 16 shards and hundreds of connections, shard 0 fills to about
//!   [`ROOM_BELOW`], then shard 1, and so on, instead of all landing on shard 0.
//! - A connection refused (no shard with room) starts a new streak: it asks again after
//!   another streak (`MIGRATE_AFTER` requests, 4 while new, `connection`), not on every
//!   pass.
//! - `migrate-connections no` turns gathering off with the rest of migration.
//!
//! Each shard judges the others' busy shares itself, from their `busy_ns` counters, at
//! most once a [`WINDOW`] and only when a connection asks: a sleeping shard's counter
//! stands still, so it reads as idle, which it is. No shard wakes another to ask.
//!
//! # What it does not do
//! A shard past [`ROOM_BELOW`] takes no more, but the connections already gathered onto it
//! stay: nothing spreads them out again when their load grows later. (The shard they would
//! go to is chosen by the same rule, and spreading and gathering on busy shares alone could
//! pass connections around; a connection that starts using a partition moves to its owner
//! as before.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::metrics::ServerMetrics;

use super::Core;

/// Busy share, in thousandths, under which a shard takes gathered connections. Half: far
/// above what a shard serving a client on the same 2-core machine shows (about 0.15 to
/// 0.3: most of its time it waits for the client), far below a saturated one (1.0), and
/// leaving the shard half its time for the bursts that make its p99.
pub const ROOM_BELOW: u64 = 500;

/// How long a shard's view of the others' busy shares lasts, and the span
/// [`ARRIVALS_PER_WINDOW`] counts over: short enough to follow a benchmark's start, long
/// enough that a busy share is an average over many passes.
pub const WINDOW: Duration = Duration::from_millis(10);

/// Gathered connections a shard takes per [`WINDOW`] at most: 25 connections gather in
/// about 30 ms, and the load a shard can be handed before its busy share shows it is 8
/// connections' worth.
pub const ARRIVALS_PER_WINDOW: u32 = 8;

/// The gathered connections one shard took in the current [`WINDOW`] (in its
/// `ShardHandle`, where every shard reaches it).
#[derive(Default)]
pub struct Arrivals {
    /// The window's number (high 32 bits) and the arrivals in it (low 32 bits).
    slot: AtomicU64,
}

impl Arrivals {
    /// Counts one arrival in the window of `now` (windows counted from `epoch`, the same
    /// instant for every shard): false when that window is full.
    pub fn admit(&self, epoch: Instant, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(epoch).as_millis();
        // Windows wrap after 2^32 of them (about 500 days): a false "new window" at most.
        let window = (elapsed / WINDOW.as_millis()) as u32 as u64;
        self.slot
            .fetch_update(Relaxed, Relaxed, |slot| {
                if slot >> 32 != window {
                    Some(window << 32 | 1)
                } else if (slot as u32) < ARRIVALS_PER_WINDOW {
                    Some(slot + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }
}

/// One shard's view of every shard's busy share, refreshed at most once a [`WINDOW`].
#[derive(Default)]
pub(super) struct Loads {
    sampled: Option<Instant>,
    /// Each shard's `busy_ns` when sampled.
    busy_ns: Vec<u64>,
    /// Each shard's busy share between the last two samples, in thousandths.
    share: Vec<u64>,
}

impl Loads {
    /// Samples the shards' busy counters when the view is older than a window. The first
    /// sample has no span to divide by: every shard reads as idle until the next.
    fn refresh(&mut self, metrics: &ServerMetrics, now: Instant) {
        if self
            .sampled
            .is_some_and(|at| now.saturating_duration_since(at) < WINDOW)
        {
            return;
        }
        let span = self
            .sampled
            .map_or(0, |at| now.saturating_duration_since(at).as_nanos() as u64);
        self.busy_ns.resize(metrics.shards.len(), 0);
        self.share.resize(metrics.shards.len(), 0);
        for (i, shard) in metrics.shards.iter().enumerate() {
            let busy = shard.busy_ns.load(Relaxed);
            let spent = busy.saturating_sub(self.busy_ns[i]);
            self.share[i] = spent
                .saturating_mul(1000)
                .checked_div(span)
                .map_or(0, |share| share.min(1000));
            self.busy_ns[i] = busy;
        }
        self.sampled = Some(now);
    }
}

impl Core {
    /// The shard a partition-less connection of this shard should move to (see the module
    /// docs), counted as one arrival there; `None` to stay.
    pub(super) fn gather_target(&mut self) -> Option<usize> {
        if self.id == 0 {
            return None;
        }
        self.loads.refresh(&self.shared.metrics, self.now);
        let (loads, now) = (&self.loads, self.now);
        let epoch = self.shared.metrics.started;
        (0..self.id).find(|&shard| {
            loads.share[shard] < ROOM_BELOW && self.shared.shards[shard].arrivals.admit(epoch, now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_takes_a_bounded_number_of_arrivals_per_window() {
        let arrivals = Arrivals::default();
        let epoch = Instant::now();
        for _ in 0..ARRIVALS_PER_WINDOW {
            assert!(arrivals.admit(epoch, epoch));
        }
        assert!(!arrivals.admit(epoch, epoch), "the window is full");
        assert!(
            !arrivals.admit(epoch, epoch + WINDOW / 2),
            "the same window"
        );
        assert!(
            arrivals.admit(epoch, epoch + WINDOW),
            "a new window starts empty"
        );
    }

    #[test]
    fn busy_shares_come_from_the_counters_between_two_samples() {
        let metrics = ServerMetrics::new(2);
        let mut loads = Loads::default();
        let start = Instant::now();
        loads.refresh(&metrics, start);
        assert_eq!(loads.share, vec![0, 0], "one sample: idle");
        metrics.shards[0].busy_ns.store(7_000_000, Relaxed);
        metrics.shards[1].busy_ns.store(2_000_000, Relaxed);
        // Within a window the view stands.
        loads.refresh(&metrics, start + WINDOW / 2);
        assert_eq!(loads.share, vec![0, 0]);
        loads.refresh(&metrics, start + WINDOW);
        assert_eq!(loads.share, vec![700, 200]);
        // A sleeping shard's counter stands still: idle.
        loads.refresh(&metrics, start + WINDOW * 2);
        assert_eq!(loads.share, vec![0, 0]);
    }
}

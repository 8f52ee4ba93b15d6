//! The shard's per-pass housekeeping: work that no request asks for (timers, sweeps), as a
//! list of named steps, each with its own time budget.
//!
//! # The steps and where they run in a pass
//! A pass of the loop (see [`super`]) runs the socket events and the inbox, then:
//!
//! 1. **Before the commit**: steps that change partitions: `expire-cycle`, the active expiry
//!    sweep ([`expiry`]); eviction will come after it. A change to a durable partition is
//!    logged through its journal like a client's write, noting the partition for the commit
//!    ([`DirtyPartitions::logged`](super::durability::DirtyPartitions::logged)). Run here,
//!    its records go out in this pass's one `write` (and `fdatasync`) with the clients'
//!    writes. Run after the commit, they would wait in memory for the next pass's commit,
//!    which may be a long `poll` away (nothing wakes the loop for a journal), and that
//!    commit, should it fail, would roll them back with writes they have nothing to do with.
//! 2. the group commit, the outboxes, the connections' writes;
//! 3. **After the writes**: steps that make no reply and must not delay one, in this order:
//!    - `fsync`: the ASYNC partitions' fsync, once their oldest unsynced commit is
//!      [`ASYNC_FSYNC_INTERVAL`](super::durability::ASYNC_FSYNC_INTERVAL) old (their writes
//!      were answered at the commit: ASYNC promises the OS has them, not the disk);
//!    - `compaction`: one slice of each compaction in progress;
//!    - `replication`: one slice of each replica's full sync (`shard::replicate`);
//!    - `wait`: the parked `WAIT`s that the replicas' acks satisfy or whose timeout passed
//!      (`shard::wait`), answered and written out at once;
//!    - `idle-sweep`: with `timeout` on, once a second, closing connections idle for longer
//!      (after the writes, so that a connection's last replies were tried first);
//!    - `failed-login-log`: the count of failed logins not logged one by one;
//!    - `tls-handshakes`: closing TLS connections whose handshake passed its deadline, and
//!      the count of refused TLS connections not logged one by one.
//!
//! The shutdown drain comes after all of them, in [`Shard::run`] itself: it decides whether
//! the loop ends, which no step may.
//!
//! # The contract of a step
//! - [`Step::due_in`] says when the step next has work: `None`, nothing scheduled (something
//!   else, a write or a login, will make it due); `Some(d)`, in `d`; `Some(ZERO)`, now. The
//!   loop runs a step in a pass where it is due, and sleeps in `poll` no longer than the
//!   soonest step ([`Housekeeping::due_in`]), so a step never needs a timer of its own. A step
//!   that has more work than one run's budget (a compaction not done, a sweep that found
//!   many stale keys) stays due now, and the loop polls without sleeping until it is done.
//! - [`Step::run`] gets a [`Budget`]: a step whose work can stop part-way checks the deadline
//!   and continues in a later pass; one whose work cannot (an `fdatasync`) says what bounds
//!   it. A run that takes longer than its budget is logged (debug) with the step's name, which
//!   is also the latency event (`LATENCY LATEST`) its runs are kept under when they reach
//!   `latency-monitor-threshold` ([`crate::latency`]).
//! - Steps run on the shard's thread with the whole shard at hand, like the rest of the pass:
//!   no locks, and nothing that blocks except the disk work the shard's invariants allow.
//!
//! # Adding a step
//! A file in this folder with a type that implements [`Step`] (its state lives in it, or in
//! the shard when requests share it), its `mod` line below, and one line in the right list
//! of [`Housekeeping::new`].

mod compaction;
mod expiry;
mod failed_logins;
mod fsync;
mod idle;
mod replication;
mod tls_handshakes;
mod wait;

use std::time::{Duration, Instant};

use crate::config::Config;

use super::Shard;

/// What a step may spend on one run.
#[derive(Clone, Copy)]
pub(super) struct Budget {
    /// When the run began: the step's `now`.
    pub started: Instant,
    /// When it should be done: a step whose work can stop part-way stops here.
    pub deadline: Instant,
}

/// One kind of housekeeping work (see the module docs for the contract). `S` is what it works
/// on: the shard (a stand-in in this module's tests).
pub(super) trait Step<S = Shard> {
    /// Its name, as logs and latency events show it (`fsync`, `expire-cycle`, ...).
    fn name(&self) -> &'static str;

    /// The time one run should take at most.
    fn budget(&self) -> Duration;

    /// How long until it has work: `None` nothing scheduled, `Some(ZERO)` now.
    fn due_in(&self, shard: &S, now: Instant) -> Option<Duration>;

    /// Does the work that is due, within `budget` where the work can stop part-way.
    fn run(&mut self, shard: &mut S, budget: Budget);
}

/// Where in the pass a list of steps runs (see the module docs for why).
#[derive(Clone, Copy)]
pub(super) enum Phase {
    /// After the requests of the pass, before the group commit: steps that change partitions.
    BeforeCommit,
    /// After the connections' writes: steps that make no reply.
    AfterWrites,
}

/// The shard's steps, in the order they run. Owned by [`Shard::run`] (not by the shard) so
/// that a step can be given the whole shard.
pub(super) struct Housekeeping<S = Shard> {
    before_commit: Vec<Box<dyn Step<S>>>,
    after_writes: Vec<Box<dyn Step<S>>>,
    /// The shard's id, for the log.
    shard: usize,
}

impl Housekeeping {
    /// The list.
    pub(super) fn new(shard: usize, config: &Config, now: Instant) -> Self {
        Housekeeping {
            before_commit: vec![Box::new(expiry::ExpiryCycle::new(now))],
            after_writes: vec![
                Box::new(fsync::AsyncFsync),
                Box::new(compaction::Compaction),
                Box::new(replication::Replication),
                Box::new(wait::Wait),
                Box::new(idle::IdleSweep::new(config, now)),
                Box::new(failed_logins::FailedLoginLog),
                Box::new(tls_handshakes::TlsHandshakes),
            ],
            shard,
        }
    }
}

impl<S> Housekeeping<S> {
    /// How long the loop may sleep before a step is due; `None`: no limit.
    pub(super) fn due_in(&self, shard: &S, now: Instant) -> Option<Duration> {
        self.before_commit
            .iter()
            .chain(&self.after_writes)
            .filter_map(|step| step.due_in(shard, now))
            .min()
    }

    /// Runs the steps of `phase` that are due.
    pub(super) fn run(&mut self, phase: Phase, shard: &mut S) {
        let steps = match phase {
            Phase::BeforeCommit => &mut self.before_commit,
            Phase::AfterWrites => &mut self.after_writes,
        };
        if steps.is_empty() {
            return;
        }
        let now = Instant::now();
        for step in steps.iter_mut() {
            if step.due_in(shard, now) != Some(Duration::ZERO) {
                continue;
            }
            let started = Instant::now();
            let budget = Budget {
                started,
                deadline: started + step.budget(),
            };
            step.run(shard, budget);
            let finished = Instant::now();
            // `fsync`, `compaction` and `expire-cycle` are latency events (LATENCY LATEST).
            crate::latency::record_step(step.name(), (finished - started).as_millis() as u64);
            if finished > budget.deadline {
                log::debug!(
                    "shard {}: housekeeping step '{}' took {} us, past its budget of {} us",
                    self.shard,
                    step.name(),
                    (finished - started).as_micros(),
                    step.budget().as_micros()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the stand-in steps work on: when each is due, and what ran.
    #[derive(Default)]
    struct Fake {
        due: Vec<Option<Duration>>,
        ran: Vec<&'static str>,
    }

    struct Named(&'static str, usize);

    impl Step<Fake> for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn budget(&self) -> Duration {
            Duration::from_secs(1)
        }
        fn due_in(&self, fake: &Fake, _now: Instant) -> Option<Duration> {
            fake.due[self.1]
        }
        fn run(&mut self, fake: &mut Fake, budget: Budget) {
            assert!(budget.deadline >= budget.started + self.budget());
            fake.ran.push(self.0);
        }
    }

    fn list() -> Housekeeping<Fake> {
        Housekeeping {
            before_commit: vec![Box::new(Named("before", 0))],
            after_writes: vec![Box::new(Named("a", 1)), Box::new(Named("b", 2))],
            shard: 0,
        }
    }

    #[test]
    fn the_poll_waits_for_the_soonest_step_of_either_phase() {
        let list = list();
        let now = Instant::now();
        let mut fake = Fake {
            due: vec![None, None, None],
            ..Fake::default()
        };
        assert_eq!(list.due_in(&fake, now), None, "nothing scheduled: no limit");
        fake.due = vec![
            None,
            Some(Duration::from_secs(3)),
            Some(Duration::from_secs(1)),
        ];
        assert_eq!(list.due_in(&fake, now), Some(Duration::from_secs(1)));
        fake.due[0] = Some(Duration::ZERO);
        assert_eq!(list.due_in(&fake, now), Some(Duration::ZERO));
    }

    #[test]
    fn a_phase_runs_only_its_own_steps_that_are_due_in_list_order() {
        let mut list = list();
        let mut fake = Fake {
            due: vec![
                Some(Duration::ZERO),
                Some(Duration::ZERO),
                Some(Duration::ZERO),
            ],
            ..Fake::default()
        };
        list.run(Phase::BeforeCommit, &mut fake);
        assert_eq!(fake.ran, ["before"]);
        fake.ran.clear();
        list.run(Phase::AfterWrites, &mut fake);
        assert_eq!(fake.ran, ["a", "b"]);
        // Due later, or not scheduled: not run.
        fake.ran.clear();
        fake.due = vec![None, Some(Duration::from_millis(1)), Some(Duration::ZERO)];
        list.run(Phase::BeforeCommit, &mut fake);
        list.run(Phase::AfterWrites, &mut fake);
        assert_eq!(fake.ran, ["b"]);
    }

    #[test]
    fn step_names_are_distinct() {
        let config = Config::default();
        let list = Housekeeping::new(0, &config, Instant::now());
        let mut names: Vec<&str> = list
            .before_commit
            .iter()
            .chain(&list.after_writes)
            .map(|step| step.name())
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
    }
}

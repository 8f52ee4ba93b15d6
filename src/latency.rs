//! The latency monitor (`LATENCY LATEST|HISTORY|RESET`): events that took at least
//! `latency-monitor-threshold` milliseconds, kept per event as Redis 7 keeps them.
//!
//! # Events and where they are measured
//! - `fsync`: the ASYNC partitions' fsync step and the group commit's `fdatasync` of SYNC
//!   partitions (`shard::housekeeping::fsync`, `shard::durability`);
//! - `compaction`: one slice of compaction (`shard::housekeeping::compaction`);
//! - `expire-cycle`: one run of the active expiry sweep (`shard::housekeeping::expiry`);
//! - `eviction`: making room for one write by evicting keys (`command::data`);
//! - `drain`: one drain of the shard's inbox, forwarded requests and replies
//!   (`Shard::drain_inbox`);
//! - `command`: one command's execution (measured for the slow log, [`crate::slowlog`]).
//!
//! With the threshold 0 (the default, as Redis's) nothing is measured but commands (which are
//! timed anyway) and housekeeping steps (which are timed for their budget log anyway).
//!
//! # Where samples live
//! As the slow log: per shard, in a thread-local of the shard's thread, written only by it;
//! LATENCY asks every shard through its mailbox and merges (`shard::observe`). Per event, as
//! Redis's `latency.c`: the last [`HISTORY_LEN`] samples `(unix time s, ms)`, one per second
//! (a second's later samples keep its maximum), and the largest ever.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Redis's `LATENCY_TS_LEN`: samples kept per event.
pub const HISTORY_LEN: usize = 160;

/// An event the monitor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Fsync,
    Compaction,
    ExpireCycle,
    Eviction,
    Drain,
    Command,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::Fsync,
        Event::Compaction,
        Event::ExpireCycle,
        Event::Eviction,
        Event::Drain,
        Event::Command,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::Fsync => "fsync",
            Event::Compaction => "compaction",
            Event::ExpireCycle => "expire-cycle",
            Event::Eviction => "eviction",
            Event::Drain => "drain",
            Event::Command => "command",
        }
    }

    /// The event of a name, as LATENCY HISTORY and RESET take it (case-insensitive).
    pub fn named(name: &[u8]) -> Option<Event> {
        Event::ALL
            .into_iter()
            .find(|e| name.eq_ignore_ascii_case(e.name().as_bytes()))
    }
}

/// One event's samples on one shard (or merged over all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Series {
    /// `(unix time in s, ms)`, oldest first, one per second.
    pub samples: VecDeque<(u64, u64)>,
    /// The largest latency ever recorded (since the last RESET).
    pub max: u64,
}

impl Series {
    fn add(&mut self, time: u64, ms: u64) {
        match self.samples.back_mut() {
            Some((t, latency)) if *t == time => *latency = (*latency).max(ms),
            _ => {
                self.samples.push_back((time, ms));
                if self.samples.len() > HISTORY_LEN {
                    self.samples.pop_front();
                }
            }
        }
        self.max = self.max.max(ms);
    }

    /// Adds another shard's series of the same event.
    pub fn merge(&mut self, other: &Series) {
        let mut all: Vec<(u64, u64)> = self
            .samples
            .iter()
            .chain(other.samples.iter())
            .copied()
            .collect();
        all.sort_unstable();
        let mut merged: VecDeque<(u64, u64)> = VecDeque::new();
        for (t, ms) in all {
            match merged.back_mut() {
                Some((bt, bms)) if *bt == t => *bms = (*bms).max(ms),
                _ => merged.push_back((t, ms)),
            }
        }
        while merged.len() > HISTORY_LEN {
            merged.pop_front();
        }
        self.samples = merged;
        self.max = self.max.max(other.max);
    }
}

/// Every event's series on one shard; an event never recorded (or reset) is empty.
pub type Events = [Series; Event::ALL.len()];

thread_local! {
    static EVENTS: RefCell<Events> = RefCell::new(Default::default());
}

/// `latency-monitor-threshold` in ms; 0: off.
static THRESHOLD_MS: AtomicU64 = AtomicU64::new(0);

/// Takes the live settings (at start, and after each CONFIG SET).
pub fn configure(live: &crate::config::LiveValues) {
    THRESHOLD_MS.store(live.latency_monitor_threshold, Relaxed);
}

/// Whether the monitor is on (what a caller checks before measuring something it would not
/// measure otherwise).
#[inline]
pub fn on() -> bool {
    THRESHOLD_MS.load(Relaxed) != 0
}

/// Records that `event` took `ms` on this thread's shard, if that reaches the threshold.
pub fn record(event: Event, ms: u64) {
    let threshold = THRESHOLD_MS.load(Relaxed);
    if threshold == 0 || ms < threshold {
        return;
    }
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    EVENTS.with(|events| events.borrow_mut()[event as usize].add(time, ms));
}

/// Records `event` as having taken since `started`.
pub fn record_since(event: Event, started: std::time::Instant) {
    record(event, started.elapsed().as_millis() as u64);
}

/// Measures an event from its creation to its drop, while the monitor is on (otherwise it
/// reads no clock): `let _event = Timer::start(Event::Eviction);`.
pub struct Timer(Option<(Event, std::time::Instant)>);

impl Timer {
    #[inline]
    pub fn start(event: Event) -> Timer {
        Timer(on().then(|| (event, std::time::Instant::now())))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((event, started)) = self.0 {
            record_since(event, started);
        }
    }
}

/// A housekeeping step that took `ms`, by its name (steps that are no event are ignored).
pub fn record_step(name: &str, ms: u64) {
    if let Some(event) = Event::named(name.as_bytes()) {
        record(event, ms);
    }
}

/// This shard's series.
pub fn snapshot() -> Events {
    EVENTS.with(|events| events.borrow().clone())
}

/// Empties the series of `events` on this shard; returns which of them held samples.
pub fn reset(events: &[Event]) -> Vec<Event> {
    EVENTS.with(|all| {
        let mut all = all.borrow_mut();
        events
            .iter()
            .copied()
            .filter(|&e| {
                let held = !all[e as usize].samples.is_empty();
                all[e as usize] = Series::default();
                held
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_keeps_its_maximum_and_the_history_is_bounded() {
        let mut s = Series::default();
        s.add(10, 5);
        s.add(10, 3);
        s.add(10, 7);
        s.add(11, 2);
        assert_eq!(s.samples, [(10, 7), (11, 2)]);
        assert_eq!(s.max, 7);
        for t in 0..500 {
            s.add(100 + t, 1);
        }
        assert_eq!(s.samples.len(), HISTORY_LEN);
        assert_eq!(s.samples.back(), Some(&(599, 1)));
        let mut other = Series::default();
        other.add(599, 9);
        other.add(600, 4);
        s.merge(&other);
        assert_eq!(s.samples.len(), HISTORY_LEN);
        assert_eq!(
            s.samples.iter().rev().take(2).collect::<Vec<_>>(),
            [&(600, 4), &(599, 9)]
        );
        assert_eq!(s.max, 9);
    }

    #[test]
    fn only_events_past_the_threshold_are_kept() {
        THRESHOLD_MS.store(5, Relaxed);
        reset(&Event::ALL);
        record(Event::Fsync, 4);
        record(Event::Fsync, 5);
        record_step("idle-sweep", 100);
        record_step("expire-cycle", 6);
        let events = snapshot();
        assert_eq!(events[Event::Fsync as usize].samples.len(), 1);
        assert_eq!(events[Event::ExpireCycle as usize].max, 6);
        assert_eq!(reset(&[Event::Fsync, Event::Drain]), [Event::Fsync]);
        THRESHOLD_MS.store(0, Relaxed);
        record(Event::Drain, 1000);
        assert!(snapshot()[Event::Drain as usize].samples.is_empty());
    }
}

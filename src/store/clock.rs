//! The time that decides whether a key is expired: unix time in milliseconds, read once per
//! event-loop pass on a shard thread.
//!
//! Every command of one pass sees the same instant (as Redis gives each command one
//! timestamp), and a lookup of a key with a deadline costs a thread-local load rather than a
//! clock read. A shard calls [`start_pass`] right after its `poll` returns, so the cached time
//! is at most one pass old; a pass is bounded (reads are budgeted), so a key is invisible
//! within that bound of its deadline, on every shard. A thread that never calls
//! [`start_pass`] (recovery before the loop starts, tools, tests) reads the clock on every
//! call instead.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// This pass's time, or 0: not in a pass, read the clock.
    static PASS_NOW: Cell<u64> = const { Cell::new(0) };
}

/// The clock itself, in unix ms (0 if the clock is set before 1970).
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Now, in unix ms: the pass's time on a shard thread.
#[inline]
pub fn now_ms() -> u64 {
    match PASS_NOW.with(Cell::get) {
        0 => system_now_ms(),
        now => now,
    }
}

/// Starts a pass: later [`now_ms`] calls on this thread return this instant until the next.
pub fn start_pass() {
    PASS_NOW.with(|now| now.set(system_now_ms().max(1)));
}

/// Leaves pass mode: [`now_ms`] reads the clock again.
pub fn end_passes() {
    PASS_NOW.with(|now| now.set(0));
}

/// Pins this thread's time (tests): until [`end_passes`], [`now_ms`] is `ms`.
pub fn pin_for_tests(ms: u64) {
    PASS_NOW.with(|now| now.set(ms.max(1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_has_one_instant_and_outside_one_the_clock_runs() {
        pin_for_tests(1_000);
        assert_eq!(now_ms(), 1_000);
        end_passes();
        let a = now_ms();
        assert!(a > 1_600_000_000_000, "{a}");
        start_pass();
        let b = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(now_ms(), b);
        end_passes();
        assert!(now_ms() >= b + 5);
    }
}

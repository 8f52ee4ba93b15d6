//! WARN lines that a peer can cause, at most one a second per source.
//!
//! A flood of wrong passwords, or of connections past `max-clients`, would otherwise write a
//! WARN line per attempt (tens of thousands a second), drowning everything else in the log
//! and filling the disk it goes to. A [`RateLimitedWarn`] logs the first event of an interval
//! in full and counts the others; the count goes out with the next line, or on its own from
//! [`RateLimitedWarn::flush`] once the interval is over. It is owned by one thread (a shard,
//! the acceptor): no locks, no atomics.

use std::time::{Duration, Instant};

/// At most one line per this: enough to see that something keeps happening and from where,
/// few enough that a flood costs the log nothing.
pub const INTERVAL: Duration = Duration::from_secs(1);

pub struct RateLimitedWarn {
    /// What is counted, in the plural, for the count lines ("failed logins").
    what: &'static str,
    /// No line before this.
    next_line: Instant,
    /// Events since the last line that were not logged.
    suppressed: u64,
}

impl RateLimitedWarn {
    pub fn new(what: &'static str, now: Instant) -> Self {
        RateLimitedWarn {
            what,
            next_line: now,
            suppressed: 0,
        }
    }

    /// It happened again; `line` says how (built only when it is logged).
    pub fn event(&mut self, now: Instant, line: impl FnOnce() -> String) {
        if now < self.next_line {
            self.suppressed += 1;
            return;
        }
        let line = line();
        match std::mem::take(&mut self.suppressed) {
            0 => log::warn!("{line}"),
            n => log::warn!("{line}; {n} more {} before it not logged", self.what),
        }
        self.next_line = now + INTERVAL;
    }

    /// How long until [`RateLimitedWarn::flush`] has a count to log, if it will: the owner's
    /// poll timeout, so that a count is not held back until the next event.
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        (self.suppressed > 0).then(|| self.next_line.saturating_duration_since(now))
    }

    /// Logs the count of an interval that is over (one comparison otherwise). `source` names
    /// the thread in the line ("shard 1", "acceptor").
    #[inline]
    pub fn flush(&mut self, now: Instant, source: &dyn std::fmt::Display) {
        if self.suppressed > 0 && now >= self.next_line {
            let n = std::mem::take(&mut self.suppressed);
            log::warn!("{source}: {n} more {} not logged one by one", self.what);
            self.next_line = now + INTERVAL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_an_interval_and_the_rest_counted() {
        let start = Instant::now();
        let mut warn = RateLimitedWarn::new("things", start);
        let mut built = 0;
        for _ in 0..100 {
            warn.event(start, || {
                built += 1;
                String::from("a thing")
            });
        }
        assert_eq!(built, 1, "only the logged line is built");
        assert_eq!(warn.suppressed, 99);
        assert_eq!(warn.due_in(start), Some(INTERVAL));
        warn.flush(start, &"test");
        assert_eq!(warn.suppressed, 99, "not before the interval is over");
        warn.flush(start + INTERVAL, &"test");
        assert_eq!(warn.suppressed, 0);
        assert_eq!(warn.due_in(start + INTERVAL), None);
    }
}

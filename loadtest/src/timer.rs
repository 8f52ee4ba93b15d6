//! A monotonic clock in nanoseconds and a `timerfd` that wakes an event loop at an exact time.
//!
//! Under `--rate` a request is due at a precise instant, and its latency is counted from that
//! instant. `epoll_wait` only takes a timeout in whole milliseconds, which would add up to 1 ms
//! of send delay (and so of measured latency) to every paced request; a `timerfd` registered in
//! the same poll wakes the loop with microsecond precision instead.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock `timerfd` and `std::time::Instant` both use.
#[inline]
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A one-shot timer, re-armed at will, readable in `mio` when it fires.
pub struct Timer {
    fd: OwnedFd,
    /// The absolute time it is armed for, if any, to skip redundant syscalls.
    armed_at: Option<u64>,
}

impl Timer {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer { fd, armed_at: None })
    }

    /// Arms the timer to fire at `at_ns` on [`mono_ns`]'s clock (at once if that has passed).
    pub fn arm_at(&mut self, at_ns: u64) -> io::Result<()> {
        if self.armed_at == Some(at_ns) {
            return Ok(());
        }
        // An all-zero it_value would disarm the timer, so never pass 0.
        let at_ns = at_ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and itimerspec; a null old-value pointer is allowed.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed_at = Some(at_ns);
        Ok(())
    }

    /// Consumes a firing so the next one is reported again.
    pub fn acknowledge(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer; EAGAIN (not yet fired) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        self.armed_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Duration;

    #[test]
    fn fires_at_the_armed_time() {
        let mut poll = Poll::new().unwrap();
        let mut timer = Timer::new(poll.registry(), Token(7)).unwrap();
        let start = mono_ns();
        timer.arm_at(start + 3_000_000).unwrap();
        let mut events = Events::with_capacity(4);
        let mut fired = false;
        while !fired {
            poll.poll(&mut events, Some(Duration::from_secs(2)))
                .unwrap();
            fired = events.iter().any(|e| e.token() == Token(7));
            assert!(mono_ns() - start < 1_000_000_000, "timer never fired");
        }
        timer.acknowledge();
        assert!(mono_ns() - start >= 3_000_000);
    }
}

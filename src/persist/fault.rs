//! Fault injection for tests (cargo feature `fault-injection`): makes the next `n` log writes
//! or fsyncs fail (group commits and the truncation after a failed one, segment creation, the
//! catalog file; not the ASYNC timer or compaction, which run at moments a test cannot
//! predict), so that the `-IOERR` path can be tested against the real binary
//! (`DEBUG FAIL-WRITE <n>`, `DEBUG FAIL-FSYNC <n>`), and the directory fsync that ends an
//! atomic replace of the catalog or `users.json`, after the rename (`DEBUG FAIL-DIRSYNC <n>`).
//!
//! Without the feature every check is an inlined `Ok(())`. With it, the counters are
//! process-wide atomics (a test arms them, the next shard to write consumes them); they are
//! never touched otherwise.

use std::io;

/// Which operation to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Write,
    Fsync,
    /// The directory fsync after the rename of an atomic replace (catalog, `users.json`).
    DirSync,
}

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub static WRITES: AtomicU64 = AtomicU64::new(0);
    pub static FSYNCS: AtomicU64 = AtomicU64::new(0);
    pub static DIR_SYNCS: AtomicU64 = AtomicU64::new(0);

    pub fn take(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// True when this build can inject faults.
pub const ENABLED: bool = cfg!(feature = "fault-injection");

/// Makes the next `n` operations of `fault` fail (no-op without the feature).
pub fn arm(fault: Fault, n: u64) {
    #[cfg(feature = "fault-injection")]
    {
        let counter = match fault {
            Fault::Write => &armed::WRITES,
            Fault::Fsync => &armed::FSYNCS,
            Fault::DirSync => &armed::DIR_SYNCS,
        };
        counter.store(n, std::sync::atomic::Ordering::SeqCst);
    }
    let _ = (fault, n);
}

/// Fails if a fault of this kind is armed.
#[inline]
pub fn check(fault: Fault) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    {
        let counter = match fault {
            Fault::Write => &armed::WRITES,
            Fault::Fsync => &armed::FSYNCS,
            Fault::DirSync => &armed::DIR_SYNCS,
        };
        if armed::take(counter) {
            return Err(io::Error::other(format!("injected {fault:?} failure")));
        }
    }
    let _ = fault;
    Ok(())
}

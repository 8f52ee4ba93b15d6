//! The request parser reserves nothing for sizes a client only claims, measured by what is
//! *asked of the allocator*, not by resident memory.
//!
//! Resident memory (RSS) cannot see this: a `Vec::with_capacity(536870912)` for a claimed
//! `$536870912` bulk maps 512 MiB that stay untouched, so RSS does not move, yet four such
//! headers reserve 2 GiB of address space and commit charge, and the first bytes written
//! into them make it real. So this binary installs a counting global allocator (its own: a
//! test binary may replace the allocator, the library's unit tests may not) and drives
//! [`gokv::protocol::Parser`] directly with headers that claim the most the default limits
//! allow: a `*1048576` array and `$536870912` bulks, followed by only a few bytes.
//!
//! Counting is per thread and only inside [`measure`], so the test harness's own threads and
//! the setup of each test do not disturb it. The property: everything the parser asks for
//! while framing is bounded by what has *arrived* (a small multiple of the bytes fed), never by
//! what was claimed. The server binary is checked the same way from outside, through its
//! `VmSize`, in `tests/limits.rs` (`claimed_sizes_are_not_allocated`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gokv::protocol::{Limits, Parsed, Parser};

/// The system allocator, with the calls of a thread inside [`measure`] counted.
struct Counting;

thread_local! {
    /// True while the current thread is inside [`measure`].
    static ON: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated minus bytes freed since `measure` started (frees of older blocks can
    /// take it below zero).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` seen.
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// The largest single block asked for (allocation or the new size of a reallocation).
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Records a change of `delta` live bytes from a request for a block of `size` bytes.
/// `try_with`: during thread teardown the thread locals may be gone; nothing is counted then.
fn record(delta: isize, size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            LIVE.with(|live| {
                let now = live.get() + delta;
                live.set(now);
                PEAK.with(|peak| peak.set(peak.get().max(now)));
            });
            LARGEST.with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call is passed unchanged to `System`, which upholds the GlobalAlloc contract;
// the bookkeeping touches only `const`-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize, layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize, layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as isize), 0);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size as isize - layout.size() as isize, new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What the allocator was asked for on this thread inside [`measure`], since [`reset`].
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// Most bytes held at once.
    peak: usize,
    /// The largest single block.
    largest: usize,
}

/// Starts counting afresh on this thread.
fn reset() {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|l| l.set(0));
}

/// Runs `f` with this thread's allocations counted (added to what was counted since
/// [`reset`], so that what one call keeps and the next adds to is seen as held at once).
fn measure<T>(f: impl FnOnce() -> T) -> T {
    ON.with(|on| on.set(true));
    let out = f();
    ON.with(|on| on.set(false));
    out
}

/// What was counted since [`reset`].
fn asked() -> Asked {
    Asked {
        peak: PEAK.with(Cell::get).max(0) as usize,
        largest: LARGEST.with(Cell::get),
    }
}

/// Feeds `input` to a fresh parser with the default (largest) limits in `chunk`-byte pieces,
/// as a connection's reads would, and returns what parsing asked of the allocator and the
/// last outcome. Only the `parse` calls are measured: the test's own buffer is not.
fn feed(input: &[u8], chunk: usize) -> (Asked, Parsed) {
    let mut parser = Parser::new(Limits::default());
    let mut buf: Vec<u8> = Vec::with_capacity(input.len());
    let mut last = Parsed::Incomplete;
    reset();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        last = measure(|| parser.parse(&mut buf)).expect("a valid frame");
        if !matches!(last, Parsed::Incomplete) {
            break;
        }
    }
    (asked(), last)
}

/// What the parser may ask for while framing `fed` bytes: its span list grows by doubling
/// as arguments arrive (8 bytes a span, at least 7 bytes of frame each), plus a little slack.
fn allowed(fed: usize) -> usize {
    4 * fed + 4096
}

#[track_caller]
fn assert_bounded(what: &str, input: &[u8], chunk: usize) {
    let (asked, outcome) = feed(input, chunk);
    assert_eq!(outcome, Parsed::Incomplete, "{what}");
    let limit = allowed(input.len());
    assert!(
        asked.largest <= limit && asked.peak <= limit,
        "{what}: after {} bytes the parser asked the allocator for a block of {} bytes and \
         held {} at once (allowed: {limit}), sized by the client's claim",
        input.len(),
        asked.largest,
        asked.peak,
    );
}

#[test]
fn a_claimed_million_arguments_reserve_nothing() {
    assert_bounded("a bare *1048576 header", b"*1048576\r\n", 64);
    assert_bounded(
        "*1048576 and its first argument",
        b"*1048576\r\n$3\r\nSET\r\n",
        4,
    );
    // A thousand arguments arrive out of the million claimed: room for them, no more.
    let mut frame = b"*1048576\r\n".to_vec();
    for _ in 0..1000 {
        frame.extend_from_slice(b"$1\r\nx\r\n");
    }
    assert_bounded("*1048576 and 1000 of its arguments", &frame, 1024);
}

#[test]
fn a_claimed_512_mib_bulk_reserves_nothing() {
    assert_bounded(
        "a $536870912 header after two arguments",
        b"*3\r\n$3\r\nSET\r\n$1\r\np\r\n$536870912\r\n",
        5,
    );
    assert_bounded(
        "a $536870912 header and three data bytes",
        b"*1\r\n$536870912\r\nabc",
        64,
    );
    // A megabyte of the 512 MiB arrives, 16 KiB a read: the parser copies none of it.
    let mut frame = b"*2\r\n$3\r\nSET\r\n$536870912\r\n".to_vec();
    frame.resize(frame.len() + 1024 * 1024, b'v');
    let (asked, outcome) = feed(&frame, 16 * 1024);
    assert_eq!(outcome, Parsed::Incomplete);
    assert!(
        asked.largest <= 4096 && asked.peak <= 4096,
        "framing 1 MiB of a claimed 512 MiB bulk asked for {asked:?}"
    );
}

/// The counter sees the parser's allocations at all: a request that really has 10,000
/// arguments makes its span list grow to hold them. Without this, a broken counter (or a
/// parser whose span list stopped being measured) would pass the tests above vacuously.
#[test]
fn arguments_that_arrive_are_counted() {
    let mut frame = b"*10000\r\n".to_vec();
    for _ in 0..10_000 {
        frame.extend_from_slice(b"$1\r\nx\r\n");
    }
    let (asked, outcome) = feed(&frame, frame.len());
    assert_eq!(
        outcome,
        Parsed::Request {
            consumed: frame.len()
        }
    );
    // 10,000 spans of 8 bytes.
    assert!(asked.peak >= 80_000, "counted only {asked:?}");
    assert!(asked.peak <= allowed(frame.len()), "{asked:?}");
}

//! Acknowledgements: what each replica has applied, told to its primary on the same
//! connection, the other way.
//!
//! # The frame
//! ```text
//! ACK <shard> <shard-offset>     replica to primary: every record of primary shard <shard>
//!                                up to <shard-offset> is applied
//! ```
//! A replica writes one `ACK` per primary shard whose applied offset moved, back to back in
//! one write, from its link thread (which owns the stream, TLS or not): each time round its
//! loop (at most once per read from the primary, so coalesced per batch), polling every
//! millisecond while its shards still apply what it handed them, and every shard's once a
//! second ([`ACK_EVERY`]) so the primary knows the lag of an idle replica. It starts after
//! the first frame from the primary, when the connection is already the primary's feed
//! (never a client connection that would take `ACK` for a command).
//!
//! # The primary's side
//! Over plain TCP a reader thread beside each feed's sender ([`start_reader`]) reads the
//! acks from a clone of the socket: it blocks on it (a shard never does), at most a second
//! at a time. A TLS session cannot be split between two threads, so there the feed's sender
//! reads them itself ([`poll_tls`]): it waits for frames at most [`TLS_ACK_POLL`] at a time
//! and takes whatever the socket has after each wait, without blocking on it. Either way
//! what each replica acknowledged is kept in its feed's [`Acked`]. Every read is bounded: an incomplete frame longer
//! than [`MAX_ACK_BYTES`], a frame that is not `ACK <shard> <offset>`, a shard that does not
//! exist, or damage the parser finds drops the replica (it syncs again). An offset past what
//! was pushed to the feed is taken as what was pushed: a replica cannot acknowledge what it
//! was never sent.
//!
//! After an ack the reader bumps the server's ack epoch and wakes the shards with a `WAIT`
//! parked ([`State::acked`]); on every wake (an ack, or the second without one) it counts the
//! good replicas for `--min-replicas-to-write` ([`State::refresh_good`]), so a write checks
//! one atomic and never scans the replicas.

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::link::LinkStream;
use super::{unix_ms, wire, Feed, State};

/// How often a replica acknowledges when nothing moved (Redis's `REPLCONF ACK` cadence),
/// and how long the primary's reader waits on the socket before it looks around.
pub const ACK_EVERY: Duration = Duration::from_secs(1);

/// The most bytes of unparsed acks the primary holds for one replica: an `ACK` frame is
/// under 60 bytes, a few hundred shards' worth fit many times over.
pub const MAX_ACK_BYTES: usize = 64 << 10;

/// The longest a TLS feed's sender waits for frames before it looks for acks (what a
/// `WAIT` on a TLS replica may take longer than on a plain one).
pub const TLS_ACK_POLL: Duration = Duration::from_millis(2);

/// How often a reader counts the good replicas at most (on acks; and on every wake-up of a
/// second without one).
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// What one replica acknowledged (primary side, in its feed).
pub struct Acked {
    /// Per primary shard: the shard offset acknowledged.
    offsets: Vec<AtomicU64>,
    /// Unix milliseconds of the last ack (the feed's start before the first).
    last_ack_ms: AtomicU64,
    /// `--replica-announce-ip` of the replica, when it sent one (`REPLCONF ip-address`).
    pub announce_ip: OnceLock<String>,
    /// The server's state, for a TLS feed's sender to report acks to (weak: the state
    /// holds the feed).
    pub state: OnceLock<Weak<State>>,
}

impl Acked {
    pub fn new(shards: usize) -> Acked {
        Acked {
            offsets: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            last_ack_ms: AtomicU64::new(unix_ms()),
            announce_ip: OnceLock::new(),
            state: OnceLock::new(),
        }
    }

    /// The sum of the acknowledged shard offsets (INFO's `offset=`, ROLE's).
    pub fn offset(&self) -> u64 {
        self.offsets.iter().map(|o| o.load(Ordering::Relaxed)).sum()
    }

    /// Whether every shard's acknowledged offset reached `target`'s (a missing entry is 0).
    pub fn covers(&self, target: &[u64]) -> bool {
        self.offsets
            .iter()
            .zip(target)
            .all(|(o, t)| o.load(Ordering::Relaxed) >= *t)
    }

    /// Whole seconds since the last ack (INFO's `lag=`, as Redis counts it).
    pub fn lag_secs(&self) -> u64 {
        unix_ms().saturating_sub(self.last_ack_ms.load(Ordering::Relaxed)) / 1000
    }

    /// Milliseconds since the last ack.
    pub fn lag_ms(&self) -> u64 {
        unix_ms().saturating_sub(self.last_ack_ms.load(Ordering::Relaxed))
    }

    fn note(&self, shard: usize, offset: u64) {
        if let Some(o) = self.offsets.get(shard) {
            o.fetch_max(offset, Ordering::Relaxed);
        }
    }

    fn touch(&self) {
        self.last_ack_ms.store(unix_ms(), Ordering::Relaxed);
    }
}

/// Starts the thread that reads `feed`'s acks from `socket` (a clone of the feed's socket).
pub fn start_reader(state: Arc<State>, feed: Arc<Feed>, socket: TcpStream) -> std::io::Result<()> {
    socket.set_read_timeout(Some(ACK_EVERY))?;
    std::thread::Builder::new()
        .name(format!("gokv-feed-acks-{}", feed.id))
        .spawn(move || {
            read_acks(&state, &feed, socket);
            state.refresh_good();
        })?;
    Ok(())
}

fn read_acks(state: &State, feed: &Feed, mut socket: TcpStream) {
    let mut reader = AckReader::default();
    let mut chunk = [0u8; 4096];
    loop {
        if feed.is_dropped() {
            return;
        }
        let got = match socket.read(&mut chunk) {
            Ok(0) => Err("it closed the connection".to_string()),
            Ok(n) => reader.take(&chunk[..n], feed, state),
            Err(e) if super::replica::is_timeout(&e) => Ok(()),
            Err(e) => Err(format!("reading its acknowledgements failed: {e}")),
        };
        if let Err(why) = got {
            feed.drop_replica(&why);
            return;
        }
        reader.refresh(state, false);
    }
}

/// Takes what a TLS feed's socket holds now, never waiting on it (its read timeout is
/// short): the sender calls it after every wait. `Err`: drop the replica, saying why.
pub fn poll_tls(
    socket: &mut LinkStream,
    reader: &mut AckReader,
    feed: &Feed,
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let Some(state) = feed.acked.state.get().and_then(Weak::upgrade) else {
        return Ok(());
    };
    let mut chunk = [0u8; 4096];
    // A full chunk may leave decrypted bytes in the session: read on without asking.
    let mut more = false;
    loop {
        if !super::link::readable_now(socket.tcp().as_raw_fd()) && !more {
            break;
        }
        match socket.read(&mut chunk) {
            Ok(0) => return Err("it closed the connection".into()),
            Ok(n) => {
                reader.take(&chunk[..n], feed, &state)?;
                more = n == chunk.len();
            }
            // A TLS record not whole yet.
            Err(e) if super::replica::is_timeout(&e) => break,
            Err(e) => return Err(format!("reading its acknowledgements failed: {e}")),
        }
    }
    reader.refresh(&state, false);
    Ok(())
}

/// The bytes of acks read from one replica and not parsed yet.
pub struct AckReader {
    buf: Vec<u8>,
    refreshed: Instant,
}

impl Default for AckReader {
    fn default() -> AckReader {
        AckReader {
            buf: Vec::new(),
            refreshed: Instant::now(),
        }
    }
}

impl AckReader {
    /// Takes bytes the replica sent: notes every whole `ACK`, wakes the waiting shards.
    /// `Err`: anything else, or more than [`MAX_ACK_BYTES`] without a whole frame.
    fn take(&mut self, bytes: &[u8], feed: &Feed, state: &State) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let (used, acks) = take_acks(&self.buf, state.shards, |shard, offset| {
            feed.acked
                .note(shard, offset.min(feed.pushed_offset(shard)))
        })
        .map_err(|why| format!("a bad acknowledgement: {why}"))?;
        self.buf.drain(..used);
        if self.buf.len() > MAX_ACK_BYTES {
            return Err(format!(
                "an acknowledgement frame longer than {MAX_ACK_BYTES} bytes"
            ));
        }
        if acks > 0 {
            feed.acked.touch();
            state.acked();
            self.refresh(state, false);
        }
        Ok(())
    }

    /// Counts the good replicas again if it has not for [`REFRESH_EVERY`] (or `now`).
    pub fn refresh(&mut self, state: &State, now: bool) {
        if now || self.refreshed.elapsed() >= REFRESH_EVERY {
            self.refreshed = Instant::now();
            state.refresh_good();
        }
    }
}

/// Parses every whole `ACK` frame at the start of `buf`, calling `note(shard, offset)` for
/// each; returns the bytes used and the frames found. `Err`: anything but `ACK` frames.
fn take_acks(
    buf: &[u8],
    shards: usize,
    mut note: impl FnMut(usize, u64),
) -> Result<(usize, usize), String> {
    let (mut at, mut acks) = (0, 0);
    loop {
        match wire::parse(&buf[at..])? {
            wire::Parsed::Incomplete => return Ok((at, acks)),
            wire::Parsed::Frame(parts, used) => {
                let [b"ACK", shard, offset] = parts.as_slice() else {
                    return Err(format!(
                        "a frame '{}' of {} elements (expected ACK <shard> <offset>)",
                        String::from_utf8_lossy(&parts[0][..parts[0].len().min(16)]),
                        parts.len()
                    ));
                };
                let shard = wire::parse_num(shard)? as usize;
                if shard >= shards {
                    return Err(format!("shard {shard} (this server has {shards})"));
                }
                note(shard, wire::parse_num(offset)?);
                at += used;
                acks += 1;
            }
        }
    }
}

/// Appends `ACK <shard> <offset>` (the replica's side).
pub fn encode_ack(out: &mut Vec<u8>, shard: usize, offset: u64) {
    wire::encode_with(out, b"ACK", &[shard as u64, offset], None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse_in_order_and_anything_else_is_refused() {
        let mut buf = Vec::new();
        encode_ack(&mut buf, 0, 10);
        encode_ack(&mut buf, 1, 7);
        let whole = buf.len();
        encode_ack(&mut buf, 1, 99);
        let mut seen = Vec::new();
        let cut = whole + 5;
        let (used, n) = take_acks(&buf[..cut], 2, |s, o| seen.push((s, o))).unwrap();
        assert_eq!((used, n), (whole, 2), "the cut frame waits");
        assert_eq!(seen, [(0, 10), (1, 7)]);
        for bad in [
            &b"*1\r\n$4\r\nPING\r\n"[..],
            b"*3\r\n$3\r\nACK\r\n$1\r\n5\r\n$1\r\n1\r\n",
            b"*3\r\n$3\r\nACK\r\n$1\r\n0\r\n$2\r\n-1\r\n",
            b"+OK\r\n",
            b"*2\r\n$3\r\nACK\r\n$1\r\n0\r\n",
        ] {
            assert!(
                take_acks(bad, 2, |_, _| {}).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn coverage_is_per_shard() {
        let a = Acked::new(2);
        a.note(0, 5);
        a.note(1, 3);
        a.note(1, 2);
        assert_eq!(a.offset(), 8, "offsets only grow");
        assert!(a.covers(&[5, 3]));
        assert!(a.covers(&[0, 0]));
        assert!(!a.covers(&[6, 0]));
        assert!(!a.covers(&[0, 4]));
    }
}

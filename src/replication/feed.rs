//! A feed: the frames on their way to one replica, and the thread that writes them.
//!
//! Shards and the coordinator [`Feed::push`] frames (never blocking: a push that would take
//! the feed past its byte bound drops the replica instead). Over plain TCP a push that finds
//! nothing queued and nobody writing writes its frames itself, at once, with a send that
//! cannot block (`MSG_DONTWAIT`); what the socket does not take then (and every push while
//! something is queued) is queued for the feed's sender thread, which takes the frames in
//! order and does the blocking socket writes, and sends `PING` after a second in which it
//! wrote nothing itself (so also once a second while every push writes at once: 14 bytes,
//! which the replica skips); frames queued behind the one it took go in the same write (up
//! to 256 KiB). Writing at once is what the common case costs least: handing each pass's
//! frames to the sender woke it (a futex wake on the shard, two context switches on a
//! machine whose cores the replica shares) for a write the shard can do in one syscall; the
//! sender was 11% of the primary's CPU under SET -P 16 with a replica. One lock (`writing`)
//! is held by whoever writes, and a push writes only while the queue is empty, so the
//! stream's order is the order of the pushes. When the socket fails, or the feed was
//! dropped, the thread closes the socket and ends; the frames still queued are freed with
//! the channel.
//!
//! [`Feed::offset`] is what was *pushed* to it; what the replica acknowledged is in
//! [`Feed::acked`], read from the same socket by a thread of its own ([`super::acks`]).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::link::LinkStream;
use super::{unix_secs, wire};
use crate::acl::{Acl, Perms, User, ALL};

/// How long the sender waits for a frame before it sends `PING`: the replica's
/// `master_last_io_seconds_ago` and its link timeout count on it.
pub const PING_EVERY: Duration = Duration::from_secs(1);

/// A snapshot slice is only sent while the feed holds less than this (or a quarter of its
/// bound, if less), and is at most that big: enough to keep the socket busy, little enough
/// that a full sync never fills the feed's bound on its own.
pub const SNAPSHOT_HIGH_WATER: usize = 4 << 20;

/// The sender writes the frames queued behind the one it took in the same `write`, up to
/// this many bytes.
const COALESCE: usize = 256 << 10;

/// Held while frames are pushed to more than one feed (see [`push_to_all`]). One per
/// process: a process is one server.
static PUSH_ORDER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Pushes `frames` to each feed, in one order for every feed: with two or more, under a lock
/// every pusher (each shard, the coordinator) takes. So all replicas receive the live stream
/// in the same order, and of two replicas the one with the larger `slave_repl_offset` holds
/// everything the other holds. That is what makes a failover safe: Sentinel promotes the
/// replica with the largest offset, and every write that `WAIT` saw acknowledged (by any
/// replica) is then on it. Without the lock, two shards' frames could reach two feeds in
/// different orders, and a replica ahead on one shard but behind on another could win with
/// an acknowledged write missing. `pushed` runs after each successful push. The lock is
/// held only while frames are queued or written at once (pushes never wait on a socket).
pub fn push_to_all<'a>(
    feeds: impl ExactSizeIterator<Item = &'a Arc<Feed>>,
    frames: &Arc<Vec<u8>>,
    mut pushed: impl FnMut(&Feed),
) {
    let _order = (feeds.len() > 1).then(|| PUSH_ORDER.lock().unwrap_or_else(|e| e.into_inner()));
    for feed in feeds {
        if feed.push(frames.clone()) {
            pushed(feed);
        }
    }
}

/// One replica's queue.
pub struct Feed {
    /// Counts replicas since start (log lines).
    pub id: u64,
    /// The replica's address, and the port it says it listens on (INFO's `slaveN`).
    pub peer: SocketAddr,
    pub listening_port: u16,
    /// The user the replica logged in as: the feed lives only while that user (this one, not
    /// a later one of the same name) holds ADMIN on `*` ([`Feed::still_allowed`]).
    pub user: Arc<User>,
    tx: Sender<Arc<Vec<u8>>>,
    /// Bytes pushed and not yet written (the sender counts them off once written).
    queued: AtomicUsize,
    /// Over plain TCP, a second handle on the socket: a push writes through it at once when
    /// nothing is queued ([`Feed::push`]). `None` over TLS (a session has one writer).
    direct: Option<TcpStream>,
    /// Held by whoever writes to the socket, the sender or a push writing at once.
    writing: Mutex<()>,
    limit: usize,
    dropped: AtomicBool,
    /// Shards whose full sync was sent whole (`SYNCED`): online once all have.
    pub synced_shards: AtomicUsize,
    shards: usize,
    /// Per shard: the shard offset of the last records pushed.
    offsets: Vec<AtomicU64>,
    /// When the sender last wrote (unix seconds).
    last_write: AtomicU64,
    /// What the replica acknowledged ([`super::acks`]).
    pub acked: super::acks::Acked,
    /// What the replica asked to resume (set before its sync starts), and what it got.
    pub resume: std::sync::OnceLock<super::backlog::Resume>,
    pub outcome: super::backlog::Outcome,
}

impl Feed {
    /// Starts the sender thread on `socket` (put in blocking mode) and returns the feed.
    pub fn start(
        id: u64,
        socket: LinkStream,
        peer: SocketAddr,
        listening_port: u16,
        user: Arc<User>,
        shards: usize,
        limit: usize,
    ) -> std::io::Result<Arc<Feed>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let tcp = socket.tcp();
        tcp.set_nonblocking(false)?;
        tcp.set_nodelay(true)?;
        // A replica that stops reading is dropped when its feed passes the bound; a write
        // that blocks this long means the replica is gone without a reset.
        tcp.set_write_timeout(Some(Duration::from_secs(60)))?;
        let direct = match &socket {
            LinkStream::Plain(tcp) => Some(tcp.try_clone()?),
            _ => None,
        };
        let feed = Arc::new(Feed {
            id,
            peer,
            listening_port,
            user,
            tx,
            queued: AtomicUsize::new(0),
            direct,
            writing: Mutex::new(()),
            limit,
            dropped: AtomicBool::new(false),
            synced_shards: AtomicUsize::new(0),
            shards,
            offsets: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            last_write: AtomicU64::new(unix_secs()),
            acked: super::acks::Acked::new(shards),
            resume: Default::default(),
            outcome: Default::default(),
        });
        let sender = feed.clone();
        std::thread::Builder::new()
            .name(format!("gokv-feed-{id}"))
            .spawn(move || sender.run(socket, rx))?;
        Ok(feed)
    }

    /// Sends a frame (or several, back to back): written at once when nothing is queued and
    /// the socket takes it without blocking, or else queued for the sender (see the module
    /// docs). False when the replica is dropped: now, because this would pass the bound or
    /// the socket failed, or earlier.
    pub fn push(&self, frames: Arc<Vec<u8>>) -> bool {
        if self.is_dropped() {
            return false;
        }
        if let Some(socket) = &self.direct {
            // Only while nothing is queued: checked again under the lock, which the sender
            // holds until it counted off what it wrote, so nothing pushed earlier is still
            // on its way.
            if self.queued() == 0 {
                if let Ok(_writing) = self.writing.try_lock() {
                    if self.queued() == 0 {
                        return match send_now(socket, &frames) {
                            Ok(sent) if sent == frames.len() => {
                                self.last_write.store(unix_secs(), Ordering::Relaxed);
                                true
                            }
                            // The rest goes to the sender (still under the lock: it is next).
                            Ok(0) => self.enqueue(frames),
                            Ok(sent) => self.enqueue(Arc::new(frames[sent..].to_vec())),
                            Err(e) => {
                                self.drop_replica(&format!("write failed: {e}"));
                                false
                            }
                        };
                    }
                }
            }
        }
        self.enqueue(frames)
    }

    /// Queues frames for the sender.
    fn enqueue(&self, frames: Arc<Vec<u8>>) -> bool {
        let len = frames.len();
        let queued = self.queued.fetch_add(len, Ordering::Relaxed) + len;
        if queued > self.limit {
            self.drop_replica(&format!(
                "its feed would hold {queued} bytes, past --repl-buffer ({} bytes); it must \
                 sync again",
                self.limit
            ));
            return false;
        }
        if self.tx.send(frames).is_err() {
            self.dropped.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Below this many queued bytes a snapshot slice of up to this many may be pushed (see
    /// [`SNAPSHOT_HIGH_WATER`]).
    pub fn snapshot_room(&self) -> usize {
        SNAPSHOT_HIGH_WATER.min(self.limit / 4).max(1)
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }

    /// May the replica's user still replicate under `acl`? It must exist (the same user: a
    /// new one of that name is someone else) and hold ADMIN on `*`, what `REPLSYNC` needed.
    pub fn still_allowed(&self, acl: &Acl) -> bool {
        acl.current_allows(&self.user, Perms::ADMIN, ALL.as_bytes())
    }

    /// Drops the replica (logged once): the sender thread closes its socket.
    pub fn drop_replica(&self, why: &str) {
        if !self.dropped.swap(true, Ordering::Relaxed) {
            log::warn!(
                "replication: dropping replica {} ({}): {why}",
                self.id,
                self.peer
            );
            // Wake the sender if it waits for a frame.
            let _ = self.tx.send(Arc::new(Vec::new()));
        }
    }

    /// Notes the shard offset of records pushed for `shard`.
    pub fn note_offset(&self, shard: usize, offset: u64) {
        if let Some(o) = self.offsets.get(shard) {
            o.store(offset, Ordering::Relaxed);
        }
    }

    /// The shard offset pushed so far for `shard` (what an ack is capped at).
    pub fn pushed_offset(&self, shard: usize) -> u64 {
        self.offsets
            .get(shard)
            .map_or(0, |o| o.load(Ordering::Relaxed))
    }

    /// The offset pushed so far.
    pub fn offset(&self) -> u64 {
        self.offsets.iter().map(|o| o.load(Ordering::Relaxed)).sum()
    }

    /// INFO's `state=`: `wait_bgsave` until every shard sent its snapshot, then `online`.
    pub fn state(&self) -> &'static str {
        if self.synced_shards.load(Ordering::Relaxed) >= self.shards {
            "online"
        } else {
            "wait_bgsave"
        }
    }

    /// Every shard sent its full sync (`state=online`): counted by `WAIT` and
    /// `--min-replicas-to-write` from then on, as Redis counts online replicas only.
    pub fn is_online(&self) -> bool {
        !self.is_dropped() && self.synced_shards.load(Ordering::Relaxed) >= self.shards
    }

    /// INFO's `ip=`: the address the replica announced (`--replica-announce-ip`), or the
    /// one its connection comes from.
    pub fn shown_ip(&self) -> String {
        match self.acked.announce_ip.get() {
            Some(ip) => ip.clone(),
            None => self.peer.ip().to_string(),
        }
    }

    /// Seconds since the sender last wrote.
    pub fn lag(&self) -> u64 {
        unix_secs().saturating_sub(self.last_write.load(Ordering::Relaxed))
    }

    fn run(self: Arc<Self>, mut socket: LinkStream, rx: Receiver<Arc<Vec<u8>>>) {
        let mut ping = Vec::new();
        wire::encode(&mut ping, &[b"PING"]);
        // A TLS feed reads its replica's acks itself, between frames (`acks::poll_tls`);
        // a plain one has a reader thread.
        let tls = socket.is_tls();
        let wait = if tls {
            let _ = socket
                .tcp()
                .set_read_timeout(Some(Duration::from_millis(1)));
            super::acks::TLS_ACK_POLL
        } else {
            PING_EVERY
        };
        let mut acks = super::acks::AckReader::default();
        let mut wrote = std::time::Instant::now();
        let mut batch = Vec::new();
        loop {
            if self.is_dropped() {
                break;
            }
            if tls {
                if let Err(why) = super::acks::poll_tls(&mut socket, &mut acks, &self) {
                    self.drop_replica(&why);
                    break;
                }
            }
            let (frames, counted) = match rx.recv_timeout(wait) {
                Ok(frames) => (frames, true),
                Err(RecvTimeoutError::Timeout) if wrote.elapsed() >= PING_EVERY => {
                    (Arc::new(ping.clone()), false)
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if self.is_dropped() {
                break;
            }
            // Whatever else is queued goes in the same write (up to COALESCE bytes): one
            // syscall, and one wake-up of the replica's reader, for several passes' frames.
            let mut bytes = if counted { frames.len() } else { 0 };
            let out: &[u8] = if counted && frames.len() < COALESCE && !rx.is_empty() {
                batch.clear();
                batch.extend_from_slice(&frames);
                while batch.len() < COALESCE {
                    let Ok(more) = rx.try_recv() else { break };
                    batch.extend_from_slice(&more);
                    bytes += more.len();
                }
                &batch
            } else {
                &frames
            };
            let written = {
                let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
                let written = socket.write_all(out).and_then(|()| socket.flush());
                // Counted off before the lock goes: a push that then finds nothing queued
                // may write at once.
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
                written
            };
            if batch.capacity() > 4 * COALESCE {
                // One huge frame (a catalog) does not keep its buffer.
                batch = Vec::new();
            }
            if let Err(e) = written {
                self.drop_replica(&format!("write failed: {e}"));
                break;
            }
            self.last_write.store(unix_secs(), Ordering::Relaxed);
            wrote = std::time::Instant::now();
        }
        socket.close();
        if let Some(state) = self.acked.state.get().and_then(std::sync::Weak::upgrade) {
            state.refresh_good();
        }
        log::info!("replication: replica {} ({}) detached", self.id, self.peer);
    }
}

/// One send of `bytes` that never blocks: how many the socket took (0 when its buffer is
/// full).
fn send_now(socket: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: a valid descriptor (the socket lives as long as `socket`) and a buffer of
        // `bytes.len()` readable bytes.
        let sent = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclChange, GrantChange};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// A feed writing to a socket whose other end this returns, for `user` of `acl`.
    fn feed_of(acl: &Acl, user: &str) -> (Arc<Feed>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let out = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (back, peer) = listener.accept().unwrap();
        let user = acl.get(user.as_bytes()).unwrap().clone();
        let feed = Feed::start(1, LinkStream::Plain(out), peer, 0, user, 2, 64 << 20).unwrap();
        (feed, back)
    }

    /// A feed writing to a socket whose other end this returns.
    fn feed_to_socket() -> (Arc<Feed>, TcpStream) {
        feed_of(&acl_change(&Acl::default(), user("repl")), "repl")
    }

    fn acl_change(acl: &Acl, change: AclChange) -> Acl {
        acl.apply(&change).unwrap()
    }

    fn user(name: &str) -> AclChange {
        AclChange::CreateUser {
            name: name.into(),
            hash: "h".into(),
            default_partition: None,
        }
    }

    fn admin_on_all(name: &str, grant: bool) -> AclChange {
        let change = GrantChange {
            perms: Perms::ADMIN,
            target: ALL.into(),
            user: name.into(),
        };
        if grant {
            AclChange::Grant(change)
        } else {
            AclChange::Revoke(change)
        }
    }

    /// The feed may go on while its very user holds ADMIN on `*`: not once it lost the grant
    /// (nor on a partition-level ADMIN alone), nor for a new user of the same name.
    #[test]
    fn a_feed_is_allowed_only_while_its_own_user_holds_admin_on_all() {
        let acl = acl_change(&Acl::default(), user("repl"));
        let granted = acl_change(&acl, admin_on_all("repl", true));
        let (feed, _back) = feed_of(&granted, "repl");
        assert!(feed.still_allowed(&granted));
        assert!(!feed.still_allowed(&acl_change(&granted, admin_on_all("repl", false))));
        let on_one = acl_change(
            &acl,
            AclChange::Grant(GrantChange {
                perms: Perms::ADMIN,
                target: "p".into(),
                user: "repl".into(),
            }),
        );
        assert!(!feed.still_allowed(&on_one));
        let dropped = acl_change(&granted, AclChange::DropUser("repl".into()));
        assert!(!feed.still_allowed(&dropped));
        let again = acl_change(
            &acl_change(&dropped, user("repl")),
            admin_on_all("repl", true),
        );
        assert!(!feed.still_allowed(&again), "a new user of the same name");
    }

    /// Reads frames from `socket` until `count` arrived (PINGs left out): each frame's
    /// elements after its kind.
    fn read_frames(socket: &mut TcpStream, count: usize) -> Vec<Vec<Vec<u8>>> {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        while frames.len() < count {
            let mut chunk = [0u8; 65536];
            let n = socket.read(&mut chunk).unwrap();
            assert!(n > 0, "the feed closed early");
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while let wire::Parsed::Frame(parts, used) =
                wire::parse(&buf[at..]).expect("a damaged stream")
            {
                if parts[0] != b"PING" {
                    frames.push(parts[1..].iter().map(|p| p.to_vec()).collect());
                }
                at += used;
            }
            buf.drain(..at);
        }
        frames
    }

    /// Pushes while the replica reads nothing: the socket's buffer fills, a push's frames go
    /// out in part at once and the rest through the sender, later pushes queue behind them.
    /// No push blocks, and once the replica reads, the stream is every frame, whole, in the
    /// order of each pusher's pushes.
    #[test]
    fn pushes_past_a_full_socket_never_block_nor_reorder() {
        let (feed, mut back) = feed_to_socket();
        const EACH: usize = 3000;
        let value = vec![b'x'; 1500];
        let pushers: Vec<_> = (0..2u8)
            .map(|pusher| {
                let (feed, value) = (feed.clone(), value.clone());
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let mut frame = Vec::new();
                        let n = format!("{pusher}:{i}");
                        wire::encode(&mut frame, &[b"RECORDS", n.as_bytes(), &value]);
                        assert!(feed.push(Arc::new(frame)), "dropped");
                    }
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        assert!(
            feed.queued() > 0,
            "9 MB pushed to a socket nobody reads: some must be queued"
        );
        let frames = read_frames(&mut back, 2 * EACH);
        let mut next = [0usize; 2];
        for frame in &frames {
            assert_eq!(frame[1], value, "a damaged value");
            let text = String::from_utf8(frame[0].clone()).unwrap();
            let (pusher, i) = text.split_once(':').unwrap();
            let pusher: usize = pusher.parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), next[pusher], "out of order");
            next[pusher] += 1;
        }
        assert_eq!(next, [EACH, EACH]);
    }

    /// A push to an idle feed is written at once: its bytes are on the socket when the push
    /// returns, nothing counted as queued (handed to the sender, it would stay counted until
    /// the sender woke up and wrote it). While someone writes, a push queues instead.
    #[test]
    fn a_push_to_an_idle_feed_is_written_at_once() {
        let (feed, mut back) = feed_to_socket();
        let frame = |text: &[u8]| {
            let mut frame = Vec::new();
            wire::encode(&mut frame, &[b"RECORDS", text]);
            Arc::new(frame)
        };
        let writing = feed.writing.lock().unwrap();
        let queued = frame(b"queued");
        assert!(feed.push(queued.clone()));
        assert_eq!(
            feed.queued(),
            queued.len(),
            "a push while someone writes queues"
        );
        drop(writing);
        assert_eq!(read_frames(&mut back, 1)[0][0], b"queued");
        let drained = (0..1000).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            feed.queued() == 0
        });
        assert!(drained, "the sender wrote it and counted it off");
        assert!(feed.push(frame(b"at once")));
        assert_eq!(
            feed.queued(),
            0,
            "an idle feed's push is written, not queued"
        );
        back.set_nonblocking(true).unwrap();
        let mut got = [0u8; 64];
        let n = back
            .read(&mut got)
            .expect("the bytes are there when the push returns");
        assert!(got[..n].ends_with(b"at once\r\n"));
    }

    /// Two threads (two shards) push to two feeds at once: both replicas read the very same
    /// stream, frame for frame.
    #[test]
    fn every_feed_gets_the_frames_in_one_order() {
        let (a, mut a_in) = feed_to_socket();
        let (b, mut b_in) = feed_to_socket();
        let feeds = Arc::new(vec![a, b]);
        const EACH: usize = 20_000;
        let start = Arc::new(std::sync::Barrier::new(2));
        let pushers: Vec<_> = (0..2u8)
            .map(|shard| {
                let (feeds, start) = (feeds.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..EACH {
                        let mut frame = Vec::new();
                        let text = format!("{shard}:{i}");
                        wire::encode(&mut frame, &[b"RECORDS", text.as_bytes()]);
                        push_to_all(feeds.iter(), &Arc::new(frame), |_| {});
                    }
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        let read_frames = |socket: &mut TcpStream| -> Vec<Vec<u8>> {
            let frames = read_frames(socket, 2 * EACH);
            frames
                .into_iter()
                .map(|mut parts| parts.swap_remove(0))
                .collect()
        };
        let (from_a, from_b) = (read_frames(&mut a_in), read_frames(&mut b_in));
        assert_eq!(from_a.len(), 2 * EACH);
        assert!(from_a == from_b, "the two replicas got different orders");
        // Frames written together (the sender coalesces what is queued) are all counted
        // off: nothing is left queued once everything arrived.
        for feed in feeds.iter() {
            let drained = (0..1000).any(|_| {
                std::thread::sleep(Duration::from_millis(1));
                feed.queued() == 0
            });
            assert!(drained, "{} bytes still counted as queued", feed.queued());
        }
    }
}

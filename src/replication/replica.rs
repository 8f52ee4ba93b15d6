//! The replica's link to its primary: a thread of its own (it blocks on the socket, which no
//! shard may), that connects, logs in, asks `REPLSYNC`, and turns frames into work for the
//! replica's coordinator (catalog, users) and shards (data).
//!
//! # Retries
//! A link that cannot connect, or breaks (the primary died, no frame for
//! [`LINK_TIMEOUT`], a damaged frame), is tried again after [`RETRY`]: once a second, as
//! Redis does. A primary that *refuses* (wrong password, a user without ADMIN on `*`, the
//! primary is this server or a replica itself) is tried again after a back-off that doubles
//! from [`RETRY`] up to [`MAX_BACKOFF`]; every attempt logs one line saying why, never a
//! tight loop.
//!
//! # Ordering
//! Data frames are batched per replica shard (one message per shard per read) and sent
//! before anything that follows them; a `CATALOG` or `USERS` frame is installed through the
//! coordinator, and the link waits until every shard has the new version before it reads
//! on, so a partition exists on its shard before its first record arrives there. Every
//! message carries the link's generation: after `REPLICAOF` moved on, what an old link still
//! sends is ignored.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::acl::Acl;
use crate::catalog::Catalog;
use crate::shard::mailbox::{Message, ReplBatch, ReplOp};
use crate::shard::COORDINATOR;

use super::link::LinkStream;
use super::{lock, unix_secs, wire, State};

/// Wait before trying a broken link again (Redis's replication cron runs once a second).
pub const RETRY: Duration = Duration::from_secs(1);
/// The longest back-off after refusals: a fixed password is picked up within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A primary sends `PING` every second; this long without a byte is a dead link (a
/// primary whose machine vanished never resets the connection).
pub const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes handed to the replica's shards and not applied yet past which the link stops
/// reading (the primary's feed then fills, and paces its snapshot).
pub const MAX_IN_FLIGHT: usize = 64 << 20;
/// How long the link waits for the coordinator to install a catalog or users.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `ROLE`'s state of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    Connect = 0,
    Connecting = 1,
    Sync = 2,
    Connected = 3,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// What the link reports, for INFO and ROLE (atomics: read by any shard).
pub struct Status {
    state: AtomicU8,
    /// Unix seconds of the last byte from the primary; 0: none yet.
    pub last_io: AtomicU64,
    /// Unix seconds the link went down (or the link started); 0: up.
    pub down_since: AtomicU64,
    /// The primary's replication id, once a sync began.
    pub primary_replid: Mutex<Option<String>>,
    /// The replication id this replica last synced from (to tell a new history).
    followed: Mutex<Option<String>>,
    /// Per primary shard: the shard offset applied (the link's generation's table).
    pub offsets: Mutex<Arc<Vec<AtomicU64>>>,
    /// Bytes handed to shards and not yet applied.
    pub in_flight: AtomicUsize,
    /// Counts links: a message of an older one is ignored.
    pub generation: AtomicU64,
    /// A shard found a damaged record: the link must sync again.
    pub damaged: AtomicBool,
    /// Full syncs completed.
    pub full_syncs: AtomicU64,
}

impl Status {
    pub fn new(_shards: usize) -> Status {
        Status {
            state: AtomicU8::new(LinkState::Connect as u8),
            last_io: AtomicU64::new(0),
            down_since: AtomicU64::new(0),
            primary_replid: Mutex::new(None),
            followed: Mutex::new(None),
            offsets: Mutex::new(Arc::new(Vec::new())),
            in_flight: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            damaged: AtomicBool::new(false),
            full_syncs: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            1 => LinkState::Connecting,
            2 => LinkState::Sync,
            3 => LinkState::Connected,
            _ => LinkState::Connect,
        }
    }

    fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// `slave_repl_offset`: the sum of the applied shard offsets.
    pub fn offset(&self) -> u64 {
        lock(&self.offsets)
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .sum()
    }

    fn down(&self) {
        if self.down_since.load(Ordering::Relaxed) == 0 {
            self.down_since.store(unix_secs(), Ordering::Relaxed);
        }
        if self.state() != LinkState::Connect {
            self.set_state(LinkState::Connect);
        }
    }

    /// `REPLICAOF NO ONE`: nothing to report any more (the next link starts fresh, but a
    /// sync from the same primary needs no drop first: the data is that history's).
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.set_state(LinkState::Connect);
        self.last_io.store(0, Ordering::Relaxed);
        self.down_since.store(0, Ordering::Relaxed);
    }
}

/// A running link (the thread is detached: stopping it is a flag and a socket shutdown).
pub struct Link {
    pub host: String,
    pub port: u16,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<TcpStream>>>,
}

impl Link {
    pub fn start(state: Arc<State>, host: String, port: u16) -> Link {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = Arc::new(Mutex::new(None));
        let generation = state.status.generation.fetch_add(1, Ordering::Relaxed) + 1;
        state
            .status
            .down_since
            .store(unix_secs(), Ordering::Relaxed);
        state.status.set_state(LinkState::Connect);
        let mut runner = Runner {
            state,
            host: host.clone(),
            port,
            stop: stop.clone(),
            socket: socket.clone(),
            generation,
            routes: hashbrown::HashMap::new(),
            history: None,
            held: hashbrown::HashMap::new(),
        };
        let spawned = std::thread::Builder::new()
            .name("gokv-replica-link".into())
            .spawn(move || runner.run());
        if let Err(e) = spawned {
            log::error!("replication: cannot start the link thread: {e}");
        }
        Link {
            host,
            port,
            stop,
            socket,
        }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = lock(&self.socket).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Why a session ended.
enum Ended {
    /// The primary refused us: back off.
    Refused(String),
    /// The link broke: try again soon.
    Broken(String),
    Stopped,
}

struct Runner {
    state: Arc<State>,
    host: String,
    port: u16,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<TcpStream>>>,
    generation: u64,
    /// Primary partition id -> (name, owning replica shard), from the last installed catalog.
    routes: hashbrown::HashMap<u64, (Box<[u8]>, usize)>,
    /// The primary's replication id and run id this link last synced from: what `held`'s
    /// offsets are offsets of (partial resync).
    history: Option<(String, String)>,
    /// Per primary partition: what was handed to the shards of it (see [`Held`]).
    held: hashbrown::HashMap<u64, Held>,
}

/// What the replica holds of one of the primary's partitions: its offset after the last
/// frame handed to the shards (which apply everything handed to them, in order, even once
/// the link broke), and whether it is whole (resumed, or its shard's `SYNCED` came since
/// its `FULL`), so that a new session can ask to resume it from there.
#[derive(Clone, Copy, Debug)]
struct Held {
    pshard: usize,
    offset: u64,
    whole: bool,
}

impl Runner {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.state.status.generation.load(Ordering::Relaxed) != self.generation
    }

    fn run(&mut self) {
        let mut backoff = RETRY;
        while !self.stopped() {
            let ended = self.session();
            *lock(&self.socket) = None;
            self.state.status.down();
            let wait = match ended {
                Ended::Stopped => break,
                Ended::Broken(why) => {
                    log::warn!(
                        "replication: link to {}:{} down: {why}; retrying in {} s",
                        self.host,
                        self.port,
                        RETRY.as_secs()
                    );
                    backoff = RETRY;
                    RETRY
                }
                Ended::Refused(why) => {
                    let wait = backoff;
                    log::error!(
                        "replication: the primary {}:{} refused this replica: {why}; retrying \
                         in {} s",
                        self.host,
                        self.port,
                        wait.as_secs()
                    );
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            let until = Instant::now() + wait;
            while Instant::now() < until && !self.stopped() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        log::info!("replication: link to {}:{} stopped", self.host, self.port);
    }

    /// One connection: handshake, full sync, stream, until it ends.
    fn session(&mut self) -> Ended {
        let status = &self.state.status;
        status.set_state(LinkState::Connecting);
        let addr = match (self.host.as_str(), self.port).to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => a,
                None => return Ended::Broken(format!("{} resolves to no address", self.host)),
            },
            Err(e) => return Ended::Broken(format!("cannot resolve {}: {e}", self.host)),
        };
        let tcp = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => return Ended::Broken(format!("cannot connect: {e}")),
        };
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = tcp.set_write_timeout(Some(LINK_TIMEOUT));
        if let Ok(clone) = tcp.try_clone() {
            *lock(&self.socket) = Some(clone);
        }
        let mut socket = match self.state.tls.get() {
            None => LinkStream::Plain(tcp),
            Some(tls) => match tls.connect_replica(&self.host, tcp) {
                Ok(link) => link,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Ended::Refused(format!("TLS: {e}"))
                }
                Err(e) => return Ended::Broken(format!("TLS handshake: {e}")),
            },
        };
        if self.stopped() {
            return Ended::Stopped;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        // Handshake: AUTH, then REPLSYNC.
        if let Some((user, password)) = &self.state.primary_login {
            let mut req = Vec::new();
            wire::encode(&mut req, &[b"AUTH", user.as_bytes(), password.as_bytes()]);
            if let Err(e) = socket.write_all(&req) {
                return Ended::Broken(format!("cannot send AUTH: {e}"));
            }
            match self.read_line(&mut socket, &mut buf) {
                Ok(line) if line == "+OK" => {}
                Ok(line) => {
                    return Ended::Refused(format!(
                        "the login of --primary-user '{user}' failed: {}",
                        line.trim_start_matches('-')
                    ))
                }
                Err(ended) => return ended,
            }
        }
        if let Err(ended) = self.announce(&mut socket, &mut buf) {
            return ended;
        }
        let listen_port = self.announced_port();
        if status.damaged.load(Ordering::Relaxed) {
            // A shard could not apply something: resume nothing.
            self.held.clear();
        }
        let (req, asking) = self.replsync_request(listen_port);
        if let Err(e) = socket.write_all(&req) {
            return Ended::Broken(format!("cannot send REPLSYNC: {e}"));
        }
        let line = match self.read_line(&mut socket, &mut buf) {
            Ok(line) => line,
            Err(ended) => return ended,
        };
        let words: Vec<&str> = line.split(' ').collect();
        let (replid, shards, run) = match words.as_slice() {
            ["+FULLSYNC", replid, shards, run @ ..] if run.len() <= 1 => {
                match shards.parse::<usize>() {
                    Ok(n) if (1..=1024).contains(&n) && replid.len() == 40 => {
                        (replid.to_string(), n, run.first().map(|r| r.to_string()))
                    }
                    _ => return Ended::Broken(format!("unexpected handshake reply '{line}'")),
                }
            }
            _ if line.starts_with("-NOAUTH") && self.state.primary_login.is_none() => {
                return Ended::Refused(
                    "it requires a login: start the replica with --primary-user and \
                     --primary-password (a user holding ADMIN on *)"
                        .into(),
                )
            }
            _ if line.starts_with('-') => {
                return Ended::Refused(line.trim_start_matches('-').to_string())
            }
            _ => return Ended::Broken(format!("unexpected handshake reply '{line}'")),
        };
        let offsets: Arc<Vec<AtomicU64>> =
            Arc::new((0..shards).map(|_| AtomicU64::new(0)).collect());
        *lock(&status.offsets) = offsets.clone();
        *lock(&status.primary_replid) = Some(replid.clone());
        let fresh = lock(&status.followed).as_deref() != Some(replid.as_str());
        // Offsets are of one history and one run of the primary: another one's are
        // nothing (a primary that restarted keeps its replid, not its offsets).
        let history = run.map(|run| (replid.clone(), run));
        if history.is_none() || self.history != history {
            self.held.clear();
        }
        self.history = history;
        status.set_state(LinkState::Sync);
        status.last_io.store(unix_secs(), Ordering::Relaxed);
        status.down_since.store(0, Ordering::Relaxed);
        status.damaged.store(false, Ordering::Relaxed);
        log::info!(
            "replication: {} from {}:{}{} (replid {replid}, {shards} shards) begins{}",
            if asking > 0 {
                format!("partial resync (of up to {asking} partitions)")
            } else {
                "full sync".to_string()
            },
            self.host,
            self.port,
            if socket.is_tls() { " over TLS" } else { "" },
            if fresh {
                "; this replica's partitions are dropped first"
            } else {
                ""
            }
        );
        let started = Instant::now();
        let mut sync = Sync {
            fresh,
            synced: vec![false; shards],
            synced_count: 0,
            offsets,
            started,
            replid,
            resumed: 0,
            whole: 0,
        };
        let ended = self.stream(&mut socket, buf, &mut sync);
        if self.state.status.damaged.load(Ordering::Relaxed) {
            self.held.clear();
        }
        ended
    }

    /// `REPLSYNC <port> <our replid>`, and when this link synced from a primary before,
    /// that primary's replid and run id and the offset of every partition held whole (the
    /// primary resumes those it still can); with how many partitions it asks to resume.
    fn replsync_request(&self, listen_port: u16) -> (Vec<u8>, usize) {
        let port = listen_port.to_string();
        let mut words: Vec<Vec<u8>> = vec![
            b"REPLSYNC".to_vec(),
            port.into_bytes(),
            self.state.replid.as_bytes().to_vec(),
        ];
        let mut asking = 0;
        let followed = lock(&self.state.status.followed).clone();
        if let Some((replid, run)) = &self.history {
            if followed.as_ref() == Some(replid) {
                words.push(replid.as_bytes().to_vec());
                words.push(run.as_bytes().to_vec());
                for (id, held) in &self.held {
                    if held.whole && self.routes.contains_key(id) {
                        words.push(format!("{id}:{}", held.offset).into_bytes());
                        asking += 1;
                    }
                }
            }
        }
        let parts: Vec<&[u8]> = words.iter().map(|w| w.as_slice()).collect();
        let mut req = Vec::new();
        wire::encode(&mut req, &parts);
        (req, asking)
    }

    /// Reads one `\r\n` line (a handshake reply), leaving what follows it in `buf`.
    fn read_line(&self, socket: &mut LinkStream, buf: &mut Vec<u8>) -> Result<String, Ended> {
        let deadline = Instant::now() + LINK_TIMEOUT;
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 2);
                return Ok(line);
            }
            if buf.len() > 64 << 10 {
                return Err(Ended::Broken("handshake reply too long".into()));
            }
            if Instant::now() > deadline {
                return Err(Ended::Broken("no handshake reply".into()));
            }
            if self.stopped() {
                return Err(Ended::Stopped);
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk) {
                Ok(0) => return Err(Ended::Broken("the primary closed the connection".into())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                // A TLS alert (the primary refused this replica's certificate) or a
                // certificate of the primary's that does not verify.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(Ended::Refused(format!("TLS: {e}")))
                }
                Err(e) => return Err(Ended::Broken(format!("read failed: {e}"))),
            }
        }
    }

    /// The frame loop.
    fn stream(&mut self, socket: &mut LinkStream, mut buf: Vec<u8>, sync: &mut Sync) -> Ended {
        let state = self.state.clone();
        let status = &state.status;
        let shards = self.state.handles.get().map_or(0, |h| h.len());
        if shards == 0 {
            return Ended::Broken("the shards are not running".into());
        }
        let mut batches: Vec<ReplBatch> = (0..shards)
            .map(|_| ReplBatch::new(self.generation, sync.offsets.clone()))
            .collect();
        let mut idle = Instant::now();
        // The socket reads straight into `buf`'s tail, past the `filled` bytes not yet parsed
        // (zeroed once, reused): the stream is not copied between the socket and the parser.
        let mut filled = buf.len();
        // Acks start after the first frame: the connection is the primary's feed by then.
        let mut acks: Option<Acks> = None;
        loop {
            if acks.is_none() && filled > 0 {
                acks = Some(Acks::new(sync.offsets.len()));
            }
            // Parse every complete frame in the buffer.
            let mut at = 0;
            loop {
                // (What was batched goes to the shards whatever ends the session: `held`
                // counts it as handed over.)
                match wire::parse(&buf[at..filled]) {
                    Ok(wire::Parsed::Incomplete) => break,
                    Err(e) => {
                        self.send_batches(&mut batches, &sync.offsets);
                        return Ended::Broken(format!("damaged frame from the primary: {e}"));
                    }
                    Ok(wire::Parsed::Frame(parts, used)) => {
                        let result = self.frame(&parts, sync, &mut batches);
                        at += used;
                        if let Err(ended) = result {
                            self.send_batches(&mut batches, &sync.offsets);
                            return ended;
                        }
                    }
                }
            }
            buf.copy_within(at..filled, 0);
            filled -= at;
            self.send_batches(&mut batches, &sync.offsets);
            if status.damaged.load(Ordering::Relaxed) {
                return Ended::Broken("a replicated record was damaged".into());
            }
            // Pace: the shards apply what we sent before we read more.
            while status.in_flight.load(Ordering::Relaxed) > MAX_IN_FLIGHT {
                if self.stopped() {
                    return Ended::Stopped;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.stopped() {
                return Ended::Stopped;
            }
            if let Some(acks) = &mut acks {
                let applying = status.in_flight.load(Ordering::Relaxed) > 0;
                if let Err(e) = acks.send(socket, &sync.offsets, applying) {
                    return Ended::Broken(format!("cannot acknowledge: {e}"));
                }
            }
            if buf.len() - filled < READ_CHUNK {
                buf.resize(filled + READ_CHUNK, 0);
            }
            match socket.read(&mut buf[filled..]) {
                Ok(0) => return Ended::Broken("the primary closed the connection".into()),
                Ok(n) => {
                    filled += n;
                    idle = Instant::now();
                    status.last_io.store(unix_secs(), Ordering::Relaxed);
                }
                Err(e) if is_timeout(&e) => {
                    if idle.elapsed() > LINK_TIMEOUT {
                        return Ended::Broken(format!(
                            "nothing from the primary for {} s",
                            LINK_TIMEOUT.as_secs()
                        ));
                    }
                }
                Err(e) => return Ended::Broken(format!("read failed: {e}")),
            }
        }
    }

    /// Sends every non-empty batch to its shard.
    fn send_batches(&self, batches: &mut [ReplBatch], offsets: &Arc<Vec<AtomicU64>>) {
        let Some(handles) = self.state.handles.get() else {
            return;
        };
        for (shard, batch) in batches.iter_mut().enumerate() {
            if batch.ops.is_empty() {
                continue;
            }
            let full = std::mem::replace(batch, ReplBatch::new(self.generation, offsets.clone()));
            self.state
                .status
                .in_flight
                .fetch_add(full.bytes, Ordering::Relaxed);
            handles[shard].send(Message::ReplApply(Box::new(full)));
        }
    }

    /// Handles one frame.
    fn frame(
        &mut self,
        parts: &[&[u8]],
        sync: &mut Sync,
        batches: &mut [ReplBatch],
    ) -> Result<(), Ended> {
        let bad = |what: &str| Ended::Broken(format!("bad {what} frame from the primary"));
        let num = |i: usize| -> Result<u64, Ended> {
            parts
                .get(i)
                .ok_or_else(|| bad("short"))
                .and_then(|p| wire::parse_num(p).map_err(Ended::Broken))
        };
        match parts[0] {
            b"PING" => Ok(()),
            b"CATALOG" => {
                let text = std::str::from_utf8(parts.get(1).ok_or_else(|| bad("CATALOG"))?)
                    .map_err(|_| bad("CATALOG"))?;
                let stored = crate::persist::catalog_file::decode(text)
                    .map_err(|e| Ended::Broken(format!("the primary's catalog: {e}")))?;
                // What was batched goes before the new catalog (see the module docs).
                self.send_batches(batches, &sync.offsets);
                if sync.fresh {
                    self.install(Some(Catalog::default()), None)?;
                    sync.fresh = false;
                    *lock(&self.state.status.followed) = Some(sync.replid.clone());
                }
                let installed = self.install(Some(stored.catalog), None)?;
                self.routes = installed
                    .partitions
                    .values()
                    .map(|m| (m.id, (m.name.as_bytes().into(), m.shard)))
                    .collect();
                if installed
                    .partitions
                    .values()
                    .any(|m| m.shard >= batches.len())
                {
                    return Err(Ended::Broken(
                        "a partition on a shard that does not exist".into(),
                    ));
                }
                Ok(())
            }
            b"USERS" => {
                let text = std::str::from_utf8(parts.get(1).ok_or_else(|| bad("USERS"))?)
                    .map_err(|_| bad("USERS"))?;
                let acl = crate::acl::store::decode(text)
                    .map_err(|e| Ended::Broken(format!("the primary's users: {e}")))?;
                self.send_batches(batches, &sync.offsets);
                self.install(None, Some(acl))?;
                Ok(())
            }
            b"FULL" => {
                let (pshard, shard_offset, id) = (num(1)? as usize, num(2)?, num(3)?);
                let offset = num(4)?;
                // The key count came later than the rest: a primary without it sends none.
                let keys = match parts.get(5) {
                    Some(_) => num(5)?,
                    None => 0,
                };
                let keys = keys.min(crate::replication::apply::MAX_RESERVE as u64) as usize;
                self.op(batches, id, pshard, shard_offset, |name| ReplOp::Full {
                    name,
                    id,
                    keys,
                });
                self.hold(id, pshard, offset, false);
                sync.whole += 1;
                Ok(())
            }
            b"RESUME" => {
                // The partition goes on from the offset we asked: what follows continues it.
                let (pshard, id, offset) = (num(1)? as usize, num(3)?, num(4)?);
                self.hold(id, pshard, offset, true);
                sync.resumed += 1;
                Ok(())
            }
            b"SNAP" => {
                let id = num(1)?;
                let records = parts.get(2).ok_or_else(|| bad("SNAP"))?;
                self.op(batches, id, usize::MAX, 0, |name| ReplOp::Snap {
                    name,
                    id,
                    records: records.to_vec(),
                });
                Ok(())
            }
            b"RECORDS" => {
                let (pshard, shard_offset, id) = (num(1)? as usize, num(2)?, num(3)?);
                let offset = num(4)?;
                let records = parts.get(5).ok_or_else(|| bad("RECORDS"))?;
                if let Some(held) = self.held.get_mut(&id) {
                    held.offset = offset;
                }
                self.op(batches, id, pshard, shard_offset, |name| ReplOp::Records {
                    name,
                    id,
                    records: records.to_vec(),
                });
                Ok(())
            }
            b"PUBLISH" => {
                let (Some(channel), Some(payload)) = (parts.get(1), parts.get(2)) else {
                    return Err(bad("PUBLISH"));
                };
                let (channel, payload): (Arc<[u8]>, Arc<[u8]>) =
                    ((*channel).into(), (*payload).into());
                for batch in batches.iter_mut() {
                    let op = ReplOp::Publish {
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    batch.bytes += op.bytes();
                    batch.ops.push(op);
                }
                Ok(())
            }
            b"SYNCED" => {
                let (pshard, shard_offset) = (num(1)? as usize, num(2)?);
                // The offset is acknowledged from now on: what came before it must be
                // applied first (once per shard per full sync).
                self.send_batches(batches, &sync.offsets);
                while self.state.status.in_flight.load(Ordering::Relaxed) > 0 {
                    if self.stopped() {
                        return Err(Ended::Stopped);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                if let Some(o) = sync.offsets.get(pshard) {
                    o.fetch_max(shard_offset, Ordering::Relaxed);
                }
                match sync.synced.get_mut(pshard) {
                    Some(done) if !*done => {
                        *done = true;
                        for held in self.held.values_mut() {
                            if held.pshard == pshard {
                                held.whole = true;
                            }
                        }
                        sync.synced_count += 1;
                        if sync.synced_count == sync.synced.len() {
                            let status = &self.state.status;
                            status.set_state(LinkState::Connected);
                            status.full_syncs.fetch_add(1, Ordering::Relaxed);
                            log::info!(
                                "replication: sync from {}:{} done in {} ms: {} partitions \
                                 resumed, {} sent whole; streaming",
                                self.host,
                                self.port,
                                sync.started.elapsed().as_millis(),
                                sync.resumed,
                                sync.whole
                            );
                        }
                        Ok(())
                    }
                    _ => Err(bad("SYNCED")),
                }
            }
            other => Err(Ended::Broken(format!(
                "unknown frame '{}' from the primary",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    /// Notes what a `FULL` or `RESUME` frame says of partition `id` (one we know).
    fn hold(&mut self, id: u64, pshard: usize, offset: u64, whole: bool) {
        if self.routes.contains_key(&id) {
            self.held.insert(
                id,
                Held {
                    pshard,
                    offset,
                    whole,
                },
            );
        } else {
            self.held.remove(&id);
        }
    }

    /// Adds an operation for partition `id` to its owner's batch; a partition the replica
    /// does not know (dropped since) only moves the offset.
    fn op(
        &self,
        batches: &mut [ReplBatch],
        id: u64,
        pshard: usize,
        shard_offset: u64,
        make: impl FnOnce(Box<[u8]>) -> ReplOp,
    ) {
        match self.routes.get(&id) {
            Some((name, shard)) => {
                let batch = &mut batches[*shard];
                let op = make(name.clone());
                batch.bytes += op.bytes();
                batch.ops.push(op);
                if pshard != usize::MAX {
                    batch.offsets_to.push((pshard, shard_offset));
                }
            }
            None => {
                if let Some(o) = lock(&self.state.status.offsets).get(pshard) {
                    o.fetch_max(shard_offset, Ordering::Relaxed);
                }
            }
        }
    }

    /// Installs a catalog and/or users through the coordinator; returns the replica's
    /// catalog once every shard runs it.
    fn install(&self, catalog: Option<Catalog>, acl: Option<Acl>) -> Result<Arc<Catalog>, Ended> {
        let Some(handles) = self.state.handles.get() else {
            return Err(Ended::Broken("the shards are not running".into()));
        };
        let (done, wait) = crossbeam_channel::bounded(1);
        handles[COORDINATOR].send(Message::ReplInstall {
            generation: self.generation,
            catalog,
            acl,
            done,
        });
        let deadline = Instant::now() + INSTALL_TIMEOUT;
        loop {
            match wait.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(catalog)) => return Ok(catalog),
                Ok(Err(e)) => {
                    return Err(Ended::Broken(format!(
                        "cannot install the primary's catalog or users: {e}"
                    )))
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(Ended::Broken("the coordinator is gone".into()))
                }
                Err(_) if self.stopped() => return Err(Ended::Stopped),
                Err(_) if Instant::now() > deadline => {
                    return Err(Ended::Broken(
                        "the coordinator did not install in time".into(),
                    ))
                }
                Err(_) => {}
            }
        }
    }
}

/// A full sync in progress.
struct Sync {
    /// Drop every partition before the first catalog (a new history).
    fresh: bool,
    synced: Vec<bool>,
    synced_count: usize,
    offsets: Arc<Vec<AtomicU64>>,
    started: Instant,
    replid: String,
    /// Partitions resumed and sent whole so far.
    resumed: usize,
    whole: usize,
}

impl Runner {
    /// `REPLCONF ip-address <ip>` when `--replica-announce-ip` is set: the primary shows that
    /// address for this replica (INFO, ROLE), as Redis's replicas announce theirs.
    fn announce(&self, socket: &mut LinkStream, buf: &mut Vec<u8>) -> Result<(), Ended> {
        let Some(ip) = self
            .state
            .config
            .get()
            .and_then(|c| c.replica_announce_ip.clone())
        else {
            return Ok(());
        };
        let mut req = Vec::new();
        wire::encode(&mut req, &[b"REPLCONF", b"ip-address", ip.as_bytes()]);
        socket
            .write_all(&req)
            .and_then(|()| socket.flush())
            .map_err(|e| Ended::Broken(format!("cannot send REPLCONF: {e}")))?;
        match self.read_line(socket, buf)? {
            line if line == "+OK" => Ok(()),
            line => Err(Ended::Refused(format!(
                "REPLCONF ip-address: {}",
                line.trim_start_matches('-')
            ))),
        }
    }

    /// The port the primary shows: `--replica-announce-port`, or the one this server
    /// listens on.
    fn announced_port(&self) -> u16 {
        self.state
            .config
            .get()
            .and_then(|c| c.replica_announce_port)
            .or_else(|| self.state.listen.get().map(|a| a.port()))
            .unwrap_or(0)
    }
}

/// What the link acknowledged so far ([`super::acks`]): written by the link thread itself,
/// which owns the stream (a TLS session cannot be shared with another thread). It sends
/// the shard offsets that moved each time round its loop (at most once per read, so once
/// per batch at most), every one once a second, and reads with a short timeout while the
/// shards still apply what it sent, so an ack follows the apply within about a millisecond.
struct Acks {
    sent: Vec<Option<u64>>,
    all_at: Instant,
    frames: Vec<u8>,
    /// The read timeout set on the socket now.
    timeout: Duration,
}

/// The most a read of the stream takes at once (the room kept free in the link's buffer).
const READ_CHUNK: usize = 256 << 10;

/// How soon the link looks again while its shards apply what it sent.
const APPLY_POLL: Duration = Duration::from_millis(1);

impl Acks {
    fn new(shards: usize) -> Acks {
        Acks {
            sent: vec![None; shards],
            all_at: Instant::now(),
            frames: Vec::new(),
            timeout: Duration::from_secs(1),
        }
    }

    /// Sends what moved (everything once a second), then sets the read timeout the loop
    /// needs until it should look again.
    fn send(
        &mut self,
        socket: &mut LinkStream,
        offsets: &[AtomicU64],
        applying: bool,
    ) -> std::io::Result<()> {
        let every = self.all_at.elapsed() >= super::acks::ACK_EVERY;
        if every {
            self.all_at = Instant::now();
        }
        self.frames.clear();
        for (shard, (o, last)) in offsets.iter().zip(self.sent.iter_mut()).enumerate() {
            let now = o.load(Ordering::Relaxed);
            if every || *last != Some(now) {
                super::acks::encode_ack(&mut self.frames, shard, now);
                *last = Some(now);
            }
        }
        if !self.frames.is_empty() {
            socket.write_all(&self.frames)?;
            socket.flush()?;
        }
        let timeout = if applying {
            APPLY_POLL
        } else {
            super::acks::ACK_EVERY
                .saturating_sub(self.all_at.elapsed())
                .max(APPLY_POLL)
        };
        // A syscall: only to the short poll, or by more than 10 ms.
        let change = if timeout == APPLY_POLL {
            self.timeout != APPLY_POLL
        } else {
            timeout.abs_diff(self.timeout) >= APPLY_POLL * 10
        };
        if change {
            socket.tcp().set_read_timeout(Some(timeout))?;
            self.timeout = timeout;
        }
        Ok(())
    }
}

pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

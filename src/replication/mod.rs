//! Replication: a replica follows a primary, partition by partition.
//!
//! # What flows
//! Everything a client of the primary can see: the catalog (every partition with its schema,
//! persist mode and options), users and grants, and every partition's data, MEMORY
//! partitions included. Data travels as the persistence layer's own records
//! ([`crate::persist::record`]): physical and idempotent (`SET` of what a key now is, with
//! its absolute deadline; `DEL`; `DEADLINE`; `CLEAR`), so an expiry or an eviction on the
//! primary is a `DEL` like any other, and applying a record twice changes nothing. A replica
//! never expires a key by itself: its expiry sweep does not run, a key whose deadline passed
//! is hidden by the same clock check every read makes, and the primary's `DEL` removes it.
//!
//! # The wire
//! One TCP connection per replica (TLS with `--tls-replication yes`: [`link`]), opened by
//! the replica as an ordinary client: it logs in
//! (`AUTH <primary-user> <primary-password>`, a user with ADMIN on `*`), names the address
//! to show for it when it has one (`REPLCONF ip-address <ip>`, `--replica-announce-ip`),
//! then asks `REPLSYNC <listening-port> <its own replid> [<primary-replid> <primary-run-id>
//! [<partition-id>:<offset> ...]]` (the history it holds and what it asks to resume, see
//! "Partial resync"; the port is `--replica-announce-port` when set). The primary answers
//! `+FULLSYNC <replid> <shards> <run-id>` and from then on the connection carries only
//! frames, each a RESP array of bulk strings ([`wire`]), primary to replica:
//!
//! ```text
//! CATALOG <catalog text>      the whole catalog, in the catalog file's format
//!                             (persist::catalog_file), sent at the start and on every change
//! USERS <users.json text>     every user and grant (acl::store), same
//! FULL <shard> <shard-offset> <partition-id> <partition-offset> <keys>
//!                             a full sync of the partition begins: the replica empties it
//!                             and sizes its table for <keys> (the count when the walk
//!                             began, capped; absent from older primaries: none)
//! RESUME <shard> <shard-offset> <partition-id> <partition-offset>
//!                             the partition is resumed from <partition-offset> (the one
//!                             the replica asked): the RECORDS that follow continue it
//! SNAP <partition-id> <records>
//!                             part of its snapshot (SET records), not counted in offsets
//! SYNCED <shard>              every partition of primary shard <shard> was sent whole
//! RECORDS <shard> <shard-offset> <partition-id> <partition-offset> <records>
//!                             the live stream: one pass's records of one partition; the
//!                             offsets are those *after* these records
//! PUBLISH <channel> <message> a message published on the primary, after the records of
//!                             the pass it was published in; every replica shard delivers it
//!                             to its own subscribers (as Redis propagates PUBLISH). Not a
//!                             record: no offset counts it, a resume never sends it again
//! PING                        once a second when nothing else was sent (liveness, lag)
//! ```
//!
//! and replica to primary, once the first frame arrived ([`acks`]):
//!
//! ```text
//! ACK <shard> <shard-offset>  what the replica applied of primary shard <shard>: after each
//!                             batch it applied (the shards that moved) and every second
//!                             (all of them)
//! ```
//!
//! Numbers are decimal ASCII; `<records>` is a run of log records exactly as a log segment
//! holds them (length, CRC32C, kind, body), so the replica checks every record's checksum
//! for free. The catalog and users frames are the files' own formats, checksummed too.
//!
//! # Offsets and the replication id
//! Every partition has an offset: the bytes of records streamed for it, which only grows;
//! every primary shard has one, the sum of its partitions' (dropped ones included), and the
//! server's `master_repl_offset` is the sum of the shards'. They grow while a replica is
//! attached or the backlog exists (a MEMORY partition makes no records otherwise), and start
//! from 0 at every start of the process. The server's replication id (`master_replid`, 40
//! hex digits) is made when the data directory is new (`<data-dir>/replid`) and kept across
//! restarts; the run id (`run_id`, INFO `server`) is new at every start. Offsets are only
//! meaningful within one (replid, run id): that pair names a history a replica can resume.
//!
//! # Full sync, per shard, in parallel
//! When a replica attaches, the coordinator (shard 0) sends `CATALOG` and `USERS` into its
//! feed and then tells every shard; each shard, in its own thread, sends a `FULL` frame for
//! each of its partitions and from then on puts every commit's records of every partition
//! into the feed (`RECORDS`). Meanwhile a housekeeping step walks each partition with a
//! SCAN cursor (every key present throughout the walk is visited at least once) a slice
//! per pass, after the pass's commit, and sends what it finds as `SNAP` frames. Because the
//! live records of a partition and its snapshot slices go into one ordered feed, the
//! replica applying them in order always holds a state the primary held: a key the walk
//! reaches after a write carries the value that write left, a key it reached before the
//! write is fixed by the write's record that follows. When a shard's walks are done it
//! sends `SYNCED`. Catalog changes reach every feed from the coordinator *before* it
//! broadcasts them to the shards, so a record of a new partition never precedes the
//! catalog that names it; records of a partition the replica does not know (dropped since)
//! are ignored.
//!
//! # Bounded, never blocking
//! A feed is a queue of frames per replica, drained by a sender thread of its own that does
//! the blocking socket writes ([`feed`]); over plain TCP a push that finds the queue empty
//! writes its frames itself with a send that cannot block, and queues only what the socket
//! did not take. A shard only pushes (never waits): when a push
//! would take the queue past `--repl-buffer` bytes, the replica is dropped (its socket
//! closed) and must sync again. Snapshot slices are paced: a walk only sends its next slice
//! while the feed holds less than a few MiB, so a full sync never fills the queue on its
//! own; only live writes faster than the replica can take them do. And while the shard serves
//! clients, each slice (at most 64 KiB or 250 us) is followed by a rest twice its time, so
//! that the walk never keeps the shard's thread busy from pass to pass: the clients' requests
//! wait for at most a slice, and the thread stays one the scheduler wakes promptly
//! (`shard::replicate::WalkPace`).
//!
//! # The replica
//! A thread of its own ([`replica`]) holds the link: connect, log in, `REPLSYNC`, read
//! frames. It installs `CATALOG` and `USERS` through the replica's coordinator (durably,
//! as a client's CREATE or GRANT would be, and on every shard before it goes on), and hands
//! data frames to the replica shard that owns each partition, which applies the records
//! with its own group commit (a durable partition logs them as its own). A link that
//! breaks is retried once a second; a refused login or a refused `REPLSYNC` (the primary
//! is this server, or itself a replica) backs off, doubling up to 30 s, with one log line
//! per attempt. A full sync from a primary whose replication id is not the one the replica
//! last followed (a new primary, or this process's first sync) first drops every partition
//! of the replica: two histories are never merged.
//!
//! # Partial resync
//! Each primary shard keeps a backlog ([`backlog`]): its recent `RECORDS` frames, as the
//! feeds got them, at most its share (`--repl-backlog` / shards) of bytes, the oldest going
//! first. It is made at the first replica's attach and kept from then on, replica or none,
//! so the shard frames every commit from then on (what was written while no replica was
//! attached is in it too; without that, a MEMORY partition's writes in an outage would make
//! no records and a resume would miss them). `--repl-backlog 0`: no backlog, every link is
//! a full sync.
//!
//! The replica's link thread notes, per primary partition, the offset of the last frame it
//! handed to the replica's shards (which apply all of it, in order, even once the link
//! broke) and whether the partition is whole (resumed, or its shard's `SYNCED` came since
//! its `FULL`); it forgets them all on a new history, a new run of the primary, or a record
//! a shard could not apply. Its next `REPLSYNC` names that history and every whole
//! partition's offset. The primary takes the offsets only when the replid *and* the run id
//! are its own now (a restarted primary keeps its replid but starts its offsets over), and
//! each shard, in `FeedStart`, for each of its partitions: when the backlog holds every
//! frame after the offset (the offset is a frame boundary at or past where the backlog holds
//! the partition from), pushes `RESUME` and those frames; else `FULL` and a walk, as a full
//! sync. Both happen on the shard's thread between passes, before it attaches the feed: the
//! replayed frames end exactly where the partition's offset is, and the next commit's frames
//! go to the feed after them, so nothing is missing or doubled. `SYNCED` follows as in a full
//! sync (at once when nothing is walked). The replica keeps its data of a resumed partition;
//! the catalog it gets first drops what the primary dropped meanwhile.
//!
//! Statistics, per link (the last shard to answer counts them): every partition resumed:
//! `sync_partial_ok`; otherwise `sync_full`, and `sync_partial_err` as well when the replica
//! asked to resume (named a history), as Redis counts a PSYNC it denies. A link that resumes
//! some partitions and sends others whole is thus a full sync that was partly denied; the
//! log lines of both sides say how many partitions went which way.
//!
//! # Acknowledgements, WAIT, min-replicas
//! A replica's acks ([`acks`]) are read on the primary by a thread beside each feed's
//! sender, bounded, and kept per shard in the feed: INFO's `slaveN:offset=` and ROLE's
//! offsets are the acknowledged ones, `lag=` the seconds since the last ack. `WAIT` parks
//! its connection on its shard until the replicas acknowledged the shard offsets of the
//! connection's writes (`shard::wait`); the readers wake the shards that wait. The same
//! readers count the good replicas (online, last ack within `--min-replicas-max-lag`) at
//! least once a second into one atomic, which a write checks when `--min-replicas-to-write`
//! is on (`-NOREPLICAS`).
//!
//! # Not yet
//! Chained replication (a replica of a replica) is refused. A replica process that restarts
//! holds no offsets (it keeps none on disk) and syncs fully.

pub mod acks;
pub mod apply;
pub mod backlog;
pub mod feed;
pub mod link;
pub mod replica;
pub mod wire;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::shard::mailbox::ShardHandle;

pub use feed::Feed;

/// Where the replication id is kept.
pub const REPLID_FILE: &str = "replid";

/// Milliseconds since the Unix epoch (acks' lag).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch, for "seconds ago" fields.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The server's replication state, shared by every thread (atomics, and a mutex only for
/// what the rare commands touch: the feed list and the link).
pub struct State {
    /// 40 hex digits, made with the data directory.
    pub replid: String,
    /// Shards of this server.
    pub shards: usize,
    /// Per shard: its offset (see the module docs), written by that shard only.
    pub shard_offsets: Vec<AtomicU64>,
    /// A replica: writes answer `-READONLY`, the expiry sweep does not run.
    read_only: AtomicBool,
    /// Replicas attached (primary side), for INFO and ROLE.
    feeds: Mutex<Vec<Arc<Feed>>>,
    /// The link to our primary, when we are a replica.
    link: Mutex<Option<replica::Link>>,
    /// What the link reports (replica side).
    pub status: replica::Status,
    /// Where this server listens, once it does (the self check of REPLICAOF).
    pub listen: OnceLock<std::net::SocketAddr>,
    /// Every shard's inbox, once the shards exist (the link sends them what it applies).
    pub handles: OnceLock<Vec<ShardHandle>>,
    /// With `--tls-replication yes`: the TLS context the link to the primary connects with.
    pub tls: OnceLock<Arc<crate::tls::TlsContext>>,
    /// `--repl-buffer`: bytes a feed may hold before its replica is dropped.
    pub buffer_limit: usize,
    /// `--primary-user` / `--primary-password`.
    pub primary_login: Option<(String, String)>,
    pub started: Instant,
    next_feed: AtomicU64,
    /// The server's configuration, once it runs (the live settings acks are counted
    /// against; `None` in tests that build shards by hand: the defaults).
    pub config: OnceLock<Arc<crate::config::Config>>,
    /// Replicas online whose last ack is at most `min-replicas-max-lag` seconds old,
    /// counted by the feeds' ack readers ([`acks`]): what a write checks.
    good_replicas: AtomicUsize,
    /// Moves on every ack: a shard with a parked `WAIT` counts again when it moved.
    ack_epoch: AtomicU64,
    /// Per shard: it has a `WAIT` parked and wants a wake-up on the next ack.
    wake_on_ack: Vec<AtomicBool>,
    /// `--repl-backlog`, and what the shards' backlogs hold (INFO).
    pub backlog: BacklogState,
}

/// The backlogs' size and what they hold, for INFO (each shard writes its own).
pub struct BacklogState {
    /// `--repl-backlog`: bytes for all shards' backlogs together; 0: none.
    pub limit: usize,
    /// Made (at the first replica's attach) and kept from then on.
    pub active: AtomicBool,
    /// Per shard: record bytes its backlog holds (offset units).
    pub histlen: Vec<AtomicU64>,
}

impl BacklogState {
    fn new(limit: usize, shards: usize) -> BacklogState {
        BacklogState {
            limit,
            active: AtomicBool::new(false),
            histlen: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// One shard's share of the limit.
    pub fn shard_limit(&self) -> usize {
        self.limit / self.histlen.len().max(1)
    }
}

impl State {
    /// Reads (or makes) the replication id in `data_dir`.
    pub fn open(
        data_dir: &Path,
        shards: usize,
        buffer_limit: usize,
        primary_login: Option<(String, String)>,
    ) -> Result<State, String> {
        let replid = load_or_make_replid(data_dir)?;
        Ok(State {
            replid,
            shards,
            shard_offsets: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            read_only: AtomicBool::new(false),
            feeds: Mutex::new(Vec::new()),
            link: Mutex::new(None),
            status: replica::Status::new(shards),
            listen: OnceLock::new(),
            handles: OnceLock::new(),
            tls: OnceLock::new(),
            buffer_limit,
            primary_login,
            started: Instant::now(),
            next_feed: AtomicU64::new(0),
            config: OnceLock::new(),
            good_replicas: AtomicUsize::new(0),
            ack_epoch: AtomicU64::new(0),
            wake_on_ack: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            backlog: BacklogState::new(0, shards),
        })
    }

    /// With backlogs of `limit` bytes in all (`--repl-backlog`; 0: none, every link
    /// starts with a full sync).
    pub fn with_backlog(mut self, limit: usize) -> State {
        self.backlog = BacklogState::new(limit, self.shards);
        self
    }

    /// A state kept nowhere (a fresh replication id, nothing on disk): for shards run
    /// without a data directory's identity, as tests that build shards by hand do.
    pub fn in_memory(shards: usize) -> State {
        State {
            replid: new_replid(),
            shards,
            shard_offsets: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            read_only: AtomicBool::new(false),
            feeds: Mutex::new(Vec::new()),
            link: Mutex::new(None),
            status: replica::Status::new(shards),
            listen: OnceLock::new(),
            handles: OnceLock::new(),
            tls: OnceLock::new(),
            buffer_limit: 1 << 20,
            primary_login: None,
            started: Instant::now(),
            next_feed: AtomicU64::new(0),
            config: OnceLock::new(),
            good_replicas: AtomicUsize::new(0),
            ack_epoch: AtomicU64::new(0),
            wake_on_ack: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            backlog: BacklogState::new(0, shards),
        }
    }

    /// Numbers replicas (log lines, INFO's `slaveN` order).
    pub fn next_feed_id(&self) -> u64 {
        self.next_feed.fetch_add(1, Ordering::Relaxed)
    }

    /// A replica: writes are refused.
    #[inline]
    pub fn is_replica(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// `master_repl_offset`: the sum of the shards' offsets.
    pub fn offset(&self) -> u64 {
        self.shard_offsets
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .sum()
    }

    /// Remembers a feed for INFO and ROLE.
    pub fn add_feed(&self, feed: Arc<Feed>) {
        let mut feeds = lock(&self.feeds);
        feeds.retain(|f| !f.is_dropped());
        feeds.push(feed);
    }

    /// The replicas attached now.
    pub fn feeds(&self) -> Vec<Arc<Feed>> {
        let mut feeds = lock(&self.feeds);
        feeds.retain(|f| !f.is_dropped());
        feeds.clone()
    }

    /// `REPLICAOF host port` (`Some`) or `REPLICAOF NO ONE` (`None`): stops the current
    /// link, if any, and starts the new one. Writes are refused from now on, or accepted
    /// again.
    pub fn follow(self: &Arc<Self>, primary: Option<(String, u16)>) {
        let old = lock(&self.link).take();
        if let Some(old) = old {
            old.stop();
        }
        match primary {
            None => {
                self.read_only.store(false, Ordering::Relaxed);
                self.status.forget();
                log::info!("replication: now a primary (REPLICAOF NO ONE)");
            }
            Some((host, port)) => {
                self.read_only.store(true, Ordering::Relaxed);
                log::info!("replication: following {host}:{port}");
                let link = replica::Link::start(self.clone(), host, port);
                *lock(&self.link) = Some(link);
            }
        }
    }

    /// Stops the link (shutdown).
    pub fn stop_link(&self) {
        if let Some(old) = lock(&self.link).take() {
            old.stop();
        }
    }

    /// Writes answer `-NOREPLICAS`: `--min-replicas-to-write` is on and fewer good
    /// replicas are attached. One load when it is off (every write asks).
    #[inline]
    pub fn too_few_replicas(&self, min_to_write: u64) -> bool {
        min_to_write != 0 && (self.good_replicas.load(Ordering::Relaxed) as u64) < min_to_write
    }

    /// Good replicas as last counted (INFO's `min_slaves_good_slaves`).
    pub fn good_replicas(&self) -> usize {
        self.good_replicas.load(Ordering::Relaxed)
    }

    /// Counts the good replicas again: online, and acknowledged within
    /// `min-replicas-max-lag` seconds (Redis's `refreshGoodSlavesCount`). Run by every
    /// feed's ack reader on each wake-up (at least once a second) and when it ends.
    pub fn refresh_good(&self) {
        let max_lag = self
            .config
            .get()
            .map_or(10, |c| c.live.min_replicas_max_lag());
        let good = self
            .feeds()
            .iter()
            .filter(|f| f.is_online() && f.acked.lag_secs() <= max_lag)
            .count();
        self.good_replicas.store(good, Ordering::Relaxed);
    }

    /// A replica acknowledged (its reader calls this): the epoch moves, and the shards
    /// that asked for it are woken.
    pub fn acked(&self) {
        self.ack_epoch.fetch_add(1, Ordering::SeqCst);
        let Some(handles) = self.handles.get() else {
            return;
        };
        for (shard, wake) in self.wake_on_ack.iter().enumerate() {
            if wake.load(Ordering::SeqCst) && wake.swap(false, Ordering::SeqCst) {
                if let Some(h) = handles.get(shard) {
                    h.send(crate::shard::mailbox::Message::ReplAcked);
                }
            }
        }
    }

    /// A shard with parked `WAIT`s asks to be woken by the next ack; returns the epoch to
    /// compare with (asked first, then read: an ack after the read wakes the shard).
    pub fn want_ack_wake(&self, shard: usize) -> u64 {
        if let Some(w) = self.wake_on_ack.get(shard) {
            w.store(true, Ordering::SeqCst);
        }
        self.ack_epoch.load(Ordering::SeqCst)
    }

    /// The ack epoch now.
    pub fn ack_epoch(&self) -> u64 {
        self.ack_epoch.load(Ordering::SeqCst)
    }

    /// Every shard's offset now: what a connection's writes so far are covered by.
    pub fn offsets_now(&self) -> Box<[u64]> {
        self.shard_offsets
            .iter()
            .map(|o| o.load(Ordering::Acquire))
            .collect()
    }

    /// Replicas online that acknowledged every shard's offset of `target` (Redis's
    /// `replicationCountAcksByOffset`).
    pub fn count_acks(&self, target: &[u64]) -> usize {
        self.feeds()
            .iter()
            .filter(|f| f.is_online() && f.acked.covers(target))
            .count()
    }

    /// The primary we follow, if any.
    pub fn primary(&self) -> Option<(String, u16)> {
        lock(&self.link).as_ref().map(|l| (l.host.clone(), l.port))
    }
}

/// A replica's link as the metrics show it.
pub struct LinkReport {
    pub up: bool,
    /// Seconds since the last byte from the primary; -1: none yet.
    pub last_io_ago: i64,
}

impl State {
    /// The link's state when this server is a replica (`None` on a primary).
    pub fn link_report(&self) -> Option<LinkReport> {
        self.primary()?;
        let st = &self.status;
        let last_io = st.last_io.load(Ordering::Relaxed);
        Some(LinkReport {
            up: st.state() == replica::LinkState::Connected,
            last_io_ago: if last_io == 0 {
                -1
            } else {
                unix_secs().saturating_sub(last_io) as i64
            },
        })
    }

    /// INFO's `replication` section, after its heading, in Redis 7's words.
    pub fn info(&self, text: &mut String) -> std::fmt::Result {
        let feeds = self.feeds();
        match self.primary() {
            None => {
                writeln_crlf(text, format_args!("role:master"))?;
                writeln_crlf(text, format_args!("connected_slaves:{}", feeds.len()))?;
                let min = self.config.get().map_or((0, 10), |c| {
                    (
                        c.live.min_replicas_to_write(),
                        c.live.min_replicas_max_lag(),
                    )
                });
                // Shown as Redis shows it: while both settings are on.
                if min.0 != 0 && min.1 != 0 {
                    writeln_crlf(
                        text,
                        format_args!("min_slaves_good_slaves:{}", self.good_replicas()),
                    )?;
                }
                for (i, f) in feeds.iter().enumerate() {
                    writeln_crlf(
                        text,
                        format_args!(
                            "slave{i}:ip={},port={},state={},offset={},lag={}",
                            f.shown_ip(),
                            f.listening_port,
                            f.state(),
                            f.acked.offset(),
                            f.acked.lag_secs()
                        ),
                    )?;
                }
                writeln_crlf(text, format_args!("master_failover_state:no-failover"))?;
                writeln_crlf(text, format_args!("master_replid:{}", self.replid))?;
                writeln_crlf(text, format_args!("master_replid2:{}", "0".repeat(40)))?;
                writeln_crlf(text, format_args!("master_repl_offset:{}", self.offset()))?;
                text.push_str("second_repl_offset:-1\r\n");
                self.backlog_info(text, self.offset())
            }
            Some((host, port)) => {
                let st = &self.status;
                let up = st.state() == replica::LinkState::Connected;
                let last_io = st.last_io.load(Ordering::Relaxed);
                let ago = if last_io == 0 {
                    -1
                } else {
                    unix_secs().saturating_sub(last_io) as i64
                };
                let offset = st.offset();
                writeln_crlf(text, format_args!("role:slave"))?;
                writeln_crlf(text, format_args!("master_host:{host}"))?;
                writeln_crlf(text, format_args!("master_port:{port}"))?;
                writeln_crlf(
                    text,
                    format_args!("master_link_status:{}", if up { "up" } else { "down" }),
                )?;
                writeln_crlf(text, format_args!("master_last_io_seconds_ago:{ago}"))?;
                writeln_crlf(
                    text,
                    format_args!(
                        "master_sync_in_progress:{}",
                        u8::from(st.state() == replica::LinkState::Sync)
                    ),
                )?;
                writeln_crlf(text, format_args!("slave_read_repl_offset:{offset}"))?;
                writeln_crlf(text, format_args!("slave_repl_offset:{offset}"))?;
                if !up {
                    let since = st.down_since.load(Ordering::Relaxed);
                    let secs = if since == 0 {
                        -1
                    } else {
                        unix_secs().saturating_sub(since) as i64
                    };
                    writeln_crlf(text, format_args!("master_link_down_since_seconds:{secs}"))?;
                }
                let priority = self.config.get().map_or(100, |c| c.live.replica_priority());
                writeln_crlf(text, format_args!("slave_priority:{priority}"))?;
                writeln_crlf(text, format_args!("slave_read_only:1"))?;
                writeln_crlf(text, format_args!("replica_announced:1"))?;
                writeln_crlf(text, format_args!("connected_slaves:0"))?;
                writeln_crlf(text, format_args!("master_failover_state:no-failover"))?;
                let replid = lock(&st.primary_replid)
                    .clone()
                    .unwrap_or_else(|| self.replid.clone());
                writeln_crlf(text, format_args!("master_replid:{replid}"))?;
                writeln_crlf(text, format_args!("master_replid2:{}", "0".repeat(40)))?;
                writeln_crlf(text, format_args!("master_repl_offset:{offset}"))?;
                text.push_str("second_repl_offset:-1\r\n");
                self.backlog_info(text, self.offset())
            }
        }
    }
}

impl State {
    /// INFO's `repl_backlog_*` lines, in Redis's words: `repl_backlog_size` is
    /// `--repl-backlog` (all shards together), `repl_backlog_histlen` the record bytes the
    /// shards' backlogs hold now, and the first byte's offset is `offset` less that, plus
    /// one, as Redis counts it (each shard's backlog starts at its own place; this is
    /// their sum's view).
    fn backlog_info(&self, text: &mut String, offset: u64) -> std::fmt::Result {
        let b = &self.backlog;
        let active = b.active.load(Ordering::Relaxed);
        let histlen: u64 = b.histlen.iter().map(|h| h.load(Ordering::Relaxed)).sum();
        let first = if active {
            (offset + 1).saturating_sub(histlen)
        } else {
            0
        };
        writeln_crlf(
            text,
            format_args!("repl_backlog_active:{}", u8::from(active)),
        )?;
        writeln_crlf(text, format_args!("repl_backlog_size:{}", b.limit))?;
        writeln_crlf(text, format_args!("repl_backlog_first_byte_offset:{first}"))?;
        writeln_crlf(text, format_args!("repl_backlog_histlen:{histlen}"))
    }
}

/// Writes one `field:value` line of INFO.
fn writeln_crlf(text: &mut String, line: std::fmt::Arguments) -> std::fmt::Result {
    use std::fmt::Write;
    text.write_fmt(line)?;
    text.push_str("\r\n");
    Ok(())
}

/// Locks a mutex; a panic while it was held leaves plain data, still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// 40 random hex digits.
pub fn new_replid() -> String {
    let mut bytes = [0u8; 20];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Without randomness: still unique enough for one machine (pid and time).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&t.to_le_bytes());
        bytes[16..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_replid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The id in `<data-dir>/replid`, made (and written durably) when there is none.
fn load_or_make_replid(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join(REPLID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_replid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(format!(
                "{} does not hold a replication id (40 hex digits); remove it to make a new one",
                path.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let id = new_replid();
    let tmp = data_dir.join(format!("{REPLID_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        crate::persist::sync_dir(data_dir)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replid_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("gokv-replid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = load_or_make_replid(&dir).unwrap();
        assert!(is_replid(&a), "{a}");
        assert_eq!(load_or_make_replid(&dir).unwrap(), a);
        std::fs::write(dir.join(REPLID_FILE), "junk").unwrap();
        assert!(load_or_make_replid(&dir).unwrap_err().contains("40 hex"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_ne!(new_replid(), new_replid());
    }
}

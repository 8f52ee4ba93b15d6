//! The shard's side of replication (the design: [`crate::replication`]).
//!
//! On a primary: the feeds attached to this shard, the frames each pass's commit makes for
//! them, and the full sync of this shard's partitions (a SCAN-cursor walk a slice per pass,
//! run by the `replication` housekeeping step after the pass's writes, so that it only ever
//! sees committed data). With no feed attached the shard pays one branch per write (a MEMORY
//! partition's `stream` is `None`) and one per commit (no frames to flush).
//!
//! On a replica: applying what the link sends ([`Message::ReplApply`]) to the partitions
//! this shard owns, through their journals when they are durable, so the pass's group
//! commit logs them.
//!
//! Nothing here blocks: a feed is only pushed to (see [`crate::replication::feed`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::metrics::ShardMetrics;
use crate::persist::record::{self, Record};
use crate::persist::Journal;
use crate::replication::link::LinkStream;
use crate::replication::{apply, wire, Feed, State};

use super::durability::Durability;
use super::mailbox::{Message, ReplBatch, ReplOp};
use super::routes::Target;
use super::{Core, Shard, COORDINATOR};

/// Keys one SCAN call of a walk visits (about): small, so that a slice stops near its byte
/// budget whatever the values weigh; a step makes as many calls as its budget allows.
const WALK_SCAN_KEYS: usize = 32;
/// A step stops once its frame holds this many bytes (values can be large), or a quarter
/// of the feed's bound if that is less (`Feed::snapshot_room`): a step stays well under a
/// millisecond.
const WALK_STEP_BYTES: usize = 1 << 20;

/// This shard's feeds and the frames of the pass.
#[derive(Default)]
pub(super) struct Feeds {
    attached: Vec<Attached>,
    /// Frames made by this pass's commit, pushed to every feed at its end.
    out: Vec<u8>,
    /// This shard's offset: bytes of records streamed, dropped partitions' included.
    offset: u64,
}

/// A feed and the full sync it still needs from this shard.
struct Attached {
    feed: Arc<Feed>,
    walks: VecDeque<Walk>,
}

/// The walk over one partition for one feed's full sync.
struct Walk {
    name: Box<[u8]>,
    id: u64,
    cursor: u64,
}

/// Where a frame made before a commit sits in `out`, to keep or take back.
pub(super) struct Shipped {
    start: usize,
    records: usize,
}

impl Feeds {
    /// Whether any replica is attached.
    #[inline]
    pub(super) fn is_streaming(&self) -> bool {
        !self.attached.is_empty()
    }

    /// Frames a partition's records (before its commit, whose outcome decides whether the
    /// frame stays); `part_offset` is the partition's offset now. `None` when no replica is
    /// attached.
    #[inline]
    pub(super) fn ship_before_commit(
        &mut self,
        shard: usize,
        id: u64,
        part_offset: u64,
        records: &[u8],
    ) -> Option<Shipped> {
        if self.attached.is_empty() {
            return None;
        }
        Some(self.frame(shard, id, part_offset, records))
    }

    fn frame(&mut self, shard: usize, id: u64, part_offset: u64, records: &[u8]) -> Shipped {
        let start = self.out.len();
        let len = records.len() as u64;
        wire::encode_with(
            &mut self.out,
            b"RECORDS",
            &[shard as u64, self.offset + len, id, part_offset + len],
            Some(records),
        );
        Shipped {
            start,
            records: records.len(),
        }
    }

    /// The commit succeeded: the frame stays, the offsets move.
    pub(super) fn shipped(&mut self, shipped: Option<Shipped>, part_offset: &mut u64) {
        if let Some(s) = shipped {
            self.offset += s.records as u64;
            *part_offset += s.records as u64;
        }
    }

    /// The commit failed: the frame goes (the writes were rolled back).
    pub(super) fn not_shipped(&mut self, shipped: Option<Shipped>) {
        if let Some(s) = shipped {
            self.out.truncate(s.start);
        }
    }

    /// Frames and keeps a MEMORY partition's records (nothing can fail).
    pub(super) fn ship(&mut self, shard: usize, id: u64, part_offset: &mut u64, records: &[u8]) {
        let s = self.frame(shard, id, *part_offset, records);
        self.shipped(Some(s), part_offset);
    }

    /// End of the commit: pushes the pass's frames to every feed, and forgets the feeds
    /// that were dropped. True when that left none (the caller then stops streaming).
    pub(super) fn flush(&mut self, state: &State, shard: usize) -> bool {
        if self.out.is_empty() {
            return false;
        }
        state.shard_offsets[shard].store(self.offset, Ordering::Relaxed);
        let frames = Arc::new(std::mem::take(&mut self.out));
        for a in &self.attached {
            // Noted first: an ack of these records is never capped below them.
            a.feed.note_offset(shard, self.offset);
            a.feed.push(frames.clone());
        }
        self.attached.retain(|a| !a.feed.is_dropped());
        self.attached.is_empty()
    }
}

impl Core {
    /// A replica attached (from the coordinator, after the catalog and users went into its
    /// feed): a `FULL` frame per partition, the walks for their snapshots, and from now on
    /// every commit's records. MEMORY partitions start keeping a stream journal.
    pub(super) fn start_feed(&mut self, feed: Arc<Feed>) {
        let mut frames = Vec::new();
        let mut walks = VecDeque::new();
        for (name, target) in self.routes.iter_mut() {
            if let Target::Local(local) = target {
                match &mut local.log {
                    Durability::Memory if local.stream.is_none() => {
                        local.stream = Some(Box::new(Journal::stream()));
                    }
                    Durability::Logged(log) => log.journal.set_replicated(true),
                    _ => {}
                }
                wire::encode_with(
                    &mut frames,
                    b"FULL",
                    &[
                        self.id as u64,
                        self.feeds.offset,
                        local.id,
                        local.repl_offset,
                    ],
                    None,
                );
                walks.push_back(Walk {
                    name: name.into(),
                    id: local.id,
                    cursor: 0,
                });
            }
        }
        if walks.is_empty() {
            self.synced(&feed, &mut frames);
        }
        feed.note_offset(self.id, self.feeds.offset);
        if !feed.push(Arc::new(frames)) {
            return;
        }
        log::info!(
            "shard {}: full sync of {} partitions to replica {} ({}) begins",
            self.id,
            walks.len(),
            feed.id,
            feed.peer
        );
        self.feeds.attached.push(Attached { feed, walks });
    }

    /// Appends `SYNCED` for this shard and counts it.
    fn synced(&self, feed: &Feed, frames: &mut Vec<u8>) {
        wire::encode_with(
            frames,
            b"SYNCED",
            &[self.id as u64, self.feeds.offset],
            None,
        );
        feed.synced_shards.fetch_add(1, Ordering::Relaxed);
    }

    /// A partition this shard now owns (CREATE, or a persist change to MEMORY) while
    /// replicas are attached: a MEMORY one keeps a stream journal.
    pub(super) fn stream_if_fed(&self, local: &mut super::durability::LocalPartition) {
        if !self.feeds.is_streaming() {
            return;
        }
        match &mut local.log {
            Durability::Memory if local.stream.is_none() => {
                local.stream = Some(Box::new(Journal::stream()));
            }
            Durability::Logged(log) => log.journal.set_replicated(true),
            _ => {}
        }
    }

    /// Whether a walk has work it may do now (its feed has room).
    pub(super) fn walks_due(&self) -> Option<bool> {
        let mut any = None;
        for a in &self.feeds.attached {
            if !a.walks.is_empty() && !a.feed.is_dropped() {
                let room = a.feed.queued() < a.feed.snapshot_room();
                any = Some(any.unwrap_or(false) || room);
            }
        }
        any
    }

    /// One slice of each full sync whose feed has room (the `replication` housekeeping
    /// step, after the pass's writes). Also forgets dropped feeds, and stops the MEMORY
    /// partitions' stream journals when the last one goes.
    pub(super) fn walk_steps(&mut self) {
        let shard = self.id;
        let offset = self.feeds.offset;
        let mut attached = std::mem::take(&mut self.feeds.attached);
        for a in &mut attached {
            let room = a.feed.snapshot_room();
            if a.feed.is_dropped() || a.feed.queued() >= room {
                continue;
            }
            let slice = WALK_STEP_BYTES.min(room);
            let Some(walk) = a.walks.front_mut() else {
                continue;
            };
            let mut frames = Vec::new();
            let mut done = true;
            if let Some(Target::Local(local)) = self.routes.get_mut(&walk.name) {
                if local.id == walk.id {
                    let mut records = Vec::new();
                    let mut cursor = walk.cursor;
                    loop {
                        cursor = local.data.scan(cursor, WALK_SCAN_KEYS, |key, entry| {
                            let rec = Record::set(key, entry.value, entry.deadline);
                            record::encode(&rec, &mut records);
                        });
                        if cursor == 0 || records.len() >= slice {
                            break;
                        }
                    }
                    walk.cursor = cursor;
                    done = cursor == 0;
                    if !records.is_empty() {
                        wire::encode_with(&mut frames, b"SNAP", &[walk.id], Some(&records));
                    }
                }
            }
            if done {
                a.walks.pop_front();
                if a.walks.is_empty() {
                    wire::encode_with(&mut frames, b"SYNCED", &[shard as u64, offset], None);
                    a.feed.synced_shards.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "shard {shard}: full sync to replica {} sent; streaming",
                        a.feed.id
                    );
                }
            }
            if !frames.is_empty() {
                a.feed.push(Arc::new(frames));
            }
        }
        attached.retain(|a| !a.feed.is_dropped());
        self.feeds.attached = attached;
        if !self.feeds.is_streaming() {
            self.end_streaming();
        }
    }

    /// No replica left: MEMORY partitions stop keeping records.
    pub(super) fn end_streaming(&mut self) {
        for target in self.routes.values_mut() {
            if let Target::Local(local) = target {
                // (Records of this pass not yet committed have nobody to go to.)
                local.stream = None;
                if let Durability::Logged(log) = &mut local.log {
                    log.journal.set_replicated(false);
                }
            }
        }
    }

    /// Whether a feed is attached whose sender is gone (the step then runs to forget it).
    pub(super) fn has_dropped_feed(&self) -> bool {
        self.feeds.attached.iter().any(|a| a.feed.is_dropped())
    }

    /// Replica side: applies what the link sent for this shard's partitions.
    pub(super) fn apply_replicated(&mut self, batch: ReplBatch) {
        let state = self.shared.replication.clone();
        let status = &state.status;
        let bytes = batch.bytes;
        if batch.generation == status.generation.load(Ordering::Relaxed) {
            let metrics = &self.shared.metrics.shards[self.id];
            for op in batch.ops {
                let (name, id, records, full) = match &op {
                    ReplOp::Full { name, id } => (name, *id, &[][..], true),
                    ReplOp::Snap { name, id, records } | ReplOp::Records { name, id, records } => {
                        (name, *id, &records[..], false)
                    }
                };
                let Some(Target::Local(local)) = self.routes.get_mut(&name[..]) else {
                    continue;
                };
                if local.id != id {
                    continue;
                }
                let before = local.data.used_memory();
                let data = &mut local.data;
                let result = match &mut local.log {
                    Durability::Logged(log) => {
                        let first = log.journal.is_empty();
                        let r = if full {
                            apply::clear(data, Some(&mut log.journal));
                            Ok(())
                        } else {
                            apply::apply(records, data, Some(&mut log.journal)).map(|_| ())
                        };
                        if !log.journal.is_empty() {
                            self.commit.dirty.logged(first, name, id);
                        }
                        r
                    }
                    Durability::Memory => {
                        if full {
                            apply::clear(data, None);
                            Ok(())
                        } else {
                            apply::apply(records, data, None).map(|_| ())
                        }
                    }
                    Durability::Broken(why) => Err(format!("its log is broken: {why}")),
                };
                let after = local.data.used_memory();
                if after != before {
                    let gauge = &metrics.used_memory;
                    ShardMetrics::set(
                        gauge,
                        (ShardMetrics::get(gauge) + after).saturating_sub(before),
                    );
                }
                if let Err(e) = result {
                    log::error!(
                        "replication: partition '{}': {e}; syncing again",
                        String::from_utf8_lossy(name)
                    );
                    status.damaged.store(true, Ordering::Relaxed);
                }
            }
            for (pshard, offset) in batch.offsets_to {
                if let Some(o) = batch.offsets.get(pshard) {
                    o.fetch_max(offset, Ordering::Relaxed);
                }
            }
        }
        status.in_flight.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Shard {
    /// A connection that asked `REPLSYNC` was answered: its socket leaves the shard and
    /// becomes a feed, written by a thread of its own; the coordinator starts the sync.
    pub(super) fn become_feed(
        &mut self,
        socket: crate::tls::stream::Transport,
        peer: std::net::SocketAddr,
        listening_port: u16,
        announce_ip: Option<String>,
    ) {
        use crate::tls::stream::Transport;
        use std::os::fd::{FromRawFd, IntoRawFd};
        let state = &self.core.shared.replication;
        // SAFETY: `into_raw_fd` gives up mio's ownership of the descriptor (already
        // deregistered from the poll), so the std stream is its only owner.
        let std_socket = |socket: mio::net::TcpStream| unsafe {
            std::net::TcpStream::from_raw_fd(socket.into_raw_fd())
        };
        // A replica that came in on the TLS port keeps its session (handshake done, the
        // `+FULLSYNC` reply written through it).
        let socket = match socket {
            Transport::Plain(socket) => LinkStream::Plain(std_socket(socket)),
            Transport::Tls(tls) => {
                let tls = *tls;
                LinkStream::TlsServer(Box::new(rustls::StreamOwned::new(
                    tls.session,
                    std_socket(tls.socket),
                )))
            }
        };
        let id = state.next_feed_id();
        let over = if socket.is_tls() { " over TLS" } else { "" };
        // The acks come back on the same socket: over plain TCP a thread of their own reads
        // them from a clone; a TLS session cannot be shared, so its sender reads them.
        let reader = match &socket {
            LinkStream::Plain(tcp) => match tcp.try_clone() {
                Ok(reader) => Some(reader),
                Err(e) => {
                    log::warn!("replication: cannot start the feed of {peer}: {e}");
                    return;
                }
            },
            _ => None,
        };
        match Feed::start(
            id,
            socket,
            peer,
            listening_port,
            state.shards,
            state.buffer_limit,
        ) {
            Ok(feed) => {
                if let Some(ip) = announce_ip {
                    let _ = feed.acked.announce_ip.set(ip);
                }
                let _ = feed.acked.state.set(Arc::downgrade(state));
                if let Some(reader) = reader {
                    if let Err(e) =
                        crate::replication::acks::start_reader(state.clone(), feed.clone(), reader)
                    {
                        feed.drop_replica(&format!("cannot start its ack reader: {e}"));
                        return;
                    }
                }
                log::info!(
                    "replication: replica {id} ({peer}, port {listening_port}) attached{over}"
                );
                state.add_feed(feed.clone());
                self.core.shared.shards[COORDINATOR].send(Message::FeedAttach(feed));
            }
            Err(e) => log::warn!("replication: cannot start the feed of {peer}: {e}"),
        }
    }
}

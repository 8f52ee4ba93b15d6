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
use std::time::{Duration, Instant};

use crate::metrics::ShardMetrics;
use crate::persist::record::{self, Record};
use crate::persist::Journal;
use crate::replication::backlog::{Backlog, Sub};
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
/// of the feed's bound if that is less (`Feed::snapshot_room`): about a thousand small keys,
/// a fraction of a millisecond. With 1 MiB steps the primary's P1 GET p99 during a full sync
/// of 1M keys was 14-15 ms (0.15-0.19 before it); with 64 KiB, 4.4-4.8 ms, the sync as fast
/// (0.56-0.66 s; 2 cores, the replica beside it). The rest after each step ([`WalkPace`])
/// took it to ~0.8 ms (`scripts/bench-sync-latency.sh`).
const WALK_STEP_BYTES: usize = 64 << 10;
/// A step also stops after this long (checked every [`WALK_SCAN_KEYS`] keys): big values, a
/// slow machine.
const WALK_STEP_TIME: Duration = Duration::from_micros(250);
/// A step that ran this long stops as soon as anything waits for the shard ([`Waiting`]):
/// a client's request then waits behind a few SCAN calls, not a whole step (the P1 GET p99
/// during a full sync was 3-10x its p99 before with 250 us steps and no such check). The
/// floor keeps a walk moving under steady load, when something always waits.
const WALK_STEP_MIN: Duration = Duration::from_micros(20);
/// While clients are served, the walk rests this many times as long as its last step took
/// before the next (see [`WalkPace`]).
const WALK_REST_RATIO: u32 = 2;
/// While clients are served, a shard's walks (all its feeds together) send at most this many
/// bytes of records a second ([`WalkPace`]); with no client served they go as fast as the
/// feeds drain. 1M keys of 16-byte keys and 32-byte values are ~61 MB of records: ~2.5 s at
/// this rate (issue 12 asks < 5 s), and each shard paces its own walks, so partitions spread
/// over shards sync faster. Why a rate and not only the rests: under a P1 GET load every
/// step is cut short at [`WALK_STEP_MIN`] (a request always waits), so the walk's share of
/// the shard is set by the rests alone and it ran at ~70 MB/s (a sync in 0.8-0.9 s), a step
/// or its frame's send beside nearly every GET: the primary's P1 GET p99 during the sync was
/// 3.0-5.4x its p99 before (median 4.8x, 3 rounds, 2 cores). At this rate, 1.7-1.8x (sync
/// 2.5 s); at 12 MiB/s 1.1-1.5x but the sync took 4.9 s; a replica under `nice 19` did not
/// change the ratio (it is not the replica's CPU), nor did `--idle-poll-us 0`
/// (`scripts/bench-sync-latency.sh`).
const WALK_RATE: u64 = 24 << 20;
/// Partitions a shard says why it could not resume, per replica link (the rest counted in one
/// line): a shard of thousands of partitions logs a few lines, not thousands.
const MISSES_LOGGED: usize = 4;

/// A message published on the primary (channel, payload), as a replica shard is handed it.
pub(super) type Published = (Arc<[u8]>, Arc<[u8]>);

/// Whether anything waits for the shard's thread: events in its poll not yet taken (a
/// client's request, a socket that became writable) or mail in its inbox (a request another
/// shard forwarded). A walk's step asks between SCAN calls once it ran [`WALK_STEP_MIN`];
/// asking is one `poll(2)` of the epoll descriptor with a zero timeout, which takes nothing
/// from it.
pub(super) struct Waiting<'a> {
    pub poll: std::os::fd::RawFd,
    pub mailbox: &'a super::mailbox::Mailbox,
}

impl Waiting<'_> {
    fn now(&self) -> bool {
        self.mailbox.has_mail() || crate::replication::link::readable_now(self.poll)
    }
}

/// Whether a step that ran `elapsed` and made `bytes` of records stops here: its `slice` is
/// full, its time is up, or it ran its floor and `waiting` says something waits.
fn step_over(
    elapsed: Duration,
    bytes: usize,
    slice: usize,
    waiting: impl FnOnce() -> bool,
) -> bool {
    bytes >= slice || elapsed >= WALK_STEP_TIME || (elapsed >= WALK_STEP_MIN && waiting())
}

/// This shard's feeds and the frames of the pass.
#[derive(Default)]
pub(super) struct Feeds {
    attached: Vec<Attached>,
    /// Frames made by this pass's commit, pushed to every feed at its end.
    out: Vec<u8>,
    /// This shard's offset: bytes of records streamed, dropped partitions' included.
    offset: u64,
    /// Where each partition's frame of this pass lies in `out` (for the backlog).
    subs: Vec<Sub>,
    /// `PUBLISH` frames of this pass, for the replicas' subscribers: pushed after the pass's
    /// records ([`Feeds::publish`]).
    publishes: Vec<u8>,
    /// Made at the first replica's attach (`--repl-backlog` above zero), kept from then
    /// on: the shard streams into it, replica or none (`replication::backlog`).
    backlog: Option<Backlog>,
    /// When the full syncs' walks may take their next step.
    pace: WalkPace,
}

/// The walks' pacing: a step while the shard serves clients is followed by a rest
/// ([`WALK_REST_RATIO`] times the step's time), so that the walk takes at most a third of the
/// shard's thread and the thread sleeps between steps, and long enough that the walks send
/// at most [`WALK_RATE`] ([`rest_end`]). A thread that never sleeps (a step
/// every pass) was what a client's request waited behind: on a machine where the replica,
/// the feed's sender and the clients share the cores, the scheduler gives a busy thread its
/// turn late (the primary's P1 GET p99 during a full sync of 1M keys was ~25x its p99
/// before, on 2 cores). With no client served since the last step the walk goes on at once,
/// as fast as the feed drains. A rest shorter than a millisecond sleeps one (the poll's
/// unit): with clients, a walk still sends at least [`WALK_STEP_BYTES`] a millisecond or so.
#[derive(Default)]
pub(super) struct WalkPace {
    /// No step before this.
    rest_until: Option<Instant>,
    /// The shard's command count at the last step's end.
    commands: u64,
}

impl WalkPace {
    /// How long until the next step may run (zero: now).
    pub(super) fn wait(&self, now: Instant) -> Duration {
        self.rest_until
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// A step ran from `started` to `ended`; `commands` is the shard's command count now:
    /// when it moved since the last step, clients are being served and the walk rests.
    /// `bytes` is what the step made (records, every feed's).
    pub(super) fn stepped(
        &mut self,
        started: Instant,
        ended: Instant,
        commands: u64,
        bytes: usize,
    ) {
        let served = commands != self.commands;
        self.commands = commands;
        self.rest_until = served.then(|| rest_end(started, ended, bytes, WALK_RATE));
    }
}

/// When a step that ran from `started` to `ended` and made `bytes` of records, taken while
/// clients were served, lets the next one start: after a rest of [`WALK_REST_RATIO`] times
/// its time, and not before `bytes` at `rate` bytes a second would have taken from its start
/// (so the steps' starts are never closer than their bytes allow: at most `rate` over any
/// stretch of steps, whatever each took).
fn rest_end(started: Instant, ended: Instant, bytes: usize, rate: u64) -> Instant {
    let rest = ended + ended.saturating_duration_since(started) * WALK_REST_RATIO;
    let budget = (bytes as u128 * 1_000_000_000 / rate.max(1) as u128).min(u64::MAX as u128);
    rest.max(started + Duration::from_nanos(budget as u64))
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
    id: u64,
    start: usize,
    records: usize,
}

impl Feeds {
    /// Whether commits are framed: a replica is attached, or the backlog exists.
    #[inline]
    pub(super) fn is_streaming(&self) -> bool {
        !self.attached.is_empty() || self.backlog.is_some()
    }

    /// Frames a partition's records (before its commit, whose outcome decides whether the
    /// frame stays); `part_offset` is the partition's offset now. `None` when nothing is
    /// streamed (no replica, no backlog).
    #[inline]
    pub(super) fn ship_before_commit(
        &mut self,
        shard: usize,
        id: u64,
        part_offset: u64,
        records: &[u8],
    ) -> Option<Shipped> {
        if !self.is_streaming() {
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
            id,
            start,
            records: records.len(),
        }
    }

    /// The commit succeeded: the frame stays, the offsets move.
    pub(super) fn shipped(&mut self, shipped: Option<Shipped>, part_offset: &mut u64) {
        if let Some(s) = shipped {
            if self.backlog.is_some() {
                self.subs.push(Sub {
                    id: s.id,
                    start: *part_offset,
                    end: *part_offset + s.records as u64,
                    range: s.start..self.out.len(),
                });
            }
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

    /// A message published on this shard, for the subscribers of every replica (Redis
    /// propagates PUBLISH to its replicas). It goes out after the records of the pass it was
    /// published in, so a subscriber told of a write by a message finds the write on its
    /// replica when both are on one shard. It is not a record: no offset moves, and a
    /// resumed replica is never sent it again (Pub/Sub delivers at most once).
    pub(super) fn publish(&mut self, channel: &[u8], payload: &[u8]) {
        if !self.attached.is_empty() {
            wire::encode(&mut self.publishes, &[b"PUBLISH", channel, payload]);
        }
    }

    /// Whether this pass published a message for the replicas.
    #[inline]
    pub(super) fn has_publishes(&self) -> bool {
        !self.publishes.is_empty()
    }

    /// End of the commit: pushes the pass's frames to every feed and keeps them in the
    /// backlog, and forgets the feeds that were dropped. True when that left nothing to
    /// stream to (the caller then stops streaming).
    pub(super) fn flush(&mut self, state: &State, shard: usize) -> bool {
        if !self.publishes.is_empty() {
            // After the records: the backlog holds them by their ranges, so it never replays
            // a message.
            self.out.append(&mut self.publishes);
        }
        if self.out.is_empty() {
            return false;
        }
        state.shard_offsets[shard].store(self.offset, Ordering::Relaxed);
        let frames = Arc::new(std::mem::take(&mut self.out));
        let offset = self.offset;
        // Noted first: an ack of these records is never capped below them.
        for a in &self.attached {
            a.feed.note_offset(shard, offset);
        }
        crate::replication::feed::push_to_all(
            self.attached.iter().map(|a| &a.feed),
            &frames,
            |_| {},
        );
        if let Some(backlog) = &mut self.backlog {
            backlog.push(frames, std::mem::take(&mut self.subs));
            state.backlog.histlen[shard].store(backlog.histlen(), Ordering::Relaxed);
        }
        self.attached.retain(|a| !a.feed.is_dropped());
        !self.is_streaming()
    }

    /// A partition this shard no longer owns: the backlog forgets where it holds it from.
    pub(super) fn forget(&mut self, id: u64) {
        if let Some(backlog) = &mut self.backlog {
            backlog.forget(id);
        }
    }
}

impl Core {
    /// A replica attached (from the coordinator, after the catalog and users went into its
    /// feed): per partition, a `RESUME` frame and the backlog's frames after the offset the
    /// replica asked, when the backlog still holds them, or else a `FULL` frame and the walk
    /// for its snapshot; from now on every commit's records. MEMORY partitions start keeping
    /// a stream journal; the first attach makes the backlog.
    pub(super) fn start_feed(&mut self, feed: Arc<Feed>) {
        let state = self.shared.replication.clone();
        if self.feeds.backlog.is_none() && state.backlog.limit > 0 {
            let partitions = self.routes.values().filter_map(|t| match t {
                Target::Local(local) => Some((local.id, local.repl_offset)),
                Target::Remote { .. } => None,
            });
            self.feeds.backlog = Some(Backlog::new(state.backlog.shard_limit(), partitions));
            state.backlog.active.store(true, Ordering::Relaxed);
        }
        let asked = feed.resume.get();
        // The replays of every partition asked for, from one walk over the backlog.
        let mut replays = match (asked, &self.feeds.backlog) {
            (Some(asked), Some(backlog)) if !asked.offsets.is_empty() => {
                backlog.resume_all(self.routes.values().filter_map(|t| {
                    match t {
                        Target::Local(local) => asked
                            .offsets
                            .get(&local.id)
                            .map(|&from| (local.id, from, local.repl_offset)),
                        Target::Remote { .. } => None,
                    }
                }))
            }
            _ => hashbrown::HashMap::new(),
        };
        let mut frames = Vec::new();
        let mut walks = VecDeque::new();
        let mut resumed = 0;
        let mut misses = 0;
        for (name, target) in self.routes.iter_mut() {
            if let Target::Local(local) = target {
                match &mut local.log {
                    Durability::Memory if local.stream.is_none() => {
                        local.stream = Some(Box::new(Journal::stream()));
                    }
                    Durability::Logged(log) => log.journal.set_replicated(true),
                    _ => {}
                }
                let replay = match replays.remove(&local.id) {
                    Some(Ok(replay)) => asked
                        .and_then(|a| a.offsets.get(&local.id).copied())
                        .map(|from| (from, replay)),
                    Some(Err(miss)) => {
                        misses += 1;
                        if misses <= MISSES_LOGGED {
                            log::info!(
                                "shard {}: partition {} cannot resume from offset {} for \
                                 replica {} ({miss:?}; the backlog holds it from {} to {}): \
                                 sent whole",
                                self.id,
                                local.id,
                                asked.and_then(|a| a.offsets.get(&local.id)).unwrap_or(&0),
                                feed.id,
                                self.feeds.backlog.as_ref().map_or(0, |b| b.base(local.id)),
                                local.repl_offset
                            );
                        }
                        None
                    }
                    None => None,
                };
                let numbers = [
                    self.id as u64,
                    self.feeds.offset,
                    local.id,
                    local.repl_offset,
                ];
                match replay {
                    Some((from, replay)) => {
                        wire::encode_with(
                            &mut frames,
                            b"RESUME",
                            &[numbers[0], numbers[1], local.id, from],
                            None,
                        );
                        frames.extend_from_slice(&replay);
                        resumed += 1;
                    }
                    None => {
                        // The key count lets the replica size its table once instead of
                        // growing it twenty times while the snapshot arrives.
                        let keys = local.data.len() as u64;
                        let full = [numbers[0], numbers[1], numbers[2], numbers[3], keys];
                        wire::encode_with(&mut frames, b"FULL", &full, None);
                        walks.push_back(Walk {
                            name: name.into(),
                            id: local.id,
                            cursor: 0,
                        });
                    }
                }
            }
        }
        if misses > MISSES_LOGGED {
            log::info!(
                "shard {}: {} more partitions cannot resume for replica {}: sent whole",
                self.id,
                misses - MISSES_LOGGED,
                feed.id
            );
        }
        self.count_sync(&feed, resumed, walks.len());
        if walks.is_empty() {
            self.synced(&feed, &mut frames);
        }
        feed.note_offset(self.id, self.feeds.offset);
        if !feed.push(Arc::new(frames)) {
            return;
        }
        log::info!(
            "shard {}: sync of {} partitions to replica {} ({}) begins: {resumed} resumed, \
             {} sent whole",
            self.id,
            resumed + walks.len(),
            feed.id,
            feed.peer,
            walks.len()
        );
        self.feeds.attached.push(Attached { feed, walks });
    }

    /// Counts this shard's answer to a replica's sync; the last shard to answer counts the
    /// link: `sync_partial_ok` when every partition was resumed, else `sync_full`, and
    /// `sync_partial_err` too when the replica had asked to resume (as Redis counts a
    /// PSYNC it denies).
    fn count_sync(&self, feed: &Feed, resumed: usize, whole: usize) {
        let state = &self.shared.replication;
        if !feed.outcome.answer(resumed, whole, state.shards) {
            return;
        }
        let m = &self.shared.metrics;
        let asked = feed.resume.get().is_some_and(|r| r.asked);
        let resumed = feed.outcome.resumed.load(Ordering::Relaxed);
        let whole = feed.outcome.whole.load(Ordering::Relaxed);
        let how = if asked && whole == 0 {
            m.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            "partial resync"
        } else {
            m.sync_full.fetch_add(1, Ordering::Relaxed);
            if asked {
                m.sync_partial_err.fetch_add(1, Ordering::Relaxed);
            }
            "full sync"
        };
        log::info!(
            "replication: replica {} ({}): {how}: {resumed} partitions resumed, {whole} sent \
             whole{}",
            feed.id,
            feed.peer,
            if asked {
                ""
            } else {
                " (it did not ask to resume)"
            }
        );
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

    /// Whether a walk has work: `None` none; `Some(true)` one whose feed has room,
    /// `Some(false)` only ones whose feeds are full. Paced walks: [`Core::walk_wait`].
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

    /// How long the walks rest before their next step ([`WalkPace`]).
    pub(super) fn walk_wait(&self, now: Instant) -> Duration {
        self.feeds.pace.wait(now)
    }

    /// One slice of each full sync whose feed has room (the `replication` housekeeping
    /// step, after the pass's writes), cut short when something waits for the shard
    /// ([`step_over`]). Also forgets dropped feeds, and stops the MEMORY partitions' stream
    /// journals when the last one goes.
    pub(super) fn walk_steps(&mut self, waiting: &Waiting) {
        let shard = self.id;
        let offset = self.feeds.offset;
        let started = Instant::now();
        // Records made by this step, every feed's (the rate is the shard's).
        let mut made = 0;
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
            // Each feed's slice has its own time (every feed makes progress in every step).
            let slice_started = Instant::now();
            if let Some(Target::Local(local)) = self.routes.get_mut(&walk.name) {
                if local.id == walk.id {
                    let mut records = Vec::new();
                    let mut cursor = walk.cursor;
                    loop {
                        cursor = local.data.scan(cursor, WALK_SCAN_KEYS, |key, entry| {
                            let rec = Record::set(key, entry.value, entry.deadline);
                            record::encode(&rec, &mut records);
                        });
                        if cursor == 0
                            || step_over(slice_started.elapsed(), records.len(), slice, || {
                                waiting.now()
                            })
                        {
                            break;
                        }
                    }
                    walk.cursor = cursor;
                    done = cursor == 0;
                    made += records.len();
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
        let commands = self.commands_run();
        self.feeds
            .pace
            .stepped(started, Instant::now(), commands, made);
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

    /// Replica side: applies what the link sent for this shard's partitions; returns the
    /// messages published on the primary, for the caller to deliver to this shard's
    /// subscribers once the batch's records are applied.
    pub(super) fn apply_replicated(&mut self, batch: ReplBatch) -> Vec<Published> {
        let state = self.shared.replication.clone();
        let status = &state.status;
        let bytes = batch.bytes;
        let mut published = Vec::new();
        if batch.generation == status.generation.load(Ordering::Relaxed) {
            let metrics = &self.shared.metrics.shards[self.id];
            for op in batch.ops {
                let (name, id, records, full) = match &op {
                    ReplOp::Full { name, id, keys } => (name, *id, &[][..], Some(*keys)),
                    ReplOp::Snap { name, id, records } | ReplOp::Records { name, id, records } => {
                        (name, *id, &records[..], None)
                    }
                    ReplOp::Publish { channel, payload } => {
                        published.push((channel.clone(), payload.clone()));
                        continue;
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
                        let r = if let Some(keys) = full {
                            apply::clear(data, Some(&mut log.journal));
                            data.reserve(keys);
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
                        if let Some(keys) = full {
                            apply::clear(data, None);
                            data.reserve(keys);
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
        published
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
        user: Arc<crate::acl::User>,
        announce_ip: Option<String>,
        resume: Option<Box<crate::replication::backlog::Resume>>,
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
            user,
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
                if let Some(resume) = resume {
                    let _ = feed.resume.set(*resume);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A step stops at its byte or time bound; past its floor, as soon as something waits
    /// (and only then is `waiting` asked: it costs a syscall).
    #[test]
    fn a_step_stops_early_only_when_something_waits() {
        let us = Duration::from_micros;
        let never = || -> bool { panic!("asked before the step's floor") };
        assert!(!step_over(us(1), 100, 1000, never));
        assert!(step_over(us(1), 1000, 1000, never));
        assert!(step_over(WALK_STEP_TIME, 100, 1000, never));
        assert!(!step_over(WALK_STEP_MIN, 100, 1000, || false));
        assert!(step_over(WALK_STEP_MIN, 100, 1000, || true));
    }

    /// `Waiting` sees a request not yet taken from the shard's poll (and nothing before),
    /// without taking it: the loop's `poll` still gets the event.
    #[test]
    fn waiting_sees_a_pending_request_without_taking_it() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut poll = mio::Poll::new().unwrap();
        let (mailbox, _handle) =
            super::super::mailbox::Mailbox::new(poll.registry(), mio::Token(0)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut server = mio::net::TcpStream::from_std(server);
        poll.registry()
            .register(&mut server, mio::Token(1), mio::Interest::READABLE)
            .unwrap();
        let waiting = Waiting {
            poll: poll.as_raw_fd(),
            mailbox: &mailbox,
        };
        assert!(!waiting.now(), "nothing was sent yet");
        client.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        let seen = (0..1000).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            waiting.now()
        });
        assert!(seen, "the request was not seen waiting");
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events
            .iter()
            .any(|e| e.token() == mio::Token(1) && e.is_readable()));
    }

    /// A step taken while the shard served clients (its command count moved) is followed by
    /// a rest of twice its time; with no client served the next step may run at once.
    #[test]
    fn a_walk_rests_after_a_step_only_while_clients_are_served() {
        let mut pace = WalkPace::default();
        let t0 = Instant::now();
        assert_eq!(pace.wait(t0), Duration::ZERO);
        let step = Duration::from_micros(300);
        pace.stepped(t0, t0 + step, 5, 0);
        assert_eq!(pace.wait(t0 + step), step * WALK_REST_RATIO);
        assert_eq!(pace.wait(t0 + step * 2), step);
        assert_eq!(pace.wait(t0 + step * 3), Duration::ZERO);
        // Nothing served since: no rest.
        let t1 = t0 + step * 3;
        pace.stepped(t1, t1 + step, 5, 1 << 20);
        assert_eq!(pace.wait(t1 + step), Duration::ZERO);
        // Served again.
        pace.stepped(t1, t1 + step, 9, 0);
        assert_eq!(pace.wait(t1 + step), step * WALK_REST_RATIO);
        // Served, and a step of bytes: the rate's rest, from the step's start.
        pace.stepped(t1, t1 + step, 10, WALK_STEP_BYTES);
        let budget = Duration::from_nanos(WALK_STEP_BYTES as u64 * 1_000_000_000 / WALK_RATE);
        assert!(budget > step * (1 + WALK_REST_RATIO));
        assert_eq!(pace.wait(t1), budget);
    }

    /// The rest is the longer of the step's ratio and the rate's time for its bytes,
    /// counted from the step's start; a huge step or a zero rate cannot overflow.
    #[test]
    fn the_rate_sets_the_rest_after_a_step_of_many_bytes() {
        let t = Instant::now();
        let us = Duration::from_micros;
        // 1 MB at 1 MB/s: a second from the start, whatever the step took.
        assert_eq!(
            rest_end(t, t + us(100), 1_000_000, 1_000_000),
            t + Duration::from_secs(1)
        );
        // Few bytes: the ratio's rest (100 us step, 200 us rest).
        assert_eq!(
            rest_end(t, t + us(100), 10, 1_000_000),
            t + us(100) + us(100) * WALK_REST_RATIO
        );
        // 24 MiB/s: a 64 KiB step every 2.6 ms, so 61 MB of a 1M-key sync in ~2.4 s.
        let step = rest_end(t, t + us(20), 64 << 10, WALK_RATE) - t;
        assert_eq!(
            step,
            Duration::from_nanos((64u64 << 10) * 1_000_000_000 / WALK_RATE)
        );
        let sync = step.as_secs_f64() * (61e6 / (64u64 << 10) as f64);
        assert!((2.0..3.0).contains(&sync), "{sync}");
        // No overflow, no division by zero.
        let _ = rest_end(t, t, usize::MAX, 0);
        let _ = rest_end(t, t, usize::MAX, 1);
    }

    /// Stepped at the rate's pace, a walk under steady load sends no more than the rate
    /// (and not much less): 100 steps of 64 KiB, each step starting when the last one's rest
    /// ends, take 100 times the rate's time for 64 KiB.
    #[test]
    fn steps_under_load_send_at_the_rate() {
        let mut pace = WalkPace::default();
        let t0 = Instant::now();
        let mut now = t0;
        for i in 1..=100u64 {
            let ended = now + Duration::from_micros(30);
            pace.stepped(now, ended, i, WALK_STEP_BYTES);
            now = ended + pace.wait(ended);
        }
        let secs = (now - t0).as_secs_f64();
        let rate = 100.0 * WALK_STEP_BYTES as f64 / secs;
        assert!(
            (rate - WALK_RATE as f64).abs() / (WALK_RATE as f64) < 0.01,
            "{rate}"
        );
    }
}

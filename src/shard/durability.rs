//! The shard's side of persistence: group commit, reply holding, the ASYNC fsync timer and
//! compaction steps.
//!
//! # Group commit, and why replies wait
//! A write to a durable partition is applied in memory at once (later commands of the pass
//! must see it) and logged into the partition's [`Journal`](crate::persist::Journal). Its
//! reply must not leave before the record is written (ASYNC) or fsync'd (SYNC), and must become
//! `-IOERR` if that fails. So:
//! - **Local request**: the connection gets a *waiting* reply slot
//!   ([`ReplyQueue::push_waiting`](super::connection::ReplyQueue::push_waiting)); the success
//!   reply is encoded into [`GroupCommit::held`]'s buffer. Later replies of the connection queue
//!   behind the slot, so request order holds.
//! - **Forwarded request**: the reply is encoded into the reply batch for its shard as usual,
//!   and its position noted. The batch is sent only after the commit (`flush_outboxes` runs
//!   after it), so it can still be patched.
//! - **Commit** (once per pass, after `drain_inbox` and the housekeeping steps that change
//!   partitions, before `flush_outboxes` and `flush_writes`): each partition with records
//!   gets one `write` and, if SYNC, one `fdatasync`, shared by every write of the pass. On
//!   success the held replies fill their slots; on failure the partition's journal rolls its
//!   writes back (newest first), and the held replies, local and forwarded, become `-IOERR`.
//!
//! Replicas (`shard::replicate`): a commit that succeeded also frames the partition's records
//! for every attached replica (a failed one takes its frame back), and the records a MEMORY
//! partition's stream journal holds go out at the same point; the frames are pushed to the
//! feeds at the end of the commit, before any reply of the pass leaves.
//!
//! A write that changed nothing (DEL of an absent key, a WRONGTYPE error) logs nothing and its
//! reply is filled at once. Reads are never held. Known limit: a read in the same pass as a
//! write whose commit then fails may have seen the value that was rolled back.
//!
//! # Timers
//! ASYNC partitions are fsync'd when their oldest unsynced commit is [`ASYNC_FSYNC_INTERVAL`]
//! old. A compaction writes about [`COMPACTION_STEP_BYTES`] of snapshot per pass (a byte
//! budget: with large values an entry count would be an unbounded buffer and stall) and keeps
//! the poll from sleeping until it is done. Both are run by housekeeping steps (`fsync` and
//! `compaction` in `shard::housekeeping`), which also make the loop wake for them; the work
//! and its state are here.
//!
//! Every fdatasync of a commit or of the ASYNC timer is timed (an `Instant::now()` pair
//! around the system call, inside `PartitionLog`) into the shard's
//! [`fsync_latency`](crate::metrics::ShardMetrics::fsync_latency) histogram; MEMORY
//! partitions never reach this code.

use std::time::{Duration, Instant};

use crate::command::quota::Quota;
use crate::command::CommandError;
use crate::metrics::ShardMetrics;
use crate::persist::recovery::{self, Loaded};
use crate::persist::snapshot;
use crate::persist::PartitionLog;
use crate::protocol::{Protocol, ReplyWriter};
use crate::store::{Partition, PersistMode};

use super::mailbox::{ConnRef, ReplyBatch};
use super::routes::{Routes, Target};
use super::{Core, Shard};

/// How old unsynced ASYNC data may get before the shard fsyncs it. Half the promised second,
/// so that a long pass or a slow disk still keeps the promise.
pub const ASYNC_FSYNC_INTERVAL: Duration = Duration::from_millis(500);

/// Bytes of snapshot one compaction step writes per pass (why this value: see
/// [`snapshot::STEP_BYTES`]); small entries also count a fixed cost each, so that a step of
/// tiny keys stays near the 4096 entries a step used to be.
pub const COMPACTION_STEP_BYTES: usize = snapshot::STEP_BYTES;

/// A partition this shard owns.
pub struct LocalPartition {
    pub data: Partition,
    /// The catalog's id: tells a partition from a namesake dropped and created again.
    pub id: u64,
    pub log: Durability,
    /// Its options as the data path enforces them, copied from the catalog when a version
    /// arrives (`routes`), so a request reads a plain field.
    pub quota: Quota,
    /// A MEMORY partition while replicas are attached: its writes' records, for them
    /// (`shard::replicate`). `None` otherwise, which is all a write checks.
    pub stream: Option<Box<crate::persist::Journal>>,
    /// Bytes of records streamed for it (its replication offset).
    pub repl_offset: u64,
}

impl LocalPartition {
    /// Takes the options of a new catalog version (ALTER PARTITION), in place: the quotas
    /// and the eviction policy (see `Partition::set_eviction`).
    pub fn apply_options(&mut self, options: &crate::catalog::PartitionOptions) {
        self.quota.update(options);
        self.data.set_eviction(options.eviction);
    }
}

/// How a local partition's writes are made durable.
pub enum Durability {
    Memory,
    Logged(Box<PartitionLog>),
    /// The log could not be opened (after a CREATE): every write answers `-IOERR`.
    Broken(String),
}

/// A local write's reply, held until its partition's commit.
struct Held {
    conn: ConnRef,
    seq: u64,
    protocol: Protocol,
    partition: u64,
    /// `buf[start..end]` is the success reply.
    start: usize,
    end: usize,
}

/// A forwarded write's reply in `reply_outboxes[shard].replies[index]`.
struct HeldRemote {
    shard: usize,
    index: usize,
    protocol: Protocol,
    partition: u64,
}

/// Partitions with records this pass, each once: (name, id), in the order of their first
/// record. Apart from the rest of [`GroupCommit`] so that a local write can log into it while
/// its reply is encoded into [`GroupCommit::buf`].
#[derive(Default)]
pub struct DirtyPartitions(Vec<(Box<[u8]>, u64)>);

impl DirtyPartitions {
    /// Notes that a write logged a record for partition `id` (name `name`); `first` when it was
    /// the partition's first this pass.
    #[inline]
    pub fn logged(&mut self, first: bool, name: &[u8], id: u64) {
        if first {
            self.0.push((name.into(), id));
        }
    }
}

/// This pass's durable writes and held replies (see the module docs).
#[derive(Default)]
pub struct GroupCommit {
    pub dirty: DirtyPartitions,
    held: Vec<Held>,
    remote: Vec<HeldRemote>,
    /// Encoded success replies of `held`.
    pub buf: Vec<u8>,
    /// ASYNC partitions with unsynced commits, and since when.
    unsynced: Vec<(Box<[u8]>, u64)>,
    unsynced_since: Option<Instant>,
    /// Partitions compacting, or due to start.
    compacting: Vec<(Box<[u8]>, u64)>,
}

impl GroupCommit {
    /// Holds a local write's reply, encoded at `buf[start..]`.
    #[inline]
    pub fn hold(
        &mut self,
        conn: ConnRef,
        seq: u64,
        protocol: Protocol,
        partition: u64,
        start: usize,
    ) {
        self.held.push(Held {
            conn,
            seq,
            protocol,
            partition,
            start,
            end: self.buf.len(),
        });
    }

    /// Notes a forwarded write's reply, to patch should its commit fail.
    #[inline]
    pub fn hold_remote(&mut self, shard: usize, index: usize, protocol: Protocol, partition: u64) {
        self.remote.push(HeldRemote {
            shard,
            index,
            protocol,
            partition,
        });
    }

    /// How long until the ASYNC fsync is due; `None`: nothing is unsynced.
    pub fn fsync_due_in(&self, now: Instant) -> Option<Duration> {
        self.unsynced_since
            .map(|since| (since + ASYNC_FSYNC_INTERVAL).saturating_duration_since(now))
    }

    /// Whether a compaction is in progress or due to start.
    pub fn compacting(&self) -> bool {
        !self.compacting.is_empty()
    }
}

/// The error of a write that a partition's log refused (`why`): it was not applied, or it
/// was rolled back.
pub fn not_applied(why: &str) -> CommandError {
    CommandError::Io(format!("{why}; the write was not applied"))
}

/// `-IOERR ...` in `protocol`.
fn ioerr_reply(protocol: Protocol, why: &str) -> Vec<u8> {
    let mut out = Vec::new();
    not_applied(why).write_to(&mut ReplyWriter::new(&mut out, protocol));
    out
}

impl Shard {
    /// The group commit: write (and fsync) every partition with records from this pass, then
    /// release or fail the held replies.
    pub(super) fn commit(&mut self) {
        if self.core.commit.dirty.0.is_empty() {
            debug_assert!(self.core.commit.held.is_empty());
            if self.core.feeds.has_publishes() {
                // A pass that only published: its messages still go to the replicas now.
                self.core.flush_feeds();
            }
            return;
        }
        let failed = self.core.commit_logs();
        let mut held = std::mem::take(&mut self.core.commit.held);
        for h in held.drain(..) {
            let index = h.conn.index as usize;
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if conn.conn_ref != h.conn {
                continue;
            }
            match failed.iter().find(|(id, _)| *id == h.partition) {
                None => conn
                    .replies
                    .fill(h.seq, &self.core.commit.buf[h.start..h.end]),
                Some((_, why)) => conn.replies.fill(h.seq, &ioerr_reply(h.protocol, why)),
            };
            self.after_progress(index);
        }
        self.core.commit.held = held;
        self.core.commit.buf.clear();
        let remote = std::mem::take(&mut self.core.commit.remote);
        if !failed.is_empty() {
            for r in &remote {
                if let Some((_, why)) = failed.iter().find(|(id, _)| *id == r.partition) {
                    let reply = ioerr_reply(r.protocol, why);
                    replace_reply(&mut self.core.reply_outboxes[r.shard], r.index, &reply);
                }
            }
        }
        self.core.commit.remote = remote;
        self.core.commit.remote.clear();
    }

    /// Fsyncs every durable partition (shutdown).
    pub(super) fn sync_all(&mut self) {
        for target in self.core.routes.values_mut() {
            if let Target::Local(LocalPartition {
                log: Durability::Logged(log),
                ..
            }) = target
            {
                if let Err(e) = log.sync_and_checkpoint() {
                    log::error!("shutdown: cannot fsync {}: {e}", log.dir().display());
                }
            }
        }
        log::info!("shard {}: every log synced", self.core.id);
    }
}

/// Replaces reply `index` of a batch (rare: only after a failed commit).
fn replace_reply(batch: &mut ReplyBatch, index: usize, reply: &[u8]) {
    let mut buf = Vec::with_capacity(batch.buf.len());
    let mut start = 0usize;
    for (i, r) in batch.replies.iter_mut().enumerate() {
        let end = r.end as usize;
        if i == index {
            buf.extend_from_slice(reply);
        } else {
            buf.extend_from_slice(&batch.buf[start..end]);
        }
        start = end;
        r.end = buf.len() as u64;
    }
    batch.buf = buf;
}

/// The data and log of durable partition `id`, if this shard still owns it under `name`.
/// Work queued for a partition (a commit, an ASYNC fsync, a compaction) is skipped once the
/// partition was dropped, or dropped and created again under the same name.
fn owned_log<'a>(
    routes: &'a mut Routes,
    name: &[u8],
    id: u64,
) -> Option<(&'a mut Partition, &'a mut PartitionLog)> {
    match routes.get_mut(name)? {
        Target::Local(LocalPartition {
            data,
            id: owned,
            log: Durability::Logged(log),
            ..
        }) if *owned == id => Some((data, &mut **log)),
        _ => None,
    }
}

impl Core {
    /// Commits every dirty partition; returns the ids that failed, with why. While replicas
    /// are attached, what each partition committed (and what a MEMORY partition's stream
    /// journal holds) also goes into this pass's replication frames
    /// (`shard::replicate`), only once its commit succeeded.
    fn commit_logs(&mut self) -> Vec<(u64, String)> {
        let metrics = &self.shared.metrics.shards[self.id];
        let mut failed = Vec::new();
        let now = Instant::now();
        let shard = self.id;
        for (name, id) in self.commit.dirty.0.drain(..) {
            // Dropped during the pass: its writes went with it.
            let Some(Target::Local(local)) = self.routes.get_mut(&name[..]) else {
                continue;
            };
            if local.id != id {
                continue;
            }
            if let Some(stream) = &mut local.stream {
                if !stream.is_empty() {
                    self.feeds
                        .ship(shard, id, &mut local.repl_offset, stream.pending());
                    stream.clear();
                }
            }
            let (data, Durability::Logged(log)) = (&mut local.data, &mut local.log) else {
                continue;
            };
            if log.journal.is_empty() {
                continue;
            }
            let shipped =
                self.feeds
                    .ship_before_commit(shard, id, local.repl_offset, log.journal.pending());
            let before = log.disk_bytes();
            // The `fsync` latency event: a SYNC partition's write and fdatasync.
            let started = crate::latency::on().then(Instant::now);
            match log.commit() {
                Ok(done) => {
                    if let (Some(started), true) = (started, done.fsynced) {
                        crate::latency::record_since(crate::latency::Event::Fsync, started);
                    }
                    self.feeds.shipped(shipped, &mut local.repl_offset);
                    ShardMetrics::add(&metrics.log_commits, 1);
                    if done.fsynced {
                        ShardMetrics::add(&metrics.fsyncs, 1);
                        metrics.fsync_latency.record(done.fsync_took);
                    }
                    ShardMetrics::add(&metrics.log_bytes, log.disk_bytes() - before);
                    if log.mode() == PersistMode::Async {
                        if self.commit.unsynced_since.is_none() {
                            self.commit.unsynced_since = Some(now);
                        }
                        if !self.commit.unsynced.iter().any(|(_, i)| *i == id) {
                            self.commit.unsynced.push((name.clone(), id));
                        }
                    }
                    if log.wants_compaction(now)
                        && !self.commit.compacting.iter().any(|(_, i)| *i == id)
                    {
                        self.commit.compacting.push((name, id));
                    }
                }
                Err(e) => {
                    self.feeds.not_shipped(shipped);
                    let before = data.used_memory();
                    log.journal.rollback(data);
                    let after = data.used_memory();
                    let gauge = &metrics.used_memory;
                    ShardMetrics::set(
                        gauge,
                        (ShardMetrics::get(gauge) + after).saturating_sub(before),
                    );
                    ShardMetrics::add(&metrics.io_errors, 1);
                    log::error!(
                        "partition '{}' ({}): {e}; the pass's writes were rolled back and \
                         answered -IOERR",
                        String::from_utf8_lossy(&name),
                        log.dir().display()
                    );
                    failed.push((id, e.to_string()));
                }
            }
        }
        self.flush_feeds();
        failed
    }

    /// Pushes the pass's frames to the feeds (see `Feeds::flush`); stops streaming when no
    /// feed is left to stream to.
    pub(super) fn flush_feeds(&mut self) {
        if self.feeds.flush(&self.shared.replication, self.id) {
            self.end_streaming();
        }
    }

    /// Fsyncs the ASYNC partitions with unsynced commits (the `fsync` housekeeping step).
    pub(super) fn sync_async(&mut self, now: Instant) {
        let metrics = &self.shared.metrics.shards[self.id];
        self.commit.unsynced_since = None;
        for (name, id) in std::mem::take(&mut self.commit.unsynced) {
            let Some((_, log)) = owned_log(&mut self.routes, &name, id) else {
                continue;
            };
            match log.sync_timed() {
                Ok(None) => {}
                Ok(Some(took)) => {
                    ShardMetrics::add(&metrics.fsyncs, 1);
                    metrics.fsync_latency.record(took);
                }
                Err(e) => {
                    // The writes were acknowledged already (ASYNC's promise is "handed to the
                    // OS"); keep the data and try again next interval.
                    ShardMetrics::add(&metrics.io_errors, 1);
                    log::error!("ASYNC fsync of {} failed: {e}", log.dir().display());
                    self.commit.unsynced_since.get_or_insert(now);
                    self.commit.unsynced.push((name, id));
                }
            }
        }
    }

    /// Runs a slice of each compaction in progress, starting those that are due (the
    /// `compaction` housekeeping step).
    pub(super) fn compaction_steps(&mut self, now: Instant) {
        let metrics = &self.shared.metrics.shards[self.id];
        let mut list = std::mem::take(&mut self.commit.compacting);
        list.retain(|(name, id)| {
            let Some((data, log)) = owned_log(&mut self.routes, name, *id) else {
                return false;
            };
            let before = log.disk_bytes();
            let keep = if !log.compacting() {
                if !log.wants_compaction(now) {
                    return false;
                }
                log::info!(
                    "partition '{}': compacting {} bytes of log ({} keys)",
                    String::from_utf8_lossy(name),
                    log.disk_bytes(),
                    data.len()
                );
                log.start_compaction(data).is_ok()
            } else {
                match log.compaction_step(data, COMPACTION_STEP_BYTES) {
                    Ok(Some(took)) => {
                        ShardMetrics::add(&metrics.compactions, 1);
                        ShardMetrics::set(&metrics.last_compaction_ms, unix_ms());
                        ShardMetrics::set(
                            &metrics.last_compaction_duration_ms,
                            took.as_millis() as u64,
                        );
                        log::info!(
                            "partition '{}': compacted to {} bytes in {} ms",
                            String::from_utf8_lossy(name),
                            log.disk_bytes(),
                            took.as_millis()
                        );
                        false
                    }
                    Ok(None) => true,
                    Err(_) => {
                        ShardMetrics::add(&metrics.io_errors, 1);
                        false
                    }
                }
            };
            let after = log.disk_bytes();
            if after >= before {
                ShardMetrics::add(&metrics.log_bytes, after - before);
            } else {
                ShardMetrics::sub(&metrics.log_bytes, before - after);
            }
            keep
        });
        self.commit.compacting = list;
    }

    /// Opens the partitions this shard owns at startup: recovery, in this shard's thread (so
    /// every shard recovers in parallel), before the listener opens.
    pub(super) fn recover(&mut self, catalog: &crate::catalog::Catalog) -> Result<(), String> {
        let started = Instant::now();
        let mut total = Loaded::default();
        let mut count = 0;
        for meta in catalog.partitions.values() {
            if meta.shard != self.id || meta.persist == PersistMode::Memory {
                continue;
            }
            let mut data = Partition::new(meta.schema, meta.stats.clone());
            // Before recovery: replayed keys get access bits, stamped in log order.
            data.set_eviction(meta.options.eviction);
            let config = &self.shared.config;
            let (log, loaded) = recovery::recover_partition(
                &config.data_dir,
                meta,
                &mut data,
                config.accept_data_loss,
            )
            .map_err(|e| format!("recovery of partition '{}' failed: {e}", meta.name))?;
            log::info!(
                "partition '{}': {} keys from {} records ({} bytes){}",
                meta.name,
                loaded.keys,
                loaded.records,
                loaded.bytes,
                if loaded.truncated > 0 {
                    format!(", torn tail of {} bytes truncated", loaded.truncated)
                } else {
                    String::new()
                }
            );
            total.keys += loaded.keys;
            total.records += loaded.records;
            total.bytes += loaded.bytes;
            count += 1;
            self.recovered.insert(
                meta.id,
                LocalPartition {
                    data,
                    id: meta.id,
                    log: Durability::Logged(Box::new(log)),
                    quota: Quota::new(&meta.name, &meta.options),
                    stream: None,
                    repl_offset: 0,
                },
            );
        }
        let elapsed = started.elapsed();
        let metrics = &self.shared.metrics.shards[self.id];
        ShardMetrics::set(&metrics.recovery_ms, elapsed.as_millis() as u64);
        ShardMetrics::set(&metrics.recovered_keys, total.keys);
        if count > 0 {
            log::info!(
                "shard {}: recovered {count} durable partitions, {} keys, {} records, {} bytes \
                 in {} ms",
                self.id,
                total.keys,
                total.records,
                total.bytes,
                elapsed.as_millis()
            );
        }
        Ok(())
    }

    /// A partition this shard now owns: recovered at startup, or new (CREATE).
    pub(super) fn open_partition(
        &mut self,
        meta: &crate::catalog::PartitionMeta,
    ) -> LocalPartition {
        if let Some(mut local) = self.recovered.remove(&meta.id) {
            local.apply_options(&meta.options);
            return local;
        }
        let mut data = Partition::new(meta.schema, meta.stats.clone());
        // Before recovery: replayed keys get access bits, stamped in log order.
        data.set_eviction(meta.options.eviction);
        let log = match meta.persist {
            PersistMode::Memory => Durability::Memory,
            _ => match recovery::recover_partition(
                &self.shared.config.data_dir,
                meta,
                &mut data,
                self.shared.config.accept_data_loss,
            ) {
                Ok((log, _)) => Durability::Logged(Box::new(log)),
                Err(e) => {
                    log::error!("partition '{}': cannot open its log: {e}", meta.name);
                    Durability::Broken(format!("the partition's log cannot be opened: {e}"))
                }
            },
        };
        LocalPartition {
            data,
            id: meta.id,
            log,
            quota: Quota::new(&meta.name, &meta.options),
            stream: None,
            repl_offset: 0,
        }
    }

    /// A partition this shard no longer owns (DROP): its memory goes, its files are deleted.
    pub(super) fn retire(&mut self, local: LocalPartition) {
        self.feeds.forget(local.id);
        if let Durability::Logged(log) = local.log {
            let metrics = &self.shared.metrics.shards[self.id];
            ShardMetrics::sub(&metrics.log_bytes, log.disk_bytes());
            log.destroy();
        }
    }

    /// Makes a persist change of partition `local` (ALTER PARTITION ... SET persist) before
    /// this shard acknowledges the catalog version that says it, so before ALTER answers;
    /// `Err`: why it failed (the partition then answers writes `-IOERR`).
    pub(super) fn change_persist(
        &mut self,
        meta: &crate::catalog::PartitionMeta,
        local: &mut LocalPartition,
    ) -> Result<(), String> {
        match (&mut local.log, meta.persist) {
            (Durability::Memory, PersistMode::Memory) => Ok(()),
            (_, PersistMode::Memory) => {
                self.stop_logging(local);
                Ok(())
            }
            (Durability::Memory, _) => self.start_logging(meta, local),
            (Durability::Logged(log), mode) if log.mode() != mode => {
                log.set_mode(mode).map_err(|e| {
                    log::error!("partition '{}': cannot fsync its log: {e}", meta.name);
                    let why = format!("its log could not be fsync'd: {e}");
                    local.log = Durability::Broken(why.clone());
                    why
                })
            }
            _ => Ok(()),
        }
    }

    /// A MEMORY partition changed to ASYNC or SYNC: opens the log the coordinator created and
    /// writes every key into a snapshot, durably, before returning; from then on every write
    /// is logged. The whole snapshot is written at once, so the shard serves nothing else
    /// meanwhile (about a second a GiB): the one step of the shard not bounded per pass, and
    /// only at this ALTER. A crash before it is done finds the partition durable and empty,
    /// as a MEMORY partition would be, and ALTER had not answered. A failure leaves the
    /// partition answering `-IOERR` to writes.
    fn start_logging(
        &mut self,
        meta: &crate::catalog::PartitionMeta,
        local: &mut LocalPartition,
    ) -> Result<(), String> {
        let data_dir = &self.shared.config.data_dir;
        let opened = recovery::recover_partition(data_dir, meta, &mut local.data, false)
            .map_err(|e| e.to_string())
            .and_then(|(mut log, _)| {
                let started = Instant::now();
                log.start_compaction(&mut local.data)
                    .and_then(|()| loop {
                        match log.compaction_step(&mut local.data, COMPACTION_STEP_BYTES) {
                            Ok(Some(_)) => break Ok(()),
                            Ok(None) => continue,
                            Err(e) => break Err(e),
                        }
                    })
                    .map_err(|e| format!("cannot write its snapshot: {e}"))?;
                log::info!(
                    "partition '{}': now {}, {} keys snapshotted in {} ms",
                    meta.name,
                    meta.persist,
                    local.data.len(),
                    started.elapsed().as_millis()
                );
                Ok(log)
            });
        match opened {
            Ok(log) => {
                local.log = Durability::Logged(Box::new(log));
                Ok(())
            }
            Err(e) => {
                log::error!(
                    "partition '{}': cannot become {}: {e}",
                    meta.name,
                    meta.persist
                );
                local.log =
                    Durability::Broken(format!("the partition's log cannot be opened: {e}"));
                Err(format!("its log could not be made ({e})"))
            }
        }
    }

    /// A durable partition changed to MEMORY (ALTER PARTITION ... SET persist MEMORY): its log
    /// goes, files and all, before this shard acknowledges the catalog version, so the files
    /// are gone when ALTER answers. Work queued for it this pass (a commit, an ASYNC fsync, a
    /// compaction step) finds no log and is skipped (`owned_log`); writes already applied stay,
    /// and their held replies are released as a MEMORY partition's would be. A crash after the
    /// catalog write but before this leaves the files, which startup removes.
    pub(super) fn stop_logging(&mut self, local: &mut LocalPartition) {
        match std::mem::replace(&mut local.log, Durability::Memory) {
            Durability::Logged(log) => {
                // Records of this pass not committed yet still go to the replicas.
                if self.feeds.is_streaming() {
                    let stream = local
                        .stream
                        .get_or_insert_with(|| Box::new(crate::persist::Journal::stream()));
                    stream.adopt_records(log.journal.pending());
                }
                log::info!(
                    "partition {}: now MEMORY, removing {}",
                    local.id,
                    log.dir().display()
                );
                log.destroy();
            }
            Durability::Broken(_) => {
                let dir = crate::persist::partition_dir(&self.shared.config.data_dir, local.id);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        log::warn!("cannot remove {}: {e}", dir.display());
                    }
                }
            }
            Durability::Memory => {}
        }
    }

    /// Recomputes the durable-partition gauges after a catalog change.
    pub(super) fn count_durable(&self) {
        let mut durable = 0;
        let mut bytes = 0;
        for target in self.routes.values() {
            if let Target::Local(LocalPartition {
                log: Durability::Logged(log),
                ..
            }) = target
            {
                durable += 1;
                bytes += log.disk_bytes();
            }
        }
        let metrics = &self.shared.metrics.shards[self.id];
        ShardMetrics::set(&metrics.durable_partitions, durable);
        ShardMetrics::set(&metrics.log_bytes, bytes);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::mailbox::ForwardedReply;

    #[test]
    fn a_failed_forwarded_reply_is_replaced_in_place() {
        let conn = ConnRef {
            index: 0,
            generation: 0,
        };
        let mut batch = ReplyBatch::default();
        for reply in [&b"+OK\r\n"[..], b":7\r\n", b"$1\r\nx\r\n"] {
            batch.buf.extend_from_slice(reply);
            batch.replies.push(ForwardedReply {
                conn,
                seq: batch.replies.len() as u64,
                end: batch.buf.len() as u64,
                over_output_limit: false,
            });
        }
        let ioerr = ioerr_reply(Protocol::Resp2, "log fsync failed");
        replace_reply(&mut batch, 1, &ioerr);
        let replies: Vec<&[u8]> = batch.iter().map(|(_, r)| r).collect();
        assert_eq!(replies[0], b"+OK\r\n");
        assert_eq!(
            replies[1],
            b"-IOERR log fsync failed; the write was not applied\r\n"
        );
        assert_eq!(replies[2], b"$1\r\nx\r\n");
    }
}

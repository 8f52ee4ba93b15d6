//! The log of one durable partition: its active segment, the group commit of a pass's
//! records, the ASYNC fsync, and the compaction in progress.
//!
//! Owned by the partition's shard thread; every call is on that thread. Calls here block on
//! the disk (that is what SYNC means); the shard makes them once per pass, not per request.
//!
//! # Failure policy
//! A failed `write` or `fdatasync` of a commit truncates the segment back to its last
//! committed length (so the failed records can never be replayed) and reports the error; the
//! shard then rolls the pass's writes back in memory and answers `-IOERR`. If even the
//! truncation fails, the segment is marked *dirty* and every later commit first retries it:
//! nothing is ever appended after a partial record, so a damaged record can only ever be the
//! tail. The truncation is fsync'd too, so that a crash cannot bring back records that were
//! answered `-IOERR`; if that fsync fails, the segment is marked dirty the same way.
//!
//! # The durable length (checkpoint)
//! So that recovery can tell a torn write from lost acknowledged data, the segment's header
//! records how many of its bytes are known to be on disk ([`Checkpoint`]): just before each
//! fsync it does anyway (every SYNC commit, the ASYNC timer, shutdown), the log rewrites one
//! of the two slots in the header with the length the *previous* fsync covered, and that
//! fsync makes the slot durable too. No extra fsync per commit: the cost is one 16-byte
//! `pwrite` into the segment's first page per fsync, so an fsync writes that page besides
//! the tail. The recorded length lags one fsync behind the truth: recovery can only call
//! "torn" what lies past it (for SYNC the last commit or two, for ASYNC the last second or
//! so). When compaction closes a segment, its slot gets the final length and a *sealed* flag
//! (one more fsync, per compaction) after the next segment exists: a sealed last segment
//! means the next one is missing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store::{Partition, PersistMode};

use super::fault::{self, Fault};
use super::journal::Journal;
use super::record::{Checkpoint, FileHeader, CHECKPOINT_SLOTS, FILE_HEADER, SEGMENT_HEADER};
use super::snapshot::Compaction;
use super::{partition_dir, segment_path, sync_dir};

/// A partition's segments may grow to this many bytes before compaction, however small its
/// snapshot: below it, rewriting the partition costs more fsyncs than the disk it saves
/// (300k overwrites of 100 keys stay under a few MB).
pub const COMPACT_MIN_BYTES: u64 = 2 << 20;

/// After a failed compaction, wait this long before trying again: a full disk does not
/// empty itself in a millisecond, and each try costs a segment and an fsync.
const COMPACT_RETRY: Duration = Duration::from_secs(10);

/// What one commit did, for the shard's counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Committed {
    pub bytes: u64,
    pub fsynced: bool,
    /// How long its `fdatasync` took (zero when not `fsynced`).
    pub fsync_took: Duration,
}

pub struct PartitionLog {
    dir: PathBuf,
    id: u64,
    mode: PersistMode,
    /// The active segment's number and file (records are written at `len`, never appended
    /// blindly: `O_APPEND` would also send the checkpoint's `pwrite` to the end).
    seq: u64,
    file: File,
    /// Committed bytes of the active segment (header included).
    len: u64,
    /// Bytes of the active segment that a completed fsync covered.
    durable: u64,
    /// The durable length last written into a checkpoint slot, and the slot to write next.
    checkpointed: u64,
    next_slot: usize,
    /// Bytes of older segments still on disk (since the last complete snapshot).
    older_segments: u64,
    snapshot_bytes: u64,
    /// This pass's records and undo information.
    pub journal: Journal,
    /// ASYNC: committed bytes not fsync'd yet.
    unsynced: bool,
    /// A failed commit could not truncate its partial write: retry before the next append.
    dirty_tail: bool,
    compaction: Option<Compaction>,
    compaction_started: Instant,
    compact_not_before: Option<Instant>,
}

/// Creates segment `seq` in the version the log writes: header and both checkpoint slots
/// (durable: the header) written and fsync'd, the directory entry fsync'd.
///
/// A failure leaves nothing behind: the file is removed and the directory fsync'd, so that a
/// later try can create it again (a full disk must not stop every later compaction). A file
/// already there that is too short to hold a record (left by a crash, or by a failure whose
/// removal failed too) is not part of any log and is replaced.
pub fn create_segment(dir: &Path, id: u64, seq: u64) -> io::Result<File> {
    let path = segment_path(dir, seq);
    let open = || OpenOptions::new().create_new(true).write(true).open(&path);
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && holds_no_record(&path) => {
            log::warn!(
                "{}: replacing an empty segment left by an earlier failure",
                path.display()
            );
            std::fs::remove_file(&path)?;
            open()?
        }
        other => other?,
    };
    match write_segment_header(&file, dir, id, seq) {
        Ok(()) => Ok(file),
        Err(e) => {
            drop(file);
            if let Err(rm) = std::fs::remove_file(&path).and_then(|()| sync_dir(dir)) {
                log::error!(
                    "cannot remove the segment whose creation failed, {}: {rm}",
                    path.display()
                );
            }
            Err(e)
        }
    }
}

fn holds_no_record(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() <= SEGMENT_HEADER as u64)
}

fn write_segment_header(file: &File, dir: &Path, id: u64, seq: u64) -> io::Result<()> {
    let mut bytes = [0u8; SEGMENT_HEADER];
    bytes[..FILE_HEADER].copy_from_slice(&FileHeader::segment(id, seq).encode());
    let empty = Checkpoint {
        durable: SEGMENT_HEADER as u64,
        sealed: false,
    }
    .encode(seq);
    for at in CHECKPOINT_SLOTS {
        bytes[at..at + empty.len()].copy_from_slice(&empty);
    }
    fault::check(Fault::Write)?;
    file.write_all_at(&bytes, 0)?;
    fault::check(Fault::Fsync)?;
    file.sync_all()?;
    sync_dir(dir)
}

impl PartitionLog {
    /// Creates a new partition's directory and first segment, durably. Run by the coordinator
    /// before the catalog that names the partition is written.
    pub fn create_files(data_dir: &Path, id: u64) -> io::Result<()> {
        let dir = partition_dir(data_dir, id);
        if dir.exists() {
            // Left over from a crash between creating files and writing the catalog.
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        create_segment(&dir, id, 1)?;
        Ok(())
    }

    /// Opens segment `seq` (a version-2 segment) of a recovered partition for appending at
    /// `len`; `durable` is what its checkpoint says.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        dir: PathBuf,
        id: u64,
        mode: PersistMode,
        seq: u64,
        len: u64,
        durable: u64,
        older_segments: u64,
        snapshot_bytes: u64,
    ) -> io::Result<PartitionLog> {
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(&dir, seq))?;
        Ok(PartitionLog {
            dir,
            id,
            mode,
            seq,
            file,
            len,
            durable,
            checkpointed: durable,
            next_slot: 0,
            older_segments,
            snapshot_bytes,
            journal: Journal::default(),
            unsynced: false,
            dirty_tail: false,
            compaction: None,
            compaction_started: Instant::now(),
            compact_not_before: None,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn mode(&self) -> PersistMode {
        self.mode
    }

    /// Switches between ASYNC and SYNC (ALTER PARTITION): later commits follow the new mode;
    /// to SYNC, what ASYNC left unsynced is fsync'd first, so every acknowledged write is
    /// durable once this returns.
    pub fn set_mode(&mut self, mode: PersistMode) -> io::Result<()> {
        if mode == PersistMode::Sync {
            self.sync()?;
        }
        self.mode = mode;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes this partition holds on disk (segments and snapshot).
    pub fn disk_bytes(&self) -> u64 {
        self.len + self.older_segments + self.snapshot_bytes
    }

    /// Writes the pass's records; for SYNC also fdatasyncs. On error the segment is back at
    /// its previous length and the journal is untouched (the caller rolls it back).
    pub fn commit(&mut self) -> io::Result<Committed> {
        if self.journal.is_empty() {
            return Ok(Committed::default());
        }
        let result = self.append_and_sync();
        if result.is_err() {
            self.truncate_to_committed();
        }
        result
    }

    fn append_and_sync(&mut self) -> io::Result<Committed> {
        if self.dirty_tail {
            self.truncate_durably()?;
            self.dirty_tail = false;
        }
        let fsynced = self.mode == PersistMode::Sync;
        if fsynced {
            // Rides on this commit's fsync (see the module docs).
            self.write_checkpoint(false).map_err(|e| {
                io::Error::new(e.kind(), format!("log checkpoint write failed: {e}"))
            })?;
        }
        let records = self.journal.pending();
        fault::check(Fault::Write)
            .and_then(|()| self.file.write_all_at(records, self.len))
            .map_err(|e| io::Error::new(e.kind(), format!("log write failed: {e}")))?;
        let bytes = records.len() as u64;
        let mut fsync_took = Duration::ZERO;
        if fsynced {
            let started = Instant::now();
            fault::check(Fault::Fsync)
                .and_then(|()| self.file.sync_data())
                .map_err(|e| io::Error::new(e.kind(), format!("log fsync failed: {e}")))?;
            fsync_took = started.elapsed();
            self.durable = self.len + bytes;
        } else {
            self.unsynced = true;
        }
        self.len += bytes;
        self.journal.clear();
        Ok(Committed {
            bytes,
            fsynced,
            fsync_took,
        })
    }

    /// Writes the durable length into the next checkpoint slot (in the page cache: the
    /// caller's next fsync makes it durable). Skipped when the slot would say nothing new,
    /// unless `sealed`.
    fn write_checkpoint(&mut self, sealed: bool) -> io::Result<()> {
        if !sealed && self.durable <= self.checkpointed {
            return Ok(());
        }
        let slot = Checkpoint {
            durable: self.durable,
            sealed,
        }
        .encode(self.seq);
        self.file
            .write_all_at(&slot, CHECKPOINT_SLOTS[self.next_slot] as u64)?;
        self.next_slot ^= 1;
        self.checkpointed = self.durable;
        Ok(())
    }

    /// Cuts the segment back to its committed length and fsyncs that.
    fn truncate_durably(&mut self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        fault::check(Fault::Fsync)?;
        self.file.sync_data()
    }

    /// Cuts a failed commit's records off the segment, durably (see the module docs).
    fn truncate_to_committed(&mut self) {
        if let Err(e) = self.truncate_durably() {
            log::error!(
                "{}: cannot truncate durably after a failed commit: {e}; will retry before \
                 the next write",
                segment_path(&self.dir, self.seq).display()
            );
            self.dirty_tail = true;
        }
    }

    /// ASYNC: committed data is waiting for an fsync.
    pub fn needs_sync(&self) -> bool {
        self.unsynced
    }

    /// fsyncs the active segment if it has unsynced data. True if it did.
    pub fn sync(&mut self) -> io::Result<bool> {
        self.sync_timed().map(|took| took.is_some())
    }

    /// [`Self::sync`], saying how long the `fdatasync` took (`None`: nothing to sync).
    pub fn sync_timed(&mut self) -> io::Result<Option<Duration>> {
        if !self.unsynced {
            return Ok(None);
        }
        // No injected fault here: the timer runs at times a test cannot predict, and a fault
        // armed for a commit must be consumed by that commit.
        self.write_checkpoint(false)?;
        let started = Instant::now();
        self.file.sync_data()?;
        let took = started.elapsed();
        self.unsynced = false;
        self.durable = self.len;
        Ok(Some(took))
    }

    /// Shutdown: fsyncs, then records the whole segment as durable (one more fsync), so that
    /// after a clean stop no byte of it can pass for a torn write.
    pub fn sync_and_checkpoint(&mut self) -> io::Result<()> {
        self.sync()?;
        if self.durable > self.checkpointed {
            self.write_checkpoint(false)?;
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Marks the active segment as closed at its full length, after the next one was created:
    /// best effort, since the data is already durable; without the mark, recovery cannot tell
    /// that the next segment went missing.
    fn seal(&mut self) {
        let result = self
            .write_checkpoint(true)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            log::warn!(
                "{}: cannot mark the segment closed: {e}; should segment {} go missing, \
                 recovery will not notice",
                segment_path(&self.dir, self.seq).display(),
                self.seq + 1
            );
        }
    }

    /// Time to compact: the segments outgrew both the floor and the last snapshot.
    pub fn wants_compaction(&self, now: Instant) -> bool {
        self.compaction.is_none()
            && self.journal.is_empty()
            && self.len + self.older_segments >= COMPACT_MIN_BYTES.max(self.snapshot_bytes)
            && self.compact_not_before.is_none_or(|t| now >= t)
    }

    pub fn compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// Starts compaction: fsyncs and closes the active segment, starts segment `seq + 1`
    /// (every later write goes there), and begins the snapshot scan. Only between passes
    /// (the journal must be empty).
    pub fn start_compaction(&mut self, partition: &mut Partition) -> io::Result<()> {
        debug_assert!(self.journal.is_empty());
        let result = (|| {
            if self.dirty_tail {
                self.truncate_durably()?;
                self.dirty_tail = false;
            }
            self.sync()?;
            let seq = self.seq + 1;
            let file = create_segment(&self.dir, self.id, seq)?;
            // Everything in it is durable now (SYNC commits and the sync above).
            self.durable = self.len;
            self.seal();
            self.older_segments += self.len;
            self.seq = seq;
            self.file = file;
            self.len = SEGMENT_HEADER as u64;
            self.durable = self.len;
            self.checkpointed = self.len;
            self.next_slot = 0;
            self.compaction = Some(Compaction::start(&self.dir, self.id, seq, partition)?);
            self.compaction_started = Instant::now();
            Ok(())
        })();
        if let Err(e) = &result {
            self.compaction_failed(partition, e);
        }
        result
    }

    /// Writes the next slice of the snapshot; when it is complete, makes it durable and
    /// deletes what it replaces. Returns how long it took when the compaction finished.
    pub fn compaction_step(
        &mut self,
        partition: &mut Partition,
        budget: usize,
    ) -> io::Result<Option<Duration>> {
        let Some(compaction) = &mut self.compaction else {
            return Ok(None);
        };
        let result = compaction.step(partition, budget);
        match result {
            Ok(None) => Ok(None),
            Ok(Some(snapshot_bytes)) => {
                let seq = self.seq;
                self.compaction = None;
                self.snapshot_bytes = snapshot_bytes;
                self.older_segments = 0;
                partition.end_scan();
                self.delete_older_than(seq);
                Ok(Some(self.compaction_started.elapsed()))
            }
            Err(e) => {
                self.compaction_failed(partition, &e);
                Err(e)
            }
        }
    }

    fn compaction_failed(&mut self, partition: &mut Partition, e: &io::Error) {
        log::error!(
            "partition {} compaction failed (retrying in {}s): {e}",
            self.dir.display(),
            COMPACT_RETRY.as_secs()
        );
        if let Some(c) = self.compaction.take() {
            c.abandon();
        }
        partition.end_scan();
        self.compact_not_before = Some(Instant::now() + COMPACT_RETRY);
    }

    /// Removes segments and snapshots older than snapshot `seq` (best effort: recovery
    /// deletes leftovers too).
    fn delete_older_than(&self, seq: u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((_, n)) = super::recovery::parse_file_name(name) {
                if n < seq {
                    if let Err(e) = std::fs::remove_file(entry.path()) {
                        log::warn!("cannot remove {}: {e}", entry.path().display());
                    }
                }
            }
        }
    }

    /// The partition is dropped: stop everything and remove its files.
    pub fn destroy(self) {
        if let Some(c) = self.compaction {
            c.abandon();
        }
        drop(self.file);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::error!("cannot remove {}: {e}", self.dir.display());
        } else if let Some(parent) = self.dir.parent() {
            let _ = sync_dir(parent);
        }
    }
}

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

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store::{Partition, PersistMode};

use super::fault::{self, Fault};
use super::journal::Journal;
use super::record::{FileHeader, FileKind, FILE_HEADER};
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
}

pub struct PartitionLog {
    dir: PathBuf,
    id: u64,
    mode: PersistMode,
    /// The active segment's number and file (opened for appending).
    seq: u64,
    file: File,
    /// Committed bytes of the active segment (header included).
    len: u64,
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

/// Creates segment `seq` (header written and fsync'd, directory entry fsync'd).
pub fn create_segment(dir: &Path, id: u64, seq: u64) -> io::Result<File> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    let header = FileHeader {
        kind: FileKind::Segment,
        partition: id,
        seq,
        hint: 0,
    };
    fault::check(Fault::Write)?;
    file.write_all(&header.encode())?;
    fault::check(Fault::Fsync)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
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

    /// Opens segment `seq` of a recovered partition for appending at `len`.
    pub fn open(
        dir: PathBuf,
        id: u64,
        mode: PersistMode,
        seq: u64,
        len: u64,
        older_segments: u64,
        snapshot_bytes: u64,
    ) -> io::Result<PartitionLog> {
        let file = OpenOptions::new()
            .append(true)
            .open(segment_path(&dir, seq))?;
        Ok(PartitionLog {
            dir,
            id,
            mode,
            seq,
            file,
            len,
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
        let records = self.journal.pending();
        fault::check(Fault::Write)
            .and_then(|()| self.file.write_all(records))
            .map_err(|e| io::Error::new(e.kind(), format!("log write failed: {e}")))?;
        let bytes = records.len() as u64;
        let fsynced = self.mode == PersistMode::Sync;
        if fsynced {
            fault::check(Fault::Fsync)
                .and_then(|()| self.file.sync_data())
                .map_err(|e| io::Error::new(e.kind(), format!("log fsync failed: {e}")))?;
        } else {
            self.unsynced = true;
        }
        self.len += bytes;
        self.journal.clear();
        Ok(Committed { bytes, fsynced })
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
        if !self.unsynced {
            return Ok(false);
        }
        // No injected fault here: the timer runs at times a test cannot predict, and a fault
        // armed for a commit must be consumed by that commit.
        self.file.sync_data()?;
        self.unsynced = false;
        Ok(true)
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
            self.sync()?;
            let seq = self.seq + 1;
            let file = create_segment(&self.dir, self.id, seq)?;
            self.older_segments += self.len;
            self.seq = seq;
            self.file = file;
            self.len = FILE_HEADER as u64;
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

//! Compaction: a fuzzy snapshot written a slice per event-loop pass.
//!
//! When a partition's segments outgrow its last snapshot, the log starts segment `n` and a
//! snapshot `snap-n` begins: the shard walks the partition with its scan cursor
//! ([`Partition::scan_step`]), a bounded number of entries per pass, appending a `SET` record
//! per entry to `snap-n.tmp`. Writes keep going to segment `n` meanwhile, so the snapshot may
//! hold some keys as they were before a write and some after: *fuzzy*. That is correct
//! because records are idempotent: recovery loads `snap-n` and replays segment `n` from its
//! start, and every write after the scan began is in segment `n`. When the scan is complete
//! the snapshot gets an `END` record (its record count), is fsync'd, renamed to `snap-n.snap`
//! and its directory fsync'd; only then are older segments and snapshots deleted. A crash at
//! any point leaves either the old snapshot and segments (the `.tmp` is deleted at startup) or
//! the new ones.
//!
//! A shard never stops for a whole partition: each step costs at most `budget` entries of
//! encoding and one buffered `write`, and the kernel is asked to start writing the slice back
//! right away (`sync_file_range`), so the final fsync has little left to do.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::store::{Partition, ValueRef};

use super::record::{self, FileHeader, FileKind, Record, FILE_HEADER};
use super::{snapshot_path, snapshot_tmp_path, sync_dir};

pub struct Compaction {
    dir: PathBuf,
    seq: u64,
    tmp: PathBuf,
    file: File,
    buf: Vec<u8>,
    written: u64,
    count: u64,
}

impl Compaction {
    /// Opens `snap-<seq>.tmp` and starts the partition's scan.
    pub fn start(dir: &Path, id: u64, seq: u64, partition: &mut Partition) -> io::Result<Self> {
        let tmp = snapshot_tmp_path(dir, seq);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)?;
        let header = FileHeader {
            kind: FileKind::Snapshot,
            partition: id,
            seq,
            hint: u32::try_from(partition.len()).unwrap_or(u32::MAX),
        };
        file.write_all(&header.encode())?;
        partition.begin_scan();
        Ok(Compaction {
            dir: dir.to_path_buf(),
            seq,
            tmp,
            file,
            buf: Vec::new(),
            written: FILE_HEADER as u64,
            count: 0,
        })
    }

    /// Writes up to `budget` entries. `Ok(Some(bytes))` when the snapshot is complete and
    /// durable under its final name.
    pub fn step(&mut self, partition: &mut Partition, budget: usize) -> io::Result<Option<u64>> {
        self.buf.clear();
        let buf = &mut self.buf;
        let mut count = 0u64;
        let done = partition.scan_step(budget, |key, value| {
            count += 1;
            let record = match value {
                ValueRef::Int(value) => Record::SetInt { key, value },
                ValueRef::Str(value) => Record::SetStr { key, value },
            };
            record::encode(&record, buf);
        });
        self.count += count;
        if done {
            record::encode(&Record::End { count: self.count }, buf);
        }
        self.file.write_all(&self.buf)?;
        let start = self.written;
        self.written += self.buf.len() as u64;
        start_writeback(&self.file, start, self.buf.len() as u64);
        if !done {
            return Ok(None);
        }
        self.file.sync_data()?;
        std::fs::rename(&self.tmp, snapshot_path(&self.dir, self.seq))?;
        sync_dir(&self.dir)?;
        Ok(Some(self.written))
    }

    /// Gives up: removes the temporary file.
    pub fn abandon(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` back to disk without waiting, so
/// that the snapshot's final fsync finds little dirty data (one long stall avoided).
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open
        // for the lifetime of `file`. Failure is harmless (fsync later does the work).
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

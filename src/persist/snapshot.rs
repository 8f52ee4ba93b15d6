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
//! A shard never stops for a whole partition: each step encodes about [`STEP_BYTES`] of
//! records into one buffer and one `write` (budgeted in bytes, not entries: 4096 entries of
//! 1 MiB values would be a 4 GiB buffer), and the kernel is asked to start writing the slice
//! back right away (`sync_file_range`), so the final fsync has little left to do. One entry
//! larger than the budget still goes whole into its step (a record is never split): a step
//! is at most one budget plus one value, and values are bounded by `max-bulk-len`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::store::Partition;

use super::record::{self, FileHeader, Record, FILE_HEADER};
use super::{snapshot_path, snapshot_tmp_path, sync_dir};

/// Bytes of snapshot records one compaction step writes (per event-loop pass). Copying and
/// checksumming 1 MiB (CRC32C runs at several GB/s) and one `write` of it into the page
/// cache take a fraction of a millisecond: small next to a pass's own work, while 1 GiB of
/// data still compacts in about a thousand passes.
pub const STEP_BYTES: usize = 1 << 20;

/// What visiting one entry costs besides its record's bytes, in the same units: the walk to
/// its slot, the call and the record header. At 256, entries of a few dozen bytes go about
/// 4096 to a step, as many as before the budget counted bytes.
pub const ENTRY_COST: usize = 256;

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
        let header =
            FileHeader::snapshot(id, seq, u32::try_from(partition.len()).unwrap_or(u32::MAX));
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

    /// Writes about `budget` bytes of records (at least one entry; see the module docs).
    /// `Ok(Some(bytes))` when the snapshot is complete and durable under its final name.
    pub fn step(&mut self, partition: &mut Partition, budget: usize) -> io::Result<Option<u64>> {
        self.buf.clear();
        let buf = &mut self.buf;
        let mut count = 0u64;
        let done = partition.scan_step(budget, |key, entry| {
            count += 1;
            let record = Record::set(key, entry.value, entry.deadline);
            let before = buf.len();
            record::encode(&record, buf);
            buf.len() - before + ENTRY_COST
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Schema;
    use std::sync::Arc;

    /// One step over large entries stops at the shard's step budget, in bytes: 64 values of
    /// 256 KiB must not all go into one buffer and one `write` (4096 entries of 1 MiB values
    /// were a 4 GiB buffer and a stall of seconds).
    #[test]
    fn a_step_over_large_entries_stops_at_the_byte_budget() {
        let dir = std::env::temp_dir().join(format!("gokv-step-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = Partition::new(Schema::String, Arc::default());
        let value = vec![b'v'; 256 << 10];
        for i in 0..64 {
            p.set_str(
                format!("k{i}").as_bytes(),
                &value,
                crate::store::Expiry::Clear,
            );
        }
        let mut c = Compaction::start(&dir, 1, 2, &mut p).unwrap();
        let budget = STEP_BYTES;
        assert_eq!(
            c.step(&mut p, budget).unwrap(),
            None,
            "one step wrote it all"
        );
        let step_bytes = c.written - FILE_HEADER as u64;
        assert!(
            step_bytes <= 2 << 20,
            "one step wrote {step_bytes} bytes ({} entries)",
            c.count
        );
        let mut steps = 1;
        while c.step(&mut p, budget).unwrap().is_none() {
            steps += 1;
        }
        assert!(steps >= 8, "{steps} steps");
        c.abandon();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

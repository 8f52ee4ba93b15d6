//! Persistence: the catalog file, per-partition logs, snapshots (compaction) and recovery.
//!
//! # What is on disk
//! ```text
//! <data-dir>/catalog                      every partition: name, id, shard, schema, persist
//! <data-dir>/partitions/<id>/seg-<n>.log  log segment n of a durable (ASYNC/SYNC) partition
//! <data-dir>/partitions/<id>/snap-<n>.snap  snapshot: the keys when segment n began (fuzzy)
//! ```
//!
//! # One log per partition (not per shard)
//! A durable partition has its own log segments and snapshots, in a directory named by its id.
//! That makes `DROP PARTITION` one `remove_dir_all`, lets compaction rewrite one partition
//! without touching the others, and lets recovery load partitions independently. The price is
//! one `write` and (SYNC) one `fdatasync` per partition with writes in an event-loop pass
//! instead of one per shard; a shard usually serves few durable partitions at once, and the
//! group commit (below) already shares each fsync between every write of a pass.
//!
//! # Who does what
//! - The **coordinator** (shard 0) writes [`catalog_file`] (temp file, fsync, rename, fsync
//!   directory) before it broadcasts a change, creating a new partition's first segment
//!   first. So the catalog on disk never names a partition without files, and a DROP is
//!   durable before anyone hears `+OK`.
//! - The **owning shard** appends to its partitions' logs. Writes during a pass go to a
//!   [`Journal`] (the encoded records, plus what to undo); at the end of the pass the shard
//!   commits each journal with one `write` (and one `fdatasync` for SYNC) and only then
//!   releases the replies ([`log::PartitionLog::commit`], `shard::durability`).
//! - **Compaction** ([`snapshot`]) starts a new segment and writes a fuzzy snapshot a slice per
//!   pass; when the snapshot is durable, older segments and snapshots are deleted.
//! - **Recovery** ([`recovery`]) runs in every shard thread, in parallel, before the listener
//!   opens.
//!
//! Nothing here locks; every file belongs to one thread.

pub mod catalog_file;
pub mod fault;
pub mod journal;
pub mod log;
pub mod record;
pub mod recovery;
pub mod snapshot;

pub use journal::Journal;
pub use log::PartitionLog;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// A persistence failure that stops startup or a catalog change. Its text names the file.
#[derive(Debug)]
pub struct PersistError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Io {
        path: PathBuf,
        err: io::Error,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    /// Starting would drop data that was acknowledged (or may have been): only with
    /// `--accept-data-loss`.
    DataLoss {
        path: PathBuf,
        offset: Option<u64>,
        why: String,
    },
}

impl PersistError {
    pub fn io(path: &Path, err: io::Error) -> Self {
        PersistError {
            kind: ErrorKind::Io {
                path: path.to_path_buf(),
                err,
            },
        }
    }

    pub fn corrupt(path: &Path, offset: u64, why: impl Into<String>) -> Self {
        PersistError {
            kind: ErrorKind::Corrupt {
                path: path.to_path_buf(),
                offset,
                why: why.into(),
            },
        }
    }

    /// Files or bytes that durable writes were in are missing or damaged; `offset` where
    /// in the file, if it is one file's bytes.
    pub fn data_loss(path: &Path, offset: Option<u64>, why: impl Into<String>) -> Self {
        PersistError {
            kind: ErrorKind::DataLoss {
                path: path.to_path_buf(),
                offset,
                why: why.into(),
            },
        }
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Io { path, err } => write!(f, "{}: {err}", path.display()),
            ErrorKind::Corrupt { path, offset, why } => write!(
                f,
                "{} is corrupt at offset {offset}: {why}; refusing to start",
                path.display()
            ),
            ErrorKind::DataLoss { path, offset, why } => {
                write!(f, "{}", path.display())?;
                if let Some(offset) = offset {
                    write!(f, " at offset {offset}")?;
                }
                write!(
                    f,
                    ": {why}; refusing to start rather than lose acknowledged writes (start \
                     with --accept-data-loss to drop what is missing and go on)"
                )
            }
        }
    }
}

impl std::error::Error for PersistError {}

/// Directory of all partitions' files.
pub fn partitions_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("partitions")
}

/// Directory of one partition's files.
pub fn partition_dir(data_dir: &Path, id: u64) -> PathBuf {
    partitions_dir(data_dir).join(id.to_string())
}

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:016}.log"))
}

pub fn snapshot_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snap-{seq:016}.snap"))
}

pub fn snapshot_tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snap-{seq:016}.tmp"))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

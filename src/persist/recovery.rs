//! Recovery: rebuilds a durable partition from its newest complete snapshot and the log
//! segments from that snapshot's number on.
//!
//! # Policy (explicit, as in fjall and raft-engine)
//! - A snapshot is complete or it is not used: `.tmp` files are deleted; a `.snap` file was
//!   fsync'd before its rename, so any damage in it is corruption and stops startup.
//! - Segments before the last were fsync'd before the next one began, so any damage in them
//!   stops startup too.
//! - In the last segment, a damaged record (cut short, bad checksum, bad length) is a **torn
//!   tail** if no valid record follows it anywhere in the file: the tail is truncated, the
//!   file fsync'd, and the loss logged with its offset and size. If a valid record does
//!   follow, the damage is in the middle (a flipped bit, not a crash): startup stops with an
//!   error naming the file and the offset, rather than silently dropping acknowledged writes.
//!   (A torn write can only ever be the tail: after a failed commit the log truncates before it
//!   appends again.)
//!
//! Reading is sequential through one large buffer; records are decoded in place and only the
//! key and value are copied, into the table.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::catalog::PartitionMeta;
use crate::store::{Partition, Schema};

use super::log::{create_segment, PartitionLog};
use super::record::{self, Decoded, FileHeader, FileKind, Record, FILE_HEADER};
use super::{partition_dir, segment_path, snapshot_path, sync_dir, PersistError};

/// Read buffer: large enough that reading costs few syscalls, small enough to be nothing next
/// to the data it loads. Grows only for a record larger than itself.
const READ_CHUNK: usize = 4 << 20;

/// A file in a partition's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirEntry {
    Segment,
    Snapshot,
    /// An unfinished snapshot.
    Temp,
}

/// `seg-<n>.log`, `snap-<n>.snap`, `snap-<n>.tmp` -> kind and `n`.
pub fn parse_file_name(name: &str) -> Option<(DirEntry, u64)> {
    let (kind, rest) = if let Some(rest) = name.strip_prefix("seg-") {
        (DirEntry::Segment, rest.strip_suffix(".log")?)
    } else {
        let rest = name.strip_prefix("snap-")?;
        if let Some(n) = rest.strip_suffix(".snap") {
            (DirEntry::Snapshot, n)
        } else {
            (DirEntry::Temp, rest.strip_suffix(".tmp")?)
        }
    };
    Some((kind, rest.parse().ok()?))
}

/// How reading a file ended.
enum ReadEnd {
    /// Every byte was a valid record; the file is `len` bytes.
    Clean { len: u64 },
    /// The record at `offset` is damaged (or the file ends inside it).
    Damaged { offset: u64, why: &'static str },
}

/// What recovering one partition found, for the startup log and INFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    pub keys: u64,
    pub records: u64,
    pub bytes: u64,
    pub truncated: u64,
}

/// Loads a durable partition and opens its log for appending.
pub fn recover_partition(
    data_dir: &Path,
    meta: &PartitionMeta,
    partition: &mut Partition,
) -> Result<(PartitionLog, Loaded), PersistError> {
    let dir = partition_dir(data_dir, meta.id);
    let mut loaded = Loaded::default();
    if !dir.exists() {
        log::warn!(
            "partition '{}' (id {}) has no files in {}: starting it empty",
            meta.name,
            meta.id,
            dir.display()
        );
        PartitionLog::create_files(data_dir, meta.id).map_err(|e| PersistError::io(&dir, e))?;
    }
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| PersistError::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PersistError::io(&dir, e))?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_file_name) {
            Some((DirEntry::Segment, n)) => segments.push(n),
            Some((DirEntry::Snapshot, n)) => snapshots.push(n),
            Some((DirEntry::Temp, _)) => remove(&entry.path()),
            None => log::warn!("ignoring unknown file {}", entry.path().display()),
        }
    }
    segments.sort_unstable();
    snapshots.sort_unstable();

    // The newest snapshot, and everything older than it is garbage.
    let base = snapshots.last().copied();
    let mut snapshot_bytes = 0;
    if let Some(n) = base {
        let path = snapshot_path(&dir, n);
        snapshot_bytes = load_snapshot(&path, meta, n, partition, &mut loaded)?;
        for &old in snapshots.iter().filter(|&&s| s < n) {
            remove(&snapshot_path(&dir, old));
        }
        for &old in segments.iter().filter(|&&s| s < n) {
            remove(&segment_path(&dir, old));
        }
        segments.retain(|&s| s >= n);
    }
    let first = base.unwrap_or_else(|| segments.first().copied().unwrap_or(1));
    for (i, &seq) in segments.iter().enumerate() {
        let expected = first + i as u64;
        if seq != expected {
            return Err(PersistError::corrupt(
                &segment_path(&dir, expected),
                0,
                format!("segment {expected} is missing (found {seq})"),
            ));
        }
    }
    if segments.is_empty() {
        create_segment(&dir, meta.id, first).map_err(|e| PersistError::io(&dir, e))?;
        segments.push(first);
    }

    let mut older = 0;
    let last = segments.len() - 1;
    let mut active_len = 0;
    for (i, &seq) in segments.iter().enumerate() {
        let path = segment_path(&dir, seq);
        let len = load_segment(&path, meta, seq, i == last, partition, &mut loaded)?;
        if i == last {
            active_len = len;
        } else {
            older += len;
        }
    }
    loaded.keys = partition.len() as u64;
    loaded.bytes = older + active_len + snapshot_bytes;
    let log = PartitionLog::open(
        dir.clone(),
        meta.id,
        meta.persist,
        segments[last],
        active_len,
        older,
        snapshot_bytes,
    )
    .map_err(|e| PersistError::io(&dir, e))?;
    Ok((log, loaded))
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => log::info!("removed leftover {}", path.display()),
        Err(e) => log::warn!("cannot remove leftover {}: {e}", path.display()),
    }
}

/// Applies one record to the table, or says why it does not belong there.
fn apply(partition: &mut Partition, record: Record) -> Result<(), &'static str> {
    match (record, partition.schema()) {
        (Record::SetStr { key, value }, Schema::String) => partition.set_str(key, value),
        (Record::SetInt { key, value }, Schema::Int) => partition.set_int(key, value),
        (Record::Del { key }, _) => {
            partition.remove(key);
        }
        (Record::SetStr { .. }, Schema::Int) => return Err("STRING record in an INT partition"),
        (Record::SetInt { .. }, Schema::String) => return Err("INT record in a STRING partition"),
        (Record::End { .. }, _) => return Err("END record outside a snapshot's end"),
    }
    Ok(())
}

fn load_snapshot(
    path: &Path,
    meta: &PartitionMeta,
    seq: u64,
    partition: &mut Partition,
    loaded: &mut Loaded,
) -> Result<u64, PersistError> {
    let mut end: Option<(u64, u64)> = None; // (count in END, records before it)
    let mut records = 0u64;
    let header = |h: &FileHeader, p: &mut Partition| p.reserve(h.hint as usize);
    let outcome = read_file(
        path,
        FileKind::Snapshot,
        meta.id,
        seq,
        header,
        partition,
        |p, r| {
            if end.is_some() {
                return Err("record after the snapshot's END record");
            }
            match r {
                Record::End { count } => end = Some((count, records)),
                Record::Del { .. } => return Err("DEL record in a snapshot"),
                r => {
                    records += 1;
                    apply(p, r)?;
                }
            }
            Ok(())
        },
    )?;
    loaded.records += records;
    match outcome {
        ReadEnd::Damaged { offset, why } => Err(PersistError::corrupt(path, offset, why)),
        ReadEnd::Clean { len } => match end {
            Some((count, seen)) if count == seen => Ok(len),
            Some((count, seen)) => Err(PersistError::corrupt(
                path,
                len,
                format!("END record says {count} records, found {seen}"),
            )),
            None => Err(PersistError::corrupt(
                path,
                len,
                "snapshot has no END record",
            )),
        },
    }
}

/// Replays a segment; returns its length after any torn-tail truncation.
fn load_segment(
    path: &Path,
    meta: &PartitionMeta,
    seq: u64,
    last: bool,
    partition: &mut Partition,
    loaded: &mut Loaded,
) -> Result<u64, PersistError> {
    let mut records = 0u64;
    let outcome = read_file(
        path,
        FileKind::Segment,
        meta.id,
        seq,
        |_, _| {},
        partition,
        |p, r| {
            records += 1;
            apply(p, r)
        },
    );
    loaded.records += records;
    let (offset, why) = match outcome {
        Ok(ReadEnd::Clean { len }) => return Ok(len),
        Ok(ReadEnd::Damaged { offset, why }) => (offset, why),
        Err(e) => {
            // A damaged or short header on the last segment: it was being created when the
            // process died (nothing can have been acknowledged in it). Start it again.
            if last && header_is_torn(path) {
                log::warn!("{}: torn segment header; recreating it", path.display());
                std::fs::remove_file(path).map_err(|e| PersistError::io(path, e))?;
                let dir = path.parent().unwrap_or(Path::new("."));
                create_segment(dir, meta.id, seq).map_err(|e| PersistError::io(path, e))?;
                return Ok(FILE_HEADER as u64);
            }
            return Err(e);
        }
    };
    if !last {
        return Err(PersistError::corrupt(path, offset, why));
    }
    let file_len = std::fs::metadata(path)
        .map_err(|e| PersistError::io(path, e))?
        .len();
    if let Some(valid_at) =
        valid_record_after(path, offset).map_err(|e| PersistError::io(path, e))?
    {
        return Err(PersistError::corrupt(
            path,
            offset,
            format!("{why}, and a valid record follows at offset {valid_at}"),
        ));
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| PersistError::io(path, e))?;
    file.set_len(offset)
        .and_then(|()| file.sync_all())
        .map_err(|e| PersistError::io(path, e))?;
    loaded.truncated += file_len - offset;
    log::warn!(
        "{}: torn tail ({why}) at offset {offset}: truncated {} bytes and synced",
        path.display(),
        file_len - offset
    );
    Ok(offset)
}

fn header_is_torn(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // Only a header that never got its bytes down: short, or all zeros / garbage with nothing
    // after it that could be a record.
    bytes.len() <= FILE_HEADER && FileHeader::decode(&bytes).is_none()
}

/// The offset of the first valid record that starts after `offset`, if any.
fn valid_record_after(path: &Path, offset: u64) -> io::Result<Option<u64>> {
    let mut file = File::open(path)?;
    let mut rest = Vec::new();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset + 1))?;
    file.read_to_end(&mut rest)?;
    for at in 0..rest.len() {
        if let Decoded::Record(..) = record::decode(&rest[at..]) {
            return Ok(Some(offset + 1 + at as u64));
        }
    }
    Ok(None)
}

/// Reads a file's header and records, calling `on_record` for each valid one, until the end
/// or the first damaged record.
fn read_file(
    path: &Path,
    kind: FileKind,
    id: u64,
    seq: u64,
    on_header: impl FnOnce(&FileHeader, &mut Partition),
    partition: &mut Partition,
    mut on_record: impl FnMut(&mut Partition, Record) -> Result<(), &'static str>,
) -> Result<ReadEnd, PersistError> {
    let io_err = |e| PersistError::io(path, e);
    let mut file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut buf = vec![0u8; READ_CHUNK.min(file_len as usize).max(FILE_HEADER)];
    let mut end = fill(&mut file, &mut buf, 0).map_err(io_err)?;
    let header = FileHeader::decode(&buf[..end])
        .ok_or_else(|| PersistError::corrupt(path, 0, "missing or damaged file header"))?;
    if header.kind != kind || header.partition != id || header.seq != seq {
        return Err(PersistError::corrupt(
            path,
            0,
            format!(
                "header says {:?} {} of partition {}, expected {kind:?} {seq} of partition {id}",
                header.kind, header.seq, header.partition
            ),
        ));
    }
    on_header(&header, partition);
    let mut start = FILE_HEADER;
    // File offset of buf[0].
    let mut base = 0u64;
    loop {
        match record::decode(&buf[start..end]) {
            Decoded::Record(r, n) => {
                if let Err(why) = on_record(partition, r) {
                    return Err(PersistError::corrupt(path, base + start as u64, why));
                }
                start += n;
            }
            Decoded::Damaged(why) => {
                return Ok(ReadEnd::Damaged {
                    offset: base + start as u64,
                    why,
                })
            }
            Decoded::Incomplete { need } => {
                let at = base + start as u64;
                let read_to = base + end as u64;
                if read_to >= file_len {
                    return Ok(if start == end {
                        ReadEnd::Clean { len: at }
                    } else {
                        ReadEnd::Damaged {
                            offset: at,
                            why: "record cut short by the end of the file",
                        }
                    });
                }
                if at + need as u64 > file_len {
                    return Ok(ReadEnd::Damaged {
                        offset: at,
                        why: "record length runs past the end of the file",
                    });
                }
                buf.copy_within(start..end, 0);
                base = at;
                end -= start;
                start = 0;
                if need > buf.len() {
                    buf.resize(need, 0);
                }
                let more = fill(&mut file, &mut buf, end).map_err(io_err)?;
                if more == end {
                    // The file shrank under us: treat as its end.
                    return Ok(ReadEnd::Damaged {
                        offset: at,
                        why: "record cut short by the end of the file",
                    });
                }
                end = more;
            }
        }
    }
}

/// Reads into `buf[from..]` until it is full or the file ends; returns the new end.
fn fill(file: &mut File, buf: &mut [u8], mut from: usize) -> io::Result<usize> {
    while from < buf.len() {
        match file.read(&mut buf[from..]) {
            Ok(0) => break,
            Ok(n) => from += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(from)
}

/// Removes partition directories the catalog does not name as durable: files of a DROP that
/// crashed before its shard deleted them, or of a CREATE that crashed before its catalog.
pub fn remove_orphans(data_dir: &Path, durable_ids: &[u64]) {
    let dir = super::partitions_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let keep = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|id| durable_ids.contains(&id));
        if !keep {
            let path: PathBuf = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => log::info!("removed files of a dropped partition: {}", path.display()),
                Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
            }
        }
    }
    let _ = sync_dir(&dir);
}

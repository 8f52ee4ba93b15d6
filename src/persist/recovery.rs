//! Recovery: rebuilds a durable partition from its newest complete snapshot and the log
//! segments from that snapshot's number on.
//!
//! # Policy (explicit, as in fjall and raft-engine)
//! - A snapshot is complete or it is not used: `.tmp` files are deleted; a `.snap` file was
//!   fsync'd before its rename, so any damage in it is corruption and stops startup.
//! - **Nothing may be missing.** The segments run without a gap from the snapshot's number
//!   (or from 1 when there is no snapshot: the first segment is created with the partition,
//!   and segments are only deleted once a snapshot covers them). A segment whose checkpoint
//!   says *sealed* was closed after the next one existed, so as the last one it means the
//!   next is missing. A partition directory that is gone, or holds no segment, is missing
//!   too.
//! - Segments before the last were fsync'd before the next one began, so any damage in them
//!   stops startup.
//! - **Only bytes past the durable length can be a torn write.** A version-2 segment records
//!   in its header how many of its bytes a completed fsync covered ([`Checkpoint`], see
//!   `persist::log`). A file shorter than that, or a damaged record that starts before it,
//!   lost bytes that were on disk: startup stops with an error naming the file, the offset
//!   and `--accept-data-loss`.
//! - Past the durable length, a damaged record in the last segment is a **torn tail** and
//!   is truncated (file fsync'd, loss logged with offset and size) unless its framing says
//!   otherwise: when its length field is whole and the record it delimits lies inside the
//!   file, the bytes right after it are decoded, and a valid record there means damage inside
//!   the log, not a torn write (startup stops). Payload bytes are never searched for
//!   something that looks like a record: a value may hold one. (A torn write can only ever
//!   be the tail: after a failed commit the log truncates before it appends again.)
//!
//! # What this cannot tell apart
//! The durable length lags one fsync behind (it is written with the fsync that follows the
//! one it describes). For SYNC that is the last commit or two (one pass's writes each), for
//! ASYNC the writes since the fsync before last (about a second). Damage confined to that
//! window looks like a torn write and is truncated with a WARN, which is right for a crash
//! (an ASYNC tail written but never fsync'd is legitimately lost on power failure; a SYNC
//! commit in flight was never acknowledged), and wrong only if an acknowledged SYNC commit
//! in that window is damaged afterwards. A file cut to less than its header loses its
//! checkpoint too and is taken for a segment whose creation was torn. Version-1 segments
//! (the first release) have no checkpoint: all of their records count as torn-able, as
//! before; at startup the last one is closed and a version-2 segment started after it.
//!
//! # `--accept-data-loss`
//! With the flag, each of the refusals above becomes a WARN: what is left is loaded
//! (segments that exist, a damaged last segment truncated at the damage), then written as a
//! fresh snapshot with a new segment and the old files deleted, so that the next start finds
//! a consistent directory. Damage inside a snapshot or an older segment still stops startup.
//!
//! Reading is sequential through one large buffer; records are decoded in place and only the
//! key and value are copied, into the table.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use crate::catalog::PartitionMeta;
use crate::store::{Partition, Schema, ValueRef};

use super::log::{create_segment, PartitionLog};
use super::record::{
    self, Checkpoint, Decoded, FileHeader, FileKind, Record, FILE_HEADER, MIN_RECORD,
    RECORD_HEADER, SEGMENT_HEADER,
};
use super::snapshot::{Compaction, STEP_BYTES};
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
    /// The record at `offset` is damaged (or the file ends inside it). `frame_end`: where the
    /// next record would start by this one's length field, when that field was read, is not
    /// zero, and the record it delimits lies inside the file.
    Damaged {
        offset: u64,
        why: &'static str,
        frame_end: Option<u64>,
    },
}

/// A file read to its end or its first damage.
struct FileRead {
    header: FileHeader,
    /// The durable length and seal of a version-2 segment; other files: durable through
    /// their header, never sealed.
    checkpoint: Checkpoint,
    end: ReadEnd,
    file_len: u64,
}

/// What recovering one partition found, for the startup log and INFO.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    pub keys: u64,
    pub records: u64,
    pub bytes: u64,
    /// Bytes cut off damaged segment tails (torn writes, and with `--accept-data-loss` any
    /// damage in the last segment).
    pub truncated: u64,
    /// With `--accept-data-loss`: something durable was missing, and the partition was
    /// started with what was left.
    pub lost: bool,
}

/// What loading one segment found.
#[derive(Debug, Clone, Copy)]
struct SegmentEnd {
    /// Its length after any truncation.
    len: u64,
    durable: u64,
    sealed: bool,
    version: u8,
}

/// Loads a durable partition and opens its log for appending. `accept_data_loss`
/// (`--accept-data-loss`) turns the refusals of the module docs into warnings.
pub fn recover_partition(
    data_dir: &Path,
    meta: &PartitionMeta,
    partition: &mut Partition,
    accept_data_loss: bool,
) -> Result<(PartitionLog, Loaded), PersistError> {
    let dir = partition_dir(data_dir, meta.id);
    let mut loaded = Loaded::default();
    if !dir.exists() {
        lose(
            &mut loaded,
            accept_data_loss,
            PersistError::data_loss(
                &dir,
                None,
                format!(
                    "partition '{}' (id {}) has no directory, expected its log segments there",
                    meta.name, meta.id
                ),
            ),
        )?;
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
    // Without a snapshot the log starts at segment 1 (see the module docs).
    let first = base.unwrap_or(1);
    if let Some(missing) = first_missing(first, &segments) {
        let found = match (segments.first(), segments.last()) {
            (Some(a), Some(b)) => format!("found segments {a} to {b}"),
            _ => "found none".into(),
        };
        let from = match base {
            Some(n) => format!("from snapshot {n}'s number"),
            None => "from 1 (there is no snapshot)".into(),
        };
        let why = format!("segment {missing} is missing: the log must run {from}, {found}");
        let path = segment_path(&dir, missing);
        lose(
            &mut loaded,
            accept_data_loss,
            PersistError::data_loss(&path, None, why),
        )?;
    }

    let mut older = 0;
    let mut active: Option<(u64, SegmentEnd)> = None;
    let last = segments.len().wrapping_sub(1);
    for (i, &seq) in segments.iter().enumerate() {
        let path = segment_path(&dir, seq);
        let end = load_segment(
            &path,
            meta,
            seq,
            i == last,
            accept_data_loss,
            partition,
            &mut loaded,
        )?;
        if i == last {
            active = Some((seq, end));
        } else {
            older += end.len;
        }
    }
    if let Some((seq, _)) = active.filter(|(_, end)| end.sealed) {
        let why = format!(
            "segment {} is missing: segment {seq} was closed after it had been created",
            seq + 1
        );
        let path = segment_path(&dir, seq + 1);
        lose(
            &mut loaded,
            accept_data_loss,
            PersistError::data_loss(&path, None, why),
        )?;
    }
    loaded.keys = partition.len() as u64;

    let open = |seq, len, durable, older, snapshot_bytes| {
        PartitionLog::open(
            dir.clone(),
            meta.id,
            meta.persist,
            seq,
            len,
            durable,
            older,
            snapshot_bytes,
        )
        .map_err(|e| PersistError::io(&dir, e))
    };
    let log = match active.filter(|_| !loaded.lost) {
        Some((seq, end)) if end.version >= 2 => {
            open(seq, end.len, end.durable, older, snapshot_bytes)?
        }
        Some((seq, end)) => {
            // A version-1 segment: close it (its bytes may still be in the page cache only)
            // and write on in a version-2 one.
            let path = segment_path(&dir, seq);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| PersistError::io(&path, e))?;
            create_segment(&dir, meta.id, seq + 1).map_err(|e| PersistError::io(&dir, e))?;
            log::info!(
                "{}: a version-1 segment; new writes go to version-2 segment {}",
                path.display(),
                seq + 1
            );
            older += end.len;
            open(
                seq + 1,
                SEGMENT_HEADER as u64,
                SEGMENT_HEADER as u64,
                older,
                snapshot_bytes,
            )?
        }
        // Something was missing and accepted as lost (no segment at all is that too).
        None => {
            let next = segments.last().copied().max(base).unwrap_or(0) + 1;
            let bytes = rebuild(&dir, meta, next, partition)?;
            log::warn!(
                "partition '{}': started with what was left ({} keys), rewritten as snapshot \
                 {next} (--accept-data-loss)",
                meta.name,
                loaded.keys
            );
            open(next, SEGMENT_HEADER as u64, SEGMENT_HEADER as u64, 0, bytes)?
        }
    };
    loaded.bytes = log.disk_bytes();
    Ok((log, loaded))
}

/// The first segment number from `first` on that `segments` (sorted) lacks, up to its last.
fn first_missing(first: u64, segments: &[u64]) -> Option<u64> {
    if segments.is_empty() {
        return Some(first);
    }
    (first..)
        .zip(segments)
        .find(|(expected, &seq)| seq != *expected)
        .map(|(expected, _)| expected)
}

/// A refusal, or with `--accept-data-loss` its warning.
fn lose(loaded: &mut Loaded, accept: bool, error: PersistError) -> Result<(), PersistError> {
    if !accept {
        return Err(error);
    }
    log::warn!("{error}: starting anyway (--accept-data-loss)");
    loaded.lost = true;
    Ok(())
}

/// After an accepted loss: writes what was loaded as snapshot `seq` with a new segment `seq`,
/// and deletes every older file, so that the directory is consistent again.
fn rebuild(
    dir: &Path,
    meta: &PartitionMeta,
    seq: u64,
    partition: &mut Partition,
) -> Result<u64, PersistError> {
    let io = |e| PersistError::io(dir, e);
    create_segment(dir, meta.id, seq).map_err(io)?;
    let mut compaction = Compaction::start(dir, meta.id, seq, partition).map_err(io)?;
    let bytes = loop {
        match compaction.step(partition, STEP_BYTES) {
            Ok(Some(bytes)) => break bytes,
            Ok(None) => {}
            Err(e) => {
                compaction.abandon();
                partition.end_scan();
                return Err(io(e));
            }
        }
    };
    partition.end_scan();
    let entries = std::fs::read_dir(dir).map_err(io)?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some((_, n)) = name.to_str().and_then(parse_file_name) {
            if n < seq {
                remove(&entry.path());
            }
        }
    }
    sync_dir(dir).map_err(io)?;
    Ok(bytes)
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => log::info!("removed leftover {}", path.display()),
        Err(e) => log::warn!("cannot remove leftover {}: {e}", path.display()),
    }
}

/// Applies one record to the table, or says why it does not belong there.
fn apply(partition: &mut Partition, record: Record) -> Result<(), &'static str> {
    // A deadline already past is an expiry that happened while the server was down: the key
    // is removed, never resurrected (and never outlives its deadline because of a restart).
    let now = crate::store::clock::now_ms();
    let past = |deadline: Option<u64>| deadline.is_some_and(|d| now > d);
    match (record, partition.schema()) {
        (Record::SetStr { key, deadline, .. } | Record::SetInt { key, deadline, .. }, _)
            if past(deadline) =>
        {
            partition.remove(key);
        }
        (
            Record::SetStr {
                key,
                value,
                deadline,
            },
            Schema::String,
        ) => partition.put(key, ValueRef::Str(value), deadline),
        (
            Record::SetInt {
                key,
                value,
                deadline,
            },
            Schema::Int,
        ) => partition.put(key, ValueRef::Int(value), deadline),
        (Record::Deadline { key, deadline }, _) if past(deadline) => {
            partition.remove(key);
        }
        (Record::Deadline { key, deadline }, _) => {
            partition.set_deadline(key, deadline);
        }
        (Record::Clear, _) => partition.clear(),
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
    // The hint is read from disk: a file of N bytes holds at most N / MIN_RECORD records, so
    // a damaged or hostile hint cannot size the table past what the file could fill.
    let header = |h: &FileHeader, file_len: u64, p: &mut Partition| {
        let fits = file_len.saturating_sub(FILE_HEADER as u64) / MIN_RECORD as u64;
        p.reserve((h.hint as u64).min(fits) as usize)
    };
    let read = read_file(
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
    match read.end {
        ReadEnd::Damaged { offset, why, .. } => Err(PersistError::corrupt(
            path,
            offset,
            format!("{why} (a snapshot is fsync'd before it gets its name)"),
        )),
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

/// Replays a segment (see the module docs for what counts as torn and what as lost).
fn load_segment(
    path: &Path,
    meta: &PartitionMeta,
    seq: u64,
    last: bool,
    accept: bool,
    partition: &mut Partition,
    loaded: &mut Loaded,
) -> Result<SegmentEnd, PersistError> {
    let mut records = 0u64;
    let read = read_file(
        path,
        FileKind::Segment,
        meta.id,
        seq,
        |_, _, _| {},
        partition,
        |p, r| {
            records += 1;
            apply(p, r)
        },
    );
    loaded.records += records;
    let read = match read {
        Ok(read) => read,
        Err(e) => {
            // A damaged or short header on the last segment: it was being created when the
            // process died (nothing can have been acknowledged in it). Start it again.
            if last && header_is_torn(path) {
                log::warn!("{}: torn segment header; recreating it", path.display());
                std::fs::remove_file(path).map_err(|e| PersistError::io(path, e))?;
                let dir = path.parent().unwrap_or(Path::new("."));
                create_segment(dir, meta.id, seq).map_err(|e| PersistError::io(path, e))?;
                return Ok(SegmentEnd {
                    len: SEGMENT_HEADER as u64,
                    durable: SEGMENT_HEADER as u64,
                    sealed: false,
                    version: record::SEGMENT_VERSION,
                });
            }
            return Err(e);
        }
    };
    let durable = read.checkpoint.durable;
    let ended = |len: u64| SegmentEnd {
        len,
        durable: durable.min(len),
        sealed: read.checkpoint.sealed,
        version: read.header.version,
    };
    let (offset, why, frame_end) = match read.end {
        ReadEnd::Clean { len } if len >= durable => return Ok(ended(len)),
        ReadEnd::Clean { len } => {
            let why = format!(
                "the file ends at {len} bytes, but its header records {durable} bytes as \
                 fsync'd"
            );
            lose(
                loaded,
                accept,
                PersistError::data_loss(path, Some(len), why),
            )?;
            return Ok(ended(len));
        }
        ReadEnd::Damaged {
            offset,
            why,
            frame_end,
        } => (offset, why, frame_end),
    };
    if !last {
        return Err(PersistError::corrupt(
            path,
            offset,
            format!(
                "{why}, in a segment before the last (fsync'd in full before the next one \
                 began)"
            ),
        ));
    }
    let file_len = read.file_len;
    let lost = if offset < durable {
        Some(format!(
            "{why}, inside the first {durable} bytes, which its header records as fsync'd"
        ))
    } else {
        match frame_end.filter(|&at| at < file_len) {
            Some(next)
                if valid_record_at(path, next, file_len)
                    .map_err(|e| PersistError::io(path, e))? =>
            {
                Some(format!(
                    "{why}, and the record after it (at offset {next}, by its length) is \
                     valid: damage inside the log, not a torn write"
                ))
            }
            _ => None,
        }
    };
    if let Some(why) = lost {
        lose(
            loaded,
            accept,
            PersistError::data_loss(path, Some(offset), why),
        )?;
    }
    truncate(path, offset)?;
    loaded.truncated += file_len - offset;
    log::warn!(
        "{}: torn tail ({why}) at offset {offset}: truncated {} bytes and synced",
        path.display(),
        file_len - offset
    );
    Ok(ended(offset))
}

/// Cuts `path` to `len` bytes, durably.
fn truncate(path: &Path, len: u64) -> Result<(), PersistError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| PersistError::io(path, e))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| PersistError::io(path, e))
}

fn header_is_torn(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // Only a header that never got its bytes down: short, or all zeros / garbage with nothing
    // after it that could be a record.
    match FileHeader::decode(&bytes) {
        None => bytes.len() <= SEGMENT_HEADER,
        Some(header) => bytes.len() < header.header_len(),
    }
}

/// Whether a whole, valid record starts at `at` (the record framing of a damaged record said
/// the next one begins there).
fn valid_record_at(path: &Path, at: u64, file_len: u64) -> io::Result<bool> {
    let mut file = File::open(path)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(at))?;
    let mut head = [0u8; RECORD_HEADER];
    if file_len - at < RECORD_HEADER as u64 {
        return Ok(false);
    }
    file.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
    // Bounded by the file: a length read from disk never sizes more than the file holds.
    if len == 0 || at + RECORD_HEADER as u64 + len > file_len {
        return Ok(false);
    }
    let mut record = vec![0u8; RECORD_HEADER + len as usize];
    record[..RECORD_HEADER].copy_from_slice(&head);
    file.read_exact(&mut record[RECORD_HEADER..])?;
    Ok(matches!(record::decode(&record), Decoded::Record(..)))
}

/// Reads a file's header and records, calling `on_record` for each valid one, until the end
/// or the first damaged record.
fn read_file(
    path: &Path,
    kind: FileKind,
    id: u64,
    seq: u64,
    on_header: impl FnOnce(&FileHeader, u64, &mut Partition),
    partition: &mut Partition,
    mut on_record: impl FnMut(&mut Partition, Record) -> Result<(), &'static str>,
) -> Result<FileRead, PersistError> {
    let io_err = |e| PersistError::io(path, e);
    let mut file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut buf = vec![0u8; READ_CHUNK.min(file_len as usize).max(SEGMENT_HEADER)];
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
    if end < header.header_len() {
        return Err(PersistError::corrupt(path, 0, "file header cut short"));
    }
    let checkpoint = if header.has_checkpoints() {
        Checkpoint::newest(seq, &buf[..SEGMENT_HEADER]).unwrap_or_else(|| {
            log::warn!(
                "{}: both checkpoint slots are damaged; its durable length is unknown, so \
                 damage anywhere in it will be taken for a torn write",
                path.display()
            );
            Checkpoint {
                durable: SEGMENT_HEADER as u64,
                sealed: false,
            }
        })
    } else {
        Checkpoint {
            durable: header.header_len() as u64,
            sealed: false,
        }
    };
    on_header(&header, file_len, partition);
    let done = |end| {
        Ok(FileRead {
            header,
            checkpoint,
            end,
            file_len,
        })
    };
    let mut start = header.header_len();
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
                let at = base + start as u64;
                // `decode` only says Damaged with the whole frame in `buf` (or a zero length).
                let len = buf
                    .get(start..start + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes);
                let frame_end = (len > 0).then(|| at + RECORD_HEADER as u64 + len as u64);
                return done(ReadEnd::Damaged {
                    offset: at,
                    why,
                    frame_end,
                });
            }
            Decoded::Incomplete { need } => {
                let at = base + start as u64;
                let read_to = base + end as u64;
                if read_to >= file_len {
                    return done(if start == end {
                        ReadEnd::Clean { len: at }
                    } else {
                        ReadEnd::Damaged {
                            offset: at,
                            why: "record cut short by the end of the file",
                            frame_end: None,
                        }
                    });
                }
                if at + need as u64 > file_len {
                    return done(ReadEnd::Damaged {
                        offset: at,
                        why: "record length runs past the end of the file",
                        frame_end: None,
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
                    return done(ReadEnd::Damaged {
                        offset: at,
                        why: "record cut short by the end of the file",
                        frame_end: None,
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

//! A primary shard's backlog: its recent `RECORDS` frames, kept so that a replica whose link
//! broke can resume each partition from the offset it had applied (partial resync, see the
//! [module docs](super)).
//!
//! The backlog holds each pass's frames as the feeds got them (one shared buffer per pass,
//! never copied) with where each partition's frame lies in it. It is bounded: when a pass
//! would take it past its limit (bytes of frames held), the oldest passes go, and for each
//! partition of theirs [`Backlog::base`] moves to the end of what went. From `base` on, every
//! frame of the partition is held, so a replica that applied a partition up to an offset at
//! or after its base, on a frame boundary, resumes it with the frames after that offset and
//! then the live stream, in order, with nothing missing and nothing twice.
//!
//! The backlog exists from the first replica's attach on (`--repl-backlog` above zero) and
//! is never dropped: while it exists the shard keeps framing every commit's records, replica
//! or none, so that what was written while no replica was attached is in it too (as Redis
//! keeps its backlog once made).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Most `<partition-id>:<offset>` pairs one `REPLSYNC` may carry (a replica sends one per
/// partition it holds; more is a damaged or hostile request, answered with an error).
pub const MAX_RESUME_PARTITIONS: usize = 1 << 20;

/// What a replica asked in its `REPLSYNC`: to resume, and from which offsets.
#[derive(Debug, Default)]
pub struct Resume {
    /// It named a primary's history (Redis's PSYNC with a replid, not `?`): a denial
    /// counts `sync_partial_err`.
    pub asked: bool,
    /// Partition id -> the offset it applied; empty unless the history it named is this
    /// server's (same replid and same run: the offsets and the backlog are this process's).
    pub offsets: hashbrown::HashMap<u64, u64>,
}

/// How the shards answered one replica's sync: each counts its partitions, the last one
/// to answer counts the link (see the module docs of [`super`], "Partial resync").
#[derive(Debug, Default)]
pub struct Outcome {
    pub resumed: AtomicUsize,
    pub whole: AtomicUsize,
    shards: AtomicUsize,
}

impl Outcome {
    /// One shard's answer: `resumed` partitions resumed, `whole` sent whole. True for the
    /// last of `shards` (which then counts the link's statistics).
    pub fn answer(&self, resumed: usize, whole: usize, shards: usize) -> bool {
        self.resumed.fetch_add(resumed, Ordering::Relaxed);
        self.whole.fetch_add(whole, Ordering::Relaxed);
        self.shards.fetch_add(1, Ordering::AcqRel) + 1 == shards
    }
}

/// Where one partition's frame lies in a pass's frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sub {
    pub id: u64,
    /// The partition's offset before and after this frame's records.
    pub start: u64,
    pub end: u64,
    /// The frame's bytes in the pass's buffer.
    pub range: Range<usize>,
}

struct Pass {
    frames: Arc<Vec<u8>>,
    subs: Vec<Sub>,
    /// Record bytes (offset units) of its frames.
    records: u64,
}

/// A replay being gathered: where it has got to, where it must end, and its frames.
type Replay = (u64, u64, Result<Vec<u8>, Miss>);

/// Why a partition cannot be resumed from an offset (logged by the shard).
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    /// Past what the partition streamed: another history, or a damaged request.
    Ahead,
    /// Older than the backlog holds for it.
    Evicted,
    /// Not where one of its frames begins.
    NotABoundary,
}

/// One shard's backlog.
pub struct Backlog {
    limit: usize,
    passes: VecDeque<Pass>,
    /// Bytes of frames held (the buffers' capacity: what they cost).
    bytes: usize,
    /// Record bytes held, in offset units (INFO's `repl_backlog_histlen`).
    histlen: u64,
    /// Per partition: the offset from which every frame of it is held. A partition not here
    /// is held from its first frame (it was made after the backlog, or lost nothing yet).
    base: hashbrown::HashMap<u64, u64>,
}

impl Backlog {
    /// A backlog of at most `limit` bytes, made when `partitions` (id, offset now) exist:
    /// each can be resumed from its offset now on.
    pub fn new(limit: usize, partitions: impl IntoIterator<Item = (u64, u64)>) -> Backlog {
        Backlog {
            limit,
            passes: VecDeque::new(),
            bytes: 0,
            histlen: 0,
            base: partitions.into_iter().collect(),
        }
    }

    /// Keeps a pass's frames (`subs`: where each partition's lies in them), letting the
    /// oldest go past the limit. A pass bigger than the whole limit is not kept at all.
    pub fn push(&mut self, frames: Arc<Vec<u8>>, subs: Vec<Sub>) {
        if subs.is_empty() {
            return;
        }
        let pass = Pass {
            records: subs.iter().map(|s| s.end - s.start).sum(),
            frames,
            subs,
        };
        self.bytes += pass.frames.capacity();
        self.histlen += pass.records;
        self.passes.push_back(pass);
        while self.bytes > self.limit {
            let Some(old) = self.passes.pop_front() else {
                break;
            };
            self.bytes -= old.frames.capacity();
            self.histlen -= old.records;
            for sub in &old.subs {
                let base = self.base.entry(sub.id).or_insert(0);
                *base = (*base).max(sub.end);
            }
        }
    }

    /// The frames of partition `id` after `offset`, which resume it from there; `current`
    /// is its offset now. Empty when it has streamed nothing since.
    pub fn resume(&self, id: u64, offset: u64, current: u64) -> Result<Vec<u8>, Miss> {
        self.resume_all([(id, offset, current)])
            .remove(&id)
            .unwrap_or(Err(Miss::Evicted))
    }

    /// [`Backlog::resume`] of many partitions (id, offset asked, offset now) in one walk
    /// over the backlog, so that a shard of many partitions and a long backlog answers a
    /// replica in time linear in the two, not in their product.
    pub fn resume_all(
        &self,
        wanted: impl IntoIterator<Item = (u64, u64, u64)>,
    ) -> hashbrown::HashMap<u64, Result<Vec<u8>, Miss>> {
        // Per partition: where its replay has got to, where it must end, and the replay.
        let mut replays: hashbrown::HashMap<u64, Replay> = wanted
            .into_iter()
            .map(|(id, offset, current)| {
                let start = if offset > current {
                    Err(Miss::Ahead)
                } else if offset < current && offset < self.base(id) {
                    Err(Miss::Evicted)
                } else {
                    Ok(Vec::new())
                };
                (id, (offset, current, start))
            })
            .collect();
        for pass in &self.passes {
            for sub in &pass.subs {
                let Some((at, current, Ok(out))) = replays.get_mut(&sub.id) else {
                    continue;
                };
                if sub.end <= *at || *at == *current {
                    continue;
                }
                if sub.start != *at {
                    replays.insert(sub.id, (0, 0, Err(Miss::NotABoundary)));
                    continue;
                }
                out.extend_from_slice(&pass.frames[sub.range.clone()]);
                *at = sub.end;
            }
        }
        replays
            .into_iter()
            .map(|(id, (at, current, out))| {
                // Every frame from the base on is held, so the last one ends where the
                // partition is now; anything else is a frame not kept (a pass past the limit).
                let out = match out {
                    Ok(_) if at != current => Err(Miss::Evicted),
                    other => other,
                };
                (id, out)
            })
            .collect()
    }

    /// The offset of partition `id` from which it can be resumed.
    pub fn base(&self, id: u64) -> u64 {
        self.base.get(&id).copied().unwrap_or(0)
    }

    /// A partition this shard no longer owns (dropped): its base goes (its frames still
    /// held go with their passes; it is never resumed again, having no local partition).
    pub fn forget(&mut self, id: u64) {
        self.base.remove(&id);
    }

    /// Bytes of frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Record bytes held (offset units).
    pub fn histlen(&self) -> u64 {
        self.histlen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass of one frame per (id, start, len): the frame's bytes are the id repeated.
    fn pass(frames: &[(u64, u64, u64)]) -> (Arc<Vec<u8>>, Vec<Sub>) {
        let mut buf = Vec::new();
        let mut subs = Vec::new();
        for &(id, start, len) in frames {
            let at = buf.len();
            buf.extend(std::iter::repeat_n(id as u8, len as usize));
            subs.push(Sub {
                id,
                start,
                end: start + len,
                range: at..buf.len(),
            });
        }
        buf.shrink_to_fit();
        (Arc::new(buf), subs)
    }

    #[test]
    fn resumes_from_any_boundary_it_still_holds() {
        let mut b = Backlog::new(1000, [(1, 0), (2, 50)]);
        let (f, s) = pass(&[(1, 0, 10), (2, 50, 5)]);
        b.push(f, s);
        let (f, s) = pass(&[(1, 10, 20)]);
        b.push(f, s);
        assert_eq!(b.resume(1, 0, 30).unwrap(), vec![1u8; 30]);
        assert_eq!(b.resume(1, 10, 30).unwrap(), vec![1u8; 20]);
        assert_eq!(b.resume(1, 30, 30).unwrap(), Vec::<u8>::new());
        assert_eq!(b.resume(2, 50, 55).unwrap(), vec![2u8; 5]);
        assert_eq!(b.resume(1, 5, 30), Err(Miss::NotABoundary));
        assert_eq!(b.resume(1, 31, 30), Err(Miss::Ahead));
        assert_eq!(b.resume(2, 40, 55), Err(Miss::Evicted));
        assert_eq!(b.histlen(), 35);
        // Many at once, in one walk: the same answers.
        let all = b.resume_all([(1, 10, 30), (2, 50, 55), (1 << 40, 0, 0), (7, 3, 2)]);
        assert_eq!(all[&1], Ok(vec![1u8; 20]));
        assert_eq!(all[&2], Ok(vec![2u8; 5]));
        assert_eq!(all[&(1 << 40)], Ok(Vec::new()));
        assert_eq!(all[&7], Err(Miss::Ahead));
        // A partition made after the backlog is held from its first frame.
        let (f, s) = pass(&[(3, 0, 4)]);
        b.push(f, s);
        assert_eq!(b.resume(3, 0, 4).unwrap(), vec![3u8; 4]);
    }

    #[test]
    fn the_oldest_passes_go_past_the_limit_and_move_the_bases() {
        let mut b = Backlog::new(25, []);
        for i in 0..5 {
            let (f, s) = pass(&[(1, i * 10, 10)]);
            b.push(f, s);
        }
        assert!(b.bytes() <= 25, "{}", b.bytes());
        assert_eq!(b.base(1), 30);
        assert_eq!(b.resume(1, 20, 50), Err(Miss::Evicted));
        assert_eq!(b.resume(1, 30, 50).unwrap(), vec![1u8; 20]);
        // A pass bigger than the whole limit is not kept, and nothing before it resumes.
        let (f, s) = pass(&[(1, 50, 100), (2, 0, 1)]);
        b.push(f, s);
        assert_eq!(b.bytes(), 0);
        assert_eq!(b.histlen(), 0);
        assert_eq!(b.resume(1, 40, 150), Err(Miss::Evicted));
        assert_eq!(b.resume(1, 150, 150).unwrap(), Vec::<u8>::new());
        assert_eq!(b.resume(2, 0, 1), Err(Miss::Evicted));
        b.forget(1);
        assert_eq!(b.resume(1, 150, 160), Err(Miss::Evicted));
    }
}

//! What a partition does when a write would take it past its `max-memory` or `max-keys`
//! (PROTOCOL.md, "Partition configuration and quotas"): refuse with `-OOM`, or evict some of
//! its own keys first. The names are Redis's `maxmemory-policy` values.
//!
//! # Choosing a victim (Redis's `evict.c`)
//! [`super::Partition::evict_one`] removes one key of its own partition and says whether it
//! found one; the write path loops "evict one, check the quota again". How it chooses:
//! - `allkeys-lru`: the oldest written key, with a second chance (CLOCK, also called FIFO
//!   with reinsertion; [`super::table::Table::evict_by_hand`], "The eviction hand" in
//!   `super::arena`). The arena appends, so its segments in the order they were begun hold
//!   the keys in write order; the hand goes through them, and a key touched since it was
//!   written (a bit of its LRU stamp, `super::access`) is moved to the tail with the bit
//!   cleared instead of evicted. A key read once in a while thus stays, one never read goes
//!   in write order: on the zipf benchmark 0.724 against 0.717 for an exact LRU and 0.710
//!   for Redis 7's sampled LRU (the S3-FIFO paper, SOSP '23, reports the same of FIFO with
//!   reinsertion on production traces). It reads memory in order, where sampling read five
//!   random entries and a window of index per eviction: an evicting SET at a quota of 100k
//!   keys costs about a fifth less server CPU (`scripts/bench-eviction.sh`). An expired key
//!   goes when the hand reaches it, read or not; it is not sought out first (nor is it by
//!   Redis's LRU, whose samples rank by idle time): the expiry sweep reclaims the rest;
//! - `*-random`: a key drawn uniformly ([`super::table::Table::sample`]);
//! - `volatile-lru`, `*-lfu`, `volatile-ttl`: as Redis's `evictionPoolPopulate`, each call samples
//!   [`SAMPLES`] keys on average (`maxmemory-samples 5`), ranks them (the longest idle, the
//!   least frequent, the nearest deadline: [`super::access`]) and offers them to a [`Pool`] of
//!   the best [`POOL_SIZE`] candidates seen so far (`EVPOOL_SIZE 16`), kept across calls; then
//!   it takes the pool's best. A pooled key is checked again before it goes, in the same
//!   lookup that removes it ([`super::table::Table::remove_if`]): one removed since is
//!   dropped, one touched since (its rank fell) goes back into the pool with its new rank, and
//!   the next best is tried;
//! - the samples are every key of a run of consecutive slots from one random slot
//!   ([`super::table::Table::sample_window`]; Redis's `dictGetSomeKeys` also takes keys from
//!   neighbouring buckets), the run's length chosen to hold [`SAMPLES`] keys the policy may
//!   take on average. Every key is equally likely to be in it (a walk that stopped after 5
//!   keys would favour the first key after an empty slot), and a run costs one random number
//!   and one or two cache lines of index, where 5 slots drawn one by one missed the cache
//!   twice each; the entries' own misses are overlapped by prefetching them together. On the
//!   zipf benchmark (`scripts/hit-ratio.sh`) the hit ratios are those of uniform draws
//!   (allkeys-lru 0.715, allkeys-lfu 0.741 either way), and at a quota of 10k keys an
//!   evicting SET runs about 800 instructions fewer (`scripts/count-instructions.sh`), and at
//!   100k keys misses the L2 a third less often (21 misses a SET, not 32);
//! - after an eviction the pool's new best (likely the next victim) has its hash computed and
//!   its slot prefetched, so that the next eviction finds its lookup in cache;
//! - the samples' positions are drawn two evictions ahead ([`Pool::draw_ahead`]): after an
//!   eviction the window of the one after next has its slots prefetched, and the next one's
//!   window (whose slots arrived meanwhile) its entries, so that a sample reads from cache
//!   what it used to wait for in two misses in a row (at a quota of 100k keys the server's
//!   CPU per evicting SET went down by about a fifth, with the compaction prefetch below in
//!   `super::table`); the positions are random numbers as before, so the samples are as fair;
//! - `volatile-*` look only at keys with a deadline; a partition with none has nothing to
//!   evict (the write then answers `-OOM`, as Redis does). Random samples that find no key
//!   with a deadline fall back to a walk of the whole table, so a single one is still found.
//!
//! A key already past its deadline but not yet reclaimed ranks first under every sampled
//! policy: its eviction frees memory nobody can read.
//!
//! The finer LRU clock (a count of touches rather than Redis's one-second clock) is what lets
//! `volatile-lru` come within a point of an exact LRU (`scripts/hit-ratio.sh` measured it as
//! `allkeys-lru` did before the hand: 0.715).

use std::fmt;

/// A partition's eviction policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Eviction {
    /// Refuse the write with `-OOM`; nothing is evicted.
    #[default]
    NoEviction,
    /// Evict the least recently used key (approximated).
    AllKeysLru,
    /// Evict the least frequently used key (approximated).
    AllKeysLfu,
    /// Evict a random key.
    AllKeysRandom,
    /// Like `AllKeysLru`, among keys with a deadline only.
    VolatileLru,
    /// Like `AllKeysLfu`, among keys with a deadline only.
    VolatileLfu,
    /// Evict the key with a deadline nearest to now.
    VolatileTtl,
    /// Evict a random key with a deadline.
    VolatileRandom,
}

impl Eviction {
    /// Every policy, in the order documentation lists them.
    pub const ALL: [Eviction; 8] = [
        Eviction::NoEviction,
        Eviction::AllKeysLru,
        Eviction::AllKeysLfu,
        Eviction::AllKeysRandom,
        Eviction::VolatileLru,
        Eviction::VolatileLfu,
        Eviction::VolatileTtl,
        Eviction::VolatileRandom,
    ];

    /// Parses Redis's name for it, in any case.
    pub fn parse(word: &[u8]) -> Option<Eviction> {
        Eviction::ALL
            .into_iter()
            .find(|p| word.eq_ignore_ascii_case(p.as_str().as_bytes()))
    }

    /// Redis's name for it (lowercase).
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::NoEviction => "noeviction",
            Eviction::AllKeysLru => "allkeys-lru",
            Eviction::AllKeysLfu => "allkeys-lfu",
            Eviction::AllKeysRandom => "allkeys-random",
            Eviction::VolatileLru => "volatile-lru",
            Eviction::VolatileLfu => "volatile-lfu",
            Eviction::VolatileTtl => "volatile-ttl",
            Eviction::VolatileRandom => "volatile-random",
        }
    }

    /// Does it evict at all?
    pub fn evicts(self) -> bool {
        self != Eviction::NoEviction
    }

    /// Does it choose only among keys with a deadline?
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Eviction::VolatileLru
                | Eviction::VolatileLfu
                | Eviction::VolatileTtl
                | Eviction::VolatileRandom
        )
    }

    /// Does it need per-key recency (LRU) or frequency (LFU) bits?
    pub fn tracks_access(self) -> bool {
        matches!(
            self,
            Eviction::AllKeysLru
                | Eviction::AllKeysLfu
                | Eviction::VolatileLru
                | Eviction::VolatileLfu
        )
    }
}

/// Keys sampled per eviction (Redis's default `maxmemory-samples`).
pub const SAMPLES: usize = 5;

/// Candidates kept across evictions (Redis's `EVPOOL_SIZE`).
pub const POOL_SIZE: usize = 16;

/// A key the pool holds and its rank when it was offered (higher: evict sooner).
#[derive(Debug)]
pub struct Candidate {
    pub rank: u64,
    pub key: Vec<u8>,
    /// The key's hash, once computed to prefetch its lookup ([`Pool::best_mut`]).
    pub hash: Option<u64>,
}

/// The best eviction candidates seen so far, in ascending rank (Redis's eviction pool). Key
/// buffers are reused: a pool that runs warm allocates nothing.
#[derive(Debug, Default)]
pub struct Pool {
    /// Ascending by rank; at most [`POOL_SIZE`].
    entries: Vec<Candidate>,
    spare: Vec<Vec<u8>>,
    /// The sample positions (random numbers) of the next two evictions, drawn ahead so that
    /// their memory is prefetched before they are sampled ([`Pool::draw_ahead`]).
    ahead: [Option<u64>; 2],
}

impl Pool {
    /// Offers a key with this rank: taken when the pool has room or the key ranks above its
    /// worst (which then leaves). A key already pooled with this rank is not taken twice (a
    /// copy with another rank, from before a touch, is dropped when it is checked).
    pub fn offer(&mut self, rank: u64, key: &[u8]) {
        let full = self.entries.len() >= POOL_SIZE;
        if full && rank <= self.entries[0].rank {
            // (Most samples end here once the pool holds good candidates: no key compared.)
            return;
        }
        // Entries ranking at or above this one start at k: equals already pooled go sooner.
        let k = self.entries.partition_point(|c| c.rank < rank);
        if self.entries[k..]
            .iter()
            .take_while(|c| c.rank == rank)
            .any(|c| c.key == key)
        {
            return;
        }
        if full {
            // The worst leaves and lends its buffer: one shift of the entries below `k`.
            self.entries[..k].rotate_left(1);
            let slot = &mut self.entries[k - 1];
            slot.rank = rank;
            slot.hash = None;
            slot.key.clear();
            slot.key.extend_from_slice(key);
            return;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(key);
        self.entries.insert(
            k,
            Candidate {
                rank,
                key: buf,
                hash: None,
            },
        );
    }

    /// A copy of `key` in a reused buffer (give it back with [`Pool::recycle`]).
    pub fn copy(&mut self, key: &[u8]) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(key);
        buf
    }

    /// The best candidate, left in (to prefetch what removing it will read).
    pub fn best_mut(&mut self) -> Option<&mut Candidate> {
        self.entries.last_mut()
    }

    /// Takes the best candidate out.
    pub fn pop_best(&mut self) -> Option<Candidate> {
        self.entries.pop()
    }

    /// Gives a taken candidate's key buffer back for reuse.
    pub fn recycle(&mut self, candidate: Candidate) {
        self.recycle_key(candidate.key);
    }

    /// Gives a key buffer (from [`Pool::copy`] or a taken candidate) back for reuse.
    pub fn recycle_key(&mut self, key: Vec<u8>) {
        // (Bounded: at most the pool's entries and the one being evicted are out at once.)
        if self.spare.len() <= POOL_SIZE {
            self.spare.push(key);
        }
    }

    /// The sample position drawn ahead for this eviction, if one was.
    pub fn take_ahead(&mut self) -> Option<u64> {
        self.ahead[0].take()
    }

    /// After an eviction: the position drawn for the one after it moves up, and `random` is
    /// queued behind it. Returns both: the caller prefetches the next window's entries (its
    /// slots were asked for an eviction ago) and the new one's slots.
    pub fn draw_ahead(&mut self, random: u64) -> (Option<u64>, u64) {
        self.ahead = [self.ahead[1], Some(random)];
        (self.ahead[0], random)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for Eviction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_in_any_case() {
        for p in Eviction::ALL {
            assert_eq!(Eviction::parse(p.as_str().as_bytes()), Some(p));
            assert_eq!(
                Eviction::parse(p.as_str().to_uppercase().as_bytes()),
                Some(p)
            );
        }
        assert_eq!(Eviction::parse(b"allkeys-lru "), None);
        assert_eq!(Eviction::parse(b"lru"), None);
        assert_eq!(Eviction::parse(b""), None);
    }

    #[test]
    fn classes() {
        assert!(!Eviction::NoEviction.evicts());
        assert!(Eviction::VolatileTtl.volatile_only() && !Eviction::VolatileTtl.tracks_access());
        assert!(Eviction::AllKeysLfu.tracks_access() && !Eviction::AllKeysLfu.volatile_only());
        assert!(!Eviction::AllKeysRandom.tracks_access());
    }

    /// A position drawn ahead is the one the eviction after next takes (the next one was
    /// drawn an eviction earlier), and each is taken once.
    #[test]
    fn positions_drawn_ahead_are_taken_two_evictions_later_once_each() {
        let mut pool = Pool::default();
        assert_eq!(
            pool.take_ahead(),
            None,
            "nothing drawn yet: the first draws afresh"
        );
        assert_eq!(pool.draw_ahead(1), (None, 1));
        assert_eq!(
            pool.take_ahead(),
            None,
            "1 is for the eviction after this one"
        );
        assert_eq!(pool.draw_ahead(2), (Some(1), 2));
        assert_eq!(pool.take_ahead(), Some(1));
        assert_eq!(pool.take_ahead(), None, "taken once");
        assert_eq!(pool.draw_ahead(3), (Some(2), 3));
        // An eviction that found nothing draws nothing: the queue waits.
        assert_eq!(pool.take_ahead(), Some(2));
        assert_eq!(pool.draw_ahead(4), (Some(3), 4));
        assert_eq!(pool.take_ahead(), Some(3));
    }

    #[test]
    fn the_pool_keeps_the_best_sixteen_and_replaces_a_key_offered_again() {
        let mut pool = Pool::default();
        for rank in 0..40u64 {
            pool.offer(rank, format!("k{rank}").as_bytes());
        }
        assert_eq!(pool.len(), POOL_SIZE);
        pool.offer(3, b"low");
        assert_eq!(pool.len(), POOL_SIZE, "below the worst: not taken");
        pool.offer(39, b"k30");
        pool.offer(39, b"k30");
        let best = pool.pop_best().unwrap();
        assert_eq!(best.rank, 39);
        // k39 (offered first) and k30 (offered again at 39) tie: the one pooled first goes.
        assert_eq!(best.key, b"k39");
        pool.recycle(best);
        assert_eq!(pool.pop_best().unwrap().key, b"k30");
        assert!(
            pool.entries.iter().all(|c| c.rank != 39),
            "offered twice at one rank, pooled once"
        );
        let mut last = u64::MAX;
        while let Some(c) = pool.pop_best() {
            assert!(c.rank <= last);
            last = c.rank;
        }
        assert!(pool.is_empty());
    }
}

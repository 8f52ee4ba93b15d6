//! What a partition does when a write would take it past its `max-memory` or `max-keys`
//! (PROTOCOL.md, "Partition configuration and quotas"): refuse with `-OOM`, or evict some of
//! its own keys first. The names are Redis's `maxmemory-policy` values.

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
}

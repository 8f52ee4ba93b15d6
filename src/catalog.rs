//! The catalog: which partitions exist, their schema, persist mode and owning shard.
//!
//! The catalog changes rarely (CREATE, DROP) and is read on every request, so it is an
//! immutable value shared through `Arc`: the coordinator (shard 0) builds each new version and
//! broadcasts it; every shard swaps its own `Arc` when the message arrives and acknowledges.
//! Reading it never locks; a version is never modified after it is published.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::store::{PartitionStats, PersistMode, Schema};

/// Longest partition (and user) name: short enough to print in logs and errors.
pub const MAX_NAME_LEN: usize = 64;

/// A valid partition or user name: 1 to 64 bytes of `[A-Za-z0-9_.-]`.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// One partition's description.
#[derive(Debug)]
pub struct PartitionMeta {
    pub name: String,
    /// Unique for the life of the process, so a partition dropped and created again under the
    /// same name is never confused with its predecessor.
    pub id: u64,
    pub shard: usize,
    pub schema: Schema,
    pub persist: PersistMode,
    pub created_ms: u64,
    /// Counted by the owning shard, readable here by anyone.
    pub stats: Arc<PartitionStats>,
}

/// One version of the catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    pub version: u64,
    /// Sorted by name, which is the order LIST PARTITIONS answers in.
    pub partitions: BTreeMap<String, Arc<PartitionMeta>>,
}

impl Catalog {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<PartitionMeta>> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.partitions.get(n))
    }

    /// The shard a new partition goes to: the one owning the fewest partitions, ties to the
    /// lowest id, so that successive partitions spread over the cores.
    pub fn placement(&self, shards: usize) -> usize {
        let mut owned = vec![0usize; shards];
        for meta in self.partitions.values() {
            if let Some(count) = owned.get_mut(meta.shard) {
                *count += 1;
            }
        }
        (0..shards).min_by_key(|&s| (owned[s], s)).unwrap_or(0)
    }

    /// A new version with `meta` added.
    pub fn with_partition(&self, meta: PartitionMeta) -> Catalog {
        let mut partitions = self.partitions.clone();
        partitions.insert(meta.name.clone(), Arc::new(meta));
        Catalog {
            version: self.version + 1,
            partitions,
        }
    }

    /// A new version with `name` removed.
    pub fn without_partition(&self, name: &str) -> Catalog {
        let mut partitions = self.partitions.clone();
        partitions.remove(name);
        Catalog {
            version: self.version + 1,
            partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, shard: usize) -> PartitionMeta {
        PartitionMeta {
            name: name.into(),
            id: 0,
            shard,
            schema: Schema::String,
            persist: PersistMode::Memory,
            created_ms: 0,
            stats: Arc::default(),
        }
    }

    #[test]
    fn placement_spreads_over_shards() {
        let c = Catalog::default();
        assert_eq!(c.placement(2), 0);
        let c = c.with_partition(meta("a", 0));
        assert_eq!(c.placement(2), 1);
        let c = c.with_partition(meta("b", 1));
        assert_eq!(c.placement(2), 0);
        let c = c.without_partition("a");
        assert_eq!(c.placement(2), 0);
        assert_eq!(c.version, 3);
    }

    #[test]
    fn names() {
        assert!(is_valid_name(b"orders_2024.v-1"));
        assert!(!is_valid_name(b""));
        assert!(!is_valid_name(b"a b"));
        assert!(!is_valid_name(b"*"));
        assert!(!is_valid_name(&[b'a'; 65]));
        assert!(is_valid_name(&[b'a'; 64]));
    }
}

//! The catalog: which partitions exist, their schema, persist mode, options and owning shard.
//!
//! The catalog changes rarely (CREATE, DROP) and is read on every request, so it is an
//! immutable value shared through `Arc`: the coordinator (shard 0) builds each new version and
//! broadcasts it; every shard swaps its own `Arc` when the message arrives and acknowledges.
//! Reading it never locks; a version is never modified after it is published.
//!
//! A partition's options ([`PartitionOptions`]: quotas, eviction policy, default TTL) are
//! part of its description. The data path never reads them here: the owning shard copies
//! what it needs next to the partition when it applies a version (`shard::routes`), so a
//! request reads a plain field.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::store::{Eviction, PartitionStats, PersistMode, Schema};

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

/// A partition's options besides schema and persist mode (PROTOCOL.md, "Partition
/// configuration and quotas"). 0 means "none" for every number, so the default is a
/// partition without limits, as every partition was before options existed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionOptions {
    /// Bytes its data may take (the estimate of `store::memory`); 0: no limit.
    pub max_memory: u64,
    /// Keys it may hold; 0: no limit.
    pub max_keys: u64,
    /// Operations per second (a token bucket, burst one second's worth); 0: no limit.
    pub max_ops: u64,
    /// What a write does at `max_memory`/`max_keys`.
    pub eviction: Eviction,
    /// Deadline, in ms from the write, given to a key written without one; 0: none.
    pub default_ttl: u64,
}

impl PartitionOptions {
    /// Does it set any quota (`max-memory`, `max-keys`, `max-ops`)? Those need ADMIN on `*`.
    pub fn has_quota(&self) -> bool {
        self.max_memory != 0 || self.max_keys != 0 || self.max_ops != 0
    }
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
    pub options: PartitionOptions,
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

    /// A new version with `name`'s persist mode and options replaced (same partition: id,
    /// shard, counters). `None` when there is no such partition.
    pub fn with_options(
        &self,
        name: &str,
        persist: crate::store::PersistMode,
        options: PartitionOptions,
    ) -> Option<Catalog> {
        let old = self.partitions.get(name)?;
        let meta = PartitionMeta {
            name: old.name.clone(),
            id: old.id,
            shard: old.shard,
            schema: old.schema,
            persist,
            created_ms: old.created_ms,
            options,
            stats: old.stats.clone(),
        };
        let mut partitions = self.partitions.clone();
        partitions.insert(meta.name.clone(), Arc::new(meta));
        Some(Catalog {
            version: self.version + 1,
            partitions,
        })
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
            options: PartitionOptions::default(),
            stats: Arc::default(),
        }
    }

    #[test]
    fn options_change_keeps_the_partition() {
        let c = Catalog::default().with_partition(meta("a", 1));
        let options = PartitionOptions {
            max_keys: 10,
            ..Default::default()
        };
        assert!(options.has_quota() && !PartitionOptions::default().has_quota());
        let d = c
            .with_options("a", PersistMode::Memory, options)
            .expect("exists");
        assert_eq!(d.version, c.version + 1);
        let (old, new) = (&c.partitions["a"], &d.partitions["a"]);
        assert_eq!(
            (new.id, new.shard, new.options),
            (old.id, old.shard, options)
        );
        assert!(Arc::ptr_eq(&old.stats, &new.stats));
        assert!(c.with_options("b", PersistMode::Memory, options).is_none());
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

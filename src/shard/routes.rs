//! Where each partition lives, as this shard sees it, and how a new catalog version changes
//! that: partitions this shard now owns are opened (or recovered), ones it lost are retired,
//! and the options of the ones it keeps (ALTER PARTITION) are copied next to them
//! ([`LocalPartition::quota`]) between two requests: no pause, and no request sees half of a
//! change.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::metrics::ShardMetrics;

use super::durability::LocalPartition;
use super::Core;

/// Where a partition named in a request lives, as this shard sees it.
///
/// `Local` is a few hundred bytes and `Remote` one word, but there is one `Target` per
/// partition: boxing `Local` would only add a pointer chase to every local request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Target {
    Local(LocalPartition),
    /// Owned by `shard`; `id` goes with every request forwarded there, so the owner can tell
    /// the partition the request was approved for from a new one under the same name.
    Remote {
        shard: usize,
        id: u64,
    },
}

/// Partition name -> [`Target`]: a hash map that remembers the last name it found.
///
/// Nearly every request of a pipeline names the partition the one before it named, so a hit
/// on the remembered entry costs one comparison of a short name instead of hashing it and
/// probing (about 50 instructions of a GET's 1,500). The memory is an index into `entries`,
/// which only [`Routes::insert`] and [`Routes::remove`] change, and both forget it.
#[derive(Default)]
pub(super) struct Routes {
    entries: Vec<(Box<[u8]>, Target)>,
    /// Positions in `entries`, by name.
    index: hashbrown::HashTable<usize>,
    hasher: ahash::RandomState,
    /// The position of the name the last lookup found (`usize::MAX`: none).
    last: std::cell::Cell<usize>,
}

impl Routes {
    /// Inline, the remembered entry's test; the hash lookup out of line (inline, a GET's
    /// route costs some 20 instructions less: no call, no spills around it).
    #[inline]
    fn position(&self, name: &[u8]) -> Option<usize> {
        let last = self.last.get();
        if let Some((known, _)) = self.entries.get(last) {
            if crate::store::same_bytes(known, name) {
                return Some(last);
            }
        }
        self.find(name)
    }

    #[inline(never)]
    fn find(&self, name: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        let at = *self.index.find(hash, |&i| *self.entries[i].0 == *name)?;
        self.last.set(at);
        Some(at)
    }

    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&Target> {
        self.position(name).map(|i| &self.entries[i].1)
    }

    #[inline]
    pub fn get_mut(&mut self, name: &[u8]) -> Option<&mut Target> {
        self.position(name).map(|i| &mut self.entries[i].1)
    }

    /// Adds `name` or replaces its target.
    pub fn insert(&mut self, name: Box<[u8]>, target: Target) {
        self.last.set(usize::MAX);
        if let Some(i) = self.position(&name) {
            self.entries[i].1 = target;
            self.last.set(usize::MAX);
            return;
        }
        let hash = self.hasher.hash_one(&*name);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, entries.len(), |&i| hasher.hash_one(&*entries[i].0));
        self.entries.push((name, target));
    }

    /// Takes `name` out.
    pub fn remove(&mut self, name: &[u8]) -> Option<Target> {
        self.last.set(usize::MAX);
        let hash = self.hasher.hash_one(name);
        let entries = &self.entries;
        let at = self
            .index
            .find_entry(hash, |&i| *entries[i].0 == *name)
            .ok()?
            .remove()
            .0;
        let (_, target) = self.entries.swap_remove(at);
        // The last entry moved into `at`: its index position says so now.
        if let Some((moved, _)) = self.entries.get(at) {
            let from = self.entries.len();
            let hash = self.hasher.hash_one(&**moved);
            if let Some(i) = self.index.find_mut(hash, |&i| i == from) {
                *i = at;
            }
        }
        Some(target)
    }

    pub fn values(&self) -> impl Iterator<Item = &Target> {
        self.entries.iter().map(|(_, t)| t)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&[u8], &mut Target)> {
        self.entries.iter_mut().map(|(n, t)| (&**n, t))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Target> {
        self.entries.iter_mut().map(|(_, t)| t)
    }

    /// Empties it, yielding every entry.
    pub fn drain(&mut self) -> impl Iterator<Item = (Box<[u8]>, Target)> + '_ {
        self.last.set(usize::MAX);
        self.index.clear();
        self.entries.drain(..)
    }
}

impl Core {
    /// Switches to a new catalog version: creates the partitions this shard now owns, drops
    /// the ones that are gone, updates the options (and persist mode) of the ones it keeps,
    /// and rebuilds the routes. Returns why a persist change failed, if one did.
    #[must_use]
    pub(super) fn apply_catalog(&mut self, catalog: Arc<Catalog>) -> Option<String> {
        let mut failed = None;
        let mut old = std::mem::take(&mut self.routes);
        let mut owned = 0;
        // Memory of the partitions this shard no longer owns, and of those recovered.
        let mut freed = 0;
        let mut added = 0;
        for (name, meta) in &catalog.partitions {
            let key: Box<[u8]> = name.as_bytes().into();
            let target = if meta.shard == self.id {
                owned += 1;
                match old.remove(&key) {
                    // Same partition as before (a name dropped and created again has a new id),
                    // with the options of this version.
                    Some(Target::Local(mut p)) if p.id == meta.id => {
                        p.apply_options(&meta.options);
                        if let Err(why) = self.change_persist(meta, &mut p) {
                            failed = Some(why);
                        }
                        self.stream_if_fed(&mut p);
                        Target::Local(p)
                    }
                    previous => {
                        if let Some(Target::Local(p)) = previous {
                            freed += p.data.used_memory();
                            self.retire(p);
                        }
                        let mut local = self.open_partition(meta);
                        self.stream_if_fed(&mut local);
                        added += local.data.used_memory();
                        Target::Local(local)
                    }
                }
            } else {
                Target::Remote {
                    shard: meta.shard,
                    id: meta.id,
                }
            };
            self.routes.insert(key, target);
        }
        self.shared.metrics.shards[self.id]
            .partitions
            .store(owned, Ordering::Relaxed);
        // The metrics endpoint reads partition statistics from shard 0's copy.
        if self.id == 0 {
            self.shared.metrics.set_catalog(catalog.clone());
        }
        self.catalog = catalog;
        // Whatever is left in `old` was dropped: its memory goes now, and its files.
        for (_, target) in old.drain() {
            if let Target::Local(p) = target {
                freed += p.data.used_memory();
                self.retire(p);
            }
        }
        self.count_durable();
        let gauge = &self.shared.metrics.shards[self.id].used_memory;
        ShardMetrics::set(
            gauge,
            (ShardMetrics::get(gauge) + added).saturating_sub(freed),
        );
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_of(routes: &Routes, name: &str) -> Option<usize> {
        match routes.get(name.as_bytes())? {
            Target::Remote { shard, .. } => Some(*shard),
            Target::Local(_) => unreachable!("the test adds only remote targets"),
        }
    }

    #[test]
    fn finds_every_name_after_inserts_replacements_and_removals() {
        let mut routes = Routes::default();
        let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            routes.insert(name.as_bytes().into(), Target::Remote { shard: i, id: 0 });
        }
        // The remembered name answers as the index does, also when the next name differs.
        assert_eq!(shard_of(&routes, "p7"), Some(7));
        assert_eq!(shard_of(&routes, "p7"), Some(7));
        assert_eq!(shard_of(&routes, "p8"), Some(8));
        assert_eq!(shard_of(&routes, "nope"), None);
        // A replacement takes effect even for the remembered name.
        routes.insert(b"p8"[..].into(), Target::Remote { shard: 99, id: 0 });
        assert_eq!(shard_of(&routes, "p8"), Some(99));
        // Removals move the last entry into the hole: everything else is still found.
        assert_eq!(shard_of(&routes, "p0"), Some(0));
        for gone in ["p0", "p39", "p13"] {
            assert!(routes.remove(gone.as_bytes()).is_some());
            assert!(routes.remove(gone.as_bytes()).is_none(), "removed once");
        }
        for (i, name) in names.iter().enumerate() {
            let expected = match name.as_str() {
                "p0" | "p39" | "p13" => None,
                "p8" => Some(99),
                _ => Some(i),
            };
            assert_eq!(shard_of(&routes, name), expected, "{name}");
        }
        assert_eq!(routes.values().count(), 37);
        assert_eq!(routes.drain().count(), 37);
        assert_eq!(shard_of(&routes, "p1"), None, "drained");
    }
}

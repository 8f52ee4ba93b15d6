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

pub(super) type Routes = hashbrown::HashMap<Box<[u8]>, Target, ahash::RandomState>;

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

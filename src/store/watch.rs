//! Versions of the keys some connection WATCHes, for EXEC's check (`shard::transaction`).
//!
//! A partition keeps this table only while one of its keys is watched
//! (`Partition::watched` is `None` otherwise, and a store tests only that). Each watched key
//! has a version, bumped by every change that stores into the key: a value written (SET,
//! INCR, APPEND, RENAME onto it, a replicated or recovered SET, ...) or a deadline set or
//! cleared. Removals do not bump it: a key that was live when watched and is absent or
//! expired at EXEC fails the check anyway (`shard::transaction` compares liveness too), and
//! a key that was already expired or absent when watched may be reclaimed, deleted or
//! evicted without EXEC failing, which is Redis 7's rule (`touchWatchedKey` skips a key that
//! was expired at WATCH and is deleted). Together: EXEC fails exactly when Redis's would,
//! except after a write whose commit failed and was rolled back (GoKV only), which still
//! counts as a change.
//!
//! Each entry counts the watches on it, so it goes once the last watcher unwatches; a
//! connection may watch a bounded number of key bytes (`shard::transaction`), so the table
//! is bounded by the connections' limits.

use hashbrown::HashMap;

#[derive(Default)]
pub struct WatchedKeys {
    /// Key -> (version, watches on it).
    keys: HashMap<Box<[u8]>, (u64, u32)>,
}

impl WatchedKeys {
    /// One more watch on `key`; returns its current version.
    pub fn watch(&mut self, key: &[u8]) -> u64 {
        let entry = self.keys.entry_ref(key).or_insert((0, 0));
        entry.1 += 1;
        entry.0
    }

    /// One watch less on `key`; true when no key is watched any more.
    pub fn unwatch(&mut self, key: &[u8]) -> bool {
        if let Some(entry) = self.keys.get_mut(key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.keys.remove(key);
            }
        }
        self.keys.is_empty()
    }

    /// The version of a watched key (`None`: nobody watches it).
    pub fn version(&self, key: &[u8]) -> Option<u64> {
        self.keys.get(key).map(|e| e.0)
    }

    /// A store into `key`: its watchers' EXEC will fail.
    #[inline]
    pub fn changed(&mut self, key: &[u8]) {
        if let Some(entry) = self.keys.get_mut(key) {
            entry.0 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_move_with_changes_and_entries_go_with_their_last_watch() {
        let mut w = WatchedKeys::default();
        assert_eq!(w.watch(b"k"), 0);
        assert_eq!(w.watch(b"k"), 0);
        w.changed(b"k");
        w.changed(b"other");
        assert_eq!(w.version(b"k"), Some(1));
        assert_eq!(w.version(b"other"), None);
        assert!(!w.unwatch(b"k"));
        assert_eq!(w.version(b"k"), Some(1));
        assert!(w.unwatch(b"k"));
        assert_eq!(w.version(b"k"), None);
    }
}

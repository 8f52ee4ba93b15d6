//! A partition's options as its owning shard enforces them: `max-memory` and `max-keys`
//! (checked by every write that can grow the partition, before it changes anything),
//! `default-ttl` (given to keys written without a deadline, see [`super::data::Writes`]) and
//! `max-ops` (a token bucket, checked before a data command runs).
//!
//! A [`Quota`] lives next to its partition on the owning shard (`shard::durability::
//! LocalPartition`), built from the catalog's [`PartitionOptions`] and replaced in place when
//! ALTER PARTITION brings a new catalog version (`shard::routes`): the data path reads plain
//! fields, never the catalog. One shard thread owns it, so a check is exact: there is no
//! other writer to race with.
//!
//! # What the hot path pays
//! A partition without options pays one predictable branch per data command (`max-ops`
//! unset) and, per write, one more (`limited` unset) in [`super::data::Writes::admit`] and
//! one (`default-ttl` unset) where the write stores its value.
//!
//! # max-ops: what costs what
//! Every data command costs one token per key it names (MGET and MSET of n keys: n; DEL of
//! n keys: n), and one when it names none (DBSIZE, SCAN, KEYS, FLUSH PARTITION). Commands
//! that are not data commands (DESCRIBE, STATS, INFO, ...) are free. The bucket holds one
//! second's worth (`max-ops` tokens) and refills continuously at `max-ops` per second on the
//! shard's cached clock (`store::clock`, one reading per pass); a command that costs more
//! than a full bucket runs when the bucket is full and empties it (otherwise it could never
//! run). A command the bucket cannot pay for is refused with
//! `-THROTTLED partition <p> is over max-ops`, does nothing, and counts in the partition's
//! `throttled` statistic.

use crate::catalog::PartitionOptions;

use super::CommandError;

/// What the owning shard enforces of one partition's options.
#[derive(Debug, Default)]
pub struct Quota {
    /// The partition's name, for error replies.
    name: Box<str>,
    pub(super) max_memory: u64,
    pub(super) max_keys: u64,
    /// ms; 0: none.
    pub(super) default_ttl: u64,
    /// `max_memory`, `max_keys` or `default_ttl` is set: the one test a write makes when
    /// none is (the check and the extra deadline bytes of a default TTL go out of line).
    pub(super) limited: bool,
    bucket: TokenBucket,
}

impl Quota {
    /// The quota of partition `name` with these options.
    pub fn new(name: &str, options: &PartitionOptions) -> Self {
        let mut quota = Quota {
            name: name.into(),
            ..Default::default()
        };
        quota.update(options);
        quota
    }

    /// Takes new options (ALTER PARTITION), in place: the token bucket keeps what it holds,
    /// up to the new burst.
    pub fn update(&mut self, options: &PartitionOptions) {
        self.max_memory = options.max_memory;
        self.max_keys = options.max_keys;
        self.default_ttl = options.default_ttl;
        self.limited = options.max_memory != 0 || options.max_keys != 0 || options.default_ttl != 0;
        self.bucket.set_rate(options.max_ops);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Is `max-ops` set? (The data path's test before it asks [`Quota::take`].)
    #[inline]
    pub fn throttles(&self) -> bool {
        self.bucket.rate != 0
    }

    /// Takes `cost` tokens at `now_ms`, or refuses (`-THROTTLED`) and takes nothing.
    #[cold]
    #[inline(never)]
    pub fn take(&mut self, cost: u64, now_ms: u64) -> Result<(), CommandError> {
        if self.bucket.take(cost, now_ms) {
            Ok(())
        } else {
            Err(CommandError::Throttled(self.name.to_string()))
        }
    }

    /// The refusal of a write that would take the partition past `max-memory`.
    pub(super) fn over_memory(&self) -> CommandError {
        CommandError::PartitionFull {
            partition: self.name.to_string(),
            limit: "max-memory",
            value: self.max_memory,
        }
    }

    /// The refusal of a write that would take the partition past `max-keys`.
    pub(super) fn over_keys(&self) -> CommandError {
        CommandError::PartitionFull {
            partition: self.name.to_string(),
            limit: "max-keys",
            value: self.max_keys,
        }
    }
}

/// Tokens are counted in thousandths, so that a rate below 1000/s still refills a little
/// every millisecond of the clock.
const MILLI: u64 = 1000;

/// `max-ops` as a token bucket: `rate` tokens a second, holding at most one second's worth.
#[derive(Debug, Default)]
struct TokenBucket {
    /// Tokens per second; 0: no limit.
    rate: u64,
    /// Thousandths of a token held.
    milli_tokens: u64,
    /// The clock (unix ms) of the last refill; 0: not started (starts full).
    last_ms: u64,
}

impl TokenBucket {
    fn set_rate(&mut self, rate: u64) {
        if self.rate == 0 {
            // A new limit starts with a full bucket.
            self.last_ms = 0;
        }
        self.rate = rate;
        self.milli_tokens = self.milli_tokens.min(self.capacity());
    }

    /// One second's worth, in thousandths.
    fn capacity(&self) -> u64 {
        // `rate` is at most `partition::MAX_OPS_OPTION` (10^9): no overflow.
        self.rate * MILLI
    }

    fn take(&mut self, cost: u64, now_ms: u64) -> bool {
        let capacity = self.capacity();
        if self.last_ms == 0 {
            self.milli_tokens = capacity;
        } else {
            // At most a second of refill counts (it fills the bucket anyway), so the product
            // stays below 10^9 * 1000 * 1000 / 1000 = 10^12.
            let elapsed = now_ms.saturating_sub(self.last_ms).min(1000);
            self.milli_tokens = (self.milli_tokens + elapsed * self.rate).min(capacity);
        }
        self.last_ms = now_ms.max(self.last_ms).max(1);
        let cost = cost.saturating_mul(MILLI).min(capacity);
        if self.milli_tokens >= cost {
            self.milli_tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(max_ops: u64) -> Quota {
        Quota::new(
            "p",
            &PartitionOptions {
                max_ops,
                ..Default::default()
            },
        )
    }

    #[test]
    fn bucket_bursts_one_second_then_refills_at_the_rate() {
        let mut q = quota(100);
        assert!(q.throttles());
        let t = 1_000_000;
        let served = (0..250).filter(|_| q.take(1, t).is_ok()).count();
        assert_eq!(served, 100, "a full bucket is one second's worth");
        assert_eq!(
            q.take(1, t),
            Err(CommandError::Throttled("p".into())),
            "empty"
        );
        // 10 ms at 100/s: one token.
        assert!(q.take(1, t + 10).is_ok());
        assert!(q.take(1, t + 10).is_err());
        // 5 ms: half a token, kept.
        assert!(q.take(1, t + 15).is_err());
        assert!(q.take(1, t + 20).is_ok());
        // Idle for a minute: full again, not more.
        let later = t + 60_000;
        assert_eq!((0..250).filter(|_| q.take(1, later).is_ok()).count(), 100);
    }

    #[test]
    fn multi_key_cost_and_commands_larger_than_the_bucket() {
        let mut q = quota(10);
        let t = 5_000;
        assert!(q.take(4, t).is_ok());
        assert!(q.take(4, t).is_ok());
        assert!(
            q.take(4, t).is_err(),
            "2 tokens left, 4 asked: nothing taken"
        );
        assert!(q.take(2, t).is_ok());
        // 50 keys with max-ops 10: runs on a full bucket, and empties it.
        assert!(q.take(50, t + 2_000).is_ok());
        assert!(q.take(1, t + 2_000).is_err());
    }

    #[test]
    fn a_steady_second_serves_the_rate() {
        let mut q = quota(10_000);
        // Drain the burst, then offer 50 a ms (50,000/s) for 10 s.
        let mut now = 1_000;
        while q.take(1, now).is_ok() {}
        let mut served = 0u64;
        for _ in 0..10_000 {
            now += 1;
            served += (0..50).filter(|_| q.take(1, now).is_ok()).count() as u64;
        }
        assert_eq!(served, 100_000, "10 s at 10,000/s");
    }

    #[test]
    fn alter_keeps_the_tokens_up_to_the_new_burst() {
        let mut q = quota(100);
        assert!(q.take(10, 1_000).is_ok());
        q.update(&PartitionOptions {
            max_ops: 5,
            ..Default::default()
        });
        assert_eq!((0..10).filter(|_| q.take(1, 1_000).is_ok()).count(), 5);
        q.update(&PartitionOptions::default());
        assert!(!q.throttles() && !q.limited);
        q.update(&PartitionOptions {
            default_ttl: 1,
            ..Default::default()
        });
        assert!(q.limited);
    }
}

//! The per-key access bits of the LRU and LFU eviction policies: what they hold, how a touch
//! changes them, and how an evictor ranks them.
//!
//! # Where they live
//! In the entry, after the value, only when its flags say so (`store::arena`, "Access bits"):
//! a partition whose policy is not LRU or LFU stores none and pays nothing. A table stamps
//! the entries it writes according to its [`Tracking`]; a touch ([`super::table::Table::touch`])
//! updates them in place, and gives an entry written before the policy was set its field then
//! (one rewrite of that entry).
//!
//! # LRU: a logical clock, not a wall clock
//! Redis stamps a key with a 24-bit clock of one-second resolution, so every key touched in
//! the same second looks equally old, and a busy cache churns through its whole size many
//! times a second: the sampled "oldest" key is then close to a random one (on a zipf(0.99)
//! trace Redis 7's allkeys-lru scores 0.700 against 0.717 for an exact LRU and 0.685 for
//! random eviction). Here the stamp is the low 32 bits of a per-table counter that counts
//! touches: the order of last accesses exactly, whatever the request rate. An evictor unwraps
//! a stamp against the current count ([`AccessClock::lru_rank`]), so stamps compare correctly
//! as long as a key was touched within the last 2^31 touches of its partition; a key idle for
//! longer looks recent again until it is touched or evicted (Redis's 24-bit clock wraps after
//! 194 days in the same way).
//!
//! The stamp is 31 bits; the top bit says the key was read (touched) since it was last
//! written ([`READ_SINCE_WRITTEN`]): `allkeys-lru` evicts in write order and gives such a key
//! a second chance (CLOCK, `super::eviction`); the sampled `volatile-lru` ranks by the stamp.
//!
//! # LFU: Redis's counter
//! The same 24 bits as Redis's `lru` field in LFU mode: an 8-bit logarithmic counter (bits
//! 0..8) and the minute of its last decrement (bits 8..24, 16 bits of unix minutes). A new key
//! starts at [`LFU_INIT_VAL`]; an access first decays the counter by one per
//! [`LFU_DECAY_MINUTES`] elapsed, then increments it with probability
//! `1 / ((counter - LFU_INIT_VAL) * LFU_LOG_FACTOR + 1)` (Redis's `LFUDecrAndReturn` and
//! `LFULogIncr`, `lfu-log-factor 10`, `lfu-decay-time 1`): a million hits take the counter to
//! about 255.
//!
//! Switching a partition between LRU and LFU reinterprets the bits of the keys stamped under
//! the other policy until they are touched again, as Redis does with its shared field.

use super::clock;

/// Redis's `LFU_INIT_VAL`: where a new key's counter starts, so that it survives long enough
/// to collect a few hits.
pub const LFU_INIT_VAL: u8 = 5;

/// Redis's default `lfu-log-factor`.
pub const LFU_LOG_FACTOR: u64 = 10;

/// Redis's default `lfu-decay-time`, in minutes.
pub const LFU_DECAY_MINUTES: u32 = 1;

/// LRU bits: the stamp (the low 31 bits of the table's touch count).
const STAMP: u32 = (1 << 31) - 1;

/// LRU bits: the key was touched since it was last written or moved by the eviction hand.
pub const READ_SINCE_WRITTEN: u32 = 1 << 31;

/// What a table stamps in the entries it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tracking {
    /// No access bits (every policy but the LRU and LFU ones).
    #[default]
    Off,
    /// A recency stamp.
    Lru,
    /// A frequency counter.
    Lfu,
}

/// A small, fast pseudo-random generator (xorshift64*): the LFU increment's coin and the
/// evictor's sample positions. Deterministic, so that tests and the hit-ratio benchmark
/// replay the same way.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Default for Rng {
    fn default() -> Self {
        Rng(0x9E37_79B9_7F4A_7C15)
    }
}

impl Rng {
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A table's side of the access bits: its [`Tracking`], its LRU clock and its coin.
#[derive(Clone, Debug, Default)]
pub struct AccessClock {
    tracking: Tracking,
    /// Touches so far (LRU): the stamps are its low 32 bits.
    lru_clock: u64,
    rng: Rng,
}

/// Unix minutes, 16 bits of them (Redis's `LFUGetTimeInMinutes`).
#[inline]
fn lfu_minutes() -> u32 {
    ((clock::now_ms() / 60_000) & 0xffff) as u32
}

/// The counter of LFU bits after the decay due at minute `now` (Redis's `LFUDecrAndReturn`).
#[inline]
fn lfu_decayed(bits: u32, now: u32) -> u8 {
    let counter = (bits & 0xff) as u8;
    let last = (bits >> 8) & 0xffff;
    let elapsed = if now >= last {
        now - last
    } else {
        0xffff - last + now
    };
    let periods = elapsed / LFU_DECAY_MINUTES;
    counter.saturating_sub(periods.min(255) as u8)
}

impl AccessClock {
    #[inline]
    pub fn tracking(&self) -> Tracking {
        self.tracking
    }

    pub fn set_tracking(&mut self, tracking: Tracking) {
        self.tracking = tracking;
    }

    /// The bits of a key written now for the first time; `None` when not tracking.
    #[inline]
    pub fn fresh(&mut self) -> Option<u32> {
        match self.tracking {
            Tracking::Off => None,
            Tracking::Lru => {
                self.lru_clock += 1;
                Some(self.lru_clock as u32 & STAMP)
            }
            Tracking::Lfu => Some((lfu_minutes() << 8) | u32::from(LFU_INIT_VAL)),
        }
    }

    /// The bits of a key touched now that had `old` (Redis's `updateLFU`, or a new stamp).
    #[inline]
    pub fn touched(&mut self, old: u32) -> u32 {
        match self.tracking {
            Tracking::Off => old,
            Tracking::Lru => {
                self.lru_clock += 1;
                self.lru_clock as u32 & STAMP | READ_SINCE_WRITTEN
            }
            Tracking::Lfu => {
                let now = lfu_minutes();
                let mut counter = lfu_decayed(old, now);
                if counter < 255 {
                    // Redis's LFULogIncr: p = 1 / (base * factor + 1), as an integer draw.
                    let base = u64::from(counter.saturating_sub(LFU_INIT_VAL));
                    let draw = self.rng.next_u64() >> 32;
                    if draw * (base * LFU_LOG_FACTOR + 1) < 1 << 32 {
                        counter += 1;
                    }
                }
                (now << 8) | u32::from(counter)
            }
        }
    }

    /// How good an eviction candidate a key with these LRU bits is: higher is older. Keys
    /// without bits (written before the policy was set, and not touched since) rank above
    /// every stamped key. Comparable across calls: the stamp is unwrapped against the clock.
    #[inline]
    pub fn lru_rank(&self, bits: Option<u32>) -> u64 {
        match bits {
            None => u64::MAX / 2,
            Some(bits) => {
                let idle = (self.lru_clock as u32).wrapping_sub(bits) & STAMP;
                let touched_at = self.lru_clock.saturating_sub(u64::from(idle));
                u64::MAX / 2 - 1 - touched_at
            }
        }
    }

    /// Was a key with these LRU bits touched since it was written (its second chance under
    /// the eviction hand)? Keys without bits were not.
    #[inline]
    pub fn read_since_written(bits: Option<u32>) -> bool {
        bits.is_some_and(|b| b & READ_SINCE_WRITTEN != 0)
    }

    /// LRU bits as the eviction hand leaves them when it moves the key: its mark cleared.
    #[inline]
    pub fn passed(bits: u32) -> u32 {
        bits & !READ_SINCE_WRITTEN
    }

    /// How good an eviction candidate a key with these LFU bits is: higher is less frequent
    /// (Redis's `255 - LFUDecrAndReturn`). Keys without bits rank as a counter of 0.
    #[inline]
    pub fn lfu_rank(bits: Option<u32>) -> u64 {
        match bits {
            None => 255,
            Some(bits) => 255 - u64::from(lfu_decayed(bits, lfu_minutes())),
        }
    }

    /// The LFU counter of these bits now, decay applied (tests, OBJECT FREQ).
    pub fn lfu_counter(bits: u32) -> u8 {
        lfu_decayed(bits, lfu_minutes())
    }

    /// A random number from the table's generator.
    #[inline]
    pub fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_stamps_order_touches_and_unwrap_across_the_32_bit_wrap() {
        let mut c = AccessClock::default();
        c.set_tracking(Tracking::Lru);
        c.lru_clock = u64::from(STAMP) - 2;
        let old = c.fresh();
        let mid = c.fresh();
        let newer = c.touched(0);
        let newest = c.touched(0);
        assert!(newer & STAMP < mid.unwrap(), "the stamps wrapped past 2^31");
        assert!(
            !AccessClock::read_since_written(mid) && AccessClock::read_since_written(Some(newer))
        );
        assert!(!AccessClock::read_since_written(Some(AccessClock::passed(
            newer
        ))));
        assert_eq!(
            c.lru_rank(Some(AccessClock::passed(newer))),
            c.lru_rank(Some(newer))
        );
        let ranks: Vec<u64> = [old, mid, Some(newer), Some(newest)]
            .into_iter()
            .map(|b| c.lru_rank(b))
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] > w[1]), "{ranks:?}");
        assert!(c.lru_rank(None) > ranks[0], "unstamped keys go first");
    }

    #[test]
    fn lfu_counts_logarithmically_and_decays_a_point_a_minute() {
        clock::pin_for_tests(1_800_000_000_000);
        let mut c = AccessClock::default();
        c.set_tracking(Tracking::Lfu);
        let mut bits = c.fresh().unwrap();
        assert_eq!(AccessClock::lfu_counter(bits), LFU_INIT_VAL);
        for _ in 0..100 {
            bits = c.touched(bits);
        }
        let after_100 = AccessClock::lfu_counter(bits);
        for _ in 0..100_000 {
            bits = c.touched(bits);
        }
        let after_100k = AccessClock::lfu_counter(bits);
        // Redis's table for lfu-log-factor 10: 100 hits ~ 10, 100k hits ~ 142 ... 255.
        assert!((8..=20).contains(&after_100), "{after_100}");
        assert!((100..=255).contains(&after_100k), "{after_100k}");
        assert!(AccessClock::lfu_rank(Some(bits)) < AccessClock::lfu_rank(None));
        // Three minutes without a touch: three points down.
        clock::pin_for_tests(1_800_000_000_000 + 3 * 60_000);
        assert_eq!(AccessClock::lfu_counter(bits), after_100k - 3);
        clock::end_passes();
    }
}

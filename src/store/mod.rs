//! Partitions and their data: the tables one shard owns.
//!
//! A [`Partition`] is owned by exactly one shard thread and touched only there, so nothing in
//! this module locks. Its [`PartitionStats`] are the one part other threads read.

pub mod access;
pub mod arena;
pub mod clock;
pub mod eviction;
pub mod memory;
pub mod partition;
pub mod stats;
pub mod table;
pub mod watch;

pub use eviction::Eviction;
pub use memory::MemoryBudget;
pub use partition::{Contents, Entry, Expiry, IncrError, Partition, Value, ValueRef};
pub use stats::PartitionStats;
pub use table::SweepStep;

use std::fmt;

/// `a == b` for byte strings, without a call to `memcmp` when they are at most 16 bytes long
/// (keys and partition names nearly always are): two loads that may overlap per side. The
/// library call costs about 20 instructions at these lengths, on every lookup.
#[inline(always)]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word8 = |s: &[u8], at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let word4 = |s: &[u8], at: usize| {
        let mut w = [0; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_le_bytes(w)
    };
    match n {
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// What a partition's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// Signed 64-bit integers, stored natively (GET answers an integer reply).
    Int,
    /// Binary-safe byte strings.
    String,
}

impl Schema {
    pub fn parse(word: &[u8]) -> Option<Schema> {
        if word.eq_ignore_ascii_case(b"INT") {
            Some(Schema::Int)
        } else if word.eq_ignore_ascii_case(b"STRING") {
            Some(Schema::String)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Schema::Int => "INT",
            Schema::String => "STRING",
        }
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a partition's writes are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistMode {
    /// Nothing on disk.
    Memory,
    /// Logged and handed to the OS before the reply; fsync'd within a second.
    Async,
    /// Logged and fsync'd before the reply.
    Sync,
}

impl PersistMode {
    pub fn parse(word: &[u8]) -> Option<PersistMode> {
        if word.eq_ignore_ascii_case(b"MEMORY") {
            Some(PersistMode::Memory)
        } else if word.eq_ignore_ascii_case(b"ASYNC") {
            Some(PersistMode::Async)
        } else if word.eq_ignore_ascii_case(b"SYNC") {
            Some(PersistMode::Sync)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PersistMode::Memory => "MEMORY",
            PersistMode::Async => "ASYNC",
            PersistMode::Sync => "SYNC",
        }
    }
}

impl fmt::Display for PersistMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a value for an INT partition: only the canonical decimal form of an `i64` (`-12`,
/// `0`, `42`; not `+1`, `01`, `-0` or ` 1`), so that what GET answers is exactly what SET got.
pub fn parse_canonical_i64(bytes: &[u8]) -> Option<i64> {
    let value = crate::protocol::parser::parse_i64(bytes)?;
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = (digits.len() == 1 || digits[0] != b'0') && !(value == 0 && bytes[0] == b'-');
    canonical.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_integers() {
        for (text, value) in [("0", Some(0)), ("-12", Some(-12)), ("42", Some(42))] {
            assert_eq!(parse_canonical_i64(text.as_bytes()), value, "{text}");
        }
        let max = i64::MAX.to_string();
        let min = i64::MIN.to_string();
        assert_eq!(parse_canonical_i64(max.as_bytes()), Some(i64::MAX));
        assert_eq!(parse_canonical_i64(min.as_bytes()), Some(i64::MIN));
        for bad in [
            "",
            "-",
            "01",
            "-0",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "abc",
            "9223372036854775808",
            "-01",
        ] {
            assert_eq!(parse_canonical_i64(bad.as_bytes()), None, "{bad:?}");
        }
    }
}

#[cfg(test)]
mod same_bytes_tests {
    use super::same_bytes;

    #[test]
    fn agrees_with_slice_equality_at_every_length_and_difference() {
        for n in 0..=40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "equal, length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!same_bytes(&a, &b), "differ at {at}, length {n}");
            }
            assert!(
                !same_bytes(&a, &[a.as_slice(), b"x"].concat()),
                "longer by one"
            );
        }
    }
}

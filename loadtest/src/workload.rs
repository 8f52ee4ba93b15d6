//! What to send: the random source, key choice (uniform or zipfian) and request encoding.
//!
//! The random generator and the zipfian sampler are written here rather than taken from `rand`
//! and `rand_distr`: they are a few lines each, they sit on the hot path (one key per request),
//! their output is stable across crate releases (so runs stay comparable), and the zipfian
//! sampler must be the YCSB one anyway for results to line up with other tools.

use crate::resp::{encode_bulk, push_decimal};

/// Which server dialect requests are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// GoKV: every data command names its partition first (`SET <p> <key> <value>`).
    Gokv,
    /// Redis: `SET <key> <value>`.
    Redis,
}

/// The kind of request sent, used to keep latencies per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get = 0,
    Set = 1,
    Ping = 2,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Get, Op::Set, Op::Ping];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Ping => "ping",
        }
    }
}

/// xorshift64* (Vigna): 64-bit state, passes BigCrush in its high bits, a handful of
/// instructions per call. Quality is ample for picking keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Run the seed through splitmix64 so that nearby seeds give unrelated streams and a zero
        // seed (xorshift's one forbidden state) cannot happen in practice.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for any key space
    /// that fits in memory).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipfian ranks over `0..n` with exponent `theta` (0 <= theta < 1): rank 0 is the most popular
/// key, drawn with probability `1 / zeta(n, theta)`, rank `i` with probability proportional to
/// `1 / (i + 1)^theta`. This is the generator of Gray et al., "Quickly generating billion-record
/// synthetic databases" (SIGMOD '94), the one YCSB uses: O(n) set-up, O(1) per draw.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(n >= 1, "zipfian needs at least one item");
        assert!(
            (0.0..1.0).contains(&theta),
            "zipfian theta must be in [0, 1)"
        );
        let zetan = zeta(n, theta);
        let zeta2 = zeta(n.min(2), theta);
        let eta = if n <= 2 {
            // eta is only used for ranks >= 2, which do not exist here.
            0.0
        } else {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        };
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// The probability of drawing rank 0.
    #[cfg(test)]
    pub fn p_first(&self) -> f64 {
        1.0 / self.zetan
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if self.n >= 2 && uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

/// `sum_{i=1..n} 1 / i^theta`.
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

/// How keys are chosen from the key space `0..n`.
#[derive(Debug, Clone)]
pub enum KeyDist {
    Uniform(u64),
    Zipfian(Zipfian),
}

impl KeyDist {
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyDist::Uniform(n) => rng.below(*n),
            KeyDist::Zipfian(z) => z.sample(rng),
        }
    }
}

/// Width the key number is zero-padded to: `key:000000012345`, as redis-benchmark's
/// `key:__rand_int__` writes it, so both tools touch the same keys.
const KEY_DIGITS: usize = 12;

/// Appends key number `n` as a bulk string: `$16\r\nkey:000000012345\r\n`.
pub fn encode_key(out: &mut Vec<u8>, n: u64) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut rest = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // `tmp` is pre-filled with '0', so widening the slice to KEY_DIGITS pads with zeros.
    let digits = &tmp[i.min(tmp.len() - KEY_DIGITS)..];
    out.push(b'$');
    push_decimal(out, (4 + digits.len()) as u64);
    out.extend_from_slice(b"\r\nkey:");
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
}

/// What each request of a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// GET with probability `reads / (reads + writes)`, SET otherwise.
    ReadWrite { reads: u32, writes: u32 },
    /// PING only.
    Ping,
    /// SET every (partition, key) pair once, in order: request number `seq` writes key
    /// `seq % keys` of partition `seq / keys`.
    Prefill,
}

/// Everything needed to encode requests; shared read-only by all threads.
#[derive(Debug, Clone)]
pub struct Workload {
    mix: Mix,
    keys: KeyDist,
    key_count: u64,
    /// Per partition, the encoded `*4 SET <p>` / `*3 GET <p>` headers (gokv), or one entry
    /// holding `*3 SET` / `*2 GET` (redis).
    set_heads: Vec<Vec<u8>>,
    get_heads: Vec<Vec<u8>>,
    /// The encoded value bulk string, identical for every SET.
    value: Vec<u8>,
}

impl Workload {
    pub fn new(
        target: Target,
        partitions: &[String],
        mix: Mix,
        keys: KeyDist,
        key_count: u64,
        value_size: usize,
    ) -> Workload {
        let (set_heads, get_heads) = match target {
            Target::Gokv => partitions
                .iter()
                .map(|p| {
                    let mut set = b"*4\r\n$3\r\nSET\r\n".to_vec();
                    encode_bulk(&mut set, p.as_bytes());
                    let mut get = b"*3\r\n$3\r\nGET\r\n".to_vec();
                    encode_bulk(&mut get, p.as_bytes());
                    (set, get)
                })
                .unzip(),
            Target::Redis => (
                vec![b"*3\r\n$3\r\nSET\r\n".to_vec()],
                vec![b"*2\r\n$3\r\nGET\r\n".to_vec()],
            ),
        };
        let mut value = Vec::with_capacity(value_size + 16);
        encode_bulk(&mut value, &vec![b'x'; value_size]);
        Workload {
            mix,
            keys,
            key_count,
            set_heads,
            get_heads,
            value,
        }
    }

    /// Number of requests a prefill sends: every key once in every partition.
    pub fn prefill_requests(&self) -> u64 {
        self.key_count * self.set_heads.len() as u64
    }

    /// Appends the next request to `out` and says what it is. `seq` is the request's number in
    /// the run; only the prefill uses it. `part` fixes the partition of a SET or GET (index
    /// into the partitions, taken modulo their number: `--partition-per-connection`); `None`
    /// draws one uniformly per request.
    #[inline]
    pub fn encode_next(
        &self,
        rng: &mut Rng,
        seq: u64,
        part: Option<usize>,
        out: &mut Vec<u8>,
    ) -> Op {
        match self.mix {
            Mix::Ping => {
                out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
                Op::Ping
            }
            Mix::Prefill => {
                let part = (seq / self.key_count) as usize % self.set_heads.len();
                self.encode_set(part, seq % self.key_count, out);
                Op::Set
            }
            Mix::ReadWrite { reads, writes } => {
                let part = match part {
                    Some(p) => p % self.set_heads.len(),
                    None => self.pick_partition(rng),
                };
                let key = self.keys.sample(rng);
                let read = writes == 0
                    || (reads != 0 && rng.below((reads + writes) as u64) < reads as u64);
                if read {
                    out.extend_from_slice(&self.get_heads[part]);
                    encode_key(out, key);
                    Op::Get
                } else {
                    self.encode_set(part, key, out);
                    Op::Set
                }
            }
        }
    }

    #[inline]
    fn pick_partition(&self, rng: &mut Rng) -> usize {
        match self.set_heads.len() {
            1 => 0,
            n => rng.below(n as u64) as usize,
        }
    }

    #[inline]
    fn encode_set(&self, part: usize, key: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.set_heads[part]);
        encode_key(out, key);
        out.extend_from_slice(&self.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{parse_reply, Reply};

    #[test]
    fn key_encoding_matches_redis_benchmark() {
        let mut out = Vec::new();
        encode_key(&mut out, 12345);
        assert_eq!(out, b"$16\r\nkey:000000012345\r\n");
        out.clear();
        encode_key(&mut out, 0);
        assert_eq!(out, b"$16\r\nkey:000000000000\r\n");
        out.clear();
        encode_key(&mut out, 1_234_567_890_123); // wider than the padding: no truncation
        assert_eq!(out, b"$17\r\nkey:1234567890123\r\n");
    }

    /// Splits an encoded request into its arguments (requests are RESP arrays, so the reply
    /// framer can check their shape too).
    fn args(req: &[u8]) -> Vec<Vec<u8>> {
        assert_eq!(parse_reply(req).unwrap(), Some((req.len(), Reply::Value)));
        let text = req.split(|&b| b == b'\n').collect::<Vec<_>>();
        let n: usize = std::str::from_utf8(&text[0][1..text[0].len() - 1])
            .unwrap()
            .parse()
            .unwrap();
        (0..n)
            .map(|i| {
                let line = text[2 + 2 * i];
                line[..line.len() - 1].to_vec()
            })
            .collect()
    }

    #[test]
    fn gokv_commands_carry_the_partition() {
        let parts = vec!["a".to_string(), "bench".to_string()];
        let w = Workload::new(
            Target::Gokv,
            &parts,
            Mix::ReadWrite {
                reads: 1,
                writes: 1,
            },
            KeyDist::Uniform(10),
            10,
            5,
        );
        let mut rng = Rng::new(1);
        let (mut gets, mut sets) = (0, 0);
        for _ in 0..200 {
            let mut out = Vec::new();
            let op = w.encode_next(&mut rng, 0, None, &mut out);
            let a = args(&out);
            assert!(a[1] == b"a" || a[1] == b"bench");
            assert!(a[2].starts_with(b"key:0000000000"));
            match op {
                Op::Get => {
                    gets += 1;
                    assert_eq!(a.len(), 3);
                    assert_eq!(a[0], b"GET");
                }
                Op::Set => {
                    sets += 1;
                    assert_eq!(a.len(), 4);
                    assert_eq!(a[0], b"SET");
                    assert_eq!(a[3], b"xxxxx");
                }
                Op::Ping => unreachable!(),
            }
        }
        assert!(gets > 50 && sets > 50, "gets {gets} sets {sets}");
    }

    #[test]
    fn a_fixed_partition_is_used_for_every_request() {
        let parts = vec!["p0".to_string(), "p1".to_string(), "p2".to_string()];
        let w = Workload::new(
            Target::Gokv,
            &parts,
            Mix::ReadWrite {
                reads: 1,
                writes: 1,
            },
            KeyDist::Uniform(10),
            10,
            5,
        );
        let mut rng = Rng::new(3);
        for (fixed, name) in [(1, b"p1"), (5, b"p2")] {
            for _ in 0..100 {
                let mut out = Vec::new();
                w.encode_next(&mut rng, 0, Some(fixed), &mut out);
                assert_eq!(args(&out)[1], name, "connection partition {fixed}");
            }
        }
        // Redis requests carry no partition, whatever the connection's index.
        let r = Workload::new(
            Target::Redis,
            &[],
            Mix::ReadWrite {
                reads: 1,
                writes: 0,
            },
            KeyDist::Uniform(10),
            10,
            5,
        );
        let mut out = Vec::new();
        assert_eq!(r.encode_next(&mut rng, 0, Some(7), &mut out), Op::Get);
        assert!(out.starts_with(b"*2\r\n$3\r\nGET\r\n"));
    }

    #[test]
    fn redis_commands_have_no_partition_and_ratio_extremes_hold() {
        let only = |reads, writes| {
            let w = Workload::new(
                Target::Redis,
                &["ignored".to_string()],
                Mix::ReadWrite { reads, writes },
                KeyDist::Uniform(100),
                100,
                3,
            );
            let mut rng = Rng::new(7);
            let mut out = Vec::new();
            let ops: Vec<Op> = (0..100)
                .map(|_| w.encode_next(&mut rng, 0, None, &mut out))
                .collect();
            (ops, out)
        };
        let (ops, out) = only(0, 1);
        assert!(ops.iter().all(|&o| o == Op::Set));
        assert!(out.starts_with(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:"));
        let (ops, out) = only(1, 0);
        assert!(ops.iter().all(|&o| o == Op::Get));
        assert!(out.starts_with(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:"));
    }

    #[test]
    fn prefill_covers_every_partition_and_key() {
        let parts = vec!["p1".to_string(), "p2".to_string()];
        let w = Workload::new(
            Target::Gokv,
            &parts,
            Mix::Prefill,
            KeyDist::Uniform(3),
            3,
            1,
        );
        assert_eq!(w.prefill_requests(), 6);
        let mut rng = Rng::new(0);
        let seen: Vec<(Vec<u8>, Vec<u8>)> = (0..6)
            .map(|seq| {
                let mut out = Vec::new();
                assert_eq!(w.encode_next(&mut rng, seq, None, &mut out), Op::Set);
                let a = args(&out);
                (a[1].clone(), a[2].clone())
            })
            .collect();
        assert_eq!(seen[0], (b"p1".to_vec(), b"key:000000000000".to_vec()));
        assert_eq!(seen[2], (b"p1".to_vec(), b"key:000000000002".to_vec()));
        assert_eq!(seen[3], (b"p2".to_vec(), b"key:000000000000".to_vec()));
        assert_eq!(seen[5], (b"p2".to_vec(), b"key:000000000002".to_vec()));
    }

    #[test]
    fn uniform_stays_in_range_and_spreads() {
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[rng.below(10) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn zipfian_rank_one_frequency_matches_theory() {
        let n = 1000;
        let z = Zipfian::new(n, 0.99);
        let mut rng = Rng::new(42);
        let draws = 1_000_000;
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            let r = z.sample(&mut rng);
            assert!(r < n);
            counts[r as usize] += 1;
        }
        // P(rank 1) = 1 / zeta(1000, 0.99) ~ 0.133.
        let p1 = z.p_first();
        assert!((0.12..0.15).contains(&p1), "p1 {p1}");
        let f1 = counts[0] as f64 / draws as f64;
        assert!(
            (f1 - p1).abs() / p1 < 0.02,
            "rank-1 frequency {f1}, expected {p1}"
        );
        // Rank 2 is drawn exactly with probability 2^-theta / zeta too.
        let p2 = 0.5f64.powf(0.99) / z.zetan;
        let f2 = counts[1] as f64 / draws as f64;
        assert!(
            (f2 - p2).abs() / p2 < 0.03,
            "rank-2 frequency {f2}, expected {p2}"
        );
        // Popularity falls with rank, and the tail is still reached.
        assert!(counts[0] > counts[9] && counts[9] > counts[99] && counts[99] > counts[999]);
        assert!(counts[500..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn zipfian_with_theta_zero_is_uniform_and_tiny_spaces_work() {
        let z = Zipfian::new(4, 0.0);
        let mut rng = Rng::new(9);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let one = Zipfian::new(1, 0.99);
        assert!((0..100).all(|_| one.sample(&mut rng) == 0));
        let two = Zipfian::new(2, 0.99);
        assert!((0..100).all(|_| two.sample(&mut rng) < 2));
    }
}

//! The store-level half of the hit-ratio benchmark (`scripts/hit-ratio.sh`): replays a trace
//! of key numbers (one per line, as `scripts/hit_ratio.py` writes it) against one
//! [`Partition`] per eviction policy, the way the server runs `GET` and, on a miss, `SET`
//! into a partition with `max-keys <cache>`: touch and read; on a miss evict until there is
//! room, then write. No sockets, no server: this measures the eviction mechanism alone.
//!
//!     cargo run --release --example hit_ratio -- TRACE CACHE [POLICY ...]
//!
//! Prints one line per policy: `<policy> <hit ratio> <evictions> <seconds>`.

use std::sync::Arc;
use std::time::Instant;

use gokv::store::{Eviction, Expiry, Partition, Schema};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(cache)) = (args.first(), args.get(1)) else {
        eprintln!("usage: hit_ratio TRACE CACHE [POLICY ...]");
        std::process::exit(2);
    };
    let cache: usize = cache.parse().expect("CACHE is a number of keys");
    let text = std::fs::read_to_string(path).expect("the trace file can be read");
    let trace: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| format!("key:{l}").into_bytes())
        .collect();
    let policies: Vec<Eviction> = if args.len() > 2 {
        args[2..]
            .iter()
            .map(|p| Eviction::parse(p.as_bytes()).expect("a policy name"))
            .collect()
    } else {
        vec![
            Eviction::AllKeysLru,
            Eviction::AllKeysLfu,
            Eviction::AllKeysRandom,
        ]
    };
    let value = [b'v'; 16];
    for policy in policies {
        let mut p = Partition::new(Schema::String, Arc::default());
        p.set_eviction(policy);
        let (mut hits, mut evictions) = (0u64, 0u64);
        let start = Instant::now();
        for key in &trace {
            if p.tracks_access() {
                p.touch(key);
            }
            if p.get(key).is_some() {
                hits += 1;
                continue;
            }
            while p.len() >= cache {
                assert!(p.evict_one(|_| false, |_, _| {}), "nothing to evict");
                evictions += 1;
            }
            p.set_str(key, &value, Expiry::Clear);
        }
        println!(
            "{} {:.4} {} {:.3}",
            policy,
            hits as f64 / trace.len() as f64,
            evictions,
            start.elapsed().as_secs_f64()
        );
    }
}

//! Crash tests: real concurrent writers against SYNC and ASYNC partitions, `kill -9` at a
//! random moment, restart on the same data directory, and check that every acknowledged SET
//! and every acknowledged INCR result is there.
//!
//! A third of the single SETs carry an absolute deadline (`PXAT`): an hour away, or a few
//! hundred ms, so that some pass while the server is down. After the restart a key whose
//! deadline has passed must be gone (a restart never extends a key's life), and one whose
//! deadline has not must be there with exactly that deadline (`PEXPIRETIME`).
//!
//! For a SET, "there" means the key holds exactly the acknowledged value (every SET writes a
//! key of its own). For a counter, the value after the restart is at least the last
//! acknowledged result and at most one more (the one INCR that may have been in flight:
//! written but not yet answered when the process died).
//!
//! `GOKV_CRASH_TRIALS` (default 5) sets the number of trials; `GOKV_SERVER_BIN` runs them
//! against another build (see scripts/crash-test.sh).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{q_ok, DataDir, Server};

const WRITERS: usize = 6;
const STRING_PARTITIONS: [&str; 2] = ["s_sync", "s_async"];
const INT_PARTITIONS: [&str; 2] = ["i_sync", "i_async"];

/// What one writer was told "OK" for.
#[derive(Default)]
struct Acked {
    /// (partition, key, value, deadline in unix ms if the SET had one)
    sets: Vec<(&'static str, String, String, Option<u64>)>,
    counters: HashMap<(&'static str, String), i64>,
}

fn rng(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

fn writer(url: String, w: usize, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::default();
    let Ok(client) = redis::Client::open(url) else {
        return acked;
    };
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(5)) else {
        return acked;
    };
    let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
    let mut seed = w as u64 * 7919 + 1;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if w.is_multiple_of(3) && i.is_multiple_of(4) {
            // A pipelined burst: many records in one group commit.
            let p = STRING_PARTITIONS[(rng(&mut seed) % 2) as usize];
            let mut pipe = redis::pipe();
            let mut batch = Vec::new();
            for j in 0..20 {
                let key = format!("w{w}:k{i}.{j}");
                let value = format!("p{i}-{}", rng(&mut seed));
                pipe.cmd("SET").arg(p).arg(&key).arg(&value).ignore();
                batch.push((p, key, value, None));
            }
            match pipe.query::<()>(&mut con) {
                Ok(()) => acked.sets.extend(batch),
                Err(_) => break,
            }
        } else if i.is_multiple_of(2) {
            let p = STRING_PARTITIONS[(rng(&mut seed) % 2) as usize];
            let key = format!("w{w}:k{i}");
            let value = format!("v{i}-{}", rng(&mut seed));
            let deadline = i.is_multiple_of(3).then(|| {
                let away = if i.is_multiple_of(4) {
                    3_600_000
                } else {
                    100 + rng(&mut seed) % 600
                };
                now_ms() + away
            });
            let mut set = redis::cmd("SET");
            set.arg(p).arg(&key).arg(&value);
            if let Some(at) = deadline {
                set.arg("PXAT").arg(at);
            }
            let r: redis::RedisResult<()> = set.query(&mut con);
            match r {
                Ok(()) => acked.sets.push((p, key, value, deadline)),
                Err(_) => break, // the server died: this one may or may not be there
            }
        } else {
            let p = INT_PARTITIONS[(rng(&mut seed) % 2) as usize];
            let key = format!("w{w}:c{}", rng(&mut seed) % 3);
            let r: redis::RedisResult<i64> = redis::cmd("INCR").arg(p).arg(&key).query(&mut con);
            match r {
                Ok(n) => {
                    acked.counters.insert((p, key), n);
                }
                Err(_) => break,
            }
        }
    }
    acked
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A deadline this close to the check's clock may go either way (the check takes time).
const SLACK_MS: u64 = 50;

fn trial(seed: u64) {
    let dir = DataDir::new("crash");
    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut admin = node.client();
    for p in STRING_PARTITIONS {
        let persist = if p.ends_with("sync") && !p.ends_with("async") {
            "SYNC"
        } else {
            "ASYNC"
        };
        let _: () = q_ok(&mut admin, &["CREATE", "PARTITION", p, "STRING", persist]);
    }
    for p in INT_PARTITIONS {
        let persist = if p.ends_with("async") {
            "ASYNC"
        } else {
            "SYNC"
        };
        let _: () = q_ok(&mut admin, &["CREATE", "PARTITION", p, "INT", persist]);
    }
    drop(admin);

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let stop = stop.clone();
            let url = node.url();
            thread::spawn(move || writer(url, w, stop))
        })
        .collect();
    let mut s = seed;
    let delay = Duration::from_millis(300 + rng(&mut s) % 1200);
    thread::sleep(delay);
    let killed_at = Instant::now();
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Acked> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    let sets: usize = acked.iter().map(|a| a.sets.len()).sum();
    let counters: usize = acked.iter().map(|a| a.counters.len()).sum();
    assert!(sets > 50, "too little load before the kill ({sets} SETs)");
    let with_deadlines = acked
        .iter()
        .flat_map(|a| &a.sets)
        .filter(|s| s.3.is_some())
        .count();
    assert!(
        with_deadlines > 10,
        "too few SETs with a deadline ({with_deadlines})"
    );

    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut con = node.client();
    let mut missing = Vec::new();
    // Keys checked gone (deadline passed) and checked with their deadline (still to come).
    let (mut expired, mut timed) = (0, 0);
    for a in &acked {
        for chunk in a.sets.chunks(500) {
            let mut pipe = redis::pipe();
            for (p, key, _, _) in chunk {
                pipe.cmd("GET").arg(*p).arg(key);
                pipe.cmd("PEXPIRETIME").arg(*p).arg(key);
            }
            let checked_at = now_ms();
            let got: Vec<(Option<String>, i64)> = pipe.query(&mut con).unwrap();
            for ((p, key, value, deadline), (got, expires_at)) in chunk.iter().zip(got) {
                match deadline {
                    Some(at) if *at + SLACK_MS < checked_at => {
                        expired += 1;
                        if got.is_some() {
                            missing.push(format!(
                                "{p} {key}: deadline {at} passed ({checked_at}), found {got:?}"
                            ));
                        }
                    }
                    Some(at) if *at > checked_at + SLACK_MS => {
                        timed += 1;
                        if got.as_deref() != Some(value.as_str()) || expires_at != *at as i64 {
                            missing.push(format!(
                                "{p} {key}: acked {value} until {at}, found {got:?} until \
                                 {expires_at}"
                            ));
                        }
                    }
                    Some(_) => {} // at the edge: either is right
                    None => {
                        if got.as_deref() != Some(value.as_str()) || expires_at != -1 {
                            missing.push(format!(
                                "{p} {key}: acked {value}, found {got:?} (PEXPIRETIME \
                                 {expires_at})"
                            ));
                        }
                    }
                }
            }
        }
        for ((p, key), n) in &a.counters {
            let got: Option<i64> = q_ok(&mut con, &["GET", p, key]);
            let got = got.unwrap_or(0);
            if got < *n || got > n + 1 {
                missing.push(format!("{p} {key}: acked INCR result {n}, found {got}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "trial {seed} (killed after {delay:?}): {} of {sets} SETs / {counters} counters wrong, \
         e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "trial {seed}: killed after {delay:?}; {sets} acknowledged SETs and {counters} \
         counters all present after restart ({:?} to verify); {expired} past their deadline \
         gone, {timed} with their deadline",
        killed_at.elapsed()
    );
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let trials: u64 = std::env::var("GOKV_CRASH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(5);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1);
    for t in 0..trials {
        trial(base.wrapping_add(t));
    }
}

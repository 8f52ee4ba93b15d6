//! The command table against the real server: every command the table flags `write` is
//! logged (run through SYNC partitions, kill -9, restart, compare), and every command it flags
//! `readonly` changes nothing on disk. The commands and their requests come from the table
//! itself ([`gokv::command::COMMANDS`]), so a command added to it is covered without touching
//! this file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use gokv::command::{CommandSpec, Handler, Route, COMMANDS};

/// The value every key holds before a command runs, with a deadline ([`SEED_TTL`], unlike any
/// time a request sets, so that EXPIRE changes it even within one millisecond) so that
/// PERSIST and GETEX have something to change.
const SEED: &str = "3";
const SEED_TTL: &str = "200000";
/// Every non-key argument of a generated request (a value, an increment, an offset, a time):
/// large enough that a relative time (EXPIRE's seconds, PSETEX's ms) outlives the restart,
/// small enough for a SETRANGE offset.
const VALUE: &str = "100000";
/// Commands whose smallest request changes nothing on seeded keys (the condition "the key is
/// not there" fails): their keys are left unset.
const UNSEEDED: &[&str] = &["setnx", "msetnx"];
/// Options that make the smallest request of a command change something.
const EXTRA: &[(&str, &str)] = &[("getex", "PERSIST")];

/// The data commands that may change data (flagged `write`, or given a write handler: a row
/// where the two disagree is the bug this file looks for) / that may not.
fn data_rows(write: bool) -> Vec<&'static CommandSpec> {
    let rows: Vec<_> = COMMANDS
        .iter()
        .filter(|s| s.route() == Route::Partition)
        .filter(|s| (s.is_write() || matches!(s.handler, Handler::Write(_))) == write)
        .collect();
    assert!(!rows.is_empty(), "no data command with write = {write}");
    rows
}

/// The smallest request the row's arity allows on `partition`: keys where the row's key
/// positions say (`k2`, `k3`, ...), [`VALUE`] everywhere else; and the keys to watch: the
/// request's, or `k0` for a command that names none (SCAN, KEYS, FLUSH PARTITION, ...).
fn request(spec: &CommandSpec, partition: &str) -> (Vec<String>, Vec<String>) {
    let mut words: Vec<String> = spec.name.split(' ').map(str::to_string).collect();
    assert_eq!(
        spec.partition_arg,
        Some(words.len()),
        "the partition follows the name: {}",
        spec.name
    );
    words.push(partition.to_string());
    let argc = spec.arity.unsigned_abs() as usize;
    let keys: Vec<usize> = spec.keys.positions(argc).collect();
    for i in words.len()..argc {
        words.push(if keys.contains(&i) {
            format!("k{i}")
        } else {
            VALUE.to_string()
        });
    }
    if let Some((_, extra)) = EXTRA.iter().find(|(name, _)| *name == spec.name) {
        words.push(extra.to_string());
    }
    let key_names = if keys.is_empty() {
        vec!["k0".to_string()]
    } else {
        keys.iter().map(|&i| words[i].clone()).collect()
    };
    (words, key_names)
}

/// Gives each key its seed value and deadline, unless the command's keys stay unset.
fn seed(c: &mut RawConn, spec: &CommandSpec, partition: &str, keys: &[String]) {
    if UNSEEDED.contains(&spec.name) {
        return;
    }
    for key in keys {
        c.expect(&cmd(&["SET", partition, key, SEED, "EX", SEED_TTL]), OK);
    }
}

fn strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

/// What `GET` and `PEXPIRETIME` (an absolute deadline: the same after a restart) answer for
/// each key (exact bytes).
fn state(c: &mut RawConn, partition: &str, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let value = show(&c.call(&["GET", partition, k]));
            let deadline = show(&c.call(&["PEXPIRETIME", partition, k]));
            format!("{value} {deadline}")
        })
        .collect()
}

/// Two INT and two STRING partitions, created in an order that puts each schema on both
/// shards of a 2-shard server (partitions go to shards in turn), so each command runs once
/// where the connection is and once forwarded.
fn partitions(c: &mut RawConn, tag: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, schema) in ["INT", "STRING", "STRING", "INT"].iter().enumerate() {
        let name = format!("{tag}_{}{i}", schema.to_ascii_lowercase());
        c.expect(&cmd(&["CREATE", "PARTITION", &name, schema, "SYNC"]), OK);
        names.push(name);
    }
    names
}

#[test]
fn every_write_command_survives_a_restart() {
    let dir = DataDir::new("table-writes");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    // (partition, keys, state after the command) for every command and partition.
    let mut expected = Vec::new();
    for (n, spec) in data_rows(true).into_iter().enumerate() {
        let mut changed = false;
        for (i, partition) in partitions(&mut c, &format!("w{n}")).into_iter().enumerate() {
            let (words, keys) = request(spec, &partition);
            // In the first two partitions (one of each schema, one on each shard) the first
            // key holds a value with a deadline, in the other two nothing does, so that each
            // command writes somewhere: DEL needs a key there, SETNX one absent, RENAMENX a
            // key there and its new name absent.
            if i < 2 {
                seed(&mut c, spec, &partition, &keys[..1]);
            }
            let before = state(&mut c, &partition, &keys);
            let reply = c.call(&strs(&words));
            let after = state(&mut c, &partition, &keys);
            if after != before {
                assert!(
                    !reply.starts_with(b"-"),
                    "{words:?} changed data and answered {}",
                    show(&reply)
                );
                changed = true;
            }
            expected.push((words, partition, keys, after));
        }
        assert!(
            changed,
            "{}: the generated request changed nothing in any partition, so this test cannot \
             tell whether it is logged; make `request` generate one that writes",
            spec.name
        );
    }
    // Acknowledged SYNC writes are on disk: no clean shutdown needed.
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    for (words, partition, keys, after) in expected {
        assert_eq!(
            state(&mut c, &partition, &keys),
            after,
            "after a restart, what {words:?} wrote is gone (not logged?)"
        );
    }
}

/// Every file under the data directory's partition folders with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(at: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(at).expect("read data dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.insert(path.display().to_string(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// INFO persistence's total `log_bytes`.
fn log_bytes(c: &mut RawConn) -> String {
    let text = c.call_value(&["INFO", "persistence"]).text();
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix("log_bytes:").map(str::to_string))
        .unwrap_or_else(|| panic!("no log_bytes in\n{text}"))
}

#[test]
fn read_commands_change_nothing_on_disk() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let names = partitions(&mut c, "r");
    let reads = data_rows(false);
    for partition in &names {
        for spec in &reads {
            seed(&mut c, spec, partition, &request(spec, partition).1);
        }
    }
    let disk = files(server.data_dir());
    let logged = log_bytes(&mut c);
    for partition in &names {
        for spec in &reads {
            let (words, _) = request(spec, partition);
            let reply = c.call(&strs(&words));
            assert!(!reply.starts_with(b"-"), "{words:?}: {}", show(&reply));
        }
    }
    assert_eq!(log_bytes(&mut c), logged, "read commands wrote to a log");
    assert!(
        files(server.data_dir()) == disk,
        "read commands changed files on disk"
    );
}

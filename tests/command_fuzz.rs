//! Every command of the table, with random arguments, from a user who may only read (then one
//! who may also write one partition), in both grammars: whatever the requests, the server
//! answers well-formed RESP, stays up, and the user changes nothing it holds no right to:
//! not the data of a partition it may only read, not the partitions, the users and grants,
//! or the configuration. This is the trust rule "no input from any client, authenticated or
//! not, may crash the server or reach past its grants", tried over the whole command table
//! (`gokv::command::COMMANDS`, so a command added later is fuzzed with no change here).
//!
//! The generator is a seeded xorshift (the seed is printed; `GOKV_FUZZ_SEED` reruns one, and
//! `GOKV_FUZZ_ROUNDS` runs longer): each round opens a connection, logs in, maybe SELECTs a
//! partition (the Redis face), sends a pipeline of random requests, half-closes, and reads
//! every reply until the server closes.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use gokv::command::COMMANDS;

/// Rounds (a connection and a pipeline each) per phase, unless `GOKV_FUZZ_ROUNDS` says.
const ROUNDS: usize = 500;
/// Requests per pipeline.
const PIPELINE: usize = 24;
/// How long a round's replies may take. A request that parks its connection (`WAIT 1 0`,
/// a subscription) leaves it open past this: the round then just drops the connection.
const ROUND_TIMEOUT: Duration = Duration::from_secs(3);

/// Logins: each failing one is a full argon2 check, so they would only slow the run, and
/// the login paths have tests of their own (tests/auth.rs, tests/preauth.rs).
const SKIPPED: &[&str] = &["auth", "login", "hello"];

/// Arguments are drawn from these (and from a few generated ones: see [`Gen::arg`]): the
/// partitions that exist and one that does not, keys that exist, numbers at and past the
/// edges, and the option words of the commands.
const TOKENS: &[&str] = &[
    "p",
    "n",
    "*",
    "missing",
    "",
    "k0",
    "k1",
    "k2",
    "k3",
    "p:ch",
    "n:*",
    "0",
    "1",
    "-1",
    "2",
    "7",
    "100",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "1.5",
    "nan",
    "inf",
    "-inf",
    "1e3",
    "0x10",
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "KEEPTTL",
    "GET",
    "NX",
    "XX",
    "GT",
    "LT",
    "PERSIST",
    "COUNT",
    "MATCH",
    "TYPE",
    "string",
    "ON",
    "TO",
    "FROM",
    "READ",
    "WRITE",
    "ADMIN",
    "DEFAULT",
    "NONE",
    "PASSWORD",
    "SET",
    "STRING",
    "INT",
    "MEMORY",
    "SYNC",
    "ASYNC",
    "max-memory",
    "max-keys",
    "max-ops",
    "default-ttl",
    "eviction",
    "allkeys-lru",
    "volatile-ttl",
    "1gb",
    "99999999gb",
    "LIST",
    "ID",
    "ADDR",
    "USER",
    "SKIPME",
    "yes",
    "no",
    "NO",
    "ONE",
    "RESETSTAT",
    "REWRITE",
    "maxmemory",
    "client-output-limit",
    "LIB-NAME",
    "DOCS",
    "INFO",
    "COUNT",
    "KEYS",
    "ASYNC",
    "HISTORY",
    "LATEST",
    "RESET",
    "SEGFAULT",
    "SLEEP",
    "OBJECT",
    "JMAP",
    "*?[",
    "[",
    "\\",
    "a\r\nb",
    "\u{0}",
    "ü",
    "admin",
    "reader",
    "writer",
];

/// xorshift64*: deterministic from its seed, good enough to pick tokens.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One argument: mostly a token, sometimes a long run of bytes, a number, or bytes that
    /// are not UTF-8.
    fn arg(&mut self) -> Vec<u8> {
        match self.below(20) {
            0 => vec![b'x'; 1 + self.below(70_000)],
            1 => (0..1 + self.below(16)).map(|_| self.next() as u8).collect(),
            2 => (self.next() as i64).to_string().into_bytes(),
            _ => TOKENS[self.below(TOKENS.len())].as_bytes().to_vec(),
        }
    }

    /// A request: a command's words, then up to its arity and a few more arguments.
    fn request(&mut self) -> Vec<Vec<u8>> {
        let specs: Vec<_> = COMMANDS
            .iter()
            .filter(|s| !SKIPPED.contains(&s.name))
            .collect();
        let spec = specs[self.below(specs.len())];
        let mut args: Vec<Vec<u8>> = spec
            .name
            .split(' ')
            .map(|w| w.to_ascii_uppercase().into_bytes())
            .collect();
        let extra = spec.arity.unsigned_abs() as usize + 3;
        for _ in 0..self.below(extra + 1) {
            args.push(self.arg());
        }
        args
    }
}

/// The fields of `DESCRIBE PARTITION` that count keys: a writer changes them.
const COUNTS: &[&str] = &["keys", "expires", "expired_keys", "evicted_keys"];

/// What the test compares before and after: everything an admin can see except the data of
/// the partitions the fuzzed user may write.
fn state(server: &Server, writable: &[&str]) -> Vec<String> {
    let mut admin = server.raw();
    let mut out = Vec::new();
    let texts = |admin: &mut RawConn, out: &mut Vec<String>, args: &[&str]| {
        let reply = admin.call(args);
        out.push(format!("{args:?} -> {}", show(&reply)));
    };
    texts(&mut admin, &mut out, &["LIST", "PARTITIONS"]);
    texts(&mut admin, &mut out, &["LIST", "USERS"]);
    for user in ["admin", "reader", "writer"] {
        texts(&mut admin, &mut out, &["DESCRIBE", "USER", user]);
    }
    texts(&mut admin, &mut out, &["CONFIG", "GET", "*"]);
    for partition in ["p", "n"] {
        if writable.contains(&partition) {
            // Its configuration, not its counts.
            let reply = admin.call(&["DESCRIBE", "PARTITION", partition]);
            let Ok(Some((Resp::Array(Some(items)), _))) = parse_resp(&reply) else {
                panic!("DESCRIBE PARTITION {partition}: {}", show(&reply));
            };
            for pair in items.chunks(2) {
                let name = pair[0].text();
                if !COUNTS.contains(&name.as_str()) {
                    out.push(format!("{partition}: {name} = {:?}", pair.get(1)));
                }
            }
            continue;
        }
        texts(&mut admin, &mut out, &["DESCRIBE", "PARTITION", partition]);
        for key in ["k0", "k1", "k2", "k3"] {
            texts(&mut admin, &mut out, &["GET", partition, key]);
            texts(&mut admin, &mut out, &["PEXPIRETIME", partition, key]);
        }
    }
    out
}

/// Replies of a phase: errors and the rest.
#[derive(Default)]
struct Replies {
    errors: usize,
    others: usize,
}

/// Sends one round's pipeline and reads every reply until the server closes (or the round
/// times out). Panics on a malformed reply: the server must always speak RESP.
fn round(server: &Server, user: &str, gen: &mut Gen, replies: &mut Replies) {
    let mut conn = match user {
        "" => server.raw_unauthenticated(),
        user => server.login(user, "pw"),
    };
    if !user.is_empty() && gen.below(2) == 0 {
        conn.expect(&cmd(&["SELECT", ["p", "n"][gen.below(2)]]), OK);
    }
    let mut bytes = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..PIPELINE {
        let request = gen.request();
        let args: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        bytes.extend_from_slice(&cmd_bytes(&args));
        sent.push(request);
    }
    // The server may close first (QUIT, CLIENT KILL, a request past a limit): what it
    // answered up to there is still read below.
    let _ = conn.stream.write_all(&bytes);
    let _ = conn.stream.shutdown(Shutdown::Write);
    // A parked connection (WAIT, a subscription) stays open: the round is over then too.
    let (got, end) = conn.replies_until_closed(ROUND_TIMEOUT);
    if let ReadEnd::Malformed(e) = end {
        panic!("a malformed reply ({e}) to one of {sent:?}");
    }
    // Nothing to check per reply: a request's reply may be an error, several replies or
    // none (a subscription's, MULTI's), and the user's grants decide which.
    for reply in got {
        if reply.first() == Some(&b'-') {
            replies.errors += 1;
        } else {
            replies.others += 1;
        }
    }
}

fn rounds() -> usize {
    std::env::var("GOKV_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

fn seed() -> u64 {
    let seed = std::env::var("GOKV_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("command_fuzz: GOKV_FUZZ_SEED={seed}");
    seed
}

#[test]
fn random_requests_of_every_command_change_nothing_past_the_users_grants() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    for request in [
        &["CREATE", "PARTITION", "p", "STRING", "MEMORY"][..],
        &["CREATE", "PARTITION", "n", "INT", "SYNC"],
        &["CREATE", "USER", "reader", "pw"],
        &["GRANT", "READ", "ON", "p", "TO", "reader"],
        &["GRANT", "READ", "ON", "n", "TO", "reader"],
        &["CREATE", "USER", "writer", "pw"],
        &["GRANT", "WRITE", "ON", "p", "TO", "writer"],
        &["GRANT", "READ", "ON", "n", "TO", "writer"],
        &["SET", "p", "k0", "zero"],
        &["SET", "p", "k1", "one", "EX", "100000"],
        &["SET", "n", "k0", "7"],
        &["SET", "n", "k2", "-9223372036854775808", "PX", "99999999"],
    ] {
        admin.expect(&cmd(request), OK);
    }
    let mut gen = Gen(seed());
    // "": a peer that never logs in.
    for (user, writable) in [("", &[][..]), ("reader", &[]), ("writer", &["p"])] {
        let before = state(&server, writable);
        let mut replies = Replies::default();
        for _ in 0..rounds() {
            round(&server, user, &mut gen, &mut replies);
        }
        // Neither everything refused (a login gone wrong) nor nothing refused.
        assert!(
            replies.errors > 0 && replies.others > 0,
            "user {user}: {} errors, {} other replies",
            replies.errors,
            replies.others
        );
        let mut alive = server.raw();
        alive.expect(&cmd(&["PING"]), b"+PONG\r\n");
        let after = state(&server, writable);
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b, a, "user {user} changed what it may not");
        }
        assert_eq!(before.len(), after.len());
    }
}

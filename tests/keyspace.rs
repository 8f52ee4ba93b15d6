//! The keyspace and string family (docs/commands.md: the strings, counters, expiry and keys
//! families) as one differential table: every row is a short script of Redis-form commands,
//! run on a fresh database of a real `redis-server` (after `FLUSHALL`) and on a fresh `STRING`
//! partition of GoKV (the partition inserted as argument 1: `SET k v EX 10` becomes
//! `SET <p> k v EX 10`), and every reply is compared byte for byte, under RESP2 and again under
//! RESP3 (`HELLO 3`). Each family runs twice: in GoKV's grammar (partition inserted) and on the
//! Redis face (`*_on_the_redis_face`: the connection `SELECT`s the partition, then sends the
//! rows exactly as Redis gets them, and every reply, arity errors included, must be Redis's).
//!
//! Running it:
//! - against Redis and GoKV (the default; CI, where `.ci/run` installs redis-server and sets
//!   `GOKV_REQUIRE_REDIS=1` so that nothing is skipped):
//!   `cargo test --features gokv/fault-injection --test keyspace`
//! - against Redis only (checks the rows themselves: their tolerances and 7.2 notes):
//!   `KEYSPACE_AGAINST=redis cargo test --features gokv/fault-injection --test keyspace`
//! - `KEYSPACE_SHOW=1` prints every command with Redis's reply (`-- --nocapture`), for writing
//!   rows; `REDIS_SERVER_BIN` picks another redis-server (a 7.2 build). Without redis-server
//!   (and without `GOKV_REQUIRE_REDIS`) the table is skipped with a message: it has nothing to
//!   compare with. [`table_size`] needs no server and prints the table's size.
//!
//! One normalisation, GoKV's side only ([`redis_form`]): an arity error is Redis's text
//! followed by GoKV's form of the command, `-ERR wrong number of arguments for 'set' command
//! (GoKV: SET <partition> <key> <value> ...)`. The suffix is checked to be exactly the command
//! row's usage, then cut, and the rest compared with Redis's bytes as every other reply is.
//!
//! A reply that differs is a GoKV bug, or a schema rule. A schema rule never goes into the
//! differential table: its rows live in [`SCHEMA_RULES`] (GoKV only, expected replies written
//! out, the rule named), so the first table stays "exactly as Redis".
//!
//! How a row is written: one string per command, words split on spaces; `"..."` quotes a word
//! (escapes `\"` `\\` `\r` `\n` `\xHH`; `""` is the empty word) and `"ab"x300` repeats it;
//! `@N:k` expands to the pairs `k0 0 k1 1 ... k<N-1> <N-1>`. `SLEEP <ms>` sleeps on both sides.
//! A suffix says how to compare when bytes cannot be: `~ a..=b` (an integer within, both
//! sides: TTL/PTTL), `~ scan` (a SCAN walked to cursor 0 from the row's cursor; the set of keys
//! returned, cursors are opaque), `~ sorted` (KEYS as a sorted list), `~ fast` (exact, and each
//! server answers within [`FAST`]), `~ unissued` (a SCAN from a cursor the server never
//! issued: an error or a SCAN reply on each side, not compared). A deadline is made exact
//! with `EXAT`/`PXAT`/`EXPIREAT` at fixed future times, so `EXPIRETIME` compares byte for byte.
//!
//! Redis 7.0 (what `apt-get` installs) against 7.2 (the reference). Where the two differ for
//! these commands, and why no row needs a 7.2 override (a row that did would have to state the
//! 7.2 reply itself and hold GoKV to it):
//! - `GETRANGE` with a negative end before the start (`GETRANGE k 0 -100` on "hello" answers
//!   "h"): changed for 7.2 by redis#12272, reverted before 7.2.0 (7.2.4 and 7.2.5 still answer
//!   "h"), shipped in 8.0. The same in both; so GoKV must answer "h".
//! - `SCAN ... TYPE <unknown type>`: an error only from 8.0 (postponed from 7.2); both walk and
//!   return no keys.
//! - The exponential `*a*a*...b` glob (CVE-2022-36021) was bounded in 7.0.9, the `SETRANGE`
//!   offset overflow (CVE-2022-35977) fixed in 7.0.8: 7.0.15 has both fixes, as 7.2 does.
//! - `SETRANGE`/`APPEND` past 512 MB answer `string exceeds maximum allowed size
//!   (proto-max-bulk-len)` since 7.0.
//!
//! The deadlines the rows use are 2100-01-01 (`4102444800` s) and `4102444800600` ms, far in
//! the future and fixed, so that `EXPIRETIME` and `PEXPIRETIME` compare byte for byte.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

/// How long a server may take for a `~ fast` command (a pathological glob): a linear or
/// bounded matcher answers in microseconds, an exponential one never.
const FAST: Duration = Duration::from_secs(2);

// ------------------------------------------------------------------------------------------
// The table
// ------------------------------------------------------------------------------------------

/// One row: a script run on a fresh database.
type Row = &'static [&'static str];

/// SET and every option.
#[rustfmt::skip]
const SET: &[Row] = &[
    &["SET k v", "GET k", "SET k w", "GET k"],
    &["SET k \"\"", "GET k", "STRLEN k", "EXISTS k"],
    &["SET k \"a\\r\\nb\\x00c\"", "GET k", "STRLEN k"],
    &["SET k v NX", "SET k w NX", "GET k"],
    &["SET k v XX", "EXISTS k", "SET k v", "SET k w XX", "GET k"],
    &["SET k v nx", "SET k w xx", "GET k"],
    // Options Redis refuses together.
    &["SET k v NX XX", "SET k v XX NX", "EXISTS k"],
    &["SET k v EX 10 PX 10", "SET k v PX 10 EX 10", "EXISTS k"],
    &["SET k v EX 10 EXAT 4102444800", "SET k v PX 10 PXAT 4102444800600"],
    &["SET k v EXAT 4102444800 PXAT 4102444800600"],
    &["SET k v EX 10 KEEPTTL", "SET k v KEEPTTL EX 1", "SET k v KEEPTTL PXAT 1"],
    &["SET k v EX 10 EX 20", "TTL k ~ 19..=20"],
    &["SET k v NX NX", "SET k v GET GET", "SET k v KEEPTTL KEEPTTL", "GET k"],
    &["SET k v EX", "SET k v PX", "SET k v EXAT", "SET k v PXAT", "SET k v FOO"],
    &["SET k v EX 10 FOO", "SET k v GET 10", "EXISTS k"],
    // Times: zero, negative, overflowing, not numbers.
    &["SET k v EX 0", "SET k v EX -1", "SET k v PX 0", "SET k v PX -5", "EXISTS k"],
    &["SET k v EXAT 0", "SET k v PXAT 0", "SET k v EXAT -1", "SET k v PXAT -1"],
    &["SET k v EX 9223372036854775807", "SET k v PX 9223372036854775807"],
    &["SET k v EX 9223372036854775", "SET k v EX 9223372036854776"],
    &["SET k v PX 9223372036854775800", "SET k v EXAT 9223372036854775807"],
    &["SET k v EX 9223372036854775808", "SET k v PX -9223372036854775808"],
    &["SET k v PXAT 9223372036854775807", "PEXPIRETIME k", "TTL k ~ 9223370000000000..=9223372036854775"],
    &["SET k v PX abc", "SET k v EX 1.5", "SET k v EX 10abc", "SET k v EX \"\"", "SET k v EX \" 10\""],
    // Deadlines.
    &["SET k v EX 100", "TTL k ~ 99..=100", "PTTL k ~ 99000..=100000"],
    &["SET k v ex 100", "TTL k ~ 99..=100"],
    &["SET k v PX 100000", "PTTL k ~ 99000..=100000", "TTL k ~ 99..=100"],
    &["SET k v EXAT 4102444800", "EXPIRETIME k", "PEXPIRETIME k"],
    &["SET k v PXAT 4102444800600", "PEXPIRETIME k", "EXPIRETIME k"],
    &["SET k v EXAT 1", "GET k", "EXISTS k", "TTL k"],
    &["SET k v PXAT 1", "GET k", "EXISTS k"],
    &["SET k v", "SET k w PXAT 1", "GET k"],
    &["SET k v EX 100", "SET k w", "TTL k", "GET k"],
    &["SET k v EX 100", "SET k w KEEPTTL", "TTL k ~ 99..=100", "GET k"],
    &["SET k v KEEPTTL", "TTL k", "GET k"],
    &["SET k v EX 100", "SET k w XX KEEPTTL", "TTL k ~ 99..=100"],
    &["SET k v EX 100", "SET k w NX EX 5", "TTL k ~ 99..=100"],
    // GET.
    &["SET k v GET", "GET k"],
    &["SET k v", "SET k w GET", "GET k"],
    &["SET k v NX GET", "SET k w NX GET", "GET k"],
    &["SET k v XX GET", "EXISTS k", "SET k v", "SET k w XX GET", "GET k"],
    &["SET k v GET EX 100", "TTL k ~ 99..=100"],
    &["SET k v EX 100", "SET k w GET KEEPTTL", "TTL k ~ 99..=100", "SET k x GET", "TTL k"],
    &["SET k v", "SET k w GET EX 0", "GET k"],
    // Arity.
    &["SET", "SET k", "EXISTS k"],
];

/// SETNX SETEX PSETEX GETSET GETDEL GETEX MSETNX.
#[rustfmt::skip]
const SET_VARIANTS: &[Row] = &[
    &["SETNX k v", "SETNX k w", "GET k"],
    &["SETNX k v", "EXPIRE k 100", "SETNX k w", "TTL k ~ 99..=100"],
    &["SETNX", "SETNX k", "SETNX k v x", "EXISTS k"],
    &["SETEX k 100 v", "TTL k ~ 99..=100", "GET k"],
    &["SET k v", "SETEX k 100 w", "GET k", "TTL k ~ 99..=100"],
    &["SETEX k 0 v", "SETEX k -1 v", "SETEX k abc v", "SETEX k 1.5 v", "EXISTS k"],
    &["SETEX k 9223372036854775807 v", "SETEX k 9223372036854776 v", "EXISTS k"],
    &["SETEX k 100", "SETEX k 100 v x", "SETEX k"],
    &["PSETEX k 100000 v", "PTTL k ~ 99000..=100000", "GET k"],
    &["PSETEX k 0 v", "PSETEX k -1 v", "PSETEX k 1.5 v", "PSETEX k abc v", "EXISTS k"],
    &["PSETEX k 9223372036854775807 v", "EXISTS k"],
    &["PSETEX k 100", "PSETEX k 100 v x"],
    &["GETSET k v", "GET k", "GETSET k w", "GET k"],
    &["SET k v EX 100", "GETSET k w", "TTL k", "GET k"],
    &["GETSET k", "GETSET k v w", "GETSET"],
    &["GETDEL k", "SET k v", "GETDEL k", "EXISTS k", "GETDEL k"],
    &["SET k v EX 100", "GETDEL k", "TTL k"],
    &["GETDEL", "GETDEL k x"],
    &["GETEX k", "SET k v", "GETEX k", "TTL k"],
    &["SET k v", "GETEX k EX 100", "TTL k ~ 99..=100"],
    &["SET k v", "GETEX k PX 100000", "PTTL k ~ 99000..=100000"],
    &["SET k v", "GETEX k EXAT 4102444800", "EXPIRETIME k"],
    &["SET k v", "GETEX k PXAT 4102444800600", "PEXPIRETIME k"],
    &["SET k v EX 100", "GETEX k PERSIST", "TTL k", "GETEX k persist"],
    &["SET k v EX 100", "GETEX k", "TTL k ~ 99..=100"],
    &["SET k v", "GETEX k EXAT 1", "EXISTS k"],
    &["SET k v", "GETEX k PXAT 1", "GET k"],
    &["SET k v", "GETEX k PERSIST EX 1", "GETEX k EX 1 PERSIST", "GETEX k EX 1 PX 1"],
    &["SET k v", "GETEX k EXAT 4102444800 PXAT 4102444800600", "GETEX k PX 1 EX 1", "TTL k"],
    &["SET k v", "GETEX k EX 0", "GETEX k EX -1", "GETEX k PX 0", "GETEX k EXAT 0", "TTL k"],
    &["SET k v", "GETEX k PX abc", "GETEX k EX 9223372036854775807", "GETEX k EX 1.5"],
    &["SET k v", "GETEX k EX", "GETEX k KEEPTTL", "GETEX k FOO", "GETEX k PERSIST PERSIST"],
    &["GETEX k EX 0", "GETEX k FOO", "GETEX k PERSIST EX 1", "GETEX k EX 10"],
    &["GETEX"],
    &["MSETNX a 1 b 2", "MGET a b"],
    &["SET b x", "MSETNX a 1 b 2", "MGET a b"],
    &["MSETNX a 1 a 2", "GET a", "MSETNX a 3", "GET a"],
    &["MSETNX", "MSETNX a", "MSETNX a 1 b", "EXISTS a b"],
];

/// EXPIRE PEXPIRE EXPIREAT PEXPIREAT with NX XX GT LT; TTL PTTL EXPIRETIME PEXPIRETIME
/// PERSIST; expiry itself.
#[rustfmt::skip]
const EXPIRE: &[Row] = &[
    &["EXPIRE k 100", "PEXPIRE k 100", "EXPIREAT k 4102444800", "PEXPIREAT k 4102444800600"],
    &["SET k v", "EXPIRE k 100", "TTL k ~ 99..=100", "PTTL k ~ 99000..=100000"],
    &["SET k v", "PEXPIRE k 100000", "PTTL k ~ 99000..=100000"],
    &["SET k v", "EXPIREAT k 4102444800", "EXPIRETIME k", "PEXPIRETIME k"],
    &["SET k v", "PEXPIREAT k 4102444800600", "PEXPIRETIME k", "EXPIRETIME k"],
    &["SET k v", "PEXPIREAT k 4102444800400", "EXPIRETIME k"],
    // Zero, negative and past times delete the key.
    &["SET k v", "EXPIRE k 0", "EXISTS k"],
    &["SET k v", "EXPIRE k -1", "GET k"],
    &["SET k v", "PEXPIRE k -100", "EXISTS k"],
    &["SET k v", "EXPIREAT k 1", "EXISTS k", "TTL k"],
    &["SET k v", "PEXPIREAT k -1", "EXISTS k"],
    &["SET k v", "EXPIREAT k 0", "EXISTS k"],
    // Overflowing and non-numeric times.
    &["SET k v", "EXPIRE k 9223372036854775807", "EXPIRE k -9223372036854775808", "TTL k"],
    &["SET k v", "EXPIRE k 9223372036854775", "EXPIRE k 9223372036854776", "TTL k"],
    &["SET k v", "PEXPIRE k 9223372036854775807", "EXPIREAT k 9223372036854775807", "TTL k"],
    &["SET k v", "PEXPIREAT k 9223372036854775807", "PEXPIRETIME k"],
    &["SET k v", "PEXPIRE k -9223372036854775808", "EXISTS k"],
    &["SET k v", "EXPIRE k abc", "EXPIRE k 1.5", "EXPIRE k 9223372036854775808", "EXPIRE k \"\""],
    &["SET k v", "PEXPIREAT k abc", "EXPIREAT k 1e3", "TTL k"],
    // NX XX GT LT.
    &["SET k v", "EXPIRE k 100 NX", "EXPIRE k 200 NX", "TTL k ~ 99..=100"],
    &["SET k v", "EXPIRE k 100 XX", "TTL k", "EXPIRE k 100", "EXPIRE k 200 XX", "TTL k ~ 199..=200"],
    &["SET k v", "EXPIRE k 100 GT", "TTL k", "EXPIRE k 100 LT", "TTL k ~ 99..=100"],
    &["SET k v EX 100", "EXPIRE k 200 GT", "TTL k ~ 199..=200", "EXPIRE k 100 GT", "TTL k ~ 199..=200"],
    &["SET k v EX 100", "EXPIRE k 50 LT", "TTL k ~ 49..=50", "EXPIRE k 80 LT", "TTL k ~ 49..=50"],
    &["SET k v EXAT 4102444800", "EXPIREAT k 4102444800 GT", "EXPIREAT k 4102444800 LT"],
    &["SET k v EXAT 4102444800", "EXPIREAT k 4102444801 GT", "EXPIRETIME k", "EXPIREAT k 4102444700 LT", "EXPIRETIME k"],
    &["SET k v PXAT 4102444800600", "PEXPIREAT k 4102444800601 LT", "PEXPIREAT k 4102444800599 GT", "PEXPIRETIME k"],
    &["SET k v EX 100", "EXPIRE k 200 XX GT", "TTL k ~ 199..=200", "EXPIRE k 300 XX LT", "TTL k ~ 199..=200"],
    &["SET k v", "EXPIRE k -1 GT", "EXISTS k", "EXPIRE k -1 LT", "EXISTS k"],
    &["SET k v EX 100", "EXPIRE k -1 NX", "EXISTS k", "EXPIRE k -1 XX", "EXISTS k"],
    &["SET k v", "EXPIRE k 10 nx", "TTL k ~ 9..=10", "PEXPIRE k 5000 lt", "PTTL k ~ 4000..=5000"],
    // Options Redis refuses.
    &["SET k v", "EXPIRE k 10 NX XX", "EXPIRE k 10 GT LT", "EXPIRE k 10 NX GT", "EXPIRE k 10 NX LT", "TTL k"],
    &["SET k v", "EXPIRE k 10 LT GT", "EXPIRE k 10 XX NX", "EXPIRE k 10 FOO", "EXPIRE k 10 NX FOO", "TTL k"],
    &["SET k v", "PEXPIRE k 10 NX XX", "EXPIREAT k 4102444800 GT LT", "PEXPIREAT k 4102444800600 NX GT"],
    &["SET k v", "EXPIRE k 10 NX NX", "TTL k ~ 9..=10", "EXPIRE k 20 GT GT", "TTL k ~ 19..=20"],
    &["EXPIRE k 10 NX XX", "EXPIRE k abc", "EXPIRE k abc NX"],
    // Arity.
    &["EXPIRE", "EXPIRE k", "PEXPIRE k", "EXPIREAT k", "PEXPIREAT k", "PEXPIREAT"],
    // TTL PTTL EXPIRETIME PEXPIRETIME PERSIST.
    &["TTL k", "PTTL k", "EXPIRETIME k", "PEXPIRETIME k"],
    &["SET k v", "TTL k", "PTTL k", "EXPIRETIME k", "PEXPIRETIME k"],
    &["PERSIST k", "SET k v", "PERSIST k", "SET k v EX 100", "PERSIST k", "TTL k", "PERSIST k"],
    &["TTL", "TTL k x", "PTTL", "PTTL k x", "EXPIRETIME", "EXPIRETIME k x", "PEXPIRETIME"],
    &["PEXPIRETIME k x", "PERSIST", "PERSIST k x"],
    // Expiry: invisible to every command once the deadline passes.
    &["SET k v PX 50", "SLEEP 120", "GET k", "EXISTS k", "TTL k", "PTTL k"],
    &["SET k v", "PEXPIRE k 50", "SLEEP 120", "MGET k", "TYPE k", "STRLEN k", "GETRANGE k 0 -1"],
    &["SET k v PX 50", "SLEEP 120", "SET k w NX", "GET k", "TTL k"],
    &["SET k v PX 50", "SLEEP 120", "EXPIRE k 100", "PERSIST k", "TOUCH k", "GETDEL k", "RENAME k j"],
    &["SET k v PX 50", "SLEEP 120", "APPEND k w", "GET k", "TTL k"],
    &["SET k 5 PX 50", "SLEEP 120", "INCR k", "TTL k", "SETRANGE k 2 x", "GET k"],
    &["SET k v PX 50", "SLEEP 120", "MSETNX k w", "GET k"],
    &["MSET a 1 b 2", "PEXPIRE a 50", "SLEEP 120", "KEYS * ~ sorted", "SCAN 0 ~ scan", "EXISTS a b"],
];

/// TYPE TOUCH EXISTS DEL UNLINK RENAME RENAMENX DBSIZE, and GET MGET MSET.
#[rustfmt::skip]
const KEYSPACE: &[Row] = &[
    &["TYPE k", "SET k v", "TYPE k", "SET n 12", "TYPE n"],
    &["TYPE", "TYPE k x"],
    &["SET a 1", "SET b 2", "TOUCH a b c a", "TOUCH c", "TOUCH"],
    &["EXISTS a a b", "SET a 1", "EXISTS a a b a", "EXISTS", "EXISTS a"],
    &["SET a 1", "SET b 2", "DEL a a c", "EXISTS a b", "DEL b", "DEL b", "DEL"],
    &["SET a 1", "SET b 2", "UNLINK a b c b", "DBSIZE", "UNLINK a", "UNLINK"],
    &["RENAME a b", "EXISTS a b"],
    &["SET a 1", "RENAME a b", "GET a", "GET b", "DBSIZE"],
    &["SET a 1", "SET b 2", "RENAME a b", "GET b", "GET a", "DBSIZE"],
    &["SET a 1", "RENAME a a", "GET a", "RENAMENX a a", "GET a"],
    &["RENAME a a", "RENAMENX a a"],
    &["SET a 1 EX 100", "RENAME a b", "TTL b ~ 99..=100", "TTL a"],
    &["SET a 1", "SET b 2 EX 100", "RENAME a b", "TTL b"],
    &["SET a 1 EXAT 4102444800", "RENAME a a", "EXPIRETIME a"],
    &["SET a 1", "SET b 2", "RENAMENX a b", "GET a", "GET b"],
    &["SET a 1", "RENAMENX a b", "EXISTS a b", "GET b"],
    &["RENAMENX a b", "EXISTS b"],
    &["SET a 1 EX 100", "RENAMENX a b", "TTL b ~ 99..=100"],
    &["RENAME", "RENAME a", "RENAME a b c", "RENAMENX", "RENAMENX a", "RENAMENX a b c"],
    &["DBSIZE", "MSET a 1 b 2 c 3", "DBSIZE", "DEL a", "DBSIZE", "SET b 5", "DBSIZE"],
    &["SET k v EX 100", "DBSIZE", "PERSIST k", "DBSIZE"],
    &["DBSIZE x"],
    &["MSET a 1 b 2", "MGET a b c a", "MGET c"],
    &["MSET a 1 a 2", "GET a", "SET a 3", "MSET a 4 b 5", "MGET a b"],
    &["SET a 1 EX 100", "MSET a 2", "TTL a", "GET a"],
    &["MSET", "MSET a", "MSET a 1 b", "EXISTS a b", "MGET", "GET", "GET a b"],
];

/// STRLEN GETRANGE APPEND SETRANGE and the INCR family on strings.
#[rustfmt::skip]
const STRINGS: &[Row] = &[
    &["STRLEN k", "SET k hello", "STRLEN k", "SET k 12345", "STRLEN k"],
    &["STRLEN", "STRLEN k x"],
    &["GETRANGE k 0 -1", "GETRANGE k 5 10", "EXISTS k"],
    &["SET k hello", "GETRANGE k 0 -1", "GETRANGE k 1 3", "GETRANGE k -3 -1", "GETRANGE k 0 0", "GETRANGE k 4 4"],
    &["SET k hello", "GETRANGE k -100 100", "GETRANGE k 0 -100", "GETRANGE k -100 -99", "GETRANGE k -100 -100"],
    &["SET k hello", "GETRANGE k 3 1", "GETRANGE k 5 10", "GETRANGE k 100 200", "GETRANGE k -1 -3", "GETRANGE k 2 -4"],
    &["SET k hello", "GETRANGE k 0 9223372036854775807", "GETRANGE k -9223372036854775808 1"],
    &["SET k hello", "GETRANGE k a 1", "GETRANGE k 0 1.5", "GETRANGE k 0 9223372036854775808"],
    &["SET k \"\"", "GETRANGE k 0 -1", "GETRANGE k 0 0", "GETRANGE k -1 0"],
    &["SET k 12345", "GETRANGE k 1 2", "GETRANGE k -2 -1"],
    &["GETRANGE k 0", "GETRANGE k 0 1 2", "GETRANGE"],
    &["APPEND k abc", "GET k", "APPEND k \"\"", "GET k"],
    &["SET k ab", "APPEND k cd", "GET k", "STRLEN k"],
    &["APPEND k \"\"", "EXISTS k", "GET k"],
    &["SET k v EX 100", "APPEND k w", "TTL k ~ 99..=100", "GET k"],
    &["SET k 10", "APPEND k 5", "INCR k", "GET k"],
    &["APPEND k", "APPEND k a b", "APPEND"],
    &["SETRANGE k 0 abc", "GET k"],
    &["SETRANGE k 3 abc", "GET k", "STRLEN k"],
    &["SET k hello", "SETRANGE k 1 EY", "GET k", "SETRANGE k 10 x", "GET k", "STRLEN k"],
    &["SETRANGE k 5 \"\"", "EXISTS k", "SET k hello", "SETRANGE k 20 \"\"", "GET k"],
    &["SETRANGE k -1 x", "SETRANGE k abc x", "SETRANGE k 1.5 x", "EXISTS k"],
    &["SETRANGE k 536870912 x", "SETRANGE k 536870911 xy", "SETRANGE k 9223372036854775807 x", "EXISTS k"],
    &["SET k hello", "SETRANGE k 536870912 x", "SETRANGE k -1 x", "GET k"],
    &["SETRANGE k 536870912 \"\"", "SET k v", "SETRANGE k 536870912 \"\"", "SETRANGE k -1 \"\""],
    &["SET k v EX 100", "SETRANGE k 0 w", "TTL k ~ 99..=100", "GET k"],
    &["SET k 12345", "SETRANGE k 0 9", "INCR k", "GET k"],
    &["SETRANGE k 0", "SETRANGE k 0 a b", "SETRANGE"],
    // INCR DECR INCRBY DECRBY on strings: stored back as a string.
    &["SET k 10", "INCR k", "GET k", "TYPE k", "STRLEN k"],
    &["INCR k", "GET k", "DECR k", "DECR k", "GET k"],
    &["INCRBY k 5", "DECRBY k 7", "GET k", "INCRBY k -3", "DECRBY k -10", "GET k"],
    &["SET k -5", "INCR k", "GET k", "APPEND k 0", "INCRBY k 1", "GET k"],
    &["SET k abc", "INCR k", "GET k", "DECR k", "INCRBY k 1", "DECRBY k 1"],
    &["SET k \" 1\"", "INCR k", "SET k \"1 \"", "INCR k", "SET k 01", "INCR k", "GET k"],
    &["SET k +1", "INCR k", "SET k -0", "INCR k", "SET k 1.0", "INCR k", "SET k 0x1", "INCR k"],
    &["SET k \"\"", "INCR k", "SET k -", "DECR k", "SET k 99999999999999999999", "INCR k"],
    &["SET k 9223372036854775807", "INCR k", "GET k", "DECR k", "GET k"],
    &["SET k 9223372036854775806", "INCR k", "GET k", "INCR k"],
    &["SET k -9223372036854775808", "DECR k", "INCRBY k -1", "DECRBY k 1", "INCR k", "GET k"],
    &["SET k 0", "DECRBY k -9223372036854775808", "INCRBY k 9223372036854775807", "INCRBY k 1"],
    &["SET k 1", "INCRBY k abc", "INCRBY k 1.5", "INCRBY k 01", "DECRBY k \"\"", "GET k"],
    &["SET k 5 EX 100", "INCR k", "TTL k ~ 99..=100", "DECRBY k 2", "TTL k ~ 99..=100", "GET k"],
    &["SET k 0", "INCRBY k 9223372036854775808", "INCRBY k -9223372036854775809", "GET k"],
    &["INCR", "INCR k x", "DECR", "DECR k x", "INCRBY k", "INCRBY k 1 2", "DECRBY", "DECRBY k"],
];

/// SCAN (MATCH, COUNT, TYPE) and KEYS.
#[rustfmt::skip]
const SCAN_KEYS: &[Row] = &[
    &["KEYS *", "SCAN 0 ~ scan", "SCAN 0"],
    &["MSET a1 1 a2 2 b1 3 ab 4 \"a*\" 5", "KEYS * ~ sorted", "KEYS a* ~ sorted", "KEYS a? ~ sorted"],
    &["MSET a1 1 a2 2 b1 3 ab 4", "KEYS [ab]1 ~ sorted", "KEYS [^a]* ~ sorted", "KEYS *1 ~ sorted", "KEYS [a-b]b ~ sorted"],
    &["MSET a1 1 \"a*\" 2 \"a?\" 3 A1 4", "KEYS a\\* ~ sorted", "KEYS a\\1 ~ sorted", "KEYS A* ~ sorted", "KEYS nomatch"],
    &["MSET a 1 b 2", "KEYS [ ~ sorted", "KEYS [a ~ sorted", "KEYS \\ ~ sorted", "KEYS [a-] ~ sorted", "KEYS a[ ~ sorted"],
    &["SET \"a\"x300 v", "KEYS *a*a*a*a*a*a*a*a*a*b ~ fast", "SCAN 0 MATCH *a*a*a*a*a*a*a*a*a*b ~ fast"],
    &["SET \"a\"x300 v", "KEYS *a*a*a*a*a*a*a*a*a*a ~ fast", "KEYS a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a ~ fast"],
    &["KEYS", "KEYS a b"],
    &["MSET a1 1 a2 2 b1 3 ab 4", "SCAN 0 ~ scan", "SCAN 0 MATCH a* ~ scan", "SCAN 0 MATCH a* COUNT 1 ~ scan"],
    &["MSET a1 1 a2 2 b1 3 ab 4", "SCAN 0 COUNT 1 ~ scan", "SCAN 0 match A* ~ scan", "SCAN 0 MATCH *1 count 100 ~ scan"],
    &["MSET a1 1 b1 2", "SCAN 0 TYPE string ~ scan", "SCAN 0 TYPE STRING ~ scan", "SCAN 0 TYPE list ~ scan"],
    &["MSET a1 1 b1 2", "SCAN 0 TYPE hash ~ scan", "SCAN 0 TYPE nosuchtype ~ scan", "SCAN 0 MATCH a* TYPE string COUNT 2 ~ scan"],
    &["MSET @300:k", "DBSIZE", "SCAN 0 ~ scan", "SCAN 0 COUNT 7 ~ scan", "SCAN 0 MATCH k1* COUNT 3 ~ scan", "KEYS k2? ~ sorted"],
    &["MSET @300:k", "SCAN 0 COUNT 1000 ~ scan", "SCAN 0 MATCH nomatch* ~ scan", "SCAN 0 TYPE string COUNT 5 ~ scan"],
    &["SCAN 0 COUNT 0", "SCAN 0 COUNT -1", "SCAN 0 COUNT abc", "SCAN 0 COUNT 1.5", "SCAN 0 COUNT 9223372036854775808"],
    &["MSET a 1 b 2", "SCAN abc", "SCAN 1.5", "SCAN 1x", "EXISTS a b"],
    // Cursors never issued: an error or a walk, never a crash (Redis walks from any number).
    &["MSET @50:k", "SCAN -1 ~ unissued", "SCAN \"\" ~ unissued", "SCAN 12345 ~ unissued", "DBSIZE"],
    &["MSET a 1", "SCAN 18446744073709551615 ~ unissued", "SCAN 18446744073709551616 ~ unissued", "GET a"],
    &["SCAN 0 MATCH", "SCAN 0 COUNT", "SCAN 0 TYPE", "SCAN 0 FOO bar", "SCAN 0 MATCH a* FOO"],
    &["SCAN"],
];

/// FLUSHDB and FLUSHALL, which name no partition: Redis grammar only (in GoKV's, a partition
/// inserted as argument 1 would be a modifier). As the only partition on its server, the
/// row's is all that the admin's FLUSHALL empties, as Redis's empties its one database.
#[rustfmt::skip]
const FLUSH: &[Row] = &[
    &["SET a 1", "SET b 2 EX 100", "FLUSHDB", "DBSIZE", "GET a", "TTL b"],
    &["SET a 1", "FLUSHDB ASYNC", "DBSIZE", "SET a 1", "FLUSHDB SYNC", "DBSIZE", "FLUSHDB async"],
    &["FLUSHDB BOGUS", "FLUSHDB ASYNC SYNC", "FLUSHDB SYNC ASYNC"],
    &["SET a 1", "SET b 2", "FLUSHALL", "DBSIZE", "EXISTS a b"],
    &["SET a 1", "FLUSHALL ASYNC", "DBSIZE", "SET a 1", "FLUSHALL SYNC", "DBSIZE", "FLUSHALL sync"],
    &["FLUSHALL BOGUS", "FLUSHALL ASYNC SYNC", "FLUSHALL ASYNC x"],
];

/// Every family, for [`table_size`].
const FAMILIES: &[(&str, &[Row])] = &[
    ("set", SET),
    ("set_variants", SET_VARIANTS),
    ("expire", EXPIRE),
    ("keyspace", KEYSPACE),
    ("strings", STRINGS),
    ("scan_keys", SCAN_KEYS),
    ("flush", FLUSH),
];

#[test]
fn flushdb_and_flushall_answer_as_redis_on_the_redis_face() {
    run_family("flush", FLUSH, Grammar::Selected);
}

#[test]
fn set_and_its_options_answer_as_redis() {
    run_family("set", SET, Grammar::PartitionInserted);
}

#[test]
fn set_and_its_options_answer_as_redis_on_the_redis_face() {
    run_family("set", SET, Grammar::Selected);
}

#[test]
fn setnx_setex_getset_getdel_getex_msetnx_answer_as_redis() {
    run_family("set_variants", SET_VARIANTS, Grammar::PartitionInserted);
}

#[test]
fn setnx_setex_getset_getdel_getex_msetnx_answer_as_redis_on_the_redis_face() {
    run_family("set_variants", SET_VARIANTS, Grammar::Selected);
}

#[test]
fn expire_ttl_persist_and_expiry_answer_as_redis() {
    run_family("expire", EXPIRE, Grammar::PartitionInserted);
}

#[test]
fn expire_ttl_persist_and_expiry_answer_as_redis_on_the_redis_face() {
    run_family("expire", EXPIRE, Grammar::Selected);
}

#[test]
fn type_touch_del_rename_dbsize_answer_as_redis() {
    run_family("keyspace", KEYSPACE, Grammar::PartitionInserted);
}

#[test]
fn type_touch_del_rename_dbsize_answer_as_redis_on_the_redis_face() {
    run_family("keyspace", KEYSPACE, Grammar::Selected);
}

#[test]
fn getrange_append_setrange_incr_answer_as_redis() {
    run_family("strings", STRINGS, Grammar::PartitionInserted);
}

#[test]
fn getrange_append_setrange_incr_answer_as_redis_on_the_redis_face() {
    run_family("strings", STRINGS, Grammar::Selected);
}

#[test]
fn scan_and_keys_answer_as_redis() {
    run_family("scan_keys", SCAN_KEYS, Grammar::PartitionInserted);
}

#[test]
fn scan_and_keys_answer_as_redis_on_the_redis_face() {
    run_family("scan_keys", SCAN_KEYS, Grammar::Selected);
}

/// Every row parses, and the table's size (commands x cases) is printed.
#[test]
fn table_size() {
    let (mut rows, mut commands) = (0, 0);
    for (family, table) in FAMILIES {
        let steps: usize = table.iter().map(|row| parse_row(row).len()).sum();
        println!("{family}: {} rows, {steps} commands", table.len());
        rows += table.len();
        commands += steps;
    }
    println!("keyspace table: {rows} rows, {commands} commands, each under RESP2 and RESP3");
    assert!(
        rows >= 150 && commands >= 500,
        "{rows} rows, {commands} commands"
    );
}

// ------------------------------------------------------------------------------------------
// Schema rules: where GoKV differs from Redis on purpose (GoKV only)
// ------------------------------------------------------------------------------------------

/// The reply GoKV gives a non-integer write to an `INT` partition
/// (`CommandError::NotAnInteger`, src/command/error.rs).
const NOT_INT: &str = "-WRONGTYPE value is not a canonical 64-bit integer (INT partition)";

/// (the rule, its script): each step is `command => reply`, on a fresh `INT` partition, RESP2.
/// The reply is the exact first line (`{NOT_INT}` stands for [`NOT_INT`]); one ending in `*`
/// is a prefix (where GoKV's text is its own choice, only the code is the rule); `a..=b` is an
/// integer within.
const SCHEMA_RULES: &[(&str, &[&str])] = &[
    (
        "INT: a write of a value that is not a canonical integer is -WRONGTYPE and writes nothing",
        &[
            "SET k abc => {NOT_INT}",
            "SET k 01 => {NOT_INT}",
            "SET k \" 1\" => {NOT_INT}",
            "SET k \"\" => {NOT_INT}",
            "SET k 9223372036854775808 => {NOT_INT}",
            "SET k abc EX 100 => {NOT_INT}",
            "SET k abc GET => {NOT_INT}",
            "SETNX k abc => {NOT_INT}",
            "SETEX k 100 abc => {NOT_INT}",
            "PSETEX k 100000 abc => {NOT_INT}",
            "GETSET k abc => {NOT_INT}",
            "MSET a 1 b x => {NOT_INT}",
            "MSETNX a 1 b x => {NOT_INT}",
            "EXISTS k a b => :0",
            "DBSIZE => :0",
        ],
    ),
    (
        "INT: a non-integer write does not touch the value that is there",
        &[
            "SET k 7 EX 100 => +OK",
            "SET k abc => {NOT_INT}",
            "GETSET k abc => {NOT_INT}",
            "MSET k x => {NOT_INT}",
            "GET k => :7",
            "TTL k => 99..=100",
        ],
    ),
    (
        "INT: string operations (APPEND, SETRANGE) are -WRONGTYPE",
        &[
            "SET k 12 => +OK",
            "APPEND k 3 => -WRONGTYPE *",
            "SETRANGE k 0 9 => -WRONGTYPE *",
            "GET k => :12",
            "APPEND n 3 => -WRONGTYPE *",
            "SETRANGE n 0 9 => -WRONGTYPE *",
            "EXISTS n => :0",
        ],
    ),
    (
        "INT: GET answers an integer reply; INCR, TTL and EXPIRE work",
        &[
            "SET k 10 EX 100 => +OK",
            "GET k => :10",
            "INCR k => :11",
            "GET k => :11",
            "TTL k => 99..=100",
            "EXPIRE k 200 => :1",
            "TTL k => 199..=200",
            "PERSIST k => :1",
            "TTL k => :-1",
            "INCRBY k -20 => :-9",
            "DECR k => :-10",
            "GET k => :-10",
            "GET missing => $-1",
            "SET m -9223372036854775808 => +OK",
            "GET m => :-9223372036854775808",
            "DECR m => -ERR increment or decrement would overflow",
        ],
    ),
];

#[test]
fn int_partitions_differ_from_redis_by_schema_rules_only() {
    if !against_gokv() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.raw();
    let mut steps = 0;
    for (i, (rule, script)) in SCHEMA_RULES.iter().enumerate() {
        let p = format!("int{i}");
        c.expect(&cmd(&["CREATE", "PARTITION", &p, "INT", "MEMORY"]), OK);
        for line in *script {
            let (command, expected) = line
                .split_once(" => ")
                .unwrap_or_else(|| panic!("{line:?}: no ' => <reply>'"));
            let expected = expected.replace("{NOT_INT}", NOT_INT);
            let mut args = words(command);
            args.insert(1, p.clone().into_bytes());
            let got = call_gokv(&mut c, &args);
            let text = String::from_utf8_lossy(&got);
            let ok = if let Some(prefix) = expected.strip_suffix('*') {
                text.starts_with(prefix)
            } else if let Some((lo, hi)) = parse_range(&expected) {
                matches!(reply_int(&got), Some(n) if (lo..=hi).contains(&n))
            } else {
                got == format!("{expected}\r\n").into_bytes()
            };
            assert!(
                ok,
                "{rule}\n  {command}: got {}, expected {expected}",
                show(&got)
            );
            steps += 1;
        }
        c.expect(&cmd(&["DROP", "PARTITION", &p]), OK);
    }
    println!(
        "schema rules: {} rules, {steps} commands",
        SCHEMA_RULES.len()
    );
}

// ------------------------------------------------------------------------------------------
// The runner
// ------------------------------------------------------------------------------------------

/// How a step's two replies are compared.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    Exact,
    /// Both integers within the range.
    Range(i64, i64),
    /// A SCAN walked to the end: the set of keys.
    Scan,
    /// A KEYS reply as a sorted list.
    Sorted,
    /// Exact, each within [`FAST`].
    Fast,
    /// A SCAN from a cursor the server never issued: an error or one SCAN reply, each side;
    /// not compared (Redis walks from any number, GoKV's cursors are its own).
    Unissued,
    /// No command: both sides wait this long.
    Sleep(Duration),
}

#[derive(Debug)]
struct Step {
    line: &'static str,
    args: Vec<Vec<u8>>,
    check: Check,
}

fn parse_row(row: Row) -> Vec<Step> {
    row.iter().map(|line| parse_step(line)).collect()
}

fn parse_step(line: &'static str) -> Step {
    let (command, check) = match line.rsplit_once(" ~ ") {
        None => (line, Check::Exact),
        Some((command, "scan")) => (command, Check::Scan),
        Some((command, "sorted")) => (command, Check::Sorted),
        Some((command, "fast")) => (command, Check::Fast),
        Some((command, "unissued")) => (command, Check::Unissued),
        Some((command, range)) => {
            let (lo, hi) = parse_range(range).unwrap_or_else(|| panic!("{line:?}: bad check"));
            (command, Check::Range(lo, hi))
        }
    };
    let args = words(command);
    assert!(!args.is_empty(), "{line:?}: no command");
    let check = if args[0] == b"SLEEP" {
        let ms: u64 = String::from_utf8_lossy(&args[1])
            .parse()
            .expect("SLEEP <ms>");
        Check::Sleep(Duration::from_millis(ms))
    } else {
        check
    };
    if check == Check::Scan {
        assert_eq!(args[0], b"SCAN", "{line:?}: '~ scan' is for SCAN");
    }
    Step { line, args, check }
}

fn parse_range(s: &str) -> Option<(i64, i64)> {
    let (lo, hi) = s.split_once("..=")?;
    Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?))
}

/// Splits a row's command into words (see the module docs for quoting, `"x"xN` and `@N:k`).
fn words(line: &str) -> Vec<Vec<u8>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && (b[i] != b' ' || (b[start] == b'"' && !closed(&b[start..i]))) {
            i += 1;
        }
        let word = &line[start..i];
        if let Some(quoted) = word.strip_prefix('"') {
            let (body, times) = match quoted.rsplit_once("\"x") {
                Some((body, n)) if n.bytes().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                    (body, n.parse().unwrap())
                }
                _ => (
                    quoted
                        .strip_suffix('"')
                        .unwrap_or_else(|| panic!("{line:?}: unterminated quote")),
                    1,
                ),
            };
            out.push(unescape(body, line).repeat(times));
        } else if let Some(spec) = word.strip_prefix('@') {
            let (n, prefix) = spec.split_once(':').expect("@N:prefix");
            for k in 0..n.parse::<usize>().expect("@N:prefix") {
                out.push(format!("{prefix}{k}").into_bytes());
                out.push(k.to_string().into_bytes());
            }
        } else {
            out.push(word.as_bytes().to_vec());
        }
    }
    out
}

/// Whether a word that opens with `"` has been closed by an unescaped `"` (and its `xN`).
fn closed(word: &[u8]) -> bool {
    let mut i = 1;
    while i < word.len() {
        match word[i] {
            b'\\' => i += 2,
            b'"' => return true,
            _ => i += 1,
        }
    }
    false
}

fn unescape(body: &str, line: &str) -> Vec<u8> {
    let b = body.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'"') => out.push(b'"'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = body.get(i + 2..i + 4).expect("\\xHH");
                out.push(u8::from_str_radix(hex, 16).expect("\\xHH"));
                i += 2;
            }
            _ => panic!("{line:?}: bad escape"),
        }
        i += 2;
    }
    out
}

/// Whether the GoKV halves run (`KEYSPACE_AGAINST=redis` runs the rows against Redis only).
fn against_gokv() -> bool {
    std::env::var("KEYSPACE_AGAINST").map_or(true, |v| v != "redis")
}

fn call_gokv(c: &mut RawConn, args: &[Vec<u8>]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    c.send(&cmd_bytes(&args));
    c.read_reply()
}

/// Either server, taking Redis-form commands.
trait Side {
    fn call(&mut self, args: &[Vec<u8>]) -> Vec<u8>;
}

impl Side for RedisConn {
    fn call(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        self.call_bytes(&args)
    }
}

/// A GoKV connection on one partition: the partition goes in as argument 1.
struct OnPartition<'a> {
    conn: &'a mut RawConn,
    partition: &'a str,
}

impl Side for OnPartition<'_> {
    fn call(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let mut args = args.to_vec();
        args.insert(1, self.partition.as_bytes().to_vec());
        redis_form(call_gokv(self.conn, &args))
    }
}

/// GoKV's reply as Redis words it: an arity error loses the ` (GoKV: <usage>)` it appends to
/// Redis's text, after checking that the usage is the command row's (see the module docs).
/// Every other reply is returned as it came.
fn redis_form(reply: Vec<u8>) -> Vec<u8> {
    const HEAD: &str = "-ERR wrong number of arguments for '";
    let text = String::from_utf8_lossy(&reply);
    let Some(rest) = text.strip_prefix(HEAD) else {
        return reply;
    };
    let (command, tail) = rest
        .split_once("' command")
        .unwrap_or_else(|| panic!("arity error without its command: {text:?}"));
    let row = gokv::command::COMMANDS
        .iter()
        .find(|row| row.name == command)
        .unwrap_or_else(|| panic!("arity error names no command of the table: {text:?}"));
    assert_eq!(
        tail,
        format!(" (GoKV: {})\r\n", row.usage),
        "GoKV's arity error appends the row's usage"
    );
    format!("{HEAD}{command}' command\r\n").into_bytes()
}

/// How GoKV gets the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grammar {
    /// GoKV's grammar: the row's partition inserted as argument 1 ([`OnPartition`]).
    PartitionInserted,
    /// The Redis face: the connection `SELECT`s the row's partition, then gets the commands
    /// exactly as Redis does, and must answer exactly as Redis does: no [`redis_form`]
    /// here, an arity error too is Redis's text alone.
    Selected,
}

/// A GoKV connection in Redis grammar (it has `SELECT`ed the row's partition).
struct Selected<'a>(&'a mut RawConn);

impl Side for Selected<'_> {
    fn call(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        call_gokv(self.0, args)
    }
}

/// Runs every row of `table` on Redis and (unless `KEYSPACE_AGAINST=redis`) GoKV, under RESP2
/// and RESP3. A Redis reply outside a row's own check is a bug in the row (panics at once); a
/// GoKV reply that differs is collected, the rest of that row skipped, and all of them are
/// reported at the end.
fn run_family(family: &str, table: &[Row], grammar: Grammar) {
    let Some(redis) = RealRedis::start(family) else {
        return;
    };
    let (major, minor, patch) = redis.version();
    let gokv = against_gokv().then(|| Server::start(&[]));
    let show_replies = std::env::var_os("KEYSPACE_SHOW").is_some();
    let mut differ = Vec::new();
    let mut commands = 0;
    for proto in [2, 3] {
        let mut r = redis.conn();
        let mut g = gokv.as_ref().map(Server::raw);
        if proto == 3 {
            assert!(r.call(&["HELLO", "3"]).starts_with(b"%"), "redis HELLO 3");
            if let Some(g) = g.as_mut() {
                assert!(g.call(&["HELLO", "3"]).starts_with(b"%"), "GoKV HELLO 3");
            }
        }
        for (i, row) in table.iter().enumerate() {
            assert_eq!(show(&r.call(&["FLUSHALL"])), show(OK));
            let partition = format!("{family}{i}_{proto}").replace('_', "-");
            if let Some(g) = g.as_mut() {
                g.expect(
                    &cmd(&["CREATE", "PARTITION", &partition, "STRING", "MEMORY"]),
                    OK,
                );
                if grammar == Grammar::Selected {
                    g.expect(&cmd(&["SELECT", &partition]), OK);
                }
            }
            for step in parse_row(row) {
                commands += 1;
                let (mut on, mut selected) = match grammar {
                    Grammar::PartitionInserted => (
                        g.as_mut().map(|conn| OnPartition {
                            conn,
                            partition: &partition,
                        }),
                        None,
                    ),
                    Grammar::Selected => (None, g.as_mut().map(Selected)),
                };
                let gokv_side = match (&mut on, &mut selected) {
                    (Some(s), _) => Some(s as &mut dyn Side),
                    (_, Some(s)) => Some(s as &mut dyn Side),
                    _ => None,
                };
                if let Err(why) = run_step(&step, &mut r, gokv_side, show_replies) {
                    differ.push(format!("RESP{proto} row {row:?}\n    {}: {why}", step.line));
                    break;
                }
            }
            if let Some(g) = g.as_mut() {
                g.expect(&cmd(&["DROP", "PARTITION", &partition]), OK);
            }
        }
    }
    println!(
        "keyspace {family}: {} rows x 2 protocols, {commands} commands, against redis-server \
         {major}.{minor}.{patch}{} ({grammar:?})",
        table.len(),
        if gokv.is_some() { " and GoKV" } else { " only" }
    );
    assert!(
        differ.is_empty(),
        "{family} ({grammar:?}): {} of {} rows (RESP2 and RESP3 counted apart) differ between \
         redis-server and GoKV (a GoKV bug, or a schema rule that belongs in SCHEMA_RULES):\n{}",
        differ.len(),
        table.len() * 2,
        differ.join("\n")
    );
}

/// Runs one step on both sides; `Err` says how GoKV's reply differs.
fn run_step(
    step: &Step,
    redis: &mut RedisConn,
    gokv: Option<&mut dyn Side>,
    show_replies: bool,
) -> Result<(), String> {
    if let Check::Sleep(d) = step.check {
        std::thread::sleep(d);
        return Ok(());
    }
    let (want, took) = timed(|| answer(&step.check, redis, &step.args));
    if show_replies {
        println!("  {:<60} {}", step.line, show(&want.0));
    }
    check_alone(step, &want, took).unwrap_or_else(|why| panic!("redis-server: {why}"));
    let Some(gokv) = gokv else {
        return Ok(());
    };
    let (got, took) = timed(|| answer(&step.check, gokv, &step.args));
    check_alone(step, &got, took)?;
    let same = match step.check {
        // Checked on each side.
        Check::Range(..) | Check::Unissued => true,
        _ => got.1 == want.1,
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "redis-server {} GoKV {}",
            show(&want.1),
            show(&got.1)
        ))
    }
}

/// A step's answer on one side: (the first reply's bytes, what is compared).
type Answer = (Vec<u8>, Vec<u8>);

fn answer(check: &Check, side: &mut dyn Side, args: &[Vec<u8>]) -> Answer {
    let first = side.call(args);
    let compared = match check {
        Check::Scan => scan_keys(side, args, &first),
        Check::Sorted => match parse_resp(&first) {
            Ok(Some((Resp::Array(Some(items)) | Resp::Set(items), _))) => {
                let mut keys: Vec<Vec<u8>> = items.iter().map(|k| k.bytes().to_vec()).collect();
                keys.sort();
                join(&keys)
            }
            _ => first.clone(),
        },
        _ => first.clone(),
    };
    (first, compared)
}

/// The keys a SCAN returns walked to cursor 0, sorted and deduplicated (each once: the set
/// is compared, a key returned twice is allowed as in Redis); an error reply as it came.
fn scan_keys(side: &mut dyn Side, args: &[Vec<u8>], first: &[u8]) -> Vec<u8> {
    let mut keys = BTreeSet::new();
    let mut reply = first.to_vec();
    for _ in 0..100_000 {
        let Ok(Some((Resp::Array(Some(parts)), _))) = parse_resp(&reply) else {
            return reply;
        };
        let [cursor, batch] = &parts[..] else {
            return reply;
        };
        keys.extend(batch.items().iter().map(|k| k.bytes().to_vec()));
        let cursor = cursor.bytes().to_vec();
        if cursor == b"0" {
            return join(&keys.into_iter().collect::<Vec<_>>());
        }
        let mut next = args.to_vec();
        next[1] = cursor;
        reply = side.call(&next);
    }
    panic!("SCAN did not come back to cursor 0 in 100000 calls: {args:?}")
}

fn join(keys: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("{} keys:", keys.len()).into_bytes();
    for k in keys {
        out.push(b' ');
        out.extend_from_slice(k);
    }
    out
}

/// The checks one side's answer must pass by itself (ranges, speed).
fn check_alone(step: &Step, answer: &Answer, took: Duration) -> Result<(), String> {
    match step.check {
        Check::Range(lo, hi) => match reply_int(&answer.0) {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(format!(
                "{} is not an integer in {lo}..={hi}",
                show(&answer.0)
            )),
        },
        Check::Fast if took > FAST => Err(format!("took {took:?} (more than {FAST:?})")),
        Check::Unissued => match parse_resp(&answer.0) {
            Ok(Some((Resp::Error(_), _))) => Ok(()),
            Ok(Some((Resp::Array(Some(parts)), _)))
                if parts.len() == 2 && matches!(parts[1], Resp::Array(Some(_))) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "{} is neither an error nor a SCAN reply",
                show(&answer.0)
            )),
        },
        _ => Ok(()),
    }
}

fn reply_int(reply: &[u8]) -> Option<i64> {
    match parse_resp(reply) {
        Ok(Some((Resp::Int(n), _))) => Some(n),
        _ => None,
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

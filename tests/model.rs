//! Property test: random command sequences over three partitions (one STRING, two INT) on a
//! 2-shard server, sent as one pipeline on one connection, must get exactly the replies a plain
//! `HashMap` model of docs/commands.md predicts, in order. The key space is tiny (8 keys) so writes
//! and reads collide; values include non-canonical integers and increments overflow.

mod common;

use std::cell::Cell;
use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use common::*;

const KEYS: usize = 8;
const SCHEMAS: [Schema; 3] = [Schema::String, Schema::Int, Schema::Int];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Schema {
    Int,
    String,
}

impl Schema {
    fn word(self) -> &'static str {
        match self {
            Schema::Int => "INT",
            Schema::String => "STRING",
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set(usize, usize, Vec<u8>),
    Get(usize, usize),
    /// Distinct keys (how DEL counts a key named twice is left open by the contract).
    Del(usize, Vec<usize>),
    /// Keys may repeat: each occurrence counts.
    Exists(usize, Vec<usize>),
    Incr(usize, usize),
    Decr(usize, usize),
    IncrBy(usize, usize, Vec<u8>),
    DecrBy(usize, usize, Vec<u8>),
    MGet(usize, Vec<usize>),
    /// Distinct keys (which duplicate wins is left open by the contract).
    MSet(usize, Vec<(usize, Vec<u8>)>),
}

/// Values: mostly integers (small, random, at the i64 bounds), some non-canonical integer
/// text, some arbitrary bytes.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (-5i64..=5).prop_map(|n| n.to_string().into_bytes()),
        2 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        2 => prop::sample::select(vec![i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1])
            .prop_map(|n| n.to_string().into_bytes()),
        2 => prop::sample::select(vec![
            &b"abc"[..], b"01", b"+1", b"1.0", b" 1", b"1 ", b"-0", b"", b"-",
            b"9223372036854775808", b"-9223372036854775809", b"\x00\r\n",
        ])
        .prop_map(|s| s.to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

/// INCRBY/DECRBY amounts: mostly small, some at the bounds (to overflow), a few non-integers.
fn amount() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => (-3i64..=3).prop_map(|n| n.to_string().into_bytes()),
        2 => prop::sample::select(vec![
            i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1, 1 << 62, -(1 << 62),
        ])
        .prop_map(|n| n.to_string().into_bytes()),
        1 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        1 => prop::sample::select(vec![&b"abc"[..], b"1.5", b"", b"1e3", b"99999999999999999999"])
            .prop_map(|s| s.to_vec()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..SCHEMAS.len();
    let k = 0..KEYS;
    let distinct = || prop::sample::subsequence((0..KEYS).collect::<Vec<_>>(), 1..=4);
    prop_oneof![
        4 => (p.clone(), k.clone(), value()).prop_map(|(p, k, v)| Op::Set(p, k, v)),
        3 => (p.clone(), k.clone()).prop_map(|(p, k)| Op::Get(p, k)),
        1 => (p.clone(), distinct()).prop_map(|(p, ks)| Op::Del(p, ks)),
        1 => (p.clone(), prop::collection::vec(k.clone(), 1..=5)).prop_map(|(p, ks)| Op::Exists(p, ks)),
        2 => (p.clone(), k.clone()).prop_map(|(p, k)| Op::Incr(p, k)),
        1 => (p.clone(), k.clone()).prop_map(|(p, k)| Op::Decr(p, k)),
        2 => (p.clone(), k.clone(), amount()).prop_map(|(p, k, n)| Op::IncrBy(p, k, n)),
        1 => (p.clone(), k.clone(), amount()).prop_map(|(p, k, n)| Op::DecrBy(p, k, n)),
        1 => (p.clone(), prop::collection::vec(k, 1..=5)).prop_map(|(p, ks)| Op::MGet(p, ks)),
        1 => (p, distinct(), prop::collection::vec(value(), 4))
            .prop_map(|(p, ks, vs)| Op::MSet(p, ks.into_iter().zip(vs).collect())),
    ]
}

/// A canonical signed 64-bit decimal: `0`, or an optional `-` and digits without a leading
/// zero, within range. Anything else is not an INT value.
fn canonical_i64(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || b.len() > 1) {
        return None; // leading zero, or "-0"
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Int(i64),
    Bytes(Vec<u8>),
}

/// What the server must answer.
#[derive(Debug)]
enum Expected {
    Exact(Vec<u8>),
    /// Error replies whose message the contract leaves open: only the code is fixed.
    Prefix(&'static [u8]),
}

impl Expected {
    fn matches(&self, got: &[u8]) -> bool {
        match self {
            Expected::Exact(b) => got == b.as_slice(),
            Expected::Prefix(p) => got.starts_with(p) && got.ends_with(b"\r\n"),
        }
    }
}

const WRONGTYPE: &[u8] = b"-WRONGTYPE";
const OVERFLOW: &[u8] = b"-ERR increment or decrement would overflow\r\n";
const DECREMENT_OVERFLOW: &[u8] = b"-ERR decrement would overflow\r\n";
const NOT_INTEGER: &[u8] = b"-ERR value is not an integer or out of range\r\n";

/// The model: docs/commands.md over plain hash maps.
struct Model {
    data: Vec<HashMap<usize, Val>>,
    resp3: bool,
}

impl Model {
    fn new(resp3: bool) -> Model {
        Model {
            data: vec![HashMap::new(); SCHEMAS.len()],
            resp3,
        }
    }

    fn null(&self) -> Vec<u8> {
        if self.resp3 { NULL3 } else { NULL2 }.to_vec()
    }

    fn encode(&self, v: Option<&Val>) -> Vec<u8> {
        match v {
            None => self.null(),
            Some(Val::Int(n)) => int(*n),
            Some(Val::Bytes(b)) => bulk(b),
        }
    }

    fn apply(&mut self, op: &Op) -> Expected {
        use Expected::*;
        match op {
            Op::Set(p, k, v) => match SCHEMAS[*p] {
                Schema::String => {
                    self.data[*p].insert(*k, Val::Bytes(v.clone()));
                    Exact(OK.to_vec())
                }
                Schema::Int => match canonical_i64(v) {
                    Some(n) => {
                        self.data[*p].insert(*k, Val::Int(n));
                        Exact(OK.to_vec())
                    }
                    None => Prefix(WRONGTYPE),
                },
            },
            Op::Get(p, k) => Exact(self.encode(self.data[*p].get(k))),
            Op::Del(p, ks) => {
                let removed = ks
                    .iter()
                    .filter(|k| self.data[*p].remove(k).is_some())
                    .count();
                Exact(int(removed as i64))
            }
            Op::Exists(p, ks) => {
                let present = ks.iter().filter(|k| self.data[*p].contains_key(k)).count();
                Exact(int(present as i64))
            }
            Op::Incr(p, k) => self.add(*p, *k, b"1", false),
            Op::Decr(p, k) => self.add(*p, *k, b"1", true),
            Op::IncrBy(p, k, n) => self.add(*p, *k, n, false),
            Op::DecrBy(p, k, n) => self.add(*p, *k, n, true),
            Op::MGet(p, ks) => {
                let items: Vec<Vec<u8>> = ks
                    .iter()
                    .map(|k| self.encode(self.data[*p].get(k)))
                    .collect();
                Exact(array(&items))
            }
            Op::MSet(p, pairs) => match SCHEMAS[*p] {
                Schema::String => {
                    for (k, v) in pairs {
                        self.data[*p].insert(*k, Val::Bytes(v.clone()));
                    }
                    Exact(OK.to_vec())
                }
                Schema::Int => {
                    let parsed: Option<Vec<(usize, i64)>> = pairs
                        .iter()
                        .map(|(k, v)| canonical_i64(v).map(|n| (*k, n)))
                        .collect();
                    match parsed {
                        Some(parsed) => {
                            for (k, n) in parsed {
                                self.data[*p].insert(k, Val::Int(n));
                            }
                            Exact(OK.to_vec())
                        }
                        None => Prefix(WRONGTYPE),
                    }
                }
            },
        }
    }

    fn add(&mut self, p: usize, k: usize, amount: &[u8], negate: bool) -> Expected {
        use Expected::*;
        let Some(amount) = canonical_i64(amount) else {
            return Exact(NOT_INTEGER.to_vec());
        };
        // DECRBY by i64::MIN is refused even where the result would fit (-1 - MIN): the
        // amount itself cannot be negated, as in Redis 7.2 ("decrement would overflow").
        if negate && amount == i64::MIN {
            return Exact(DECREMENT_OVERFLOW.to_vec());
        }
        // A STRING partition holds Redis strings: INCR works on a canonical integer's text
        // and stores the result back as text.
        let current = match self.data[p].get(&k) {
            Some(Val::Int(n)) => *n,
            Some(Val::Bytes(b)) => match canonical_i64(b) {
                Some(n) => n,
                None => return Exact(NOT_INTEGER.to_vec()),
            },
            None => 0,
        };
        let next = if negate {
            current.checked_sub(amount)
        } else {
            current.checked_add(amount)
        };
        match next {
            Some(n) => {
                let stored = match SCHEMAS[p] {
                    Schema::Int => Val::Int(n),
                    Schema::String => Val::Bytes(n.to_string().into_bytes()),
                };
                self.data[p].insert(k, stored);
                Exact(int(n))
            }
            None => Exact(OVERFLOW.to_vec()),
        }
    }
}

fn request(names: &[String], op: &Op) -> Vec<u8> {
    let key = |k: &usize| format!("k{k}").into_bytes();
    let mut args: Vec<Vec<u8>> = Vec::new();
    let mut push = |word: &str, p: usize| {
        args.push(word.as_bytes().to_vec());
        args.push(names[p].as_bytes().to_vec());
    };
    match op {
        Op::Set(p, k, v) => {
            push("SET", *p);
            args.extend([key(k), v.clone()]);
        }
        Op::Get(p, k) => {
            push("GET", *p);
            args.push(key(k));
        }
        Op::Del(p, ks) => {
            push("DEL", *p);
            args.extend(ks.iter().map(key));
        }
        Op::Exists(p, ks) => {
            push("EXISTS", *p);
            args.extend(ks.iter().map(key));
        }
        Op::Incr(p, k) => {
            push("INCR", *p);
            args.push(key(k));
        }
        Op::Decr(p, k) => {
            push("DECR", *p);
            args.push(key(k));
        }
        Op::IncrBy(p, k, n) => {
            push("INCRBY", *p);
            args.extend([key(k), n.clone()]);
        }
        Op::DecrBy(p, k, n) => {
            push("DECRBY", *p);
            args.extend([key(k), n.clone()]);
        }
        Op::MGet(p, ks) => {
            push("MGET", *p);
            args.extend(ks.iter().map(key));
        }
        Op::MSet(p, pairs) => {
            push("MSET", *p);
            for (k, v) in pairs {
                args.extend([key(k), v.clone()]);
            }
        }
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    cmd_bytes(&refs)
}

/// Runs one case: fresh partitions, one pipelined write, reply-by-reply comparison, then a
/// final-state check and DROP.
fn run_case(server: &Server, case: usize, resp3: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut c = server.raw();
    if resp3 {
        let hello = c.call(&["HELLO", "3"]);
        prop_assert!(hello.starts_with(b"%"), "HELLO 3: {}", show(&hello));
    }
    let names: Vec<String> = (0..SCHEMAS.len()).map(|i| format!("m{case}_{i}")).collect();
    for (name, schema) in names.iter().zip(SCHEMAS) {
        c.expect(
            &cmd(&["CREATE", "PARTITION", name, schema.word(), "MEMORY"]),
            OK,
        );
    }

    let mut model = Model::new(resp3);
    let requests: Vec<Vec<u8>> = ops.iter().map(|op| request(&names, op)).collect();
    let expected: Vec<Expected> = ops.iter().map(|op| model.apply(op)).collect();
    let replies = c.pipeline(&requests);
    for (i, ((got, want), op)) in replies.iter().zip(&expected).zip(ops).enumerate() {
        prop_assert!(
            want.matches(got),
            "op #{i} {op:?} (partition schema {:?}): expected {}, got {}",
            SCHEMAS[op_partition(op)],
            describe_expected(want),
            show(got)
        );
    }

    // The final state, read back, equals the model's.
    for (p, name) in names.iter().enumerate() {
        let keys: Vec<String> = (0..KEYS).map(|k| format!("k{k}")).collect();
        let mut args = vec!["MGET", name.as_str()];
        args.extend(keys.iter().map(String::as_str));
        let got = c.call(&args);
        let want: Vec<Vec<u8>> = (0..KEYS)
            .map(|k| model.encode(model.data[p].get(&k)))
            .collect();
        prop_assert_eq!(show(&got), show(&array(&want)), "final state of {}", name);
        let describe = c.call_value(&["DESCRIBE", "PARTITION", name]).pairs();
        let keys_field = describe
            .iter()
            .find(|(k, _)| k.bytes() == b"keys")
            .map(|(_, v)| v.clone());
        prop_assert_eq!(
            keys_field,
            Some(Resp::Int(model.data[p].len() as i64)),
            "DESCRIBE {} keys",
            name
        );
    }
    for name in &names {
        c.expect(&cmd(&["DROP", "PARTITION", name]), OK);
    }
    Ok(())
}

fn op_partition(op: &Op) -> usize {
    match op {
        Op::Set(p, ..)
        | Op::Get(p, ..)
        | Op::Del(p, ..)
        | Op::Exists(p, ..)
        | Op::Incr(p, ..)
        | Op::Decr(p, ..)
        | Op::IncrBy(p, ..)
        | Op::DecrBy(p, ..)
        | Op::MGet(p, ..)
        | Op::MSet(p, ..) => *p,
    }
}

fn describe_expected(e: &Expected) -> String {
    match e {
        Expected::Exact(b) => show(b),
        Expected::Prefix(p) => format!("a reply starting with {}", show(p)),
    }
}

fn check_against_model(resp3: bool, cases: u32) {
    let server = Server::start(&["--shards", "2"]);
    let case = Cell::new(0usize);
    // PROPTEST_CASES overrides the count for longer soak runs.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        // Bounds the time spent shrinking a failure (a dead server makes every case fail).
        max_shrink_time: 30_000,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..=200), |ops| {
        // Every case, shrink steps included, gets partitions of its own.
        let n = case.get();
        case.set(n + 1);
        run_case(&server, n, resp3, &ops)
    });
    if let Err(e) = result {
        panic!("server disagrees with the model: {e}");
    }
}

#[test]
fn replies_match_a_hashmap_model_resp2() {
    check_against_model(false, 64);
}

#[test]
fn replies_match_a_hashmap_model_resp3() {
    check_against_model(true, 32);
}

#[test]
fn canonical_integer_rule_of_the_model() {
    // The model's own rule, pinned so a mistake here cannot hide a server bug.
    for ok in [
        "0",
        "7",
        "-7",
        "42",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        assert_eq!(
            canonical_i64(ok.as_bytes()),
            Some(ok.parse().unwrap()),
            "{ok}"
        );
    }
    for bad in [
        "",
        "-",
        "-0",
        "01",
        "+1",
        "1.0",
        " 1",
        "1 ",
        "abc",
        "9223372036854775808",
        "-00",
    ] {
        assert_eq!(canonical_i64(bad.as_bytes()), None, "{bad:?}");
    }
}

//! Criterion benchmarks for the pieces on every request's path: the parser, the reply
//! encoder, the partition store, and a cross-shard round trip over the mailbox.
//!
//! Run: `cargo bench --bench engine` (results in target/criterion). These are for comparing
//! before/after a change on one machine; they never run as timed tests in CI.

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gokv::command::data::{self, DataLimits};
use gokv::command::CommandId;
use gokv::protocol::{Args, Limits, Parsed, Parser, Protocol, ReplyWriter, Span};
use gokv::shard::mailbox::{ConnRef, Mailbox, Message, RequestBatch};
use gokv::store::{MemoryBudget, Partition, Schema};

/// 16 pipelined `GET bench key:NNNNNNNNNNNN` requests, as redis-benchmark -P 16 sends them.
fn pipeline(n: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in 0..n {
        let key = format!("key:{i:012}");
        buf.extend_from_slice(
            format!(
                "*3\r\n$3\r\nGET\r\n$5\r\nbench\r\n${}\r\n{key}\r\n",
                key.len()
            )
            .as_bytes(),
        );
    }
    buf
}

fn parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("parser");
    let input = pipeline(16);
    group.throughput(Throughput::Elements(16));
    group.bench_function("resp_get_x16", |b| {
        let mut parser = Parser::new(Limits::default());
        let mut buf = input.clone();
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Parsed::Request { consumed }) = parser.parse(&mut buf[pos..]) {
                black_box(parser.args());
                pos += consumed;
            }
        })
    });
    let inline = b"SET bench key:000000000001 \"some value\"\r\n".repeat(16);
    group.bench_function("inline_set_x16", |b| {
        let mut parser = Parser::new(Limits::default());
        b.iter_batched_ref(
            || inline.clone(),
            |buf| {
                let mut pos = 0;
                while let Ok(Parsed::Request { consumed }) = parser.parse(&mut buf[pos..]) {
                    black_box(parser.args());
                    pos += consumed;
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn replies(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply");
    group.throughput(Throughput::Elements(16));
    let value = [b'v'; 32];
    group.bench_function("bulk32_x16", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            for _ in 0..16 {
                w.bulk(black_box(&value));
            }
        })
    });
    group.bench_function("integer_x16", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            for i in 0..16 {
                w.integer(black_box(i * 1_000_003));
            }
        })
    });
    group.finish();
}

/// Arguments `words` laid out as a parsed request would be.
fn request(words: &[&[u8]]) -> (Vec<u8>, Vec<Span>) {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for w in words {
        let start = buf.len() as u32;
        buf.extend_from_slice(w);
        spans.push(Span {
            start,
            end: buf.len() as u32,
        });
    }
    (buf, spans)
}

fn store(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    let limits = DataLimits {
        max_key_len: 1 << 16,
        memory: MemoryBudget::unlimited(),
        max_reply: usize::MAX,
    };
    let mut group = c.benchmark_group("store");
    let mut partition = Partition::new(Schema::String, Arc::default());
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("key:{i:012}").into_bytes())
        .collect();
    for k in &keys {
        partition.set_str(k, &[b'v'; 32]);
    }
    let gets: Vec<_> = keys
        .iter()
        .map(|k| request(&[b"GET", b"bench", k]))
        .collect();
    let sets: Vec<_> = keys
        .iter()
        .map(|k| request(&[b"SET", b"bench", k, &[b'w'; 32]]))
        .collect();
    let mut out = Vec::with_capacity(1 << 16);
    let mut i = 0usize;
    group.bench_function("get_hit_100k_keys", |b| {
        b.iter(|| {
            // A stride that is co-prime with KEYS walks the table in a cache-unfriendly order.
            i = (i + 7919) % KEYS;
            let (buf, spans) = &gets[i];
            out.clear();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            let _ = data::execute(
                CommandId::Get,
                &Args::new(buf, spans),
                &mut partition,
                None,
                limits,
                &mut w,
            );
        })
    });
    group.bench_function("set_overwrite_100k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let (buf, spans) = &sets[i];
            out.clear();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            let _ = data::execute(
                CommandId::Set,
                &Args::new(buf, spans),
                &mut partition,
                None,
                limits,
                &mut w,
            );
        })
    });
    let mut counters = Partition::new(Schema::Int, Arc::default());
    let incrs: Vec<_> = keys
        .iter()
        .map(|k| request(&[b"INCR", b"bench", k]))
        .collect();
    group.bench_function("incr_100k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let (buf, spans) = &incrs[i];
            out.clear();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            let _ = data::execute(
                CommandId::Incr,
                &Args::new(buf, spans),
                &mut counters,
                None,
                limits,
                &mut w,
            );
        })
    });
    group.finish();
}

/// A batch of 16 requests to another thread and back through two mailboxes, as a forwarded
/// pipeline travels (without the sockets): the cost the cross-shard hop adds.
fn cross_shard(c: &mut Criterion) {
    let poll_a = mio::Poll::new().expect("poll");
    let poll_b = mio::Poll::new().expect("poll");
    let (inbox_a, handle_a) = Mailbox::new(poll_a.registry(), mio::Token(0)).expect("mailbox");
    let (inbox_b, handle_b) = Mailbox::new(poll_b.registry(), mio::Token(0)).expect("mailbox");
    let remote = std::thread::spawn(move || {
        let mut partition = Partition::new(Schema::String, Arc::default());
        let limits = DataLimits {
            max_key_len: 1 << 16,
            memory: MemoryBudget::unlimited(),
            max_reply: usize::MAX,
        };
        let mut events = mio::Events::with_capacity(8);
        let mut poll_b = poll_b;
        loop {
            while let Some(message) = inbox_b.try_recv() {
                let Message::Requests(batch) = message else {
                    return;
                };
                let mut replies = gokv::shard::mailbox::ReplyBatch::default();
                for r in &batch.requests {
                    let mut w = ReplyWriter::new(&mut replies.buf, r.protocol);
                    let _ = data::execute(
                        r.command,
                        &batch.args(r),
                        &mut partition,
                        None,
                        limits,
                        &mut w,
                    );
                    replies.replies.push(gokv::shard::mailbox::ForwardedReply {
                        conn: r.conn,
                        seq: r.seq,
                        end: replies.buf.len() as u64,
                        over_output_limit: false,
                    });
                }
                handle_a.send(Message::Replies(replies));
            }
            if inbox_b.prepare_to_sleep() {
                let _ = poll_b.poll(&mut events, Some(Duration::from_millis(100)));
            }
            inbox_b.woke_up();
        }
    });
    let (buf, spans) = request(&[b"GET", b"bench", b"key:000000000001"]);
    let mut events = mio::Events::with_capacity(8);
    let mut poll_a = poll_a;
    let mut group = c.benchmark_group("cross_shard");
    group.throughput(Throughput::Elements(16));
    group.bench_function("round_trip_batch_of_16", |b| {
        b.iter(|| {
            let mut batch = RequestBatch::default();
            for seq in 0..16 {
                batch.push(
                    ConnRef {
                        index: 0,
                        generation: 0,
                    },
                    seq,
                    Protocol::Resp2,
                    CommandId::Get,
                    &Args::new(&buf, &spans),
                    gokv::shard::mailbox::Approval {
                        partition: 0,
                        acl_version: 0,
                        user: 0,
                        max_reply: u64::MAX,
                    },
                );
            }
            handle_b.send(Message::Requests(batch));
            loop {
                if let Some(Message::Replies(r)) = inbox_a.try_recv() {
                    black_box(r.replies.len());
                    break;
                }
                if inbox_a.prepare_to_sleep() {
                    let _ = poll_a.poll(&mut events, Some(Duration::from_millis(100)));
                }
                inbox_a.woke_up();
            }
        })
    });
    group.finish();
    handle_b.send(Message::Shutdown);
    let _ = remote.join();
}

criterion_group!(benches, parser, replies, store, cross_shard);
criterion_main!(benches);

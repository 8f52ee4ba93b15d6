//! Criterion benchmarks for the pieces on every request's path: the parser, the reply
//! encoder, the partition store, and a cross-shard round trip through a real shard's
//! forwarding code (its inbox, `execute_forwarded` and reply batch; no sockets).
//!
//! Run: `cargo bench --bench engine` (results in target/criterion). These are for comparing
//! before/after a change on one machine; they never run as timed tests in CI.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gokv::acl::hasher::Hasher;
use gokv::acl::Acl;
use gokv::catalog::{Catalog, PartitionMeta};
use gokv::command::data::{self, DataLimits};
use gokv::command::{lookup, CommandId};
use gokv::config::Config;
use gokv::metrics::ServerMetrics;
use gokv::protocol::{lay_out, Args, Limits, Parsed, Parser, Protocol, ReplyWriter, Span};
use gokv::shard::mailbox::{Approval, ConnRef, Mailbox, Message, RequestBatch, ShardHandle};
use gokv::shard::{Shard, Shared, Shutdown};
use gokv::store::{MemoryBudget, Partition, PersistMode, Schema};

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

fn store(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    let limits = DataLimits {
        max_key_len: 1 << 16,
        max_value_len: 1 << 29,
        max_keys_reply: 100_000,
        memory: MemoryBudget::unlimited(),
        max_reply: usize::MAX,
    };
    let mut group = c.benchmark_group("store");
    let mut partition = Partition::new(Schema::String, Arc::default());
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("key:{i:012}").into_bytes())
        .collect();
    for k in &keys {
        partition.set_str(k, &[b'v'; 32], gokv::store::Expiry::Clear);
    }
    let gets: Vec<_> = keys
        .iter()
        .map(|k| lay_out::<&[u8]>(&[b"GET", b"bench", k]))
        .collect();
    let sets: Vec<_> = keys
        .iter()
        .map(|k| lay_out::<&[u8]>(&[b"SET", b"bench", k, &[b'w'; 32]]))
        .collect();
    let mut out = Vec::with_capacity(1 << 16);
    let mut i = 0usize;
    // A partition without options, as the data path sees one.
    let quota = gokv::command::quota::Quota::default();
    group.bench_function("get_hit_100k_keys", |b| {
        b.iter(|| {
            // A stride that is co-prime with KEYS walks the table in a cache-unfriendly order.
            i = (i + 7919) % KEYS;
            let (buf, spans) = &gets[i];
            out.clear();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            let _ = data::execute(
                CommandId::Get.spec(),
                &Args::new(buf, spans),
                &mut partition,
                None,
                &quota,
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
                CommandId::Set.spec(),
                &Args::new(buf, spans),
                &mut partition,
                None,
                &quota,
                limits,
                &mut w,
            );
        })
    });
    let mut counters = Partition::new(Schema::Int, Arc::default());
    let incrs: Vec<_> = keys
        .iter()
        .map(|k| lay_out::<&[u8]>(&[b"INCR", b"bench", k]))
        .collect();
    group.bench_function("incr_100k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let (buf, spans) = &incrs[i];
            out.clear();
            let mut w = ReplyWriter::new(&mut out, Protocol::Resp2);
            let _ = data::execute(
                CommandId::Incr.spec(),
                &Args::new(buf, spans),
                &mut counters,
                None,
                &quota,
                limits,
                &mut w,
            );
        })
    });
    group.finish();
}

/// One batch of forwarded requests, sent as shard 1 to `shard` (shard 0), and its replies.
fn round_trip(
    shard: &ShardHandle,
    inbox: &Mailbox,
    poll: &mut mio::Poll,
    events: &mut mio::Events,
    requests: &[(Vec<u8>, Vec<Span>)],
) -> usize {
    let mut batch = RequestBatch {
        from: 1,
        ..RequestBatch::default()
    };
    for (seq, (buf, spans)) in requests.iter().enumerate() {
        let args = Args::new(buf, spans);
        let command = lookup(&args).expect("a known command").id;
        // As shard 1's dispatch approves it: partition `bench` (id 1), ACL version 0 (the
        // shard's own, so it is not authorized again), room for any reply.
        let approval = Approval {
            partition: 1,
            acl_version: 0,
            user: 0,
            max_reply: u64::MAX,
        };
        let conn = ConnRef {
            index: 0,
            generation: 0,
        };
        batch.push(conn, seq as u64, Protocol::Resp2, command, &args, approval);
    }
    shard.send(Message::Requests(batch));
    loop {
        if let Some(Message::Replies(r)) = inbox.try_recv() {
            return r.replies.len();
        }
        if inbox.prepare_to_sleep() {
            let _ = poll.poll(events, Some(Duration::from_millis(100)));
        }
        inbox.woke_up();
    }
}

/// A batch of 16 GETs through the real forwarding code, without the sockets: a real shard
/// (`Shard::run`, shard 0, owning partition `bench`) takes the batch from its inbox, runs it
/// as it runs any other shard's requests (`execute_forwarded`: checks, prefetch, execution,
/// reply batch, commit, `flush_outboxes`), and this thread plays shard 1, which sent it and
/// waits for the replies. The cost the cross-shard hop adds, as the server pays it.
fn cross_shard(c: &mut Criterion) {
    let (poll_0, inbox_0, handle_0) = Shard::create().expect("shard 0");
    let (mut poll_1, inbox_1, handle_1) = Shard::create().expect("shard 1");
    let handles = vec![handle_0.clone(), handle_1];
    let acceptor_poll = mio::Poll::new().expect("poll");
    let acceptor =
        Arc::new(mio::Waker::new(acceptor_poll.registry(), mio::Token(0)).expect("waker"));
    let shutdown = Arc::new(Shutdown::new(handles.clone(), acceptor));
    let shared = Arc::new(Shared {
        config: Arc::new(Config::default()),
        metrics: Arc::new(ServerMetrics::new(2)),
        shards: handles.clone(),
        shutdown: shutdown.clone(),
        clients: Arc::new(AtomicUsize::new(0)),
        next_client_id: AtomicU64::new(1),
        hasher: Hasher::start(1, handles).expect("hasher"),
        tls: None,
        replication: Arc::new(gokv::replication::State::in_memory(2)),
        monitors: gokv::shard::Monitors::new(2),
    });
    let catalog = Arc::new(Catalog::default().with_partition(PartitionMeta {
        name: "bench".into(),
        id: 1,
        shard: 0,
        schema: Schema::String,
        persist: PersistMode::Memory,
        created_ms: 0,
        options: Default::default(),
        stats: Arc::default(),
    }));
    // Never joined: a shard's shutdown waits for every shard to drain, and shard 1 is this
    // thread; it ends with the process.
    std::thread::spawn(move || {
        Shard::new(
            0,
            poll_0,
            inbox_0,
            shared,
            catalog,
            Arc::new(Acl::default()),
            gokv::shard::coordinator::Resume {
                next_partition_id: 2,
                ..Default::default()
            },
        )
        .expect("shard 0 starts")
        .run()
    });
    let mut events = mio::Events::with_capacity(8);
    let set = [lay_out::<&[u8]>(&[
        b"SET",
        b"bench",
        b"key:000000000001",
        &[b'v'; 32],
    ])];
    let gets = vec![lay_out::<&[u8]>(&[b"GET", b"bench", b"key:000000000001"]); 16];
    let stored = round_trip(&handle_0, &inbox_1, &mut poll_1, &mut events, &set);
    assert_eq!(stored, 1);
    let mut group = c.benchmark_group("cross_shard");
    group.throughput(Throughput::Elements(16));
    group.bench_function("round_trip_batch_of_16", |b| {
        b.iter(|| {
            black_box(round_trip(
                &handle_0,
                &inbox_1,
                &mut poll_1,
                &mut events,
                &gets,
            ))
        })
    });
    group.finish();
    shutdown.request();
}

criterion_group!(benches, parser, replies, store, cross_shard);
criterion_main!(benches);

//! The forwarding path of a real shard, driven through its inbox as another shard would
//! (no sockets): what one pass builds for one requesting shard, and the output limit a
//! forwarded request carries (issue 18, item 1).

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gokv::acl::hasher::Hasher;
use gokv::acl::Acl;
use gokv::catalog::{Catalog, PartitionMeta};
use gokv::command::lookup;
use gokv::config::Config;
use gokv::metrics::ServerMetrics;
use gokv::protocol::{Args, Protocol, Span};
use gokv::shard::mailbox::{
    Approval, ConnRef, Mailbox, Message, ReplyBatch, RequestBatch, ShardHandle, REPLY_BATCH_BYTES,
};
use gokv::shard::{Shard, Shared, Shutdown};
use gokv::store::{PersistMode, Schema};

/// Shard 0 runs for real and owns partition `p` (id 1); the test plays shard 1.
struct TwoShards {
    shard: ShardHandle,
    inbox: Mailbox,
    poll: mio::Poll,
    shutdown: Arc<Shutdown>,
}

impl TwoShards {
    fn start() -> TwoShards {
        let (poll_0, inbox_0, handle_0) = Shard::create().unwrap();
        let (poll, inbox, handle_1) = Shard::create().unwrap();
        let handles = vec![handle_0.clone(), handle_1];
        let acceptor_poll = mio::Poll::new().unwrap();
        let acceptor = Arc::new(mio::Waker::new(acceptor_poll.registry(), mio::Token(0)).unwrap());
        let shutdown = Arc::new(Shutdown::new(handles.clone(), acceptor));
        let shared = Arc::new(Shared {
            config: Arc::new(Config::default()),
            metrics: Arc::new(ServerMetrics::new(2)),
            shards: handles.clone(),
            shutdown: shutdown.clone(),
            clients: Arc::new(AtomicUsize::new(0)),
            next_client_id: AtomicU64::new(1),
            hasher: Hasher::start(1, handles).unwrap(),
            tls: None,
            replication: Arc::new(gokv::replication::State::in_memory(2)),
            monitors: gokv::shard::Monitors::new(2),
        });
        let catalog = Arc::new(Catalog::default().with_partition(PartitionMeta {
            name: "p".into(),
            id: 1,
            shard: 0,
            schema: Schema::String,
            persist: PersistMode::Memory,
            created_ms: 0,
            options: Default::default(),
            stats: Arc::default(),
        }));
        // Not joined: shard 0's shutdown would wait for shard 1 (this test) to drain.
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
            .unwrap()
            .run()
        });
        TwoShards {
            shard: handle_0,
            inbox,
            poll,
            shutdown,
        }
    }

    /// Sends one batch of `requests`, each with `max_reply` left of its client's limit.
    fn send(&self, requests: &[Vec<&[u8]>], max_reply: u64) {
        let mut batch = RequestBatch {
            from: 1,
            ..RequestBatch::default()
        };
        for (seq, words) in requests.iter().enumerate() {
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
            let args = Args::new(&buf, &spans);
            let approval = Approval {
                partition: 1,
                acl_version: 0,
                user: 0,
                max_reply,
            };
            let conn = ConnRef {
                index: 0,
                generation: 0,
            };
            let command = lookup(&args).unwrap().id;
            batch.push(conn, seq as u64, Protocol::Resp2, command, &args, approval);
        }
        self.shard.send(Message::Requests(batch));
    }

    /// Reply batches until `replies` replies came back.
    fn receive(&mut self, replies: usize) -> Vec<ReplyBatch> {
        let mut events = mio::Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got
            .iter()
            .map(|b: &ReplyBatch| b.replies.len())
            .sum::<usize>()
            < replies
        {
            assert!(Instant::now() < deadline, "replies did not come back");
            match self.inbox.try_recv() {
                Some(Message::Replies(batch)) => got.push(batch),
                Some(_) => {}
                None => {
                    if self.inbox.prepare_to_sleep() {
                        let _ = self
                            .poll
                            .poll(&mut events, Some(Duration::from_millis(100)));
                    }
                    self.inbox.woke_up();
                }
            }
        }
        got
    }
}

impl Drop for TwoShards {
    fn drop(&mut self) {
        self.shutdown.request();
    }
}

/// Ten GETs of a 4 MiB value, forwarded in one batch: the owner sends them back in several
/// reply batches, none much past the per-pass cap, all in order and whole. (Before the cap
/// they came back as one 40 MiB message; 80 GETs of 60 MiB were one 4.8 GiB message.)
#[test]
fn one_pass_builds_at_most_the_reply_cap_for_one_shard() {
    const VALUE: usize = 4 << 20;
    const GETS: usize = 10;
    let mut shards = TwoShards::start();
    let value = vec![b'v'; VALUE];
    shards.send(&[vec![b"SET", b"p", b"big", &value]], u64::MAX);
    let set = shards.receive(1);
    assert_eq!(set[0].iter().next().unwrap().1, b"+OK\r\n");
    shards.send(&vec![vec![&b"GET"[..], b"p", b"big"]; GETS], u64::MAX);
    let batches = shards.receive(GETS);
    let header = format!("${VALUE}\r\n");
    let mut seq = 0;
    for batch in &batches {
        assert!(
            batch.buf.len() <= REPLY_BATCH_BYTES + header.len() + VALUE + 2,
            "one reply batch holds {} bytes, past the cap of {REPLY_BATCH_BYTES} plus one reply",
            batch.buf.len()
        );
        for (reply, bytes) in batch.iter() {
            assert_eq!(reply.seq, seq);
            assert!(!reply.over_output_limit);
            assert_eq!(bytes.len(), header.len() + VALUE + 2);
            assert!(bytes.starts_with(header.as_bytes()));
            seq += 1;
        }
    }
    assert!(
        batches.len() >= 3,
        "{GETS} replies of 4 MiB came back in {} batch(es)",
        batches.len()
    );
}

/// A forwarded GET counts against what was left of its client's output limit when it left,
/// before its reply is built, as a local read does: not built, and flagged, when it would
/// not fit; a second one behind it does not fit either.
#[test]
fn a_forwarded_read_counts_against_the_limit_it_carries() {
    let mut shards = TwoShards::start();
    let value = vec![b'v'; 1 << 20];
    shards.send(&[vec![b"SET", b"p", b"big", &value]], u64::MAX);
    shards.receive(1);
    // 1.5 MiB left: the first 1 MiB reply fits, the second no longer does.
    shards.send(&vec![vec![&b"GET"[..], b"p", b"big"]; 2], 3 << 19);
    let batches = shards.receive(2);
    let replies: Vec<_> = batches.iter().flat_map(|b| b.iter()).collect();
    assert!(!replies[0].0.over_output_limit);
    assert_eq!(replies[0].1.len(), "$1048576\r\n".len() + (1 << 20) + 2);
    assert!(
        replies[1].0.over_output_limit,
        "the second 1 MiB reply was built although only 0.5 MiB of the limit was left"
    );
    assert!(replies[1].1.is_empty());
}

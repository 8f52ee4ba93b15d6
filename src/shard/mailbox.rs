//! Messages between threads, and how they are sent: batched, with at most one wake-up.
//!
//! Every shard has an inbox (a `crossbeam_channel`) and a `mio::Waker`. A sender pushes its
//! message, then wakes the shard only if the shard said it is about to sleep in `poll`: a busy
//! shard drains its inbox at the end of every pass anyway, so waking it would be a wasted
//! syscall. The shard marks itself asleep, drains its inbox once more, then polls, so a message
//! pushed in between is never lost (see [`Mailbox::prepare_to_sleep`]).
//!
//! Requests for a partition on another shard are not sent one by one: the connection's shard
//! collects them in one [`RequestBatch`] per destination during its poll pass and sends each
//! batch at the end of the pass (one message, at most one wake per destination per pass). The
//! destination answers with one [`ReplyBatch`].
//!
//! Offsets inside a batch are `u64` where the batch can pass 4 GiB (a reply's end), and
//! `u32` only where one request bounds them (an argument's span, counted from its request's
//! start). A reply batch is also capped per pass ([`REPLY_BATCH_BYTES`]): past it, the rest
//! of the requests wait for the owner's next pass, so no pass builds gigabytes for one shard.
//!
//! A forwarded request carries the partition id, ACL version and user it was approved under,
//! so that the owner never runs it against a partition or grants that changed since: see
//! `Core::execute_forwarded` in `shard/mod.rs` for why that, and not a later acknowledgement
//! of the new version, is what makes REVOKE and DROP final.

use std::sync::atomic::{fence, AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::acl::{Acl, AclChange};
use crate::catalog::Catalog;
use crate::command::partition::{AlterPartition, CreatePartition};
use crate::command::{CommandError, CommandId};
use crate::protocol::{Args, Protocol, Span};

/// A connection of a shard, safe to name from another thread: a slab index plus the
/// generation it was given at accept, so a reply for a closed connection never reaches a new
/// connection that reused its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRef {
    pub index: u32,
    pub generation: u32,
}

/// Where a reply must go back to: a connection and its reply slot.
#[derive(Clone, Copy, Debug)]
pub struct ReplyTo {
    pub shard: usize,
    pub conn: ConnRef,
    pub seq: u64,
}

/// A change to cluster-wide state (catalog or ACL), executed by the coordinator.
#[derive(Debug)]
pub enum Change {
    Create(CreatePartition),
    Alter(AlterPartition),
    Drop(String),
    Acl(AclChange),
}

/// Everything a shard's inbox can carry.
pub enum Message {
    /// A freshly accepted client socket (from the acceptor).
    NewConnection(crate::tls::stream::Transport, std::net::SocketAddr),
    /// A connection moving here because all its recent requests were for this shard's
    /// partitions. It has nothing in flight: no reply owed by any shard.
    Migrate(Box<super::connection::Connection>),
    /// Requests from another shard's connections for partitions this shard owns.
    Requests(RequestBatch),
    /// Replies to requests this shard forwarded.
    Replies(ReplyBatch),
    /// To the coordinator: please change the catalog or the ACL, answer `reply_to` when every
    /// shard has the new version. `by` is how the connection's shard approved it.
    Change {
        reply_to: ReplyTo,
        change: Change,
        by: Approved,
    },
    /// From the coordinator: the current catalog and ACL (either or both new); acknowledge
    /// with `UpdateAck`.
    Update {
        epoch: u64,
        catalog: Arc<Catalog>,
        acl: Arc<Acl>,
    },
    /// To the coordinator: this shard now uses the state of `epoch`. `failed`: a persist
    /// change it was to make (ALTER PARTITION) failed, why; the client hears it as `-IOERR`.
    UpdateAck { epoch: u64, failed: Option<String> },
    /// From the hasher pool: how a login's password check ended. `hash` is the PHC string
    /// that was checked, so a password changed meanwhile does not let the old one in.
    AuthChecked {
        reply_to: ReplyTo,
        user_id: u64,
        hash: Option<Arc<str>>,
        ok: bool,
    },
    /// From the coordinator: how a `Change` ended.
    ChangeDone {
        reply_to: ReplyTo,
        result: Result<(), CommandError>,
    },
    /// CLIENT LIST, INFO or KILL asked of this shard by `reply_to.shard` (`shard::clients`).
    Clients {
        reply_to: ReplyTo,
        query: Arc<super::clients::ClientQuery>,
    },
    /// A shard's answer to `Clients`: its matching connections' lines (with their ids, to
    /// sort by), or how many it killed.
    ClientsAnswer {
        reply_to: ReplyTo,
        lines: Vec<(u64, String)>,
        killed: u64,
    },
    /// One pass's MONITOR lines of some shard, for this shard's monitors.
    MonitorFeed(Arc<Vec<u8>>),
    /// One pass's PUBLISHes of another shard's connections, for this shard's subscribers
    /// (`shard::pubsub`); answer with `Published`.
    Publish(Box<super::pubsub::PublishBatch>),
    /// How many of a shard's subscribers got each message of a `Publish`: (token, count).
    Published(Vec<(u32, u64)>),
    /// A PUBSUB question about this shard's subscribers; answer with `PubsubAnswer`.
    PubsubQuery {
        from: usize,
        token: u32,
        query: Arc<crate::command::pubsub::Query>,
    },
    /// A shard's answer to a `PubsubQuery`.
    PubsubAnswer {
        token: u32,
        answer: crate::command::pubsub::Answer,
    },
    /// Stop accepting work, finish what is in flight, exit.
    Shutdown,
    /// A live setting changed (CONFIG SET): nothing to do but run a pass, in which the loop
    /// reads the settings it reads once a pass or when a step is due (`timeout`).
    Reconfigured,
    /// A SLOWLOG or LATENCY question about this shard (see `observe`); answer with `Observed`.
    Observe {
        reply_to: ReplyTo,
        query: crate::command::monitor::Query,
    },
    /// A shard's answer to an `Observe`.
    Observed {
        reply_to: ReplyTo,
        answer: crate::command::monitor::Answer,
    },
    /// To the coordinator (primary): a replica attached; send it the catalog and users,
    /// then tell every shard ([`Message::FeedStart`]).
    FeedAttach(Arc<crate::replication::Feed>),
    /// From the coordinator (primary): start the full sync of this shard's partitions into
    /// the feed, and stream every commit into it from now on.
    FeedStart(Arc<crate::replication::Feed>),
    /// From the replica's link: data to apply to partitions this shard owns.
    ReplApply(Box<ReplBatch>),
    /// From the replica's link to the coordinator: install the primary's catalog and/or
    /// users (durably, on every shard), then answer `done` with the catalog.
    ReplInstall {
        generation: u64,
        catalog: Option<Catalog>,
        acl: Option<Acl>,
        done: Sender<Result<Arc<Catalog>, String>>,
    },
    /// From a feed's ack reader (primary): a replica acknowledged; a `WAIT` parked here
    /// may be answered (`shard::wait`). Only a wake-up: the acks are in the feeds.
    ReplAcked,
}

/// Replicated data for one replica shard, from one read of the link.
pub struct ReplBatch {
    /// The link's generation: a batch of a link that `REPLICAOF` replaced is ignored.
    pub generation: u64,
    pub ops: Vec<ReplOp>,
    /// Bytes of records in `ops` (the link's in-flight count).
    pub bytes: usize,
    /// The link's table of applied offsets per primary shard, and what to raise in it once
    /// `ops` are applied.
    pub offsets: Arc<Vec<std::sync::atomic::AtomicU64>>,
    pub offsets_to: Vec<(usize, u64)>,
}

impl ReplBatch {
    pub fn new(generation: u64, offsets: Arc<Vec<std::sync::atomic::AtomicU64>>) -> ReplBatch {
        ReplBatch {
            generation,
            ops: Vec::new(),
            bytes: 0,
            offsets,
            offsets_to: Vec::new(),
        }
    }
}

/// One replicated operation on a partition (by name, as routes are, and id, which must
/// match).
pub enum ReplOp {
    /// Its full sync begins: empty it, and make room for `keys` (the primary's count when
    /// its walk began, at most [`crate::replication::apply::MAX_RESERVE`]) at once.
    Full {
        name: Box<[u8]>,
        id: u64,
        keys: usize,
    },
    /// Snapshot records.
    Snap {
        name: Box<[u8]>,
        id: u64,
        records: Vec<u8>,
    },
    /// Live records.
    Records {
        name: Box<[u8]>,
        id: u64,
        records: Vec<u8>,
    },
    /// A message published on the primary, for this shard's subscribers (every replica
    /// shard gets it, each delivers to its own).
    Publish {
        channel: Arc<[u8]>,
        payload: Arc<[u8]>,
    },
}

impl ReplOp {
    /// What it weighs in the link's in-flight count.
    pub fn bytes(&self) -> usize {
        match self {
            ReplOp::Full { .. } => 64,
            ReplOp::Snap { records, .. } | ReplOp::Records { records, .. } => records.len() + 64,
            ReplOp::Publish { channel, payload } => channel.len() + payload.len() + 64,
        }
    }
}

/// A coordinator command as the connection's shard approved it: the user (`User::id`), the
/// ACL version it was authorized under, and a copy of its arguments. The change waits in the
/// sender's outbox and in the coordinator's queue; if a REVOKE or DROP USER was answered
/// meanwhile, the coordinator authorizes it again against the ACL it now holds.
#[derive(Debug)]
pub struct Approved {
    pub user: u64,
    pub acl_version: u64,
    buf: Vec<u8>,
    spans: Vec<Span>,
}

impl Approved {
    pub fn new(user: u64, acl_version: u64, args: &Args) -> Approved {
        let mut buf = Vec::new();
        let mut spans = Vec::with_capacity(args.len());
        for arg in args.iter() {
            // A copy of one parsed request: its offsets fit a `u32` as the parser's did.
            let start = buf.len() as u32;
            buf.extend_from_slice(arg);
            spans.push(Span {
                start,
                end: buf.len() as u32,
            });
        }
        Approved {
            user,
            acl_version,
            buf,
            spans,
        }
    }

    /// The request's arguments, as sent.
    pub fn args(&self) -> Args<'_> {
        Args::new(&self.buf, &self.spans)
    }
}

/// One forwarded request inside a [`RequestBatch`].
///
/// Besides where its reply goes, it carries what the owner needs to run it as the sender
/// approved it, and no further: the partition's id (not only its name), the ACL version and
/// the user it was authorized under, and what was left of the client's output limit.
#[derive(Clone, Copy, Debug)]
pub struct ForwardedRequest {
    pub conn: ConnRef,
    pub seq: u64,
    pub protocol: Protocol,
    pub command: CommandId,
    /// Where this request's arguments start in the batch's `buf`. Its spans count from here:
    /// a batch may pass 4 GiB, one request never does (see [`RequestBatch::push`]).
    pub base: u64,
    /// This request's arguments: `spans[first_span..first_span + argc]` of the batch (a
    /// `u64`, like `base`: a batch's argument count is not bounded by one request).
    pub first_span: u64,
    pub argc: u32,
    /// The id of the partition the sender routed it to. A name dropped and created again is
    /// a new id: the owner answers `-NOPARTITION` rather than run it on the new partition.
    pub partition: u64,
    /// The sender's ACL version when it authorized the request, and the user it ran as
    /// (`User::id`). The owner authorizes again only when its own version is newer.
    pub acl_version: u64,
    pub user: u64,
    /// What was left of the client's output limit when the request left: the owner builds no
    /// reply past it (`over_output_limit`), as a local read would not.
    pub max_reply: u64,
}

/// What the sender decided about a request, carried with it (see [`ForwardedRequest`]).
#[derive(Clone, Copy, Debug)]
pub struct Approval {
    pub partition: u64,
    pub acl_version: u64,
    pub user: u64,
    pub max_reply: u64,
}

/// Requests from one shard to another, collected during one poll pass.
#[derive(Default)]
pub struct RequestBatch {
    pub from: usize,
    /// All arguments of all requests, back to back.
    pub buf: Vec<u8>,
    /// Each request's spans, relative to its own `base` in `buf`.
    pub spans: Vec<Span>,
    pub requests: Vec<ForwardedRequest>,
}

impl RequestBatch {
    /// Copies a request's arguments into the batch.
    pub fn push(
        &mut self,
        conn: ConnRef,
        seq: u64,
        protocol: Protocol,
        command: CommandId,
        args: &Args,
        approval: Approval,
    ) {
        let first_span = self.spans.len() as u64;
        let base = self.buf.len();
        for arg in args.iter() {
            // Offsets from the request's own base fit a `u32`: its arguments, back to back,
            // are shorter than the parsed request they came from, whose spans are `u32`s.
            let start = (self.buf.len() - base) as u32;
            self.buf.extend_from_slice(arg);
            self.spans.push(Span {
                start,
                end: (self.buf.len() - base) as u32,
            });
        }
        self.requests.push(ForwardedRequest {
            conn,
            seq,
            protocol,
            command,
            base: base as u64,
            first_span,
            argc: args.len() as u32,
            partition: approval.partition,
            acl_version: approval.acl_version,
            user: approval.user,
            max_reply: approval.max_reply,
        });
    }

    /// The arguments of request `r`.
    pub fn args(&self, r: &ForwardedRequest) -> Args<'_> {
        let first = r.first_span as usize;
        Args::new(
            &self.buf[r.base as usize..],
            &self.spans[first..first + r.argc as usize],
        )
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// One encoded reply inside a [`ReplyBatch`].
#[derive(Clone, Copy, Debug)]
pub struct ForwardedReply {
    pub conn: ConnRef,
    pub seq: u64,
    /// The reply is `buf[previous reply's end..end]`. A `u64`: a batch's replies together
    /// may pass 4 GiB (each one is bounded by its client's output limit, not by 4 GiB).
    pub end: u64,
    /// The reply was not built because it would pass the client's output limit: the
    /// connection's shard closes the connection instead of answering.
    pub over_output_limit: bool,
}

/// Encoded replies going back to the shard that forwarded the requests.
///
/// The shard that builds one stops adding to it once it holds [`REPLY_BATCH_BYTES`] and
/// leaves the rest of the requests for its next pass, so one pass never builds more than
/// that (plus one reply) for one requesting shard, however many large reads it was sent.
#[derive(Default)]
pub struct ReplyBatch {
    pub buf: Vec<u8>,
    pub replies: Vec<ForwardedReply>,
}

/// Reply bytes past which a shard builds no more replies for one other shard in a pass.
/// Small replies never reach it (a full pipeline window of them is kilobytes), so it costs
/// the common case nothing; large reads (a 60 MiB GET from each of 80 connections) go back
/// a few per pass instead of as one multi-GiB message built at once.
pub const REPLY_BATCH_BYTES: usize = 16 << 20;

impl ReplyBatch {
    /// Iterates `(reply, its bytes)`.
    pub fn iter(&self) -> impl Iterator<Item = (&ForwardedReply, &[u8])> {
        let mut start = 0usize;
        self.replies.iter().map(move |r| {
            let bytes = &self.buf[start..r.end as usize];
            start = r.end as usize;
            (r, bytes)
        })
    }

    /// True once this pass should build no more replies into it.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.buf.len() >= REPLY_BATCH_BYTES
    }
}

/// The sending side of a shard's inbox; cloned to every thread that talks to the shard.
#[derive(Clone)]
pub struct ShardHandle {
    sender: Sender<Message>,
    waker: Arc<mio::Waker>,
    /// True while the shard is in (or about to enter) `poll` and needs a wake-up to see mail.
    sleeping: Arc<AtomicBool>,
    /// The connections other shards gathered onto this one lately (`shard::gather`).
    pub arrivals: Arc<super::gather::Arrivals>,
}

impl ShardHandle {
    /// Messages waiting in the shard's inbox now (the metrics endpoint reads it: a load of
    /// the channel's counters, from any thread, nothing the shard does).
    pub fn queued(&self) -> usize {
        self.sender.len()
    }

    /// Delivers a message, waking the shard only if it is asleep.
    pub fn send(&self, message: Message) {
        // A send fails only when the shard has exited (shutdown); then nobody awaits the reply.
        if self.sender.send(message).is_err() {
            return;
        }
        // Pairs with the fence in `prepare_to_sleep` (Dekker): either the shard sees our
        // message when it re-checks its inbox, or we see its `sleeping` flag and wake it.
        fence(SeqCst);
        if self.sleeping.swap(false, SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake shard: {e}");
            }
        }
    }
}

/// The receiving side, owned by the shard's thread.
pub struct Mailbox {
    receiver: Receiver<Message>,
    sleeping: Arc<AtomicBool>,
}

impl Mailbox {
    /// A new inbox whose waker is registered on `registry` under `token`.
    pub fn new(
        registry: &mio::Registry,
        token: mio::Token,
    ) -> std::io::Result<(Mailbox, ShardHandle)> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let sleeping = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(mio::Waker::new(registry, token)?);
        Ok((
            Mailbox {
                receiver,
                sleeping: sleeping.clone(),
            },
            ShardHandle {
                sender,
                waker,
                sleeping,
                arrivals: Arc::default(),
            },
        ))
    }

    #[inline]
    pub fn try_recv(&self) -> Option<Message> {
        self.receiver.try_recv().ok()
    }

    /// Marks the shard asleep. Returns false (and stays awake) if mail arrived meanwhile: the
    /// caller must then poll without blocking.
    pub fn prepare_to_sleep(&self) -> bool {
        self.sleeping.store(true, SeqCst);
        fence(SeqCst);
        if self.receiver.is_empty() {
            true
        } else {
            self.sleeping.store(false, SeqCst);
            false
        }
    }

    /// Whether mail waits in the inbox (a full sync's walk step stops early for it:
    /// `shard::replicate`).
    pub fn has_mail(&self) -> bool {
        !self.receiver.is_empty()
    }

    /// Marks the shard awake after `poll` returns: senders need not wake it now.
    pub fn woke_up(&self) {
        self.sleeping.store(false, SeqCst);
    }
}

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

use std::sync::atomic::{fence, AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::acl::{Acl, AclChange};
use crate::catalog::Catalog;
use crate::command::partition::CreatePartition;
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
    Drop(String),
    Acl(AclChange),
}

/// Everything a shard's inbox can carry.
pub enum Message {
    /// A freshly accepted client socket (from the acceptor).
    NewConnection(mio::net::TcpStream, std::net::SocketAddr),
    /// A connection moving here because all its recent requests were for this shard's
    /// partitions. It has nothing in flight: no reply owed by any shard.
    Migrate(Box<super::connection::Connection>),
    /// Requests from another shard's connections for partitions this shard owns.
    Requests(RequestBatch),
    /// Replies to requests this shard forwarded.
    Replies(ReplyBatch),
    /// To the coordinator: please change the catalog or the ACL, answer `reply_to` when every
    /// shard has the new version.
    Change { reply_to: ReplyTo, change: Change },
    /// From the coordinator: the current catalog and ACL (either or both new); acknowledge
    /// with `UpdateAck`.
    Update {
        epoch: u64,
        catalog: Arc<Catalog>,
        acl: Arc<Acl>,
    },
    /// To the coordinator: this shard now uses the state of `epoch`.
    UpdateAck { epoch: u64 },
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
    /// Stop accepting work, finish what is in flight, exit.
    Shutdown,
}

/// One forwarded request inside a [`RequestBatch`].
#[derive(Clone, Copy, Debug)]
pub struct ForwardedRequest {
    pub conn: ConnRef,
    pub seq: u64,
    pub protocol: Protocol,
    pub command: CommandId,
    /// This request's arguments: `spans[first_span..first_span + argc]` of the batch.
    pub first_span: u32,
    pub argc: u32,
}

/// Requests from one shard to another, collected during one poll pass.
#[derive(Default)]
pub struct RequestBatch {
    pub from: usize,
    /// All arguments of all requests, back to back.
    pub buf: Vec<u8>,
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
    ) {
        let first_span = self.spans.len() as u32;
        for arg in args.iter() {
            let start = self.buf.len() as u32;
            self.buf.extend_from_slice(arg);
            self.spans.push(Span {
                start,
                end: self.buf.len() as u32,
            });
        }
        self.requests.push(ForwardedRequest {
            conn,
            seq,
            protocol,
            command,
            first_span,
            argc: args.len() as u32,
        });
    }

    /// The arguments of request `r`.
    pub fn args(&self, r: &ForwardedRequest) -> Args<'_> {
        let first = r.first_span as usize;
        Args::new(&self.buf, &self.spans[first..first + r.argc as usize])
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
    /// The reply is `buf[previous reply's end..end]`.
    pub end: u32,
    /// The reply was not built because it would pass the client's output limit: the
    /// connection's shard closes the connection instead of answering.
    pub over_output_limit: bool,
}

/// Encoded replies going back to the shard that forwarded the requests.
#[derive(Default)]
pub struct ReplyBatch {
    pub buf: Vec<u8>,
    pub replies: Vec<ForwardedReply>,
}

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
}

/// The sending side of a shard's inbox; cloned to every thread that talks to the shard.
#[derive(Clone)]
pub struct ShardHandle {
    sender: Sender<Message>,
    waker: Arc<mio::Waker>,
    /// True while the shard is in (or about to enter) `poll` and needs a wake-up to see mail.
    sleeping: Arc<AtomicBool>,
}

impl ShardHandle {
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

    /// Marks the shard awake after `poll` returns: senders need not wake it now.
    pub fn woke_up(&self) {
        self.sleeping.store(false, SeqCst);
    }
}

//! Pub/Sub's shard side: who is subscribed to what on this shard, and how a message
//! published on any shard reaches every subscriber once (the commands' replies, permissions
//! and bounds are [`crate::command::pubsub`]'s).
//!
//! # Design
//! - **Each shard keeps its own subscribers.** A connection's subscriptions are in its
//!   session ([`Subscriptions`]) and in its shard's [`PubSub`] registry (channel -> its
//!   connections here, pattern -> its connections here). A subscribed connection never moves
//!   to another shard (`output`'s migration check), so the registry never points elsewhere.
//!   Closing the connection, `RESET`, the last `(P)UNSUBSCRIBE` or a revocation takes it out.
//! - **A rarely written summary says where messages must go.** Each shard publishes how many
//!   channels and patterns have a subscriber on it (the gauges `ShardMetrics::pubsub_*`,
//!   written by that shard when its registry gains or loses a key, read by INFO too). A
//!   PUBLISH reads the other shards' two gauges (two relaxed loads each) and copies the
//!   message into the Pub/Sub outbox of each shard that has any, sent at the end of the pass
//!   as one [`Message::Publish`] batch per destination, with the request batches (at most one
//!   wake). Nothing crosses shards while no other shard has a subscriber.
//! - **The receiver count is a deferred reply.** Redis answers PUBLISH with the number of
//!   receivers; here each shard the message went to answers how many of its subscribers got
//!   it ([`Message::Published`], one per batch), and the PUBLISH's reply slot waits like a
//!   forwarded request's: replies behind it keep their order, and no shard ever waits. The
//!   local subscribers are served at the end of the connection's read ([`Shard::service`]
//!   calls [`Shard::deliver_local`]: the dispatch that ran the PUBLISH cannot reach other
//!   connections), also behind the slot. A connection subscribed itself (RESP3) gets its own
//!   message first, at once, and then the count, as in Redis.
//! - **Order.** One publisher's messages are copied in request order into its shard's
//!   outboxes and local queue, each travels in a FIFO channel, and each subscriber is served
//!   by its own shard alone, so every subscriber sees one publisher's messages in publish
//!   order, whichever shards the two live on. (A publisher that moves to another shard moves
//!   only with nothing in flight, so after every shard has counted its earlier messages.)
//! - **A slow subscriber costs its publisher nothing.** A message is appended to each
//!   subscriber's output like any reply; one whose pending output passes
//!   `client-output-limit` is closed on the spot. The shard that serves it never waits for
//!   its socket.
//! - **PUBSUB CHANNELS|NUMSUB|NUMPAT** ask every other shard with subscribers
//!   ([`Message::PubsubQuery`]) and merge their answers with this shard's
//!   ([`pubsub::merge`]): the sets of names are merged (a channel with subscribers on two
//!   shards is listed once), the counts summed. INFO's `pubsub_channels`/`pubsub_patterns`
//!   are the sums of the shards' gauges (such a channel counts on each).
//!
//! - **Replicas get every message.** A PUBLISH on a primary with replicas also goes into
//!   the replication stream (`Feeds::publish`: a `PUBLISH` frame after the pass's records),
//!   and each replica shard delivers it to its own subscribers
//!   ([`Shard::deliver_replicated`]), as Redis propagates PUBLISH to its replicas. Its reply
//!   counts the primary's receivers only, as Redis's does.
//!
//! What a subscription costs a request that is not Pub/Sub: dispatch tests whether the
//! session has subscriptions (one load of a field it has in cache) for the RESP2
//! subscribed-mode refusal; nothing else.

use hashbrown::HashMap;
use slab::Slab;

use crate::acl::Perms;
use crate::command::pubsub::{self, Answer, Kind, Query, Subscriptions, MAX_SUBSCRIPTIONS};
use crate::command::server::Session;
use crate::command::{CommandError, CommandId, CommandSpec};
use crate::metrics::{Outcome, ShardMetrics};
use crate::protocol::{Args, Protocol, ReplyWriter};

use super::connection::ReplyQueue;
use super::mailbox::{ConnRef, Message};
use super::{Core, Shard};

/// This shard's subscribers and its Pub/Sub traffic in flight.
#[derive(Default)]
pub(super) struct PubSub {
    /// Channel -> this shard's connections subscribed to it.
    channels: HashMap<Box<[u8]>, Vec<ConnRef>>,
    /// Pattern -> this shard's connections subscribed to it.
    patterns: HashMap<Box<[u8]>, Vec<ConnRef>>,
    /// Connections with a subscription.
    clients: usize,
    /// Messages for each other shard's subscribers, collected during this pass.
    outboxes: Vec<PublishBatch>,
    /// Messages published here this pass for this shard's other subscribers, delivered at
    /// the end of the publisher's read ([`Shard::deliver_local`]).
    local: PublishBatch,
    /// PUBLISHes and PUBSUB questions waiting for other shards' answers.
    waiting: Slab<Waiting>,
    /// Reused by [`Shard::deliver`]: the frame in each protocol, and who got one.
    frames: [Vec<u8>; 2],
    touched: Vec<usize>,
    /// Reused by PUBLISH: the other shards a message goes to.
    route: Vec<usize>,
}

/// Messages from one shard's publishers for another shard's subscribers.
#[derive(Default)]
pub struct PublishBatch {
    pub from: usize,
    /// Channels and payloads, back to back.
    buf: Vec<u8>,
    items: Vec<Item>,
}

/// One message of a [`PublishBatch`]: `buf[start..mid]` its channel, `buf[mid..end]` its
/// payload.
struct Item {
    /// The waiting PUBLISH on the sending shard.
    token: u32,
    start: usize,
    mid: usize,
    end: usize,
    /// A connection that already got it (the publisher itself; local batches only).
    skip: Option<ConnRef>,
}

impl PublishBatch {
    fn push(&mut self, token: u32, channel: &[u8], payload: &[u8], skip: Option<ConnRef>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(channel);
        let mid = self.buf.len();
        self.buf.extend_from_slice(payload);
        self.items.push(Item {
            token,
            start,
            mid,
            end: self.buf.len(),
            skip,
        });
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A request of this shard's waiting for other shards.
enum Waiting {
    /// A PUBLISH: receivers counted so far, answers still to come.
    Publish {
        conn: ConnRef,
        seq: u64,
        count: u64,
        left: usize,
    },
    /// A PUBSUB question: the answers so far.
    Query {
        conn: ConnRef,
        seq: u64,
        protocol: Protocol,
        /// Who asked: what it may see of the answer.
        user: Option<std::sync::Arc<crate::acl::User>>,
        query: std::sync::Arc<Query>,
        answers: Vec<Answer>,
        left: usize,
    },
}

impl PubSub {
    pub(super) fn new(shards: usize) -> PubSub {
        PubSub {
            outboxes: (0..shards).map(|_| PublishBatch::default()).collect(),
            ..PubSub::default()
        }
    }

    /// This shard's answer to a PUBSUB question.
    fn answer(&self, query: &Query) -> Answer {
        match query {
            Query::Channels(pattern) => Answer::Names(
                self.channels
                    .keys()
                    .filter(|c| {
                        pattern
                            .as_deref()
                            .is_none_or(|p| pubsub::pattern_matches(p, c))
                    })
                    .cloned()
                    .collect(),
            ),
            Query::NumSub(channels) => Answer::Counts(
                channels
                    .iter()
                    .map(|c| {
                        self.channels
                            .get(c.as_slice())
                            .map_or(0, |v| v.len() as u64)
                    })
                    .collect(),
            ),
            Query::NumPat => Answer::Names(self.patterns.keys().cloned().collect()),
        }
    }

    /// Adds `conn` under `name` in `map`.
    fn add(map: &mut HashMap<Box<[u8]>, Vec<ConnRef>>, name: &[u8], conn: ConnRef) {
        match map.get_mut(name) {
            Some(conns) => conns.push(conn),
            None => {
                map.insert(name.into(), vec![conn]);
            }
        }
    }

    /// Takes `conn` out from under `name` in `map` (the name goes once it has no one).
    fn remove(map: &mut HashMap<Box<[u8]>, Vec<ConnRef>>, name: &[u8], conn: ConnRef) {
        if let Some(conns) = map.get_mut(name) {
            if let Some(at) = conns.iter().position(|c| *c == conn) {
                conns.swap_remove(at);
            }
            if conns.is_empty() {
                map.remove(name);
            }
        }
    }

    /// Takes every subscription of `conn` out of the registry.
    fn forget(&mut self, conn: ConnRef, subs: &Subscriptions) {
        for channel in &subs.channels {
            PubSub::remove(&mut self.channels, channel, conn);
        }
        for pattern in &subs.patterns {
            PubSub::remove(&mut self.patterns, pattern, conn);
        }
        self.clients = self.clients.saturating_sub(1);
    }
}

impl Core {
    /// Publishes the registry's size in the gauges other shards route by (and INFO reads).
    fn pubsub_gauges(&self) {
        let m = &self.shared.metrics.shards[self.id];
        ShardMetrics::set(&m.pubsub_channels, self.pubsub.channels.len() as u64);
        ShardMetrics::set(&m.pubsub_patterns, self.pubsub.patterns.len() as u64);
        ShardMetrics::set(&m.pubsub_clients, self.pubsub.clients as u64);
    }

    /// Other shards with a channel or pattern subscribed (from their gauges).
    fn shards_with_subscribers(&self) -> impl Iterator<Item = usize> + '_ {
        let metrics = &self.shared.metrics.shards;
        (0..metrics.len()).filter(move |&s| {
            s != self.id
                && (ShardMetrics::get(&metrics[s].pubsub_channels) != 0
                    || ShardMetrics::get(&metrics[s].pubsub_patterns) != 0)
        })
    }

    /// Runs a Pub/Sub command, and RESET's end of subscriptions; false when `spec` is none
    /// of those (RESET always: its handler runs after this).
    pub(super) fn pubsub_command(
        &mut self,
        conn_ref: ConnRef,
        spec: &CommandSpec,
        args: &Args,
        session: &mut Session,
        replies: &mut ReplyQueue,
    ) -> bool {
        let id = spec.id;
        if id == CommandId::Reset {
            if let Some(subs) = session.pubsub.take() {
                self.pubsub.forget(conn_ref, &subs);
                self.pubsub_gauges();
            }
            return false;
        }
        let result = match id {
            CommandId::Subscribe => {
                self.subscribe(conn_ref, Kind::Subscribe, args, session, replies)
            }
            CommandId::PSubscribe => {
                self.subscribe(conn_ref, Kind::PSubscribe, args, session, replies)
            }
            CommandId::Unsubscribe => {
                self.unsubscribe(conn_ref, Kind::Unsubscribe, args, session, replies);
                Ok(())
            }
            CommandId::PUnsubscribe => {
                self.unsubscribe(conn_ref, Kind::PUnsubscribe, args, session, replies);
                Ok(())
            }
            CommandId::Publish => self.publish(conn_ref, args, session, replies),
            CommandId::Pubsub => self.pubsub_query(conn_ref, args, session, replies),
            _ => return false,
        };
        let stats = &self.shared.metrics.shards[self.id].command_stats[id as usize];
        match result {
            Ok(()) => stats.record(0, Outcome::Ok),
            Err(e) => {
                stats.record(0, Outcome::Failed);
                replies.push_ready(session.protocol, |w| e.write_to(w));
            }
        }
        true
    }

    /// `SUBSCRIBE` / `PSUBSCRIBE`: every name is checked first (length, permission, the
    /// connection's bound), so that a refused request subscribes to nothing.
    fn subscribe(
        &mut self,
        conn_ref: ConnRef,
        kind: Kind,
        args: &Args,
        session: &mut Session,
        replies: &mut ReplyQueue,
    ) -> Result<(), CommandError> {
        let Some(user) = session.user.clone() else {
            return Err(CommandError::NoAuth);
        };
        let max = self.shared.config.live.max_key_len();
        let mut new = 0;
        for name in args.iter().skip(1) {
            pubsub::check_name(name, max)?;
            if kind.is_pattern() {
                pubsub::check_pattern(&user, name)?;
            } else {
                pubsub::check_channel(&user, name, Perms::READ)?;
            }
            let held = session.pubsub.as_ref().is_some_and(|s| {
                if kind.is_pattern() {
                    s.patterns.contains(name)
                } else {
                    s.channels.contains(name)
                }
            });
            new += usize::from(!held);
        }
        let before = session.pubsub.as_ref().map_or(0, |s| s.count());
        if before + new > MAX_SUBSCRIPTIONS {
            return Err(pubsub::too_many());
        }
        if session.pubsub.is_none() {
            self.pubsub.clients += 1;
        }
        let subs = session.pubsub.get_or_insert_with(Default::default);
        let registry = &mut self.pubsub;
        replies.push_ready(session.protocol, |w| {
            for name in args.iter().skip(1) {
                let (set, map) = if kind.is_pattern() {
                    (&mut subs.patterns, &mut registry.patterns)
                } else {
                    (&mut subs.channels, &mut registry.channels)
                };
                if set.insert(name.into()) {
                    PubSub::add(map, name, conn_ref);
                }
                pubsub::confirmation(w, kind, Some(name), subs.count());
            }
        });
        self.pubsub_gauges();
        Ok(())
    }

    /// `UNSUBSCRIBE` / `PUNSUBSCRIBE`: the names given, or every subscription of that kind.
    fn unsubscribe(
        &mut self,
        conn_ref: ConnRef,
        kind: Kind,
        args: &Args,
        session: &mut Session,
        replies: &mut ReplyQueue,
    ) {
        let names: Vec<Box<[u8]>> = if args.len() > 1 {
            args.iter().skip(1).map(Into::into).collect()
        } else {
            match &session.pubsub {
                Some(subs) if kind.is_pattern() => subs.patterns.iter().cloned().collect(),
                Some(subs) => subs.channels.iter().cloned().collect(),
                None => Vec::new(),
            }
        };
        let registry = &mut self.pubsub;
        let subs = &mut session.pubsub;
        replies.push_ready(session.protocol, |w| {
            if names.is_empty() {
                let count = subs.as_ref().map_or(0, |s| s.count());
                pubsub::confirmation(w, kind, None, count);
                return;
            }
            for name in &names {
                let count = match subs {
                    Some(s) => {
                        let (set, map) = if kind.is_pattern() {
                            (&mut s.patterns, &mut registry.patterns)
                        } else {
                            (&mut s.channels, &mut registry.channels)
                        };
                        if set.remove(name) {
                            PubSub::remove(map, name, conn_ref);
                        }
                        s.count()
                    }
                    None => 0,
                };
                pubsub::confirmation(w, kind, Some(name), count);
            }
        });
        // The last subscription gone: out of subscribed mode.
        if session.pubsub.as_ref().is_some_and(|s| s.count() == 0) {
            session.pubsub = None;
            self.pubsub.clients = self.pubsub.clients.saturating_sub(1);
        }
        self.pubsub_gauges();
    }

    /// `PUBLISH <channel> <message>`.
    fn publish(
        &mut self,
        conn_ref: ConnRef,
        args: &Args,
        session: &Session,
        replies: &mut ReplyQueue,
    ) -> Result<(), CommandError> {
        let (channel, payload) = (args.get(1), args.get(2));
        let Some(user) = session.user.as_deref() else {
            return Err(CommandError::NoAuth);
        };
        pubsub::check_channel(user, channel, Perms::WRITE)?;
        self.feeds.publish(channel, payload);
        let protocol = session.protocol;
        // Subscribed itself: its own message first, as Redis sends it.
        let mut count = 0u64;
        let mut skip = None;
        if let Some(subs) = &session.pubsub {
            if subs.channels.contains(channel) {
                replies.push_bytes(&frame(|b| {
                    pubsub::message_frame(b, protocol, channel, payload)
                }));
                count += 1;
            }
            for pattern in subs.patterns.iter() {
                if pubsub::pattern_matches(pattern, channel) {
                    replies.push_bytes(&frame(|b| {
                        pubsub::pmessage_frame(b, protocol, pattern, channel, payload)
                    }));
                    count += 1;
                }
            }
            skip = Some(conn_ref);
        }
        let local = !self.pubsub.channels.is_empty() || !self.pubsub.patterns.is_empty();
        let mut remote = std::mem::take(&mut self.pubsub.route);
        remote.clear();
        remote.extend(self.shards_with_subscribers());
        if !local && remote.is_empty() {
            self.pubsub.route = remote;
            replies.push_ready(protocol, |w| w.integer(count as i64));
            return Ok(());
        }
        let seq = replies.push_waiting();
        let token = self.pubsub.waiting.insert(Waiting::Publish {
            conn: conn_ref,
            seq,
            count,
            left: usize::from(local) + remote.len(),
        }) as u32;
        if local {
            self.pubsub.local.push(token, channel, payload, skip);
        }
        for &shard in &remote {
            self.pubsub.outboxes[shard].push(token, channel, payload, None);
        }
        self.pubsub.route = remote;
        Ok(())
    }

    /// `PUBSUB ...`: HELP here, a question to every shard with subscribers otherwise.
    fn pubsub_query(
        &mut self,
        conn_ref: ConnRef,
        args: &Args,
        session: &Session,
        replies: &mut ReplyQueue,
    ) -> Result<(), CommandError> {
        let protocol = session.protocol;
        let user = session.user.clone();
        let Some(query) = pubsub::parse_pubsub(args)? else {
            replies.push_ready(protocol, pubsub::help);
            return Ok(());
        };
        let answers = vec![self.pubsub.answer(&query)];
        let remote: Vec<usize> = self.shards_with_subscribers().collect();
        if remote.is_empty() {
            let visible = |c: &[u8]| pubsub::visible(user.as_deref(), c);
            replies.push_ready(protocol, |w| pubsub::merge(&query, answers, visible, w));
            return Ok(());
        }
        let seq = replies.push_waiting();
        let query = std::sync::Arc::new(query);
        let token = self.pubsub.waiting.insert(Waiting::Query {
            conn: conn_ref,
            seq,
            protocol,
            user,
            query: query.clone(),
            answers,
            left: remote.len(),
        }) as u32;
        for shard in remote {
            self.shared.shards[shard].send(Message::PubsubQuery {
                from: self.id,
                token,
                query: query.clone(),
            });
        }
        Ok(())
    }

    /// Sends this pass's messages for other shards' subscribers (end of the pass, with the
    /// request batches).
    pub(super) fn flush_publishes(&mut self) {
        for shard in 0..self.pubsub.outboxes.len() {
            if !self.pubsub.outboxes[shard].is_empty() {
                let mut batch = std::mem::take(&mut self.pubsub.outboxes[shard]);
                batch.from = self.id;
                self.shared.shards[shard].send(Message::Publish(Box::new(batch)));
            }
        }
    }
}

/// One frame built by `build`, in its own buffer.
fn frame(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::new();
    build(&mut buf);
    buf
}

impl Shard {
    /// Delivers `payload` on `channel` to this shard's subscribers (but `skip`), and returns
    /// how many got it. A subscriber that passes `client-output-limit` with it is closed.
    fn deliver(&mut self, channel: &[u8], payload: &[u8], skip: Option<ConnRef>) -> u64 {
        let Shard { conns, core, .. } = self;
        let limit = core.output_limit;
        let ps = &mut core.pubsub;
        let to_write = &mut core.to_write;
        let mut count = 0u64;
        let mut over = std::mem::take(&mut ps.touched);
        let frames = &mut ps.frames;
        // One subscriber's copy (the frame built once per protocol); what `after_progress`
        // would do after new output, inline (it runs for every subscriber of every message).
        let mut send = |c: ConnRef,
                        frames: &mut [Vec<u8>; 2],
                        build: &mut dyn FnMut(&mut Vec<u8>, Protocol)| {
            if Some(c) == skip {
                return;
            }
            let Some(conn) = conns.get_mut(c.index as usize) else {
                return;
            };
            if conn.conn_ref != c {
                return;
            }
            let protocol = conn.session.protocol;
            let buf = &mut frames[usize::from(protocol != Protocol::Resp2)];
            if buf.is_empty() {
                build(buf, protocol);
            }
            conn.replies.push_bytes(buf);
            count += 1;
            if conn.replies.pending() > limit {
                over.push(c.index as usize);
            } else if conn.has_output() && !conn.queued_for_write {
                conn.queued_for_write = true;
                to_write.push(c.index as usize);
            }
        };
        frames.iter_mut().for_each(Vec::clear);
        if let Some(subs) = ps.channels.get(channel) {
            let mut build = |buf: &mut Vec<u8>, protocol| {
                pubsub::message_frame(buf, protocol, channel, payload)
            };
            for &c in subs {
                send(c, frames, &mut build);
            }
        }
        for (pattern, subs) in ps.patterns.iter() {
            if !pubsub::pattern_matches(pattern, channel) {
                continue;
            }
            frames.iter_mut().for_each(Vec::clear);
            let mut build = |buf: &mut Vec<u8>, protocol| {
                pubsub::pmessage_frame(buf, protocol, pattern, channel, payload)
            };
            for &c in subs {
                send(c, frames, &mut build);
            }
        }
        for index in over.drain(..) {
            self.close_if_over_output_limit(index);
        }
        self.core.pubsub.touched = over;
        count
    }

    /// Delivers what this shard's connections published for its own subscribers, and
    /// counts them on each PUBLISH (`service` calls it after a connection's read: one test
    /// when nothing was published).
    #[inline]
    pub(super) fn deliver_local(&mut self) {
        if !self.core.pubsub.local.is_empty() {
            self.deliver_local_batch();
        }
    }

    #[inline(never)]
    fn deliver_local_batch(&mut self) {
        let batch = std::mem::take(&mut self.core.pubsub.local);
        for item in &batch.items {
            let channel = &batch.buf[item.start..item.mid];
            let payload = &batch.buf[item.mid..item.end];
            let n = self.deliver(channel, payload, item.skip);
            self.published(item.token, n);
        }
        // Keep the buffers for the next pass.
        let mut batch = batch;
        batch.buf.clear();
        batch.items.clear();
        self.core.pubsub.local = batch;
    }

    /// Replica side: a message published on the primary, delivered to this shard's
    /// subscribers (every replica shard is sent it; nobody waits for a count).
    pub(super) fn deliver_replicated(&mut self, channel: &[u8], payload: &[u8]) {
        self.deliver(channel, payload, None);
    }

    /// Takes another shard's messages: delivers each, and answers how many got it.
    pub(super) fn take_publish(&mut self, batch: &PublishBatch) {
        let mut counts = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let channel = &batch.buf[item.start..item.mid];
            let payload = &batch.buf[item.mid..item.end];
            counts.push((item.token, self.deliver(channel, payload, None)));
        }
        self.core.shared.shards[batch.from].send(Message::Published(counts));
    }

    /// Counts the receivers of this shard's PUBLISHes that one shard delivered.
    pub(super) fn take_published(&mut self, counts: &[(u32, u64)]) {
        for &(token, n) in counts {
            self.published(token, n);
        }
    }

    /// `n` more receivers for waiting PUBLISH `token`; the last shard's answer fills its
    /// slot.
    fn published(&mut self, token: u32, n: u64) {
        let token = token as usize;
        let Some(Waiting::Publish { count, left, .. }) = self.core.pubsub.waiting.get_mut(token)
        else {
            return;
        };
        *count += n;
        *left -= 1;
        if *left > 0 {
            return;
        }
        if let Waiting::Publish {
            conn, seq, count, ..
        } = self.core.pubsub.waiting.remove(token)
        {
            // An integer is the same in both protocols.
            let reply = format!(":{count}\r\n");
            self.fill(conn, seq, reply.as_bytes());
        }
    }

    /// Answers another shard's PUBSUB question about this shard's subscribers.
    pub(super) fn answer_pubsub(&mut self, from: usize, token: u32, query: &Query) {
        let answer = self.core.pubsub.answer(query);
        self.core.shared.shards[from].send(Message::PubsubAnswer { token, answer });
    }

    /// One shard's answer to this shard's PUBSUB question; the last one answers it.
    pub(super) fn take_pubsub_answer(&mut self, token: u32, answer: Answer) {
        let token = token as usize;
        let Some(Waiting::Query { answers, left, .. }) = self.core.pubsub.waiting.get_mut(token)
        else {
            return;
        };
        answers.push(answer);
        *left -= 1;
        if *left > 0 {
            return;
        }
        if let Waiting::Query {
            conn,
            seq,
            protocol,
            user,
            query,
            answers,
            ..
        } = self.core.pubsub.waiting.remove(token)
        {
            let mut reply = Vec::new();
            let visible = |c: &[u8]| pubsub::visible(user.as_deref(), c);
            let mut w = ReplyWriter::new(&mut reply, protocol);
            pubsub::merge(&query, answers, visible, &mut w);
            self.fill(conn, seq, &reply);
        }
    }

    /// Fills reply slot `seq` of `conn`, if it is still open.
    fn fill(&mut self, conn_ref: ConnRef, seq: u64, reply: &[u8]) {
        let index = conn_ref.index as usize;
        match self.conns.get_mut(index) {
            Some(conn) if conn.conn_ref == conn_ref => {
                conn.replies.fill(seq, reply);
            }
            _ => return,
        }
        if !self.close_if_over_output_limit(index) {
            self.after_progress(index);
        }
    }

    /// A connection closes: its subscriptions go.
    pub(super) fn pubsub_closed(&mut self, conn_ref: ConnRef, subs: &Subscriptions) {
        self.core.pubsub.forget(conn_ref, subs);
        self.core.pubsub_gauges();
    }

    /// After a new ACL version: a connection whose user may no longer hold one of its
    /// subscriptions loses them all at once and is closed (once its replies so far are
    /// written), as Redis kills such clients. (Connections of dropped users are closed by
    /// `apply_acl` already.)
    pub(super) fn recheck_subscribers(&mut self) {
        if self.core.pubsub.clients == 0 {
            return;
        }
        let acl = self.core.acl.clone();
        let revoked: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| {
                let Some(subs) = &conn.session.pubsub else {
                    return false;
                };
                let user = conn.session.user.as_ref().and_then(|u| acl.current(u));
                user.is_none_or(|user| !pubsub::still_allowed(user, subs))
            })
            .map(|(index, _)| index)
            .collect();
        for index in revoked {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if let Some(subs) = conn.session.pubsub.take() {
                let conn_ref = conn.conn_ref;
                self.pubsub_closed(conn_ref, &subs);
            }
            self.close_once_written(index, "a subscription's permission was revoked");
        }
    }
}

//! One client connection: its socket, read buffer, parser, session and ordered reply queue.
//!
//! A connection lives on one shard for its whole life and is touched only by that thread.
//!
//! Replies must leave in request order although a request for a remote partition is answered
//! later than a local request behind it. The [`ReplyQueue`] keeps that order with *slots*:
//! every request takes the next sequence number; while no slot is waiting, a reply is encoded
//! straight into the output buffer (the common, all-local case costs nothing extra); once a
//! slot waits for another shard, later replies are parked until it is filled.
//!
//! One request may be answered by several (FLUSHALL: a FLUSH PARTITION per partition, on
//! their shards): its reply is a *whole* slot ([`ReplyQueue::push_whole`]) followed by a
//! *part* slot per piece ([`ReplyQueue::push_part`]), filled as any waiting slot is. Parts write
//! nothing; the whole answers once every part has, with the first error a part answered, or
//! `+OK`. The plain path never meets them: only [`ReplyQueue::fill`] tells a part apart.
//!
//! Until its session has a user, a connection's parser runs under the small pre-login limits
//! ([`Limits::before_login`]); [`Connection::sync_limits`] switches them when the session's
//! login state changes.
//!
//! The socket is a [`Transport`]: plain TCP, read straight into the read buffer and written
//! straight from the reply buffer, or TLS ([`crate::tls::stream`]), whose plaintext rustls
//! decrypts and encrypts on the way. Which one is one match per read and per write.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use crate::command::server::Session;
use crate::protocol::{Limits, Parser, Protocol, ReplyWriter};
use crate::tls::stream::{TlsStream, TlsWriter, Transport};

use super::mailbox::ConnRef;

/// First size of a read buffer, and the smallest free space we read into: big enough for a
/// deep pipeline of small requests in one `read`, small enough for thousands of connections.
const READ_CHUNK: usize = 16 * 1024;

/// A read buffer larger than this is given back to the allocator once it is empty again, so a
/// single huge request does not pin its memory for the connection's lifetime.
const READ_BUFFER_KEEP: usize = 256 * 1024;

/// Output larger than this is given back to the allocator once written, for the same reason.
const WRITE_BUFFER_KEEP: usize = 256 * 1024;

/// Consecutive requests of a connection that must all go to one other shard before the
/// connection moves there. High enough that a client alternating between partitions on
/// different shards never moves (it would only ping-pong), low enough that a benchmark or a
/// service talking to one partition moves within its first few pipelines.
const MIGRATE_AFTER: u32 = 64;

/// The streak that moves a new connection (one that has not moved yet, within its first
/// [`MIGRATE_AFTER`] requests) whose requests so far all went one way: every data request
/// to one other shard, or none at all (gathering). Its first move comes after a handful of
/// requests; any other move after a full streak.
///
/// Why: the first move is where the connection's work is, and waiting for it costs every
/// new connection [`MIGRATE_AFTER`] requests on the wrong shard. `redis-benchmark -c 50 -P 1`
/// against `--shards 2` (issue 17) ran 1,600 of its 200,000 requests (SET) forwarded, and
/// 3,500 (PING) on a shard that was about to be left empty, with both shards and the client
/// sharing 2 cores: about 1% of the requests, so its p99 was the warm-up's and not the
/// steady state's (`--shards 1`: 0.42 ms, `--shards 2`: 0.71). After 4 requests that is 100.
/// It cannot ping-pong: one early move per connection, and a moved connection keeps
/// [`Affinity::moved`] (full streaks) from then on. A connection that also used a partition
/// of its own shard, or of two shards, is not new in this sense: it waits for the full streak
/// as before.
const FIRST_MOVE_AFTER: u32 = 4;

/// Where a connection's requests have been going. A connection that only uses partitions of
/// one other shard is moved to that shard (as Dragonfly does), so its requests stop paying
/// for the hop there and back; one that uses no partition at all may be gathered onto a
/// lower-numbered shard (`shard::gather`).
#[derive(Debug, Default)]
pub struct Affinity {
    shard: usize,
    /// Requests in a row forwarded to `shard`.
    streak: u32,
    /// Partition-less requests in a row (no data request between them).
    unbound: u32,
    /// Requests counted here so far, and the data requests among them (saturating), for
    /// [`FIRST_MOVE_AFTER`].
    seen: u32,
    data: u32,
    /// The connection moved once already: every later move needs a full streak.
    moved: bool,
}

impl Affinity {
    /// The affinity of a connection that just moved (its streaks start again, at full
    /// length).
    pub fn moved() -> Self {
        Affinity {
            moved: true,
            ..Affinity::default()
        }
    }

    /// A request ran on the connection's own shard.
    #[inline]
    pub fn local(&mut self) {
        self.count();
        self.data = self.data.saturating_add(1);
        self.streak = 0;
        self.unbound = 0;
    }

    /// A request was forwarded to `shard`.
    #[inline]
    pub fn remote(&mut self, shard: usize) {
        self.count();
        self.data = self.data.saturating_add(1);
        self.unbound = 0;
        if self.streak > 0 && self.shard == shard {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.shard = shard;
            self.streak = 1;
        }
    }

    /// A request that names no partition ran (PING, ECHO, INFO, ...).
    #[inline]
    pub fn unbound(&mut self) {
        self.count();
        self.unbound = self.unbound.saturating_add(1);
    }

    #[inline]
    fn count(&mut self) {
        self.seen = self.seen.saturating_add(1);
    }

    /// The streak that moves the connection now: short for a new one whose requests so far
    /// all went one way (`uniform`), full otherwise ([`FIRST_MOVE_AFTER`]).
    #[inline]
    fn move_after(&self, uniform: bool) -> u32 {
        if uniform && !self.moved && self.seen <= MIGRATE_AFTER {
            FIRST_MOVE_AFTER
        } else {
            MIGRATE_AFTER
        }
    }

    /// The shard this connection should move to, if any.
    #[inline]
    pub fn target(&self) -> Option<usize> {
        // Uniform: every data request so far is of this streak.
        (self.streak >= self.move_after(self.streak == self.data)).then_some(self.shard)
    }

    /// Used no partition for long enough to be gathered (`shard::gather`).
    #[inline]
    pub fn gather_due(&self) -> bool {
        // Uniform: no data request so far.
        self.unbound >= self.move_after(self.data == 0)
    }

    /// Asked to be gathered and stays: the next question comes after another streak.
    #[inline]
    pub fn stay(&mut self) {
        self.unbound = 0;
    }
}

/// A slot in the reply queue.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// Waiting for another shard (or the coordinator).
    Waiting,
    /// Answered: `parked[start..end]`, to be written after the slots before it.
    Ready { start: usize, end: usize },
    /// Waiting, and one part of the whole slot `whole`: its reply goes there, not out.
    Part { whole: u64 },
}

/// A whole slot's parts, while it waits for them.
#[derive(Debug)]
struct Whole {
    seq: u64,
    parts_left: usize,
    /// More parts may still be pushed ([`ReplyQueue::close_whole`] not called yet).
    open: bool,
    /// The first error reply a part answered.
    error: Option<Vec<u8>>,
}

/// Replies of one connection, in request order.
#[derive(Default)]
pub struct ReplyQueue {
    /// Bytes ready to write, in order; `out[..written]` went out already.
    out: Vec<u8>,
    written: usize,
    /// Slots from the first unanswered one on; empty when nothing waits.
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    first_seq: u64,
    /// Sequence number the next request takes.
    next_seq: u64,
    /// Replies answered behind a waiting slot. Cleared whenever `slots` empties, so it never
    /// holds more than the replies of one window of in-flight requests.
    parked: Vec<u8>,
    /// Bytes of `parked` not yet moved to `out` (what the output limit counts of it).
    parked_live: usize,
    /// Whole slots waiting for their parts (empty but while a FLUSHALL is answered).
    wholes: Vec<Whole>,
}

impl ReplyQueue {
    /// Encodes a reply that is ready now; `encode` gets a writer over the right buffer.
    #[inline]
    pub fn push_ready<R>(
        &mut self,
        protocol: Protocol,
        encode: impl FnOnce(&mut ReplyWriter) -> R,
    ) -> R {
        self.next_seq += 1;
        // One call of `encode`, whichever buffer it writes to: two would make the compiler
        // keep a large `encode` (a data command's whole local path) out of line.
        let parked = !self.slots.is_empty();
        let buf = if parked {
            &mut self.parked
        } else {
            &mut self.out
        };
        let start = buf.len();
        let result = encode(&mut ReplyWriter::new(buf, protocol));
        if parked {
            self.parked_live += self.parked.len() - start;
            self.slots.push_back(Slot::Ready {
                start,
                end: self.parked.len(),
            });
        } else {
            self.first_seq = self.next_seq;
        }
        result
    }

    /// Appends bytes that answer no request (MONITOR's lines), in order with the replies.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.next_seq += 1;
        if self.slots.is_empty() {
            self.out.extend_from_slice(bytes);
            self.first_seq = self.next_seq;
        } else {
            let start = self.parked.len();
            self.parked.extend_from_slice(bytes);
            self.parked_live += bytes.len();
            self.slots.push_back(Slot::Ready {
                start,
                end: self.parked.len(),
            });
        }
    }

    /// Bytes the queue's buffers hold allocated (CLIENT LIST's `tot-mem`).
    pub fn buffer_bytes(&self) -> usize {
        self.out.capacity() + self.parked.capacity()
    }

    /// Reserves the slot of a request answered later; returns its sequence number.
    #[inline]
    pub fn push_waiting(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.slots.is_empty() {
            self.first_seq = seq;
        }
        self.slots.push_back(Slot::Waiting);
        seq
    }

    /// Reserves the slot of a request answered as a whole by parts pushed after it
    /// ([`ReplyQueue::push_part`]) until [`ReplyQueue::close_whole`]; returns its sequence
    /// number. Once closed and every part answered, it answers the first error a part
    /// answered, or `+OK`.
    pub fn push_whole(&mut self) -> u64 {
        let seq = self.push_waiting();
        self.wholes.push(Whole {
            seq,
            parts_left: 0,
            open: true,
            error: None,
        });
        seq
    }

    /// Reserves the slot of one part of the open whole `whole`; fill it as any waiting slot.
    pub fn push_part(&mut self, whole: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.slots.is_empty() {
            self.first_seq = seq;
        }
        self.slots.push_back(Slot::Part { whole });
        if let Some(entry) = self.wholes.iter_mut().find(|e| e.seq == whole) {
            entry.parts_left += 1;
        }
        seq
    }

    /// No more parts for `whole`: it answers as soon as its parts have (at once if none is
    /// left).
    pub fn close_whole(&mut self, whole: u64) {
        if let Some(entry) = self.wholes.iter_mut().find(|e| e.seq == whole) {
            entry.open = false;
        }
        self.answer_whole_if_done(whole);
    }

    fn answer_whole_if_done(&mut self, whole: u64) {
        let Some(at) = self
            .wholes
            .iter()
            .position(|e| e.seq == whole && !e.open && e.parts_left == 0)
        else {
            return;
        };
        let entry = self.wholes.swap_remove(at);
        let reply = entry.error.unwrap_or_else(|| b"+OK\r\n".to_vec());
        self.fill(whole, &reply);
    }

    /// Fills a waiting slot. Returns false for an unknown or already-filled slot.
    pub fn fill(&mut self, seq: u64, reply: &[u8]) -> bool {
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return false;
        };
        match self.slots.get(index as usize) {
            Some(Slot::Waiting) => {}
            Some(&Slot::Part { whole }) => {
                self.fill_part(index as usize, whole, reply);
                return true;
            }
            _ => return false,
        }
        if index == 0 {
            // The head: straight to the output, then release what was parked behind it.
            self.out.extend_from_slice(reply);
            self.slots.pop_front();
            self.first_seq += 1;
            self.release_ready();
        } else {
            let start = self.parked.len();
            self.parked.extend_from_slice(reply);
            self.parked_live += reply.len();
            self.slots[index as usize] = Slot::Ready {
                start,
                end: self.parked.len(),
            };
        }
        true
    }

    /// A part's reply: kept by its whole if it is the first error, written as nothing. Its
    /// whole comes before it and waits until every part is in, so a part is never the head.
    fn fill_part(&mut self, index: usize, whole: u64, reply: &[u8]) {
        let at = self.parked.len();
        self.slots[index] = Slot::Ready { start: at, end: at };
        // `-` is an error in both protocols; `!` a RESP3 bulk error.
        let is_error = matches!(reply.first(), Some(b'-' | b'!'));
        if let Some(entry) = self.wholes.iter_mut().find(|e| e.seq == whole) {
            if is_error && entry.error.is_none() {
                entry.error = Some(reply.to_vec());
            }
            entry.parts_left = entry.parts_left.saturating_sub(1);
        }
        self.answer_whole_if_done(whole);
    }

    fn release_ready(&mut self) {
        while let Some(&Slot::Ready { start, end }) = self.slots.front() {
            self.out.extend_from_slice(&self.parked[start..end]);
            self.parked_live -= end - start;
            self.slots.pop_front();
            self.first_seq += 1;
        }
        if self.slots.is_empty() {
            self.parked.clear();
            self.parked_live = 0;
            self.first_seq = self.next_seq;
        }
    }

    /// Whether `seq` waits at the head: every request before it was answered.
    #[inline]
    pub fn is_head(&self, seq: u64) -> bool {
        !self.slots.is_empty() && self.first_seq == seq
    }

    /// Requests whose replies are not written yet but are in the queue (waiting or parked).
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Bytes encoded but not written to the socket yet.
    #[inline]
    pub fn unwritten(&self) -> usize {
        self.out.len() - self.written
    }

    /// Bytes of replies this connection holds: unwritten output plus replies parked behind
    /// a slot still waiting for another shard. This is what the client output limit bounds.
    #[inline]
    pub fn pending(&self) -> usize {
        self.unwritten() + self.parked_live
    }

    #[inline]
    pub fn has_output(&self) -> bool {
        self.written < self.out.len()
    }

    /// Writes as much output as the socket takes. `Ok(true)` when all of it went out.
    pub fn write_to(&mut self, socket: &mut impl Write) -> io::Result<bool> {
        while self.written < self.out.len() {
            match socket.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.written = 0;
        self.out.clear();
        if self.out.capacity() > WRITE_BUFFER_KEEP {
            self.out = Vec::new();
        }
        Ok(true)
    }
}

/// What reading the socket found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Drained to `WouldBlock`.
    Drained,
    /// Stopped with bytes possibly left in the socket (buffer budget reached).
    More,
    /// The peer closed its side.
    Closed,
}

/// A client connection.
pub struct Connection {
    pub socket: Transport,
    pub peer: SocketAddr,
    pub conn_ref: ConnRef,
    /// Read buffer: `rbuf[rstart..rend]` is unparsed input. The parser's state refers to
    /// offsets from `rstart`, which only moves past whole requests.
    pub rbuf: Vec<u8>,
    pub rstart: usize,
    pub rend: usize,
    pub parser: Parser,
    pub session: Session,
    pub replies: ReplyQueue,
    /// A catalog change is in flight: later requests wait until it is answered, so that a
    /// pipelined `CREATE` then `SET` sees the partition.
    pub barrier: bool,
    /// Input ended (EOF or protocol error): read nothing more, close once output is written.
    pub closing: bool,
    /// The peer closed its side: read nothing more, but answer every complete request still
    /// in the buffer (a pause may have left some there), then close.
    pub input_closed: bool,
    /// Bytes may be left in the socket or buffer that were not processed yet (backpressure or
    /// fairness budget); the shard comes back to this connection without a new poll event.
    pub needs_service: bool,
    /// Already queued in the shard's list of connections with output to write.
    pub queued_for_write: bool,
    pub affinity: Affinity,
    /// Its output passed the client output limit (or a reply would have): the shard closes
    /// it at once, without writing what is pending.
    pub over_output_limit: bool,
    /// The shard's coarse clock when the connection last read or wrote a byte (idle timeout).
    pub last_active: Instant,
    /// When it was accepted (CLIENT LIST's `age`).
    pub created: Instant,
    /// A poll event said the peer closed its side (or the socket failed), whether or not the
    /// end of input has been read yet: a short read can leave the EOF unread, and an
    /// edge-triggered poll reports it only once. Lets the shard drop a connection that waits
    /// for its login without reading on (see `Shard::service`).
    pub peer_closed: bool,
}

impl Connection {
    pub fn new(
        socket: Transport,
        peer: SocketAddr,
        conn_ref: ConnRef,
        id: u64,
        limits: Limits,
        now: Instant,
    ) -> Self {
        Connection {
            socket,
            peer,
            conn_ref,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            parser: Parser::before_login(limits),
            session: Session {
                id,
                peer: Some(peer),
                ..Session::default()
            },
            replies: ReplyQueue::default(),
            barrier: false,
            closing: false,
            input_closed: false,
            needs_service: false,
            queued_for_write: false,
            affinity: Affinity::default(),
            over_output_limit: false,
            last_active: now,
            created: now,
            peer_closed: false,
        }
    }

    /// Puts the parser's limits in line with the session: the pre-login ones until it has a
    /// user, its configured ones after. True when they changed, so that requests already
    /// framed under the old ones must be framed again. One comparison when nothing changed.
    #[inline]
    pub fn sync_limits(&mut self) -> bool {
        sync_limits(&mut self.parser, &self.session)
    }

    /// Reads from the socket into the buffer, at most about `budget` bytes. `now` is the
    /// shard's coarse clock, recorded as the last activity when a byte arrives.
    pub fn read(&mut self, budget: usize, now: Instant) -> io::Result<ReadOutcome> {
        let socket = match &mut self.socket {
            Transport::Plain(socket) => socket,
            Transport::Tls(tls) => {
                return read_tls(
                    tls,
                    (&mut self.rbuf, &mut self.rstart, &mut self.rend),
                    &mut self.last_active,
                    budget,
                    now,
                )
            }
        };
        let mut total = 0;
        loop {
            make_room(&mut self.rbuf, &mut self.rstart, &mut self.rend);
            let space = self.rbuf.len() - self.rend;
            match socket.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => {
                    self.last_active = now;
                    self.rend += n;
                    total += n;
                    // A short read emptied the socket's receive queue: with edge-triggered
                    // polling, bytes arriving later raise a new event, so the usual extra
                    // `read` that would only answer WouldBlock is skipped (one syscall less
                    // per request batch; tokio relies on the same rule).
                    if n < space {
                        return Ok(ReadOutcome::Drained);
                    }
                    if total >= budget {
                        return Ok(ReadOutcome::More);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as much output as the socket takes. `Ok(true)` when all of it went out (for
    /// TLS: all of it encrypted and written, no record left in rustls).
    #[inline]
    pub fn write_out(&mut self) -> io::Result<bool> {
        match &mut self.socket {
            Transport::Plain(socket) => self.replies.write_to(socket),
            Transport::Tls(tls) => {
                if !self.replies.write_to(&mut TlsWriter(tls))? {
                    return Ok(false);
                }
                match tls.flush_records() {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Bytes wait to be written: replies, or (TLS) records rustls could not write yet.
    #[inline]
    pub fn has_output(&self) -> bool {
        self.replies.has_output() || self.socket.has_pending_output()
    }

    /// Unparsed bytes are waiting in the buffer.
    #[inline]
    pub fn has_input(&self) -> bool {
        self.rstart < self.rend
    }
}

/// Ensures free space after `rend`: moves unparsed bytes to the front, grows if needed.
#[inline]
fn make_room(rbuf: &mut Vec<u8>, rstart: &mut usize, rend: &mut usize) {
    if *rstart == *rend {
        *rstart = 0;
        *rend = 0;
        if rbuf.len() > READ_BUFFER_KEEP {
            *rbuf = Vec::new();
        }
    }
    if rbuf.len() - *rend >= READ_CHUNK / 2 {
        return;
    }
    if *rstart > 0 {
        rbuf.copy_within(*rstart..*rend, 0);
        *rend -= *rstart;
        *rstart = 0;
    }
    if rbuf.len() - *rend < READ_CHUNK / 2 {
        let new_len = (rbuf.len() * 2).max(READ_CHUNK);
        rbuf.resize(new_len, 0);
    }
}

/// [`Connection::read`] of a TLS connection: ciphertext into rustls, which answers the
/// handshake as it goes; plaintext from rustls into the read buffer.
fn read_tls(
    tls: &mut TlsStream,
    (rbuf, rstart, rend): (&mut Vec<u8>, &mut usize, &mut usize),
    last_active: &mut Instant,
    budget: usize,
    now: Instant,
) -> io::Result<ReadOutcome> {
    let mut total = 0;
    loop {
        let (ended, drained) = match tls.read_records() {
            Ok((0, _)) => (true, false),
            Ok((_, short)) => {
                *last_active = now;
                (false, short)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (false, true),
            Err(e) => return Err(e),
        };
        let (mut plaintext, peer_closed) = tls.process()?;
        while plaintext > 0 {
            make_room(rbuf, rstart, rend);
            let n = tls.read_plaintext(&mut rbuf[*rend..])?;
            if n == 0 {
                break;
            }
            *rend += n;
            total += n;
            plaintext = plaintext.saturating_sub(n);
        }
        // What the handshake asks for (or an alert) goes out now; what the socket does not
        // take waits for its writable event (`has_output`).
        match tls.flush_records() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        if ended || peer_closed {
            return Ok(ReadOutcome::Closed);
        }
        if drained {
            return Ok(ReadOutcome::Drained);
        }
        if total >= budget {
            return Ok(ReadOutcome::More);
        }
    }
}

/// [`Connection::sync_limits`] on borrowed fields, for callers that hold a borrow of the
/// connection's read buffer.
#[inline]
pub fn sync_limits(parser: &mut Parser, session: &Session) -> bool {
    let logged_in = session.user.is_some();
    if logged_in == parser.logged_in() {
        return false;
    }
    parser.set_logged_in(logged_in);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(q: &ReplyQueue) -> String {
        String::from_utf8_lossy(&q.out[q.written..]).into_owned()
    }

    #[test]
    fn replies_leave_in_request_order() {
        let mut q = ReplyQueue::default();
        q.push_ready(Protocol::Resp2, |w| w.integer(1));
        let a = q.push_waiting();
        q.push_ready(Protocol::Resp2, |w| w.integer(3));
        let b = q.push_waiting();
        q.push_ready(Protocol::Resp2, |w| w.integer(5));
        assert_eq!(text(&q), ":1\r\n");
        // The later remote reply arrives first: it must wait for the earlier one.
        assert!(q.fill(b, b":4\r\n"));
        assert_eq!(text(&q), ":1\r\n");
        assert!(q.fill(a, b":2\r\n"));
        assert_eq!(text(&q), ":1\r\n:2\r\n:3\r\n:4\r\n:5\r\n");
        assert_eq!(q.in_flight(), 0);
        // A duplicate or unknown fill is refused.
        assert!(!q.fill(a, b":9\r\n"));
        assert!(!q.fill(99, b":9\r\n"));
        // After draining, direct encoding resumes.
        q.push_ready(Protocol::Resp2, |w| w.integer(6));
        assert_eq!(text(&q), ":1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n");
        assert!(q.parked.is_empty());
    }

    #[test]
    fn a_whole_answers_once_every_part_has_with_the_first_error() {
        let mut q = ReplyQueue::default();
        q.push_ready(Protocol::Resp2, |w| w.integer(1));
        let whole = q.push_whole();
        let a = q.push_part(whole);
        let b = q.push_part(whole);
        let c = q.push_part(whole);
        q.close_whole(whole);
        q.push_ready(Protocol::Resp2, |w| w.integer(3));
        assert!(q.fill(b, b"+OK\r\n"));
        assert!(q.fill(a, b"+OK\r\n"));
        assert_eq!(text(&q), ":1\r\n", "one part still out");
        assert!(q.fill(c, b"+OK\r\n"));
        assert_eq!(text(&q), ":1\r\n+OK\r\n:3\r\n");
        assert_eq!(q.in_flight(), 0);
        assert!(!q.fill(a, b"+OK\r\n"), "a part is filled once");
        // The first error a part answers is the whole's reply.
        let whole = q.push_whole();
        let a = q.push_part(whole);
        let b = q.push_part(whole);
        // A part answered at once, before the whole is closed.
        let c = q.push_part(whole);
        assert!(q.fill(c, b"+OK\r\n"));
        q.close_whole(whole);
        assert!(q.fill(b, b"-IOERR first\r\n"));
        assert!(q.fill(a, b"-IOERR second\r\n"));
        assert!(text(&q).ends_with(":3\r\n-IOERR first\r\n"), "{}", text(&q));
        // No parts at all: answered when closed.
        let whole = q.push_whole();
        q.push_ready(Protocol::Resp2, |w| w.integer(4));
        q.close_whole(whole);
        assert!(text(&q).ends_with("-IOERR first\r\n+OK\r\n:4\r\n"));
        assert!(q.wholes.is_empty() && q.parked.is_empty());
    }

    #[test]
    fn affinity_needs_an_unbroken_streak_to_one_shard() {
        let mut a = Affinity::moved();
        for _ in 0..MIGRATE_AFTER - 1 {
            a.remote(1);
        }
        assert_eq!(a.target(), None);
        a.local();
        for _ in 0..MIGRATE_AFTER - 1 {
            a.remote(1);
        }
        a.remote(2);
        assert_eq!(a.target(), None);
        for _ in 1..MIGRATE_AFTER {
            a.remote(2);
        }
        assert_eq!(a.target(), Some(2));
    }

    #[test]
    fn gathering_needs_an_unbroken_streak_without_partitions() {
        let mut a = Affinity::moved();
        for _ in 0..MIGRATE_AFTER - 1 {
            a.unbound();
        }
        assert!(!a.gather_due());
        a.local();
        for _ in 0..MIGRATE_AFTER - 1 {
            a.unbound();
        }
        a.remote(1);
        a.unbound();
        assert!(!a.gather_due(), "a forwarded request breaks the streak");
        for _ in 1..MIGRATE_AFTER {
            a.unbound();
        }
        assert!(a.gather_due());
        a.stay();
        assert!(!a.gather_due());
        // Partition-less requests do not break a streak to another shard.
        let mut b = Affinity::moved();
        for _ in 0..MIGRATE_AFTER {
            b.remote(1);
            b.unbound();
        }
        assert_eq!(b.target(), Some(1));
    }

    /// A new connection moves after a handful of requests, once; a moved one, or one past
    /// its first `MIGRATE_AFTER` requests, needs the full streak.
    #[test]
    fn a_new_connection_moves_after_a_short_streak_once() {
        let mut a = Affinity::default();
        for _ in 0..FIRST_MOVE_AFTER - 1 {
            a.remote(1);
        }
        assert_eq!(a.target(), None);
        a.remote(1);
        assert_eq!(a.target(), Some(1), "first move: a short streak");
        let mut gathered = Affinity::default();
        for _ in 0..FIRST_MOVE_AFTER {
            gathered.unbound();
        }
        assert!(gathered.gather_due(), "first gathering: a short streak");
        // What a moved connection carries: the full streak again.
        let mut b = Affinity::moved();
        for _ in 0..FIRST_MOVE_AFTER {
            b.remote(2);
            b.unbound();
        }
        assert_eq!(b.target(), None);
        assert!(!b.gather_due());
        // One that also used its own shard's partition, or another shard's, is not new.
        let mut user = Affinity::default();
        user.local();
        for _ in 0..FIRST_MOVE_AFTER {
            user.unbound();
            user.remote(1);
        }
        assert!(!user.gather_due());
        assert_eq!(user.target(), None);
        let mut mixed = Affinity::default();
        mixed.remote(2);
        for _ in 0..FIRST_MOVE_AFTER {
            mixed.remote(1);
        }
        assert_eq!(mixed.target(), None);
        // A connection that never moved but is past its first requests: the full streak.
        let mut old = Affinity::default();
        for _ in 0..MIGRATE_AFTER + 1 {
            old.unbound();
        }
        for _ in 0..FIRST_MOVE_AFTER {
            old.remote(1);
        }
        assert_eq!(old.target(), None);
        for _ in FIRST_MOVE_AFTER..MIGRATE_AFTER {
            old.remote(1);
        }
        assert_eq!(old.target(), Some(1));
    }

    #[test]
    fn waiting_head_then_ready() {
        let mut q = ReplyQueue::default();
        let a = q.push_waiting();
        let b = q.push_waiting();
        q.push_ready(Protocol::Resp2, |w| w.ok());
        assert!(q.fill(a, b":1\r\n"));
        assert_eq!(text(&q), ":1\r\n");
        assert_eq!(q.in_flight(), 2);
        assert!(q.fill(b, b":2\r\n"));
        assert_eq!(text(&q), ":1\r\n:2\r\n+OK\r\n");
    }

    #[test]
    fn pending_counts_parked_replies_once() {
        let mut q = ReplyQueue::default();
        let a = q.push_waiting();
        q.push_ready(Protocol::Resp2, |w| w.bulk(b"0123456789"));
        let b = q.push_waiting();
        assert_eq!(q.pending(), 17);
        assert!(q.fill(b, b":2\r\n"));
        assert_eq!(q.pending(), 21);
        assert!(q.fill(a, b":1\r\n"));
        // Everything moved to the output: counted there, not twice.
        assert_eq!(q.pending(), 25);
        assert_eq!(q.pending(), q.unwritten());
        let mut sink = Vec::new();
        assert!(q.write_to(&mut sink).unwrap());
        assert_eq!(q.pending(), 0);
    }
}

//! Reading, framing and batching: a connection's bytes become requests, handed in order to
//! [`Core::dispatch`](super::dispatch).
//!
//! A readable connection is read up to [`READ_BUDGET`] (fairness), then its buffer is framed
//! [`BATCH`] requests at a time under the session's current limits; the table lines the
//! batch's local keys will touch are prefetched together ([`prefetch_keys`]), then the
//! requests run one by one. A request of a connection in Redis grammar (one that has
//! `SELECT`ed a partition) first becomes its GoKV form, the selected partition inserted as
//! argument 1: in place (the name is laid once per batch just past the input, and each frame
//! has room for its span, so nothing is copied), or, when the selection changed within the
//! batch, built in the shard's one reusable [`RedisForm`](crate::command::face) buffer; from
//! there on it is any request. Reading pauses ([`is_paused`]) while a barrier is up, while too
//! many requests wait for other shards, or while too much output is unwritten.
//!
//! Runs on the shard's thread only; never blocks (the socket is non-blocking).

use crate::command::face::Rewrite;
use crate::metrics::ShardMetrics;
use crate::protocol::{Args, Parsed, Span};
use crate::store::Partition;

use super::connection::{self, Connection, ReadOutcome};
use super::routes::{Routes, Target};
use super::{Core, Shard};

/// Bytes read from one connection before the loop moves on to others (fairness): a client
/// streaming a huge pipeline cannot starve the rest of the shard.
const READ_BUDGET: usize = 256 * 1024;

/// Requests of one connection that may wait for another shard at once. Past it the shard stops
/// reading that connection until replies come back, which bounds memory and can never deadlock
/// two shards (the channels between them are unbounded; this is what bounds them).
const MAX_IN_FLIGHT: usize = 1024;

/// Encoded output of one connection past which the shard stops reading it until the client
/// has read some: a client that pipelines without reading gets backpressure, not a server
/// that buffers without limit.
const OUTPUT_HIGH_WATER: usize = 1024 * 1024;

/// Requests framed together before any of them runs (see `Core::process_input`). Enough to
/// cover a typical pipeline window (redis-benchmark -P 16), small enough to stay in L1.
const BATCH: usize = 16;

/// What one framed piece of input is.
enum FrameKind {
    Request,
    /// Bytes that carry no request (`*0`, an empty line).
    Skip,
    Malformed(crate::protocol::ProtocolError),
}

struct Frame {
    /// This request's arguments in `Batch::spans`.
    spans: std::ops::Range<usize>,
    /// Offset just past this frame, from the batch's start in the read buffer.
    end: usize,
    kind: FrameKind,
}

/// A batch of framed requests; reused, so framing allocates nothing once warm.
#[derive(Default)]
pub(super) struct Batch {
    /// Arguments of all frames, relative to the batch's start in the read buffer.
    spans: Vec<Span>,
    frames: Vec<Frame>,
    /// Framed in Redis grammar: each request's first span is there twice (the parser's
    /// `gap`), so that the selected partition's span can take the second's place and the
    /// request run in its GoKV form without a copy; the request as it came is its spans from
    /// the second on.
    gapped: bool,
}

impl Batch {
    fn clear(&mut self) {
        self.spans.clear();
        self.frames.clear();
    }
}

/// Starts loading the table lines that the (partition name, key) pairs of `requests` will
/// touch, [`BATCH`] at a time and in two steps, so that the misses of a batch overlap: step
/// one fetches each key's slot, step two, once those lines have had time to arrive, the entry
/// the slot names. Each key is hashed once for both steps, and a partition named by
/// consecutive requests is looked up once. Requests for other shards' partitions are skipped.
pub(super) fn prefetch_keys<'a>(
    routes: &Routes,
    requests: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) {
    let mut requests = requests.peekable();
    while requests.peek().is_some() {
        let mut hashed: [Option<(&Partition, u64)>; BATCH] = [None; BATCH];
        let mut last: Option<(&[u8], Option<&Partition>)> = None;
        // `zip` asks `hashed` first, so no request is taken without a slot.
        for (slot, (name, key)) in hashed.iter_mut().zip(requests.by_ref()) {
            let partition = match last {
                Some((previous, partition)) if crate::store::same_bytes(previous, name) => {
                    partition
                }
                _ => {
                    let partition = match routes.get(name) {
                        Some(Target::Local(p)) => Some(&p.data),
                        _ => None,
                    };
                    last = Some((name, partition));
                    partition
                }
            };
            if let Some(partition) = partition {
                let hash = partition.hash_key(key);
                partition.prefetch(hash);
                *slot = Some((partition, hash));
            }
        }
        for (partition, hash) in hashed.iter().flatten() {
            partition.prefetch_entry(*hash);
        }
    }
}

/// Writes `selected` into the read buffer just past the input (`rbuf[rend..]`, growing the
/// buffer if its free space is shorter), and returns where it lies relative to `base`, the
/// batch's start: the Redis face's rewrite then inserts that span into each request instead
/// of copying the request's bytes next to a copy of the name (`command::face::RedisForm`).
/// The bytes past `rend` are not input: the next read overwrites them, and nothing framed
/// ever reaches them (the parser reads `rbuf[..rend]` only).
fn lay_selected(rbuf: &mut Vec<u8>, base: usize, rend: usize, selected: &[u8]) -> Span {
    let end = rend + selected.len();
    if rbuf.len() < end {
        rbuf.resize(end, 0);
    }
    rbuf[rend..end].copy_from_slice(selected);
    // Offsets from `base` fit a u32 as the framed spans do; the name adds at most
    // `catalog::MAX_NAME_LEN` bytes (a selected name is an existing partition's).
    Span {
        start: (rend - base) as u32,
        end: (end - base) as u32,
    }
}

/// Stop reading this connection for now?
#[inline]
pub(super) fn is_paused(conn: &Connection) -> bool {
    conn.barrier
        || conn.replies.in_flight() >= MAX_IN_FLIGHT
        || conn.replies.unwritten() >= OUTPUT_HIGH_WATER
}

impl Shard {
    /// Reads and processes one connection, within the fairness budget.
    pub(super) fn service(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        conn.needs_service = false;
        let outcome = if conn.closing || conn.input_closed || is_paused(conn) {
            None
        } else {
            match conn.read(READ_BUDGET, self.core.now) {
                Ok(outcome) => Some(outcome),
                Err(e) => {
                    self.core.read_failed(conn, &e);
                    self.close(index);
                    return;
                }
            }
        };
        // A TLS handshake that just finished: a certificate login, or a refusal. Plain
        // connections pay one test of the transport here.
        if conn.socket.take_handshake_done() && !self.core.tls_handshake_done(conn) {
            self.close(index);
            return;
        }
        // The end of input was read; or a poll event already said the peer closed its side
        // and this read took everything left (a short read): the end is next, and the
        // edge-triggered poll will not report it again, so do not wait for it.
        if outcome == Some(ReadOutcome::Closed)
            || (conn.peer_closed && outcome == Some(ReadOutcome::Drained))
        {
            conn.input_closed = true;
        }
        self.core.process_input(conn);
        // What it published for this shard's other subscribers (`pubsub`).
        self.deliver_local();
        let Some(conn) = self.conns.get_mut(index) else {
            return; // a subscriber over its output limit: itself
        };
        // A peer that hung up while its login is checked is dropped now, unanswered: that
        // frees its client slot and cancels its argon2 job (a flood of connect, AUTH, close
        // would otherwise keep thousands of both). Other requests of a half-closed peer are
        // still answered (below).
        if (conn.peer_closed || conn.input_closed) && conn.session.pending_login.is_some() {
            log::debug!("{} hung up while its login was checked", conn.peer);
            self.close(index);
            return;
        }
        if !conn.closing {
            if is_paused(conn) {
                // Requests may wait in the buffer or the socket, and an edge-triggered poll
                // will not report them again: come back when the pause ends.
                conn.needs_service = true;
            } else if conn.input_closed {
                // The peer closed its side and every complete request it sent is processed.
                conn.closing = true;
            } else if outcome == Some(ReadOutcome::More) {
                // Input may remain in the socket: come back after the other connections.
                conn.needs_service = true;
                self.core.to_service.push(index);
            }
        }
        if conn.session.shutdown_requested {
            self.core.shared.shutdown.request();
        }
        if !self.close_if_over_output_limit(index) {
            self.after_progress(index);
        }
    }
}

impl Core {
    /// Parses and runs every complete request in the connection's buffer, until it runs out,
    /// the connection pauses (backpressure, catalog barrier), or the input is malformed.
    ///
    /// Requests are framed in batches of up to [`BATCH`] before any of them runs, so that the
    /// table lines of all their keys are fetched together ([`Core::prefetch`]): with a
    /// pipelining client the cache misses of a batch overlap instead of adding up.
    pub(super) fn process_input(&mut self, conn: &mut Connection) {
        let mut batch = std::mem::take(&mut self.batch);
        let mut form = std::mem::take(&mut self.redis_form);
        let mut commands = 0;
        'batches: while !conn.closing
            && !conn.over_output_limit
            && !is_paused(conn)
            && conn.has_input()
        {
            // 1. Frame, under the limits of the session as it is now (pre-login ones until a
            // login has succeeded).
            conn.sync_limits();
            batch.clear();
            // In Redis grammar every frame gets room for the selected partition after its
            // first argument (see `Batch::gapped`).
            batch.gapped = conn.session.selected.is_some();
            let base = conn.rstart;
            let mut offset = 0;
            while batch.frames.len() < BATCH && base + offset < conn.rend {
                let at = base + offset;
                // An inline request is framed only first in its batch: its unescaping rewrites
                // the buffer in place, so it must run before anything could make us re-frame
                // it (and the first frame of a batch always runs).
                let inline = conn.rbuf[at] != b'*';
                if inline && !batch.frames.is_empty() {
                    break;
                }
                let first_span = batch.spans.len();
                // Spans relative to the batch's start: the frame's offset in it fits a u32
                // as the spans in the frame do (the parser's limits).
                let (buf, shift) = (&mut conn.rbuf[at..conn.rend], offset as u32);
                let parsed = if batch.gapped {
                    conn.parser.parse_into::<true>(buf, &mut batch.spans, shift)
                } else {
                    conn.parser
                        .parse_into::<false>(buf, &mut batch.spans, shift)
                };
                let kind = match parsed {
                    Ok(Parsed::Request { consumed }) => {
                        offset += consumed;
                        FrameKind::Request
                    }
                    Ok(Parsed::Skip { consumed }) => {
                        offset += consumed;
                        FrameKind::Skip
                    }
                    Ok(Parsed::Incomplete) => break,
                    Err(e) => FrameKind::Malformed(e),
                };
                let stop = matches!(kind, FrameKind::Malformed(_));
                batch.frames.push(Frame {
                    spans: first_span..batch.spans.len(),
                    end: offset,
                    kind,
                });
                if stop {
                    break;
                }
            }
            if batch.frames.is_empty() {
                break; // only an incomplete request is left
            }
            // 2. In Redis grammar, lay the selected partition's name just past the input (see
            // `lay_selected`); then prefetch what the local requests will look up.
            let laid = conn
                .session
                .selected
                .as_deref()
                .map(|selected| lay_selected(&mut conn.rbuf, base, conn.rend, selected));
            let input_end = laid.map_or(conn.rend, |span| base + span.end as usize);
            let input = &conn.rbuf[base..input_end];
            self.prefetch(input, &batch, conn.session.selected.as_deref());
            // 3. Run, in order. MONITOR: one relaxed load a batch while no one monitors.
            let monitored = self.shared.monitors.any();
            crate::slowlog::batch_begins();
            for frame in &batch.frames {
                if conn.closing || conn.over_output_limit || is_paused(conn) {
                    // The rest is framed again later; forget any partly framed request that
                    // lies beyond the point we stop at.
                    conn.parser.reset();
                    break 'batches;
                }
                match &frame.kind {
                    FrameKind::Request => {
                        // The request as it came (past the gap, if it has one).
                        let first = frame.spans.start;
                        let args = if batch.gapped {
                            Args::new(input, &batch.spans[first + 1..frame.spans.end])
                        } else {
                            Args::new(input, &batch.spans[frame.spans.clone()])
                        };
                        commands += 1;
                        // Redis grammar (a partition is selected): a data command runs in its
                        // GoKV form, the selected partition inserted as argument 1: in place,
                        // its span written into the frame's gap when the name laid past the
                        // input is the one selected now, else built by the face (a SELECT
                        // earlier in this batch). GoKV grammar pays this one test.
                        let (args, spec) = match conn.session.selected.as_deref() {
                            None => (args, None),
                            Some(selected) => match form.rewrite(
                                &args,
                                selected,
                                batch.gapped
                                    && laid.is_some_and(|span| {
                                        crate::store::same_bytes(&input[span.range()], selected)
                                    }),
                            ) {
                                Rewrite::AsIs => (args, None),
                                Rewrite::Insert(spec) => {
                                    // `in_place` was asked only with a name laid.
                                    if let Some(name) = laid {
                                        batch.spans[first + 1] = name;
                                    }
                                    let spans = &batch.spans[frame.spans.clone()];
                                    (Args::new(input, spans), Some(spec))
                                }
                                Rewrite::Rewritten(spec) => (form.args(), Some(spec)),
                                Rewrite::Refused(e) => {
                                    super::transaction::spoil(&mut conn.session);
                                    let protocol = conn.session.protocol;
                                    conn.replies.push_ready(protocol, |w| e.write_to(w));
                                    conn.rstart = base + frame.end;
                                    continue;
                                }
                            },
                        };
                        if monitored {
                            if let Err(e) = self.feed_monitors(&args, spec, &conn.session) {
                                let protocol = conn.session.protocol;
                                conn.replies.push_ready(protocol, |w| e.write_to(w));
                                conn.rstart = base + frame.end;
                                continue;
                            }
                        }
                        let refused = self.dispatch(
                            &mut conn.affinity,
                            conn.conn_ref,
                            &args,
                            spec,
                            &mut conn.session,
                            &mut conn.replies,
                            &mut conn.barrier,
                        );
                        // The shard closes it once this pass over its input ends.
                        if refused || conn.replies.pending() > self.output_limit {
                            conn.over_output_limit = true;
                        }
                        if conn.session.close_after_reply {
                            conn.closing = true;
                        }
                        // A login answered at once (the login cache) lifts the pre-login
                        // limits: the frames behind it were framed under those, so they are
                        // framed again (one that was refused may be fine now).
                        if connection::sync_limits(&mut conn.parser, &conn.session) {
                            conn.rstart = base + frame.end;
                            continue 'batches;
                        }
                    }
                    FrameKind::Skip => {}
                    FrameKind::Malformed(e) => {
                        log::debug!("protocol error from {}: {e}", conn.peer);
                        let protocol = conn.session.protocol;
                        conn.replies.push_ready(protocol, |w| {
                            w.error("ERR", &format!("Protocol error: {e}"))
                        });
                        conn.closing = true;
                    }
                }
                conn.rstart = base + frame.end;
            }
        }
        self.batch = batch;
        self.redis_form = form;
        // Slow-log entries of these requests get this connection as their client (once per
        // read: a thread-local test when there are none).
        crate::slowlog::claim(conn.peer, conn.session.name.as_deref());
        ShardMetrics::add(&self.shared.metrics.shards[self.id].commands, commands);
    }

    /// Requests this shard's connections sent that it has run so far (the counter
    /// `process_input` adds to): the walk's pacing and the idle poll tell from it whether
    /// clients were served.
    pub(super) fn commands_run(&self) -> u64 {
        ShardMetrics::get(&self.shared.metrics.shards[self.id].commands)
    }

    /// Prefetches the table lines of the keys that a batch's local data requests will touch
    /// (argument 2: the first key; see [`prefetch_keys`]). In Redis grammar (`selected`) the
    /// first key is argument 1 and the partition the selected one, as of the batch's start
    /// (a SELECT inside the batch only makes the rest of its hints useless).
    fn prefetch(&self, input: &[u8], batch: &Batch, selected: Option<&[u8]>) {
        if batch.frames.len() < 2 {
            return; // nothing to overlap with
        }
        if let Some(partition) = selected {
            // Framed with a gap (`Batch::gapped`): the first key is span 2.
            prefetch_keys(
                &self.routes,
                batch.frames.iter().filter_map(|frame| {
                    let spans = &batch.spans[frame.spans.clone()];
                    (spans.len() >= 3).then(|| (partition, &input[spans[2].range()]))
                }),
            );
            return;
        }
        prefetch_keys(
            &self.routes,
            batch.frames.iter().filter_map(|frame| {
                let spans = &batch.spans[frame.spans.clone()];
                (spans.len() >= 3).then(|| (&input[spans[1].range()], &input[spans[2].range()]))
            }),
        );
    }
}

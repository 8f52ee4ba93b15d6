//! The event loops: each thread drives its share of the connections with one `mio` poll,
//! keeps up to `pipeline` requests in flight per connection (or sends them on a fixed schedule
//! under `--rate`), frames the replies and records each request's latency.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::resp::{parse_reply, Reply};
use crate::setup;
use crate::stats::{live_totals, LiveCounters, Progress, ThreadStats};
use crate::timer::{mono_ns, Timer};
use crate::workload::{Op, Rng, Workload};

/// The poll token of each thread's pacing timer; connections use their index.
const TIMER: Token = Token(usize::MAX - 1);
/// The longest a loop sleeps before it looks at the stop flag and the clock again.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How long outstanding replies are awaited once no more requests are to be sent.
const DRAIN_TIMEOUT_NS: u64 = 10_000_000_000;
/// Connects allowed per connection, on average, to place the connections on `--conn-shard`.
const SHARD_ATTEMPTS_PER_CONN: u64 = 50;
/// Read buffer size per connection (it grows if one reply is larger).
const READ_CHUNK: usize = 16 * 1024;

/// One phase of work (the prefill, or the timed run).
pub struct Phase {
    pub addr: SocketAddr,
    pub auth: Option<Vec<String>>,
    /// Keep only connections the server placed on this shard (GoKV's `CLIENT INFO`).
    pub conn_shard: Option<u32>,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    /// Total requests per second over all connections; `None` sends as fast as replies allow.
    pub rate: Option<f64>,
    /// Total number of requests; `None` for a time-bound phase.
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    /// Connection `k` sends all its SETs and GETs to partition `k mod partitions` instead of
    /// drawing one per request (GoKV then moves it to that partition's shard).
    pub partition_per_connection: bool,
    pub workload: Workload,
}

pub struct PhaseResult {
    pub stats: ThreadStats,
    pub elapsed: Duration,
}

/// State all threads of a phase share.
struct Shared {
    /// Set by Ctrl-C: stop sending, collect outstanding replies, report.
    stop: Arc<AtomicBool>,
    /// Set when a connection failed: every thread quits at once.
    abort: AtomicBool,
    /// Requests handed out so far, when the phase is bounded by a request count.
    claimed: AtomicU64,
    /// Connects left for placing the connections on `conn_shard`, shared by all threads.
    shard_attempts: AtomicU64,
    counters: Vec<LiveCounters>,
}

/// Runs a phase to its end, printing a progress line each second when `progress` is given.
pub fn run_phase(
    phase: &Phase,
    stop: Arc<AtomicBool>,
    mut progress: Option<Progress>,
) -> PhaseResult {
    let threads = phase.threads.clamp(1, phase.connections.max(1));
    let shared = Shared {
        stop,
        abort: AtomicBool::new(false),
        claimed: AtomicU64::new(0),
        shard_attempts: AtomicU64::new(SHARD_ATTEMPTS_PER_CONN * phase.connections as u64),
        counters: (0..threads).map(|_| LiveCounters::default()).collect(),
    };
    // Everyone connects first; the clock starts when the last connection is ready.
    let ready = Barrier::new(threads + 1);
    let seed = mono_ns();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|id| {
                let (shared, ready) = (&shared, &ready);
                std::thread::Builder::new()
                    .name(format!("loadtest-{id}"))
                    .spawn_scoped(scope, move || {
                        Worker::run(phase, shared, ready, id, threads, seed)
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        let mut next_tick = Duration::from_secs(1);
        while !handles.iter().all(|h| h.is_finished()) {
            let elapsed = start.elapsed();
            if elapsed >= next_tick {
                if let Some(p) = progress.as_mut() {
                    let (ops, errors) = live_totals(&shared.counters);
                    p.tick(elapsed, ops, errors);
                }
                next_tick += Duration::from_secs(1);
            }
            std::thread::sleep((next_tick.saturating_sub(elapsed)).min(Duration::from_millis(20)));
        }
        let elapsed = start.elapsed();
        if let Some(p) = progress.as_mut() {
            p.finish();
        }
        let mut stats = ThreadStats::default();
        for h in handles {
            stats.merge(h.join().expect("worker thread panicked"));
        }
        PhaseResult { stats, elapsed }
    })
}

/// A request sent and not yet answered: when its latency clock started, and what it was.
struct Pending {
    start_ns: u64,
    op: Op,
}

struct Conn {
    stream: TcpStream,
    /// Encoded requests not yet written, from `wpos` on.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Received bytes not yet framed are `rbuf[rstart..rend]`.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    inflight: VecDeque<Pending>,
    /// Under `--rate`: when this connection's next request is due (ns, may be fractional).
    next_due: f64,
    /// The partition index all its requests use (`--partition-per-connection`): its global
    /// connection number; `None` draws one per request.
    partition: Option<usize>,
}

struct Worker<'a> {
    phase: &'a Phase,
    shared: &'a Shared,
    id: usize,
    poll: Poll,
    conns: Vec<Conn>,
    stats: ThreadStats,
    rng: Rng,
    /// Pacing timer (only under `--rate`).
    timer: Option<Timer>,
    /// Per-connection gap between requests under `--rate`, in ns.
    interval: f64,
    /// No new requests are sent at or after this time.
    deadline: u64,
    /// Earliest `next_due` among connections with room in their window (a lower bound).
    min_due: f64,
    /// Request numbers for phases without a request count.
    local_seq: u64,
    /// Set once this thread sends nothing more; it then only collects replies.
    sending_done: bool,
    drain_since: Option<u64>,
    inflight: usize,
    /// Not yet published to the live counters.
    unpublished_ops: u64,
    unpublished_errors: u64,
}

impl<'a> Worker<'a> {
    fn run(
        phase: &'a Phase,
        shared: &'a Shared,
        ready: &Barrier,
        id: usize,
        threads: usize,
        seed: u64,
    ) -> ThreadStats {
        let mut worker = match Worker::connect(phase, shared, id, threads, seed) {
            Ok(w) => w,
            Err(e) => {
                shared.abort.store(true, Ordering::Relaxed);
                ready.wait();
                let mut stats = ThreadStats::default();
                stats.fatal.push(e);
                return stats;
            }
        };
        ready.wait();
        if let Err(e) = worker.event_loop() {
            shared.abort.store(true, Ordering::Relaxed);
            worker.stats.fatal.push(e);
        }
        worker.publish();
        worker.stats
    }

    /// Opens this thread's connections: numbers `id`, `id + threads`, ...
    fn connect(
        phase: &'a Phase,
        shared: &'a Shared,
        id: usize,
        threads: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        let mut conns = Vec::new();
        for global in (id..phase.connections).step_by(threads) {
            let std_stream = match phase.conn_shard {
                Some(shard) => setup::connect_on_shard(
                    phase.addr,
                    phase.auth.as_deref(),
                    shard,
                    &shared.shard_attempts,
                )?,
                None => setup::connect(phase.addr, phase.auth.as_deref())?,
            };
            std_stream
                .set_nonblocking(true)
                .map_err(|e| format!("cannot make socket non-blocking: {e}"))?;
            let mut stream = TcpStream::from_std(std_stream);
            poll.registry()
                .register(
                    &mut stream,
                    Token(conns.len()),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("cannot register socket: {e}"))?;
            conns.push(Conn {
                stream,
                wbuf: Vec::with_capacity(4096),
                wpos: 0,
                rbuf: vec![0; READ_CHUNK],
                rstart: 0,
                rend: 0,
                inflight: VecDeque::with_capacity(phase.pipeline),
                // Stagger the connections' schedules evenly over one interval.
                next_due: global as f64,
                partition: phase.partition_per_connection.then_some(global),
            });
        }
        let timer = match phase.rate {
            Some(_) => Some(
                Timer::new(poll.registry(), TIMER)
                    .map_err(|e| format!("cannot create timer: {e}"))?,
            ),
            None => None,
        };
        Ok(Worker {
            phase,
            shared,
            id,
            poll,
            conns,
            stats: ThreadStats::default(),
            rng: Rng::new(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            timer,
            interval: 0.0,
            deadline: u64::MAX,
            min_due: 0.0,
            local_seq: 0,
            sending_done: false,
            drain_since: None,
            inflight: 0,
            unpublished_ops: 0,
            unpublished_errors: 0,
        })
    }

    fn event_loop(&mut self) -> Result<(), String> {
        let start = mono_ns();
        if let Some(d) = self.phase.duration {
            self.deadline = start.saturating_add(d.as_nanos() as u64);
        }
        if let Some(rate) = self.phase.rate {
            // Connection k sends at start + (k + j * N) / rate for j = 0, 1, ...: together a
            // steady `rate`, spread evenly over the connections.
            self.interval = self.phase.connections as f64 * 1e9 / rate;
            let per_request = 1e9 / rate;
            for c in &mut self.conns {
                c.next_due = start as f64 + c.next_due * per_request;
            }
            self.min_due = start as f64;
        } else {
            for i in 0..self.conns.len() {
                self.top_up(i)?;
            }
        }
        let mut events = Events::with_capacity(1024);
        loop {
            if self.shared.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let now = mono_ns();
            if !self.sending_done
                && (self.shared.stop.load(Ordering::Relaxed)
                    || (self.phase.rate.is_none() && now >= self.deadline))
            {
                self.sending_done = true;
            }
            if self.phase.rate.is_some() && !self.sending_done && now as f64 >= self.min_due {
                self.send_all_due(now)?;
            }
            if self.sending_done {
                if self.inflight == 0 {
                    return Ok(());
                }
                let since = *self.drain_since.get_or_insert(now);
                if now - since > DRAIN_TIMEOUT_NS {
                    return Err(format!(
                        "{} replies still outstanding {} s after the last request",
                        self.inflight,
                        DRAIN_TIMEOUT_NS / 1_000_000_000
                    ));
                }
            }
            let mut wait = MAX_WAIT;
            if !self.sending_done {
                if self.deadline != u64::MAX {
                    wait = wait.min(Duration::from_nanos(self.deadline.saturating_sub(now)));
                }
                if let Some(timer) = self.timer.as_mut() {
                    if self.min_due < self.deadline as f64 {
                        timer
                            .arm_at(self.min_due as u64)
                            .map_err(|e| format!("timer: {e}"))?;
                    }
                }
            }
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll failed: {e}")),
            }
            for event in events.iter() {
                if event.token() == TIMER {
                    if let Some(timer) = self.timer.as_mut() {
                        timer.acknowledge();
                    }
                    continue;
                }
                let i = event.token().0;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(i)?;
                }
                if event.is_writable() {
                    self.flush(i)?;
                }
                if !self.sending_done {
                    if self.phase.rate.is_some() {
                        self.send_due(i, mono_ns())?;
                    } else {
                        self.top_up(i)?;
                    }
                }
            }
            self.publish();
        }
    }

    /// Hands out up to `want` request numbers: `(first, count)`; count 0 means the phase's
    /// request budget is spent.
    fn claim(&mut self, want: usize) -> (u64, usize) {
        let want = want as u64;
        match self.phase.requests {
            None => {
                let first = self.local_seq;
                self.local_seq += want;
                (first, want as usize)
            }
            Some(limit) => {
                let first = self.shared.claimed.fetch_add(want, Ordering::Relaxed);
                if first >= limit {
                    self.sending_done = true;
                    (first, 0)
                } else {
                    (first, want.min(limit - first) as usize)
                }
            }
        }
    }

    /// Closed-loop mode: refill connection `i`'s window to `pipeline` requests and send them.
    fn top_up(&mut self, i: usize) -> Result<(), String> {
        let want = self.phase.pipeline - self.conns[i].inflight.len();
        if want == 0 {
            return Ok(());
        }
        let now = mono_ns();
        if now >= self.deadline {
            self.sending_done = true;
            return Ok(());
        }
        let (first, n) = self.claim(want);
        let conn = &mut self.conns[i];
        for seq in first..first + n as u64 {
            let op =
                self.phase
                    .workload
                    .encode_next(&mut self.rng, seq, conn.partition, &mut conn.wbuf);
            conn.inflight.push_back(Pending { start_ns: now, op });
        }
        self.inflight += n;
        self.flush(i)
    }

    /// Paced mode: visit every connection and send what is due.
    fn send_all_due(&mut self, now: u64) -> Result<(), String> {
        self.min_due = f64::INFINITY;
        for i in 0..self.conns.len() {
            self.send_due(i, now)?;
        }
        if self.min_due >= self.deadline as f64
            && self
                .conns
                .iter()
                .all(|c| c.next_due >= self.deadline as f64)
        {
            self.sending_done = true;
        }
        Ok(())
    }

    /// Paced mode: send connection `i`'s overdue requests, as far as its window allows. Each
    /// request's latency starts at its due time, not at the moment it could finally be sent.
    fn send_due(&mut self, i: usize, now: u64) -> Result<(), String> {
        let (pipeline, deadline, interval) =
            (self.phase.pipeline, self.deadline as f64, self.interval);
        let conn = &self.conns[i];
        let room = pipeline - conn.inflight.len();
        let mut due = 0;
        let mut t = conn.next_due;
        while due < room && t <= now as f64 && t < deadline {
            due += 1;
            t += interval;
        }
        if due > 0 {
            let (first, n) = self.claim(due);
            let conn = &mut self.conns[i];
            for seq in first..first + n as u64 {
                let op = self.phase.workload.encode_next(
                    &mut self.rng,
                    seq,
                    conn.partition,
                    &mut conn.wbuf,
                );
                conn.inflight.push_back(Pending {
                    start_ns: conn.next_due as u64,
                    op,
                });
                conn.next_due += interval;
            }
            self.inflight += n;
            self.flush(i)?;
        }
        let conn = &self.conns[i];
        if conn.inflight.len() < pipeline && conn.next_due < self.min_due {
            self.min_due = conn.next_due;
        }
        Ok(())
    }

    /// Writes as much of connection `i`'s pending output as the socket takes.
    fn flush(&mut self, i: usize) -> Result<(), String> {
        let conn = &mut self.conns[i];
        while conn.wpos < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => return Err(self.closed(i, "write returned 0")),
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.closed(i, &e.to_string())),
            }
        }
        conn.wbuf.clear();
        conn.wpos = 0;
        Ok(())
    }

    /// Reads everything connection `i` has received and frames the complete replies.
    fn on_readable(&mut self, i: usize) -> Result<(), String> {
        loop {
            let conn = &mut self.conns[i];
            if conn.rstart == conn.rend {
                conn.rstart = 0;
                conn.rend = 0;
            }
            if conn.rbuf.len() - conn.rend < READ_CHUNK / 4 {
                // Move the unframed tail to the front; grow if one reply fills the buffer.
                conn.rbuf.copy_within(conn.rstart..conn.rend, 0);
                conn.rend -= conn.rstart;
                conn.rstart = 0;
                if conn.rbuf.len() - conn.rend < READ_CHUNK / 4 {
                    let len = conn.rbuf.len() * 2;
                    conn.rbuf.resize(len, 0);
                }
            }
            let end = conn.rend;
            match conn.stream.read(&mut conn.rbuf[end..]) {
                Ok(0) => return Err(self.closed(i, "closed by the server")),
                Ok(n) => {
                    conn.rend += n;
                    let drained = conn.rend < conn.rbuf.len();
                    self.frame_replies(i)?;
                    if drained {
                        // A short read emptied the socket; bytes that arrive later raise a new
                        // edge, so the extra read that would only return WouldBlock is skipped.
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.closed(i, &e.to_string())),
            }
        }
    }

    /// Frames every complete reply in connection `i`'s buffer, matching each to the oldest
    /// request in flight.
    fn frame_replies(&mut self, i: usize) -> Result<(), String> {
        // All replies framed here arrived in one read: they share one arrival time.
        let now = mono_ns();
        let conn = &mut self.conns[i];
        loop {
            let (len, reply) = match parse_reply(&conn.rbuf[conn.rstart..conn.rend]) {
                Ok(Some(framed)) => framed,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("connection {}: {e}", self.global_index(i))),
            };
            if reply != Reply::Push {
                let Some(pending) = conn.inflight.pop_front() else {
                    return Err(format!(
                        "connection {}: a reply arrived with no request outstanding",
                        self.global_index(i)
                    ));
                };
                self.inflight -= 1;
                self.unpublished_ops += 1;
                self.stats
                    .record(pending.op, now.saturating_sub(pending.start_ns));
                if let Reply::Error(text) = reply {
                    self.unpublished_errors += 1;
                    self.stats.record_error(text);
                }
            }
            conn.rstart += len;
        }
    }

    fn closed(&self, i: usize, why: &str) -> String {
        format!(
            "connection {} failed ({why}) with {} requests unanswered",
            self.global_index(i),
            self.conns[i].inflight.len()
        )
    }

    fn global_index(&self, i: usize) -> usize {
        self.id + i * self.shared.counters.len()
    }

    fn publish(&mut self) {
        let c = &self.shared.counters[self.id];
        if self.unpublished_ops > 0 {
            c.ops.fetch_add(self.unpublished_ops, Ordering::Relaxed);
            self.unpublished_ops = 0;
        }
        if self.unpublished_errors > 0 {
            c.errors
                .fetch_add(self.unpublished_errors, Ordering::Relaxed);
            self.unpublished_errors = 0;
        }
    }
}

//! The Prometheus endpoint: `GET /metrics` on `--metrics-port` (text exposition format 0.0.4),
//! served by one thread of its own that reads the shards' single-writer atomics
//! ([`ServerMetrics`]) and the latest catalog's partition statistics: it never asks a shard
//! for anything, so a scrape costs the shards nothing.
//!
//! The HTTP side is small and bounded: one mio event loop, requests parsed by `httparse`, one
//! request per connection (`Connection: close`). At most [`MAX_CONNECTIONS`] connections are
//! open; a new one past that closes the oldest (so a flood of idle connections cannot keep a
//! scraper out: its connection is the newest), and a connection that has not sent its whole
//! request, or not taken its whole reply, within [`DEADLINE`] is closed. A request head
//! larger than [`MAX_REQUEST`] is answered 431; a malformed one 400; another path 404,
//! another method 405. The RESP port shares nothing with it but the atomics.
//!
//! Names are `gokv_` plus redis_exporter's names where one exists (`gokv_commands_total{cmd}`,
//! `gokv_memory_used_bytes`, ...); counters only grow (`CONFIG RESETSTAT`, when it exists,
//! resets INFO's statistics, never these). Per command the latency is a histogram of the
//! timed calls (a data command, PING and ECHO are timed one call in [`DATA_SAMPLE`], see
//! [`crate::metrics::CommandStats`]), with buckets at 128 ns x 4^k. Per shard, every fsync
//! of a durable partition's log is a histogram too (`gokv_fsync_duration_seconds`, buckets
//! at 2^k ns from 1 us to 17 s; MEMORY partitions never fsync, so they cost it nothing), and
//! the depth of its inbox is read from the channel itself (`gokv_shard_inbox_messages`), and
//! its busy time is the wall time its loop spent outside `poll`
//! (`gokv_shard_busy_seconds_total`).
//! `ops/grafana/gokv.json` is a dashboard over these names (tests/metrics.rs checks it against a live scrape).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::command::server::{command_totals, stat_name};
use crate::config::Config;
use crate::metrics::{
    cpu_seconds, latency_bucket_bound, rss_bytes, ServerMetrics, ShardMetrics, DATA_SAMPLE,
    ERROR_CODES,
};
use crate::shard::mailbox::ShardHandle;
use crate::store::PartitionStats;

/// Most connections open at once; one more closes the oldest.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a connection has to send its request and take its reply.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head taken.
pub const MAX_REQUEST: usize = 8 * 1024;

const LISTENER: Token = Token(usize::MAX);

/// What a scrape reads: the metrics, the configuration, and the catalog the shards run.
pub struct Sources {
    pub metrics: Arc<ServerMetrics>,
    pub config: Arc<Config>,
    /// The shards' inboxes, in shard order, for their depth (`gokv_shard_inbox_messages`):
    /// read from the channels' own counters, so the shards keep no gauge for it. Empty:
    /// no such series (unit tests).
    pub inboxes: Vec<ShardHandle>,
    /// Replication: replicas and their lag, or the link to the primary. `None`: no such
    /// series (unit tests).
    pub replication: Option<Arc<crate::replication::State>>,
}

/// Starts the endpoint's thread on an already bound `listener`. It runs until the process
/// exits (it holds nothing that needs an orderly stop).
pub fn start(listener: std::net::TcpListener, sources: Sources) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener);
    let poll = Poll::new()?;
    std::thread::Builder::new()
        .name("gokv-metrics".into())
        .spawn(move || Endpoint::new(poll, listener, sources).run())?;
    Ok(())
}

struct Conn {
    stream: TcpStream,
    opened: Instant,
    request: Vec<u8>,
    /// The reply once the request is read, and how much of it is written.
    reply: Option<(Vec<u8>, usize)>,
}

struct Endpoint {
    poll: Poll,
    listener: TcpListener,
    sources: Sources,
    conns: slab::Slab<Conn>,
    /// Connection indexes, oldest first (stale ones are skipped).
    order: VecDeque<(usize, Instant)>,
}

impl Endpoint {
    fn new(poll: Poll, listener: TcpListener, sources: Sources) -> Self {
        Endpoint {
            poll,
            listener,
            sources,
            conns: slab::Slab::new(),
            order: VecDeque::new(),
        }
    }

    fn run(mut self) {
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut self.listener, LISTENER, Interest::READABLE)
        {
            log::error!("metrics endpoint: cannot register its listener: {e}; no metrics");
            return;
        }
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .order
                .front()
                .map(|(_, opened)| (*opened + DEADLINE).saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("metrics endpoint: poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            for event in events.iter() {
                if event.token() == LISTENER {
                    self.accept();
                } else {
                    self.service(event.token().0);
                }
            }
            self.expire();
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.close_oldest();
                    }
                    let now = Instant::now();
                    let entry = self.conns.vacant_entry();
                    let index = entry.key();
                    let mut conn = Conn {
                        stream,
                        opened: now,
                        request: Vec::new(),
                        reply: None,
                    };
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut conn.stream,
                            Token(index),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        entry.insert(conn);
                        self.order.push_back((index, now));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Out of descriptors and the like: try again on the next event.
                Err(e) => {
                    log::debug!("metrics endpoint: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// True when `index` is the connection that `order`'s entry opened at `opened` names
    /// (slab indexes are reused).
    fn is_current(&self, index: usize, opened: Instant) -> bool {
        self.conns.get(index).is_some_and(|c| c.opened == opened)
    }

    fn close_oldest(&mut self) {
        while let Some((index, opened)) = self.order.pop_front() {
            if self.is_current(index, opened) {
                self.close(index);
                return;
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(index, opened)) = self.order.front() {
            if !self.is_current(index, opened) {
                self.order.pop_front();
            } else if now.duration_since(opened) >= DEADLINE {
                self.order.pop_front();
                self.close(index);
            } else {
                break;
            }
        }
    }

    fn close(&mut self, index: usize) {
        if self.conns.contains(index) {
            let mut conn = self.conns.remove(index);
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    fn service(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.reply.is_none() {
            let mut chunk = [0u8; 4096];
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        self.close(index);
                        return;
                    }
                    Ok(n) => {
                        conn.request.extend_from_slice(&chunk[..n]);
                        if conn.request.len() > MAX_REQUEST {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.close(index);
                        return;
                    }
                }
            }
            match answer(&conn.request, &self.sources) {
                Some(reply) => conn.reply = Some((reply, 0)),
                None => return, // not all of the head yet
            }
        }
        let Some((reply, written)) = conn.reply.as_mut() else {
            return;
        };
        while *written < reply.len() {
            match conn.stream.write(&reply[*written..]) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        self.close(index);
    }
}

/// The whole HTTP reply to a request head, or `None` while the head is incomplete.
fn answer(request: &[u8], sources: &Sources) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(request);
    let (code, reason, body, content_type) = match status {
        Ok(httparse::Status::Partial) if request.len() <= MAX_REQUEST => return None,
        Ok(httparse::Status::Partial) => (
            431,
            "Request Header Fields Too Large",
            "request head too large\n".to_string(),
            "text/plain",
        ),
        Err(e) => (
            400,
            "Bad Request",
            format!("bad request: {e}\n"),
            "text/plain",
        ),
        Ok(httparse::Status::Complete(_)) => {
            let path = parsed.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or("");
            match (parsed.method.unwrap_or(""), path) {
                ("GET", "/metrics") => (
                    200,
                    "OK",
                    render(sources),
                    "text/plain; version=0.0.4; charset=utf-8",
                ),
                (_, "/metrics") => (
                    405,
                    "Method Not Allowed",
                    "only GET\n".to_string(),
                    "text/plain",
                ),
                _ => (
                    404,
                    "Not Found",
                    "GoKV serves its metrics at /metrics\n".to_string(),
                    "text/plain",
                ),
            }
        }
    };
    let mut reply = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body.as_bytes());
    Some(reply)
}

/// Label values quoted as the text format wants (`\`, `"` and newlines escaped).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replication, in redis_exporter's words: `connected_slaves` and each replica's lag (seconds
/// since its last acknowledgement) on a primary; `master_link_up` and
/// `master_last_io_seconds_ago` on a replica.
fn replication(
    out: &mut String,
    state: &crate::replication::State,
    family: impl Fn(&mut String, &str, &str, &str),
) {
    let feeds = state.feeds();
    family(
        out,
        "gokv_connected_slaves",
        "gauge",
        "Replicas attached to this primary.",
    );
    let _ = writeln!(out, "gokv_connected_slaves {}", feeds.len());
    family(
        out,
        "gokv_replication_lag_seconds",
        "gauge",
        "Seconds since each replica last acknowledged what it applied (it does once a second \
         when idle).",
    );
    for f in &feeds {
        let _ = writeln!(
            out,
            "gokv_replication_lag_seconds{{replica=\"{}:{}\",state=\"{}\"}} {}",
            label(&f.shown_ip()),
            f.listening_port,
            f.state(),
            f.acked.lag_ms() as f64 / 1000.0
        );
    }
    if let Some(link) = state.link_report() {
        family(
            out,
            "gokv_master_link_up",
            "gauge",
            "1 while this replica's link to its primary is up.",
        );
        let _ = writeln!(out, "gokv_master_link_up {}", u8::from(link.up));
        family(
            out,
            "gokv_master_last_io_seconds_ago",
            "gauge",
            "Seconds since this replica last heard from its primary (-1: never).",
        );
        let _ = writeln!(out, "gokv_master_last_io_seconds_ago {}", link.last_io_ago);
    }
}

/// A metric family: name, type, help, and how to read its value.
type Family<F> = (&'static str, &'static str, &'static str, F);
type CommandValue = fn(&crate::metrics::CommandTotals) -> f64;
type ShardField = fn(&ShardMetrics) -> &AtomicU64;
type PartitionField = fn(&PartitionStats) -> &AtomicU64;

/// The exposition text.
pub fn render(sources: &Sources) -> String {
    let m = &*sources.metrics;
    let catalog = m.catalog();
    let mut out = String::with_capacity(64 * 1024);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    };
    let total = |f: fn(&ShardMetrics) -> &AtomicU64| m.total(f);
    let (sys, user) = cpu_seconds();
    let scalars: [(&str, &str, &str, f64); 21] = [
        ("gokv_up", "gauge", "1 while the server answers.", 1.0),
        (
            "gokv_uptime_in_seconds",
            "gauge",
            "Seconds since the server started.",
            m.started.elapsed().as_secs_f64().floor(),
        ),
        (
            "gokv_connected_clients",
            "gauge",
            "Client connections open now.",
            total(|s| &s.connections) as f64,
        ),
        (
            "gokv_config_maxclients",
            "gauge",
            "max-clients.",
            sources.config.live.max_clients() as f64,
        ),
        (
            "gokv_memory_used_bytes",
            "gauge",
            "Estimated bytes of data (what max-memory is checked against).",
            total(|s| &s.used_memory) as f64,
        ),
        (
            "gokv_memory_used_rss_bytes",
            "gauge",
            "Resident set size of the process.",
            rss_bytes() as f64,
        ),
        (
            "gokv_memory_max_bytes",
            "gauge",
            "max-memory (0: none).",
            sources.config.live.max_memory() as f64,
        ),
        (
            "gokv_connections_received_total",
            "counter",
            "Connections accepted.",
            total(|s| &s.connections_total) as f64,
        ),
        (
            "gokv_rejected_connections_total",
            "counter",
            "Connections refused at max-clients.",
            ShardMetrics::get(&m.rejected_connections) as f64,
        ),
        (
            "gokv_sync_full_total",
            "counter",
            "Replica links that got at least one partition sent whole (full sync).",
            ShardMetrics::get(&m.sync_full) as f64,
        ),
        (
            "gokv_sync_partial_ok_total",
            "counter",
            "Replica links that resumed every partition from the backlog.",
            ShardMetrics::get(&m.sync_partial_ok) as f64,
        ),
        (
            "gokv_sync_partial_err_total",
            "counter",
            "Replica links that asked to resume and got a full sync of some partitions.",
            ShardMetrics::get(&m.sync_partial_err) as f64,
        ),
        (
            "gokv_commands_processed_total",
            "counter",
            "Requests parsed from client connections.",
            total(|s| &s.commands) as f64,
        ),
        (
            "gokv_expired_keys_total",
            "counter",
            "Keys the expiry sweeps reclaimed.",
            total(|s| &s.expired_keys) as f64,
        ),
        (
            "gokv_cpu_sys_seconds_total",
            "counter",
            "System CPU time of the process.",
            sys,
        ),
        (
            "gokv_cpu_user_seconds_total",
            "counter",
            "User CPU time of the process.",
            user,
        ),
        (
            "gokv_log_bytes",
            "gauge",
            "Bytes of the durable partitions on disk.",
            total(|s| &s.log_bytes) as f64,
        ),
        (
            "gokv_fsyncs_total",
            "counter",
            "fsyncs of log segments.",
            total(|s| &s.fsyncs) as f64,
        ),
        (
            "gokv_io_errors_total",
            "counter",
            "Failed log writes or fsyncs.",
            total(|s| &s.io_errors) as f64,
        ),
        (
            "gokv_compactions_total",
            "counter",
            "Log compactions completed.",
            total(|s| &s.compactions) as f64,
        ),
        (
            "gokv_oom_rejected_writes_total",
            "counter",
            "Writes refused with -OOM.",
            total(|s| &s.oom_rejections) as f64,
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    if let Some(state) = &sources.replication {
        replication(&mut out, state, family);
    }

    family(
        &mut out,
        "gokv_errors_total",
        "counter",
        "Error replies, by code.",
    );
    for (i, code) in ERROR_CODES.iter().enumerate() {
        let n: u64 = m
            .shards
            .iter()
            .map(|s| ShardMetrics::get(&s.errors[i]))
            .sum();
        let _ = writeln!(out, "gokv_errors_total{{err=\"{code}\"}} {n}");
    }

    // Per command: only those used since the start.
    let commands: Vec<_> = command_totals(m)
        .filter(|(_, t)| t.calls > 0 || t.rejected > 0)
        .map(|(spec, t)| (label(&stat_name(spec)), t))
        .collect();
    let per_command: [Family<CommandValue>; 4] = [
        (
            "gokv_commands_total",
            "counter",
            "Calls, by command.",
            |t| t.calls as f64,
        ),
        (
            "gokv_commands_duration_seconds_total",
            "counter",
            "Execution time, by command (data commands: estimated from the timed calls).",
            |t| t.total_nanos() as f64 / 1e9,
        ),
        (
            "gokv_commands_failed_calls_total",
            "counter",
            "Calls that answered an error, by command.",
            |t| t.failed as f64,
        ),
        (
            "gokv_commands_rejected_calls_total",
            "counter",
            "Calls refused before they ran, by command.",
            |t| t.rejected as f64,
        ),
    ];
    for (name, kind, help, value) in per_command {
        family(&mut out, name, kind, help);
        for (cmd, t) in &commands {
            let _ = writeln!(out, "{name}{{cmd=\"{cmd}\"}} {}", value(t));
        }
    }
    family(
        &mut out,
        "gokv_command_latency_seconds",
        "histogram",
        &format!(
            "Execution time of the timed calls, by command (data commands: one call in {DATA_SAMPLE})."
        ),
    );
    for (cmd, t) in &commands {
        histogram(
            &mut out,
            "gokv_command_latency_seconds",
            &format!("cmd=\"{cmd}\""),
            &t.buckets,
            COMMAND_BOUNDS_NS,
            t.nanos,
        );
    }

    // Per shard.
    let per_shard: [Family<ShardField>; 7] = [
        (
            "gokv_shard_commands_total",
            "counter",
            "Requests parsed from the shard's connections.",
            |s| &s.commands,
        ),
        (
            "gokv_shard_forwarded_out_total",
            "counter",
            "Requests the shard sent to another shard.",
            |s| &s.forwarded_out,
        ),
        (
            "gokv_shard_forwarded_in_total",
            "counter",
            "Requests other shards sent here and this shard ran.",
            |s| &s.forwarded_in,
        ),
        (
            "gokv_shard_batches_out_total",
            "counter",
            "Messages the shard sent to other shards.",
            |s| &s.batches_out,
        ),
        (
            "gokv_shard_connected_clients",
            "gauge",
            "Connections on the shard.",
            |s| &s.connections,
        ),
        (
            "gokv_shard_partitions",
            "gauge",
            "Partitions the shard owns.",
            |s| &s.partitions,
        ),
        (
            "gokv_shard_memory_used_bytes",
            "gauge",
            "Estimated bytes of the shard's data.",
            |s| &s.used_memory,
        ),
    ];
    for (name, kind, help, field) in per_shard {
        family(&mut out, name, kind, help);
        for (i, s) in m.shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{i}\"}} {}",
                ShardMetrics::get(field(s))
            );
        }
    }

    family(
        &mut out,
        "gokv_shard_busy_seconds_total",
        "counter",
        "Wall time the shard's loop spent serving (outside poll); its rate is the share of a \
         core the shard is busy, 1 when saturated.",
    );
    for (i, s) in m.shards.iter().enumerate() {
        let _ = writeln!(
            out,
            "gokv_shard_busy_seconds_total{{shard=\"{i}\"}} {}",
            ShardMetrics::get(&s.busy_ns) as f64 / 1e9
        );
    }
    if !sources.inboxes.is_empty() {
        family(
            &mut out,
            "gokv_shard_inbox_messages",
            "gauge",
            "Messages waiting in the shard's inbox (batches of forwarded requests or replies, \
             new connections, catalog updates).",
        );
        for (i, inbox) in sources.inboxes.iter().enumerate() {
            let _ = writeln!(
                out,
                "gokv_shard_inbox_messages{{shard=\"{i}\"}} {}",
                inbox.queued()
            );
        }
    }
    family(
        &mut out,
        "gokv_fsync_duration_seconds",
        "histogram",
        "Time of each fdatasync of a durable partition's log (SYNC commits, the ASYNC timer), \
         by shard.",
    );
    for (i, s) in m.shards.iter().enumerate() {
        let h = &s.fsync_latency;
        let buckets: Vec<u64> = h.buckets.iter().map(ShardMetrics::get).collect();
        histogram(
            &mut out,
            "gokv_fsync_duration_seconds",
            &format!("shard=\"{i}\""),
            &buckets,
            FSYNC_BOUNDS_NS,
            ShardMetrics::get(&h.nanos),
        );
    }

    // Per partition.
    let per_partition: [Family<PartitionField>; 12] = [
        ("gokv_partition_keys", "gauge", "Keys.", |s| &s.keys),
        (
            "gokv_partition_expiring_keys",
            "gauge",
            "Keys with a deadline.",
            |s| &s.expires,
        ),
        (
            "gokv_partition_memory_bytes",
            "gauge",
            "Estimated bytes of data.",
            |s| &s.memory,
        ),
        (
            "gokv_partition_ops_total",
            "counter",
            "Data commands.",
            |s| &s.ops,
        ),
        (
            "gokv_partition_reads_total",
            "counter",
            "Read commands.",
            |s| &s.reads,
        ),
        (
            "gokv_partition_writes_total",
            "counter",
            "Write commands.",
            |s| &s.writes,
        ),
        (
            "gokv_partition_keyspace_hits_total",
            "counter",
            "Reads that found their key.",
            |s| &s.hits,
        ),
        (
            "gokv_partition_keyspace_misses_total",
            "counter",
            "Reads that did not.",
            |s| &s.misses,
        ),
        (
            "gokv_partition_expired_keys_total",
            "counter",
            "Keys expired.",
            |s| &s.expired_keys,
        ),
        (
            "gokv_partition_evicted_keys_total",
            "counter",
            "Keys evicted.",
            |s| &s.evicted_keys,
        ),
        (
            "gokv_partition_throttled_total",
            "counter",
            "Commands refused by max-ops.",
            |s| &s.throttled,
        ),
        (
            "gokv_partition_avg_ttl_milliseconds",
            "gauge",
            "Estimated mean time to live of the keys with a deadline.",
            |s| &s.avg_ttl,
        ),
    ];
    let names: Vec<(String, &PartitionStats)> = catalog
        .partitions
        .iter()
        .map(|(name, meta)| (label(name), &*meta.stats))
        .collect();
    for (name, kind, help, field) in per_partition {
        family(&mut out, name, kind, help);
        for (partition, stats) in &names {
            let _ = writeln!(
                out,
                "{name}{{partition=\"{partition}\"}} {}",
                PartitionStats::get(field(stats))
            );
        }
    }
    // Totals over the partitions, under redis_exporter's names.
    let sum = |f: fn(&PartitionStats) -> &AtomicU64| -> u64 {
        names
            .iter()
            .map(|(_, s)| PartitionStats::get(f(s)))
            .fold(0, u64::wrapping_add)
    };
    for (name, help, value) in [
        (
            "gokv_evicted_keys_total",
            "Keys evicted, all partitions.",
            sum(|s| &s.evicted_keys),
        ),
        (
            "gokv_keyspace_hits_total",
            "Reads that found their key, all partitions.",
            sum(|s| &s.hits),
        ),
        (
            "gokv_keyspace_misses_total",
            "Reads that did not, all partitions.",
            sum(|s| &s.misses),
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// `le` bounds of `gokv_command_latency_seconds`, in ns: 128 ns x 4^k up to 34 s.
const COMMAND_BOUNDS_NS: &[u64] = &[
    1 << 7,
    1 << 9,
    1 << 11,
    1 << 13,
    1 << 15,
    1 << 17,
    1 << 19,
    1 << 21,
    1 << 23,
    1 << 25,
    1 << 27,
    1 << 29,
    1 << 31,
    1 << 33,
    1 << 35,
];

/// `le` bounds of `gokv_fsync_duration_seconds`, in ns: every power of two from 1 us to 17 s.
/// Twice as fine as the commands' (an fsync takes from microseconds on a fast disk to
/// seconds on a busy one, and its p99 is the panel's point; `histogram_quantile`
/// interpolates within a bucket), at 26 series a shard.
const FSYNC_BOUNDS_NS: &[u64] = &[
    1 << 10,
    1 << 11,
    1 << 12,
    1 << 13,
    1 << 14,
    1 << 15,
    1 << 16,
    1 << 17,
    1 << 18,
    1 << 19,
    1 << 20,
    1 << 21,
    1 << 22,
    1 << 23,
    1 << 24,
    1 << 25,
    1 << 26,
    1 << 27,
    1 << 28,
    1 << 29,
    1 << 30,
    1 << 31,
    1 << 32,
    1 << 33,
    1 << 34,
];

/// Writes one histogram's `_bucket` (cumulative, at `bounds_ns`, then `+Inf`), `_sum` and
/// `_count` samples with `labels` (`k="v",...`), from [`crate::metrics::latency_bucket`]
/// counts. Every bound must be a power of two of at least 64 ns, so a bucket bound of that
/// histogram, which makes each `le` count exact. `_count` is the sum of `buckets`, so it is
/// always the `+Inf` bucket, even while the shard writes.
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    buckets: &[u64],
    bounds_ns: &[u64],
    sum_ns: u64,
) {
    let mut cumulative = 0u64;
    let mut bucket = 0;
    for &le_ns in bounds_ns {
        debug_assert!(le_ns.is_power_of_two() && le_ns >= 64);
        while bucket < buckets.len() && latency_bucket_bound(bucket) <= le_ns {
            cumulative += buckets[bucket];
            bucket += 1;
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
            le_ns as f64 / 1e9
        );
    }
    let count: u64 = buckets.iter().sum();
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {count}\n\
         {name}_sum{{{labels}}} {}\n\
         {name}_count{{{labels}}} {count}",
        sum_ns as f64 / 1e9
    );
}

/// Binds the endpoint's socket (for [`start`]): on `addr`, or not at all when the port is 0.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    crate::acceptor::bind(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Sources {
        Sources {
            metrics: Arc::new(ServerMetrics::new(2)),
            config: Arc::new(Config::default()),
            inboxes: Vec::new(),
            replication: None,
        }
    }

    /// The samples of `text` whose series starts with `prefix`, as (series, value).
    fn samples<'a>(text: &'a str, prefix: &str) -> Vec<(&'a str, &'a str)> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit_once(' ').unwrap())
            .collect()
    }

    #[test]
    fn inbox_depth_is_what_waits_in_each_shards_channel() {
        let polls = [Poll::new().unwrap(), Poll::new().unwrap()];
        let (mailboxes, handles): (Vec<_>, Vec<_>) = polls
            .iter()
            .map(|p| crate::shard::mailbox::Mailbox::new(p.registry(), Token(0)).unwrap())
            .unzip();
        let mut s = sources();
        s.inboxes = handles;
        for _ in 0..3 {
            s.inboxes[1].send(crate::shard::mailbox::Message::Shutdown);
        }
        let text = render(&s);
        assert_eq!(
            samples(&text, "gokv_shard_inbox_messages{"),
            [
                ("gokv_shard_inbox_messages{shard=\"0\"}", "0"),
                ("gokv_shard_inbox_messages{shard=\"1\"}", "3")
            ]
        );
        // Drained: the gauge falls with it.
        while mailboxes[1].try_recv().is_some() {}
        let text = render(&s);
        assert!(text.contains("gokv_shard_inbox_messages{shard=\"1\"} 0\n"));
    }

    #[test]
    fn fsync_histogram_is_cumulative_per_shard_and_counts_every_fsync() {
        let s = sources();
        let h = &s.metrics.shards[1].fsync_latency;
        for us in [3, 3, 40, 900, 70_000] {
            h.record(Duration::from_micros(us));
        }
        h.record(Duration::from_secs(100)); // past the last bound: only in +Inf
        let text = render(&s);
        let bucket = |shard: &str, le: &str| -> u64 {
            let series =
                format!("gokv_fsync_duration_seconds_bucket{{shard=\"{shard}\",le=\"{le}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&series));
            line.unwrap_or_else(|| panic!("no {series}"))[series.len()..]
                .parse()
                .unwrap()
        };
        // 2^12 ns = 4.096 us holds the two 3 us fsyncs; 2^16 ns = 65.5 us the 40 us one.
        assert_eq!(bucket("1", "0.000004096"), 2);
        assert_eq!(bucket("1", "0.000065536"), 3);
        assert_eq!(bucket("1", "0.001048576"), 4);
        assert_eq!(bucket("1", "0.134217728"), 5);
        assert_eq!(bucket("1", "17.179869184"), 5);
        assert_eq!(bucket("1", "+Inf"), 6);
        assert_eq!(bucket("0", "+Inf"), 0);
        assert!(text.contains("gokv_fsync_duration_seconds_count{shard=\"1\"} 6\n"));
        let sum: f64 = samples(&text, "gokv_fsync_duration_seconds_sum{shard=\"1\"}")[0]
            .1
            .parse()
            .unwrap();
        assert!((sum - 100.070946).abs() < 1e-6, "{sum}");
        let les = samples(&text, "gokv_fsync_duration_seconds_bucket{shard=\"0\"");
        assert_eq!(les.len(), FSYNC_BOUNDS_NS.len() + 1);
    }

    #[test]
    fn requests_are_answered_by_path_and_method() {
        let s = sources();
        let text = |r: &[u8]| String::from_utf8(answer(r, &s).unwrap()).unwrap();
        assert!(text(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
        assert!(text(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
        assert!(text(b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(text(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(text(b"\x01\x02garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(answer(b"GET /metr", &s).is_none());
        let huge = [b'a'; MAX_REQUEST + 1];
        assert!(text(&huge).starts_with("HTTP/1.1 4"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

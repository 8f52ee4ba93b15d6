//! Latency histograms, error bookkeeping, the live progress line and the final summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::Op;

/// Latencies are recorded in nanoseconds, from 1 ns to 60 s, at 3 significant digits; larger
/// values are clamped to 60 s (and still counted).
const HIST_MAX_NS: u64 = 60_000_000_000;
/// How many distinct error replies are kept verbatim; the rest are only counted.
const MAX_ERROR_SAMPLES: usize = 8;
/// Error replies are cut to this many bytes when kept.
const MAX_ERROR_LEN: usize = 200;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

/// What one thread measured. Threads keep their own and the results are merged at the end.
pub struct ThreadStats {
    /// One histogram per [`Op`], indexed by `op as usize`.
    hists: Vec<Histogram<u64>>,
    pub errors: u64,
    /// The first distinct error replies and how often each was seen.
    pub error_samples: Vec<(String, u64)>,
    /// Errors that ended the run (closed connection, protocol error, ...).
    pub fatal: Vec<String>,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            hists: Op::ALL.iter().map(|_| new_histogram()).collect(),
            errors: 0,
            error_samples: Vec::new(),
            fatal: Vec::new(),
        }
    }
}

impl ThreadStats {
    #[inline]
    pub fn record(&mut self, op: Op, latency_ns: u64) {
        self.hists[op as usize].saturating_record(latency_ns.max(1));
    }

    pub fn record_error(&mut self, reply: &[u8]) {
        self.errors += 1;
        let cut = &reply[..reply.len().min(MAX_ERROR_LEN)];
        if let Some(entry) = self
            .error_samples
            .iter_mut()
            .find(|(text, _)| text.as_bytes() == cut)
        {
            entry.1 += 1;
        } else if self.error_samples.len() < MAX_ERROR_SAMPLES {
            self.error_samples
                .push((String::from_utf8_lossy(cut).into_owned(), 1));
        }
    }

    pub fn merge(&mut self, other: ThreadStats) {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            mine.add(theirs).expect("histograms share bounds");
        }
        self.errors += other.errors;
        for (text, count) in other.error_samples {
            if let Some(entry) = self.error_samples.iter_mut().find(|(t, _)| *t == text) {
                entry.1 += count;
            } else if self.error_samples.len() < MAX_ERROR_SAMPLES {
                self.error_samples.push((text, count));
            }
        }
        self.fatal.extend(other.fatal);
    }

    pub fn ops(&self) -> u64 {
        self.hists.iter().map(|h| h.len()).sum()
    }

    fn all_ops_histogram(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for h in &self.hists {
            all.add(h).expect("histograms share bounds");
        }
        all
    }
}

/// Per-thread counters the progress line reads while the run goes on. Each thread writes only
/// its own slot, on its own cache line.
#[derive(Default)]
#[repr(align(128))]
pub struct LiveCounters {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
}

/// Sum of every thread's live counters.
pub fn live_totals(counters: &[LiveCounters]) -> (u64, u64) {
    counters.iter().fold((0, 0), |(o, e), c| {
        (
            o + c.ops.load(Ordering::Relaxed),
            e + c.errors.load(Ordering::Relaxed),
        )
    })
}

/// Prints one progress line per second on stderr: overwritten in place on a terminal, one line
/// each otherwise (so logs stay readable).
pub struct Progress {
    label: &'static str,
    tty: bool,
    last_ops: u64,
    last_at: Duration,
    printed: bool,
}

impl Progress {
    pub fn new(label: &'static str) -> Progress {
        Progress {
            label,
            tty: std::io::stderr().is_terminal(),
            last_ops: 0,
            last_at: Duration::ZERO,
            printed: false,
        }
    }

    pub fn tick(&mut self, elapsed: Duration, ops: u64, errors: u64) {
        let window = (elapsed - self.last_at).as_secs_f64().max(1e-9);
        let rate = (ops - self.last_ops) as f64 / window;
        self.last_ops = ops;
        self.last_at = elapsed;
        let line = format!(
            "{}{:>6.1}s  {:>10.0} ops/s  total {:>11}  errors {}",
            self.label,
            elapsed.as_secs_f64(),
            rate,
            ops,
            errors
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.printed = true;
    }

    /// Ends an in-place line so that what follows starts on a fresh line.
    pub fn finish(&mut self) {
        if self.tty && self.printed {
            eprintln!();
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// Percentiles of `h` (recorded in ns), in microseconds.
    fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PerCommand {
    pub command: &'static str,
    pub ops: u64,
    pub latency_us: Latency,
}

#[derive(Debug, Serialize)]
pub struct ErrorSample {
    pub reply: String,
    pub count: u64,
}

/// The run's settings, echoed in the summary so that a result explains itself.
#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub target: &'static str,
    pub addr: String,
    pub command: &'static str,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    /// GET:SET ratio; absent for PING.
    pub ratio: Option<String>,
    pub keys: u64,
    pub dist: String,
    pub value_size: usize,
    pub partitions: Vec<String>,
    pub rate: Option<f64>,
    /// The shard every connection was placed on (`--conn-shard`), if any.
    pub conn_shard: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub info: RunInfo,
    /// True when no connection failed; error replies do not clear it.
    pub ok: bool,
    pub elapsed_s: f64,
    /// Replies received (errors included).
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Error replies (`-...`).
    pub errors: u64,
    pub error_samples: Vec<ErrorSample>,
    /// Failures that ended the run.
    pub fatal: Vec<String>,
    pub latency_us: Latency,
    pub by_command: Vec<PerCommand>,
}

impl Summary {
    pub fn new(info: RunInfo, stats: &ThreadStats, elapsed: Duration) -> Summary {
        let ops = stats.ops();
        let secs = elapsed.as_secs_f64();
        Summary {
            info,
            ok: stats.fatal.is_empty(),
            elapsed_s: secs,
            ops,
            ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            errors: stats.errors,
            error_samples: stats
                .error_samples
                .iter()
                .map(|(reply, count)| ErrorSample {
                    reply: reply.clone(),
                    count: *count,
                })
                .collect(),
            fatal: stats.fatal.clone(),
            latency_us: Latency::of(&stats.all_ops_histogram()),
            by_command: Op::ALL
                .iter()
                .map(|&op| (op, &stats.hists[op as usize]))
                .filter(|(_, h)| !h.is_empty())
                .map(|(op, h)| PerCommand {
                    command: op.name(),
                    ops: h.len(),
                    latency_us: Latency::of(h),
                })
                .collect(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serialises")
    }

    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let i = &self.info;
        let mut s = String::new();
        let mut line = |text: String| {
            s.push_str(&text);
            s.push('\n');
        };
        let what = match &i.ratio {
            Some(ratio) => format!("GET:SET {ratio}"),
            None => "PING".to_string(),
        };
        let placed = i
            .conn_shard
            .map(|n| format!(" (all on shard {n})"))
            .unwrap_or_default();
        line(format!(
            "target {} at {}: {what}, {} connections{placed} on {} thread(s), pipeline {}",
            i.target, i.addr, i.connections, i.threads, i.pipeline
        ));
        if i.command != "ping" {
            let parts = if i.target == "gokv" {
                format!(", partitions {}", i.partitions.join(","))
            } else {
                String::new()
            };
            line(format!(
                "keys {} ({}), value {} B{parts}",
                i.keys, i.dist, i.value_size
            ));
        }
        if let Some(rate) = i.rate {
            line(format!(
                "fixed rate {rate:.0} ops/s (latency from intended send time)"
            ));
        }
        line(format!(
            "{} ops in {:.2} s: {:.0} ops/s",
            self.ops, self.elapsed_s, self.ops_per_sec
        ));
        line(format!(
            "{:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "latency", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "mean us"
        ));
        let row = |name: &str, l: &Latency| {
            format!(
                "{:<8} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                name, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            )
        };
        line(row("all", &self.latency_us));
        if self.by_command.len() > 1 {
            for c in &self.by_command {
                line(row(c.command, &c.latency_us));
            }
        }
        line(format!("errors {}", self.errors));
        for e in &self.error_samples {
            line(format!("  {:>10} x {}", e.count, e.reply));
        }
        for f in &self.fatal {
            line(format!("FAILED: {f}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_summarises() {
        let mut a = ThreadStats::default();
        let mut b = ThreadStats::default();
        for i in 1..=1000 {
            a.record(Op::Get, i * 1000); // 1..1000 us
        }
        b.record(Op::Set, 5_000_000);
        b.record_error(b"ERR boom");
        b.record_error(b"ERR boom");
        a.record_error(b"NOPERM no");
        a.merge(b);
        assert_eq!(a.ops(), 1001);
        assert_eq!(a.errors, 3);
        assert_eq!(
            a.error_samples,
            vec![("NOPERM no".to_string(), 1), ("ERR boom".to_string(), 2)]
        );
        let info = RunInfo {
            target: "redis",
            addr: "127.0.0.1:1".into(),
            command: "mixed",
            connections: 1,
            threads: 1,
            pipeline: 1,
            ratio: Some("1:1".into()),
            keys: 1,
            dist: "uniform".into(),
            value_size: 1,
            partitions: vec![],
            rate: None,
            conn_shard: None,
        };
        let s = Summary::new(info, &a, Duration::from_secs(2));
        assert!((s.ops_per_sec - 500.5).abs() < 1e-9);
        assert!(
            (s.latency_us.p50 - 501.0).abs() < 1.0,
            "{}",
            s.latency_us.p50
        );
        assert!((s.latency_us.max - 5000.0).abs() < 5.0);
        assert_eq!(s.by_command.len(), 2);
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["ops"], 1001);
        assert_eq!(json["target"], "redis");
        assert_eq!(json["error_samples"][1]["count"], 2);
        assert!(s.to_text().contains("ops/s"));
    }

    #[test]
    fn keeps_only_the_first_distinct_errors() {
        let mut s = ThreadStats::default();
        for i in 0..20 {
            s.record_error(format!("ERR {i}").as_bytes());
        }
        assert_eq!(s.errors, 20);
        assert_eq!(s.error_samples.len(), MAX_ERROR_SAMPLES);
    }
}

//! Command-line flags and their validation.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::workload::Target;

#[derive(Debug, Parser)]
#[command(
    name = "gokv-loadtest",
    version,
    about = "Load generator for GoKV and Redis: N connections on T event-loop threads, \
             pipelined SET/GET (or PING), HdrHistogram latencies."
)]
pub struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Server port.
    #[arg(long, default_value_t = 7379)]
    pub port: u16,

    /// Request dialect: gokv puts the partition first (`SET <p> <key> <val>`), redis does not.
    #[arg(long, value_enum, default_value_t = TargetArg::Gokv)]
    pub target: TargetArg,

    /// Number of connections, spread round-robin over the threads.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,

    /// Number of client threads, each running one event loop.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,

    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub pipeline: usize,

    /// Read:write ratio of GET to SET, e.g. 1:1, 9:1, 0:1 (only SET), 1:0 (only GET).
    #[arg(long, default_value = "1:1", value_parser = parse_ratio)]
    pub ratio: Ratio,

    /// Size of the key space: keys key:000000000000 .. key:<keys-1>.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,

    /// Key distribution.
    #[arg(long, value_enum, default_value_t = DistArg::Uniform)]
    pub dist: DistArg,

    /// Zipfian exponent (0 <= theta < 1); only with --dist zipfian.
    #[arg(long, default_value_t = 0.99)]
    pub zipf_theta: f64,

    /// Bytes per SET value.
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,

    /// GoKV partitions, comma-separated; each request picks one uniformly. Ignored for redis.
    #[arg(long, value_delimiter = ',', default_value = "bench")]
    pub partitions: Vec<String>,

    /// Connection k sends every SET and GET to partition k mod (number of --partitions),
    /// instead of each request drawing one (gokv only). With one partition per shard, GoKV
    /// moves each connection to its partition's shard: the all-local case that scales.
    #[arg(long)]
    pub partition_per_connection: bool,

    /// Before the run, CREATE PARTITION <p> STRING MEMORY for each partition (gokv only);
    /// "already exists" errors are ignored.
    #[arg(long)]
    pub create: bool,

    /// Length of the timed run: 10s, 500ms, 2m, 1h, or plain seconds. Default 10s unless
    /// --requests is given.
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Total number of requests of the timed run, instead of --duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,

    /// Fixed total rate in requests per second. Latency is then measured from each request's
    /// intended send time, so stalls are not hidden (no coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,

    /// User for AUTH on connect (needs --password).
    #[arg(long, requires = "password")]
    pub user: Option<String>,

    /// Password for AUTH on connect (`AUTH <user> <pass>`, or `AUTH <pass>` without --user).
    #[arg(long)]
    pub password: Option<String>,

    /// Keep only connections that GoKV placed on shard N (from `CLIENT INFO`): a connection on
    /// another shard is closed and replaced, up to 50 connects per connection in all (gokv only).
    #[arg(long, value_name = "N")]
    pub conn_shard: Option<u32>,

    /// Write every key once (in every partition) before the timed run.
    #[arg(long)]
    pub prefill: bool,

    /// What to send: mixed SET/GET per --ratio, or PING.
    #[arg(long, value_enum, default_value_t = CommandArg::Mixed)]
    pub command: CommandArg,

    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// No progress lines on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    Gokv,
    Redis,
}

impl From<TargetArg> for Target {
    fn from(t: TargetArg) -> Target {
        match t {
            TargetArg::Gokv => Target::Gokv,
            TargetArg::Redis => Target::Redis,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DistArg {
    Uniform,
    Zipfian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CommandArg {
    /// SET and GET mixed per --ratio.
    Mixed,
    /// PING only.
    Ping,
}

/// A GET:SET ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub reads: u32,
    pub writes: u32,
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.reads, self.writes)
    }
}

pub fn parse_ratio(s: &str) -> Result<Ratio, String> {
    let (r, w) = s
        .split_once(':')
        .ok_or_else(|| format!("expected READS:WRITES such as 9:1, got {s:?}"))?;
    let reads: u32 = r
        .trim()
        .parse()
        .map_err(|_| format!("bad read weight {r:?}"))?;
    let writes: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad write weight {w:?}"))?;
    if reads == 0 && writes == 0 {
        return Err("ratio 0:0 sends nothing".into());
    }
    if reads.checked_add(writes).is_none() {
        return Err("ratio weights too large".into());
    }
    Ok(Ratio { reads, writes })
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 10s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("bad duration unit {other:?}: use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Args {
    /// Checks what clap cannot express; returns a message for the user.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.pipeline == 0 {
            return Err("--pipeline must be at least 1".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.requests == Some(0) {
            return Err("--requests must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.zipf_theta) {
            return Err("--zipf-theta must be in [0, 1)".into());
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        if self.target == TargetArg::Gokv {
            if self.partitions.is_empty() || self.partitions.iter().any(|p| p.is_empty()) {
                return Err("--partitions needs at least one non-empty name".into());
            }
        } else if self.create {
            return Err("--create applies to --target gokv only".into());
        } else if self.conn_shard.is_some() {
            return Err("--conn-shard applies to --target gokv only".into());
        } else if self.partition_per_connection {
            return Err("--partition-per-connection applies to --target gokv only".into());
        }
        Ok(())
    }

    /// Length of the timed run when it is time-bound.
    pub fn run_duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    /// The AUTH arguments to send on connect, if any.
    pub fn auth(&self) -> Option<Vec<String>> {
        let password = self.password.clone()?;
        Some(match &self.user {
            Some(user) => vec!["AUTH".into(), user.clone(), password],
            None => vec!["AUTH".into(), password],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios() {
        assert_eq!(
            parse_ratio("9:1"),
            Ok(Ratio {
                reads: 9,
                writes: 1
            })
        );
        assert_eq!(
            parse_ratio("0:1"),
            Ok(Ratio {
                reads: 0,
                writes: 1
            })
        );
        assert!(parse_ratio("0:0").is_err());
        assert!(parse_ratio("3").is_err());
        assert!(parse_ratio("a:b").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "gokv-loadtest",
            "--target",
            "redis",
            "-c",
            "8",
            "-t",
            "2",
            "-P",
            "16",
            "--ratio",
            "9:1",
            "-n",
            "1000",
            "--user",
            "u",
            "--password",
            "p",
        ])
        .unwrap();
        a.validate().unwrap();
        assert_eq!(a.run_duration(), None);
        assert_eq!(a.auth().unwrap(), ["AUTH", "u", "p"]);
        let b = Args::try_parse_from(["gokv-loadtest", "--partitions", "a,b", "--password", "p"])
            .unwrap();
        assert_eq!(b.partitions, ["a", "b"]);
        assert_eq!(b.run_duration(), Some(Duration::from_secs(10)));
        assert_eq!(b.auth().unwrap(), ["AUTH", "p"]);
        assert_eq!(b.conn_shard, None);
        assert!(Args::try_parse_from(["gokv-loadtest", "--user", "u"]).is_err());
        assert!(Args::try_parse_from(["gokv-loadtest", "--duration", "1s", "-n", "5"]).is_err());
    }

    #[test]
    fn conn_shard_is_for_gokv_only() {
        let a = Args::try_parse_from(["gokv-loadtest", "--conn-shard", "1"]).unwrap();
        a.validate().unwrap();
        assert_eq!(a.conn_shard, Some(1));
        let r = Args::try_parse_from(["gokv-loadtest", "--target", "redis", "--conn-shard", "0"])
            .unwrap();
        assert!(r.validate().unwrap_err().contains("--conn-shard"));
        assert!(Args::try_parse_from(["gokv-loadtest", "--conn-shard", "-1"]).is_err());
    }

    #[test]
    fn partition_per_connection_is_for_gokv_only() {
        let a = Args::try_parse_from(["gokv-loadtest", "--partition-per-connection"]).unwrap();
        a.validate().unwrap();
        assert!(a.partition_per_connection);
        assert!(
            !Args::try_parse_from(["gokv-loadtest"])
                .unwrap()
                .partition_per_connection
        );
        let r = Args::try_parse_from([
            "gokv-loadtest",
            "--target",
            "redis",
            "--partition-per-connection",
        ])
        .unwrap();
        assert!(r
            .validate()
            .unwrap_err()
            .contains("--partition-per-connection"));
    }
}

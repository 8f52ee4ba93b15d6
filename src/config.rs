//! Configuration: command-line flags, an optional TOML file with the same keys, defaults.
//!
//! Precedence: a flag given on the command line, then the key in `--config FILE`, then the
//! default documented on the flag (and in the README's table). Everything is validated here,
//! once, before any thread starts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

use clap::Parser;
use serde::Deserialize;

use crate::protocol::Limits;

/// Command-line flags. Every field is optional so that we can tell "not given" from "given
/// as the default" and let the config file fill the gaps.
#[derive(Parser, Debug, Default)]
#[command(
    name = "gokv-server",
    version,
    about = "GoKV: a thread-per-core, partitioned, RESP-compatible in-memory key-value server",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// TOML file with the same keys as these flags (e.g. `port = 7379`, `max-clients = 100`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long)]
    pub bind: Option<String>,
    /// TCP port; 0 picks a free one (logged at startup) [default: 7379].
    #[arg(long)]
    pub port: Option<u16>,
    /// Shard threads, one pinned per core [default: number of cores].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Directory for persistent state [default: ./gokv-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most simultaneous client connections [default: 10000].
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Longest bulk string in a request, e.g. `512mb`; before login at most 16kb [default: 512mb].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_bulk_len: Option<u64>,
    /// Longest inline (text) request line; before login at most 16kb [default: 64kb].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_inline_len: Option<u64>,
    /// Most arguments in one request; before login at most 10 [default: 1048576].
    #[arg(long)]
    pub max_args: Option<usize>,
    /// Longest key [default: 64kb].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_key_len: Option<u64>,
    /// Most keys one KEYS reply may hold; past it KEYS answers an error that says to use SCAN
    /// [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_keys_reply: Option<usize>,
    /// Move a connection to the shard whose partitions it alone uses, and one that uses none
    /// onto the lowest shard with room [default: true].
    #[arg(long, value_name = "BOOL")]
    pub migrate_connections: Option<bool>,
    /// Microseconds a shard that just had work keeps polling, without sleeping, before it
    /// sleeps in poll: a client's next request then finds it awake (no wake-up, no context
    /// switch), at the cost of that much CPU after each burst; 0 sleeps at once, as Redis
    /// does [default: 50].
    #[arg(long, value_name = "US")]
    pub idle_poll_us: Option<u64>,
    /// Unwritten reply bytes one client may have before it is disconnected, e.g. `64mb`
    /// [default: 64mb].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub client_output_limit: Option<u64>,
    /// Estimated data size past which writes answer `-OOM`, e.g. `2gb`; 0 is no limit
    /// [default: 0].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_memory: Option<u64>,
    /// Seconds a client may stay idle before it is disconnected; 0 is never [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Commands that run at least this many microseconds go to the SLOWLOG; 0 logs every
    /// command, -1 none [default: 10000].
    #[arg(long, value_name = "MICROSECONDS", allow_negative_numbers = true)]
    pub slowlog_log_slower_than: Option<i64>,
    /// Most entries the SLOWLOG keeps per shard, the oldest dropped first [default: 128].
    #[arg(long, value_name = "N")]
    pub slowlog_max_len: Option<u64>,
    /// Events (fsync, compaction, expire-cycle, eviction, drain, command) that take at least
    /// this many milliseconds are kept for LATENCY LATEST and HISTORY; 0 is off [default: 0].
    #[arg(long, value_name = "MILLISECONDS")]
    pub latency_monitor_threshold: Option<u64>,
    /// On a first start (an empty data directory), create partitions `0` .. `N-1` (STRING
    /// MEMORY), for Redis clients that select a numbered database (`redis-benchmark --dbnum
    /// 3`, redis-py `db=3`); at most 1024. Off by default: GoKV partitions are named and made
    /// on purpose, a fresh server starts empty, and under default deny only ADMIN on `*` may
    /// use them until granted. `--databases 16` is Redis's layout [default: 0].
    #[arg(long, value_name = "N")]
    pub databases: Option<usize>,
    /// Password of the `admin` user, set at every start (also `GOKV_ADMIN_PASSWORD`, which
    /// keeps it out of `ps`). Without either, a first start generates one into the data
    /// directory.
    #[arg(long, value_name = "PASSWORD")]
    pub admin_password: Option<String>,
    /// Port of the Prometheus endpoint (`GET /metrics`); 0 turns it off. When the default
    /// port is taken the server warns and runs without metrics; when a port given here is
    /// taken it refuses to start [default: 9379].
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Address the Prometheus endpoint listens on [default: the --bind address].
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<String>,
    /// Start although durable data is missing or damaged (the catalog, `users.json`, a
    /// partition's directory, a log segment, a log cut short) or the data directory holds
    /// partition data the catalog does not explain: what is left is loaded and each loss is
    /// logged at WARN. Without it such a start is refused, naming the file. Command line only,
    /// for one start.
    #[arg(long)]
    pub accept_data_loss: bool,
    /// Port for TLS connections (rustls), beside --port; 0 is no TLS. With it, --port 0
    /// serves TLS only, as in Redis [default: 0].
    #[arg(long, value_name = "PORT")]
    pub tls_port: Option<u16>,
    /// The server's certificate chain, PEM (needed with --tls-port).
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1; needed with --tls-port).
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates, PEM, that client certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Client certificates: no (not asked for), optional (verified if presented), yes
    /// (required; needs --tls-ca-cert-file) [default: yes].
    #[arg(long, value_name = "no|optional|yes")]
    pub tls_auth_clients: Option<String>,
    /// TLS versions, space-separated: TLSv1.2 and/or TLSv1.3 [default: "TLSv1.2 TLSv1.3"].
    #[arg(long, value_name = "PROTOCOLS")]
    pub tls_protocols: Option<String>,
    /// TLS 1.3 cipher suites, colon-separated OpenSSL names (TLS_AES_256_GCM_SHA384,
    /// TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256) [default: all three].
    #[arg(long, value_name = "SUITES")]
    pub tls_ciphersuites: Option<String>,
    /// TLS 1.2 cipher suites, colon-separated OpenSSL names (ECDHE-RSA-AES128-GCM-SHA256,
    /// ...: the six ECDHE AEAD suites) [default: all six].
    #[arg(long, value_name = "CIPHERS")]
    pub tls_ciphers: Option<String>,
    /// yes: a verified client certificate whose subject CN names a user logs the connection
    /// in as that user without a password; a CN naming no user is refused [default: no].
    #[arg(long, value_name = "yes|no")]
    pub tls_cert_user: Option<String>,
    /// yes: as a replica, link to the primary with TLS (--replicaof names its TLS port;
    /// its certificate is checked against --tls-ca-cert-file, this server's
    /// --tls-cert-file is presented). Needs --tls-port [default: no].
    #[arg(long, value_name = "yes|no")]
    pub tls_replication: Option<String>,
    /// Milliseconds a TLS handshake may take before the connection is closed
    /// [default: 10000].
    #[arg(long, value_name = "MS")]
    pub tls_handshake_timeout_ms: Option<u64>,
    /// Start as a replica of the primary at `host:port` (as `REPLICAOF host port` would);
    /// the data of every partition is then replaced by the primary's [default: none].
    #[arg(long, value_name = "HOST:PORT")]
    pub replicaof: Option<String>,
    /// The user a replica logs in to its primary as (it needs ADMIN on `*` there).
    #[arg(long, value_name = "USER")]
    pub primary_user: Option<String>,
    /// That user's password (also `GOKV_PRIMARY_PASSWORD`, which keeps it out of `ps`).
    #[arg(long, value_name = "PASSWORD")]
    pub primary_password: Option<String>,
    /// Bytes of replication stream the primary queues for one replica before it drops the
    /// replica (which then syncs again), e.g. `256mb` [default: 256mb].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub repl_buffer: Option<u64>,
    /// Writes answer `-NOREPLICAS` while fewer than N replicas have acknowledged within
    /// --min-replicas-max-lag seconds; 0 is off (live) [default: 0].
    #[arg(long, value_name = "N")]
    pub min_replicas_to_write: Option<u64>,
    /// Seconds since its last acknowledgement within which a replica counts as good for
    /// --min-replicas-to-write (live) [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub min_replicas_max_lag: Option<u64>,
    /// A replica's priority for a failover (INFO's `slave_priority`; lower is preferred, 0
    /// never promoted), read by Sentinel (live) [default: 100].
    #[arg(long, value_name = "N")]
    pub replica_priority: Option<u64>,
    /// The address a replica tells its primary to show for it (INFO's `slaveN:ip=`, what
    /// Sentinel connects to) instead of the one the connection comes from [default: none].
    #[arg(long, value_name = "IP")]
    pub replica_announce_ip: Option<String>,
    /// The port a replica tells its primary to show for it (`slaveN:port=`) instead of the
    /// one it listens on [default: none].
    #[arg(long, value_name = "PORT")]
    pub replica_announce_port: Option<u16>,
    /// Bytes of recent replication stream a primary keeps so that a replica whose link
    /// broke resumes instead of syncing again, for all shards together (each shard keeps an
    /// equal share); kept from the first replica's attach on; at most half of
    /// --repl-buffer; `0`: none [default: 16mb].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub repl_backlog: Option<u64>,
}

/// What `--help` says after the flags: the rules every flag shares.
const AFTER_HELP: &str = "\
Sizes (max-bulk-len, max-inline-len, max-key-len, client-output-limit, max-memory,
repl-buffer, repl-backlog) are bytes, or a number with b, kb, mb or gb: powers of 1024
(64kb = 65536 bytes).

Every flag but --admin-password and --accept-data-loss may also be a key of the --config
TOML file, spelt as the flag without its dashes (max-clients = 100). A flag on the command
line beats the file, and the file beats the default.

Live settings: CONFIG SET changes these while the server runs, on every shard at once:
timeout, max-clients, client-output-limit, max-memory, max-key-len, max-keys-reply,
migrate-connections, idle-poll-us,
slowlog-log-slower-than, slowlog-max-len, latency-monitor-threshold,
min-replicas-to-write, min-replicas-max-lag, replica-priority;
and, with a --tls-port, tls-cert-file, tls-key-file and tls-ca-cert-file (a reload, as
SIGHUP). Every other setting is read once at start (CONFIG SET answers that it is immutable).

Logging: RUST_LOG sets the level (error, warn, info, debug; default info), e.g.
RUST_LOG=debug gokv-server.

Documentation: docs/operations.md (configuration, persistence, users, backups) and
docs/commands.md (every command).";

/// The environment variable that may carry the admin password.
pub const ADMIN_PASSWORD_ENV: &str = "GOKV_ADMIN_PASSWORD";

/// A secret from the configuration: printed as `<redacted>`, so that logging the
/// configuration never logs it.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The TOML file: the same keys as the flags, kebab-case.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    port: Option<u16>,
    shards: Option<usize>,
    data_dir: Option<PathBuf>,
    max_clients: Option<usize>,
    max_bulk_len: Option<SizeValue>,
    max_inline_len: Option<SizeValue>,
    max_args: Option<usize>,
    max_key_len: Option<SizeValue>,
    max_keys_reply: Option<usize>,
    migrate_connections: Option<bool>,
    idle_poll_us: Option<u64>,
    client_output_limit: Option<SizeValue>,
    max_memory: Option<SizeValue>,
    timeout: Option<u64>,
    slowlog_log_slower_than: Option<i64>,
    slowlog_max_len: Option<u64>,
    latency_monitor_threshold: Option<u64>,
    databases: Option<usize>,
    metrics_port: Option<u16>,
    metrics_bind: Option<String>,
    /// Read only to refuse it with a reason: accepting data loss is a decision for one start,
    /// not a setting that would silently accept every later loss too.
    accept_data_loss: Option<bool>,
    /// Read only to refuse it with a reason (never kept, never printed): a password in a
    /// config file sits in backups, repositories and config management, readable by whoever
    /// reads the file. The flag or the environment variable carry it.
    admin_password: Option<serde::de::IgnoredAny>,
    tls_port: Option<u16>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_ca_cert_file: Option<PathBuf>,
    tls_auth_clients: Option<String>,
    tls_protocols: Option<String>,
    tls_ciphersuites: Option<String>,
    tls_ciphers: Option<String>,
    tls_cert_user: Option<String>,
    tls_replication: Option<String>,
    tls_handshake_timeout_ms: Option<u64>,
    replicaof: Option<String>,
    primary_user: Option<String>,
    repl_buffer: Option<SizeValue>,
    min_replicas_to_write: Option<u64>,
    min_replicas_max_lag: Option<u64>,
    replica_priority: Option<u64>,
    replica_announce_ip: Option<String>,
    replica_announce_port: Option<u16>,
    repl_backlog: Option<SizeValue>,
}

/// A size in the file: a number of bytes or a string like `"64mb"`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            SizeValue::Text(s) => parse_size(s),
        }
    }
}

/// The validated configuration the server runs with. Settings that may change while it runs
/// are in [`Live`]; everything else is read once, at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub port: u16,
    pub shards: usize,
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// From `--admin-password` or `GOKV_ADMIN_PASSWORD` (the flag wins).
    pub admin_password: Option<Secret>,
    /// Partitions `0` .. `databases-1` (STRING MEMORY) created on a first start; 0: none.
    pub databases: usize,
    /// The Prometheus endpoint's port; 0: off.
    pub metrics_port: u16,
    /// Whether `metrics_port` was given (flag or file): taken, it stops the start; the
    /// default taken only costs the metrics.
    pub metrics_port_given: bool,
    /// The endpoint's address (default: `bind`).
    pub metrics_bind: String,
    /// Start although the data directory lost files or holds data its catalog does not
    /// explain, discarding what is lost (logged at WARN); without it startup refuses.
    pub accept_data_loss: bool,
    /// `--config`, when given (INFO's `config_file`, CONFIG REWRITE).
    pub config_file: Option<PathBuf>,
    /// The settings CONFIG SET may change while the server runs.
    pub live: Live,
    /// With a `--tls-port`: the TLS settings (see [`crate::tls`]). Then `port` 0 means no
    /// plain port at all, as in Redis.
    pub tls: Option<crate::tls::TlsSettings>,
    /// `--replicaof`: the primary to follow from the start.
    pub replicaof: Option<(String, u16)>,
    /// `--primary-user` / `--primary-password` (or `GOKV_PRIMARY_PASSWORD`).
    pub primary_user: Option<String>,
    pub primary_password: Option<Secret>,
    /// `--repl-buffer`: bytes queued for one replica before it is dropped.
    pub repl_buffer: usize,
    /// `--replica-announce-ip` / `--replica-announce-port`: what a replica's primary shows.
    pub replica_announce_ip: Option<String>,
    pub replica_announce_port: Option<u16>,
    /// `--repl-backlog`: bytes of recent stream kept for partial resyncs, all shards
    /// together (at most half of `repl_buffer`: a resumed replica may be sent all of it at
    /// once).
    pub repl_backlog: usize,
}

/// The environment variable that may carry the replica's password for its primary.
pub const PRIMARY_PASSWORD_ENV: &str = "GOKV_PRIMARY_PASSWORD";

/// Parses `host:port` (`--replicaof`).
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let bad = || format!("replicaof must be host:port, got '{text}'");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
    ))
}

/// The values of the live settings (see [`Live`]), as plain numbers: what the flags and the
/// file give, what CONFIG SET checks a change against before it stores any of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveValues {
    /// Idle seconds after which a client is disconnected; 0 means never.
    pub timeout_secs: u64,
    pub max_clients: usize,
    /// Bytes of replies a client may leave unread (encoded, not yet taken by the socket)
    /// before it is disconnected.
    pub client_output_limit: usize,
    /// Estimated bytes of data (see `store::partition`) past which writes are refused with
    /// `-OOM`; 0 means no limit.
    pub max_memory: u64,
    pub max_key_len: usize,
    /// Most keys a KEYS reply may hold (past it: an error pointing at SCAN).
    pub max_keys_reply: usize,
    pub migrate_connections: bool,
    /// How long a shard keeps polling after work before it sleeps (see `shard::Shard::run`).
    pub idle_poll_us: u64,
    /// Microseconds from which a command is logged in the SLOWLOG; 0 every command, -1 none.
    pub slowlog_log_slower_than: i64,
    /// Entries the SLOWLOG keeps per shard.
    pub slowlog_max_len: u64,
    /// Milliseconds from which a latency event is kept (LATENCY); 0: off.
    pub latency_monitor_threshold: u64,
    /// Good replicas a write needs (`-NOREPLICAS` otherwise); 0: off.
    pub min_replicas_to_write: u64,
    /// Seconds since its last acknowledgement within which a replica is good.
    pub min_replicas_max_lag: u64,
    /// INFO's `slave_priority`.
    pub replica_priority: u64,
}

/// The live settings: one relaxed atomic each, in the configuration every shard shares.
///
/// A change (CONFIG SET) is one store per setting and reaches every shard with its next read:
/// no message, no pause, no lock. A read on the request path costs what reading a plain field
/// costs (a relaxed load is a plain load on x86_64 and ARM64); values a shard reads per request
/// at a fixed offset from its own state (the client output limit) it copies once a pass
/// instead. Several settings changed by one CONFIG SET are stored one after the other, so a
/// request may see some of them new and some old, never a value that was not checked.
#[derive(Debug)]
pub struct Live {
    timeout_secs: AtomicU64,
    max_clients: AtomicUsize,
    client_output_limit: AtomicUsize,
    max_memory: AtomicU64,
    max_key_len: AtomicUsize,
    max_keys_reply: AtomicUsize,
    migrate_connections: AtomicBool,
    idle_poll_us: AtomicU64,
    slowlog_log_slower_than: AtomicI64,
    slowlog_max_len: AtomicU64,
    latency_monitor_threshold: AtomicU64,
    min_replicas_to_write: AtomicU64,
    min_replicas_max_lag: AtomicU64,
    replica_priority: AtomicU64,
}

impl Live {
    pub fn new(v: LiveValues) -> Live {
        Live {
            timeout_secs: AtomicU64::new(v.timeout_secs),
            max_clients: AtomicUsize::new(v.max_clients),
            client_output_limit: AtomicUsize::new(v.client_output_limit),
            max_memory: AtomicU64::new(v.max_memory),
            max_key_len: AtomicUsize::new(v.max_key_len),
            max_keys_reply: AtomicUsize::new(v.max_keys_reply),
            migrate_connections: AtomicBool::new(v.migrate_connections),
            idle_poll_us: AtomicU64::new(v.idle_poll_us),
            slowlog_log_slower_than: AtomicI64::new(v.slowlog_log_slower_than),
            slowlog_max_len: AtomicU64::new(v.slowlog_max_len),
            latency_monitor_threshold: AtomicU64::new(v.latency_monitor_threshold),
            min_replicas_to_write: AtomicU64::new(v.min_replicas_to_write),
            min_replicas_max_lag: AtomicU64::new(v.min_replicas_max_lag),
            replica_priority: AtomicU64::new(v.replica_priority),
        }
    }

    /// Every value as it is now.
    pub fn values(&self) -> LiveValues {
        LiveValues {
            timeout_secs: self.timeout_secs(),
            max_clients: self.max_clients(),
            client_output_limit: self.client_output_limit(),
            max_memory: self.max_memory(),
            max_key_len: self.max_key_len(),
            max_keys_reply: self.max_keys_reply(),
            migrate_connections: self.migrate_connections(),
            idle_poll_us: self.idle_poll_us(),
            slowlog_log_slower_than: self.slowlog_log_slower_than(),
            slowlog_max_len: self.slowlog_max_len(),
            latency_monitor_threshold: self.latency_monitor_threshold(),
            min_replicas_to_write: self.min_replicas_to_write(),
            min_replicas_max_lag: self.min_replicas_max_lag(),
            replica_priority: self.replica_priority(),
        }
    }

    /// Stores every value (checked by [`LiveValues::validate`] first).
    pub fn store(&self, v: &LiveValues) {
        self.timeout_secs.store(v.timeout_secs, Relaxed);
        self.max_clients.store(v.max_clients, Relaxed);
        self.client_output_limit
            .store(v.client_output_limit, Relaxed);
        self.max_memory.store(v.max_memory, Relaxed);
        self.max_key_len.store(v.max_key_len, Relaxed);
        self.max_keys_reply.store(v.max_keys_reply, Relaxed);
        self.migrate_connections
            .store(v.migrate_connections, Relaxed);
        self.idle_poll_us.store(v.idle_poll_us, Relaxed);
        self.slowlog_log_slower_than
            .store(v.slowlog_log_slower_than, Relaxed);
        self.slowlog_max_len.store(v.slowlog_max_len, Relaxed);
        self.latency_monitor_threshold
            .store(v.latency_monitor_threshold, Relaxed);
        self.min_replicas_to_write
            .store(v.min_replicas_to_write, Relaxed);
        self.min_replicas_max_lag
            .store(v.min_replicas_max_lag, Relaxed);
        self.replica_priority.store(v.replica_priority, Relaxed);
    }

    #[inline]
    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs.load(Relaxed)
    }
    #[inline]
    pub fn max_clients(&self) -> usize {
        self.max_clients.load(Relaxed)
    }
    #[inline]
    pub fn client_output_limit(&self) -> usize {
        self.client_output_limit.load(Relaxed)
    }
    #[inline]
    pub fn max_memory(&self) -> u64 {
        self.max_memory.load(Relaxed)
    }
    #[inline]
    pub fn max_key_len(&self) -> usize {
        self.max_key_len.load(Relaxed)
    }
    #[inline]
    pub fn max_keys_reply(&self) -> usize {
        self.max_keys_reply.load(Relaxed)
    }
    #[inline]
    pub fn migrate_connections(&self) -> bool {
        self.migrate_connections.load(Relaxed)
    }
    /// Read once a pass by each shard.
    #[inline]
    pub fn idle_poll_us(&self) -> u64 {
        self.idle_poll_us.load(Relaxed)
    }
    #[inline]
    pub fn slowlog_log_slower_than(&self) -> i64 {
        self.slowlog_log_slower_than.load(Relaxed)
    }
    #[inline]
    pub fn slowlog_max_len(&self) -> u64 {
        self.slowlog_max_len.load(Relaxed)
    }
    #[inline]
    pub fn latency_monitor_threshold(&self) -> u64 {
        self.latency_monitor_threshold.load(Relaxed)
    }
    /// Read by every write (one load; the good-replica count only when it is not 0).
    #[inline]
    pub fn min_replicas_to_write(&self) -> u64 {
        self.min_replicas_to_write.load(Relaxed)
    }
    #[inline]
    pub fn min_replicas_max_lag(&self) -> u64 {
        self.min_replicas_max_lag.load(Relaxed)
    }
    #[inline]
    pub fn replica_priority(&self) -> u64 {
        self.replica_priority.load(Relaxed)
    }
}

/// A copy holds the values as they are now (not a view of the original).
impl Clone for Live {
    fn clone(&self) -> Live {
        Live::new(self.values())
    }
}

/// Longest `idle-poll-us`: past a millisecond a shard would burn a core for nothing between
/// requests that come that seldom.
pub const MAX_IDLE_POLL_US: u64 = 1000;

/// A timer of more than a century is a typo, and it keeps `Duration` arithmetic safe.
pub const MAX_TIMEOUT_SECS: u64 = 100 * 365 * 24 * 3600;

impl LiveValues {
    /// Checks every value; the error names the setting as its flag does.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_clients == 0 {
            return Err("max-clients must be at least 1".into());
        }
        // Table entries record a key's length in 32 bits.
        if self.max_key_len == 0 || self.max_key_len > u32::MAX as usize {
            return Err("max-key-len must be 1 byte to 4 GiB".into());
        }
        if self.client_output_limit == 0 {
            return Err("client-output-limit must be at least 1".into());
        }
        if self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(format!(
                "timeout must be at most {MAX_TIMEOUT_SECS} seconds"
            ));
        }
        if self.idle_poll_us > MAX_IDLE_POLL_US {
            return Err(format!(
                "idle-poll-us must be 0 to {MAX_IDLE_POLL_US} microseconds, got {}",
                self.idle_poll_us
            ));
        }
        if self.slowlog_log_slower_than < -1 {
            return Err(format!(
                "slowlog-log-slower-than must be -1 (off), 0 (every command) or more, got {}",
                self.slowlog_log_slower_than
            ));
        }
        if self.slowlog_max_len > i64::MAX as u64
            || self.latency_monitor_threshold > i64::MAX as u64
        {
            return Err("slowlog-max-len and latency-monitor-threshold must fit 63 bits".into());
        }
        // Redis's bounds for all three (int configs, 0 to INT_MAX).
        for (name, n) in [
            ("min-replicas-to-write", self.min_replicas_to_write),
            ("min-replicas-max-lag", self.min_replicas_max_lag),
            ("replica-priority", self.replica_priority),
        ] {
            if n > i32::MAX as u64 {
                return Err(format!("{name} must be 0 to {}, got {n}", i32::MAX));
            }
        }
        Ok(())
    }
}

impl Default for LiveValues {
    fn default() -> Self {
        LiveValues {
            // Off, as in Redis: idle connections of a pool are normal.
            timeout_secs: 0,
            // Redis's default maxclients.
            max_clients: 10_000,
            // Like Redis's pubsub class (32 MiB hard), doubled: reading pauses at 1 MiB of
            // unwritten output, so only replies already in flight (a large MGET, up to 1024
            // forwarded replies) can pile up past it; 64 MiB bounds what one client that
            // stops reading can pin, while a value up to about 64 MiB can still be read.
            client_output_limit: 64 * 1024 * 1024,
            // Off, as in Redis: a limit only makes sense when the operator knows the machine.
            max_memory: 0,
            // Keys are looked up and hashed whole on every request; 64 KiB is far beyond any
            // sane key and keeps a hostile key from costing a megabyte per lookup.
            max_key_len: 64 * 1024,
            // KEYS walks the whole partition in one command and builds its reply at once; a
            // hundred thousand keys is a few milliseconds and a few MB, past which SCAN (which
            // walks a slice per call) is the tool.
            max_keys_reply: 100_000,
            migrate_connections: true,
            // A `-P 1` client's next request comes within a few tens of microseconds of its
            // reply (scripts/wakeups.sh: at 0, GET -P 1 took a context switch every 2.3
            // requests; at 50, one every 40, about Redis's rate); an idle shard stops within
            // one scheduler tick.
            idle_poll_us: 50,
            // Redis's defaults: 10 ms, 128 entries.
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            // Off, as in Redis.
            latency_monitor_threshold: 0,
            // Redis's defaults: off, 10 s, 100.
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            replica_priority: 100,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 7379,
            shards: default_shards(),
            data_dir: PathBuf::from("./gokv-data"),
            limits: Limits::default(),
            admin_password: None,
            // None, unlike Redis's 16: a GoKV partition is made on purpose (schema, persist
            // mode, grants), a fresh server lists none, and under default deny numbered ones
            // would serve only ADMIN on `*` until granted. Clients on db 0, the most common,
            // need a user's default partition anyway. `--databases 16` is Redis's layout.
            databases: 0,
            // Redis's exporter listens on 9121; 9379 sits beside GoKV's 7379.
            metrics_port: 9379,
            metrics_port_given: false,
            metrics_bind: "127.0.0.1".into(),
            // Off: losing data must be a decision, never a default.
            accept_data_loss: false,
            config_file: None,
            live: Live::new(LiveValues::default()),
            // Off, as in Redis (tls-port 0).
            tls: None,
            replicaof: None,
            primary_user: None,
            primary_password: None,
            // Redis's client-output-buffer-limit for replicas (256mb hard): a full sync is
            // paced (crate::replication::feed), so only live writes faster than the replica
            // takes them fill it.
            repl_buffer: 256 * 1024 * 1024,
            replica_announce_ip: None,
            replica_announce_port: None,
            // Redis's is 1mb of commands; ours holds records (a SET carries the whole
            // value), split among the shards.
            repl_backlog: 16 * 1024 * 1024,
        }
    }
}

fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Config {
    /// Builds the configuration from flags, reading `--config` if given.
    pub fn from_cli(cli: Cli) -> Result<Config, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        if file.accept_data_loss.is_some() {
            return Err(format!(
                "config file {}: accept-data-loss is refused in a config file (it would accept \
                 every later loss too); pass --accept-data-loss on the command line for one start",
                cli.config
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ));
        }
        if file.admin_password.is_some() {
            return Err(format!(
                "config file {}: admin-password is refused in a config file (a secret there is \
                 readable by everyone who can read or back up the file); set the environment \
                 variable {ADMIN_PASSWORD_ENV} or pass --admin-password",
                cli.config
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ));
        }
        let d = Config::default();
        let size =
            |flag: Option<u64>, key: &Option<SizeValue>, default: usize| -> Result<usize, String> {
                let bytes = match (flag, key) {
                    (Some(n), _) => n,
                    (None, Some(v)) => v.bytes()?,
                    (None, None) => return Ok(default),
                };
                usize::try_from(bytes).map_err(|_| format!("size {bytes} is too large"))
            };
        let tls = crate::tls::TlsFlags {
            port: cli.tls_port,
            cert_file: cli.tls_cert_file,
            key_file: cli.tls_key_file,
            ca_cert_file: cli.tls_ca_cert_file,
            auth_clients: cli.tls_auth_clients,
            protocols: cli.tls_protocols,
            ciphersuites: cli.tls_ciphersuites,
            ciphers: cli.tls_ciphers,
            cert_user: cli.tls_cert_user,
            replication: cli.tls_replication,
            handshake_timeout_ms: cli.tls_handshake_timeout_ms,
        }
        .or(crate::tls::TlsFlags {
            port: file.tls_port,
            cert_file: file.tls_cert_file,
            key_file: file.tls_key_file,
            ca_cert_file: file.tls_ca_cert_file,
            auth_clients: file.tls_auth_clients,
            protocols: file.tls_protocols,
            ciphersuites: file.tls_ciphersuites,
            ciphers: file.tls_ciphers,
            cert_user: file.tls_cert_user,
            replication: file.tls_replication,
            handshake_timeout_ms: file.tls_handshake_timeout_ms,
        })
        .settings()?;
        let bind = cli.bind.or(file.bind).unwrap_or(d.bind);
        let dl = LiveValues::default();
        let live = LiveValues {
            timeout_secs: cli.timeout.or(file.timeout).unwrap_or(dl.timeout_secs),
            max_clients: cli
                .max_clients
                .or(file.max_clients)
                .unwrap_or(dl.max_clients),
            client_output_limit: size(
                cli.client_output_limit,
                &file.client_output_limit,
                dl.client_output_limit,
            )?,
            max_memory: match (cli.max_memory, &file.max_memory) {
                (Some(n), _) => n,
                (None, Some(v)) => v.bytes()?,
                (None, None) => dl.max_memory,
            },
            max_key_len: size(cli.max_key_len, &file.max_key_len, dl.max_key_len)?,
            max_keys_reply: cli
                .max_keys_reply
                .or(file.max_keys_reply)
                .unwrap_or(dl.max_keys_reply),
            migrate_connections: cli
                .migrate_connections
                .or(file.migrate_connections)
                .unwrap_or(dl.migrate_connections),
            idle_poll_us: cli
                .idle_poll_us
                .or(file.idle_poll_us)
                .unwrap_or(dl.idle_poll_us),
            slowlog_log_slower_than: cli
                .slowlog_log_slower_than
                .or(file.slowlog_log_slower_than)
                .unwrap_or(dl.slowlog_log_slower_than),
            slowlog_max_len: cli
                .slowlog_max_len
                .or(file.slowlog_max_len)
                .unwrap_or(dl.slowlog_max_len),
            latency_monitor_threshold: cli
                .latency_monitor_threshold
                .or(file.latency_monitor_threshold)
                .unwrap_or(dl.latency_monitor_threshold),
            min_replicas_to_write: cli
                .min_replicas_to_write
                .or(file.min_replicas_to_write)
                .unwrap_or(dl.min_replicas_to_write),
            min_replicas_max_lag: cli
                .min_replicas_max_lag
                .or(file.min_replicas_max_lag)
                .unwrap_or(dl.min_replicas_max_lag),
            replica_priority: cli
                .replica_priority
                .or(file.replica_priority)
                .unwrap_or(dl.replica_priority),
        };
        live.validate()?;
        let config = Config {
            bind: bind.clone(),
            port: cli.port.or(file.port).unwrap_or(d.port),
            shards: cli.shards.or(file.shards).unwrap_or(d.shards),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            limits: Limits {
                max_bulk_len: size(cli.max_bulk_len, &file.max_bulk_len, d.limits.max_bulk_len)?,
                max_inline_len: size(
                    cli.max_inline_len,
                    &file.max_inline_len,
                    d.limits.max_inline_len,
                )?,
                max_args: cli.max_args.or(file.max_args).unwrap_or(d.limits.max_args),
            },
            databases: cli.databases.or(file.databases).unwrap_or(d.databases),
            metrics_port: cli
                .metrics_port
                .or(file.metrics_port)
                .unwrap_or(d.metrics_port),
            metrics_port_given: cli.metrics_port.or(file.metrics_port).is_some(),
            metrics_bind: cli.metrics_bind.or(file.metrics_bind).unwrap_or(bind),
            accept_data_loss: cli.accept_data_loss,
            replicaof: match cli.replicaof.or(file.replicaof) {
                Some(text) => Some(parse_host_port(&text)?),
                None => None,
            },
            primary_user: cli.primary_user.or(file.primary_user),
            primary_password: cli
                .primary_password
                .or_else(|| std::env::var(PRIMARY_PASSWORD_ENV).ok())
                .map(Secret),
            repl_buffer: size(cli.repl_buffer, &file.repl_buffer, d.repl_buffer)?,
            replica_announce_ip: cli.replica_announce_ip.or(file.replica_announce_ip),
            replica_announce_port: cli.replica_announce_port.or(file.replica_announce_port),
            repl_backlog: size(cli.repl_backlog, &file.repl_backlog, d.repl_backlog)?,
            admin_password: cli
                .admin_password
                .or_else(|| std::env::var(ADMIN_PASSWORD_ENV).ok())
                .map(Secret),
            config_file: cli.config.clone(),
            live: Live::new(live),
            tls,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        // Shards are threads with their own poll and maps; more than this is a typo.
        const MAX_SHARDS: usize = 1024;
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(format!(
                "shards must be 1..={MAX_SHARDS}, got {}",
                self.shards
            ));
        }
        // Request spans are 32-bit offsets into the read buffer.
        if self.limits.max_bulk_len > u32::MAX as usize / 2 {
            return Err(format!(
                "max-bulk-len must be at most {} bytes",
                u32::MAX / 2
            ));
        }
        if self.limits.max_inline_len == 0 || self.limits.max_args == 0 {
            return Err("max-inline-len and max-args must be at least 1".into());
        }
        if let Some(password) = &self.admin_password {
            if password.expose().is_empty()
                || password.expose().len() > crate::acl::hasher::MAX_PASSWORD_LEN
            {
                return Err(format!(
                    "the admin password must be 1 to {} bytes",
                    crate::acl::hasher::MAX_PASSWORD_LEN
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.port == self.port {
                return Err(format!(
                    "tls-port and port are both {}: TLS needs a port of its own (or --port 0 \
                     to serve TLS only)",
                    self.port
                ));
            }
        }
        if self.databases > MAX_DATABASES {
            return Err(format!(
                "databases must be 0..={MAX_DATABASES}, got {} (more numbered databases are \
                 better named partitions, made with CREATE PARTITION)",
                self.databases
            ));
        }
        Ok(())
    }
}

/// Most numbered partitions `--databases` makes. Each is a partition like any (a catalog
/// entry, a table on a shard, a line of LIST PARTITIONS and INFO); Redis deployments use 16,
/// a few hundred at most, so past this it is a typo, not a layout.
pub const MAX_DATABASES: usize = 1024;

/// Parses a size: plain bytes (`1048576`) or with a unit `kb`, `mb`, `gb` (powers of 1024,
/// case-insensitive; `k`, `m`, `g` too).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size '{text}': expected e.g. 1048576, 64kb, 512mb, 2gb"))?;
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size unit in '{text}': use b, kb, mb or gb"
            ))
        }
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("64kb"), Ok(65536));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12xb").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn metrics_endpoint_defaults_to_9379_on_the_bind_address() {
        let parse = |args: &[&str]| {
            let mut all = vec!["gokv-server"];
            all.extend_from_slice(args);
            Config::from_cli(Cli::try_parse_from(all).unwrap()).unwrap()
        };
        let c = parse(&[]);
        assert_eq!((c.metrics_port, c.metrics_port_given), (9379, false));
        assert_eq!(c.metrics_bind, "127.0.0.1");
        let c = parse(&["--bind", "0.0.0.0", "--metrics-port", "0"]);
        assert_eq!((c.metrics_port, c.metrics_port_given), (0, true));
        assert_eq!(c.metrics_bind, "0.0.0.0");
        let c = parse(&["--bind", "0.0.0.0", "--metrics-bind", "10.0.0.1"]);
        assert_eq!(c.metrics_bind, "10.0.0.1");
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("gokv-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gokv.toml");
        std::fs::write(&path, "port = 9000\nshards = 3\nmax-bulk-len = \"1mb\"\n").unwrap();
        let cli = Cli::try_parse_from([
            "gokv-server",
            "--config",
            path.to_str().unwrap(),
            "--port",
            "9100",
        ])
        .unwrap();
        let config = Config::from_cli(cli).unwrap();
        assert_eq!(config.port, 9100);
        assert_eq!(config.shards, 3);
        assert_eq!(config.limits.max_bulk_len, 1 << 20);
        assert_eq!(config.bind, "127.0.0.1");
        std::fs::write(&path, "prot = 9000\n").unwrap();
        let cli = Cli::try_parse_from(["gokv-server", "--config", path.to_str().unwrap()]).unwrap();
        assert!(Config::from_cli(cli).unwrap_err().contains("unknown field"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn limits_flags() {
        let cli = Cli::try_parse_from([
            "gokv-server",
            "--max-memory",
            "64mb",
            "--client-output-limit",
            "2gb",
            "--timeout",
            "30",
        ])
        .unwrap();
        let config = Config::from_cli(cli).unwrap();
        let live = config.live.values();
        assert_eq!(live.max_memory, 64 << 20);
        assert_eq!(live.client_output_limit, 2 << 30);
        assert_eq!(live.timeout_secs, 30);
        let d = Config::default();
        assert_eq!((d.live.max_memory(), d.live.timeout_secs()), (0, 0));
        assert!(!d.accept_data_loss && !config.accept_data_loss);
        let cli = Cli::try_parse_from(["gokv-server", "--accept-data-loss"]).unwrap();
        assert!(Config::from_cli(cli).unwrap().accept_data_loss);
        assert_eq!(d.live.client_output_limit(), 64 << 20);
    }

    #[test]
    fn accept_data_loss_is_refused_in_a_config_file() {
        let path = std::env::temp_dir().join(format!("gokv-accept-{}.toml", std::process::id()));
        std::fs::write(&path, "accept-data-loss = true\n").unwrap();
        let cli = Cli::try_parse_from(["gokv-server", "--config", path.to_str().unwrap()]).unwrap();
        let e = Config::from_cli(cli).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(e.contains("--accept-data-loss on the command line"), "{e}");
    }

    #[test]
    fn admin_password_is_refused_in_a_config_file_with_the_reason() {
        let path = std::env::temp_dir().join(format!("gokv-adminpw-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "port = 7400\nadmin-password = \"s3cret-in-a-file\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["gokv-server", "--config", path.to_str().unwrap()]).unwrap();
        let e = Config::from_cli(cli).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            e.contains("admin-password is refused in a config file"),
            "{e}"
        );
        assert!(
            e.contains(ADMIN_PASSWORD_ENV) && e.contains("--admin-password"),
            "{e}"
        );
        assert!(!e.contains("unknown field"), "{e}");
        // The error never repeats the secret.
        assert!(!e.contains("s3cret-in-a-file"), "{e}");
    }

    #[test]
    fn help_says_the_rules_every_flag_shares() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for needed in [
            "powers of 1024",
            "beats the file",
            "RUST_LOG",
            "docs/operations.md",
            "Live settings: CONFIG SET changes these",
            "slowlog-log-slower-than, slowlog-max-len, latency-monitor-threshold",
        ] {
            assert!(help.contains(needed), "--help lacks {needed:?}:\n{help}");
        }
    }

    #[test]
    fn tls_keys_from_the_file_and_flags_and_port_0_means_tls_only() {
        let path = std::env::temp_dir().join(format!("gokv-tls-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "tls-port = 7380\ntls-cert-file = \"s.crt\"\ntls-key-file = \"s.key\"\n\
             tls-auth-clients = \"no\"\ntls-protocols = \"TLSv1.3\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let cli = Cli::try_parse_from(["gokv-server", "--config", file, "--tls-port", "7390"]);
        let config = Config::from_cli(cli.unwrap()).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.port, 7390, "the flag beats the file");
        assert_eq!(tls.files.cert, PathBuf::from("s.crt"));
        assert_eq!(tls.auth_clients, crate::tls::AuthClients::No);
        assert!(tls.tls13 && !tls.tls12);
        let cli = Cli::try_parse_from(["gokv-server", "--config", file, "--port", "7380"]);
        let e = Config::from_cli(cli.unwrap()).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(e.starts_with("tls-port and port are both 7380"), "{e}");
        assert!(Config::default().tls.is_none());
    }

    #[test]
    fn invalid_values_are_refused() {
        let cli = Cli::try_parse_from(["gokv-server", "--shards", "0"]).unwrap();
        assert!(Config::from_cli(cli).is_err());
    }

    #[test]
    fn databases_from_the_flag_or_the_file_and_bounded() {
        assert_eq!(Config::default().databases, 0);
        let cli = Cli::try_parse_from(["gokv-server", "--databases", "16"]).unwrap();
        assert_eq!(Config::from_cli(cli).unwrap().databases, 16);
        let path = std::env::temp_dir().join(format!("gokv-dbs-{}.toml", std::process::id()));
        std::fs::write(&path, "databases = 4\n").unwrap();
        let cli = Cli::try_parse_from(["gokv-server", "--config", path.to_str().unwrap()]).unwrap();
        let from_file = Config::from_cli(cli).unwrap().databases;
        std::fs::remove_file(&path).unwrap();
        assert_eq!(from_file, 4);
        let cli = Cli::try_parse_from(["gokv-server", "--databases", "1025"]).unwrap();
        let e = Config::from_cli(cli).unwrap_err();
        assert_eq!(
            e,
            "databases must be 0..=1024, got 1025 (more numbered databases are better named \
             partitions, made with CREATE PARTITION)"
        );
        assert!(Cli::try_parse_from(["gokv-server", "--databases", "-1"]).is_err());
    }
}

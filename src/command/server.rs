//! Server and connection commands: PING ECHO QUIT HELLO COMMAND INFO SHUTDOWN DEBUG
//! (CONFIG is [`super::config`]; the CLIENT group and MONITOR are in [`super::client`]).
//!
//! They run on the connection's own shard. Each is a [`ConnectionFn`](super::ConnectionFn)
//! named by its row in the command table: it reads the [`Session`] (per connection) and a
//! [`ServerView`] (the shard's catalog and ACL copies, the configuration, the metrics), and
//! writes a reply.
//!
//! Operator facts (where partitions live, the data directory) are for ADMIN on `*` only:
//! CONFIG needs it, and INFO leaves out its `shards` section and the per-shard persistence
//! lines for anyone else. INFO's `keyspace` section lists only the partitions the caller may
//! READ, numbered ones as Redis's `db<N>` lines.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::acl::{Acl, Perms, User, ALL};
use crate::catalog::{Catalog, PartitionMeta};
use crate::config::Config;
use crate::metrics::{
    cpu_seconds, human_bytes, os_name, rss_bytes, total_system_memory, Baseline, CommandTotals,
    ServerMetrics, ShardMetrics, ERROR_CODES,
};
use crate::protocol::{Args, Protocol, ReplyWriter};
use crate::store::PartitionStats;

use super::error::printable;
use super::user::Credentials;
use super::{CommandError, CommandId, Route, COMMANDS};

/// Per-connection state a command may read or change.
#[derive(Debug, Default)]
pub struct Session {
    /// Unique for the life of the process (CLIENT ID).
    pub id: u64,
    pub protocol: Protocol,
    /// CLIENT SETNAME.
    pub name: Option<Vec<u8>>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER: what the client library says it is.
    pub lib_name: Option<Vec<u8>>,
    pub lib_ver: Option<Vec<u8>>,
    /// Set by QUIT: close once the replies so far are written.
    pub close_after_reply: bool,
    /// Set by SHUTDOWN: the shard starts a server-wide shutdown.
    pub shutdown_requested: bool,
    /// The logged-in user as of ACL version `acl_version`; `None` before login. The shard
    /// refreshes it from its ACL copy when the version moved, so grants and revocations apply
    /// from the next command.
    pub user: Option<Arc<User>>,
    pub acl_version: u64,
    /// What `user` holds on the partition its last data request named (`access`): a user
    /// without grants on `*` pays one name lookup per partition change, not per request.
    pub grant_memo: super::access::GrantMemo,
    /// A login whose password check is on the hasher pool; the connection's barrier is up.
    pub pending_login: Option<PendingLogin>,
    /// Failed logins in a row; the connection is closed at [`MAX_AUTH_FAILURES`].
    pub auth_failures: u32,
    /// The partition `SELECT` chose: `Some` puts the connection in Redis grammar on it (data
    /// commands name no partition, see [`super::face`]); `None` is GoKV grammar.
    pub selected: Option<Box<[u8]>>,
    /// Set by REPLSYNC (with the port the replica listens on): once its reply is written,
    /// the connection's socket becomes the replica's feed (`crate::replication`).
    pub replica_port: Option<u16>,
    /// What that REPLSYNC asked to resume (`crate::replication::backlog::Resume`).
    pub replica_resume: Option<Box<crate::replication::backlog::Resume>>,
    /// The client's address (MONITOR's lines name it; `None` only in unit tests).
    pub peer: Option<std::net::SocketAddr>,
    /// The last command looked up (CLIENT LIST's `cmd`): one store per request (its row,
    /// already in a register, rather than its id, which would be one load more).
    pub last_command: Option<&'static super::CommandSpec>,
    /// The id of the partition the last data command was routed to (CLIENT LIST's `db` in
    /// GoKV grammar; 0: none yet): one store per data request.
    pub last_partition: u64,
    /// In MONITOR mode (`shard::clients`): sees every command, may not touch the keyspace.
    pub monitoring: bool,
    /// Between MULTI and EXEC: the queued commands (`command::multi`). `None` is all a
    /// request outside a transaction tests.
    pub multi: Option<Box<super::multi::Transaction>>,
    /// The partition whose keys WATCH watches, until EXEC, DISCARD, UNWATCH or RESET.
    pub watching: Option<Box<super::multi::Watching>>,
    /// An EXEC waiting behind the barrier for its partition's shard, with server commands
    /// to run once the partition's part is back (`shard::transaction`): its reply slot and
    /// the queue.
    pub exec_pending: Option<Box<(u64, super::multi::Transaction)>>,
    /// It sent a write (`WAIT` then waits for the replicas to acknowledge the offsets of
    /// its writes; a connection that never wrote waits for nothing).
    pub wrote: bool,
    /// Set by `REPLCONF ip-address` (a replica's `--replica-announce-ip`): what its
    /// primary shows for it.
    pub replica_ip: Option<String>,
    /// Its Pub/Sub subscriptions, while it has any (`shard::pubsub`).
    pub pubsub: Option<Box<super::pubsub::Subscriptions>>,
}

/// Failed logins in a row after which the connection is closed: enough for a person to
/// mistype, few enough that guessing costs a reconnect (and a warn log line) every ten tries.
pub const MAX_AUTH_FAILURES: u32 = 10;

/// What to answer once a login's password check comes back.
#[derive(Debug)]
pub struct PendingLogin {
    pub user: Vec<u8>,
    /// The login cache's MAC of (hash, password), remembered when the check succeeds.
    pub mac: Option<[u8; 32]>,
    /// `None` for AUTH/LOGIN (`+OK`); the negotiated HELLO for `HELLO ... AUTH`.
    pub hello: Option<Hello>,
    /// Its slot in the hasher pool while the pool checks it; dropped with the login (or the
    /// connection), which frees the slot and cancels the check.
    pub ticket: Option<crate::acl::hasher::LoginTicket>,
}

/// A parsed `HELLO [protover [AUTH user pass] [SETNAME name]]`.
#[derive(Debug, Clone)]
pub struct Hello {
    pub protocol: Protocol,
    pub name: Option<Vec<u8>>,
    pub auth: Option<Credentials>,
}

/// What a connection command can see of the server.
pub struct ServerView<'a> {
    pub catalog: &'a Catalog,
    /// The shard's ACL copy (LIST USERS, DESCRIBE USER).
    pub acl: &'a Acl,
    pub config: &'a Config,
    pub metrics: &'a ServerMetrics,
    pub shard: usize,
    /// Wakes every shard after a live setting changed (CONFIG SET; see `command::config`).
    pub reconfigured: &'a dyn Fn(),
    /// Role, offsets and replicas (INFO replication, ROLE, REPLICAOF).
    pub replication: &'a std::sync::Arc<crate::replication::State>,
    /// The TLS certificates, with a `--tls-port` (CONFIG GET|SET tls-*-file).
    pub tls: Option<&'a std::sync::Arc<crate::tls::TlsContext>>,
}

/// `PING [message]`
pub fn ping(
    args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    // In RESP2 subscribed mode, Redis answers `[pong, message]` (an empty one by default).
    if session.pubsub.is_some() && session.protocol == Protocol::Resp2 && args.len() <= 2 {
        w.array(2);
        w.bulk(b"pong");
        w.bulk(if args.len() == 2 { args.get(1) } else { b"" });
        return Ok(());
    }
    match args.len() {
        1 => w.simple("PONG"),
        2 => w.bulk(args.get(1)),
        _ => return Err(CommandError::arity_of(CommandId::Ping)),
    }
    Ok(())
}

/// `ECHO <message>`
pub fn echo(
    args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    w.bulk(args.get(1));
    Ok(())
}

/// `QUIT`: close once the replies so far are written.
pub fn quit(
    _args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    session.close_after_reply = true;
    w.ok();
    Ok(())
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`, Redis 7's forms, meaning for GoKV:
/// - `NOSAVE`, `SAVE`: accepted, and change nothing: GoKV always persists, every durable
///   partition's log is written and fsynced before the process exits, whichever is given
///   (there is no snapshot to skip or force);
/// - `NOW`, `FORCE`: accepted, and change nothing: there are no replicas to wait for and no
///   save error to override;
/// - `ABORT`: cancels a shutdown in progress. Once a GoKV shutdown starts it cannot be
///   stopped, so this is always Redis's `-ERR No shutdown in progress.`;
/// - anything else, `ABORT` with any other word, or `NOSAVE` with `SAVE`: `-ERR syntax error`,
///   and the server keeps running.
///
/// Accepted: no reply; like Redis, the connection just closes as the server goes down.
pub fn shutdown(
    args: &Args,
    session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let (mut nosave, mut save, mut other, mut abort) = (false, false, false, false);
    for word in args.iter().skip(1) {
        if word.eq_ignore_ascii_case(b"NOSAVE") {
            nosave = true;
        } else if word.eq_ignore_ascii_case(b"SAVE") {
            save = true;
        } else if word.eq_ignore_ascii_case(b"NOW") || word.eq_ignore_ascii_case(b"FORCE") {
            other = true;
        } else if word.eq_ignore_ascii_case(b"ABORT") {
            abort = true;
        } else {
            return Err(CommandError::Syntax(String::new()));
        }
    }
    if (abort && (nosave || save || other)) || (nosave && save) {
        return Err(CommandError::Syntax(String::new()));
    }
    if abort {
        return Err(CommandError::NotAvailable(
            "No shutdown in progress.".into(),
        ));
    }
    session.shutdown_requested = true;
    session.close_after_reply = true;
    Ok(())
}

/// Parses HELLO's options; applies nothing.
pub fn parse_hello(args: &Args, session: &Session) -> Result<Hello, CommandError> {
    let mut hello = Hello {
        protocol: session.protocol,
        name: None,
        auth: None,
    };
    if args.len() >= 2 {
        hello.protocol = match args.get(1) {
            b"2" => Protocol::Resp2,
            b"3" => Protocol::Resp3,
            _ => return Err(CommandError::NoProto),
        };
        let mut i = 2;
        while i < args.len() {
            let option = args.get(i);
            if option.eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
                hello.auth = Some(super::user::credentials(args.get(i + 1), args.get(i + 2))?);
                i += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
                hello.name = Some(check_client_name(args.get(i + 1))?);
                i += 2;
            } else {
                return Err(CommandError::Syntax(format!(
                    "in HELLO option '{}'",
                    printable(option)
                )));
            }
        }
    }
    Ok(hello)
}

/// Applies a HELLO (after its login, if any, succeeded) and writes its reply.
pub fn finish_hello(hello: Hello, session: &mut Session, w: &mut ReplyWriter) {
    session.protocol = hello.protocol;
    if let Some(name) = hello.name {
        session.name = Some(name);
    }
    w.protocol = hello.protocol;
    w.map(7);
    w.field_bulk("server", b"gokv");
    w.field_bulk("version", env!("CARGO_PKG_VERSION").as_bytes());
    w.field_int(
        "proto",
        if hello.protocol == Protocol::Resp3 {
            3
        } else {
            2
        },
    );
    w.field_int("id", session.id as i64);
    w.field_bulk("mode", b"standalone");
    w.field_bulk("role", b"master");
    w.bulk(b"modules");
    w.array(0);
}

/// `HELLO [protover [SETNAME name]]` (with `AUTH`, it takes the login path instead).
pub fn hello(
    args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let hello = parse_hello(args, session)?;
    if hello.auth.is_some() {
        // The shard sends logins to the hasher pool before it gets here.
        return Err(CommandError::NotAvailable(
            "HELLO AUTH must go through the login path".into(),
        ));
    }
    finish_hello(hello, session, w);
    Ok(())
}

/// Redis's rule for client names and library attributes: printable ASCII, no spaces.
pub(super) fn is_client_attribute(value: &[u8]) -> bool {
    value.iter().all(|b| (b'!'..=b'~').contains(b))
}

pub(super) fn check_client_name(name: &[u8]) -> Result<Vec<u8>, CommandError> {
    if !is_client_attribute(name) {
        return Err(CommandError::Syntax(
            "client names cannot contain spaces, newlines or special characters".into(),
        ));
    }
    Ok(name.to_vec())
}

/// The commands `COMMAND` describes: one entry per top-level word.
fn top_level() -> impl Iterator<Item = &'static super::CommandSpec> {
    COMMANDS
        .iter()
        .enumerate()
        .filter(|(i, spec)| {
            !COMMANDS[..*i]
                .iter()
                .any(|earlier| earlier.top_name() == spec.top_name())
        })
        .map(|(_, spec)| spec)
}

/// One `COMMAND INFO` entry, in Redis 7's shape: name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specs, subcommands. The partition is the routing key of a
/// data command, so cluster-aware clients route by it (first = last = its argument, 1 or
/// FLUSH PARTITION's 2; step 1).
fn write_command_info(spec: &super::CommandSpec, w: &mut ReplyWriter) {
    let top = spec.top_name();
    let grouped = top != spec.name;
    w.array(10);
    w.bulk(top.as_bytes());
    w.integer(if grouped { -2 } else { i64::from(spec.arity) });
    w.set(spec.flag_names().count());
    for flag in spec.flag_names() {
        w.simple(flag);
    }
    let key = if spec.route() == Route::Partition {
        spec.partition_index() as i64
    } else {
        0
    };
    w.integer(key);
    w.integer(key);
    w.integer(key.min(1));
    for _ in 0..4 {
        w.array(0);
    }
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO <name> ...`, `COMMAND DOCS`.
pub fn command(
    args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    if args.len() == 1 {
        let specs: Vec<_> = top_level().collect();
        w.array(specs.len());
        for spec in specs {
            write_command_info(spec, w);
        }
        return Ok(());
    }
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"COUNT") {
        w.integer(top_level().count() as i64);
    } else if sub.eq_ignore_ascii_case(b"INFO") {
        w.array(args.len() - 2);
        for name in args.iter().skip(2) {
            match top_level().find(|s| s.top_name().as_bytes().eq_ignore_ascii_case(name)) {
                Some(spec) => write_command_info(spec, w),
                None => w.null(),
            }
        }
    } else if sub.eq_ignore_ascii_case(b"DOCS") {
        // Allowed (docs/commands.md): clients only use docs for hints.
        w.map(0);
    } else {
        return Err(CommandError::UnknownSubcommand {
            command: "command",
            sub: printable(sub),
        });
    }
    Ok(())
}

/// `DEBUG SLEEP <seconds>`: see [`debug_sleep`].
/// `DEBUG FAIL-WRITE <n>` / `DEBUG FAIL-FSYNC <n>` / `DEBUG FAIL-DIRSYNC <n>`: make the next
/// `n` log writes, fsyncs or directory fsyncs of an atomic replace fail (builds with the
/// `fault-injection` feature only; tests use it for the -IOERR path).
pub fn debug(
    args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    use crate::persist::fault::{self, Fault};
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"SLEEP") {
        return debug_sleep(args, w);
    }
    let fault = if sub.eq_ignore_ascii_case(b"FAIL-WRITE") {
        Fault::Write
    } else if sub.eq_ignore_ascii_case(b"FAIL-FSYNC") {
        Fault::Fsync
    } else if sub.eq_ignore_ascii_case(b"FAIL-DIRSYNC") {
        Fault::DirSync
    } else {
        return Err(CommandError::UnknownSubcommand {
            command: "debug",
            sub: printable(sub),
        });
    };
    if args.len() != 3 {
        return Err(CommandError::arity_of(CommandId::Debug));
    }
    let n = crate::protocol::parser::parse_i64(args.get(2))
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(CommandError::ValueNotInteger)?;
    if !fault::ENABLED {
        return Err(CommandError::NotAvailable(
            "fault injection is not compiled into this build (cargo feature fault-injection)"
                .into(),
        ));
    }
    fault::arm(fault, n);
    w.ok();
    Ok(())
}

/// Longest `DEBUG SLEEP`: the shard's thread sleeps, its connections and forwarded requests
/// wait; a minute is enough to see a stall in SLOWLOG, LATENCY or a dashboard.
const MAX_DEBUG_SLEEP_SECS: f64 = 60.0;

/// `DEBUG SLEEP <seconds>` (Redis's): the shard's thread sleeps that long (decimals allowed),
/// a stall on purpose, for seeing the slow log and the latency monitor work.
fn debug_sleep(args: &Args, w: &mut ReplyWriter) -> Result<(), CommandError> {
    if args.len() != 3 {
        return Err(CommandError::arity_of(CommandId::Debug));
    }
    let secs = std::str::from_utf8(args.get(2))
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| (0.0..=MAX_DEBUG_SLEEP_SECS).contains(s))
        .ok_or_else(|| {
            CommandError::NotAvailable(format!(
                "DEBUG SLEEP takes seconds from 0 to {MAX_DEBUG_SLEEP_SECS}, got '{}'",
                printable(args.get(2))
            ))
        })?;
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    w.ok();
    Ok(())
}

/// INFO's sections in Redis 7's order, and whether plain `INFO` (`default`) shows each:
/// `commandstats` and `latencystats` only with `all`/`everything` or by name, as in Redis.
/// `shards` is GoKV's own (operators only).
const INFO_SECTIONS: [(&str, bool); 14] = [
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
    ("shards", true),
];

/// `INFO [section ...]`: Redis 7's `# Section` blocks of `field:value` lines, in Redis's
/// order whatever order they were asked in. No section: `default`; `all` and `everything`
/// add `commandstats` and `latencystats`; an unknown name adds nothing (Redis answers an
/// empty string for only unknown ones).
pub fn info(
    args: &Args,
    session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let wanted: Vec<String> = args
        .iter()
        .skip(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    let asked = |name: &str| wanted.iter().any(|s| s == name);
    let all = asked("all") || asked("everything");
    let default = wanted.is_empty() || asked("default");
    let operator = is_operator(session);
    let mut text = String::new();
    for (section, in_default) in INFO_SECTIONS {
        if !(all || (default && in_default) || asked(section)) {
            continue;
        }
        // Where partitions live is for operators (like `CONFIG GET dir`): others get INFO
        // without the shards section, as if it were unknown.
        if section == "shards" && !operator {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        // Writing to a String cannot fail.
        let _ = info_section(&mut text, section, session, view, operator);
    }
    w.verbatim_text(text.as_bytes());
    Ok(())
}

/// Writes one INFO section (a name from [`INFO_SECTIONS`]).
fn info_section(
    text: &mut String,
    section: &str,
    session: &Session,
    view: &ServerView,
    operator: bool,
) -> std::fmt::Result {
    let m = view.metrics;
    let total = |f: fn(&ShardMetrics) -> &AtomicU64| m.total(f);
    match section {
        "server" => {
            let uptime = m.started.elapsed().as_secs();
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            write!(
                text,
                "# Server\r\nredis_version:7.2.0\r\ngokv_version:{}\r\nredis_mode:standalone\r\n\
                 os:{}\r\narch_bits:{}\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\n\
                 run_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{now_us}\r\n\
                 uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:{}\r\n\
                 config_file:{}\r\nshards:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                os_name(),
                usize::BITS,
                std::process::id(),
                m.run_id,
                view.config.port,
                uptime / 86400,
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                view.config
                    .config_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                view.config.shards,
            )
        }
        "clients" => write!(
            text,
            // blocked_clients: GoKV has no blocking commands, so none ever waits in one
            // (redis-cli --stat reads the field: without it, it shows LONG_MIN).
            "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\n\
             blocked_clients:0\r\ntracking_clients:0\r\npubsub_clients:{}\r\n\
             client_output_limit:{}\r\ntimeout:{}\r\n",
            total(|s| &s.connections),
            view.config.live.max_clients(),
            total(|s| &s.pubsub_clients),
            view.config.live.client_output_limit(),
            view.config.live.timeout_secs(),
        ),
        // used_memory is the data estimate max-memory is checked against (see
        // store::memory); maxmemory 0 means no limit, as in Redis.
        "memory" => {
            let used = total(|s| &s.used_memory);
            let rss = rss_bytes();
            let system = total_system_memory();
            let max = view.config.live.max_memory();
            let ratio = if used == 0 {
                0.0
            } else {
                rss as f64 / used as f64
            };
            write!(
                text,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\n\
                 used_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\n\
                 total_system_memory:{system}\r\ntotal_system_memory_human:{}\r\n\
                 maxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:noeviction\r\n\
                 mem_fragmentation_ratio:{ratio:.2}\r\nmem_allocator:libc\r\n",
                human_bytes(used),
                human_bytes(rss),
                human_bytes(system),
                human_bytes(max),
            )
        }
        "persistence" => persistence_info(text, m, operator),
        "stats" => {
            text.push_str("# Stats\r\n");
            let baseline = m.baseline();
            for (i, (name, value)) in stat_counters(m, view.catalog).into_iter().enumerate() {
                write!(
                    text,
                    "{name}:{}\r\n",
                    value.saturating_sub(baseline.stat(name))
                )?;
                // Redis's place for the rate, which no RESETSTAT touches.
                if i == 1 {
                    write!(
                        text,
                        "instantaneous_ops_per_sec:{}\r\n",
                        m.instantaneous_ops_per_sec()
                    )?;
                }
            }
            // Gauges (RESETSTAT leaves them): each shard's channels and patterns with a
            // subscriber, summed (one with subscribers on two shards counts on each; PUBSUB
            // CHANNELS and NUMPAT merge the shards' sets exactly).
            write!(
                text,
                "pubsub_channels:{}\r\npubsub_patterns:{}\r\n",
                total(|s| &s.pubsub_channels),
                total(|s| &s.pubsub_patterns),
            )
        }
        "replication" => {
            text.push_str("# Replication\r\n");
            view.replication.info(text)
        }
        "cpu" => {
            let (sys, user) = cpu_seconds();
            write!(
                text,
                "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n\
                 used_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n"
            )
        }
        "modules" => write!(text, "# Modules\r\n"),
        "commandstats" => {
            text.push_str("# Commandstats\r\n");
            for (spec, t) in command_totals_since_reset(m) {
                if t.calls == 0 && t.rejected == 0 && t.failed == 0 {
                    continue;
                }
                let nanos = t.total_nanos();
                let usec = nanos / 1000;
                let per_call = if t.calls == 0 {
                    0.0
                } else {
                    nanos as f64 / 1000.0 / t.calls as f64
                };
                write!(
                    text,
                    "cmdstat_{}:calls={},usec={usec},usec_per_call={per_call:.2},\
                     rejected_calls={},failed_calls={}\r\n",
                    stat_name(spec),
                    t.calls,
                    t.rejected,
                    t.failed,
                )?;
            }
            Ok(())
        }
        "errorstats" => {
            text.push_str("# Errorstats\r\n");
            let baseline = m.baseline();
            for (i, code) in ERROR_CODES.iter().enumerate() {
                let count: u64 = m
                    .shards
                    .iter()
                    .map(|s| ShardMetrics::get(&s.errors[i]))
                    .sum::<u64>()
                    .saturating_sub(baseline.errors[i]);
                if count > 0 {
                    write!(text, "errorstat_{code}:count={count}\r\n")?;
                }
            }
            Ok(())
        }
        "latencystats" => {
            text.push_str("# Latencystats\r\n");
            for (spec, t) in command_totals_since_reset(m) {
                if t.calls == 0 {
                    continue;
                }
                let us = |q| t.percentile_ns(q) as f64 / 1000.0;
                write!(
                    text,
                    "latency_percentiles_usec_{}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
                    stat_name(spec),
                    us(0.5),
                    us(0.99),
                    us(0.999),
                )?;
            }
            Ok(())
        }
        "cluster" => write!(text, "# Cluster\r\ncluster_enabled:0\r\n"),
        "keyspace" => keyspace_info(text, view.catalog, session.user.as_deref()),
        _ => {
            text.push_str("# Shards\r\n");
            for (i, s) in m.shards.iter().enumerate() {
                let g = ShardMetrics::get;
                write!(
                    text,
                    "shard{i}:core={},partitions={},connections={},commands={},\
                     forwarded_out={},forwarded_in={},batches_out={},migrated_out={},\
                     used_memory={},expired_keys={},errors={}\r\n",
                    s.core.load(std::sync::atomic::Ordering::Relaxed),
                    g(&s.partitions),
                    g(&s.connections),
                    g(&s.commands),
                    g(&s.forwarded_out),
                    g(&s.forwarded_in),
                    g(&s.batches_out),
                    g(&s.migrated_out),
                    g(&s.used_memory),
                    g(&s.expired_keys),
                    s.errors.iter().map(g).sum::<u64>(),
                )?;
            }
            Ok(())
        }
    }
}

/// Every command's statistics summed over the shards, in table order: the counters whole, as
/// the metrics endpoint reads them (Prometheus counters only grow).
pub fn command_totals(
    m: &ServerMetrics,
) -> impl Iterator<Item = (&'static super::CommandSpec, CommandTotals)> + '_ {
    COMMANDS
        .iter()
        .map(|spec| (spec, m.command_totals(spec.id)))
}

/// [`command_totals`] since the last CONFIG RESETSTAT: INFO's and LATENCY HISTOGRAM's view.
pub fn command_totals_since_reset(
    m: &ServerMetrics,
) -> impl Iterator<Item = (&'static super::CommandSpec, CommandTotals)> + '_ {
    let baseline = m.baseline();
    COMMANDS.iter().map(move |spec| {
        (
            spec,
            m.command_totals(spec.id).since(baseline.command(spec.id)),
        )
    })
}

/// INFO's `stats` counters (all but the rate), in Redis's order, as the counters read now.
fn stat_counters(m: &ServerMetrics, catalog: &Catalog) -> [(&'static str, u64); 16] {
    let total = |f: fn(&ShardMetrics) -> &AtomicU64| m.total(f);
    [
        (
            "total_connections_received",
            total(|s| &s.connections_total),
        ),
        ("total_commands_processed", total(|s| &s.commands)),
        (
            "rejected_connections",
            ShardMetrics::get(&m.rejected_connections),
        ),
        ("sync_full", ShardMetrics::get(&m.sync_full)),
        ("sync_partial_ok", ShardMetrics::get(&m.sync_partial_ok)),
        ("sync_partial_err", ShardMetrics::get(&m.sync_partial_err)),
        // Counted by the shards' sweeps: cumulative, as Redis's (a dropped partition's
        // expiries stay counted).
        ("expired_keys", total(|s| &s.expired_keys)),
        (
            "evicted_keys",
            partition_total(catalog, |s| &s.evicted_keys),
        ),
        ("keyspace_hits", partition_total(catalog, |s| &s.hits)),
        ("keyspace_misses", partition_total(catalog, |s| &s.misses)),
        (
            "total_error_replies",
            m.shards
                .iter()
                .flat_map(|s| s.errors.iter())
                .map(ShardMetrics::get)
                .sum::<u64>(),
        ),
        ("forwarded_requests", total(|s| &s.forwarded_out)),
        ("forwarded_batches", total(|s| &s.batches_out)),
        (
            "client_output_limit_disconnections",
            total(|s| &s.output_limit_disconnects),
        ),
        (
            "idle_timeout_disconnections",
            total(|s| &s.timeout_disconnects),
        ),
        ("oom_rejected_writes", total(|s| &s.oom_rejections)),
    ]
}

/// The counters CONFIG RESETSTAT zeroes INFO's statistics against (see `command::config`).
pub fn baseline_now(view: &ServerView) -> Baseline {
    let m = view.metrics;
    let mut errors = [0u64; ERROR_CODES.len()];
    for shard in &m.shards {
        for (sum, e) in errors.iter_mut().zip(&shard.errors) {
            *sum += ShardMetrics::get(e);
        }
    }
    Baseline {
        commands: COMMANDS
            .iter()
            .map(|spec| m.command_totals(spec.id))
            .collect(),
        errors,
        stats: stat_counters(m, view.catalog).to_vec(),
    }
}

/// A command's name in `cmdstat_<name>` (and the metrics' `cmd` label): its lowercase
/// name, a two-word command's words joined by `|` as Redis names subcommands
/// (`create|partition`, `client|list`).
pub fn stat_name(spec: &super::CommandSpec) -> String {
    spec.name.replace(' ', "|")
}

/// A partition counter summed over every partition of the catalog (INFO's `evicted_keys`; a
/// dropped partition's count goes with it).
fn partition_total(catalog: &Catalog, counter: fn(&PartitionStats) -> &AtomicU64) -> u64 {
    catalog
        .partitions
        .values()
        .map(|meta| PartitionStats::get(counter(&meta.stats)))
        .fold(0, u64::wrapping_add)
}

/// The keyspace section: one line `<db>:keys=N,expires=M,avg_ttl=T` per partition the caller
/// may READ (what DESCRIBE PARTITION would show it), empty ones included (Redis leaves out
/// empty databases; a partition exists whether or not it holds keys). `avg_ttl` is the expiry
/// sweep's estimate, in ms.
///
/// A partition whose name is a database number (see [`database_number`]) is `db<N>`, as Redis
/// prints database N, so that what reads Redis's lines (`redis-cli --stat`'s keys column sums
/// `db0` .. `db19`, the Prometheus redis exporter's `db(\d+)`) counts its keys; those come
/// first, by number, as Redis orders them. Every other partition is its name, by name.
fn keyspace_info(text: &mut String, catalog: &Catalog, user: Option<&User>) -> std::fmt::Result {
    text.push_str("# Keyspace\r\n");
    let Some(user) = user else {
        return Ok(());
    };
    let readable = || {
        catalog
            .partitions
            .iter()
            .filter(|(name, _)| user.allows(Perms::READ, name.as_bytes()))
    };
    let mut numbered: Vec<(u32, &PartitionMeta)> = readable()
        .filter_map(|(name, meta)| database_number(name).map(|n| (n, &**meta)))
        .collect();
    numbered.sort_unstable_by_key(|(n, _)| *n);
    let line = |text: &mut String, db: std::fmt::Arguments, meta: &PartitionMeta| {
        let g = |c| PartitionStats::get(c);
        let s = &meta.stats;
        write!(
            text,
            "{db}:keys={},expires={},avg_ttl={}\r\n",
            g(&s.keys),
            g(&s.expires),
            g(&s.avg_ttl)
        )
    };
    for (n, meta) in numbered {
        line(text, format_args!("db{n}"), meta)?;
    }
    for (name, meta) in readable().filter(|(name, _)| database_number(name).is_none()) {
        line(text, format_args!("{name}"), meta)?;
    }
    Ok(())
}

/// The Redis database number a partition name stands for: a decimal number as Redis prints
/// one (no sign, no leading zero but `0` itself), up to `i32::MAX` (Redis's database indexes
/// are C ints). `03` is an ordinary name: as `db3` it would be a second line for database 3
/// beside partition `3`.
pub fn database_number(name: &str) -> Option<u32> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    if !canonical {
        return None;
    }
    name.parse::<u32>().ok().filter(|&n| n <= i32::MAX as u32)
}

/// True for a session holding ADMIN on `*`: it may see operator facts (partition counts per
/// shard, the data directory).
fn is_operator(session: &Session) -> bool {
    session
        .user
        .as_deref()
        .is_some_and(|user| user.allows(Perms::ADMIN, ALL.as_bytes()))
}

/// True when some partition logs its writes (what INFO's `aof_enabled` and CONFIG's
/// `appendonly` say).
pub(super) fn log_enabled(m: &ServerMetrics) -> bool {
    m.total(|s| &s.durable_partitions) > 0
}

/// The persistence section: totals, then (for operators) the durable partition count and one
/// line per shard.
fn persistence_info(text: &mut String, m: &ServerMetrics, operator: bool) -> std::fmt::Result {
    let total = |f: fn(&ShardMetrics) -> &std::sync::atomic::AtomicU64| m.total(f);
    write!(
        text,
        "# Persistence\r\nloading:0\r\naof_enabled:{}\r\nrdb_bgsave_in_progress:0\r\n",
        u8::from(log_enabled(m)),
    )?;
    if operator {
        write!(
            text,
            "partitions_durable:{}\r\n",
            total(|s| &s.durable_partitions)
        )?;
    }
    write!(
        text,
        "log_bytes:{}\r\nlog_commits:{}\r\nfsyncs:{}\r\n\
         io_errors:{}\r\ncompactions:{}\r\n",
        total(|s| &s.log_bytes),
        total(|s| &s.log_commits),
        total(|s| &s.fsyncs),
        total(|s| &s.io_errors),
        total(|s| &s.compactions),
    )?;
    if !operator {
        return Ok(());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for (i, s) in m.shards.iter().enumerate() {
        let g = ShardMetrics::get;
        let last = g(&s.last_compaction_ms);
        let age = if last == 0 {
            -1
        } else {
            (now_ms.saturating_sub(last) / 1000) as i64
        };
        write!(
            text,
            "shard{i}_persistence:durable_partitions={},log_bytes={},log_commits={},fsyncs={},\
             io_errors={},compactions={},last_compaction_ms={last},\
             last_compaction_age_s={age},last_compaction_duration_ms={},recovery_ms={},\
             recovered_keys={}\r\n",
            g(&s.durable_partitions),
            g(&s.log_bytes),
            g(&s.log_commits),
            g(&s.fsyncs),
            g(&s.io_errors),
            g(&s.compactions),
            g(&s.last_compaction_duration_ms),
            g(&s.recovery_ms),
            g(&s.recovered_keys),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_numbers_are_names_redis_would_print() {
        for (name, n) in [
            ("0", 0),
            ("3", 3),
            ("15", 15),
            ("2147483647", i32::MAX as u32),
        ] {
            assert_eq!(database_number(name), Some(n), "{name}");
        }
        for name in [
            "",
            "03",
            "00",
            "-1",
            "+1",
            "3a",
            "db3",
            "2147483648",
            "99999999999",
        ] {
            assert_eq!(database_number(name), None, "{name}");
        }
    }
}

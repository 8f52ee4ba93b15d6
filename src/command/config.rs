//! `CONFIG GET|SET|RESETSTAT|REWRITE|HELP`, as Redis 7 answers them (ADMIN on `*`: the
//! parameters show the data directory and the limits).
//!
//! # The parameters
//! [`PARAMS`] is the one list: every setting of [`Config`], under its flag's name
//! (`max-clients`) and, where Redis has a setting that means the same, under Redis's name too
//! (`maxclients`), as Redis 7 answers an alias; plus Redis's `save` and `appendonly`, which
//! tell the truth about GoKV (no snapshots; `yes` when some partition logs its writes).
//! `CONFIG GET` matches patterns against both names (Redis's globs, ignoring case).
//!
//! # What CONFIG SET may change
//! The settings of [`Live`](crate::config::Live): `timeout`, `max-clients`,
//! `client-output-limit`, `max-memory`, `max-key-len`, `max-keys-reply`,
//! `migrate-connections`, `idle-poll-us`, `slowlog-log-slower-than`, `slowlog-max-len`,
//! `latency-monitor-threshold`, `min-replicas-to-write`, `min-replicas-max-lag`,
//! `replica-priority`. A change is a relaxed store into the configuration every shard
//! shares, so it applies on every shard from its next request (or pass), with no message to
//! wait for, no pause and no lock; then each shard is sent a `Reconfigured` message so that a
//! sleeping one wakes and re-reads what it reads only when a step is due (`timeout`'s idle
//! sweep). Every other setting is read once at start and answers Redis's `can't set immutable
//! config`: the address, port and shard count (the listener and the threads), the data
//! directory, `databases` (a first start's layout), the request limits (`max-bulk-len`,
//! `max-inline-len`, `max-args`: each connection's parser holds them from its login on), the
//! metrics endpoint, and `appendonly` (persistence is per partition: ALTER PARTITION).
//!
//! Several `name value` pairs in one CONFIG SET are all applied or none: every name is
//! checked first (unknown, immutable, twice: Redis's order and texts), then every value, and
//! only when all are good is anything stored.
//!
//! # CONFIG RESETSTAT
//! Zeroes what INFO reports as statistics (`stats` counters, `commandstats`, `errorstats`,
//! `latencystats`) and LATENCY HISTOGRAM, by keeping a baseline ([`Baseline`]) that those
//! readers subtract. The counters themselves, which the Prometheus endpoint reads, are never
//! touched: Prometheus counters only grow.

use std::borrow::Cow;

use crate::config::{parse_size, LiveValues, MAX_IDLE_POLL_US, MAX_TIMEOUT_SECS};
use crate::protocol::{Args, ReplyWriter};

use super::error::printable;
use super::server::{ServerView, Session};
use super::{glob, CommandError};

/// How CONFIG SET treats a parameter.
#[derive(Clone, Copy)]
enum Set {
    /// Read once at start: Redis's `can't set immutable config`.
    Immutable,
    /// Changes a live setting: parses the value into the new values, or says why not (the
    /// reason Redis's `CONFIG SET failed (possibly related to argument ...) - ` precedes).
    Live(fn(&mut LiveValues, &[u8]) -> Result<(), Cow<'static, str>>),
    /// A TLS file (`tls-cert-file`, `tls-key-file`, `tls-ca-cert-file`): the certificates
    /// are reloaded with it ([`crate::tls::TlsContext::reload`]) before anything else of the
    /// call is stored, so a file that does not load changes nothing.
    Tls,
}

/// One parameter: its name, Redis's name for it when Redis has one, how to read it.
struct Param {
    name: &'static str,
    alias: Option<&'static str>,
    get: fn(&ServerView) -> String,
    set: Set,
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.to_string()
}

/// Every parameter (see the module docs).
const PARAMS: &[Param] = &[
    Param {
        name: "save",
        alias: None,
        // GoKV never writes RDB snapshots.
        get: |_| String::new(),
        set: Set::Immutable,
    },
    Param {
        name: "appendonly",
        alias: None,
        get: |v| yes_no(super::server::log_enabled(v.metrics)),
        set: Set::Immutable,
    },
    Param {
        name: "bind",
        alias: None,
        get: |v| v.config.bind.clone(),
        set: Set::Immutable,
    },
    Param {
        name: "port",
        alias: None,
        get: |v| v.config.port.to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "shards",
        alias: None,
        get: |v| v.config.shards.to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "data-dir",
        alias: Some("dir"),
        get: |v| v.config.data_dir.display().to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "databases",
        alias: None,
        // Redis has at least one database; `--databases 0` serves named partitions only.
        get: |v| v.config.databases.max(1).to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "max-bulk-len",
        alias: Some("proto-max-bulk-len"),
        get: |v| v.config.limits.max_bulk_len.to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "max-inline-len",
        alias: None,
        get: |v| v.config.limits.max_inline_len.to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "max-args",
        alias: None,
        get: |v| v.config.limits.max_args.to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "metrics-port",
        alias: None,
        get: |v| v.config.metrics_port.to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "metrics-bind",
        alias: None,
        get: |v| v.config.metrics_bind.clone(),
        set: Set::Immutable,
    },
    Param {
        name: "max-clients",
        alias: Some("maxclients"),
        get: |v| v.config.live.max_clients().to_string(),
        set: Set::Live(|l, value| {
            let n = integer(value, 1, u32::MAX as i64)? as usize;
            // As Redis: more clients than the open-file limit can hold is refused (the limit
            // is raised as far as the process may first).
            let fit = crate::server::raise_fd_limit(n);
            if fit < n {
                return Err(format!(
                    "The operating system is not able to handle the specified number of \
                     clients, try with {fit}"
                )
                .into());
            }
            l.max_clients = n;
            Ok(())
        }),
    },
    Param {
        name: "max-memory",
        alias: Some("maxmemory"),
        get: |v| v.config.live.max_memory().to_string(),
        set: Set::Live(|l, value| {
            l.max_memory = memory(value)?;
            Ok(())
        }),
    },
    Param {
        name: "timeout",
        alias: None,
        get: |v| v.config.live.timeout_secs().to_string(),
        set: Set::Live(|l, value| {
            l.timeout_secs = integer(value, 0, MAX_TIMEOUT_SECS as i64)? as u64;
            Ok(())
        }),
    },
    Param {
        name: "client-output-limit",
        alias: None,
        get: |v| v.config.live.client_output_limit().to_string(),
        set: Set::Live(|l, value| {
            let n = memory(value)?;
            if n == 0 {
                return Err("argument must be a memory value of at least 1 byte".into());
            }
            l.client_output_limit = usize::try_from(n).map_err(|_| "argument is too large")?;
            Ok(())
        }),
    },
    Param {
        name: "max-key-len",
        alias: None,
        get: |v| v.config.live.max_key_len().to_string(),
        set: Set::Live(|l, value| {
            let n = memory(value)?;
            if n == 0 || n > u64::from(u32::MAX) {
                return Err(
                    format!("argument must be between 1 and {} inclusive", u32::MAX).into(),
                );
            }
            l.max_key_len = n as usize;
            Ok(())
        }),
    },
    Param {
        name: "max-keys-reply",
        alias: None,
        get: |v| v.config.live.max_keys_reply().to_string(),
        set: Set::Live(|l, value| {
            l.max_keys_reply = integer(value, 0, i64::MAX)? as usize;
            Ok(())
        }),
    },
    Param {
        name: "migrate-connections",
        alias: None,
        get: |v| yes_no(v.config.live.migrate_connections()),
        set: Set::Live(|l, value| {
            l.migrate_connections = yes_or_no(value)?;
            Ok(())
        }),
    },
    Param {
        name: "idle-poll-us",
        alias: None,
        get: |v| v.config.live.idle_poll_us().to_string(),
        set: Set::Live(|l, value| {
            l.idle_poll_us = integer(value, 0, MAX_IDLE_POLL_US as i64)? as u64;
            Ok(())
        }),
    },
    Param {
        name: "slowlog-log-slower-than",
        alias: None,
        get: |v| v.config.live.slowlog_log_slower_than().to_string(),
        set: Set::Live(|l, value| {
            l.slowlog_log_slower_than = integer(value, -1, i64::MAX)?;
            Ok(())
        }),
    },
    Param {
        name: "slowlog-max-len",
        alias: None,
        get: |v| v.config.live.slowlog_max_len().to_string(),
        set: Set::Live(|l, value| {
            l.slowlog_max_len = integer(value, 0, i64::MAX)? as u64;
            Ok(())
        }),
    },
    Param {
        name: "latency-monitor-threshold",
        alias: None,
        get: |v| v.config.live.latency_monitor_threshold().to_string(),
        set: Set::Live(|l, value| {
            l.latency_monitor_threshold = integer(value, 0, i64::MAX)? as u64;
            Ok(())
        }),
    },
    Param {
        name: "min-replicas-to-write",
        alias: Some("min-slaves-to-write"),
        get: |v| v.config.live.min_replicas_to_write().to_string(),
        set: Set::Live(|l, value| {
            l.min_replicas_to_write = integer(value, 0, i32::MAX as i64)? as u64;
            Ok(())
        }),
    },
    Param {
        name: "min-replicas-max-lag",
        alias: Some("min-slaves-max-lag"),
        get: |v| v.config.live.min_replicas_max_lag().to_string(),
        set: Set::Live(|l, value| {
            l.min_replicas_max_lag = integer(value, 0, i32::MAX as i64)? as u64;
            Ok(())
        }),
    },
    Param {
        name: "replica-priority",
        alias: Some("slave-priority"),
        get: |v| v.config.live.replica_priority().to_string(),
        set: Set::Live(|l, value| {
            l.replica_priority = integer(value, 0, i32::MAX as i64)? as u64;
            Ok(())
        }),
    },
    Param {
        name: "replica-announce-ip",
        alias: Some("slave-announce-ip"),
        get: |v| v.config.replica_announce_ip.clone().unwrap_or_default(),
        set: Set::Immutable,
    },
    Param {
        name: "replica-announce-port",
        alias: Some("slave-announce-port"),
        get: |v| v.config.replica_announce_port.unwrap_or(0).to_string(),
        set: Set::Immutable,
    },
    Param {
        name: "tls-cert-file",
        alias: None,
        get: |v| {
            v.tls
                .map(|t| t.files().cert.display().to_string())
                .unwrap_or_default()
        },
        set: Set::Tls,
    },
    Param {
        name: "tls-key-file",
        alias: None,
        get: |v| {
            v.tls
                .map(|t| t.files().key.display().to_string())
                .unwrap_or_default()
        },
        set: Set::Tls,
    },
    Param {
        name: "tls-ca-cert-file",
        alias: None,
        get: |v| {
            v.tls
                .and_then(|t| t.files().ca)
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        },
        set: Set::Tls,
    },
];

/// An integer in `min..=max`, with Redis 7's texts for what is not.
fn integer(value: &[u8], min: i64, max: i64) -> Result<i64, Cow<'static, str>> {
    let n = std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or("argument couldn't be parsed into an integer")?;
    if n < min || n > max {
        return Err(format!("argument must be between {min} and {max} inclusive").into());
    }
    Ok(n)
}

/// A size (`1048576`, `64kb`, `2gb`: GoKV's units, see `config::parse_size`), with Redis 7's
/// text for what is not one.
fn memory(value: &[u8]) -> Result<u64, Cow<'static, str>> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && !s.starts_with([' ', '+', '-']))
        .and_then(|s| parse_size(s).ok())
        .ok_or_else(|| "argument must be a memory value".into())
}

fn yes_or_no(value: &[u8]) -> Result<bool, Cow<'static, str>> {
    if value.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err("argument must be 'yes' or 'no'".into())
    }
}

/// The parameter a name (either of its names) stands for, ignoring case.
fn find(name: &[u8]) -> Option<usize> {
    PARAMS.iter().position(|p| {
        name.eq_ignore_ascii_case(p.name.as_bytes())
            || p.alias
                .is_some_and(|a| name.eq_ignore_ascii_case(a.as_bytes()))
    })
}

/// Redis 7's text for a subcommand's wrong arity (`config|set`).
fn arity(command: &'static str) -> CommandError {
    CommandError::WrongArity {
        command,
        usage: Cow::Borrowed(""),
    }
}

/// Redis 7's `CONFIG SET failed (possibly related to argument '<name>') - <why>`.
fn set_failed(name: &[u8], why: &str) -> CommandError {
    CommandError::NotAvailable(format!(
        "CONFIG SET failed (possibly related to argument '{}') - {why}",
        printable(name)
    ))
}

/// `CONFIG <subcommand> ...`
pub fn config(
    args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"GET") {
        if args.len() < 3 {
            return Err(arity("config|get"));
        }
        get(args, view, w);
    } else if sub.eq_ignore_ascii_case(b"SET") {
        if args.len() < 4 {
            return Err(arity("config|set"));
        }
        // As Redis 7: a name without its value.
        if args.len() % 2 == 1 {
            return Err(CommandError::Syntax(String::new()));
        }
        set(args, view)?;
        w.ok();
    } else if sub.eq_ignore_ascii_case(b"RESETSTAT") {
        if args.len() != 2 {
            return Err(arity("config|resetstat"));
        }
        view.metrics.set_baseline(super::server::baseline_now(view));
        w.ok();
    } else if sub.eq_ignore_ascii_case(b"REWRITE") {
        if args.len() != 2 {
            return Err(arity("config|rewrite"));
        }
        rewrite(view)?;
        w.ok();
    } else if sub.eq_ignore_ascii_case(b"HELP") {
        if args.len() != 2 {
            return Err(arity("config|help"));
        }
        const HELP: &[&str] = &[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
            "HELP",
            "    Prints this help.",
        ];
        w.array(HELP.len());
        for line in HELP {
            w.simple(line);
        }
    } else {
        return Err(CommandError::NotAvailable(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            printable(sub)
        )));
    }
    Ok(())
}

/// `CONFIG GET <pattern> ...`: as Redis 7, a pattern without `[`, `*` or `?` is a name, looked
/// up ignoring case and answered under the name as given; a glob answers under the names it
/// matched. A parameter matched by several patterns (or by both its names) is listed once
/// per name.
fn get(args: &Args, view: &ServerView, w: &mut ReplyWriter) {
    let mut listed: Vec<&str> = Vec::new();
    let mut matched: Vec<(Vec<u8>, String)> = Vec::new();
    for pattern in args.iter().skip(2) {
        let is_glob = pattern.iter().any(|b| matches!(b, b'[' | b'*' | b'?'));
        for param in PARAMS {
            for name in std::iter::once(param.name).chain(param.alias) {
                let hit = if is_glob {
                    glob::matches(pattern, name.as_bytes(), true)
                } else {
                    pattern.eq_ignore_ascii_case(name.as_bytes())
                };
                if hit && !listed.contains(&name) {
                    listed.push(name);
                    let shown = if is_glob { name.as_bytes() } else { pattern };
                    matched.push((shown.to_vec(), (param.get)(view)));
                }
            }
        }
    }
    w.map(matched.len());
    for (name, value) in matched {
        w.bulk(&name);
        w.bulk(value.as_bytes());
    }
}

/// `CONFIG SET <name> <value> ...`: all or none (see the module docs).
fn set(args: &Args, view: &ServerView) -> Result<(), CommandError> {
    let pairs: Vec<(&[u8], &[u8])> = (2..args.len())
        .step_by(2)
        .map(|i| (args.get(i), args.get(i + 1)))
        .collect();
    // Names first, in Redis's order of checks.
    let mut seen: Vec<usize> = Vec::with_capacity(pairs.len());
    for (name, _) in &pairs {
        let Some(i) = find(name) else {
            return Err(CommandError::NotAvailable(format!(
                "Unknown option or number of arguments for CONFIG SET - '{}'",
                printable(name)
            )));
        };
        match PARAMS[i].set {
            Set::Immutable => return Err(set_failed(name, "can't set immutable config")),
            Set::Tls if view.tls.is_none() => {
                return Err(set_failed(
                    name,
                    "TLS is off: the certificates can only be set with a --tls-port",
                ))
            }
            Set::Live(_) | Set::Tls => {}
        }
        if seen.contains(&i) {
            return Err(set_failed(name, "duplicate parameter"));
        }
        seen.push(i);
    }
    // Then every value, into a copy: nothing is stored unless all are good.
    let live = &view.config.live;
    let mut values = live.values();
    for ((name, value), &i) in pairs.iter().zip(&seen) {
        if let Set::Live(parse) = PARAMS[i].set {
            parse(&mut values, value).map_err(|why| set_failed(name, &why))?;
        }
    }
    values
        .validate()
        .map_err(|why| set_failed(pairs[0].0, &why))?;
    // The TLS files last of the checks: loading them is the check (one reload for all).
    let tls_pairs: Vec<_> = pairs
        .iter()
        .zip(&seen)
        .filter(|(_, &i)| matches!(PARAMS[i].set, Set::Tls))
        .map(|(pair, _)| *pair)
        .collect();
    if let (Some(tls), Some((first, _))) = (view.tls, tls_pairs.first()) {
        let mut files = tls.files();
        for (name, value) in &tls_pairs {
            let path = std::str::from_utf8(value)
                .map_err(|_| set_failed(name, "the path is not UTF-8"))?;
            files = files
                .with(&String::from_utf8_lossy(name), path)
                .map_err(|why| set_failed(name, &why))?;
        }
        tls.reload(&files).map_err(|why| set_failed(first, &why))?;
    }
    live.store(&values);
    crate::slowlog::configure(&values);
    crate::latency::configure(&values);
    (view.reconfigured)();
    Ok(())
}

/// `CONFIG REWRITE`: writes every setting CONFIG SET may change ([`Set::Live`] and
/// [`Set::Tls`] in [`PARAMS`], under its name, as it is now; see [`toml_item`]) and the role
/// (`replicaof`: the primary this server follows, removed when it is a primary) into the
/// `--config` file. An immutable setting cannot differ from what the file and the flags gave
/// at start, so it is left as the file has it. Only those keys change: the file's other keys,
/// its comments and its layout are kept (`toml_edit`). The new text goes to a temporary file
/// beside it, is synced, and is renamed over the file (then the directory is synced): a
/// crash leaves the old file or the new one, never half of each. Without a config file,
/// Redis's error.
fn rewrite(view: &ServerView) -> Result<(), CommandError> {
    let config = view.config;
    let Some(path) = &config.config_file else {
        return Err(CommandError::NotAvailable(
            "The server is running without a config file".into(),
        ));
    };
    let failed = |e: String| CommandError::NotAvailable(format!("Rewriting config file: {e}"));
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| failed(e.to_string()))?;
    for param in PARAMS {
        if matches!(param.set, Set::Immutable) {
            continue;
        }
        if let Some(item) = toml_item(&(param.get)(view)) {
            set_keeping_decor(&mut doc, param.name, item);
        }
    }
    match view.replication.primary() {
        Some((host, port)) => set_keeping_decor(
            &mut doc,
            "replicaof",
            toml_edit::value(format!("{host}:{port}")),
        ),
        None => {
            doc.remove("replicaof");
        }
    }
    write_atomically(path, doc.to_string().as_bytes()).map_err(|e| failed(e.to_string()))
}

/// A setting's CONFIG GET text as the TOML value the config file takes for it: `yes`/`no` a
/// boolean, an integer an integer (one past TOML's `i64` a size string, `"<n>b"`), anything
/// else a string (a path); nothing for an empty text (a TLS file on a server without TLS).
fn toml_item(text: &str) -> Option<toml_edit::Item> {
    if text.is_empty() {
        return None;
    }
    Some(match text {
        "yes" => toml_edit::value(true),
        "no" => toml_edit::value(false),
        _ => match text.parse::<i64>() {
            Ok(n) => toml_edit::value(n),
            Err(_) if text.bytes().all(|b| b.is_ascii_digit()) => {
                toml_edit::value(format!("{text}b"))
            }
            Err(_) => toml_edit::value(text),
        },
    })
}

/// Sets `key` to `value`, keeping the comments and spacing around an existing key and value.
fn set_keeping_decor(doc: &mut toml_edit::DocumentMut, key: &str, mut value: toml_edit::Item) {
    match doc.get_mut(key) {
        Some(old) => {
            if let (Some(old), Some(new)) = (old.as_value(), value.as_value_mut()) {
                *new.decor_mut() = old.decor().clone();
            }
            *old = value;
        }
        None => {
            doc.insert(key, value);
        }
    }
}

/// Replaces `path` with `bytes`: a synced temporary file renamed over it, the directory
/// synced after.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("rewrite.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_and_found() {
        let mut names = Vec::new();
        for (i, p) in PARAMS.iter().enumerate() {
            for name in std::iter::once(p.name).chain(p.alias) {
                assert!(!names.contains(&name), "{name} twice");
                names.push(name);
                assert_eq!(find(name.to_uppercase().as_bytes()), Some(i), "{name}");
            }
        }
    }

    #[test]
    fn values_are_checked_with_redis_texts() {
        assert_eq!(integer(b"12", 0, 20), Ok(12));
        assert_eq!(
            integer(b"-2", -1, 5).unwrap_err(),
            "argument must be between -1 and 5 inclusive"
        );
        assert_eq!(
            integer(b"x", 0, 5).unwrap_err(),
            "argument couldn't be parsed into an integer"
        );
        assert_eq!(memory(b"64kb"), Ok(65536));
        for bad in [&b"abc"[..], b"-1", b"", b"1kk"] {
            assert_eq!(
                memory(bad).unwrap_err(),
                "argument must be a memory value",
                "{bad:?}"
            );
        }
        assert_eq!(yes_or_no(b"YES"), Ok(true));
        assert!(yes_or_no(b"maybe").is_err());
    }

    #[test]
    fn rewritten_values_have_the_types_the_config_file_takes() {
        let text = |t: &str| toml_item(t).map(|item| item.to_string());
        assert_eq!(text("yes").as_deref(), Some("true"));
        assert_eq!(text("no").as_deref(), Some("false"));
        assert_eq!(text("-1").as_deref(), Some("-1"));
        assert_eq!(text("300").as_deref(), Some("300"));
        assert_eq!(
            text("18446744073709551615").as_deref(),
            Some("\"18446744073709551615b\"")
        );
        assert_eq!(
            text("/etc/gokv/server.crt").as_deref(),
            Some("\"/etc/gokv/server.crt\"")
        );
        assert_eq!(text(""), None);
        // The size string is one the config file reads back as that size.
        assert_eq!(
            parse_size("18446744073709551615b"),
            Ok(18446744073709551615)
        );
    }
}

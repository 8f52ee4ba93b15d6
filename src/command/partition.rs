//! Partition management: CREATE, ALTER, DROP (on the coordinator, which owns the catalog) and
//! LIST, DESCRIBE, STATS (answered on the connection's shard from its catalog copy: a
//! partition's counters are atomics any thread may read, so no request crosses shards for
//! them).
//!
//! # Options
//! `CREATE PARTITION <name> <schema> <persist> [<option> <value> ...]` and
//! `ALTER PARTITION <name> SET <option> <value> [...]` take the options of PROTOCOL.md's
//! "Partition configuration and quotas" ([`PartitionOptions`], and `persist` for ALTER).
//! All or none: the whole list is parsed and checked on the connection's shard before
//! anything is sent to the coordinator ([`parse_options`]), so one bad option or value (an
//! unknown or repeated option, a missing value, a negative or absurd number) is a `-ERR`
//! naming the option, and nothing changes. The coordinator then checks what needs the current
//! catalog (the partition still exists) and makes one new catalog version with every change
//! in it; the owning shard makes a `persist` change (a snapshot, or removing the files)
//! before it acknowledges that version (`shard::durability::Core::change_persist`).
//!
//! Permissions (`access`): CREATE needs ADMIN on `*` whatever its options (so a partition
//! created with quotas was limited by the operator); ALTER needs ADMIN on the partition, and
//! ADMIN on `*` when it sets `max-memory`, `max-keys` or `max-ops` (to any value, up or
//! down), so that a tenant holding ADMIN on its own partition cannot lift its own limits.

use std::sync::Arc;

use crate::acl::User;
use crate::catalog::{is_valid_name, Catalog, PartitionMeta, PartitionOptions};
use crate::protocol::{Args, ReplyWriter};
use crate::store::{Eviction, PartitionStats, PersistMode, Schema};

use super::error::printable;
use super::server::{ServerView, Session};
use super::{CommandError, CoordinatorWork};

/// A validated `CREATE PARTITION <name> <schema> <persist> [<option> <value> ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePartition {
    pub name: String,
    pub schema: Schema,
    pub persist: PersistMode,
    pub options: PartitionOptions,
}

/// A validated `ALTER PARTITION <name> SET <option> <value> [...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartition {
    pub name: String,
    pub changes: OptionChanges,
}

/// Largest `max-memory`: 1 PiB, far above any machine's memory, so that a slip such as
/// `99999999gb` (95 PiB, which fits a u64) is refused rather than read as "no limit in
/// practice".
pub const MAX_MEMORY_OPTION: u64 = 1 << 50;
/// Largest `max-keys`: 2^40; every key costs at least 17 bytes of data, so more keys than this
/// would need 17 TiB.
pub const MAX_KEYS_OPTION: u64 = 1 << 40;
/// Largest `max-ops`: 10^9 per second, a hundred times what one shard serves, and small
/// enough that the token bucket's arithmetic (rate x elapsed ms) stays far inside a u64.
pub const MAX_OPS_OPTION: u64 = 1_000_000_000;
/// Longest `default-ttl`: 100 years in ms, so that now + default-ttl is always a valid
/// deadline.
pub const MAX_DEFAULT_TTL: u64 = 100 * 365 * 24 * 3600 * 1000;

/// A partition option's name, as CREATE and ALTER spell it (in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionName {
    Persist,
    MaxMemory,
    MaxKeys,
    MaxOps,
    Eviction,
    DefaultTtl,
}

impl OptionName {
    pub const ALL: [OptionName; 6] = [
        OptionName::MaxMemory,
        OptionName::MaxKeys,
        OptionName::MaxOps,
        OptionName::Eviction,
        OptionName::DefaultTtl,
        OptionName::Persist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OptionName::Persist => "persist",
            OptionName::MaxMemory => "max-memory",
            OptionName::MaxKeys => "max-keys",
            OptionName::MaxOps => "max-ops",
            OptionName::Eviction => "eviction",
            OptionName::DefaultTtl => "default-ttl",
        }
    }

    pub fn parse(word: &[u8]) -> Option<OptionName> {
        OptionName::ALL
            .into_iter()
            .find(|o| word.eq_ignore_ascii_case(o.as_str().as_bytes()))
    }

    /// A quota: changing it needs ADMIN on `*` (see the module docs).
    pub fn is_quota(self) -> bool {
        matches!(
            self,
            OptionName::MaxMemory | OptionName::MaxKeys | OptionName::MaxOps
        )
    }
}

/// The options a CREATE or ALTER sets (`None`: left as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionChanges {
    pub persist: Option<PersistMode>,
    pub max_memory: Option<u64>,
    pub max_keys: Option<u64>,
    pub max_ops: Option<u64>,
    pub eviction: Option<Eviction>,
    pub default_ttl: Option<u64>,
}

impl OptionChanges {
    /// `options` with these changes made (`persist` is not among them: see [`plan_alter`]).
    pub fn apply(&self, options: PartitionOptions) -> PartitionOptions {
        PartitionOptions {
            max_memory: self.max_memory.unwrap_or(options.max_memory),
            max_keys: self.max_keys.unwrap_or(options.max_keys),
            max_ops: self.max_ops.unwrap_or(options.max_ops),
            eviction: self.eviction.unwrap_or(options.eviction),
            default_ttl: self.default_ttl.unwrap_or(options.default_ttl),
        }
    }
}

/// Parses `<option> <value>` pairs from argument `from` on: every one checked before any is
/// taken, so one bad pair is an error naming its option and nothing else counts.
/// `persist_allowed`: CREATE gives the persist mode as its third argument, not as an option.
pub fn parse_options(
    args: &Args,
    from: usize,
    persist_allowed: bool,
) -> Result<OptionChanges, CommandError> {
    let mut changes = OptionChanges::default();
    let mut i = from;
    while i < args.len() {
        let raw = args.get(i);
        let option = OptionName::parse(raw)
            .filter(|o| persist_allowed || *o != OptionName::Persist)
            .ok_or_else(|| {
                CommandError::InvalidOption(format!(
                    "unknown partition option '{}': expected max-memory, max-keys, max-ops, \
                     eviction or default-ttl{}",
                    printable(raw),
                    if persist_allowed { " or persist" } else { "" }
                ))
            })?;
        let name = option.as_str();
        if i + 1 >= args.len() {
            return Err(CommandError::InvalidOption(format!(
                "partition option '{name}' needs a value"
            )));
        }
        let value = args.get(i + 1);
        let bad =
            |why: String| CommandError::InvalidOption(format!("partition option '{name}': {why}"));
        let repeated = match option {
            OptionName::Persist => changes
                .persist
                .replace(PersistMode::parse(value).ok_or_else(|| {
                    bad(format!(
                        "expected MEMORY, ASYNC or SYNC, got '{}'",
                        printable(value)
                    ))
                })?)
                .is_some(),
            OptionName::MaxMemory => {
                let text = std::str::from_utf8(value).unwrap_or("");
                let bytes = crate::config::parse_size(text)
                    .map_err(|_| {
                        bad(format!(
                            "expected a size in bytes (e.g. 1048576, 64kb, 512mb, 2gb; 0 for \
                             none), got '{}'",
                            printable(value)
                        ))
                    })
                    .and_then(|n| at_most(n, MAX_MEMORY_OPTION, "bytes (1pb)", value, &bad))?;
                changes.max_memory.replace(bytes).is_some()
            }
            OptionName::MaxKeys => {
                let n = count(value, MAX_KEYS_OPTION, "keys", &bad)?;
                changes.max_keys.replace(n).is_some()
            }
            OptionName::MaxOps => {
                let n = count(value, MAX_OPS_OPTION, "operations per second", &bad)?;
                changes.max_ops.replace(n).is_some()
            }
            OptionName::DefaultTtl => {
                let n = count(value, MAX_DEFAULT_TTL, "ms (100 years)", &bad)?;
                changes.default_ttl.replace(n).is_some()
            }
            OptionName::Eviction => {
                let policy = Eviction::parse(value).ok_or_else(|| {
                    bad(format!(
                        "expected one of {}, got '{}'",
                        Eviction::ALL.map(Eviction::as_str).join(", "),
                        printable(value)
                    ))
                })?;
                changes.eviction.replace(policy).is_some()
            }
        };
        if repeated {
            return Err(CommandError::InvalidOption(format!(
                "partition option '{name}' given twice"
            )));
        }
        i += 2;
    }
    Ok(changes)
}

/// A plain decimal count (digits only: no sign, no spaces) of at most `max`.
fn count(
    value: &[u8],
    max: u64,
    unit: &str,
    bad: &dyn Fn(String) -> CommandError,
) -> Result<u64, CommandError> {
    let n = std::str::from_utf8(value)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok());
    match n {
        Some(n) => at_most(n, max, unit, value, bad),
        None => Err(bad(format!(
            "expected a whole number from 0 (none) to {max}, got '{}'",
            printable(value)
        ))),
    }
}

fn at_most(
    n: u64,
    max: u64,
    unit: &str,
    value: &[u8],
    bad: &dyn Fn(String) -> CommandError,
) -> Result<u64, CommandError> {
    if n > max {
        Err(bad(format!(
            "'{}' is more than the largest allowed, {max} {unit}",
            printable(value)
        )))
    } else {
        Ok(n)
    }
}

/// Does this `ALTER PARTITION <name> SET ...` set a quota option (`access` asks, before it
/// is parsed: a malformed request fails its parse later anyway)?
pub fn alter_sets_quota(args: &Args) -> bool {
    (4..args.len())
        .step_by(2)
        .any(|i| OptionName::parse(args.get(i)).is_some_and(OptionName::is_quota))
}

/// Validates CREATE's arguments (done on the connection's shard, before the coordinator).
pub fn parse_create(args: &Args) -> Result<CreatePartition, CommandError> {
    let name = parse_name(args.get(2))?;
    let schema = Schema::parse(args.get(3)).ok_or_else(|| {
        CommandError::Syntax(format!(
            "schema must be INT or STRING, got '{}'",
            printable(args.get(3))
        ))
    })?;
    let persist = PersistMode::parse(args.get(4)).ok_or_else(|| {
        CommandError::Syntax(format!(
            "persist mode must be MEMORY, ASYNC or SYNC, got '{}'",
            printable(args.get(4))
        ))
    })?;
    let options = parse_options(args, 5, false)?.apply(PartitionOptions::default());
    Ok(CreatePartition {
        name,
        schema,
        persist,
        options,
    })
}

/// Validates ALTER's arguments (on the connection's shard, before the coordinator).
pub fn parse_alter(args: &Args) -> Result<AlterPartition, CommandError> {
    let name = parse_name(args.get(2))?;
    if !args.get(3).eq_ignore_ascii_case(b"SET") {
        return Err(CommandError::Syntax(format!(
            "expected SET after the partition name, got '{}'",
            printable(args.get(3))
        )));
    }
    let changes = parse_options(args, 4, true)?;
    Ok(AlterPartition { name, changes })
}

/// Validates a partition name argument.
pub fn parse_name(raw: &[u8]) -> Result<String, CommandError> {
    if !is_valid_name(raw) {
        return Err(CommandError::InvalidName(printable(raw)));
    }
    // Valid names are ASCII, so this cannot fail.
    Ok(String::from_utf8_lossy(raw).into_owned())
}

/// The catalog after CREATE, or why not. Runs on the coordinator.
pub fn plan_create(
    catalog: &Catalog,
    request: &CreatePartition,
    shards: usize,
    id: u64,
    created_ms: u64,
) -> Result<Catalog, CommandError> {
    if catalog.partitions.contains_key(&request.name) {
        return Err(CommandError::PartitionExists(request.name.clone()));
    }
    Ok(catalog.with_partition(PartitionMeta {
        name: request.name.clone(),
        id,
        shard: catalog.placement(shards),
        schema: request.schema,
        persist: request.persist,
        created_ms,
        options: request.options,
        stats: Arc::new(PartitionStats::default()),
    }))
}

/// The catalog after ALTER, or why not (and then nothing changes). Runs on the coordinator,
/// after every change queued before it: an ALTER behind a DROP of its partition finds it gone.
pub fn plan_alter(catalog: &Catalog, request: &AlterPartition) -> Result<Catalog, CommandError> {
    let meta = catalog
        .partitions
        .get(&request.name)
        .ok_or_else(|| CommandError::NoPartition(request.name.clone()))?;
    // The owning shard makes a persist change when it applies the new version, before it
    // acknowledges it, so before ALTER answers (`shard::routes`): durable -> MEMORY removes
    // the files; MEMORY -> durable writes a snapshot (the coordinator created the files
    // first); ASYNC <-> SYNC switches the log's mode.
    let persist = request.changes.persist.unwrap_or(meta.persist);
    let options = request.changes.apply(meta.options);
    catalog
        .with_options(&request.name, persist, options)
        .ok_or_else(|| CommandError::NoPartition(request.name.clone()))
}

/// The catalog after DROP, or why not. Runs on the coordinator.
pub fn plan_drop(catalog: &Catalog, name: &str) -> Result<Catalog, CommandError> {
    if !catalog.partitions.contains_key(name) {
        return Err(CommandError::NoPartition(name.to_string()));
    }
    Ok(catalog.without_partition(name))
}

/// LIST PARTITIONS: names, sorted, only those `user` holds something on (directly or
/// through `*`).
pub fn list(catalog: &Catalog, user: &User, w: &mut ReplyWriter) {
    let visible = || catalog.partitions.keys().filter(|p| user.holds_any_on(p));
    w.array(visible().count());
    for name in visible() {
        w.bulk(name.as_bytes());
    }
}

/// Resolves a partition named by a management command.
pub fn find<'c>(catalog: &'c Catalog, raw: &[u8]) -> Result<&'c Arc<PartitionMeta>, CommandError> {
    catalog
        .get(raw)
        .ok_or_else(|| CommandError::NoPartition(printable(raw)))
}

/// DESCRIBE PARTITION: what it is, where it lives, and every option (under the name
/// CREATE and ALTER take it by).
pub fn describe(meta: &PartitionMeta, w: &mut ReplyWriter) {
    let s = &meta.stats;
    let g = |c| PartitionStats::get(c) as i64;
    let o = &meta.options;
    w.map(14);
    w.field_bulk("name", meta.name.as_bytes());
    w.field_bulk("schema", meta.schema.as_str().as_bytes());
    w.field_bulk("persist", meta.persist.as_str().as_bytes());
    w.field_int("shard", meta.shard as i64);
    w.field_int("keys", g(&s.keys));
    w.field_int("created_ms", meta.created_ms as i64);
    w.field_int("max-memory", o.max_memory as i64);
    w.field_int("max-keys", o.max_keys as i64);
    w.field_int("max-ops", o.max_ops as i64);
    w.field_bulk("eviction", o.eviction.as_str().as_bytes());
    w.field_int("default-ttl", o.default_ttl as i64);
    expiry_fields(s, w);
}

/// The expiry counters both DESCRIBE and STATS show: `expires` (keys with a deadline now),
/// `expired_keys` (reclaimed by the expiry sweep), `evicted_keys` (evicted to make room).
fn expiry_fields(s: &PartitionStats, w: &mut ReplyWriter) {
    let g = |c| PartitionStats::get(c) as i64;
    w.field_int("expires", g(&s.expires));
    w.field_int("expired_keys", g(&s.expired_keys));
    w.field_int("evicted_keys", g(&s.evicted_keys));
}

/// STATS PARTITION: the owning shard's counters, read without locks.
pub fn stats(meta: &PartitionMeta, w: &mut ReplyWriter) {
    let s = &meta.stats;
    let g = |c| PartitionStats::get(c) as i64;
    w.map(11);
    w.field_int("ops", g(&s.ops));
    w.field_int("reads", g(&s.reads));
    w.field_int("writes", g(&s.writes));
    w.field_int("keys", g(&s.keys));
    w.field_int("hits", g(&s.hits));
    w.field_int("misses", g(&s.misses));
    w.field_int("memory", g(&s.memory));
    expiry_fields(s, w);
    w.field_int("throttled", g(&s.throttled));
}

// The rows' handlers (see the command table in `super`).

/// `CREATE PARTITION <name> <schema> <persist>`, for the coordinator.
pub fn create(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(CoordinatorWork::Create(parse_create(args)?))
}

/// `ALTER PARTITION <name> SET <option> <value> [...]`, for the coordinator.
pub fn alter(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(CoordinatorWork::Alter(parse_alter(args)?))
}

/// `DROP PARTITION <name>`, for the coordinator.
pub fn drop(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(CoordinatorWork::Drop(parse_name(args.get(2))?))
}

/// `LIST PARTITIONS`
pub fn list_command(
    _args: &Args,
    session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let user = session.user.as_deref().ok_or(CommandError::NoAuth)?;
    list(view.catalog, user, w);
    Ok(())
}

/// `DESCRIBE PARTITION <name>`
pub fn describe_command(
    args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    find(view.catalog, args.get(2)).map(|meta| describe(meta, w))
}

/// `STATS PARTITION <name>`
pub fn stats_command(
    args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    find(view.catalog, args.get(2)).map(|meta| stats(meta, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_args<T>(line: &str, f: impl FnOnce(&Args) -> T) -> T {
        let words: Vec<&str> = line.split(' ').collect();
        let (buf, spans) = crate::protocol::lay_out(&words);
        f(&Args::new(&buf, &spans))
    }

    fn create(line: &str) -> Result<CreatePartition, String> {
        with_args(line, |a| parse_create(a).map_err(|e| e.to_string()))
    }

    fn alter(line: &str) -> Result<AlterPartition, String> {
        with_args(line, |a| parse_alter(a).map_err(|e| e.to_string()))
    }

    #[test]
    fn create_takes_every_option_in_any_case() {
        let c = create(
            "CREATE PARTITION p STRING MEMORY max-memory 64mb MAX-KEYS 10 max-ops 500 \
             eviction ALLKEYS-LRU default-ttl 60000",
        )
        .expect("valid");
        assert_eq!(
            c.options,
            PartitionOptions {
                max_memory: 64 << 20,
                max_keys: 10,
                max_ops: 500,
                eviction: Eviction::AllKeysLru,
                default_ttl: 60_000,
            }
        );
        let plain = create("CREATE PARTITION p INT SYNC").expect("valid");
        assert_eq!(plain.options, PartitionOptions::default());
        // The same size suffixes as --max-memory.
        for (text, bytes) in [("1024", 1024), ("1kb", 1024), ("2G", 2 << 30), ("0", 0)] {
            let c = create(&format!("CREATE PARTITION p INT MEMORY max-memory {text}")).unwrap();
            assert_eq!(c.options.max_memory, bytes, "{text}");
        }
    }

    #[test]
    fn one_bad_option_refuses_the_whole_request_naming_it() {
        let cases = [
            (
                "max-keys 10 colour blue",
                "unknown partition option 'colour'",
            ),
            (
                "max-keys 10 max-keys 20",
                "partition option 'max-keys' given twice",
            ),
            ("max-keys", "partition option 'max-keys' needs a value"),
            (
                "eviction allkeys-lru max-ops",
                "partition option 'max-ops' needs a value",
            ),
            (
                "max-keys -1",
                "partition option 'max-keys': expected a whole number",
            ),
            (
                "max-keys +1",
                "partition option 'max-keys': expected a whole number",
            ),
            (
                "max-keys 1.5",
                "partition option 'max-keys': expected a whole number",
            ),
            (
                "max-keys 99999999999999999999999",
                "partition option 'max-keys': expected a whole number",
            ),
            (
                "max-keys 1099511627777",
                "partition option 'max-keys': '1099511627777' is more than the largest allowed",
            ),
            (
                "max-memory -5",
                "partition option 'max-memory': expected a size in bytes",
            ),
            (
                "max-memory 10tb",
                "partition option 'max-memory': expected a size in bytes",
            ),
            (
                "max-memory 99999999gb",
                "partition option 'max-memory': '99999999gb' is more than the largest allowed, \
                 1125899906842624 bytes (1pb)",
            ),
            (
                "max-memory 99999999999999999999gb",
                "partition option 'max-memory': expected a size",
            ),
            (
                "max-ops 1000000001",
                "partition option 'max-ops': '1000000001' is more than",
            ),
            (
                "default-ttl 4000000000000",
                "partition option 'default-ttl': '4000000000000'",
            ),
            (
                "eviction lru",
                "partition option 'eviction': expected one of noeviction, allkeys-lru",
            ),
            // CREATE gives persist as its third argument.
            ("persist SYNC", "unknown partition option 'persist'"),
        ];
        for (options, expected) in cases {
            let e = create(&format!("CREATE PARTITION p STRING MEMORY {options}")).unwrap_err();
            assert!(e.starts_with(expected), "{options}: {e}");
            let e = alter(&format!("ALTER PARTITION p SET {options}"));
            if options.starts_with("persist") {
                assert!(e.is_ok(), "ALTER takes persist");
            } else {
                assert!(e.unwrap_err().starts_with(expected), "ALTER {options}");
            }
        }
        assert_eq!(
            alter("ALTER PARTITION p PUT max-keys 1").unwrap_err(),
            "syntax error: expected SET after the partition name, got 'PUT'"
        );
        assert!(alter("ALTER PARTITION p SET persist NEVER")
            .unwrap_err()
            .starts_with("partition option 'persist': expected MEMORY, ASYNC or SYNC"));
    }

    #[test]
    fn alter_changes_only_what_it_names() {
        let catalog = Catalog::default().with_partition(PartitionMeta {
            name: "p".into(),
            id: 1,
            shard: 0,
            schema: Schema::Int,
            persist: PersistMode::Memory,
            created_ms: 0,
            options: PartitionOptions {
                max_keys: 5,
                default_ttl: 7,
                ..Default::default()
            },
            stats: Arc::default(),
        });
        let a = alter("ALTER PARTITION p SET eviction volatile-ttl max-keys 0").unwrap();
        let next = plan_alter(&catalog, &a).unwrap();
        assert_eq!(
            next.partitions["p"].options,
            PartitionOptions {
                max_keys: 0,
                default_ttl: 7,
                eviction: Eviction::VolatileTtl,
                ..Default::default()
            }
        );
        // The persist mode it has already: nothing to change.
        let same = alter("ALTER PARTITION p SET persist memory").unwrap();
        assert!(plan_alter(&catalog, &same).is_ok());
        // Every persist change is a catalog change like the others.
        let durable = catalog
            .with_options("p", PersistMode::Async, catalog.partitions["p"].options)
            .unwrap();
        let to_memory = alter("ALTER PARTITION p SET persist MEMORY").unwrap();
        let next = plan_alter(&durable, &to_memory).unwrap();
        assert_eq!(next.partitions["p"].persist, PersistMode::Memory);
        let to_sync = alter("ALTER PARTITION p SET persist SYNC max-keys 1").unwrap();
        let next = plan_alter(&catalog, &to_sync).unwrap();
        assert_eq!(next.partitions["p"].persist, PersistMode::Sync);
        assert_eq!(next.partitions["p"].options.max_keys, 1);
        let missing = alter("ALTER PARTITION gone SET max-keys 1").unwrap();
        assert_eq!(
            plan_alter(&catalog, &missing).err(),
            Some(CommandError::NoPartition("gone".into()))
        );
    }

    #[test]
    fn quota_options_are_found_for_the_permission_check() {
        for (line, quota) in [
            ("ALTER PARTITION p SET eviction allkeys-lru", false),
            ("ALTER PARTITION p SET default-ttl 5 MAX-OPS 3", true),
            ("ALTER PARTITION p SET max-memory 0", true),
            // A value spelled like an option is not one.
            ("ALTER PARTITION p SET eviction max-keys", false),
        ] {
            assert_eq!(with_args(line, alter_sets_quota), quota, "{line}");
        }
    }
}

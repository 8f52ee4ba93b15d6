//! Partition management: CREATE, DROP (on the coordinator, which owns the catalog) and LIST,
//! DESCRIBE, STATS (answered on the connection's shard from its catalog copy: a partition's
//! counters are atomics any thread may read, so no request crosses shards for them).

use std::sync::Arc;

use crate::acl::User;
use crate::catalog::{is_valid_name, Catalog, PartitionMeta};
use crate::protocol::{Args, ReplyWriter};
use crate::store::{PartitionStats, PersistMode, Schema};

use super::error::printable;
use super::server::{ServerView, Session};
use super::{CommandError, CoordinatorWork};

/// A validated `CREATE PARTITION <name> <schema> <persist>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePartition {
    pub name: String,
    pub schema: Schema,
    pub persist: PersistMode,
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
    Ok(CreatePartition {
        name,
        schema,
        persist,
    })
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
        stats: Arc::new(PartitionStats::default()),
    }))
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

/// DESCRIBE PARTITION: what it is and where it lives.
pub fn describe(meta: &PartitionMeta, w: &mut ReplyWriter) {
    let s = &meta.stats;
    let g = |c| PartitionStats::get(c) as i64;
    w.map(9);
    w.field_bulk("name", meta.name.as_bytes());
    w.field_bulk("schema", meta.schema.as_str().as_bytes());
    w.field_bulk("persist", meta.persist.as_str().as_bytes());
    w.field_int("shard", meta.shard as i64);
    w.field_int("keys", g(&s.keys));
    w.field_int("created_ms", meta.created_ms as i64);
    expiry_fields(s, w);
}

/// The expiry counters both DESCRIBE and STATS end with: `expires` (keys with a deadline now),
/// `expired_keys` (reclaimed by the expiry sweep), `evicted_keys` (0 until eviction exists).
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
    w.map(10);
    w.field_int("ops", g(&s.ops));
    w.field_int("reads", g(&s.reads));
    w.field_int("writes", g(&s.writes));
    w.field_int("keys", g(&s.keys));
    w.field_int("hits", g(&s.hits));
    w.field_int("misses", g(&s.misses));
    w.field_int("memory", g(&s.memory));
    expiry_fields(s, w);
}

// The rows' handlers (see the command table in `super`).

/// `CREATE PARTITION <name> <schema> <persist>`, for the coordinator.
pub fn create(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(CoordinatorWork::Create(parse_create(args)?))
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

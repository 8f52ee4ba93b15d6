//! Access control at dispatch: may this session run this command on this partition?
//!
//! [`authorize`] is a pure function of the command table row, the arguments, the session's
//! user (as of the shard's ACL copy) and the shard's catalog copy. The connection's shard calls
//! it before routing. A request forwarded to another shard, or a change sent to the
//! coordinator, was allowed there; the owner (or the coordinator) calls it again only when
//! its ACL moved on since (a REVOKE or DROP USER answered meanwhile), see
//! `shard::Core::execute_forwarded` and `shard::coordinator`.
//!
//! `SELECT` needs any grant on its partition ([`Permission::Any`]), under the same no-leak
//! rule as below.
//!
//! Default deny: before login only [`Permission::Open`] commands run (`NOAUTH` otherwise);
//! after it, a user holds nothing but what was granted.
//!
//! Names do not leak: for a partition that does not exist, a caller who holds nothing on `*`
//! gets the same `NOPERM` as for one that exists but is not theirs. A caller holding something
//! on `*` can list every partition anyway, so it is told `NOPARTITION`.

use std::sync::Arc;

use crate::acl::{Perms, User, ALL};
use crate::catalog::Catalog;
use crate::protocol::Args;

use super::error::printable;
use super::{CommandError, CommandSpec, Permission};

/// Checks the session's right to run `spec` with `args`. `user` is `None` before login.
///
/// Inline, it settles the common cases in a few instructions: an open command, and a user
/// holding what the row needs on `*` (which [`check`] would allow too: every permission's
/// check starts from that grant); everything else goes to [`check`], out of line. (Against
/// the whole check out of line: GET 1494 -> 1461 user-space instructions per request, SET
/// 2155 -> 2106, measured with `scripts/count-instructions.sh`.)
#[inline(always)]
pub fn authorize(
    spec: &CommandSpec,
    args: &Args,
    user: Option<&User>,
    catalog: &Catalog,
) -> Result<(), CommandError> {
    match (spec.permission, user) {
        (Permission::Open, _) => Ok(()),
        (permission, Some(user)) if user.all.covers(needed(permission)) => Ok(()),
        _ => check(spec, args, user, catalog),
    }
}

/// What a session's user holds on the partition its data requests named last: a user bound
/// to one partition (the Redis face's tenant, `CREATE USER ... DEFAULT`) holds nothing on `*`,
/// so without it every request of theirs would look its grant up by name in the user's map
/// (about 200 of a GET's 1,700 user-space instructions, `scripts/count-instructions.sh
/// get-user`). Read by [`authorize_remembered`] only.
///
/// It remembers the user by its `Arc`, held: a `User` never changes once built (every ACL
/// change makes a new one, `Acl::apply`), and the session's user is a new `Arc` from the
/// first command after any change to it (`shard::dispatch`), so a GRANT or REVOKE is seen
/// by the very next command, as without the memo. Holding the `Arc` keeps its address from
/// being reused for another user while remembered.
#[derive(Debug, Default)]
pub struct GrantMemo {
    user: Option<Arc<User>>,
    /// At most `catalog::MAX_NAME_LEN` bytes (longer names are never remembered).
    partition: Vec<u8>,
    /// [`held`] by `user` on `partition`.
    held: Perms,
}

/// [`authorize`], for the connection's own requests: the same answer, with what a user who
/// holds nothing sufficient on `*` holds on a partition remembered in `memo` from one
/// request to the next (see [`GrantMemo`]). A request the memo does not allow goes through
/// [`check`], which words the refusal.
#[inline(always)]
pub fn authorize_remembered(
    spec: &CommandSpec,
    args: &Args,
    user: Option<&Arc<User>>,
    catalog: &Catalog,
    memo: &mut GrantMemo,
) -> Result<(), CommandError> {
    match (spec.permission, user) {
        (Permission::Open, _) => Ok(()),
        (permission, Some(user)) if user.all.covers(needed(permission)) => Ok(()),
        (
            Permission::Read
            | Permission::Write
            | Permission::ReadWrite
            | Permission::WriteReadWithGet,
            Some(user),
        ) if spec.partition_arg.is_some() => {
            let partition = spec.partition_name(args);
            let known = memo.user.as_ref().is_some_and(|u| Arc::ptr_eq(u, user))
                && crate::store::same_bytes(&memo.partition, partition);
            if !known && !remember(memo, user, partition) {
                return check(spec, args, Some(user), catalog);
            }
            if memo.held.covers(needed_by(spec, args)) {
                Ok(())
            } else {
                check(spec, args, Some(user), catalog)
            }
        }
        _ => check(spec, args, user.map(|u| &**u), catalog),
    }
}

/// Fills `memo` with what `user` holds on `partition`; false (and `memo` empty) for a name
/// too long to be a partition's, which is then never remembered.
#[cold]
#[inline(never)]
fn remember(memo: &mut GrantMemo, user: &Arc<User>, partition: &[u8]) -> bool {
    memo.user = None;
    memo.partition.clear();
    if partition.len() > crate::catalog::MAX_NAME_LEN {
        return false;
    }
    memo.partition.extend_from_slice(partition);
    memo.held = held(user, partition);
    memo.user = Some(Arc::clone(user));
    true
}

/// What a permission needs on its target at most (a `WriteReadWithGet` row needs READ only
/// with a GET option: [`needed_by`] says for a request; holding both settles it at once).
#[inline]
fn needed(permission: Permission) -> Perms {
    match permission {
        Permission::Open | Permission::Authenticated => Perms::NONE,
        Permission::Read => Perms::READ,
        Permission::Write => Perms::WRITE,
        Permission::ReadWrite | Permission::WriteReadWithGet => Perms::READ.union(Perms::WRITE),
        Permission::Admin
        | Permission::AdminOrAllForQuotas
        | Permission::AdminAll
        | Permission::SelfOrAdminAll => Perms::ADMIN,
        // The least grant of all: holding READ settles it at once; any other grant goes to
        // [`check`], which looks for one.
        Permission::Any => Perms::READ,
    }
}

/// What this request needs: [`needed`], less READ for a SET without a GET option.
fn needed_by(spec: &CommandSpec, args: &Args) -> Perms {
    match spec.permission {
        Permission::WriteReadWithGet if !has_get_option(args) => Perms::WRITE,
        permission => needed(permission),
    }
}

/// Whether a `SET <p> <k> <v> [options]` has a `GET` among its options. A `GET` that is the
/// argument of a time option counts too: that request fails anyway (not an integer), and
/// asking READ of it only changes which error it gets.
fn has_get_option(args: &Args) -> bool {
    (4..args.len()).any(|i| args.get(i).eq_ignore_ascii_case(b"GET"))
}

/// The whole check, as [`authorize`] describes it.
#[inline(never)]
fn check(
    spec: &CommandSpec,
    args: &Args,
    user: Option<&User>,
    catalog: &Catalog,
) -> Result<(), CommandError> {
    if spec.permission == Permission::Open {
        return Ok(());
    }
    let needed = needed_by(spec, args);
    let Some(user) = user else {
        return Err(CommandError::NoAuth);
    };
    // Names what is missing of `needed` (READ, WRITE or both; ADMIN).
    let denied = |target: &[u8]| CommandError::NoPerm {
        user: user.name.clone(),
        needed: if spec.permission == Permission::Any {
            "READ, WRITE or ADMIN"
        } else {
            perm_name(needed.without(held(user, target)))
        },
        target: printable(target),
    };
    match spec.permission {
        Permission::Open | Permission::Authenticated => Ok(()),
        Permission::AdminAll if user.allows(Perms::ADMIN, ALL.as_bytes()) => Ok(()),
        Permission::AdminAll => Err(denied(ALL.as_bytes())),
        // A quota is the operator's: ADMIN on the partition itself does not lift it.
        Permission::AdminOrAllForQuotas if super::partition::alter_sets_quota(args) => {
            if user.allows(Perms::ADMIN, ALL.as_bytes()) {
                Ok(())
            } else {
                Err(CommandError::NoPermQuota {
                    user: user.name.clone(),
                })
            }
        }
        Permission::SelfOrAdminAll => {
            if user.allows(Perms::ADMIN, ALL.as_bytes()) || args.get(2) == user.name.as_bytes() {
                Ok(())
            } else {
                Err(CommandError::NoPermUser {
                    user: user.name.clone(),
                    command: spec.name,
                })
            }
        }
        Permission::Read
        | Permission::Write
        | Permission::ReadWrite
        | Permission::WriteReadWithGet
        | Permission::Admin
        | Permission::AdminOrAllForQuotas
        | Permission::Any => {
            // Every row with these permissions names its partition (checked by a test).
            let partition = args.get(spec.partition_arg.unwrap_or(1));
            let allowed = if spec.permission == Permission::Any {
                partition != ALL.as_bytes() && !held(user, partition).is_empty()
            } else {
                user.allows(needed, partition)
            };
            if allowed {
                return Ok(());
            }
            let missing = partition != ALL.as_bytes() && catalog.get(partition).is_none();
            if missing && !user.all.is_empty() {
                Err(CommandError::NoPartition(printable(partition)))
            } else {
                Err(denied(partition))
            }
        }
    }
}

/// What `user` effectively holds on `target` (`*` counts for every partition).
fn held(user: &User, target: &[u8]) -> Perms {
    let on = if target == ALL.as_bytes() {
        Perms::NONE
    } else {
        user.grants_on(target)
    };
    on.union(user.all).effective()
}

fn perm_name(p: Perms) -> &'static str {
    if p == Perms::READ {
        "READ"
    } else if p == Perms::WRITE {
        "WRITE"
    } else if p == Perms::READ.union(Perms::WRITE) {
        "READ and WRITE"
    } else {
        "ADMIN"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::acl::{Acl, AclChange, GrantChange};
    use crate::catalog::PartitionMeta;
    use crate::command::{lookup, COMMANDS};
    use crate::protocol::Span;
    use crate::store::{PersistMode, Schema};

    /// The five grant levels of the matrix, as (label, target, perms).
    const LEVELS: [(&str, &str, Perms); 5] = [
        ("none", "", Perms::NONE),
        ("READ p", "p", Perms::READ),
        ("WRITE p", "p", Perms::WRITE),
        ("ADMIN p", "p", Perms::ADMIN),
        ("ADMIN *", "*", Perms::ADMIN),
    ];

    /// Every command with sample arguments, and whether each level may run it (docs/commands.md's
    /// tables, written out by hand rather than derived from the command table, so that a
    /// wrong row in the table fails here). `u` is the caller itself, `v` another user.
    pub(crate) const MATRIX: &[(&str, [bool; 5])] = &[
        ("GET p k", [false, true, false, true, true]),
        ("MGET p k k2", [false, true, false, true, true]),
        ("EXISTS p k", [false, true, false, true, true]),
        ("DESCRIBE PARTITION p", [false, true, false, true, true]),
        ("STATS PARTITION p", [false, true, false, true, true]),
        ("SET p k 1", [false, false, true, true, true]),
        ("MSET p k 1 k2 2", [false, false, true, true, true]),
        ("DEL p k", [false, false, true, true, true]),
        ("INCR p k", [false, false, true, true, true]),
        ("DECR p k", [false, false, true, true, true]),
        ("INCRBY p k 2", [false, false, true, true, true]),
        ("DECRBY p k 2", [false, false, true, true, true]),
        ("SET p k 1 EX 10 NX", [false, false, true, true, true]),
        ("SETNX p k 1", [false, false, true, true, true]),
        ("SETEX p k 10 1", [false, false, true, true, true]),
        ("PSETEX p k 10 1", [false, false, true, true, true]),
        ("MSETNX p k 1 k2 2", [false, false, true, true, true]),
        ("APPEND p k 1", [false, false, true, true, true]),
        ("SETRANGE p k 0 1", [false, false, true, true, true]),
        ("EXPIRE p k 10", [false, false, true, true, true]),
        ("PEXPIRE p k 10 NX", [false, false, true, true, true]),
        ("EXPIREAT p k 10", [false, false, true, true, true]),
        ("PEXPIREAT p k 10", [false, false, true, true, true]),
        ("PERSIST p k", [false, false, true, true, true]),
        // A value comes back: READ as well as WRITE.
        ("SET p k 1 GET", [false, false, false, true, true]),
        ("SET p k 1 EX 10 get", [false, false, false, true, true]),
        ("GETSET p k 1", [false, false, false, true, true]),
        ("GETDEL p k", [false, false, false, true, true]),
        ("GETEX p k", [false, false, false, true, true]),
        ("GETEX p k PERSIST", [false, false, false, true, true]),
        ("TTL p k", [false, true, false, true, true]),
        ("PTTL p k", [false, true, false, true, true]),
        ("EXPIRETIME p k", [false, true, false, true, true]),
        ("PEXPIRETIME p k", [false, true, false, true, true]),
        ("STRLEN p k", [false, true, false, true, true]),
        ("GETRANGE p k 0 1", [false, true, false, true, true]),
        ("SUBSTR p k 0 1", [false, true, false, true, true]),
        ("TYPE p k", [false, true, false, true, true]),
        ("TOUCH p k k2", [false, true, false, true, true]),
        ("DBSIZE p", [false, true, false, true, true]),
        (
            "SCAN p 0 MATCH * COUNT 10",
            [false, true, false, true, true],
        ),
        ("KEYS p *", [false, true, false, true, true]),
        ("UNLINK p k", [false, false, true, true, true]),
        ("RENAME p k k2", [false, false, true, true, true]),
        ("RENAMENX p k k2", [false, false, true, true, true]),
        ("FLUSH PARTITION p", [false, false, false, true, true]),
        ("DROP PARTITION p", [false, false, false, true, true]),
        ("GRANT READ ON p TO v", [false, false, false, true, true]),
        ("REVOKE READ ON p FROM v", [false, false, false, true, true]),
        ("GRANT READ ON * TO v", [false, false, false, false, true]),
        (
            "REVOKE READ ON * FROM v",
            [false, false, false, false, true],
        ),
        (
            "CREATE PARTITION q INT MEMORY",
            [false, false, false, false, true],
        ),
        (
            "CREATE PARTITION q INT MEMORY max-keys 10",
            [false, false, false, false, true],
        ),
        (
            "ALTER PARTITION p SET eviction allkeys-lru default-ttl 10",
            [false, false, false, true, true],
        ),
        // A quota, even among other options and lowered: ADMIN on * only.
        (
            "ALTER PARTITION p SET eviction allkeys-lru max-keys 10",
            [false, false, false, false, true],
        ),
        (
            "ALTER PARTITION p SET MAX-MEMORY 0",
            [false, false, false, false, true],
        ),
        (
            "ALTER PARTITION p SET max-ops 5",
            [false, false, false, false, true],
        ),
        ("CREATE USER w pw", [false, false, false, false, true]),
        ("DROP USER v", [false, false, false, false, true]),
        ("LIST USERS", [false, false, false, false, true]),
        (
            "ALTER USER v PASSWORD x",
            [false, false, false, false, true],
        ),
        ("DESCRIBE USER v", [false, false, false, false, true]),
        ("ALTER USER u PASSWORD x", [true; 5]),
        ("DESCRIBE USER u", [true; 5]),
        ("SHUTDOWN", [false, false, false, false, true]),
        ("DEBUG FAIL-FSYNC 1", [false, false, false, false, true]),
        ("LIST PARTITIONS", [true; 5]),
        ("WHOAMI", [true; 5]),
        ("ECHO hi", [true; 5]),
        ("INFO", [true; 5]),
        ("COMMAND COUNT", [true; 5]),
        ("CLIENT ID", [true; 5]),
        ("CLIENT GETNAME", [true; 5]),
        ("CLIENT SETNAME x", [true; 5]),
        ("CLIENT SETINFO LIB-NAME x", [true; 5]),
        ("CLIENT INFO", [true; 5]),
        // Anyone may list and kill: a user without ADMIN on `*` only its own connections
        // (`shard::clients`).
        ("CLIENT LIST", [true; 5]),
        ("CLIENT KILL 1.2.3.4:5", [true; 5]),
        ("MONITOR", [false, false, false, false, true]),
        ("CONFIG GET port", [false, false, false, false, true]),
        ("SLOWLOG LEN", [false, false, false, false, true]),
        ("LATENCY LATEST", [false, false, false, false, true]),
        ("REPLICAOF NO ONE", [false, false, false, false, true]),
        ("SLAVEOF h 1", [false, false, false, false, true]),
        ("REPLSYNC 1 x", [false, false, false, false, true]),
        (
            "REPLCONF ip-address 10.0.0.1",
            [false, false, false, false, true],
        ),
        ("ROLE", [true; 5]),
        ("MULTI", [true; 5]),
        ("EXEC", [true; 5]),
        ("DISCARD", [true; 5]),
        ("WATCH p k k2", [false, true, false, true, true]),
        ("UNWATCH", [true; 5]),
        ("WAIT 1 0", [true; 5]),
        // Pub/Sub: any login at the table; each channel's permission is the shard's check
        // (`command::pubsub::check_channel`, tested there and in tests/pubsub.rs).
        ("SUBSCRIBE p:c", [true; 5]),
        ("UNSUBSCRIBE", [true; 5]),
        ("PSUBSCRIBE p:*", [true; 5]),
        ("PUNSUBSCRIBE", [true; 5]),
        ("PUBLISH p:c m", [true; 5]),
        ("PUBSUB NUMPAT", [true; 5]),
        ("PING", [true; 5]),
        ("SELECT p", [false, true, true, true, true]),
        ("RESET", [true; 5]),
        ("FLUSHDB", [true; 5]),
        ("FLUSHALL", [true; 5]),
        ("SWAPDB 0 1", [true; 5]),
        ("MOVE k 1", [true; 5]),
        ("QUIT", [true; 5]),
        ("HELLO 3", [true; 5]),
        ("AUTH u pw", [true; 5]),
        ("LOGIN u pw", [true; 5]),
    ];

    fn args_of(line: &str) -> (Vec<u8>, Vec<Span>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for w in line.split(' ') {
            let start = buf.len() as u32;
            buf.extend_from_slice(w.as_bytes());
            spans.push(Span {
                start,
                end: buf.len() as u32,
            });
        }
        (buf, spans)
    }

    fn user_at(level: usize) -> User {
        let (_, target, perms) = LEVELS[level];
        let mut acl = Acl::default()
            .apply(&AclChange::CreateUser {
                name: "u".into(),
                hash: "h".into(),
                default_partition: None,
            })
            .unwrap();
        if !perms.is_empty() {
            acl = acl
                .apply(&AclChange::Grant(GrantChange {
                    perms,
                    target: target.into(),
                    user: "u".into(),
                }))
                .unwrap();
        }
        (**acl.get(b"u").unwrap()).clone()
    }

    fn catalog_with_p() -> Catalog {
        Catalog::default().with_partition(PartitionMeta {
            name: "p".into(),
            id: 1,
            shard: 0,
            schema: Schema::Int,
            persist: PersistMode::Memory,
            created_ms: 0,
            options: Default::default(),
            stats: Arc::default(),
        })
    }

    #[test]
    fn permission_matrix() {
        let catalog = catalog_with_p();
        for (line, expected) in MATRIX {
            let (buf, spans) = args_of(line);
            let args = Args::new(&buf, &spans);
            let spec = lookup(&args).unwrap_or_else(|e| panic!("{line}: {e}"));
            for (level, &allowed) in expected.iter().enumerate() {
                let user = user_at(level);
                let result = authorize(spec, &args, Some(&user), &catalog);
                // The inline shortcuts decide as the whole check does.
                assert_eq!(result, check(spec, &args, Some(&user), &catalog), "{line}");
                assert_eq!(
                    result.is_ok(),
                    allowed,
                    "{line} as {}: {result:?}",
                    LEVELS[level].0
                );
                if let Err(e) = result {
                    assert_eq!(e.code(), "NOPERM", "{line} as {}", LEVELS[level].0);
                }
            }
            // Before login only the open commands run.
            let open = matches!(
                spec.id,
                super::super::CommandId::Ping
                    | super::super::CommandId::Quit
                    | super::super::CommandId::Hello
                    | super::super::CommandId::Auth
                    | super::super::CommandId::Login
                    | super::super::CommandId::Reset
            );
            let result = authorize(spec, &args, None, &catalog);
            assert_eq!(result, check(spec, &args, None, &catalog), "{line}");
            assert_eq!(result.is_ok(), open, "{line} unauthenticated");
            if !open {
                assert_eq!(result, Err(CommandError::NoAuth));
            }
        }
        // Every command of the table is in the matrix.
        for spec in &COMMANDS {
            assert!(
                MATRIX.iter().any(|(line, _)| {
                    let (buf, spans) = args_of(line);
                    lookup(&Args::new(&buf, &spans)).map(|s| s.id) == Ok(spec.id)
                }),
                "{} is missing from the matrix",
                spec.name
            );
        }
    }

    /// The memo answers as the whole check does, for every row of the matrix at every level,
    /// through one memo carried from request to request and from user to user (as a session's
    /// is, across logins and ACL versions), and on other partitions and names too long to
    /// remember.
    #[test]
    fn remembered_grants_answer_as_the_check_does() {
        let catalog = catalog_with_p();
        let mut memo = GrantMemo::default();
        let users: Vec<Arc<User>> = (0..LEVELS.len()).map(|l| Arc::new(user_at(l))).collect();
        let long = "q".repeat(crate::catalog::MAX_NAME_LEN + 1);
        for round in 0..2 {
            for (line, _) in MATRIX {
                let other = line.replace(" p", " q");
                let too_long = line.replace(" p", &format!(" {long}"));
                for line in [*line, other.as_str(), too_long.as_str()] {
                    let (buf, spans) = args_of(line);
                    let args = Args::new(&buf, &spans);
                    let spec = lookup(&args).unwrap_or_else(|e| panic!("{line}: {e}"));
                    for (level, user) in users.iter().enumerate() {
                        // Twice in a row: filling the memo, then reading it.
                        for _ in 0..=round {
                            assert_eq!(
                                authorize_remembered(spec, &args, Some(user), &catalog, &mut memo),
                                check(spec, &args, Some(user), &catalog),
                                "{line} as {}",
                                LEVELS[level].0
                            );
                        }
                    }
                    assert_eq!(
                        authorize_remembered(spec, &args, None, &catalog, &mut memo),
                        check(spec, &args, None, &catalog),
                        "{line} before login"
                    );
                }
            }
        }
    }

    /// A REVOKE is a new `User` (the session's is replaced from the next command on): the
    /// memo of the old one allows nothing to the new one.
    #[test]
    fn a_revoke_is_seen_by_the_next_request_despite_the_memo() {
        let catalog = catalog_with_p();
        let mut memo = GrantMemo::default();
        let (buf, spans) = args_of("GET p k");
        let args = Args::new(&buf, &spans);
        let spec = lookup(&args).unwrap();
        let reader = Arc::new(user_at(1));
        for _ in 0..2 {
            assert_eq!(
                authorize_remembered(spec, &args, Some(&reader), &catalog, &mut memo),
                Ok(())
            );
        }
        let mut revoked = (*reader).clone();
        revoked.grants.clear();
        let revoked = Arc::new(revoked);
        let e = authorize_remembered(spec, &args, Some(&revoked), &catalog, &mut memo);
        assert_eq!(e.unwrap_err().code(), "NOPERM");
        // And a grant, the other way.
        assert_eq!(
            authorize_remembered(spec, &args, Some(&reader), &catalog, &mut memo),
            Ok(())
        );
    }

    /// READ and WRITE granted apart, on `*` and on `p`: SET needs READ only with GET, and the
    /// refusal names what is missing.
    #[test]
    fn a_value_returned_by_a_write_needs_read_too() {
        let catalog = catalog_with_p();
        let mut writer = user_at(2); // WRITE on p
        let run = |user: &User, line: &str| {
            let (buf, spans) = args_of(line);
            let args = Args::new(&buf, &spans);
            let spec = lookup(&args).unwrap();
            let result = authorize(spec, &args, Some(user), &catalog);
            assert_eq!(result, check(spec, &args, Some(user), &catalog), "{line}");
            result.map_err(|e| e.to_string())
        };
        let no = |what: &str| Err(format!("user 'u' has no {what} permission on 'p'"));
        for user in [writer.clone(), {
            writer.grants.clear();
            writer.all = Perms::WRITE;
            writer.clone()
        }] {
            assert_eq!(run(&user, "SET p k v"), Ok(()));
            assert_eq!(run(&user, "SET p k v EX 10 NX"), Ok(()));
            // The key or the value named GET is not the option.
            assert_eq!(run(&user, "SET p GET GET"), Ok(()));
            assert_eq!(run(&user, "SET p k v GET"), no("READ"));
            assert_eq!(run(&user, "SET p k v nx get"), no("READ"));
            assert_eq!(run(&user, "GETDEL p k"), no("READ"));
        }
        let mut reader = user_at(1);
        assert_eq!(run(&reader, "GETSET p k v"), no("WRITE"));
        reader.all = Perms::WRITE;
        assert_eq!(run(&reader, "GETSET p k v"), Ok(()));
        assert_eq!(run(&reader, "SET p k v GET"), Ok(()));
        assert_eq!(run(&user_at(0), "GETEX p k"), no("READ and WRITE"));
    }

    #[test]
    fn partition_commands_name_their_partition() {
        for spec in &COMMANDS {
            if matches!(
                spec.permission,
                Permission::Read
                    | Permission::Write
                    | Permission::ReadWrite
                    | Permission::WriteReadWithGet
                    | Permission::Admin
                    | Permission::AdminOrAllForQuotas
                    | Permission::Any
            ) {
                assert!(spec.partition_arg.is_some(), "{}", spec.name);
            }
        }
    }

    #[test]
    fn missing_partitions_do_not_leak() {
        let catalog = catalog_with_p();
        let (buf, spans) = args_of("GET secret k");
        let args = Args::new(&buf, &spans);
        let spec = lookup(&args).unwrap();
        // READ on p only: the same NOPERM as for an existing partition.
        let reader = user_at(1);
        let e = authorize(spec, &args, Some(&reader), &catalog).unwrap_err();
        assert_eq!(e.code(), "NOPERM");
        let (buf2, spans2) = args_of("SET p k 1");
        let args2 = Args::new(&buf2, &spans2);
        let e2 = authorize(lookup(&args2).unwrap(), &args2, Some(&reader), &catalog).unwrap_err();
        assert_eq!(e2.code(), "NOPERM");
        // ADMIN on *: may know, so NOPARTITION flows through (allowed, then not found).
        assert!(authorize(spec, &args, Some(&user_at(4)), &catalog).is_ok());
        // WRITE on *, asking to read a missing partition: NOPARTITION, not NOPERM.
        let mut writer = user_at(0);
        writer.all = Perms::WRITE;
        let e = authorize(spec, &args, Some(&writer), &catalog).unwrap_err();
        assert_eq!(e.code(), "NOPARTITION");
    }
}

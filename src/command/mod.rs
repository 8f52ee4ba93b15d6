//! The command table and the command families.
//!
//! [`lookup`] turns a request's first words into a [`CommandSpec`]: its name, arity,
//! permission, and *route* — where it runs:
//! - [`Route::Partition`]: on the shard that owns the partition named by argument 1 (data
//!   commands, in [`data`]); locally or forwarded, the same function runs;
//! - [`Route::Coordinator`]: on the coordinator, which changes the catalog (CREATE/DROP
//!   PARTITION, in [`partition`]) or the ACL (users and grants, in [`user`]);
//! - [`Route::Connection`]: right where the connection lives (PING, HELLO, INFO, LIST and
//!   DESCRIBE, ... in [`server`] and [`partition`]).
//!
//! Help text (`COMMAND`), permission checks ([`access`]) and routing all read this one table.
//! Commands never touch sockets: they get arguments and state and write a reply.

pub mod access;
pub mod data;
pub mod error;
pub mod partition;
pub mod server;
pub mod user;

pub use error::CommandError;

use crate::protocol::Args;

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// On the shard owning the partition named by argument 1.
    Partition,
    /// On the coordinator (shard 0), which owns the catalog and the ACL.
    Coordinator,
    /// On the connection's own shard.
    Connection,
}

/// What a caller must hold to run a command (checked by [`access::authorize`] before the
/// command is routed anywhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Served before authentication (AUTH, HELLO, PING, QUIT).
    Open,
    /// Any authenticated user.
    Authenticated,
    /// READ on the partition named by argument `partition_arg`.
    Read,
    /// WRITE on that partition.
    Write,
    /// ADMIN on that partition.
    Admin,
    /// ADMIN on `*`.
    AdminAll,
    /// ADMIN on `*`, or being the user named by argument 2 (ALTER USER, DESCRIBE USER).
    SelfOrAdminAll,
}

/// Every command GoKV knows, one variant each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandId {
    Get,
    Set,
    Del,
    Exists,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    MGet,
    MSet,
    CreatePartition,
    DropPartition,
    ListPartitions,
    DescribePartition,
    StatsPartition,
    Ping,
    Echo,
    Quit,
    Hello,
    Command,
    Client,
    Info,
    Config,
    Shutdown,
    Debug,
    Auth,
    Login,
    Whoami,
    CreateUser,
    DropUser,
    AlterUser,
    Grant,
    Revoke,
    ListUsers,
    DescribeUser,
}

/// One row of the command table.
#[derive(Debug)]
pub struct CommandSpec {
    pub id: CommandId,
    /// Lowercase, with the subcommand for two-word commands (`create partition`).
    pub name: &'static str,
    /// Redis convention over all words: `n` exactly n arguments, `-n` at least n.
    pub arity: i32,
    pub permission: Permission,
    pub route: Route,
    /// Argument index of the partition name, if the command names one.
    pub partition_arg: Option<usize>,
    /// Redis-style flags for `COMMAND INFO` (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
}

impl CommandSpec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let n = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            argc == n
        } else {
            argc >= n
        }
    }

    /// The top-level word (`create` for `create partition`).
    pub fn top_name(&self) -> &'static str {
        self.name.split(' ').next().unwrap_or(self.name)
    }
}

macro_rules! spec {
    ($id:ident, $name:literal, $arity:expr, $perm:ident, $route:ident, $part:expr, [$($flag:literal),*]) => {
        CommandSpec {
            id: CommandId::$id,
            name: $name,
            arity: $arity,
            permission: Permission::$perm,
            route: Route::$route,
            partition_arg: $part,
            flags: &[$($flag),*],
        }
    };
}

/// The command table. `COMMAND` lists it in this order.
pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        Get,
        "get",
        3,
        Read,
        Partition,
        Some(1),
        ["readonly", "fast"]
    ),
    spec!(
        Set,
        "set",
        4,
        Write,
        Partition,
        Some(1),
        ["write", "denyoom"]
    ),
    spec!(Del, "del", -3, Write, Partition, Some(1), ["write"]),
    spec!(
        Exists,
        "exists",
        -3,
        Read,
        Partition,
        Some(1),
        ["readonly", "fast"]
    ),
    spec!(
        Incr,
        "incr",
        3,
        Write,
        Partition,
        Some(1),
        ["write", "denyoom", "fast"]
    ),
    spec!(
        Decr,
        "decr",
        3,
        Write,
        Partition,
        Some(1),
        ["write", "denyoom", "fast"]
    ),
    spec!(
        IncrBy,
        "incrby",
        4,
        Write,
        Partition,
        Some(1),
        ["write", "denyoom", "fast"]
    ),
    spec!(
        DecrBy,
        "decrby",
        4,
        Write,
        Partition,
        Some(1),
        ["write", "denyoom", "fast"]
    ),
    spec!(
        MGet,
        "mget",
        -3,
        Read,
        Partition,
        Some(1),
        ["readonly", "fast"]
    ),
    spec!(
        MSet,
        "mset",
        -4,
        Write,
        Partition,
        Some(1),
        ["write", "denyoom"]
    ),
    spec!(
        CreatePartition,
        "create partition",
        5,
        AdminAll,
        Coordinator,
        Some(2),
        ["write", "admin"]
    ),
    spec!(
        DropPartition,
        "drop partition",
        3,
        Admin,
        Coordinator,
        Some(2),
        ["write", "admin"]
    ),
    spec!(
        ListPartitions,
        "list partitions",
        2,
        Authenticated,
        Connection,
        None,
        ["readonly"]
    ),
    spec!(
        DescribePartition,
        "describe partition",
        3,
        Read,
        Connection,
        Some(2),
        ["readonly"]
    ),
    spec!(
        StatsPartition,
        "stats partition",
        3,
        Read,
        Connection,
        Some(2),
        ["readonly"]
    ),
    spec!(Ping, "ping", -1, Open, Connection, None, ["fast"]),
    spec!(Echo, "echo", 2, Authenticated, Connection, None, ["fast"]),
    spec!(Quit, "quit", -1, Open, Connection, None, ["fast"]),
    spec!(Hello, "hello", -1, Open, Connection, None, ["fast"]),
    spec!(
        Command,
        "command",
        -1,
        Authenticated,
        Connection,
        None,
        ["loading"]
    ),
    spec!(Client, "client", -2, Authenticated, Connection, None, []),
    spec!(
        Info,
        "info",
        -1,
        Authenticated,
        Connection,
        None,
        ["loading"]
    ),
    spec!(
        Config,
        "config",
        -2,
        Authenticated,
        Connection,
        None,
        ["admin"]
    ),
    spec!(
        Shutdown,
        "shutdown",
        -1,
        AdminAll,
        Connection,
        None,
        ["admin"]
    ),
    spec!(Debug, "debug", -2, AdminAll, Connection, None, ["admin"]),
    spec!(Auth, "auth", -2, Open, Connection, None, ["fast"]),
    spec!(Login, "login", 3, Open, Connection, None, ["fast"]),
    spec!(
        Whoami,
        "whoami",
        1,
        Authenticated,
        Connection,
        None,
        ["fast"]
    ),
    spec!(
        CreateUser,
        "create user",
        4,
        AdminAll,
        Coordinator,
        None,
        ["admin"]
    ),
    spec!(
        DropUser,
        "drop user",
        3,
        AdminAll,
        Coordinator,
        None,
        ["admin"]
    ),
    spec!(
        AlterUser,
        "alter user",
        5,
        SelfOrAdminAll,
        Coordinator,
        None,
        ["admin"]
    ),
    // The partition (or `*`) is argument 3: GRANT <perm> ON <partition> TO <user>.
    spec!(Grant, "grant", 6, Admin, Coordinator, Some(3), ["admin"]),
    spec!(Revoke, "revoke", 6, Admin, Coordinator, Some(3), ["admin"]),
    spec!(
        ListUsers,
        "list users",
        2,
        AdminAll,
        Connection,
        None,
        ["admin"]
    ),
    spec!(
        DescribeUser,
        "describe user",
        3,
        SelfOrAdminAll,
        Connection,
        None,
        ["admin"]
    ),
];

fn spec(id: CommandId) -> &'static CommandSpec {
    // Invariant: COMMANDS has one row per CommandId (checked by a unit test).
    COMMANDS.iter().find(|s| s.id == id).unwrap_or(&COMMANDS[0])
}

/// Longest command word we compare; longer words cannot be a command.
const MAX_WORD: usize = 16;

/// Uppercases a command word into `buf`; `None` if it is too long to be a command.
#[inline]
fn upper<'b>(word: &[u8], buf: &'b mut [u8; MAX_WORD]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..word.len())?;
    for (o, &c) in out.iter_mut().zip(word) {
        *o = c.to_ascii_uppercase();
    }
    Some(out)
}

/// Finds the command a request names and checks its arity.
pub fn lookup(args: &Args) -> Result<&'static CommandSpec, CommandError> {
    let mut buf = [0u8; MAX_WORD];
    let name = args.get(0);
    let unknown = || CommandError::UnknownCommand(error::printable(name));
    let id = match upper(name, &mut buf).ok_or_else(unknown)? {
        b"GET" => CommandId::Get,
        b"SET" => CommandId::Set,
        b"DEL" => CommandId::Del,
        b"EXISTS" => CommandId::Exists,
        b"INCR" => CommandId::Incr,
        b"DECR" => CommandId::Decr,
        b"INCRBY" => CommandId::IncrBy,
        b"DECRBY" => CommandId::DecrBy,
        b"MGET" => CommandId::MGet,
        b"MSET" => CommandId::MSet,
        b"PING" => CommandId::Ping,
        b"ECHO" => CommandId::Echo,
        b"QUIT" => CommandId::Quit,
        b"HELLO" => CommandId::Hello,
        b"COMMAND" => CommandId::Command,
        b"CLIENT" => CommandId::Client,
        b"INFO" => CommandId::Info,
        b"CONFIG" => CommandId::Config,
        b"SHUTDOWN" => CommandId::Shutdown,
        b"DEBUG" => CommandId::Debug,
        b"AUTH" => CommandId::Auth,
        b"LOGIN" => CommandId::Login,
        b"WHOAMI" => CommandId::Whoami,
        b"GRANT" => CommandId::Grant,
        b"REVOKE" => CommandId::Revoke,
        top @ (b"CREATE" | b"DROP" | b"LIST" | b"DESCRIBE" | b"STATS" | b"ALTER") => {
            let top: &'static str = match top {
                b"CREATE" => "create",
                b"DROP" => "drop",
                b"LIST" => "list",
                b"DESCRIBE" => "describe",
                b"ALTER" => "alter",
                _ => "stats",
            };
            if args.len() < 2 {
                return Err(CommandError::WrongArity(top));
            }
            let mut sub_buf = [0u8; MAX_WORD];
            let sub = args.get(1);
            let unknown_sub = || CommandError::UnknownSubcommand {
                command: top,
                sub: error::printable(sub),
            };
            match (top, upper(sub, &mut sub_buf).ok_or_else(unknown_sub)?) {
                ("create", b"PARTITION") => CommandId::CreatePartition,
                ("drop", b"PARTITION") => CommandId::DropPartition,
                ("list", b"PARTITIONS") => CommandId::ListPartitions,
                ("describe", b"PARTITION") => CommandId::DescribePartition,
                ("stats", b"PARTITION") => CommandId::StatsPartition,
                ("create", b"USER") => CommandId::CreateUser,
                ("drop", b"USER") => CommandId::DropUser,
                ("alter", b"USER") => CommandId::AlterUser,
                ("list", b"USERS") => CommandId::ListUsers,
                ("describe", b"USER") => CommandId::DescribeUser,
                _ => return Err(unknown_sub()),
            }
        }
        _ => return Err(unknown()),
    };
    let spec = spec(id);
    if !spec.arity_ok(args.len()) {
        return Err(CommandError::WrongArity(spec.name));
    }
    Ok(spec)
}

/// Checks a key against the configured limit.
#[inline]
pub fn check_key(key: &[u8], max_key_len: usize) -> Result<(), CommandError> {
    if key.len() > max_key_len {
        Err(CommandError::KeyTooLong { max: max_key_len })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Span;

    fn args_of(words: &[&str]) -> (Vec<u8>, Vec<Span>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for w in words {
            let start = buf.len() as u32;
            buf.extend_from_slice(w.as_bytes());
            spans.push(Span {
                start,
                end: buf.len() as u32,
            });
        }
        (buf, spans)
    }

    fn find(words: &[&str]) -> Result<CommandId, CommandError> {
        let (buf, spans) = args_of(words);
        lookup(&Args::new(&buf, &spans)).map(|s| s.id)
    }

    #[test]
    fn every_id_has_one_row() {
        for row in COMMANDS {
            assert_eq!(COMMANDS.iter().filter(|r| r.id == row.id).count(), 1);
            assert_eq!(spec(row.id).id, row.id);
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_checks_arity() {
        assert_eq!(find(&["get", "p", "k"]), Ok(CommandId::Get));
        assert_eq!(find(&["GeT", "p", "k"]), Ok(CommandId::Get));
        assert_eq!(find(&["get", "p"]), Err(CommandError::WrongArity("get")));
        assert_eq!(
            find(&["create", "Partition", "a", "INT", "MEMORY"]),
            Ok(CommandId::CreatePartition)
        );
        assert_eq!(find(&["list", "partitions"]), Ok(CommandId::ListPartitions));
        assert_eq!(find(&["list"]), Err(CommandError::WrongArity("list")));
        assert!(matches!(
            find(&["list", "things"]),
            Err(CommandError::UnknownSubcommand { .. })
        ));
        assert_eq!(
            find(&["nosuchcommandatall", "x"]),
            Err(CommandError::UnknownCommand("nosuchcommandatall".into()))
        );
        assert_eq!(
            find(&["mset", "p", "k"]),
            Err(CommandError::WrongArity("mset"))
        );
    }
}

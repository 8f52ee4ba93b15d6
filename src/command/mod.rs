//! The command table and the command families.
//!
//! One row of [`COMMANDS`] per [`CommandId`] is the only place a fact about a command lives:
//! its name, arity, flags (`write`, `readonly`, `admin`, ...), permission, partition argument,
//! key positions, and its [`Handler`], the function that runs it. The handler's kind is also
//! where it runs ([`CommandSpec::route`]):
//! - [`Handler::Read`] / [`Handler::Write`]: on the shard that owns the partition named by
//!   the row's `partition_arg` (argument 1 of a data command, in [`data`] and its families'
//!   files [`string`], [`expire`], [`keys`]; 2 of FLUSH PARTITION); locally or forwarded, the
//!   same function runs. (In Redis grammar, after `SELECT`, a request names no partition: the
//!   shard inserts the selected one before it looks the request up, see [`face`].) A
//!   read gets the partition read-only; only a write gets the [`data::Writes`] that journal
//!   a durable partition's changes, and the shard sends a command through the durable path
//!   exactly when its row says `write` (checked against the handler when this file compiles);
//! - [`Handler::Coordinator`]: parsed where the connection lives into [`CoordinatorWork`] for
//!   the coordinator, which changes the catalog (CREATE/DROP PARTITION, in [`partition`]) or
//!   the ACL (users and grants, in [`user`]);
//! - [`Handler::Connection`]: right where the connection lives (PING, HELLO, INFO, LIST and
//!   DESCRIBE, ... in [`server`], [`partition`] and [`user`]).
//!
//! A new command is one row here plus one function in its family's file: the enum, the
//! table, [`spec`] and the name index are generated from the rows, so an id cannot lack a row,
//! and no executor matches over `CommandId` (a handler is a function named by the row).
//!
//! [`lookup`] finds a request's row by its names through an index built from the table when
//! the crate compiles (a perfect hash on the case-folded word packed into one integer, its
//! seed searched then too): a few loads, one multiply, one integer comparison, no loop and
//! no allocation. Help text (`COMMAND`), permission checks ([`access`]),
//! routing and logging all read this one table. Commands never touch sockets: they get
//! arguments and state and write a reply.

pub mod access;
pub mod client;
pub mod config;
pub mod data;
pub mod error;
pub mod expire;
pub mod face;
pub mod glob;
pub mod keys;
pub mod monitor;
pub mod multi;
pub mod partition;
pub mod pubsub;
pub mod quota;
pub mod replication;
pub mod server;
pub mod string;
pub mod user;

pub use error::CommandError;

use crate::acl::hasher::NewPassword;
use crate::acl::AclChange;
use crate::protocol::{Args, ReplyWriter};

use partition::{AlterPartition, CreatePartition};
use server::{ServerView, Session};

/// Where a command runs (what its [`Handler`] implies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// On the shard owning the partition named by the row's `partition_arg` (argument 1 for
    /// every data command; 2 for FLUSH PARTITION).
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
    /// READ and WRITE on it: a write whose reply is the value it replaced or removed
    /// (GETSET, GETDEL, GETEX).
    ReadWrite,
    /// WRITE on it, and READ too when the request has a `GET` option (SET ... GET answers
    /// the old value). Checked without looking at the arguments for a caller holding READ and
    /// WRITE on `*` (see [`access::authorize`]).
    WriteReadWithGet,
    /// ADMIN on that partition.
    Admin,
    /// ADMIN on that partition; ADMIN on `*` when the request sets a quota option
    /// (`max-memory`, `max-keys`, `max-ops`): ALTER PARTITION.
    AdminOrAllForQuotas,
    /// Any grant on that partition: READ, WRITE or ADMIN (SELECT).
    Any,
    /// ADMIN on `*`.
    AdminAll,
    /// ADMIN on `*`, or being the user named by argument 2 (ALTER USER, DESCRIBE USER).
    SelfOrAdminAll,
}

/// Redis-style command flags, a bit each (`COMMAND INFO` lists them by name).
pub mod flag {
    /// May change a partition (data commands: logged through the journal) or the catalog.
    pub const WRITE: u16 = 1 << 0;
    /// Never changes anything.
    pub const READONLY: u16 = 1 << 1;
    /// May grow memory use (refused past `max-memory`).
    pub const DENYOOM: u16 = 1 << 2;
    /// Constant time, small reply.
    pub const FAST: u16 = 1 << 3;
    /// An operator command.
    pub const ADMIN: u16 = 1 << 4;
    /// Answered while the server is loading.
    pub const LOADING: u16 = 1 << 5;
    /// GoKV's own, not shown by `COMMAND INFO`: a single-key command, or PING and ECHO,
    /// whose work is bounded by its arguments' size, so that on small arguments it cannot
    /// run long (its statistics and the slow log time it one call in `DATA_SAMPLE`: see
    /// `slowlog::time_every_call`).
    pub const BOUNDED: u16 = 1 << 6;
    /// Refused between MULTI and EXEC (see `command::multi`).
    pub const NO_MULTI: u16 = 1 << 7;

    /// Every flag with its `COMMAND INFO` name, in the order they are listed.
    pub const NAMES: [(u16, &str); 7] = [
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (FAST, "fast"),
        (ADMIN, "admin"),
        (LOADING, "loading"),
        (NO_MULTI, "no_multi"),
    ];
}

/// Which arguments are keys, in Redis's convention: `first`, then every `step`-th up to
/// `last` (`-1`: the last argument). `first == 0`: no keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    pub first: u8,
    pub last: i8,
    pub step: u8,
}

impl Keys {
    pub const NONE: Keys = Keys {
        first: 0,
        last: 0,
        step: 0,
    };
    /// One key, argument 2 (after the partition).
    pub const ONE: Keys = Keys {
        first: 2,
        last: 2,
        step: 1,
    };
    /// Every argument from 2 on.
    pub const ALL: Keys = Keys {
        first: 2,
        last: -1,
        step: 1,
    };
    /// Key-value pairs from argument 2 on.
    pub const PAIRS: Keys = Keys {
        first: 2,
        last: -1,
        step: 2,
    };

    /// The key arguments of a request of `argc` words.
    #[inline]
    pub fn positions(self, argc: usize) -> impl Iterator<Item = usize> + Clone {
        let first = usize::from(self.first);
        let last = if self.last < 0 {
            argc.saturating_sub(self.last.unsigned_abs() as usize)
        } else {
            self.last as usize
        };
        let end = if first == 0 { 0 } else { (last + 1).min(argc) };
        (first..end).step_by(usize::from(self.step.max(1)))
    }
}

/// What a coordinator command becomes once parsed on the connection's shard, so that the
/// coordinator (and the hasher pool) only ever sees well-formed changes.
#[derive(Debug)]
pub enum CoordinatorWork {
    Create(CreatePartition),
    Alter(AlterPartition),
    Drop(String),
    Acl(AclChange),
    /// A new password to hash first (CREATE USER, ALTER USER).
    HashThen(Vec<u8>, NewPassword),
}

/// Runs a connection command and writes its reply.
pub type ConnectionFn =
    fn(&Args, &mut Session, &ServerView, &mut ReplyWriter) -> Result<(), CommandError>;

/// Parses a coordinator command.
pub type CoordinatorFn = fn(&Args) -> Result<CoordinatorWork, CommandError>;

/// The function that runs a command; its kind says where ([`CommandSpec::route`]).
#[derive(Clone, Copy)]
pub enum Handler {
    /// Reads a partition, never changes it.
    Read(data::ReadFn),
    /// May change a partition.
    Write(data::WriteFn),
    Connection(ConnectionFn),
    Coordinator(CoordinatorFn),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handler::Read(_) => "Read",
            Handler::Write(_) => "Write",
            Handler::Connection(_) => "Connection",
            Handler::Coordinator(_) => "Coordinator",
        })
    }
}

/// One row of the command table.
#[derive(Debug)]
pub struct CommandSpec {
    pub id: CommandId,
    /// Lowercase, with the subcommand for two-word commands (`create partition`).
    pub name: &'static str,
    /// How the command is written, GoKV's form (the partition where a data command takes
    /// one): words in capitals are literal, `<x>` is a required argument, `[x]` an optional
    /// one, `a|b` a choice. It is the syntax line of the command's entry in
    /// `docs/commands.md` (`tests/docs.rs` compares them) and what an arity error appends
    /// to Redis's text, so that `SET k v` says what GoKV expects. Its required words are
    /// the arity (the unit test `check_usage`).
    pub usage: &'static str,
    /// Redis convention over all words: `n` exactly n arguments, `-n` at least n.
    pub arity: i32,
    /// [`flag`] bits.
    pub flags: u16,
    pub permission: Permission,
    /// Argument index of the partition name, if the command names one.
    pub partition_arg: Option<usize>,
    /// The key arguments (each checked against `max-key-len` before a data command runs).
    pub keys: Keys,
    pub handler: Handler,
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

    /// True if the row has flag `bit`.
    #[inline]
    pub const fn has(&self, bit: u16) -> bool {
        self.flags & bit != 0
    }

    /// True for a command that may change a partition: the shard runs it through the
    /// partition's journal (and its reply waits for the commit) when the partition is durable.
    #[inline]
    pub const fn is_write(&self) -> bool {
        self.has(flag::WRITE)
    }

    /// The argument that names the partition a [`Route::Partition`] command runs on: the
    /// row's `partition_arg` (every such row has one: [`check_table`]).
    #[inline]
    pub const fn partition_index(&self) -> usize {
        match self.partition_arg {
            Some(i) => i,
            None => 1,
        }
    }

    /// The partition a request of this row names (empty when the row names none, or the
    /// request is shorter than the row's arity allows).
    #[inline]
    pub fn partition_name<'a>(&self, args: &Args<'a>) -> &'a [u8] {
        match self.partition_arg {
            Some(i) if i < args.len() => args.get(i),
            _ => &[],
        }
    }

    /// Where the command runs.
    #[inline]
    pub const fn route(&self) -> Route {
        match self.handler {
            Handler::Read(_) | Handler::Write(_) => Route::Partition,
            Handler::Connection(_) => Route::Connection,
            Handler::Coordinator(_) => Route::Coordinator,
        }
    }

    /// The flags' names, for `COMMAND INFO`.
    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        flag::NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, name)| *name)
    }
}

/// Defines [`CommandId`] (one variant per row), the table in the same order, and
/// `CommandId::ALL`; each row gets its `id` from its variant.
macro_rules! command_table {
    ($($id:ident => { $($field:ident: $value:expr),* $(,)? }),* $(,)?) => {
        /// Every command GoKV knows, one variant each (a row of [`COMMANDS`] each).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CommandId {
            $($id),*
        }

        impl CommandId {
            /// Every id, in table order.
            pub const ALL: [CommandId; [$(CommandId::$id),*].len()] = [$(CommandId::$id),*];
        }

        /// The table as a constant, so that the name index can be built from it when the
        /// crate compiles.
        const TABLE: [CommandSpec; CommandId::ALL.len()] = [
            $(CommandSpec { id: CommandId::$id, $($field: $value),* }),*
        ];
    };
}

use flag::{ADMIN, BOUNDED, DENYOOM, FAST, LOADING, NO_MULTI, READONLY, WRITE};

command_table! {
    Get => {
        usage: "GET <partition> <key>",
        name: "get", arity: 3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(string::get),
    },
    Set => {
        usage: "SET <partition> <key> <value> [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-seconds|PXAT unix-milliseconds|KEEPTTL]",
        name: "set", arity: -4, flags: WRITE | DENYOOM | BOUNDED, permission: Permission::WriteReadWithGet,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::set),
    },
    Del => {
        usage: "DEL <partition> <key> [key ...]",
        name: "del", arity: -3, flags: WRITE, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Write(data::del),
    },
    Exists => {
        usage: "EXISTS <partition> <key> [key ...]",
        name: "exists", arity: -3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Read(data::exists),
    },
    Incr => {
        usage: "INCR <partition> <key>",
        name: "incr", arity: 3, flags: WRITE | DENYOOM | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::incr),
    },
    Decr => {
        usage: "DECR <partition> <key>",
        name: "decr", arity: 3, flags: WRITE | DENYOOM | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::decr),
    },
    IncrBy => {
        usage: "INCRBY <partition> <key> <increment>",
        name: "incrby", arity: 4, flags: WRITE | DENYOOM | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::incrby),
    },
    DecrBy => {
        usage: "DECRBY <partition> <key> <decrement>",
        name: "decrby", arity: 4, flags: WRITE | DENYOOM | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::decrby),
    },
    MGet => {
        usage: "MGET <partition> <key> [key ...]",
        name: "mget", arity: -3, flags: READONLY | FAST, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Read(string::mget),
    },
    MSet => {
        usage: "MSET <partition> <key> <value> [key value ...]",
        name: "mset", arity: -4, flags: WRITE | DENYOOM, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::PAIRS, handler: Handler::Write(string::mset),
    },
    // The string and expire families (string.rs, expire.rs), Redis's arities plus one.
    SetNx => {
        usage: "SETNX <partition> <key> <value>",
        name: "setnx", arity: 4, flags: WRITE | DENYOOM | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::setnx),
    },
    SetEx => {
        usage: "SETEX <partition> <key> <seconds> <value>",
        name: "setex", arity: 5, flags: WRITE | DENYOOM | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::setex),
    },
    PSetEx => {
        usage: "PSETEX <partition> <key> <milliseconds> <value>",
        name: "psetex", arity: 5, flags: WRITE | DENYOOM | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::psetex),
    },
    GetSet => {
        usage: "GETSET <partition> <key> <value>",
        name: "getset", arity: 4, flags: WRITE | DENYOOM | FAST | BOUNDED,
        permission: Permission::ReadWrite, partition_arg: Some(1), keys: Keys::ONE,
        handler: Handler::Write(string::getset),
    },
    GetDel => {
        usage: "GETDEL <partition> <key>",
        name: "getdel", arity: 3, flags: WRITE | FAST | BOUNDED, permission: Permission::ReadWrite,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::getdel),
    },
    GetEx => {
        usage: "GETEX <partition> <key> [EX seconds|PX milliseconds|EXAT unix-seconds|PXAT unix-milliseconds|PERSIST]",
        name: "getex", arity: -3, flags: WRITE | FAST | BOUNDED, permission: Permission::ReadWrite,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::getex),
    },
    MSetNx => {
        usage: "MSETNX <partition> <key> <value> [key value ...]",
        name: "msetnx", arity: -4, flags: WRITE | DENYOOM, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::PAIRS, handler: Handler::Write(string::msetnx),
    },
    Append => {
        usage: "APPEND <partition> <key> <value>",
        name: "append", arity: 4, flags: WRITE | DENYOOM | FAST, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::append),
    },
    SetRange => {
        usage: "SETRANGE <partition> <key> <offset> <value>",
        name: "setrange", arity: 5, flags: WRITE | DENYOOM, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(string::setrange),
    },
    GetRange => {
        usage: "GETRANGE <partition> <key> <start> <end>",
        name: "getrange", arity: 5, flags: READONLY, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(string::getrange),
    },
    // GETRANGE's old name, kept by Redis.
    Substr => {
        usage: "SUBSTR <partition> <key> <start> <end>",
        name: "substr", arity: 5, flags: READONLY, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(string::getrange),
    },
    StrLen => {
        usage: "STRLEN <partition> <key>",
        name: "strlen", arity: 3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(string::strlen),
    },
    Expire => {
        usage: "EXPIRE <partition> <key> <seconds> [NX|XX|GT|LT]",
        name: "expire", arity: -4, flags: WRITE | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(expire::expire),
    },
    PExpire => {
        usage: "PEXPIRE <partition> <key> <milliseconds> [NX|XX|GT|LT]",
        name: "pexpire", arity: -4, flags: WRITE | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(expire::pexpire),
    },
    ExpireAt => {
        usage: "EXPIREAT <partition> <key> <unix-seconds> [NX|XX|GT|LT]",
        name: "expireat", arity: -4, flags: WRITE | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(expire::expireat),
    },
    PExpireAt => {
        usage: "PEXPIREAT <partition> <key> <unix-milliseconds> [NX|XX|GT|LT]",
        name: "pexpireat", arity: -4, flags: WRITE | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(expire::pexpireat),
    },
    Persist => {
        usage: "PERSIST <partition> <key>",
        name: "persist", arity: 3, flags: WRITE | FAST | BOUNDED, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Write(expire::persist),
    },
    Ttl => {
        usage: "TTL <partition> <key>",
        name: "ttl", arity: 3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(expire::ttl),
    },
    PTtl => {
        usage: "PTTL <partition> <key>",
        name: "pttl", arity: 3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(expire::pttl),
    },
    ExpireTime => {
        usage: "EXPIRETIME <partition> <key>",
        name: "expiretime", arity: 3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(expire::expiretime),
    },
    PExpireTime => {
        usage: "PEXPIRETIME <partition> <key>",
        name: "pexpiretime", arity: 3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(expire::pexpiretime),
    },
    // The keys family (keys.rs). UNLINK is DEL: nothing is freed in the background.
    Type => {
        usage: "TYPE <partition> <key>",
        name: "type", arity: 3, flags: READONLY | FAST | BOUNDED, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ONE, handler: Handler::Read(keys::key_type),
    },
    Touch => {
        usage: "TOUCH <partition> <key> [key ...]",
        name: "touch", arity: -3, flags: READONLY | FAST, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Read(keys::touch),
    },
    Unlink => {
        usage: "UNLINK <partition> <key> [key ...]",
        name: "unlink", arity: -3, flags: WRITE | FAST, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Write(data::del),
    },
    Rename => {
        usage: "RENAME <partition> <key> <newkey>",
        name: "rename", arity: 4, flags: WRITE, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Write(keys::rename),
    },
    RenameNx => {
        usage: "RENAMENX <partition> <key> <newkey>",
        name: "renamenx", arity: 4, flags: WRITE | FAST, permission: Permission::Write,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Write(keys::renamenx),
    },
    DbSize => {
        usage: "DBSIZE <partition>",
        name: "dbsize", arity: 2, flags: READONLY | FAST, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::NONE, handler: Handler::Read(keys::dbsize),
    },
    Scan => {
        usage: "SCAN <partition> <cursor> [MATCH pattern] [COUNT count] [TYPE type]",
        name: "scan", arity: -3, flags: READONLY, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::NONE, handler: Handler::Read(keys::scan),
    },
    // A full walk of the partition in one command; its reply is bounded by max-keys-reply.
    KeysMatching => {
        usage: "KEYS <partition> <pattern>",
        name: "keys", arity: 3, flags: READONLY, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::NONE, handler: Handler::Read(keys::keys),
    },
    // Runs on the partition's shard like a data write (journaled), but names the partition
    // as argument 2, so routing reads `partition_arg`.
    FlushPartition => {
        usage: "FLUSH PARTITION <name>",
        name: "flush partition", arity: 3, flags: WRITE | ADMIN, permission: Permission::Admin,
        partition_arg: Some(2), keys: Keys::NONE, handler: Handler::Write(keys::flush),
    },
    // The Redis face (face.rs): SELECT puts the connection in Redis grammar on a partition,
    // RESET takes it back. In Redis grammar FLUSHDB is FLUSH PARTITION of the selected one.
    Select => {
        usage: "SELECT <partition>",
        name: "select", arity: 2, flags: FAST | LOADING | NO_MULTI, permission: Permission::Any,
        partition_arg: Some(1), keys: Keys::NONE, handler: Handler::Connection(face::select),
    },
    // Open, as Redis's: it logs the connection out, which needs no login.
    Reset => {
        usage: "RESET",
        name: "reset", arity: 1, flags: FAST | LOADING, permission: Permission::Open,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(face::reset),
    },
    FlushDb => {
        usage: "FLUSHDB [ASYNC|SYNC]",
        name: "flushdb", arity: -1, flags: WRITE, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(face::flushdb),
    },
    FlushAll => {
        usage: "FLUSHALL [ASYNC|SYNC]",
        name: "flushall", arity: -1, flags: WRITE, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(face::flushall),
    },
    SwapDb => {
        usage: "SWAPDB <index1> <index2>",
        name: "swapdb", arity: 3, flags: WRITE, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(face::swapdb),
    },
    Move => {
        usage: "MOVE <key> <db>",
        name: "move", arity: 3, flags: WRITE, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(face::move_key),
    },
    CreatePartition => {
        usage: "CREATE PARTITION <name> <INT|STRING> <MEMORY|ASYNC|SYNC> [<option> <value> ...]",
        name: "create partition", arity: -5, flags: WRITE | ADMIN,
        permission: Permission::AdminAll, partition_arg: Some(2), keys: Keys::NONE,
        handler: Handler::Coordinator(partition::create),
    },
    AlterPartition => {
        usage: "ALTER PARTITION <name> SET <option> <value> [<option> <value> ...]",
        name: "alter partition", arity: -6, flags: WRITE | ADMIN,
        permission: Permission::AdminOrAllForQuotas, partition_arg: Some(2), keys: Keys::NONE,
        handler: Handler::Coordinator(partition::alter),
    },
    DropPartition => {
        usage: "DROP PARTITION <name>",
        name: "drop partition", arity: 3, flags: WRITE | ADMIN, permission: Permission::Admin,
        partition_arg: Some(2), keys: Keys::NONE, handler: Handler::Coordinator(partition::drop),
    },
    ListPartitions => {
        usage: "LIST PARTITIONS",
        name: "list partitions", arity: 2, flags: READONLY,
        permission: Permission::Authenticated, partition_arg: None, keys: Keys::NONE,
        handler: Handler::Connection(partition::list_command),
    },
    DescribePartition => {
        usage: "DESCRIBE PARTITION <name>",
        name: "describe partition", arity: 3, flags: READONLY, permission: Permission::Read,
        partition_arg: Some(2), keys: Keys::NONE,
        handler: Handler::Connection(partition::describe_command),
    },
    StatsPartition => {
        usage: "STATS PARTITION <name>",
        name: "stats partition", arity: 3, flags: READONLY, permission: Permission::Read,
        partition_arg: Some(2), keys: Keys::NONE,
        handler: Handler::Connection(partition::stats_command),
    },
    Ping => {
        usage: "PING [message]",
        name: "ping", arity: -1, flags: FAST | BOUNDED, permission: Permission::Open,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::ping),
    },
    Echo => {
        usage: "ECHO <message>",
        name: "echo", arity: 2, flags: FAST | BOUNDED, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::echo),
    },
    Quit => {
        usage: "QUIT",
        name: "quit", arity: -1, flags: FAST, permission: Permission::Open,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::quit),
    },
    Hello => {
        usage: "HELLO [protover [AUTH username password] [SETNAME clientname]]",
        name: "hello", arity: -1, flags: FAST | NO_MULTI, permission: Permission::Open,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::hello),
    },
    Command => {
        usage: "COMMAND [COUNT|INFO [command ...]|DOCS [command ...]]",
        name: "command", arity: -1, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::command),
    },
    // The CLIENT group (client.rs). LIST, KILL and INFO need the shard's view of its
    // connections (shard/clients.rs runs them; LIST and KILL ask every shard); a caller
    // without ADMIN on `*` sees and kills only its own user's connections. LIST and KILL
    // carry `admin` as in Redis, which keeps them out of MONITOR.
    ClientId => {
        usage: "CLIENT ID",
        name: "client id", arity: 2, flags: FAST, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::id),
    },
    ClientGetName => {
        usage: "CLIENT GETNAME",
        name: "client getname", arity: 2, flags: FAST, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::getname),
    },
    ClientSetName => {
        usage: "CLIENT SETNAME <name>",
        name: "client setname", arity: 3, flags: FAST, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::setname),
    },
    ClientSetInfo => {
        usage: "CLIENT SETINFO <LIB-NAME|LIB-VER> <value>",
        name: "client setinfo", arity: 4, flags: FAST, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::setinfo),
    },
    ClientInfo => {
        usage: "CLIENT INFO",
        name: "client info", arity: 2, flags: 0, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::shard_path),
    },
    ClientList => {
        usage: "CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]",
        name: "client list", arity: -2, flags: ADMIN, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::shard_path),
    },
    ClientKill => {
        usage: "CLIENT KILL <ip:port|filter value [filter value ...]>",
        name: "client kill", arity: -3, flags: ADMIN, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::shard_path),
    },
    // Every command any shard runs, as Redis 7 shows it (shard/clients.rs).
    Monitor => {
        usage: "MONITOR",
        name: "monitor", arity: 1, flags: ADMIN | NO_MULTI, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(client::shard_path),
    },
    // Pub/Sub (pubsub.rs; the shard runs them: shard/pubsub.rs). Channel permissions are
    // checked per channel by the shard (`pubsub::check_channel`), hence `Authenticated`
    // here. PUBLISH is no write to the data: it runs on a replica too.
    Subscribe => {
        usage: "SUBSCRIBE <channel> [channel ...]",
        name: "subscribe", arity: -2, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(pubsub::shard_path),
    },
    Unsubscribe => {
        usage: "UNSUBSCRIBE [channel ...]",
        name: "unsubscribe", arity: -1, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(pubsub::shard_path),
    },
    PSubscribe => {
        usage: "PSUBSCRIBE <pattern> [pattern ...]",
        name: "psubscribe", arity: -2, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(pubsub::shard_path),
    },
    PUnsubscribe => {
        usage: "PUNSUBSCRIBE [pattern ...]",
        name: "punsubscribe", arity: -1, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(pubsub::shard_path),
    },
    Publish => {
        usage: "PUBLISH <channel> <message>",
        name: "publish", arity: 3, flags: FAST | LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(pubsub::shard_path),
    },
    Pubsub => {
        usage: "PUBSUB <CHANNELS [pattern]|NUMSUB [channel ...]|NUMPAT|HELP>",
        name: "pubsub", arity: -2, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(pubsub::shard_path),
    },
    Info => {
        usage: "INFO [section ...]",
        name: "info", arity: -1, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::info),
    },
    // Shows the data directory and limits, and changes the live ones: an operator's command.
    Config => {
        usage: "CONFIG <GET pattern [pattern ...]|SET name value [name value ...]|RESETSTAT|REWRITE|HELP>",
        name: "config", arity: -2, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(config::config),
    },
    Shutdown => {
        usage: "SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]",
        name: "shutdown", arity: -1, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::shutdown),
    },
    // The slow log and the latency monitor: an operator's commands (they show arguments).
    Slowlog => {
        usage: "SLOWLOG <GET [count]|LEN|RESET|HELP>",
        name: "slowlog", arity: -2, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE,
        handler: Handler::Connection(monitor::slowlog_command),
    },
    Latency => {
        usage: "LATENCY <LATEST|HISTORY event|RESET [event ...]|HISTOGRAM [command ...]|HELP>",
        name: "latency", arity: -2, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE,
        handler: Handler::Connection(monitor::latency_command),
    },
    Debug => {
        usage: "DEBUG <FAIL-WRITE|FAIL-FSYNC|FAIL-DIRSYNC> <count> | DEBUG SLEEP <seconds>",
        name: "debug", arity: -2, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(server::debug),
    },
    // Transactions (multi.rs; the shard runs them, shard/transaction.rs). WATCH names its
    // partition first, as a data command does.
    Multi => {
        usage: "MULTI",
        name: "multi", arity: 1, flags: FAST | LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(multi::shard_path),
    },
    Exec => {
        usage: "EXEC",
        name: "exec", arity: 1, flags: LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(multi::shard_path),
    },
    Discard => {
        usage: "DISCARD",
        name: "discard", arity: 1, flags: FAST | LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(multi::shard_path),
    },
    Watch => {
        usage: "WATCH <partition> <key> [key ...]",
        name: "watch", arity: -3, flags: FAST | LOADING, permission: Permission::Read,
        partition_arg: Some(1), keys: Keys::ALL, handler: Handler::Connection(multi::shard_path),
    },
    Unwatch => {
        usage: "UNWATCH",
        name: "unwatch", arity: 1, flags: FAST | LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(multi::shard_path),
    },
    // Replication (replication.rs; the design in crate::replication).
    ReplicaOf => {
        usage: "REPLICAOF <host|NO> <port|ONE>",
        name: "replicaof", arity: 3, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(replication::replicaof),
    },
    SlaveOf => {
        usage: "SLAVEOF <host|NO> <port|ONE>",
        name: "slaveof", arity: 3, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(replication::replicaof),
    },
    Role => {
        usage: "ROLE",
        name: "role", arity: 1, flags: FAST | LOADING, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(replication::role),
    },
    Wait => {
        usage: "WAIT <numreplicas> <timeout>",
        name: "wait", arity: 3, flags: 0, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(replication::wait),
    },
    // A replica's handshake: the connection becomes its feed once this is answered.
    ReplSync => {
        usage: "REPLSYNC <listening-port> <replid> [<primary-replid> <primary-run-id> [<partition-id>:<offset> ...]]",
        name: "replsync", arity: -3, flags: ADMIN | NO_MULTI, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(replication::replsync),
    },
    // Before REPLSYNC, a replica started with --replica-announce-ip names its address.
    ReplConf => {
        usage: "REPLCONF ip-address <ip>",
        name: "replconf", arity: 3, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(replication::replconf),
    },
    // AUTH and LOGIN (and HELLO ... AUTH) take the shard's login path before any handler;
    // theirs only answers if that ever stops being so.
    Auth => {
        usage: "AUTH [username] <password>",
        name: "auth", arity: -2, flags: FAST | NO_MULTI, permission: Permission::Open,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(user::login_path),
    },
    Login => {
        usage: "LOGIN <username> <password>",
        name: "login", arity: 3, flags: FAST | NO_MULTI, permission: Permission::Open,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(user::login_path),
    },
    Whoami => {
        usage: "WHOAMI",
        name: "whoami", arity: 1, flags: FAST, permission: Permission::Authenticated,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(user::whoami_command),
    },
    CreateUser => {
        usage: "CREATE USER <name> <password> [DEFAULT <partition>]",
        name: "create user", arity: -4, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Coordinator(user::create),
    },
    DropUser => {
        usage: "DROP USER <name>",
        name: "drop user", arity: 3, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Coordinator(user::drop),
    },
    AlterUser => {
        usage: "ALTER USER <name> <PASSWORD|DEFAULT> <password|partition|NONE>",
        name: "alter user", arity: 5, flags: ADMIN, permission: Permission::SelfOrAdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Coordinator(user::alter),
    },
    // The partition (or `*`) is argument 3: GRANT <perm> ON <partition> TO <user>.
    Grant => {
        usage: "GRANT <READ|WRITE|ADMIN> ON <partition|*> TO <user>",
        name: "grant", arity: 6, flags: ADMIN, permission: Permission::Admin,
        partition_arg: Some(3), keys: Keys::NONE, handler: Handler::Coordinator(user::grant),
    },
    Revoke => {
        usage: "REVOKE <READ|WRITE|ADMIN> ON <partition|*> FROM <user>",
        name: "revoke", arity: 6, flags: ADMIN, permission: Permission::Admin,
        partition_arg: Some(3), keys: Keys::NONE, handler: Handler::Coordinator(user::revoke),
    },
    ListUsers => {
        usage: "LIST USERS",
        name: "list users", arity: 2, flags: ADMIN, permission: Permission::AdminAll,
        partition_arg: None, keys: Keys::NONE, handler: Handler::Connection(user::list_command),
    },
    DescribeUser => {
        usage: "DESCRIBE USER <name>",
        name: "describe user", arity: 3, flags: ADMIN, permission: Permission::SelfOrAdminAll,
        partition_arg: None, keys: Keys::NONE,
        handler: Handler::Connection(user::describe_command),
    },
}

/// The command table, in [`CommandId`] order. `COMMAND` lists it in this order.
pub static COMMANDS: [CommandSpec; CommandId::ALL.len()] = TABLE;

impl CommandId {
    /// This command's row.
    #[inline]
    pub fn spec(self) -> &'static CommandSpec {
        // The table is generated in variant order (command_table!), so this is the row.
        &COMMANDS[self as usize]
    }
}

/// A command's row (total: every id has one).
#[inline]
pub fn spec(id: CommandId) -> &'static CommandSpec {
    id.spec()
}

/// Facts the compiler checks about the table, so that a wrong row fails the build:
/// - a data command is `write` exactly when its handler is a [`Handler::Write`] (so the
///   shard's durable path, which reads the flag, logs everything that can change data),
///   and `readonly` exactly when it is a [`Handler::Read`];
/// - a command that needs a permission on a partition names the argument holding it;
/// - names are lowercase letters, one or two words, and fit [`MAX_WORD`].
const fn check_table(table: &[CommandSpec]) {
    let mut i = 0;
    while i < table.len() {
        let row = &table[i];
        match row.handler {
            Handler::Write(_) => assert!(
                row.has(flag::WRITE) && !row.has(flag::READONLY),
                "command table: a Write handler needs the write flag"
            ),
            Handler::Read(_) => assert!(
                row.has(flag::READONLY) && !row.has(flag::WRITE),
                "command table: a Read handler needs the readonly flag, not write"
            ),
            Handler::Connection(_) | Handler::Coordinator(_) => {}
        }
        if let Handler::Read(_) | Handler::Write(_) = row.handler {
            assert!(
                row.partition_arg.is_some(),
                "command table: a data command is routed by its partition_arg"
            );
        }
        match row.permission {
            Permission::Read
            | Permission::Write
            | Permission::ReadWrite
            | Permission::WriteReadWithGet
            | Permission::Admin
            | Permission::AdminOrAllForQuotas
            | Permission::Any => assert!(
                row.partition_arg.is_some(),
                "command table: a partition permission needs partition_arg"
            ),
            Permission::Open
            | Permission::Authenticated
            | Permission::AdminAll
            | Permission::SelfOrAdminAll => {}
        }
        let name = row.name.as_bytes();
        let mut spaces = 0;
        let mut word = 0;
        let mut j = 0;
        while j < name.len() {
            let c = name[j];
            if c == b' ' {
                spaces += 1;
                assert!(word > 0, "command table: an empty word in a name");
                word = 0;
            } else {
                // The name index's case folding relies on it (see `FOLD`).
                assert!(
                    c.is_ascii_lowercase(),
                    "command table: names are lowercase letters"
                );
                word += 1;
                assert!(
                    word <= MAX_WORD,
                    "command table: a word longer than MAX_WORD"
                );
            }
            j += 1;
        }
        assert!(word > 0 && spaces <= 1, "command table: one or two words");
        i += 1;
    }
}

const _: () = check_table(&TABLE);

// ------------------------------------------------------------------------------------------
// The name index
// ------------------------------------------------------------------------------------------

/// Longest command word we compare; longer words cannot be a command. A word is compared as
/// one integer ([`Word`]): its bytes in the low 15 bytes, its length in the top one.
const MAX_WORD: usize = 15;

/// A command word packed into one integer and case-folded ([`FOLD`]), so that finding a name
/// costs one integer comparison instead of a byte-slice comparison. `0` (which no packed word
/// is: folding sets bits in every byte) is a one-word name's missing second word.
type Word = u128;

/// Bit 5 of every byte. Names hold only `a`-`z` (checked by [`check_table`]), which have it
/// set, and a byte `b` has `b | 0x20` in `a`-`z` exactly when `b` is that letter in either
/// case; so a word ORed with this equals a name's packed word exactly when it is that name
/// up to ASCII case, without lowercasing the word byte by byte. The length byte (at most 15)
/// does not use bit 5, so words of different lengths stay different.
const FOLD: Word = 0x2020_2020_2020_2020_2020_2020_2020_2020;

/// Packs a table name's word `bytes[start..end]` (when the crate compiles).
const fn pack(bytes: &[u8], start: usize, end: usize) -> Option<Word> {
    let len = end - start;
    if len > MAX_WORD {
        return None;
    }
    let mut word = [0u8; 16];
    let mut i = 0;
    while i < len {
        word[i] = bytes[start + i];
        i += 1;
    }
    word[15] = len as u8;
    Some(u128::from_le_bytes(word) | FOLD)
}

/// Packs a request's word, as [`pack`] does a name's; `None` if too long. Runs for every
/// request, so it loads the bytes with at most three overlapping reads instead of a loop.
/// (With the perfect hash, instead of a lowercasing loop and a probe loop: GET went from
/// 1533 to 1494 user-space instructions per request, SET from 2189 to 2155, measured with
/// `scripts/count-instructions.sh`.)
#[inline]
fn pack_word(b: &[u8]) -> Option<Word> {
    let len = b.len();
    // Overlapping reads cover the word; a byte read twice lands at its own place both times.
    let (lo, hi) = if len > 8 {
        if len > MAX_WORD {
            return None;
        }
        let head = <[u8; 8]>::try_from(&b[..8]).map_or(0, u64::from_le_bytes);
        let tail = <[u8; 8]>::try_from(&b[len - 8..]).map_or(0, u64::from_le_bytes);
        // `tail` holds bytes len-8..len; bytes 8.. are its top len-8 bytes.
        (head, tail >> (8 * (16 - len)))
    } else if len >= 4 {
        let head = <[u8; 4]>::try_from(&b[..4]).map_or(0, u32::from_le_bytes);
        let tail = <[u8; 4]>::try_from(&b[len - 4..]).map_or(0, u32::from_le_bytes);
        (u64::from(head) | u64::from(tail) << (8 * (len - 4)), 0)
    } else if len > 0 {
        let (first, mid, last) = (b[0], b[len / 2], b[len - 1]);
        let lo = u64::from(first)
            | u64::from(mid) << (8 * (len / 2))
            | u64::from(last) << (8 * (len - 1));
        (lo, 0)
    } else {
        (0, 0)
    };
    let hi = hi | (len as u64) << 56;
    Some((u128::from(hi) << 64 | u128::from(lo)) | FOLD)
}

/// Slots of the name index: a power of two ([`SLOT_BITS`] bits), well over ten times the
/// number of keys (one per one-word command or group word such as `create`, one per two-word
/// command), so that a seed under which no two keys share a slot ([`SEED`]) is found within
/// a few hundred tries when the crate compiles, also with forty more commands than the
/// table has (the keyspace family brings about that many). 2 KiB (1 KiB until the CLIENT
/// group's rows left too little room for forty more): a probe still reads one cache line of
/// it.
const SLOT_BITS: u32 = 11;
const INDEX_SLOTS: usize = 1 << SLOT_BITS;

/// The slot of the key (`top`, `sub`) under `seed`.
#[inline]
const fn slot_of(top: Word, sub: Word, seed: u64) -> usize {
    let x = (top as u64)
        ^ ((top >> 64) as u64).rotate_left(23)
        ^ (sub as u64).rotate_left(37)
        ^ ((sub >> 64) as u64).rotate_left(51);
    // The top bits of a multiplicative hash.
    (x.wrapping_mul(seed) >> (64 - SLOT_BITS)) as usize
}

/// Where a command's name splits: the index of its space, or its length.
const fn space_at(name: &[u8]) -> usize {
    let mut i = 0;
    while i < name.len() && name[i] != b' ' {
        i += 1;
    }
    i
}

/// Each row's name as (first word, second word or 0), then one more entry that no word
/// equals, the row an empty index slot names (so a probe needs no emptiness test).
const fn packed_names(table: &[CommandSpec]) -> [(Word, Word); CommandId::ALL.len() + 1] {
    let mut out = [(u128::MAX, u128::MAX); CommandId::ALL.len() + 1];
    let mut i = 0;
    while i < table.len() {
        let name = table[i].name.as_bytes();
        let sp = space_at(name);
        let Some(top) = pack(name, 0, sp) else {
            panic!("command table: a word longer than MAX_WORD");
        };
        let sub = if sp == name.len() {
            0
        } else {
            match pack(name, sp + 1, name.len()) {
                Some(sub) => sub,
                None => panic!("command table: a word longer than MAX_WORD"),
            }
        };
        out[i] = (top, sub);
        i += 1;
    }
    out
}

static NAMES: [(Word, Word); CommandId::ALL.len() + 1] = packed_names(&TABLE);

/// The row an empty slot names: [`NAMES`]' extra entry.
const NO_ROW: u8 = CommandId::ALL.len() as u8;

/// Most keys the index can have: one per row, plus one per group word.
const MAX_KEYS: usize = 2 * CommandId::ALL.len();

/// The index's keys with their rows, and how many there are: (first word, 0) once per first
/// word (naming a one-word command's row, or a group's first row), and (first word, second
/// word) per two-word command. Checks that no two rows share a name and that no one-word
/// command is named like a group.
const fn index_keys(table: &[CommandSpec]) -> ([(Word, Word, u8); MAX_KEYS], usize) {
    // Rows and the empty slot's row must fit a `u8`.
    assert!(
        table.len() < u8::MAX as usize,
        "command table: too many rows for the index"
    );
    let names = packed_names(table);
    let mut keys = [(0, 0, 0); MAX_KEYS];
    let mut n = 0;
    let mut i = 0;
    while i < table.len() {
        let (top, sub) = names[i];
        let mut first = true;
        let mut j = 0;
        while j < i {
            assert!(
                !(names[j].0 == top && names[j].1 == sub),
                "command table: two rows with one name"
            );
            assert!(
                !(names[j].0 == top && (names[j].1 == 0) != (sub == 0)),
                "command table: a one-word command named like a group"
            );
            if names[j].0 == top {
                first = false;
            }
            j += 1;
        }
        if first {
            keys[n] = (top, 0, i as u8);
            n += 1;
        }
        if sub != 0 {
            keys[n] = (top, sub, i as u8);
            n += 1;
        }
        i += 1;
    }
    (keys, n)
}

/// The index under `seed` of the first `n` of `keys`, if no two share a slot.
const fn index_for(keys: &[(Word, Word, u8)], n: usize, seed: u64) -> Option<[u8; INDEX_SLOTS]> {
    let mut slots = [NO_ROW; INDEX_SLOTS];
    let mut i = 0;
    while i < n {
        let (top, sub, row) = keys[i];
        let at = slot_of(top, sub, seed);
        if slots[at] != NO_ROW {
            return None;
        }
        slots[at] = row;
        i += 1;
    }
    Some(slots)
}

/// The first seed (odd, from a fixed start) under which the index has no shared slot.
const fn find_seed(keys: &[(Word, Word, u8)], n: usize) -> Option<u64> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut tries = 0;
    while tries < 4096 {
        if index_for(keys, n, seed).is_some() {
            return Some(seed);
        }
        seed = seed.wrapping_add(0x6a09_e667_f3bc_c90a); // stays odd
        tries += 1;
    }
    None
}

const KEYS: ([(Word, Word, u8); MAX_KEYS], usize) = index_keys(&TABLE);

/// The multiplier of [`slot_of`] under which every key has a slot of its own: a probe is
/// one load and one comparison.
const SEED: u64 = match find_seed(&KEYS.0, KEYS.1) {
    Some(seed) => seed,
    None => panic!("command table: no collision-free seed, grow SLOT_BITS"),
};

static INDEX: [u8; INDEX_SLOTS] = match index_for(&KEYS.0, KEYS.1, SEED) {
    Some(index) => index,
    None => panic!("command table: SEED collides"),
};

/// The row whose name's words are `top` and `sub` (`0`: the row of a one-word command, or a
/// group's first row), if any: every key has a slot of its own, so one look settles it.
#[inline]
fn find(top: Word, sub: Word) -> Option<usize> {
    let row = usize::from(INDEX[slot_of(top, sub, SEED)]);
    let (t, s) = NAMES[row];
    // A one-word look (`sub == 0`) finds a group by its first word alone.
    (t == top && (sub == 0 || s == sub)).then_some(row)
}

#[cold]
#[inline(never)]
fn unknown_command(name: &[u8]) -> CommandError {
    CommandError::UnknownCommand(error::printable(name))
}

#[cold]
#[inline(never)]
fn wrong_arity(spec: &'static CommandSpec) -> CommandError {
    CommandError::arity(spec)
}

/// A group word with no subcommand (`LIST`): the usage of every command of the group.
#[cold]
#[inline(never)]
fn group_arity(command: &'static str) -> CommandError {
    let usages: Vec<&str> = COMMANDS
        .iter()
        .filter(|row| row.top_name() == command)
        .map(|row| row.usage)
        .collect();
    CommandError::WrongArity {
        command,
        usage: usages.join(" | ").into(),
    }
}

/// Finds the command a request names and checks its arity.
///
/// Always inline: out of line, its result goes through memory (`CommandError` is large) and
/// its callers' registers are saved around it (inline: GET 1461 -> 1442 user-space
/// instructions per request, SET 2106 -> 2096, `scripts/count-instructions.sh`). The cold
/// parts (two-word commands, errors) are out of line, so what is inlined is small.
#[inline(always)]
pub fn lookup(args: &Args) -> Result<&'static CommandSpec, CommandError> {
    let name = args.get(0);
    let Some(top) = pack_word(name) else {
        return Err(unknown_command(name));
    };
    let Some(row) = find(top, 0) else {
        return Err(unknown_command(name));
    };
    let spec = if NAMES[row].1 == 0 {
        &COMMANDS[row]
    } else {
        lookup_sub(args, top, &COMMANDS[row])?
    };
    if !spec.arity_ok(args.len()) {
        return Err(wrong_arity(spec));
    }
    Ok(spec)
}

/// The two-word command of the group whose first row is `group`, by the request's second
/// word (out of line: the data commands, the hot path, are one word).
#[inline(never)]
fn lookup_sub(
    args: &Args,
    top: Word,
    group: &'static CommandSpec,
) -> Result<&'static CommandSpec, CommandError> {
    let command = group.top_name();
    if args.len() < 2 {
        return Err(group_arity(command));
    }
    let raw = args.get(1);
    let unknown_sub = || CommandError::UnknownSubcommand {
        command,
        sub: error::printable(raw),
    };
    let sub = pack_word(raw).ok_or_else(unknown_sub)?;
    let row = find(top, sub).ok_or_else(unknown_sub)?;
    Ok(&COMMANDS[row])
}

/// The row of the one-word command `name`, arity unchecked (the Redis face asks this of a
/// request before it has the partition inserted: see [`face::RedisForm::rewrite`]).
#[inline]
pub fn lookup_one_word(name: &[u8]) -> Option<&'static CommandSpec> {
    let row = find(pack_word(name)?, 0)?;
    (NAMES[row].1 == 0).then(|| &COMMANDS[row])
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

    /// The smallest argument list the row's arity allows, its name's words first.
    fn minimal_request(spec: &CommandSpec) -> Vec<String> {
        let mut words: Vec<String> = spec.name.split(' ').map(str::to_string).collect();
        while words.len() < spec.arity.unsigned_abs() as usize {
            words.push("x".into());
        }
        words
    }

    #[test]
    fn every_id_has_exactly_one_row_and_its_name_finds_it() {
        assert_eq!(COMMANDS.len(), CommandId::ALL.len());
        for id in CommandId::ALL {
            let rows: Vec<_> = COMMANDS.iter().filter(|r| r.id == id).collect();
            assert_eq!(rows.len(), 1, "{id:?} has {} rows", rows.len());
            assert_eq!(spec(id).id, id, "spec({id:?})");
            let words = minimal_request(spec(id));
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            assert_eq!(find(&words), Ok(id), "{words:?}");
            let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
            let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
            assert_eq!(find(&upper), Ok(id), "{upper:?}");
        }
    }

    #[test]
    fn data_rows_log_exactly_what_can_write() {
        for row in &COMMANDS {
            match row.handler {
                Handler::Write(_) => assert!(row.is_write(), "{}", row.name),
                Handler::Read(_) => assert!(!row.is_write(), "{}", row.name),
                Handler::Connection(_) | Handler::Coordinator(_) => {}
            }
            if row.route() == Route::Partition {
                // The partition follows the command's name (one or two words).
                let words = row.name.split(' ').count();
                assert_eq!(row.partition_arg, Some(words), "{}", row.name);
                assert!(
                    row.keys == Keys::NONE || usize::from(row.keys.first) > words,
                    "{}: keys come after the partition",
                    row.name
                );
            }
        }
    }

    #[test]
    fn a_request_word_packs_as_the_same_name_does() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..=MAX_WORD + 1 {
            for _ in 0..64 {
                let word: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                assert_eq!(pack_word(&word), pack(&word, 0, len), "{word:?}");
            }
        }
        // Folding: a name matches in any case, and nothing else of its length does.
        assert_eq!(pack_word(b"GeT"), pack(b"get", 0, 3));
        for other in [&b"ge\x14"[..], b"GE@", b"g\xc5t", b"ge", b"gett"] {
            assert_ne!(pack_word(other), pack(b"get", 0, 3), "{other:?}");
        }
    }

    #[test]
    fn the_index_has_room_for_forty_more_commands() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let keys: Vec<(Word, Word, u8)> = (0..KEYS.1 + 40)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let word = format!("{:x}z{i}", seed % (1 << 32));
                (pack(word.as_bytes(), 0, word.len()).unwrap(), 0, i as u8)
            })
            .collect();
        assert!(find_seed(&keys, keys.len()).is_some());
    }

    /// A usage's words at the top level (a `[...]` or `<...>` group, nesting included, is one
    /// word), each with whether it is optional.
    fn usage_words(usage: &str) -> Vec<(String, bool)> {
        let mut words = Vec::new();
        let (mut word, mut depth) = (String::new(), 0i32);
        for c in usage.chars() {
            match c {
                '[' | '<' => depth += 1,
                ']' | '>' => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{usage:?}: unbalanced brackets");
            if c == ' ' && depth == 0 {
                let optional = word.starts_with('[');
                words.push((std::mem::take(&mut word), optional));
            } else {
                word.push(c);
            }
        }
        assert_eq!(depth, 0, "{usage:?}: unbalanced brackets");
        let optional = word.starts_with('[');
        words.push((word, optional));
        words
    }

    /// The usage strings cannot drift from the rows: each opens with the command's name in
    /// capitals, its required words are the arity (at least the arity for a command of
    /// variable arity, whose handler checks the rest, such as CONFIG's subcommand), and only
    /// a command of variable arity has optional words.
    #[test]
    fn check_usage() {
        for row in &COMMANDS {
            let words = usage_words(row.usage);
            let name: Vec<String> = row.name.split(' ').map(str::to_ascii_uppercase).collect();
            let head: Vec<&str> = words
                .iter()
                .take(name.len())
                .map(|(w, _)| w.as_str())
                .collect();
            assert_eq!(head, name, "{}: the usage opens with the name", row.name);
            let required = words.iter().filter(|(_, optional)| !optional).count();
            let optional = words.len() - required;
            let n = row.arity.unsigned_abs() as usize;
            if row.arity >= 0 {
                assert_eq!(
                    required, n,
                    "{}: {:?} against arity {}",
                    row.name, row.usage, row.arity
                );
                assert_eq!(optional, 0, "{}: optional words, fixed arity", row.name);
            } else {
                assert!(
                    required >= n,
                    "{}: {:?} against arity {}",
                    row.name,
                    row.usage,
                    row.arity
                );
            }
            // An arity error says both: Redis's text, then GoKV's form.
            assert_eq!(
                CommandError::arity(row).to_string(),
                format!(
                    "wrong number of arguments for '{}' command (GoKV: {})",
                    row.name, row.usage
                )
            );
        }
    }

    #[test]
    fn key_positions() {
        let at = |keys: Keys, argc| keys.positions(argc).collect::<Vec<_>>();
        assert_eq!(at(Keys::ONE, 3), [2]);
        assert_eq!(at(Keys::ALL, 5), [2, 3, 4]);
        assert_eq!(at(Keys::PAIRS, 6), [2, 4]);
        assert_eq!(at(Keys::NONE, 4), Vec::<usize>::new());
    }

    #[test]
    fn lookup_is_case_insensitive_and_checks_arity() {
        assert_eq!(find(&["get", "p", "k"]), Ok(CommandId::Get));
        assert_eq!(find(&["GeT", "p", "k"]), Ok(CommandId::Get));
        assert_eq!(
            find(&["get", "p"]),
            Err(CommandError::arity(spec(CommandId::Get)))
        );
        assert_eq!(
            find(&["create", "Partition", "a", "INT", "MEMORY"]),
            Ok(CommandId::CreatePartition)
        );
        assert_eq!(find(&["list", "partitions"]), Ok(CommandId::ListPartitions));
        assert_eq!(
            find(&["list"]).map_err(|e| e.to_string()),
            Err(
                "wrong number of arguments for 'list' command (GoKV: LIST PARTITIONS | LIST USERS)"
                    .to_string()
            )
        );
        assert!(matches!(
            find(&["list", "things"]),
            Err(CommandError::UnknownSubcommand { .. })
        ));
        assert!(matches!(
            find(&["list", "partitionsandmoreandmore"]),
            Err(CommandError::UnknownSubcommand { .. })
        ));
        // A prefix or an extension of a name is not that name.
        for word in ["ge", "gett", "creat", "", "get partition"] {
            assert_eq!(
                find(&[word, "p", "k"]),
                Err(CommandError::UnknownCommand(word.into())),
                "{word:?}"
            );
        }
        assert!(matches!(
            find(&["create", "partitio", "a", "INT", "MEMORY"]),
            Err(CommandError::UnknownSubcommand { .. })
        ));
        assert_eq!(
            find(&["nosuchcommandatall", "x"]),
            Err(CommandError::UnknownCommand("nosuchcommandatall".into()))
        );
        assert_eq!(
            find(&["mset", "p", "k"]),
            Err(CommandError::arity(spec(CommandId::MSet)))
        );
    }
}

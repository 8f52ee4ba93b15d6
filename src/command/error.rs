//! The error a command answers, and the one place that turns it into a reply.

use std::borrow::Cow;
use std::fmt;

use crate::protocol::ReplyWriter;

/// Why a command failed. Every variant maps to one reply error code (listed in
/// `docs/commands.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    UnknownCommand(String),
    UnknownSubcommand {
        command: &'static str,
        sub: String,
    },
    /// A request with a number of arguments the command does not take: Redis's text for
    /// `command` first (what Redis clients, and the differential test `tests/keyspace.rs`,
    /// recognise), then GoKV's form of the command, `usage` (its row's; every command of a
    /// group for a bare group word such as `LIST`).
    WrongArity {
        command: &'static str,
        usage: Cow<'static, str>,
    },
    Syntax(String),
    InvalidName(String),
    InvalidUserName(String),
    PartitionExists(String),
    NoPartition(String),
    NotAvailable(String),
    /// An INT partition was given a value that is not a canonical i64.
    NotAnInteger,
    /// A string operation (APPEND, SETRANGE) on an INT partition, which holds integers; the
    /// command's name.
    NeedsStringPartition(&'static str),
    /// An argument that should have been an integer was not (INCRBY amount, ...), or a
    /// STRING partition's value that INCR cannot add to (Redis's text for both).
    ValueNotInteger,
    Overflow,
    /// `DECRBY` by `i64::MIN`, whose negation does not fit (Redis's own text for it).
    DecrementOverflow,
    /// A time that is not positive, or overflows once converted to ms or added to now; the
    /// command's name (Redis's `invalid expire time in '<command>' command`).
    InvalidExpireTime(&'static str),
    /// EXPIRE's options that do not go together: Redis's text, up to `options at the same
    /// time are not compatible`.
    IncompatibleOptions(&'static str),
    /// An EXPIRE option that is none of NX XX GT LT (Redis's `Unsupported option <opt>`).
    UnsupportedOption(String),
    /// SETRANGE with a negative offset.
    OffsetOutOfRange,
    /// APPEND or SETRANGE would build a value longer than `max-bulk-len`.
    StringTooLong,
    KeyTooLong {
        max: usize,
    },
    /// RENAME/RENAMENX of a key that is not there (Redis's text).
    NoSuchKey,
    /// A SCAN cursor that is not a decimal number (Redis's text).
    InvalidCursor,
    /// KEYS would answer more than `max-keys-reply` keys; nothing was sent.
    TooManyKeys {
        max: usize,
    },
    NoProto,
    /// The server is shutting down and takes no new work.
    ShuttingDown,
    /// The connection has not logged in and the command needs it.
    NoAuth,
    /// Unknown user or wrong password: deliberately does not say which.
    WrongPass,
    /// A password (to log in with, or a new one) longer than any stored password can be:
    /// refused by its length, before anything hashes it.
    PasswordTooLong {
        max: usize,
        got: usize,
    },
    /// Every slot of the password hasher's login queue is taken: answered at once instead of
    /// queueing behind a flood (see `acl::hasher`).
    TooManyLogins,
    /// Logged in, but lacks `needed` on `target` (a partition name or `*`).
    NoPerm {
        user: String,
        needed: &'static str,
        target: String,
    },
    /// Logged in, but holds ADMIN on no partition at all, which `command` (FLUSHALL) acts on.
    NoAdminAnywhere {
        user: String,
        command: &'static str,
    },
    /// Logged in, holding ADMIN on the partition perhaps, but changing a quota needs ADMIN on
    /// `*`.
    NoPermQuota {
        user: String,
    },
    /// Logged in, but the command is only for ADMIN on `*` or the user named.
    NoPermUser {
        user: String,
        command: &'static str,
    },
    NoUser(String),
    UserExists(String),
    /// The bootstrap user must keep existing and administering, or nobody could.
    ProtectedAdmin(&'static str),
    /// A change could not be made durable; it was not applied.
    Io(String),
    /// A CREATE/ALTER PARTITION option that is unknown, repeated, lacks its value or has a
    /// bad one: the whole message, which names the option. Nothing changed.
    InvalidOption(String),
    /// The write would take the data past `max-memory`; nothing was written.
    OutOfMemory,
    /// The write would take partition `partition` past its own `limit` (`max-memory` or
    /// `max-keys`, whose value is `value`); nothing was written.
    PartitionFull {
        partition: String,
        limit: &'static str,
        value: u64,
    },
    /// The partition's `max-ops` token bucket cannot pay for the command: not run.
    Throttled(String),
    /// The reply would pass what is left of the client's output limit; it was not built.
    /// The connection is closed rather than answered (see `shard`), but the text says why.
    ReplyTooLarge,
    /// A write (or a catalog or user change) on a replica: Redis's text.
    ReadOnly,
    /// A write while fewer replicas than `--min-replicas-to-write` are good: Redis's text.
    NoReplicas,
}

impl CommandError {
    /// The arity error of a command's row.
    pub fn arity(spec: &'static super::CommandSpec) -> CommandError {
        CommandError::WrongArity {
            command: spec.name,
            usage: Cow::Borrowed(spec.usage),
        }
    }

    /// The arity error of a command, by its id (for handlers that check forms the row's
    /// arity cannot, such as MSET's pairs).
    pub fn arity_of(id: super::CommandId) -> CommandError {
        CommandError::arity(id.spec())
    }

    /// The reply code: the error's first word.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::NoPartition(_) => "NOPARTITION",
            CommandError::NotAnInteger | CommandError::NeedsStringPartition(_) => "WRONGTYPE",
            CommandError::NoProto => "NOPROTO",
            CommandError::NoAuth => "NOAUTH",
            CommandError::WrongPass => "WRONGPASS",
            CommandError::NoPerm { .. }
            | CommandError::NoPermUser { .. }
            | CommandError::NoAdminAnywhere { .. }
            | CommandError::NoPermQuota { .. } => "NOPERM",
            CommandError::Io(_) => "IOERR",
            CommandError::OutOfMemory | CommandError::PartitionFull { .. } => "OOM",
            CommandError::Throttled(_) => "THROTTLED",
            CommandError::ReadOnly => "READONLY",
            CommandError::NoReplicas => "NOREPLICAS",
            _ => "ERR",
        }
    }

    /// Writes the error reply.
    pub fn write_to(&self, w: &mut ReplyWriter) {
        crate::metrics::count_error(self.code());
        w.error(self.code(), &self.to_string());
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::UnknownCommand(name) => write!(f, "unknown command '{name}'"),
            CommandError::UnknownSubcommand { command, sub } => {
                write!(f, "unknown subcommand '{sub}' for '{command}'")
            }
            CommandError::WrongArity { command, usage } => {
                write!(f, "wrong number of arguments for '{command}' command")?;
                if usage.is_empty() {
                    Ok(())
                } else {
                    write!(f, " (GoKV: {usage})")
                }
            }
            // Empty: Redis's bare text, where Redis is the reference (SHUTDOWN's forms).
            CommandError::Syntax(detail) if detail.is_empty() => f.write_str("syntax error"),
            CommandError::Syntax(detail) => write!(f, "syntax error: {detail}"),
            CommandError::InvalidName(name) => write!(
                f,
                "invalid partition name '{name}': expected 1 to 64 bytes of [A-Za-z0-9_.-]"
            ),
            CommandError::InvalidUserName(name) => write!(
                f,
                "invalid user name '{name}': expected 1 to 64 bytes of [A-Za-z0-9_.-]"
            ),
            CommandError::PartitionExists(name) => write!(f, "partition '{name}' already exists"),
            CommandError::NoPartition(name) => write!(f, "partition '{name}' does not exist"),
            CommandError::NotAvailable(what) => f.write_str(what),
            CommandError::ReadOnly => f.write_str("You can't write against a read only replica."),
            CommandError::NoReplicas => f.write_str("Not enough good replicas to write."),
            CommandError::NotAnInteger => {
                write!(f, "value is not a canonical 64-bit integer (INT partition)")
            }
            CommandError::NeedsStringPartition(command) => write!(
                f,
                "'{command}' needs a STRING partition (an INT partition holds integers)"
            ),
            CommandError::ValueNotInteger => write!(f, "value is not an integer or out of range"),
            CommandError::Overflow => write!(f, "increment or decrement would overflow"),
            CommandError::DecrementOverflow => write!(f, "decrement would overflow"),
            CommandError::InvalidExpireTime(command) => {
                write!(f, "invalid expire time in '{command}' command")
            }
            CommandError::IncompatibleOptions(which) => {
                write!(f, "{which} options at the same time are not compatible")
            }
            CommandError::UnsupportedOption(option) => write!(f, "Unsupported option {option}"),
            CommandError::OffsetOutOfRange => write!(f, "offset is out of range"),
            CommandError::StringTooLong => write!(
                f,
                "string exceeds maximum allowed size (proto-max-bulk-len)"
            ),
            CommandError::KeyTooLong { max } => write!(f, "key too long (more than {max} bytes)"),
            CommandError::NoSuchKey => write!(f, "no such key"),
            CommandError::InvalidCursor => write!(f, "invalid cursor"),
            CommandError::TooManyKeys { max } => write!(
                f,
                "KEYS would return more than {max} keys (max-keys-reply); use SCAN to iterate \
                 the partition"
            ),
            CommandError::NoProto => write!(f, "unsupported protocol version"),
            CommandError::ShuttingDown => write!(f, "server is shutting down"),
            // The exact texts Redis answers, which clients and tools recognise.
            CommandError::NoAuth => write!(f, "Authentication required."),
            CommandError::WrongPass => {
                write!(f, "invalid username-password pair or user is disabled.")
            }
            CommandError::PasswordTooLong { max, got } => write!(
                f,
                "password too long: expected at most {max} bytes, got {got}"
            ),
            CommandError::TooManyLogins => {
                write!(f, "too many logins in progress, try again later")
            }
            CommandError::NoPerm {
                user,
                needed,
                target,
            } => write!(f, "user '{user}' has no {needed} permission on '{target}'"),
            CommandError::NoAdminAnywhere { user, command } => write!(
                f,
                "user '{user}' has no ADMIN permission on any partition ('{command}' empties \
                 the partitions it holds ADMIN on)"
            ),
            CommandError::NoPermQuota { user } => write!(
                f,
                "user '{user}' has no ADMIN permission on '*', which changing max-memory, \
                 max-keys or max-ops needs"
            ),
            CommandError::NoPermUser { user, command } => write!(
                f,
                "user '{user}' may run '{command}' only on itself (or needs ADMIN on '*')"
            ),
            CommandError::NoUser(name) => write!(f, "user '{name}' does not exist"),
            CommandError::UserExists(name) => write!(f, "user '{name}' already exists"),
            CommandError::ProtectedAdmin(what) => {
                write!(f, "the 'admin' user cannot be {what}")
            }
            CommandError::Io(what) => f.write_str(what),
            CommandError::InvalidOption(what) => f.write_str(what),
            CommandError::ReplyTooLarge => {
                write!(f, "reply larger than the client output limit")
            }
            CommandError::OutOfMemory => {
                write!(f, "command not allowed when used memory > 'max-memory'")
            }
            // Redis's OOM text, naming the partition and its limit.
            CommandError::PartitionFull {
                partition,
                limit,
                value,
            } => {
                let (what, unit) = if *limit == "max-keys" {
                    ("keys", "keys")
                } else {
                    ("used memory", "bytes")
                };
                write!(
                    f,
                    "command not allowed when {what} > '{limit}' of partition '{partition}' \
                     ({value} {unit})"
                )
            }
            CommandError::Throttled(partition) => {
                write!(f, "partition {partition} is over max-ops")
            }
        }
    }
}

/// Lossy text of client bytes for an error message, cut so that a huge argument cannot make a
/// huge error.
pub fn printable(bytes: &[u8]) -> String {
    const MAX: usize = 128;
    let cut = &bytes[..bytes.len().min(MAX)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > MAX {
        s.push_str("...");
    }
    s
}

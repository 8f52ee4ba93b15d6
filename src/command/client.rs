//! The CLIENT group and MONITOR: what runs on the session alone (`CLIENT ID`, `GETNAME`,
//! `SETNAME`, `SETINFO`), and the pure parts of what the shard runs (`shard::clients`):
//! parsing `CLIENT LIST` and `CLIENT KILL` filters with Redis 7's errors, a connection's
//! `CLIENT LIST` line in Redis 7.2's field order, and MONITOR's line as Redis 7 writes it.
//!
//! `CLIENT LIST`, `CLIENT KILL`, `CLIENT INFO` and `MONITOR` need the connections
//! themselves (buffers, addresses, ages), which only their shards hold: the shard runs
//! them before any handler, as it does logins; their rows' handler ([`shard_path`]) answers
//! only if that ever stops being so.
//!
//! Who sees what: a caller holding ADMIN on `*` lists and kills every connection; any other
//! logged-in user only the connections logged in as itself (others are not listed and never
//! match a filter, so their existence does not leak), and `CLIENT KILL USER <another user>`
//! is refused (`-NOPERM`). MONITOR needs ADMIN on `*`.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::acl::Acl;
use crate::protocol::{Args, ReplyWriter};

use super::error::printable;
use super::server::{check_client_name, is_client_attribute, ServerView, Session};
use super::{CommandError, CommandId};

/// `CLIENT ID`
pub fn id(
    _args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    w.integer(session.id as i64);
    Ok(())
}

/// `CLIENT GETNAME`
pub fn getname(
    _args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    match &session.name {
        Some(name) => w.bulk(name),
        None => w.null(),
    }
    Ok(())
}

/// `CLIENT SETNAME <name>` (empty clears it).
pub fn setname(
    args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let name = check_client_name(args.get(2))?;
    session.name = (!name.is_empty()).then_some(name);
    w.ok();
    Ok(())
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER <value>`: client libraries announce their name and
/// version. As Redis 7.2: only these two attributes, values of printable ASCII without
/// spaces (empty clears), and its texts.
pub fn setinfo(
    args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let (attribute, value) = (args.get(2), args.get(3));
    let slot = if attribute.eq_ignore_ascii_case(b"LIB-NAME") {
        &mut session.lib_name
    } else if attribute.eq_ignore_ascii_case(b"LIB-VER") {
        &mut session.lib_ver
    } else {
        return Err(CommandError::NotAvailable(format!(
            "Unrecognized option '{}'",
            printable(attribute)
        )));
    };
    if !is_client_attribute(value) {
        return Err(CommandError::NotAvailable(format!(
            "{} cannot contain spaces, newlines or special characters.",
            printable(attribute)
        )));
    }
    *slot = (!value.is_empty()).then(|| value.to_vec());
    w.ok();
    Ok(())
}

/// CLIENT LIST, KILL, INFO and MONITOR: the shard runs them (`shard::clients`) before any
/// handler; this one only answers if that ever stops being so.
pub fn shard_path(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "this command must go through the shard's client registry".into(),
    ))
}

/// Redis's client types. A connection with a Pub/Sub subscription is `pubsub`, any other
/// `normal` (a MONITOR too, as in Redis); GoKV has no replicas or masters among its
/// client connections, so those types match nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    Master,
    Replica,
    PubSub,
}

impl ClientType {
    /// Redis's `getClientTypeByName`: `slave` and `replica` are one type.
    fn by_name(name: &[u8]) -> Option<ClientType> {
        let lower = name.to_ascii_lowercase();
        match lower.as_slice() {
            b"normal" => Some(ClientType::Normal),
            b"master" => Some(ClientType::Master),
            b"slave" | b"replica" => Some(ClientType::Replica),
            b"pubsub" => Some(ClientType::PubSub),
            _ => None,
        }
    }

    fn unknown(name: &[u8]) -> CommandError {
        CommandError::NotAvailable(format!("Unknown client type '{}'", printable(name)))
    }
}

/// Which connections a CLIENT LIST or CLIENT KILL is about. Every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub ids: Option<Vec<u64>>,
    pub kind: Option<ClientType>,
    pub user: Option<String>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    /// Leave the caller's own connection alone (CLIENT KILL's `SKIPME`, `yes` by default in
    /// the filter form).
    pub skip_me: bool,
    /// Only connections older than this many seconds (`MAXAGE`).
    pub max_age: Option<u64>,
}

/// What one connection looks like to a [`Filter`].
pub struct Candidate<'a> {
    pub id: u64,
    pub kind: ClientType,
    pub user: Option<&'a str>,
    pub addr: &'a str,
    pub laddr: &'a str,
    pub age_secs: u64,
}

impl Filter {
    /// Does `c` match, for a request from connection `caller`?
    pub fn matches(&self, c: &Candidate, caller: u64) -> bool {
        (!self.skip_me || c.id != caller)
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&c.id))
            && self.kind.is_none_or(|k| k == c.kind)
            && self.user.as_deref().is_none_or(|u| c.user == Some(u))
            && self.addr.as_deref().is_none_or(|a| a == c.addr)
            && self.laddr.as_deref().is_none_or(|a| a == c.laddr)
            && self.max_age.is_none_or(|max| c.age_secs > max)
    }
}

/// `CLIENT LIST [TYPE type] | [ID id ...]`, Redis 7's grammar: one of the two at most.
pub fn parse_list(args: &Args) -> Result<Filter, CommandError> {
    let mut filter = Filter::default();
    if args.len() == 4 && args.get(2).eq_ignore_ascii_case(b"TYPE") {
        let name = args.get(3);
        filter.kind = Some(ClientType::by_name(name).ok_or_else(|| ClientType::unknown(name))?);
    } else if args.len() > 3 && args.get(2).eq_ignore_ascii_case(b"ID") {
        let ids = args
            .iter()
            .skip(3)
            .map(|id| {
                // Redis reads an id as a long long: a negative one is valid and matches nothing.
                crate::protocol::parser::parse_i64(id)
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .ok_or_else(|| CommandError::NotAvailable("Invalid client ID".into()))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        filter.ids = Some(ids);
    } else if args.len() != 2 {
        return Err(CommandError::Syntax(String::new()));
    }
    Ok(filter)
}

/// A parsed CLIENT KILL.
#[derive(Debug, PartialEq, Eq)]
pub struct Kill {
    pub filter: Filter,
    /// `CLIENT KILL <ip:port>`: answers `+OK` or `-ERR No such client` instead of a count,
    /// and may kill the caller itself.
    pub old_form: bool,
}

/// `CLIENT KILL <ip:port>` or `CLIENT KILL <filter> <value> ...`, as Redis 7's
/// `clientKillCommand` reads them, with its errors. `acl` is where `USER` names are looked up.
/// `caller`: the caller's user name when it lacks ADMIN on `*`, which may name only itself
/// in `USER` (refused before the name is looked up, so that it does not learn which users
/// exist).
pub fn parse_kill(args: &Args, acl: &Acl, caller: Option<&str>) -> Result<Kill, CommandError> {
    if args.len() == 3 {
        let filter = Filter {
            addr: Some(String::from_utf8_lossy(args.get(2)).into_owned()),
            ..Filter::default()
        };
        return Ok(Kill {
            filter,
            old_form: true,
        });
    }
    let mut filter = Filter {
        skip_me: true,
        ..Filter::default()
    };
    let mut i = 2;
    while i < args.len() {
        let (option, more) = (args.get(i), i + 1 < args.len());
        if !more {
            return Err(CommandError::Syntax(String::new()));
        }
        let value = args.get(i + 1);
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        if is(b"ID") {
            let id = crate::protocol::parser::parse_i64(value)
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    CommandError::NotAvailable("client-id should be greater than 0".into())
                })?;
            // Redis keeps the last ID given; so does GoKV.
            filter.ids = Some(vec![id as u64]);
        } else if is(b"TYPE") {
            filter.kind =
                Some(ClientType::by_name(value).ok_or_else(|| ClientType::unknown(value))?);
        } else if is(b"ADDR") {
            filter.addr = Some(String::from_utf8_lossy(value).into_owned());
        } else if is(b"LADDR") {
            filter.laddr = Some(String::from_utf8_lossy(value).into_owned());
        } else if is(b"USER") {
            if let Some(me) = caller.filter(|me| me.as_bytes() != value) {
                return Err(CommandError::NoPermUser {
                    user: me.to_string(),
                    command: "client kill",
                });
            }
            let user = acl.get(value).ok_or_else(|| {
                CommandError::NotAvailable(format!("No such user '{}'", printable(value)))
            })?;
            filter.user = Some(user.name.clone());
        } else if is(b"SKIPME") {
            filter.skip_me = if value.eq_ignore_ascii_case(b"yes") {
                true
            } else if value.eq_ignore_ascii_case(b"no") {
                false
            } else {
                return Err(CommandError::Syntax(String::new()));
            };
        } else if is(b"MAXAGE") {
            let age = crate::protocol::parser::parse_i64(value).ok_or_else(|| {
                CommandError::NotAvailable("maxage is not an integer or out of range".into())
            })?;
            if age <= 0 {
                return Err(CommandError::NotAvailable(
                    "maxage should be greater than 0".into(),
                ));
            }
            filter.max_age = Some(age as u64);
        } else {
            return Err(CommandError::Syntax(String::new()));
        }
        i += 2;
    }
    Ok(Kill {
        filter,
        old_form: false,
    })
}

/// One connection as `CLIENT LIST` shows it (see [`write_line`] for what each field means).
pub struct ClientLine<'a> {
    pub id: u64,
    pub addr: &'a str,
    pub laddr: &'a str,
    pub fd: i32,
    pub name: &'a [u8],
    pub age_secs: u64,
    pub idle_secs: u64,
    pub flags: &'a str,
    pub db: &'a str,
    /// Channels and patterns it is subscribed to.
    pub sub: usize,
    pub psub: usize,
    pub qbuf: usize,
    pub qbuf_free: usize,
    pub rbs: usize,
    pub obl: usize,
    pub oll: usize,
    pub omem: usize,
    pub tot_mem: usize,
    pub events: &'a str,
    pub cmd: Option<CommandId>,
    pub user: &'a str,
    pub resp: u8,
    pub lib_name: &'a [u8],
    pub lib_ver: &'a [u8],
    pub shard: usize,
}

/// Redis 7's name of a command in CLIENT LIST's `cmd`: lowercase, a subcommand after `|`
/// (`client|list`); `NULL` before the first command, as Redis.
pub fn command_name(cmd: Option<CommandId>) -> String {
    match cmd {
        Some(id) => super::server::stat_name(id.spec()),
        None => "NULL".into(),
    }
}

/// Appends one `CLIENT LIST` line (with its `\n`), Redis 7.2's fields in its order
/// (`catClientInfoString`), then GoKV's `shard`. What GoKV lacks is Redis's value for "none":
/// `ssub` 0 (no shard channels), `multi` -1 (no MULTI), `argv-mem` and `multi-mem`
/// 0 (between commands no argument is held), `redir` -1 (no tracking). `rbp` (the read
/// buffer's peak) is its size: the buffer only shrinks once empty.
pub fn write_line(out: &mut String, c: &ClientLine) {
    let name = String::from_utf8_lossy(c.name);
    let lib_name = String::from_utf8_lossy(c.lib_name);
    let lib_ver = String::from_utf8_lossy(c.lib_ver);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "id={} addr={} laddr={} fd={} name={name} age={} idle={} flags={} db={} sub={} psub={} \
         ssub=0 multi=-1 qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp={} obl={} \
         oll={} omem={} tot-mem={} events={} cmd={} user={} redir=-1 resp={} \
         lib-name={lib_name} lib-ver={lib_ver} shard={}",
        c.id,
        c.addr,
        c.laddr,
        c.fd,
        c.age_secs,
        c.idle_secs,
        c.flags,
        c.db,
        c.sub,
        c.psub,
        c.qbuf,
        c.qbuf_free,
        c.rbs,
        c.rbs,
        c.obl,
        c.oll,
        c.omem,
        c.tot_mem,
        c.events,
        command_name(c.cmd),
        c.user,
        c.resp,
        c.shard,
    );
}

/// Appends `bytes` quoted as Redis's `sdscatrepr` does (what MONITOR shows): `\\`, `\"`,
/// `\n`, `\r`, `\t`, `\a`, `\b` escaped, other printable ASCII as is, the rest `\xNN`.
pub fn cat_repr(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            b' '..=b'~' => out.push(b),
            _ => {
                let _ = write!(ByteWriter(out), "\\x{b:02x}");
            }
        }
    }
    out.push(b'"');
}

/// `fmt::Write` into a byte buffer.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Which arguments of a command MONITOR shows as `(redacted)`, as Redis 7 does for AUTH and
/// HELLO's AUTH: every argument of AUTH and LOGIN, the user and password after HELLO's
/// `AUTH`. (Commands flagged `admin`, CREATE USER and ALTER USER among them, are not shown
/// at all.)
fn redacted(id: CommandId, args: &Args, i: usize) -> bool {
    match id {
        CommandId::Auth | CommandId::Login => i >= 1,
        CommandId::Hello => {
            // HELLO's options as its parser walks them: AUTH takes two words, SETNAME one.
            let mut j = 2;
            while j < args.len() {
                let option = args.get(j);
                if option.eq_ignore_ascii_case(b"AUTH") {
                    if i == j + 1 || i == j + 2 {
                        return true;
                    }
                    j += 3;
                } else if option.eq_ignore_ascii_case(b"SETNAME") {
                    j += 2;
                } else {
                    // A bad option: HELLO fails; hide everything after it to be safe.
                    return i > j;
                }
            }
            false
        }
        _ => false,
    }
}

/// Appends one MONITOR line, Redis 7's `+<unix seconds>.<micro> [<db> <ip:port>] "arg" ...`
/// (`replicationFeedMonitors`). `skip` is an argument the client did not send (the selected
/// partition the Redis face inserted), left out.
pub fn monitor_line(
    out: &mut Vec<u8>,
    now: SystemTime,
    db: &str,
    addr: &str,
    id: CommandId,
    args: &Args,
    skip: Option<usize>,
) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(
        ByteWriter(out),
        "+{}.{:06} [{db} {addr}]",
        since.as_secs(),
        since.subsec_micros()
    );
    for i in (0..args.len()).filter(|&i| Some(i) != skip) {
        out.push(b' ');
        if redacted(id, args, i) {
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            cat_repr(out, args.get(i));
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lay_out;

    fn kill(words: &[&str]) -> Result<Kill, String> {
        let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        let (buf, spans) = lay_out(&words);
        let acl = Acl::default();
        parse_kill(&Args::new(&buf, &spans), &acl, None).map_err(|e| e.to_string())
    }

    #[test]
    fn kill_reads_redis_7_s_forms() {
        let old = kill(&["CLIENT", "KILL", "1.2.3.4:5"]).unwrap();
        assert!(old.old_form && !old.filter.skip_me);
        assert_eq!(old.filter.addr.as_deref(), Some("1.2.3.4:5"));
        let k = kill(&[
            "client", "kill", "id", "7", "type", "SLAVE", "skipme", "NO", "maxage", "10", "laddr",
            "a:1",
        ])
        .unwrap();
        assert!(!k.old_form && !k.filter.skip_me);
        assert_eq!(k.filter.ids, Some(vec![7]));
        assert_eq!(k.filter.kind, Some(ClientType::Replica));
        assert_eq!(k.filter.max_age, Some(10));
        assert_eq!(k.filter.laddr.as_deref(), Some("a:1"));
        assert!(kill(&["CLIENT", "KILL", "ID", "1"]).unwrap().filter.skip_me);
        for (words, error) in [
            (
                &["CLIENT", "KILL", "ID", "-3"][..],
                "client-id should be greater than 0",
            ),
            (&["CLIENT", "KILL", "TYPE", "x"], "Unknown client type 'x'"),
            (
                &["CLIENT", "KILL", "USER", "nobody"],
                "No such user 'nobody'",
            ),
            (&["CLIENT", "KILL", "ID", "1", "TYPE"], "syntax error"),
            (&["CLIENT", "KILL", "SKIPME", "y"], "syntax error"),
            (
                &["CLIENT", "KILL", "MAXAGE", "-1"],
                "maxage should be greater than 0",
            ),
        ] {
            assert_eq!(kill(words).unwrap_err(), error, "{words:?}");
        }
        // A caller without ADMIN on `*` names only itself, existing user or not.
        let (buf, spans) = lay_out::<&[u8]>(&[b"CLIENT", b"KILL", b"USER", b"nobody"]);
        let refused = parse_kill(&Args::new(&buf, &spans), &Acl::default(), Some("bob"));
        assert_eq!(refused.unwrap_err().code(), "NOPERM");
    }

    #[test]
    fn a_filter_needs_every_condition() {
        let c = Candidate {
            id: 3,
            kind: ClientType::Normal,
            user: Some("bob"),
            addr: "1.1.1.1:1",
            laddr: "2.2.2.2:2",
            age_secs: 5,
        };
        let f = |filter: Filter| filter.matches(&c, 9);
        assert!(f(Filter::default()));
        assert!(f(Filter {
            user: Some("bob".into()),
            addr: Some("1.1.1.1:1".into()),
            max_age: Some(4),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            max_age: Some(5),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            kind: Some(ClientType::PubSub),
            ..Filter::default()
        }));
        assert!(!Filter {
            skip_me: true,
            ..Filter::default()
        }
        .matches(&c, 3));
    }

    #[test]
    fn repr_quotes_as_sdscatrepr() {
        let mut out = Vec::new();
        cat_repr(&mut out, b"a\"b\\\n\r\t\x07\x08 ~\x00\xff");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"b\\\n\r\t\a\b ~\x00\xff""#
        );
    }

    #[test]
    fn monitor_lines_redact_credentials() {
        let line = |words: &[&[u8]], id: CommandId, skip: Option<usize>| {
            let (buf, spans) = lay_out(words);
            let mut out = Vec::new();
            let at =
                SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_000_042);
            monitor_line(
                &mut out,
                at,
                "p",
                "1.2.3.4:5",
                id,
                &Args::new(&buf, &spans),
                skip,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            line(&[b"GET", b"p", b"k"], CommandId::Get, Some(1)),
            "+1700000000.000042 [p 1.2.3.4:5] \"GET\" \"k\"\r\n"
        );
        assert!(line(&[b"AUTH", b"u", b"pw"], CommandId::Auth, None)
            .ends_with("\"AUTH\" \"(redacted)\" \"(redacted)\"\r\n"));
        assert!(line(&[b"LOGIN", b"u", b"pw"], CommandId::Login, None)
            .ends_with("\"LOGIN\" \"(redacted)\" \"(redacted)\"\r\n"));
        let hello = line(
            &[b"HELLO", b"3", b"SETNAME", b"n", b"AUTH", b"u", b"pw"],
            CommandId::Hello,
            None,
        );
        assert!(
            hello.ends_with(
                "\"HELLO\" \"3\" \"SETNAME\" \"n\" \"AUTH\" \"(redacted)\" \"(redacted)\"\r\n"
            ),
            "{hello}"
        );
        assert!(!line(&[b"HELLO", b"3", b"BAD", b"pw"], CommandId::Hello, None).contains("pw"));
    }

    #[test]
    fn command_names_are_redis_7_s() {
        assert_eq!(command_name(Some(CommandId::ClientList)), "client|list");
        assert_eq!(command_name(Some(CommandId::Get)), "get");
        assert_eq!(command_name(None), "NULL");
    }
}

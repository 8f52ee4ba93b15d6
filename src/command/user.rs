//! User commands: AUTH, LOGIN, WHOAMI, CREATE/DROP/ALTER USER, GRANT, REVOKE, LIST USERS,
//! DESCRIBE USER.
//!
//! A user's default partition (`CREATE USER ... DEFAULT <partition>`, `ALTER USER <name>
//! DEFAULT <partition>|NONE`) is where its connections start in Redis grammar after a login
//! (see `command::face`); ALTER USER's permission covers it as it covers the password (ADMIN
//! on `*`, or the user itself: a default grants nothing, so choosing one's own is harmless).
//!
//! Parsing and validation happen on the connection's shard; password checks and hashing run
//! on the hasher pool ([`crate::acl::hasher`]); changes run on the coordinator
//! ([`crate::acl::Acl::apply`]); LIST/DESCRIBE/WHOAMI answer from the shard's ACL copy.

use crate::acl::hasher::{NewPassword, MAX_PASSWORD_LEN};
use crate::acl::{Acl, AclChange, GrantChange, Perms, User, ALL, DEFAULT_USER};
use crate::catalog::{is_valid_name, MAX_NAME_LEN};
use crate::protocol::{Args, ReplyWriter};

use super::error::printable;
use super::server::{ServerView, Session};
use super::{CommandError, CommandId, CoordinatorWork};

/// A login attempt: user name (any bytes: an unknown name is just a failed login) and
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

// By hand, so that a password never reaches a log line.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", printable(&self.user))
    }
}

/// `AUTH <user> <password>`, `AUTH <password>` (user `default`), `LOGIN <user> <password>`.
pub fn parse_auth(args: &Args) -> Result<Credentials, CommandError> {
    match args.len() {
        2 => credentials(DEFAULT_USER.as_bytes(), args.get(1)),
        3 => credentials(args.get(1), args.get(2)),
        _ => Err(CommandError::Syntax(
            "expected AUTH <user> <password> or AUTH <password>".into(),
        )),
    }
}

/// The credentials of a login (AUTH, LOGIN, HELLO ... AUTH), checked by length before they
/// are copied, MAC'd or hashed: a logged-in client may send a 512 MiB "password", and even
/// the BLAKE2b MAC of the login cache would stall its shard for a second over that.
///
/// A password longer than [`MAX_PASSWORD_LEN`] is refused with a clear error (no stored
/// password can be that long: CREATE/ALTER USER refuse them). A user name longer than any
/// valid name is answered `WRONGPASS` at once: no user has it, and the limit is public, so
/// answering without the dummy argon2 an unknown user gets tells nothing.
pub fn credentials(user: &[u8], password: &[u8]) -> Result<Credentials, CommandError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(CommandError::PasswordTooLong {
            max: MAX_PASSWORD_LEN,
            got: password.len(),
        });
    }
    if user.len() > MAX_NAME_LEN {
        return Err(CommandError::WrongPass);
    }
    Ok(Credentials {
        user: user.to_vec(),
        password: password.to_vec(),
    })
}

/// Validates a user name argument.
pub fn parse_user_name(raw: &[u8]) -> Result<String, CommandError> {
    if !is_valid_name(raw) {
        return Err(CommandError::InvalidUserName(printable(raw)));
    }
    // Valid names are ASCII.
    Ok(String::from_utf8_lossy(raw).into_owned())
}

/// Validates a new password (never echoed in an error).
pub fn parse_password(raw: &[u8]) -> Result<Vec<u8>, CommandError> {
    if raw.is_empty() {
        return Err(CommandError::Syntax(
            "the password must not be empty".into(),
        ));
    }
    if raw.len() > MAX_PASSWORD_LEN {
        return Err(CommandError::PasswordTooLong {
            max: MAX_PASSWORD_LEN,
            got: raw.len(),
        });
    }
    Ok(raw.to_vec())
}

/// What `ALTER USER <name> ...` changes.
#[derive(Debug, PartialEq, Eq)]
pub enum Alter {
    /// `PASSWORD <password>`
    Password(Vec<u8>),
    /// `DEFAULT <partition>|NONE` (`None`: NONE).
    Default(Option<String>),
}

/// `ALTER USER <name> PASSWORD <password>` or `ALTER USER <name> DEFAULT <partition>|NONE`.
pub fn parse_alter(args: &Args) -> Result<(String, Alter), CommandError> {
    let name = parse_user_name(args.get(2))?;
    let what = args.get(3);
    if what.eq_ignore_ascii_case(b"PASSWORD") {
        Ok((name, Alter::Password(parse_password(args.get(4))?)))
    } else if what.eq_ignore_ascii_case(b"DEFAULT") {
        Ok((name, Alter::Default(parse_default(args.get(4))?)))
    } else {
        Err(CommandError::Syntax(format!(
            "expected ALTER USER <name> PASSWORD <password> or ALTER USER <name> DEFAULT \
             <partition|NONE>, got '{}'",
            printable(what)
        )))
    }
}

/// A default partition argument: a partition name (which need not exist: see
/// `command::face`), or `NONE` (any case) for none. So a partition named `none` cannot be a
/// default.
pub fn parse_default(raw: &[u8]) -> Result<Option<String>, CommandError> {
    if raw.eq_ignore_ascii_case(b"NONE") {
        return Ok(None);
    }
    super::partition::parse_name(raw).map(Some)
}

/// `CREATE USER <name> <password> [DEFAULT <partition>|NONE]`.
pub fn parse_create(args: &Args) -> Result<(String, Vec<u8>, Option<String>), CommandError> {
    let name = parse_user_name(args.get(2))?;
    let password = parse_password(args.get(3))?;
    let default = match args.len() {
        4 => None,
        6 if args.get(4).eq_ignore_ascii_case(b"DEFAULT") => parse_default(args.get(5))?,
        _ => {
            return Err(CommandError::Syntax(
                "expected CREATE USER <name> <password> [DEFAULT <partition>]".into(),
            ))
        }
    };
    Ok((name, password, default))
}

/// `GRANT <perm> ON <target> TO <user>` / `REVOKE <perm> ON <target> FROM <user>`.
pub fn parse_grant(id: CommandId, args: &Args) -> Result<GrantChange, CommandError> {
    let (verb, to) = if id == CommandId::Grant {
        ("GRANT", &b"TO"[..])
    } else {
        ("REVOKE", &b"FROM"[..])
    };
    let shape = || {
        CommandError::Syntax(format!(
            "expected {verb} <READ|WRITE|ADMIN> ON <partition|*> {} <user>",
            String::from_utf8_lossy(to)
        ))
    };
    let perms = Perms::parse(args.get(1)).ok_or_else(shape)?;
    if !args.get(2).eq_ignore_ascii_case(b"ON") || !args.get(4).eq_ignore_ascii_case(to) {
        return Err(shape());
    }
    let target = args.get(3);
    let target = if target == ALL.as_bytes() {
        ALL.to_string()
    } else {
        super::partition::parse_name(target)?
    };
    Ok(GrantChange {
        perms,
        target,
        user: parse_user_name(args.get(5))?,
    })
}

/// WHOAMI.
pub fn whoami(user: &User, w: &mut ReplyWriter) {
    w.bulk(user.name.as_bytes());
}

/// LIST USERS: names, sorted.
pub fn list(acl: &Acl, w: &mut ReplyWriter) {
    w.array(acl.users.len());
    for name in acl.users.keys() {
        w.bulk(name.as_bytes());
    }
}

/// DESCRIBE USER: name, grants as `partition:PERM` and the default partition (nil when
/// none); never the hash.
pub fn describe(acl: &Acl, raw: &[u8], w: &mut ReplyWriter) -> Result<(), CommandError> {
    let user = acl
        .get(raw)
        .ok_or_else(|| CommandError::NoUser(printable(raw)))?;
    let grants = user.grant_list();
    w.map(3);
    w.field_bulk("name", user.name.as_bytes());
    w.bulk(b"grants");
    w.array(grants.len());
    for grant in grants {
        w.bulk(grant.as_bytes());
    }
    w.bulk(b"default");
    match &user.default_partition {
        Some(partition) => w.bulk(partition.as_bytes()),
        None => w.null(),
    }
    Ok(())
}

// The rows' handlers (see the command table in `super`).

/// AUTH and LOGIN: the shard answers them on its login path before any handler runs; this one
/// only answers if a request ever gets past that.
pub fn login_path(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "AUTH and LOGIN must go through the login path".into(),
    ))
}

/// `WHOAMI`
pub fn whoami_command(
    _args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    whoami(session.user.as_deref().ok_or(CommandError::NoAuth)?, w);
    Ok(())
}

/// `LIST USERS`
pub fn list_command(
    _args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    list(view.acl, w);
    Ok(())
}

/// `DESCRIBE USER <name>`
pub fn describe_command(
    args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    describe(view.acl, args.get(2), w)
}

/// `CREATE USER <name> <password> [DEFAULT <partition>]`: the password is hashed first.
pub fn create(args: &Args) -> Result<CoordinatorWork, CommandError> {
    let (name, password, default) = parse_create(args)?;
    Ok(CoordinatorWork::HashThen(
        password,
        NewPassword::CreateUser(name, default),
    ))
}

/// `ALTER USER <name> PASSWORD <password>` (the password is hashed first) or `ALTER USER
/// <name> DEFAULT <partition>|NONE` (straight to the coordinator).
pub fn alter(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(match parse_alter(args)? {
        (name, Alter::Password(password)) => {
            CoordinatorWork::HashThen(password, NewPassword::SetPassword(name))
        }
        (name, Alter::Default(partition)) => {
            CoordinatorWork::Acl(AclChange::SetDefault { name, partition })
        }
    })
}

/// `DROP USER <name>`
pub fn drop(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(CoordinatorWork::Acl(AclChange::DropUser(parse_user_name(
        args.get(2),
    )?)))
}

/// `GRANT <perm> ON <partition|*> TO <user>`
pub fn grant(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(CoordinatorWork::Acl(AclChange::Grant(parse_grant(
        CommandId::Grant,
        args,
    )?)))
}

/// `REVOKE <perm> ON <partition|*> FROM <user>`
pub fn revoke(args: &Args) -> Result<CoordinatorWork, CommandError> {
    Ok(CoordinatorWork::Acl(AclChange::Revoke(parse_grant(
        CommandId::Revoke,
        args,
    )?)))
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

    fn create_of(words: &[&str]) -> Result<(String, Vec<u8>, Option<String>), CommandError> {
        let (buf, spans) = args_of(words);
        parse_create(&Args::new(&buf, &spans))
    }

    fn alter_of(words: &[&str]) -> Result<(String, Alter), CommandError> {
        let (buf, spans) = args_of(words);
        parse_alter(&Args::new(&buf, &spans))
    }

    #[test]
    fn create_user_takes_an_optional_default_partition() {
        let (name, pw, default) = create_of(&["CREATE", "USER", "u", "pw"]).unwrap();
        assert_eq!((name.as_str(), &pw[..], default), ("u", &b"pw"[..], None));
        let (_, _, default) = create_of(&["CREATE", "USER", "u", "pw", "default", "3"]).unwrap();
        assert_eq!(default.as_deref(), Some("3"));
        let (_, _, default) = create_of(&["CREATE", "USER", "u", "pw", "DEFAULT", "NONE"]).unwrap();
        assert_eq!(default, None);
        for bad in [
            &["CREATE", "USER", "u", "pw", "DEFAULT"][..],
            &["CREATE", "USER", "u", "pw", "OTHER", "p"],
            &["CREATE", "USER", "u", "pw", "DEFAULT", "p", "x"],
        ] {
            assert!(
                matches!(create_of(bad), Err(CommandError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            create_of(&["CREATE", "USER", "u", "pw", "DEFAULT", "*"]),
            Err(CommandError::InvalidName(_))
        ));
    }

    #[test]
    fn alter_user_sets_a_password_or_a_default() {
        assert_eq!(
            alter_of(&["ALTER", "USER", "u", "password", "x"]).unwrap(),
            ("u".into(), Alter::Password(b"x".to_vec()))
        );
        assert_eq!(
            alter_of(&["ALTER", "USER", "u", "DEFAULT", "p"]).unwrap(),
            ("u".into(), Alter::Default(Some("p".into())))
        );
        assert_eq!(
            alter_of(&["ALTER", "USER", "u", "DEFAULT", "None"]).unwrap(),
            ("u".into(), Alter::Default(None))
        );
        assert!(matches!(
            alter_of(&["ALTER", "USER", "u", "DEFAULT", "a b"]),
            Err(CommandError::InvalidName(_))
        ));
        assert!(matches!(
            alter_of(&["ALTER", "USER", "u", "GRANTS", "p"]),
            Err(CommandError::Syntax(_))
        ));
    }
}

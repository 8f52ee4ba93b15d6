//! Users, password hashes and grants: the access-control list (ACL).
//!
//! Like the [`Catalog`](crate::catalog::Catalog), the ACL changes rarely (CREATE/DROP/ALTER
//! USER, GRANT, REVOKE) and is read on every request, so it is an immutable value shared
//! through `Arc`. The coordinator (shard 0) plans each new version ([`Acl::apply`]), persists
//! it ([`store`]) and broadcasts it; every shard swaps its own `Arc` and acknowledges before
//! the client hears back. Checking a permission ([`User::allows`]) is a pure function of one
//! version: no locks, no I/O.
//!
//! # Model
//! - A user has a name, an id unique for the life of the data directory (so that a user
//!   dropped and created again under the same name never inherits the old one's sessions),
//!   an argon2id password hash in PHC string form, and grants.
//! - A grant is `READ`, `WRITE` or `ADMIN` on a partition *name* or on `*` (every partition,
//!   present and future). READ and WRITE are independent; ADMIN implies both. ADMIN on `*`
//!   also creates partitions and manages users.
//! - Grants name partitions, so they survive a restart even while the partition itself (a
//!   `MEMORY` one) does not. Dropping a partition revokes every grant on its name, so a later
//!   partition of the same name starts with no grants but those on `*`.
//! - A user may have a default partition: its connections start in Redis grammar on it
//!   (`command::face`). It is a name too, but it grants nothing, so it is not revoked by a
//!   DROP PARTITION: the user's connections then get the missing-partition error (or
//!   `NOPERM`) until the partition is created again or the default changed.
//!
//! Password hashing never happens here or on a shard's thread: see [`hasher`].

pub mod hasher;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::command::CommandError;

/// The user every fresh data directory gets, with ADMIN on `*`.
pub const ADMIN_USER: &str = "admin";

/// The user `AUTH <password>` (one argument) logs in as, as in Redis.
pub const DEFAULT_USER: &str = "default";

/// The grant target meaning "every partition, present and future".
pub const ALL: &str = "*";

/// A set of permissions: a bit each for READ, WRITE, ADMIN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms(u8);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const READ: Perms = Perms(1);
    pub const WRITE: Perms = Perms(2);
    pub const ADMIN: Perms = Perms(4);

    /// Parses `READ`, `WRITE` or `ADMIN` (case-insensitive).
    pub fn parse(word: &[u8]) -> Option<Perms> {
        if word.eq_ignore_ascii_case(b"READ") {
            Some(Perms::READ)
        } else if word.eq_ignore_ascii_case(b"WRITE") {
            Some(Perms::WRITE)
        } else if word.eq_ignore_ascii_case(b"ADMIN") {
            Some(Perms::ADMIN)
        } else {
            None
        }
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[inline]
    pub fn union(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }

    #[inline]
    pub fn without(self, other: Perms) -> Perms {
        Perms(self.0 & !other.0)
    }

    /// What holding these grants lets one do: ADMIN implies READ and WRITE.
    #[inline]
    pub fn effective(self) -> Perms {
        if self.0 & Perms::ADMIN.0 != 0 {
            Perms(self.0 | Perms::READ.0 | Perms::WRITE.0)
        } else {
            self
        }
    }

    /// Every permission in `needed` is effectively held.
    #[inline]
    pub fn covers(self, needed: Perms) -> bool {
        self.effective().0 & needed.0 == needed.0
    }

    /// The names of the granted bits, in READ, WRITE, ADMIN order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (Perms::READ, "READ"),
            (Perms::WRITE, "WRITE"),
            (Perms::ADMIN, "ADMIN"),
        ]
        .into_iter()
        .filter(move |(p, _)| self.0 & p.0 != 0)
        .map(|(_, name)| name)
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.names().collect();
        f.write_str(&names.join("+"))
    }
}

/// One user, as of one ACL version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Never reused within a data directory (see the module docs).
    pub id: u64,
    pub name: String,
    /// argon2id, PHC string format (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`): the
    /// parameters and salt travel with the hash, so they can change without a migration.
    pub hash: Arc<str>,
    /// Grants on `*`, kept apart so the common admin check costs no lookup.
    pub all: Perms,
    /// Grants on named partitions; never holds an empty set.
    pub grants: BTreeMap<String, Perms>,
    /// The partition its connections start in Redis grammar on, right after logging in
    /// (`CREATE USER ... DEFAULT <partition>`, `ALTER USER ... DEFAULT`). A name, like a
    /// grant's: it may name a partition that does not exist (yet, or any more), and it grants
    /// nothing (see `command::face`).
    pub default_partition: Option<String>,
}

impl User {
    /// May this user do `needed` on `partition` (a partition name, or `*`)?
    #[inline]
    pub fn allows(&self, needed: Perms, partition: &[u8]) -> bool {
        if self.all.covers(needed) {
            return true;
        }
        if partition == ALL.as_bytes() {
            return false;
        }
        self.grants_on(partition).union(self.all).covers(needed)
    }

    /// The grants on one named partition (not counting `*`).
    #[inline]
    pub fn grants_on(&self, partition: &[u8]) -> Perms {
        // Every grant names a valid partition name, which is ASCII: a name that is not holds
        // none. (`is_ascii` reads words at a time; `from_utf8` costs some 50 instructions per
        // request here, measured with scripts/count-instructions.sh get-user.)
        if !partition.is_ascii() {
            return Perms::NONE;
        }
        // SAFETY: ASCII bytes are valid UTF-8 (checked just above).
        let name = unsafe { std::str::from_utf8_unchecked(partition) };
        self.grants.get(name).copied().unwrap_or(Perms::NONE)
    }

    /// Holds anything at all on `partition`, directly or through `*`.
    pub fn holds_any_on(&self, partition: &str) -> bool {
        !self.all.is_empty() || self.grants.contains_key(partition)
    }

    /// Every grant as `partition:PERM`, `*` first, then partitions by name.
    pub fn grant_list(&self) -> Vec<String> {
        let mut out: Vec<String> = self.all.names().map(|p| format!("{ALL}:{p}")).collect();
        for (partition, perms) in &self.grants {
            out.extend(perms.names().map(|p| format!("{partition}:{p}")));
        }
        out
    }

    fn with_grant(&self, target: &str, perms: Perms, grant: bool) -> User {
        let mut user = self.clone();
        let change = |held: Perms| {
            if grant {
                held.union(perms)
            } else {
                held.without(perms)
            }
        };
        if target == ALL {
            user.all = change(user.all);
        } else {
            let held = change(user.grants_on(target.as_bytes()));
            if held.is_empty() {
                user.grants.remove(target);
            } else {
                user.grants.insert(target.to_string(), held);
            }
        }
        user
    }
}

/// A change to the ACL, executed by the coordinator. Passwords arrive already hashed.
#[derive(Clone, PartialEq, Eq)]
pub enum AclChange {
    CreateUser {
        name: String,
        hash: String,
        /// Its default partition (`CREATE USER <name> <pw> DEFAULT <partition>`).
        default_partition: Option<String>,
    },
    DropUser(String),
    SetPassword {
        name: String,
        hash: String,
    },
    /// `ALTER USER <name> DEFAULT <partition>|NONE` (`None`: NONE).
    SetDefault {
        name: String,
        partition: Option<String>,
    },
    Grant(GrantChange),
    Revoke(GrantChange),
}

/// `GRANT <perm> ON <target> TO <user>` or the matching REVOKE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantChange {
    pub perms: Perms,
    /// A partition name or `*`.
    pub target: String,
    pub user: String,
}

// By hand, so that a hash never reaches a log line.
impl fmt::Debug for AclChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclChange::CreateUser { name, .. } => write!(f, "CreateUser({name})"),
            AclChange::DropUser(name) => write!(f, "DropUser({name})"),
            AclChange::SetPassword { name, .. } => write!(f, "SetPassword({name})"),
            AclChange::SetDefault { name, partition } => {
                write!(f, "SetDefault({name}, {partition:?})")
            }
            AclChange::Grant(g) => write!(f, "Grant({} on {} to {})", g.perms, g.target, g.user),
            AclChange::Revoke(g) => {
                write!(f, "Revoke({} on {} from {})", g.perms, g.target, g.user)
            }
        }
    }
}

/// One version of the ACL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// Counts versions within this process; shards compare it to know their sessions' cached
    /// user is stale.
    pub version: u64,
    /// Sorted by name: the order LIST USERS answers in and the file stores.
    pub users: BTreeMap<String, Arc<User>>,
    /// The id the next created user gets (persisted, so ids are never reused).
    pub next_user_id: u64,
}

impl Acl {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<User>> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.users.get(n))
    }

    /// `user` as of this version: the same user (same id; a dropped and re-created one is
    /// someone else) with its grants now, or `None` when it was dropped.
    pub fn current(&self, user: &User) -> Option<&Arc<User>> {
        self.users.get(&user.name).filter(|now| now.id == user.id)
    }

    /// May `user`, as of this version, still do `needed` on `partition`? False once it was
    /// dropped (what a monitor and a replica's feed ask at every ACL change).
    pub fn current_allows(&self, user: &User, needed: Perms, partition: &[u8]) -> bool {
        self.current(user)
            .is_some_and(|now| now.allows(needed, partition))
    }

    /// The user with this id, if it still exists (a dropped and re-created user has a new
    /// id, so a request approved for the old one finds nobody). A scan: it runs only when a
    /// request is checked again after the ACL changed, never per request.
    pub fn user_by_id(&self, id: u64) -> Option<&Arc<User>> {
        self.users.values().find(|u| u.id == id)
    }

    /// The ACL after `change`, or why not. Runs on the coordinator; pure.
    pub fn apply(&self, change: &AclChange) -> Result<Acl, CommandError> {
        let mut next = Acl {
            version: self.version + 1,
            users: self.users.clone(),
            next_user_id: self.next_user_id,
        };
        let existing = |name: &str| {
            self.users
                .get(name)
                .cloned()
                .ok_or_else(|| CommandError::NoUser(name.to_string()))
        };
        match change {
            AclChange::CreateUser {
                name,
                hash,
                default_partition,
            } => {
                if self.users.contains_key(name) {
                    return Err(CommandError::UserExists(name.clone()));
                }
                let id = next.next_user_id.max(1);
                next.next_user_id = id + 1;
                next.users.insert(
                    name.clone(),
                    Arc::new(User {
                        id,
                        name: name.clone(),
                        hash: hash.as_str().into(),
                        all: Perms::NONE,
                        grants: BTreeMap::new(),
                        default_partition: default_partition.clone(),
                    }),
                );
            }
            AclChange::DropUser(name) => {
                existing(name)?;
                if name == ADMIN_USER {
                    return Err(CommandError::ProtectedAdmin("dropped"));
                }
                next.users.remove(name);
            }
            AclChange::SetPassword { name, hash } => {
                let mut user = (*existing(name)?).clone();
                user.hash = hash.as_str().into();
                next.users.insert(name.clone(), Arc::new(user));
            }
            AclChange::SetDefault { name, partition } => {
                let mut user = (*existing(name)?).clone();
                user.default_partition = partition.clone();
                next.users.insert(name.clone(), Arc::new(user));
            }
            AclChange::Grant(g) | AclChange::Revoke(g) => {
                let grant = matches!(change, AclChange::Grant(_));
                let user = existing(&g.user)?;
                if !grant && g.user == ADMIN_USER && g.target == ALL && g.perms.covers(Perms::ADMIN)
                {
                    return Err(CommandError::ProtectedAdmin("stripped of ADMIN on *"));
                }
                next.users.insert(
                    g.user.clone(),
                    Arc::new(user.with_grant(&g.target, g.perms, grant)),
                );
            }
        }
        Ok(next)
    }

    /// The ACL without any grant on partition `name` (after DROP PARTITION), or `None` when
    /// nobody held anything on it.
    pub fn without_partition(&self, name: &str) -> Option<Acl> {
        if !self.users.values().any(|u| u.grants.contains_key(name)) {
            return None;
        }
        let users = self
            .users
            .iter()
            .map(|(n, u)| {
                if u.grants.contains_key(name) {
                    let mut user = (**u).clone();
                    user.grants.remove(name);
                    (n.clone(), Arc::new(user))
                } else {
                    (n.clone(), u.clone())
                }
            })
            .collect();
        Some(Acl {
            version: self.version + 1,
            users,
            next_user_id: self.next_user_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl_with(name: &str) -> Acl {
        Acl::default()
            .apply(&AclChange::CreateUser {
                name: name.into(),
                hash: "h".into(),
                default_partition: None,
            })
            .unwrap()
    }

    fn grant(acl: &Acl, perms: Perms, target: &str, user: &str) -> Acl {
        acl.apply(&AclChange::Grant(GrantChange {
            perms,
            target: target.into(),
            user: user.into(),
        }))
        .unwrap()
    }

    #[test]
    fn read_and_write_are_independent_admin_implies_both() {
        let acl = grant(&acl_with("bob"), Perms::READ, "p", "bob");
        let bob = acl.get(b"bob").unwrap();
        assert!(bob.allows(Perms::READ, b"p"));
        assert!(!bob.allows(Perms::WRITE, b"p"));
        assert!(!bob.allows(Perms::READ, b"q"));
        assert!(!bob.allows(Perms::READ, b"*"));
        let acl = grant(&acl, Perms::ADMIN, "q", "bob");
        let bob = acl.get(b"bob").unwrap();
        assert!(bob.allows(Perms::WRITE, b"q") && bob.allows(Perms::READ, b"q"));
        assert!(!bob.allows(Perms::ADMIN, b"*"));
        let acl = grant(&acl, Perms::WRITE, "*", "bob");
        let bob = acl.get(b"bob").unwrap();
        assert!(bob.allows(Perms::WRITE, b"anything"));
        assert!(!bob.allows(Perms::READ, b"anything"));
        assert_eq!(bob.grant_list(), ["*:WRITE", "p:READ", "q:ADMIN"]);
    }

    #[test]
    fn revoke_and_drop_partition_remove_grants() {
        let acl = grant(&acl_with("bob"), Perms::READ, "p", "bob");
        let acl = grant(&acl, Perms::WRITE, "p", "bob");
        let acl = acl
            .apply(&AclChange::Revoke(GrantChange {
                perms: Perms::READ,
                target: "p".into(),
                user: "bob".into(),
            }))
            .unwrap();
        assert_eq!(acl.get(b"bob").unwrap().grant_list(), ["p:WRITE"]);
        let dropped = acl.without_partition("p").unwrap();
        assert!(dropped.get(b"bob").unwrap().grants.is_empty());
        assert!(dropped.without_partition("p").is_none());
    }

    #[test]
    fn ids_are_not_reused() {
        let acl = acl_with("bob");
        let first = acl.get(b"bob").unwrap().id;
        let acl = acl.apply(&AclChange::DropUser("bob".into())).unwrap();
        let acl = acl
            .apply(&AclChange::CreateUser {
                name: "bob".into(),
                hash: "h".into(),
                default_partition: None,
            })
            .unwrap();
        assert_ne!(acl.get(b"bob").unwrap().id, first);
        assert!(matches!(
            acl.apply(&AclChange::CreateUser {
                name: "bob".into(),
                hash: "h".into(),
                default_partition: None,
            }),
            Err(CommandError::UserExists(_))
        ));
        assert!(matches!(
            acl.apply(&AclChange::DropUser("nobody".into())),
            Err(CommandError::NoUser(_))
        ));
    }

    #[test]
    fn a_default_partition_is_set_and_cleared_and_grants_nothing() {
        let acl = acl_with("bob")
            .apply(&AclChange::SetDefault {
                name: "bob".into(),
                partition: Some("p".into()),
            })
            .unwrap();
        let bob = acl.get(b"bob").unwrap();
        assert_eq!(bob.default_partition.as_deref(), Some("p"));
        assert!(!bob.allows(Perms::READ, b"p"));
        // A DROP PARTITION revokes grants, not the default.
        let acl = grant(&acl, Perms::READ, "p", "bob")
            .without_partition("p")
            .unwrap();
        assert_eq!(
            acl.get(b"bob").unwrap().default_partition.as_deref(),
            Some("p")
        );
        let acl = acl
            .apply(&AclChange::SetDefault {
                name: "bob".into(),
                partition: None,
            })
            .unwrap();
        assert_eq!(acl.get(b"bob").unwrap().default_partition, None);
        assert!(matches!(
            acl.apply(&AclChange::SetDefault {
                name: "nobody".into(),
                partition: None,
            }),
            Err(CommandError::NoUser(_))
        ));
    }

    #[test]
    fn admin_cannot_be_dropped_or_stripped() {
        let acl = grant(&acl_with(ADMIN_USER), Perms::ADMIN, ALL, ADMIN_USER);
        assert!(acl.apply(&AclChange::DropUser(ADMIN_USER.into())).is_err());
        assert!(acl
            .apply(&AclChange::Revoke(GrantChange {
                perms: Perms::ADMIN,
                target: ALL.into(),
                user: ADMIN_USER.into(),
            }))
            .is_err());
    }
}

//! A connection's session as the shard keeps it: logins (checked here from the login cache or
//! on the hasher pool, behind a barrier; a login puts the connection on its user's default
//! partition, if it has one), changes the connection waits for behind the same
//! barrier, new ACL versions (closing the connections of dropped users), and moving an idle
//! connection, session and all, to the shard that owns its partitions.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mio::{Interest, Token};

use crate::acl::{Acl, User};
use crate::command::server::{self as server_cmd, PendingLogin, MAX_AUTH_FAILURES};
use crate::command::user as user_cmd;
use crate::command::{CommandError, CommandId};
use crate::metrics::ShardMetrics;
use crate::protocol::{Args, ReplyWriter};

use super::connection::{self, Connection};
use super::mailbox::{ConnRef, Message, ReplyTo};
use super::{Core, Shard};

impl Shard {
    /// Answers a login once the hasher pool has checked its password.
    pub(super) fn finish_login(
        &mut self,
        reply_to: ReplyTo,
        user_id: u64,
        hash: Option<Arc<str>>,
        ok: bool,
    ) {
        let index = reply_to.conn.index as usize;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.conn_ref != reply_to.conn {
            return;
        }
        // Dropping the pending login (its ticket) at the end frees its slot in the pool.
        let Some(PendingLogin {
            user, mac, hello, ..
        }) = conn.session.pending_login.take()
        else {
            return;
        };
        // The user must still be the one whose hash was checked: dropped and re-created, or
        // given a new password meanwhile, the old password proves nothing.
        let acl = &self.core.acl;
        let found = acl
            .get(&user)
            .filter(|u| ok && u.id == user_id && Some(&u.hash) == hash.as_ref())
            .cloned();
        let mut reply = Vec::new();
        let mut w = ReplyWriter::new(&mut reply, conn.session.protocol);
        match found {
            Some(found) => {
                if let Some(mac) = mac {
                    self.core.login_cache.remember(mac);
                }
                log::debug!("{}: logged in as '{}'", conn.peer, found.name);
                logged_in(&mut conn.session, found, acl.version, hello, &mut w);
            }
            None => {
                conn.session.auth_failures += 1;
                let failures = conn.session.auth_failures;
                CommandError::WrongPass.write_to(&mut w);
                let closing = failures >= MAX_AUTH_FAILURES;
                if closing {
                    conn.closing = true;
                }
                self.core.failed_logins.event(self.core.now, || {
                    format!(
                        "failed login as '{}' from {} ({failures} in a row{})",
                        log_safe(&user),
                        conn.peer,
                        if closing {
                            ", closing the connection"
                        } else {
                            ""
                        }
                    )
                });
            }
        }
        conn.replies.fill(reply_to.seq, &reply);
        conn.barrier = false;
        // Requests queued behind the login run now.
        conn.needs_service = true;
        self.after_progress(index);
    }

    /// Answers a catalog or ACL change once the coordinator has applied (or refused) it.
    pub(super) fn finish_change(&mut self, reply_to: ReplyTo, result: Result<(), CommandError>) {
        let index = reply_to.conn.index as usize;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        if conn.conn_ref != reply_to.conn {
            return;
        }
        let mut reply = Vec::new();
        let mut w = ReplyWriter::new(&mut reply, conn.session.protocol);
        match result {
            Ok(()) => w.ok(),
            Err(e) => e.write_to(&mut w),
        }
        conn.replies.fill(reply_to.seq, &reply);
        conn.barrier = false;
        // Requests queued behind the change run now.
        conn.needs_service = true;
        self.after_progress(index);
    }

    /// Switches to a new ACL version and closes the connections of users that are gone
    /// (dropped, or dropped and re-created: a new user is a new id).
    pub(super) fn apply_acl(&mut self, acl: Arc<Acl>) {
        self.core.acl = acl;
        let gone: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| user_gone(&self.core.acl, conn))
            .map(|(index, _)| index)
            .collect();
        for index in gone {
            self.close_dropped_user(index);
        }
    }

    /// Closes a connection whose user was dropped, once its replies in flight are written.
    pub(super) fn close_dropped_user(&mut self, index: usize) {
        if let Some(conn) = self.conns.get_mut(index) {
            conn.session.user = None;
        }
        self.close_once_written(index, "its user was dropped");
    }

    /// Closes a connection once the replies it is owed are written (it reads nothing more),
    /// and logs why: what a drop or a revocation does to the sessions it ends.
    pub(super) fn close_once_written(&mut self, index: usize, why: &str) {
        if let Some(conn) = self.conns.get_mut(index) {
            log::info!(
                "closing connection {} from {}: {why}",
                conn.session.id,
                conn.peer
            );
            conn.closing = true;
        }
        self.after_progress(index);
    }

    /// Hands an idle connection to the shard that owns the partitions it uses.
    pub(super) fn migrate(&mut self, index: usize, shard: usize) {
        let mut conn = self.conns.remove(index);
        if let Err(e) = self.poll.registry().deregister(conn.socket.tcp()) {
            log::warn!("cannot move connection from {}: {e}", conn.peer);
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        conn.affinity = connection::Affinity::moved();
        conn.queued_for_write = false;
        ShardMetrics::sub(
            &self.core.shared.metrics.shards[self.core.id].connections,
            1,
        );
        ShardMetrics::add(
            &self.core.shared.metrics.shards[self.core.id].migrated_out,
            1,
        );
        log::debug!(
            "connection {} moves from shard {} to shard {shard}",
            conn.session.id,
            self.core.id
        );
        self.core.shared.shards[shard].send(Message::Migrate(Box::new(conn)));
    }

    /// Takes in a connection moved here by another shard.
    pub(super) fn adopt(&mut self, mut conn: Box<Connection>) {
        if self.core.draining {
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        if let Err(e) = self.poll.registry().register(
            conn.socket.tcp(),
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot take in connection from {}: {e}", conn.peer);
            self.core.shared.clients.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.core.next_generation = self.core.next_generation.wrapping_add(1);
        conn.conn_ref = ConnRef {
            index: index as u32,
            generation: self.core.next_generation,
        };
        let gone = user_gone(&self.core.acl, &conn);
        entry.insert(*conn);
        ShardMetrics::add(
            &self.core.shared.metrics.shards[self.core.id].connections,
            1,
        );
        if gone {
            // Its user was dropped while it travelled here: this shard's ACL already says so,
            // so `apply_acl` will not come back to it.
            self.close_dropped_user(index);
            return;
        }
        // Requests may already wait in its buffer or socket.
        self.core.to_service.push(index);
    }
}

/// The connection's user no longer exists as it logged in (dropped, or dropped and
/// re-created: a new user is a new id).
fn user_gone(acl: &Acl, conn: &Connection) -> bool {
    conn.session
        .user
        .as_ref()
        .is_some_and(|user| acl.current(user).is_none())
}

/// Binds a session to the user it proved to be, and answers the login. A user with a default
/// partition starts in Redis grammar on it, from the request after this one (the login's
/// barrier, or this running inline, orders it before any request pipelined behind it); a
/// user without one leaves the selection as it was, as Redis's AUTH leaves the selected
/// database. The default grants nothing: the requests are authorized as any are.
fn logged_in(
    session: &mut server_cmd::Session,
    user: Arc<User>,
    acl_version: u64,
    hello: Option<server_cmd::Hello>,
    w: &mut ReplyWriter,
) {
    bind_user(session, user, acl_version);
    match hello {
        Some(hello) => server_cmd::finish_hello(hello, session, w),
        None => w.ok(),
    }
}

/// Binds a session to `user` as of ACL version `acl_version`: what every login does, by
/// password ([`logged_in`]) or by client certificate (`--tls-cert-user`, see `shard::tls`).
pub(super) fn bind_user(session: &mut server_cmd::Session, user: Arc<User>, acl_version: u64) {
    if let Some(partition) = &user.default_partition {
        session.selected = Some(partition.as_bytes().into());
    }
    session.user = Some(user);
    session.acl_version = acl_version;
    session.auth_failures = 0;
}

/// Client bytes fit for one log line: printable ASCII kept, anything else (a newline that
/// would forge a log line, say) shown as `?`, cut at 64 bytes.
fn log_safe(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(64)
        .map(|&b| {
            if (b' '..=b'~').contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

impl Core {
    /// A login request (AUTH, LOGIN, HELLO ... AUTH): `None` when the command is not one.
    pub(super) fn parse_login(
        &self,
        id: CommandId,
        args: &Args,
        session: &server_cmd::Session,
    ) -> Option<Result<(user_cmd::Credentials, PendingLogin), CommandError>> {
        match id {
            CommandId::Auth | CommandId::Login => Some(user_cmd::parse_auth(args).map(|c| {
                let pending = PendingLogin {
                    user: c.user.clone(),
                    mac: None,
                    hello: None,
                    ticket: None,
                };
                (c, pending)
            })),
            CommandId::Hello => match server_cmd::parse_hello(args, session) {
                Ok(mut hello) => hello.auth.take().map(|c| {
                    let pending = PendingLogin {
                        user: c.user.clone(),
                        mac: None,
                        hello: Some(hello),
                        ticket: None,
                    };
                    Ok((c, pending))
                }),
                Err(e) => Some(Err(e)),
            },
            _ => None,
        }
    }

    /// Answers a login this shard's cache knows at once; otherwise sends its password check to
    /// the hasher pool while the connection waits behind a barrier, so a pipelined command
    /// after AUTH runs as the new user.
    pub(super) fn start_login(
        &mut self,
        conn_ref: ConnRef,
        (credentials, mut pending): (user_cmd::Credentials, PendingLogin),
        session: &mut server_cmd::Session,
        replies: &mut connection::ReplyQueue,
        barrier: &mut bool,
    ) {
        let user = self.acl.get(&credentials.user);
        if let Some(user) = user {
            pending.mac = self.login_cache.mac(&user.hash, &credentials.password);
            if pending
                .mac
                .is_some_and(|mac| self.login_cache.contains(&mac))
            {
                let (user, version) = (user.clone(), self.acl.version);
                replies.push_ready(session.protocol, |w| {
                    logged_in(session, user, version, pending.hello, w)
                });
                return;
            }
        }
        // Past the pool's bound the answer is "try again later", at once: no barrier, no
        // slot, nothing queued.
        let ticket = match self.shared.hasher.reserve_login() {
            Ok(ticket) => ticket,
            Err(e) => {
                replies.push_ready(session.protocol, |w| e.write_to(w));
                return;
            }
        };
        let seq = replies.push_waiting();
        let reply_to = ReplyTo {
            shard: self.id,
            conn: conn_ref,
            seq,
        };
        let (user_id, hash) = (user.map_or(0, |u| u.id), user.map(|u| u.hash.clone()));
        if let Err(e) =
            self.shared
                .hasher
                .verify(&ticket, reply_to, user_id, hash, credentials.password)
        {
            let mut reply = Vec::new();
            e.write_to(&mut ReplyWriter::new(&mut reply, session.protocol));
            replies.fill(seq, &reply);
            return;
        }
        *barrier = true;
        pending.ticket = Some(ticket);
        session.pending_login = Some(pending);
    }
}

//! The client registry across shards: `CLIENT LIST`, `CLIENT INFO`, `CLIENT KILL` and
//! `MONITOR` (their parsing and line formats are in [`crate::command::client`]).
//!
//! # CLIENT LIST and KILL: a request to every shard
//! Each shard alone knows its connections (their buffers, sockets, sessions), so the
//! connection's shard sends one [`Message::Clients`] to every shard, itself included, and
//! keeps a waiting reply slot and a [`Gather`]; each shard answers with its lines (or the
//! number it killed) in a [`Message::ClientsAnswer`], and the last answer fills the slot
//! (lines sorted by id, as Redis lists them in creation order). Asking, rather than having
//! every shard publish a snapshot, keeps the hot path free: a request pays two stores for
//! the fields a snapshot could not compute later (`cmd` and, for a data command, the
//! partition: `Session::last_command`, `Session::last_partition`); everything else (ages,
//! buffer sizes, addresses) is read when asked. A connection that is moving between
//! shards at that moment (`Message::Migrate`) is missed by that one CLIENT LIST.
//! `CLIENT INFO` asks only the connection's own shard, the same way.
//!
//! A killed connection reads nothing more and closes once the replies it is owed are
//! written (`Connection::closing`), so "closes after its current reply"; a CLIENT KILL that
//! kills its own connection (`SKIPME no`, or the old form) gets its answer first.
//!
//! Who sees what (a caller without ADMIN on `*` only its own user's connections) is in
//! [`crate::command::client`]'s docs.
//!
//! # MONITOR
//! A monitoring connection is counted in [`Monitors`]; while the count is zero a batch of
//! requests pays one relaxed load, and each request a test of the bool it gave
//! (`Core::process_input`). Otherwise each shard appends a line for
//! every command its connections run (after authorization, as Redis shows what it calls;
//! rows flagged `admin` are not shown, AUTH's and HELLO AUTH's credentials are
//! `(redacted)`) to `Core::monitor_feed`, and at the end of its pass sends the pass's lines,
//! one shared buffer, to every shard that has a monitor ([`Message::MonitorFeed`]), itself
//! included. There each monitor gets them as output like any reply, so a monitor that does
//! not read passes `client-output-limit` and is closed: the shard never waits for it.
//! A monitoring connection may not touch the keyspace (a data command, or any command with
//! `write` or `readonly` flags, answers Redis's `-ERR Replica can't interact with the
//! keyspace`); it never moves to another shard; `RESET` ends monitoring, as in Redis.
//!
//! Runs on each shard's thread; nothing here blocks or locks.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::acl::{Perms, ALL};
use crate::command::access::authorize;
use crate::command::client::{self, ClientLine, ClientType, Filter};
use crate::command::server::Session;
use crate::command::{flag, lookup, CommandError, CommandId, CommandSpec, Route};
use crate::metrics::Outcome;
use crate::protocol::{Args, Protocol, ReplyWriter};

use super::connection::{Connection, ReplyQueue};
use super::mailbox::{ConnRef, Message, ReplyTo};
use super::{Core, Shard};

/// How many connections are in MONITOR mode: in all (what every request reads) and per shard
/// (where the lines must go).
pub struct Monitors {
    total: AtomicUsize,
    per_shard: Box<[AtomicUsize]>,
}

impl Monitors {
    pub fn new(shards: usize) -> Monitors {
        Monitors {
            total: AtomicUsize::new(0),
            per_shard: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Is any connection monitoring? One relaxed load: a monitor that starts is seen by the
    /// next pass of every shard at the latest, which is as soon as it could be told apart.
    #[inline(always)]
    pub fn any(&self) -> bool {
        self.total.load(Ordering::Relaxed) != 0
    }

    fn add(&self, shard: usize) {
        self.per_shard[shard].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, shard: usize) {
        self.per_shard[shard].fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }

    fn on(&self, shard: usize) -> bool {
        self.per_shard[shard].load(Ordering::Relaxed) != 0
    }
}

/// What a [`Message::Clients`] asks of a shard.
#[derive(Debug)]
pub struct ClientQuery {
    pub filter: Filter,
    /// Kill what matches (CLIENT KILL) rather than list it.
    pub kill: bool,
    /// The asking connection's id (`SKIPME`).
    pub caller: u64,
    /// A caller without ADMIN on `*`: only connections logged in as this user.
    pub only_user: Option<String>,
}

/// A CLIENT LIST, INFO or KILL waiting for the shards' answers. Its connection waits behind
/// a barrier meanwhile, as for a catalog change, so that what it pipelined behind runs after
/// it (or, once killed, not at all).
pub(super) struct Gather {
    reply_to: ReplyTo,
    protocol: Protocol,
    /// Shards that have not answered yet.
    left: usize,
    lines: Vec<(u64, String)>,
    killed: u64,
    answer: Answer,
}

/// How a [`Gather`] answers once every shard has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// CLIENT LIST and INFO: the lines.
    Lines,
    /// `CLIENT KILL <ip:port>`: `+OK`, or `-ERR No such client`.
    KillOld,
    /// The filter form: the number killed.
    KillCount,
    /// MONITOR: `+OK`, once the requests behind it will see the monitor counted.
    Ok,
}

/// Holds ADMIN on `*`: sees and kills every connection.
fn is_operator(session: &Session) -> bool {
    session
        .user
        .as_ref()
        .is_some_and(|u| u.all.covers(Perms::ADMIN))
}

impl Core {
    /// Runs CLIENT LIST, INFO, KILL, MONITOR, and RESET's end of monitoring; false when
    /// `spec` is none of those (RESET always: its handler runs after this).
    pub(super) fn client_command(
        &mut self,
        conn_ref: ConnRef,
        spec: &CommandSpec,
        args: &Args,
        session: &mut Session,
        replies: &mut ReplyQueue,
        barrier: &mut bool,
    ) -> bool {
        let protocol = session.protocol;
        let stats = &self.shared.metrics.shards[self.id].command_stats[spec.id as usize];
        let query = match spec.id {
            CommandId::Monitor => {
                stats.record(0, Outcome::Ok);
                if !session.monitoring {
                    session.monitoring = true;
                    self.shared.monitors.add(self.id);
                    self.monitor_conns.push(conn_ref);
                }
                // Behind a barrier, answered by this shard's next look at its inbox: the
                // requests pipelined behind it are framed again in a later batch, one that
                // sees the monitor counted (`input` reads the count once per batch) and so
                // refuses their keyspace commands.
                let nothing = ClientQuery {
                    filter: Filter {
                        ids: Some(Vec::new()),
                        ..Filter::default()
                    },
                    kill: false,
                    caller: session.id,
                    only_user: None,
                };
                self.ask_shards(conn_ref, protocol, replies, nothing, Answer::Ok, false);
                *barrier = true;
                return true;
            }
            CommandId::Reset => {
                if session.monitoring {
                    session.monitoring = false;
                    self.monitor_gone(conn_ref);
                }
                return false;
            }
            CommandId::ClientInfo => {
                stats.record(0, Outcome::Ok);
                ClientQuery {
                    filter: Filter {
                        ids: Some(vec![session.id]),
                        ..Filter::default()
                    },
                    kill: false,
                    caller: session.id,
                    only_user: None,
                }
            }
            CommandId::ClientList | CommandId::ClientKill => {
                let kill = spec.id == CommandId::ClientKill;
                let operator = is_operator(session);
                let me = session.user.as_ref().map(|u| u.name.clone());
                let restricted = if operator { None } else { me.as_deref() };
                let parsed = if kill {
                    client::parse_kill(args, &self.acl, restricted).map(|k| (k.filter, k.old_form))
                } else {
                    client::parse_list(args).map(|f| (f, false))
                };
                let (filter, old) = match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        stats.record(0, Outcome::Failed);
                        replies.push_ready(protocol, |w| e.write_to(w));
                        return true;
                    }
                };
                // Counted as INFO commandstats counts any command (the shards' share of the
                // work is not timed, as for a catalog change).
                stats.record(0, Outcome::Ok);
                let query = ClientQuery {
                    filter,
                    kill,
                    caller: session.id,
                    only_user: if operator { None } else { me },
                };
                let answer = match (kill, old) {
                    (false, _) => Answer::Lines,
                    (true, true) => Answer::KillOld,
                    (true, false) => Answer::KillCount,
                };
                self.ask_shards(conn_ref, protocol, replies, query, answer, true);
                *barrier = true;
                return true;
            }
            _ => return false,
        };
        self.ask_shards(conn_ref, protocol, replies, query, Answer::Lines, false);
        *barrier = true;
        true
    }

    /// Sends `query` to every shard (`all`) or to this one, and waits for the answers.
    fn ask_shards(
        &mut self,
        conn_ref: ConnRef,
        protocol: Protocol,
        replies: &mut ReplyQueue,
        query: ClientQuery,
        answer: Answer,
        all: bool,
    ) {
        let seq = replies.push_waiting();
        let reply_to = ReplyTo {
            shard: self.id,
            conn: conn_ref,
            seq,
        };
        let shards: Vec<usize> = if all {
            (0..self.shared.shards.len()).collect()
        } else {
            vec![self.id]
        };
        self.gathers.push(Gather {
            reply_to,
            protocol,
            left: shards.len(),
            lines: Vec::new(),
            killed: 0,
            answer,
        });
        let query = Arc::new(query);
        for shard in shards {
            self.shared.shards[shard].send(Message::Clients {
                reply_to,
                query: query.clone(),
            });
        }
    }

    /// Leaves connection `conn_ref` out of this shard's monitors.
    pub(super) fn monitor_gone(&mut self, conn_ref: ConnRef) {
        if let Some(at) = self.monitor_conns.iter().position(|c| *c == conn_ref) {
            self.monitor_conns.swap_remove(at);
            self.shared.monitors.remove(self.id);
        }
    }

    /// While some connection monitors (`input` asks once per batch): refuses a keyspace
    /// command of a monitoring connection, and adds the request's MONITOR line to this
    /// pass's feed. A request that will not run (unknown, wrong arity, not authorized) adds
    /// nothing: dispatch answers it. `known`: the row the Redis face's rewrite found.
    #[cold]
    #[inline(never)]
    pub(super) fn feed_monitors(
        &mut self,
        args: &Args,
        known: Option<&'static CommandSpec>,
        session: &Session,
    ) -> Result<(), CommandError> {
        let Ok(spec) = known.map_or_else(|| lookup(args), Ok) else {
            return Ok(());
        };
        if authorize(spec, args, session.user.as_deref(), &self.catalog).is_err() {
            return Ok(());
        }
        if session.monitoring && (spec.has(flag::WRITE) || spec.has(flag::READONLY)) {
            return Err(CommandError::NotAvailable(
                "Replica can't interact with the keyspace".into(),
            ));
        }
        if spec.has(flag::ADMIN) {
            return Ok(());
        }
        let db = if spec.partition_arg.is_some() {
            String::from_utf8_lossy(spec.partition_name(args)).into_owned()
        } else {
            self.db_of(session)
        };
        let addr = session.peer.map(|p| p.to_string()).unwrap_or_default();
        // In Redis grammar the face inserted the selected partition as argument 1 of every
        // data command (the rows routed by argument 1), which the client did not send.
        let rewritten = session.selected.is_some()
            && spec.route() == Route::Partition
            && spec.partition_arg == Some(1);
        client::monitor_line(
            &mut self.monitor_feed,
            SystemTime::now(),
            &db,
            &addr,
            spec.id,
            args,
            rewritten.then_some(1),
        );
        Ok(())
    }

    /// Sends this pass's MONITOR lines to every shard with a monitor (end of the pass).
    pub(super) fn flush_monitor_feed(&mut self) {
        if self.monitor_feed.is_empty() {
            return;
        }
        let feed = Arc::new(std::mem::take(&mut self.monitor_feed));
        for shard in 0..self.shared.shards.len() {
            if self.shared.monitors.on(shard) {
                self.shared.shards[shard].send(Message::MonitorFeed(feed.clone()));
            }
        }
    }

    /// CLIENT LIST's `db`: the selected partition, else the one the last data command went
    /// to, else `-` (none yet, or dropped since). Numbered partitions (`--databases`) are
    /// numbers, as Redis tools expect.
    fn db_of(&self, session: &Session) -> String {
        if let Some(selected) = &session.selected {
            return String::from_utf8_lossy(selected).into_owned();
        }
        self.catalog
            .partitions
            .values()
            .find(|p| p.id == session.last_partition)
            .map_or_else(|| "-".into(), |p| p.name.clone())
    }

    /// The CLIENT LIST line of `conn`.
    fn line_of(&self, conn: &Connection) -> String {
        let session = &conn.session;
        let addr = conn.peer.to_string();
        let laddr = conn
            .socket
            .tcp_ref()
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut flags = String::new();
        if session.monitoring {
            flags.push('O');
        }
        if session.pubsub.is_some() {
            flags.push('P');
        }
        if conn.closing {
            flags.push('c');
        }
        if session.multi.is_some() {
            flags.push('x');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let mut events = String::new();
        if !conn.closing && !conn.input_closed {
            events.push('r');
        }
        if conn.replies.has_output() {
            events.push('w');
        }
        let db = self.db_of(session);
        let user = session.user.as_ref().map_or("", |u| u.name.as_str());
        let mut line = String::new();
        client::write_line(
            &mut line,
            &ClientLine {
                id: session.id,
                addr: &addr,
                laddr: &laddr,
                fd: conn.socket.tcp_ref().as_raw_fd(),
                name: session.name.as_deref().unwrap_or_default(),
                age_secs: self.now.saturating_duration_since(conn.created).as_secs(),
                idle_secs: self
                    .now
                    .saturating_duration_since(conn.last_active)
                    .as_secs(),
                flags: &flags,
                db: &db,
                sub: session.pubsub.as_ref().map_or(0, |s| s.channels.len()),
                psub: session.pubsub.as_ref().map_or(0, |s| s.patterns.len()),
                multi: session.multi.as_ref().map_or(-1, |tx| tx.len() as i64),
                qbuf: conn.rend - conn.rstart,
                qbuf_free: conn.rbuf.len() - conn.rend,
                rbs: conn.rbuf.len(),
                obl: conn.replies.unwritten(),
                oll: conn.replies.in_flight(),
                omem: conn.replies.pending(),
                tot_mem: std::mem::size_of::<Connection>()
                    + conn.rbuf.capacity()
                    + conn.replies.buffer_bytes(),
                events: &events,
                cmd: session.last_command.map(|spec| spec.id),
                user,
                resp: if session.protocol == Protocol::Resp3 {
                    3
                } else {
                    2
                },
                lib_name: session.lib_name.as_deref().unwrap_or_default(),
                lib_ver: session.lib_ver.as_deref().unwrap_or_default(),
                shard: self.id,
            },
        );
        line
    }
}

impl Shard {
    /// Answers a [`Message::Clients`]: this shard's matching connections, listed or killed.
    pub(super) fn answer_clients(&mut self, reply_to: ReplyTo, query: &ClientQuery) {
        let mut lines = Vec::new();
        let mut killed = Vec::new();
        for (index, conn) in self.conns.iter() {
            let session = &conn.session;
            let user = session.user.as_ref().map(|u| u.name.as_str());
            if let Some(only) = &query.only_user {
                if user != Some(only.as_str()) {
                    continue;
                }
            }
            let addr = conn.peer.to_string();
            let laddr = match &query.filter.laddr {
                Some(_) => conn
                    .socket
                    .tcp_ref()
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                None => String::new(),
            };
            let candidate = client::Candidate {
                id: session.id,
                kind: if session.pubsub.is_some() {
                    ClientType::PubSub
                } else {
                    ClientType::Normal
                },
                user,
                addr: &addr,
                laddr: &laddr,
                age_secs: self
                    .core
                    .now
                    .saturating_duration_since(conn.created)
                    .as_secs(),
            };
            if !query.filter.matches(&candidate, query.caller) {
                continue;
            }
            if query.kill {
                killed.push(index);
            } else {
                lines.push((session.id, self.core.line_of(conn)));
            }
        }
        let count = killed.len() as u64 + self.kill_replicas(query);
        for index in killed {
            self.close_once_written(index, "CLIENT KILL");
        }
        self.core.shared.shards[reply_to.shard].send(Message::ClientsAnswer {
            reply_to,
            lines,
            killed: count,
        });
    }

    /// CLIENT KILL of replicas (`TYPE replica`, their `ADDR`, ...), on the coordinator only
    /// (their feeds are the server's, no shard's): each one it matches is dropped, its link
    /// broken (the replica reconnects and resumes, `crate::replication`). A feed has no
    /// client id or user (it matches no `ID` or `USER`), and only a caller holding ADMIN on
    /// `*` sees it.
    fn kill_replicas(&self, query: &ClientQuery) -> u64 {
        if !query.kill || self.core.id != super::COORDINATOR || query.only_user.is_some() {
            return 0;
        }
        let mut count = 0;
        for feed in self.core.shared.replication.feeds() {
            let addr = feed.peer.to_string();
            let candidate = client::Candidate {
                // (No id a client can name: `ID` parses an i64.)
                id: u64::MAX,
                kind: ClientType::Replica,
                user: None,
                addr: &addr,
                laddr: "",
                age_secs: 0,
            };
            if query.filter.matches(&candidate, query.caller) {
                feed.drop_replica("CLIENT KILL");
                count += 1;
            }
        }
        count
    }

    /// Takes one shard's answer to a CLIENT LIST, INFO or KILL; the last one answers it.
    pub(super) fn take_clients_answer(
        &mut self,
        reply_to: ReplyTo,
        lines: Vec<(u64, String)>,
        killed: u64,
    ) {
        let Some(at) = self
            .core
            .gathers
            .iter()
            .position(|g| g.reply_to.conn == reply_to.conn && g.reply_to.seq == reply_to.seq)
        else {
            return;
        };
        let gather = &mut self.core.gathers[at];
        gather.lines.extend(lines);
        gather.killed += killed;
        gather.left -= 1;
        if gather.left > 0 {
            return;
        }
        let mut gather = self.core.gathers.swap_remove(at);
        let mut reply = Vec::new();
        let mut w = ReplyWriter::new(&mut reply, gather.protocol);
        match gather.answer {
            Answer::KillOld if gather.killed == 0 => {
                CommandError::NotAvailable("No such client".into()).write_to(&mut w)
            }
            Answer::KillOld | Answer::Ok => w.ok(),
            Answer::KillCount => w.integer(gather.killed as i64),
            Answer::Lines => {
                gather.lines.sort_by_key(|(id, _)| *id);
                let text: String = gather.lines.into_iter().map(|(_, line)| line).collect();
                w.verbatim_text(text.as_bytes());
            }
        }
        let index = reply_to.conn.index as usize;
        match self.conns.get_mut(index) {
            Some(conn) if conn.conn_ref == reply_to.conn => {
                conn.replies.fill(reply_to.seq, &reply);
                conn.barrier = false;
                // Requests queued behind it run now (unless it was killed).
                conn.needs_service = true;
            }
            _ => return,
        }
        if !self.close_if_over_output_limit(index) {
            self.after_progress(index);
        }
    }

    /// After an ACL change: closes the monitors whose user no longer holds ADMIN on `*`
    /// (what MONITOR needed), before the change answers, so that no line of a later command
    /// reaches them. (Those of a dropped user close anyway: `apply_acl`.)
    pub(super) fn recheck_monitors(&mut self) {
        for conn_ref in self.core.monitor_conns.clone() {
            let index = conn_ref.index as usize;
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            let allowed = conn.session.user.as_ref().is_some_and(|u| {
                self.core
                    .acl
                    .current_allows(u, Perms::ADMIN, ALL.as_bytes())
            });
            if conn.conn_ref != conn_ref || allowed {
                continue;
            }
            conn.session.monitoring = false;
            self.core.monitor_gone(conn_ref);
            self.close_once_written(index, "its user no longer may MONITOR");
        }
    }

    /// Hands one pass's MONITOR lines of some shard to this shard's monitors; one that
    /// passes `client-output-limit` with them is closed.
    pub(super) fn feed_local_monitors(&mut self, feed: &[u8]) {
        for conn_ref in self.core.monitor_conns.clone() {
            let index = conn_ref.index as usize;
            match self.conns.get_mut(index) {
                Some(conn) if conn.conn_ref == conn_ref => conn.replies.push_bytes(feed),
                _ => continue,
            }
            if !self.close_if_over_output_limit(index) {
                self.after_progress(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitors_count_per_shard_and_in_all() {
        let m = Monitors::new(2);
        assert!(!m.any());
        m.add(1);
        assert!(m.any() && m.on(1) && !m.on(0));
        m.remove(1);
        assert!(!m.any() && !m.on(1));
    }
}

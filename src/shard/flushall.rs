//! `FLUSHALL [ASYNC|SYNC]`: a `FLUSH PARTITION` of every partition the caller holds ADMIN on,
//! each run where its partition lives, answered as one reply.
//!
//! The partitions live on different shards, so FLUSHALL is not one command on one shard but
//! one FLUSH PARTITION per partition, sent the ways any FLUSH PARTITION goes: run here on a
//! local partition (journaled, and held for the group commit, on a durable one), copied into
//! the owner's outbox for a remote one (which journals and commits it there, and checks the
//! approval again if its ACL moved on). Their replies are the *parts* of the FLUSHALL's
//! *whole* reply slot (`connection::ReplyQueue::push_whole`): the client hears one reply,
//! once every part has answered: the first error a part answered (an `-IOERR` of a durable
//! partition whose flush could not be made durable), or `+OK`. No barrier is needed: a request
//! pipelined after FLUSHALL runs after it on every partition it names, because it runs after
//! it here (a local partition) or travels behind it in the same outbox (a remote one).
//!
//! Which partitions: those of this shard's catalog copy the caller holds ADMIN on, directly
//! or through `*`, as of the FLUSHALL. A caller that holds ADMIN on no partition name at all
//! is refused (`-NOPERM ... no ADMIN permission on any partition`): a `+OK` that emptied
//! nothing would tell it its data is gone when none is. A caller holding ADMIN only on names
//! that do not exist (yet) is answered `+OK`: it emptied everything it administers.
//! `ASYNC` and `SYNC` are accepted and change nothing, as for FLUSHDB: every partition is
//! emptied at once.
//!
//! Runs on the connection's shard only; costs the data path nothing (FLUSHALL is found in
//! the connection-command branch of dispatch).

use crate::acl::{Perms, User};
use crate::command::error::printable;
use crate::command::server::Session;
use crate::command::{CommandError, CommandId};
use crate::metrics::ShardMetrics;
use crate::protocol::{Args, ReplyWriter, Span};

use super::connection::ReplyQueue;
use super::dispatch::{execute_logged, execute_memory};
use super::durability::{not_applied, Durability};
use super::mailbox::{self, ConnRef};
use super::routes::Target;
use super::Core;

/// `FLUSHALL` or `FLUSHALL ASYNC|SYNC` (Redis 7's forms); anything else is Redis's syntax
/// error.
fn check_modifiers(args: &Args) -> Result<(), CommandError> {
    match args.len() {
        1 => Ok(()),
        2 if args.get(1).eq_ignore_ascii_case(b"ASYNC")
            || args.get(1).eq_ignore_ascii_case(b"SYNC") =>
        {
            Ok(())
        }
        _ => Err(CommandError::Syntax(String::new())),
    }
}

/// Holds ADMIN on some partition name, or on `*`.
fn holds_admin_anywhere(user: &User) -> bool {
    user.all.covers(Perms::ADMIN) || user.grants.values().any(|p| p.covers(Perms::ADMIN))
}

/// `FLUSH PARTITION <name>` as a request.
fn flush_request(name: &str, buf: &mut Vec<u8>, spans: &mut Vec<Span>) {
    buf.clear();
    spans.clear();
    for word in [&b"FLUSH"[..], b"PARTITION", name.as_bytes()] {
        let start = buf.len() as u32;
        buf.extend_from_slice(word);
        spans.push(Span {
            start,
            end: buf.len() as u32,
        });
    }
}

impl Core {
    /// Runs FLUSHALL for the connection `conn_ref` (see the module docs).
    pub(super) fn flush_all(
        &mut self,
        conn_ref: ConnRef,
        args: &Args,
        session: &Session,
        replies: &mut ReplyQueue,
    ) {
        let protocol = session.protocol;
        let checked = check_modifiers(args).and_then(|()| {
            let user = session.user.clone().ok_or(CommandError::NoAuth)?;
            if holds_admin_anywhere(&user) {
                Ok(user)
            } else {
                Err(CommandError::NoAdminAnywhere {
                    user: user.name.clone(),
                    command: "flushall",
                })
            }
        });
        let user = match checked {
            Ok(user) => user,
            Err(e) => {
                replies.push_ready(protocol, |w| e.write_to(w));
                return;
            }
        };
        let names: Vec<String> = self
            .catalog
            .partitions
            .keys()
            .filter(|name| user.allows(Perms::ADMIN, name.as_bytes()))
            .cloned()
            .collect();
        let spec = CommandId::FlushPartition.spec();
        let whole = replies.push_whole();
        let (mut buf, mut spans) = (Vec::new(), Vec::new());
        let mut reply = Vec::new();
        for name in &names {
            flush_request(name, &mut buf, &mut spans);
            let args = Args::new(&buf, &spans);
            let part = replies.push_part(whole);
            match self.routes.get_mut(name.as_bytes()) {
                Some(Target::Local(local)) => {
                    let limits = self
                        .shared
                        .data_limits(self.output_limit.saturating_sub(replies.pending()));
                    let metrics = &self.shared.metrics.shards[self.id];
                    match &mut local.log {
                        // Journaled, and answered once the group commit made it durable.
                        Durability::Logged(log) => {
                            let start = self.commit.buf.len();
                            let mut w = ReplyWriter::new(&mut self.commit.buf, protocol);
                            let (id, partition) = (local.id, &mut local.data);
                            let (dirty, quota) = (&mut self.commit.dirty, &mut local.quota);
                            let (result, logged) = execute_logged(
                                spec, &args, partition, log, id, dirty, quota, limits, metrics,
                                &mut w,
                            );
                            if let Err(e) = result {
                                e.write_to(&mut w);
                            }
                            if logged {
                                self.commit.hold(conn_ref, part, protocol, id, start);
                            } else {
                                replies.fill(part, &self.commit.buf[start..]);
                                self.commit.buf.truncate(start);
                            }
                        }
                        Durability::Broken(why) => {
                            reply.clear();
                            not_applied(why).write_to(&mut ReplyWriter::new(&mut reply, protocol));
                            replies.fill(part, &reply);
                        }
                        Durability::Memory => {
                            reply.clear();
                            let mut w = ReplyWriter::new(&mut reply, protocol);
                            let dirty = &mut self.commit.dirty;
                            if let Err(e) =
                                execute_memory(spec, &args, local, dirty, limits, metrics, &mut w)
                            {
                                e.write_to(&mut w);
                            }
                            replies.fill(part, &reply);
                        }
                    }
                }
                Some(&mut Target::Remote { shard, id }) => {
                    let approval = mailbox::Approval {
                        partition: id,
                        acl_version: self.acl.version,
                        user: user.id,
                        max_reply: self.output_limit.saturating_sub(replies.pending()) as u64,
                    };
                    self.outboxes[shard].push(conn_ref, part, protocol, spec.id, &args, approval);
                    ShardMetrics::add(&self.shared.metrics.shards[self.id].forwarded_out, 1);
                }
                // The catalog names it, so the routes do (both change together); answered
                // as any request for a missing partition all the same.
                None => {
                    reply.clear();
                    CommandError::NoPartition(printable(name.as_bytes()))
                        .write_to(&mut ReplyWriter::new(&mut reply, protocol));
                    replies.fill(part, &reply);
                }
            }
        }
        replies.close_whole(whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifiers_are_redis_7_s() {
        let run = |words: &[&str]| {
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
            check_modifiers(&Args::new(&buf, &spans))
        };
        assert!(run(&["FLUSHALL"]).is_ok());
        assert!(run(&["flushall", "async"]).is_ok());
        assert!(run(&["FLUSHALL", "SYNC"]).is_ok());
        for bad in [&["FLUSHALL", "NOW"][..], &["FLUSHALL", "ASYNC", "SYNC"]] {
            assert_eq!(run(bad).unwrap_err().to_string(), "syntax error", "{bad:?}");
        }
    }
}

//! REPLICAOF (and SLAVEOF), ROLE, WAIT, and REPLSYNC, the primary's side of a replica's
//! handshake (the design and the wire: [`crate::replication`]).
//!
//! All run on the connection's shard and only read or flip the shared replication state;
//! starting or stopping the link is a thread of its own, never work on the shard.

use std::net::{IpAddr, SocketAddr};

use crate::protocol::{Args, ReplyWriter};
use crate::replication::backlog::Resume;

use super::server::{ServerView, Session};
use super::CommandError;

/// `REPLICAOF <host> <port>` | `REPLICAOF NO ONE` (and `SLAVEOF`), as Redis 7 answers them.
pub fn replicaof(
    args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let (host, port) = (args.get(1), args.get(2));
    let state = view.replication;
    if host.eq_ignore_ascii_case(b"no") && port.eq_ignore_ascii_case(b"one") {
        if state.primary().is_some() {
            state.follow(None);
        }
        w.ok();
        return Ok(());
    }
    let port: u16 = std::str::from_utf8(port)
        .ok()
        .and_then(|p| p.parse().ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| CommandError::NotAvailable("Invalid master port".into()))?;
    let host = std::str::from_utf8(host)
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| CommandError::NotAvailable("Invalid master host".into()))?
        .to_string();
    if let Some(listen) = state.listen.get() {
        if is_self(&host, port, *listen) {
            return Err(CommandError::NotAvailable(format!(
                "cannot replicate from {host}:{port}: that is this server itself"
            )));
        }
    }
    if state.primary().as_ref() == Some(&(host.clone(), port)) {
        w.simple("OK Already connected to specified master");
        return Ok(());
    }
    state.follow(Some((host, port)));
    w.ok();
    Ok(())
}

/// Whether `host:port` names the address this server listens on (`listen`): the same
/// port on the same address, on a loopback address, or on any address when it listens on
/// all of them. A name other than `localhost` is not resolved here (no blocking on a
/// shard): the handshake catches it (the primary refuses our own replication id).
fn is_self(host: &str, port: u16, listen: SocketAddr) -> bool {
    if port != listen.port() {
        return false;
    }
    let ip: Option<IpAddr> = if host.eq_ignore_ascii_case("localhost") {
        Some(IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse().ok()
    };
    match ip {
        None => false,
        Some(ip) => {
            ip == listen.ip()
                || listen.ip().is_unspecified()
                || (ip.is_loopback() && listen.ip().is_loopback())
        }
    }
}

/// `ROLE`, in Redis 7's shapes: `master <offset> [[ip port offset] ...]` or
/// `slave <host> <port> <state> <offset>`.
pub fn role(
    _args: &Args,
    _session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let state = view.replication;
    match state.primary() {
        None => {
            let feeds = state.feeds();
            w.array(3);
            w.bulk(b"master");
            w.integer(state.offset() as i64);
            w.array(feeds.len());
            for f in feeds {
                w.array(3);
                w.bulk(f.peer.ip().to_string().as_bytes());
                w.bulk(f.listening_port.to_string().as_bytes());
                w.bulk(f.offset().to_string().as_bytes());
            }
        }
        Some((host, port)) => {
            let link = state.status.state();
            w.array(5);
            w.bulk(b"slave");
            w.bulk(host.as_bytes());
            w.integer(i64::from(port));
            w.bulk(link.name().as_bytes());
            let offset = if link == crate::replication::replica::LinkState::Connect {
                -1
            } else {
                state.status.offset() as i64
            };
            w.integer(offset);
        }
    }
    Ok(())
}

/// `WAIT <numreplicas> <timeout>`: replicas do not acknowledge offsets yet.
pub fn wait(
    _args: &Args,
    _session: &mut Session,
    _view: &ServerView,
    _w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    Err(CommandError::NotAvailable(
        "WAIT is not supported yet: replicas do not acknowledge offsets in this release".into(),
    ))
}

/// `REPLSYNC <listening-port> <replid> [<primary-replid> <primary-run> [<id>:<offset> ...]]`:
/// a replica's handshake, with what it asks to resume when it followed a primary before
/// (the primary's replication id and run id it last synced from, and per partition the
/// offset it applied). Answers `+FULLSYNC <replid> <shards> <run>`; once that is written the
/// connection becomes the replica's feed (`Session::replica_port`), and each shard resumes
/// the partitions its backlog still holds and sends the others whole.
pub fn replsync(
    args: &Args,
    session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let state = view.replication;
    let port: u16 = std::str::from_utf8(args.get(1))
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            CommandError::Syntax(format!(
                "expected the replica's listening port, got '{}'",
                String::from_utf8_lossy(args.get(1))
            ))
        })?;
    if args.get(2) == state.replid.as_bytes() {
        return Err(CommandError::NotAvailable(
            "this server cannot replicate from itself (REPLICAOF names its own address)".into(),
        ));
    }
    if state.primary().is_some() {
        return Err(CommandError::NotAvailable(
            "this server is a replica: chained replication (a replica of a replica) is not \
             supported yet; point REPLICAOF at the primary"
                .into(),
        ));
    }
    let run_id = &view.metrics.run_id;
    let resume = resume_request(args, &state.replid, run_id)?;
    w.simple(&format!(
        "FULLSYNC {} {} {run_id}",
        state.replid, state.shards
    ));
    session.replica_port = Some(port);
    session.replica_resume = resume.map(Box::new);
    session.close_after_reply = true;
    Ok(())
}

/// REPLSYNC's resume request (its words after the replica's replid), checked whole before
/// anything is taken from it: `None` when it asks for nothing; the offsets only when the
/// history it names is this server's now (`replid` and this process's `run_id`: the
/// offsets and the backlog do not outlive the process).
fn resume_request(args: &Args, replid: &str, run_id: &str) -> Result<Option<Resume>, CommandError> {
    use crate::replication::backlog::MAX_RESUME_PARTITIONS;
    if args.len() == 3 {
        return Ok(None);
    }
    let bad = |what: String| CommandError::Syntax(format!("REPLSYNC: {what}"));
    let is_id = |w: &[u8]| w.len() == 40 && w.iter().all(|b| b.is_ascii_hexdigit());
    if args.len() < 5 || !is_id(args.get(3)) || !is_id(args.get(4)) {
        return Err(bad(
            "expected <primary-replid> <primary-run-id> (40 hex digits each) after the \
             replica's replid"
                .into(),
        ));
    }
    let pairs = args.len() - 5;
    if pairs > MAX_RESUME_PARTITIONS {
        return Err(bad(format!(
            "{pairs} partition offsets (at most {MAX_RESUME_PARTITIONS})"
        )));
    }
    let mut offsets = hashbrown::HashMap::with_capacity(pairs);
    for i in 5..args.len() {
        let word = args.get(i);
        let pair = std::str::from_utf8(word).ok().and_then(|w| {
            let (id, offset) = w.split_once(':')?;
            Some((id.parse::<u64>().ok()?, offset.parse::<u64>().ok()?))
        });
        let Some((id, offset)) = pair else {
            return Err(bad(format!(
                "'{}' is not <partition-id>:<offset>",
                crate::command::error::printable(&word[..word.len().min(64)])
            )));
        };
        if offsets.insert(id, offset).is_some() {
            return Err(bad(format!("partition {id} named twice")));
        }
    }
    let ours = args.get(3) == replid.as_bytes() && args.get(4) == run_id.as_bytes();
    if !ours {
        offsets.clear();
    }
    Ok(Some(Resume {
        asked: true,
        offsets,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_the_listening_address_by_any_local_name() {
        let listen: SocketAddr = "127.0.0.1:7379".parse().unwrap();
        assert!(is_self("127.0.0.1", 7379, listen));
        assert!(is_self("localhost", 7379, listen));
        assert!(!is_self("127.0.0.1", 7380, listen));
        assert!(!is_self("10.0.0.1", 7379, listen));
        assert!(!is_self("db.example", 7379, listen));
        let any: SocketAddr = "0.0.0.0:7379".parse().unwrap();
        assert!(is_self("10.0.0.1", 7379, any));
    }
}

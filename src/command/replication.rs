//! REPLICAOF (and SLAVEOF), ROLE, WAIT, and REPLSYNC, the primary's side of a replica's
//! handshake (the design and the wire: [`crate::replication`]).
//!
//! All run on the connection's shard and only read or flip the shared replication state;
//! starting or stopping the link is a thread of its own, never work on the shard.

use std::net::{IpAddr, SocketAddr};

use crate::protocol::{Args, ReplyWriter};
use crate::replication::backlog::Resume;

use super::error::printable;
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
                w.bulk(f.shown_ip().as_bytes());
                w.bulk(f.listening_port.to_string().as_bytes());
                w.bulk(f.acked.offset().to_string().as_bytes());
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

/// Redis 7's answer to `WAIT` on a replica, word for word.
pub const WAIT_ON_REPLICA: &str = "ERR WAIT cannot be used with replica instances. Please also \
    note that since Redis 4.0 if a replica is configured to be writable (which is not the \
    default) writes to replicas are just local and are not propagated.";

/// A parsed `WAIT <numreplicas> <timeout>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFor {
    /// Replicas wanted (negative: any count will do, as in Redis).
    pub replicas: i64,
    /// Milliseconds; `None`: forever (a timeout of 0).
    pub timeout_ms: Option<u64>,
}

/// Parses `WAIT`'s arguments in Redis 7's order and texts: on a replica an error before
/// anything else; `numreplicas` an integer; `timeout` a non-negative integer of
/// milliseconds.
pub fn parse_wait(args: &Args, is_replica: bool) -> Result<WaitFor, CommandError> {
    if is_replica {
        return Err(CommandError::NotAvailable(
            WAIT_ON_REPLICA.trim_start_matches("ERR ").into(),
        ));
    }
    let int = |i: usize| std::str::from_utf8(args.get(i)).ok()?.parse::<i64>().ok();
    let replicas = int(1).ok_or(CommandError::ValueNotInteger)?;
    let timeout = int(2).ok_or_else(|| {
        CommandError::NotAvailable("timeout is not an integer or out of range".into())
    })?;
    if timeout < 0 {
        return Err(CommandError::NotAvailable("timeout is negative".into()));
    }
    Ok(WaitFor {
        replicas,
        timeout_ms: (timeout > 0).then_some(timeout as u64),
    })
}

/// `WAIT <numreplicas> <timeout>` without blocking: the number of replicas that
/// acknowledged this connection's writes so far, now. A connection's WAIT takes the shard's
/// parking path instead (`shard::wait`), which answers this same count once it is enough
/// or the timeout passed; this handler answers where nothing may block (a transaction, as
/// Redis's WAIT inside MULTI does). Known limit there: the offsets now may not cover a
/// write of the same pass yet (framed by the pass's commit), so the count may be high.
pub fn wait(
    args: &Args,
    session: &mut Session,
    view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    let state = view.replication;
    parse_wait(args, state.is_replica())?;
    let target = wait_target(session, state);
    w.integer(state.count_acks(&target) as i64);
    Ok(())
}

/// The shard offsets that cover every write of this connection so far: the offsets now
/// once it has written (asked once every write it sent was answered and committed: see
/// `shard::wait`), none (zeros) when it never wrote, as Redis's `woff` of 0.
pub fn wait_target(session: &Session, state: &crate::replication::State) -> Box<[u64]> {
    if session.wrote {
        state.offsets_now()
    } else {
        vec![0; state.shards].into_boxed_slice()
    }
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

/// The longest address a replica may announce (a host name's limit).
const MAX_ANNOUNCE_LEN: usize = 255;

/// `REPLCONF ip-address <ip>`: the address this replica's primary shows for it (INFO's
/// `slaveN:ip=`, ROLE), from its `--replica-announce-ip`. Kept by the session until
/// `REPLSYNC` makes the connection a feed. Printable bytes without `,` (INFO's separator):
/// it is only shown, never connected to by this server.
pub fn replconf(
    args: &Args,
    session: &mut Session,
    _view: &ServerView,
    w: &mut ReplyWriter,
) -> Result<(), CommandError> {
    if !args.get(1).eq_ignore_ascii_case(b"ip-address") {
        return Err(CommandError::Syntax(format!(
            "unknown REPLCONF option '{}' (GoKV: REPLCONF ip-address <ip>)",
            printable(args.get(1))
        )));
    }
    let ip = args.get(2);
    let shown = |b: &u8| b.is_ascii_graphic() && *b != b',';
    if ip.is_empty() || ip.len() > MAX_ANNOUNCE_LEN || !ip.iter().all(shown) {
        return Err(CommandError::Syntax(format!(
            "an announced address is 1 to {MAX_ANNOUNCE_LEN} printable bytes without ','"
        )));
    }
    session.replica_ip = Some(String::from_utf8_lossy(ip).into_owned());
    w.ok();
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

//! Blocking set-up done before the timed run: connecting, `AUTH`, placing a connection on a
//! shard (`CLIENT INFO`), `CREATE PARTITION`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::resp::{encode_command, parse_reply, Reply};

/// How long a set-up command may take before the server is declared unresponsive.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection (Nagle off) and authenticates it when `auth` is given.
pub fn connect(addr: SocketAddr, auth: Option<&[String]>) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&addr, SETUP_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    if let Some(auth) = auth {
        let args: Vec<&[u8]> = auth.iter().map(|a| a.as_bytes()).collect();
        if let Err(reply) = call(&mut stream, &args)? {
            return Err(format!("AUTH failed: {reply}"));
        }
    }
    Ok(stream)
}

/// Connects until the server puts the connection on `shard` (GoKV deals connections to its
/// shards round-robin and tells a connection its shard in `CLIENT INFO`); a connection that
/// lands elsewhere is closed and replaced. Each connect takes one attempt from `attempts_left`,
/// shared by all the connections of a phase, so that an impossible placement (a shard the
/// server does not have) ends in an error instead of looping.
pub fn connect_on_shard(
    addr: SocketAddr,
    auth: Option<&[String]>,
    shard: u32,
    attempts_left: &AtomicU64,
) -> Result<TcpStream, String> {
    let mut seen = Vec::new();
    loop {
        let took =
            attempts_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if took.is_err() {
            seen.sort_unstable();
            seen.dedup();
            return Err(format!(
                "gave up placing a connection on shard {shard}: the connect attempts ran out \
                 (this connection saw shards {seen:?}; does the server have a shard {shard}?)"
            ));
        }
        let mut stream = connect(addr, auth)?;
        let on = client_shard(&mut stream)?;
        if on == shard {
            return Ok(stream);
        }
        seen.push(on);
        // Dropping the stream closes it; the next connect goes to the next shard in turn.
    }
}

/// The shard a GoKV connection lives on, from the `shard=` field of `CLIENT INFO`.
pub fn client_shard(stream: &mut TcpStream) -> Result<u32, String> {
    match call_raw(stream, &[b"CLIENT", b"INFO"])? {
        Ok(reply) => parse_shard(&reply).ok_or_else(|| {
            format!(
                "CLIENT INFO reply has no shard=N field (not a GoKV server?): {:?}",
                String::from_utf8_lossy(&reply).trim_end()
            )
        }),
        Err(e) => Err(format!("CLIENT INFO failed: {e}")),
    }
}

/// Finds `shard=N` in a `CLIENT INFO` reply (`id=5 name= resp=2 shard=1`), whatever RESP type
/// carries it (bulk string in RESP2, verbatim string in RESP3).
pub fn parse_shard(reply: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(reply);
    text.split(|c: char| c.is_ascii_whitespace() || c == ':')
        .find_map(|field| field.strip_prefix("shard="))
        .and_then(|n| n.parse().ok())
}

/// Sends one command and waits for its reply. The outer error is a failed connection; the
/// inner one an error reply (its text).
pub fn call(stream: &mut TcpStream, args: &[&[u8]]) -> Result<Result<(), String>, String> {
    Ok(call_raw(stream, args)?.map(|_| ()))
}

/// Like [`call`], but a non-error reply comes back as its raw RESP bytes.
fn call_raw(stream: &mut TcpStream, args: &[&[u8]]) -> Result<Result<Vec<u8>, String>, String> {
    let mut req = Vec::new();
    encode_command(&mut req, args);
    stream
        .set_read_timeout(Some(SETUP_TIMEOUT))
        .and_then(|_| stream.write_all(&req))
        .map_err(|e| format!("cannot send {}: {e}", String::from_utf8_lossy(args[0])))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((len, reply)) = parse_reply(&buf).map_err(|e| e.to_string())? {
            match reply {
                Reply::Error(text) => return Ok(Err(String::from_utf8_lossy(text).into_owned())),
                Reply::Value => {
                    buf.truncate(len);
                    return Ok(Ok(buf));
                }
                // An out-of-band push answers nothing: drop it and wait for the reply.
                Reply::Push => {
                    buf.drain(..len);
                    continue;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed by the server during set-up".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("no reply during set-up: {e}")),
        }
    }
}

/// Runs `CREATE PARTITION <p> STRING MEMORY` for each partition, treating "already exists" as
/// success. Returns one note per partition for the log.
pub fn create_partitions(
    addr: SocketAddr,
    auth: Option<&[String]>,
    partitions: &[String],
) -> Result<Vec<String>, String> {
    let mut stream = connect(addr, auth)?;
    let mut notes = Vec::new();
    for p in partitions {
        let args: [&[u8]; 5] = [b"CREATE", b"PARTITION", p.as_bytes(), b"STRING", b"MEMORY"];
        match call(&mut stream, &args)? {
            Ok(()) => notes.push(format!("created partition {p}")),
            Err(reply) if reply.to_ascii_lowercase().contains("exist") => {
                notes.push(format!("partition {p} already exists"))
            }
            Err(reply) => return Err(format!("CREATE PARTITION {p} failed: {reply}")),
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn shard_is_read_from_client_info() {
        assert_eq!(
            parse_shard(b"$31\r\nid=5 name= resp=2 shard=1\n\r\n"),
            Some(1)
        );
        assert_eq!(
            parse_shard(b"=35\r\ntxt:id=7 name=x resp=3 shard=12\n\r\n"),
            Some(12)
        );
        assert_eq!(parse_shard(b"$8\r\nshard=0\r\n"), Some(0));
        assert_eq!(parse_shard(b"$22\r\nid=5 name= resp=2 db=0\r\n"), None);
        assert_eq!(parse_shard(b"$10\r\nshard=abc\r\n"), None);
        // A client named "xshard=3" is not the shard field.
        assert_eq!(
            parse_shard(b"$24\r\nid=1 name=xshard=3 shard=2\r\n"),
            Some(2)
        );
    }

    /// A fake server that deals connections to `shards` shards round-robin and answers
    /// `CLIENT INFO` with the connection's shard, as GoKV does.
    fn fake_server(shards: u32) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let shard = n as u32 % shards;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    while let Ok(k) = stream.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        let line = format!("id={n} name= resp=2 shard={shard}\n");
                        let reply = format!("${}\r\n{line}\r\n", line.len());
                        if stream.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn connections_are_replaced_until_they_land_on_the_shard() {
        let addr = fake_server(3);
        let attempts = AtomicU64::new(50 * 4);
        for _ in 0..4 {
            let mut s = connect_on_shard(addr, None, 2, &attempts).unwrap();
            assert_eq!(client_shard(&mut s).unwrap(), 2);
        }
        // Round-robin over 3 shards: exactly 3 connects per placed connection.
        assert_eq!(attempts.load(Ordering::Relaxed), 50 * 4 - 12);
    }

    #[test]
    fn a_missing_shard_gives_up_with_a_clear_error() {
        let addr = fake_server(2);
        let attempts = AtomicU64::new(10);
        let err = connect_on_shard(addr, None, 5, &attempts).unwrap_err();
        assert!(err.contains("shard 5"), "{err}");
        assert!(err.contains("[0, 1]"), "{err}");
        assert_eq!(attempts.load(Ordering::Relaxed), 0);
    }
}

//! Blocking set-up done before the timed run: connecting, `AUTH`, `CREATE PARTITION`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// Sends one command and waits for its reply. The outer error is a failed connection; the
/// inner one an error reply (its text).
pub fn call(stream: &mut TcpStream, args: &[&[u8]]) -> Result<Result<(), String>, String> {
    let mut req = Vec::new();
    encode_command(&mut req, args);
    stream
        .set_read_timeout(Some(SETUP_TIMEOUT))
        .and_then(|_| stream.write_all(&req))
        .map_err(|e| format!("cannot send {}: {e}", String::from_utf8_lossy(args[0])))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((_, reply)) = parse_reply(&buf).map_err(|e| e.to_string())? {
            return Ok(match reply {
                Reply::Error(text) => Err(String::from_utf8_lossy(text).into_owned()),
                Reply::Value | Reply::Push => Ok(()),
            });
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

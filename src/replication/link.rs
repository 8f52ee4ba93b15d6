//! The byte stream of one replication link, plain TCP or TLS, in blocking mode.
//!
//! Both ends of a link are threads of their own that block on the socket (never a shard):
//! the replica's link thread ([`super::replica`]) and the primary's feed sender
//! ([`super::feed`]). With `--tls-replication yes` the replica connects with TLS
//! ([`crate::tls::TlsContext::connect_replica`]: the primary's certificate must chain to
//! `--tls-ca-cert-file` and name the host given to `REPLICAOF`; the replica presents its own
//! `--tls-cert-file` to a primary that asks for client certificates). A primary serves a
//! replica on whichever port it connected to: a replica that came in on the TLS port keeps
//! its TLS session, handshake done by the shard, when its connection becomes a feed.
//!
//! rustls does the record layer over the blocking socket (`rustls::StreamOwned`), so read
//! and write timeouts set on the TCP socket apply to TLS links as they do to plain ones.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use rustls::{ClientConnection, ServerConnection, StreamOwned};

/// A replication link's stream.
pub enum LinkStream {
    Plain(TcpStream),
    /// The replica's end of a TLS link.
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// The primary's end of a TLS link.
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl LinkStream {
    /// The TCP socket under the stream (timeouts, shutdown, a clone to shut it down from
    /// another thread).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            LinkStream::Plain(s) => s,
            LinkStream::TlsClient(s) => &s.sock,
            LinkStream::TlsServer(s) => &s.sock,
        }
    }

    /// Whether the link is encrypted (log lines).
    pub fn is_tls(&self) -> bool {
        !matches!(self, LinkStream::Plain(_))
    }

    /// Ends the link: a TLS peer gets its close_notify first (best effort).
    pub fn close(&mut self) {
        match self {
            LinkStream::Plain(_) => {}
            LinkStream::TlsClient(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
            }
            LinkStream::TlsServer(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
            }
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Both);
    }
}

impl Read for LinkStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LinkStream::Plain(s) => s.read(buf),
            LinkStream::TlsClient(s) => s.read(buf),
            LinkStream::TlsServer(s) => s.read(buf),
        }
    }
}

impl Write for LinkStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LinkStream::Plain(s) => s.write(buf),
            LinkStream::TlsClient(s) => s.write(buf),
            LinkStream::TlsServer(s) => s.write(buf),
        }
    }

    /// For TLS: every record rustls holds goes to the socket.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            LinkStream::Plain(s) => s.flush(),
            LinkStream::TlsClient(s) => s.flush(),
            LinkStream::TlsServer(s) => s.flush(),
        }
    }
}

/// Whether `fd` has input (or, for an epoll descriptor, events) waiting now: `poll` with a
/// zero timeout, nothing read.
pub fn readable_now(fd: std::os::fd::RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    unsafe { libc::poll(&mut poll, 1, 0) > 0 }
}

//! A connection's socket: plain TCP, or TCP carrying a rustls server session.
//!
//! The shard's connection code matches on [`Transport`] once per read and once per write;
//! a plain socket is then read and written exactly as it was before TLS existed. A TLS one
//! reads ciphertext into rustls (which decrypts into its own small buffer, from which the
//! plaintext is copied into the connection's read buffer: the one copy TLS needs) and hands
//! replies to rustls, which encrypts them into records it writes to the socket.
//!
//! Everything here is non-blocking: `WouldBlock` from the socket is an ordinary outcome, and
//! what rustls could not write yet (its encrypted records) is written on the next writable
//! event ([`TlsStream::has_pending_output`]).

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use rustls::ServerConnection;

/// A connection's socket.
pub enum Transport {
    Plain(TcpStream),
    /// Boxed: a rustls session is about a kilobyte, and most connections are plain.
    Tls(Box<TlsStream>),
}

impl Transport {
    /// The TCP socket (to register with, or deregister from, a poll).
    #[inline]
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(tls) => &mut tls.socket,
        }
    }

    /// The TCP socket, to read its addresses and descriptor (CLIENT LIST).
    #[inline]
    pub fn tcp_ref(&self) -> &TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(tls) => &tls.socket,
        }
    }

    /// True once for a TLS connection, after the read in which its handshake finished.
    #[inline]
    pub fn take_handshake_done(&mut self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.take_handshake_done(),
        }
    }

    /// Before the socket closes: a TLS session sends its close_notify alert (best effort,
    /// never blocking: what the socket does not take is dropped with it).
    pub fn close_notify(&mut self) {
        if let Transport::Tls(tls) = self {
            tls.session.send_close_notify();
            let _ = tls.flush_records();
        }
    }

    /// Encrypted bytes wait to be written (a TLS connection whose socket was full).
    #[inline]
    pub fn has_pending_output(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.has_pending_output(),
        }
    }
}

/// A TLS server session over a non-blocking socket.
pub struct TlsStream {
    pub socket: TcpStream,
    pub session: ServerConnection,
    /// Until the handshake is done: when it must be (see [`super::settings`]).
    pub handshake_deadline: Option<Instant>,
    /// The handshake finished in the last read; the shard takes it
    /// ([`TlsStream::take_handshake_done`]) to run what follows (a certificate login).
    handshake_done: bool,
}

impl TlsStream {
    pub fn new(socket: TcpStream, session: ServerConnection, deadline: Instant) -> Self {
        TlsStream {
            socket,
            session,
            handshake_deadline: Some(deadline),
            handshake_done: false,
        }
    }

    #[inline]
    pub fn has_pending_output(&self) -> bool {
        self.session.wants_write()
    }

    /// True once, after the read in which the handshake finished.
    #[inline]
    pub fn take_handshake_done(&mut self) -> bool {
        std::mem::take(&mut self.handshake_done)
    }

    /// Reads one run of ciphertext into the session: `Ok(0)` at the end of the stream,
    /// `WouldBlock` when the socket has nothing. With it, whether the read was short (fewer
    /// bytes than rustls had room for), which means the socket's receive queue is empty: as
    /// for a plain socket, the `read` that would only answer `WouldBlock` is then skipped
    /// (edge-triggered polling reports bytes that arrive later).
    pub fn read_records(&mut self) -> io::Result<(usize, bool)> {
        let mut probe = ShortReadProbe {
            socket: &mut self.socket,
            short: false,
        };
        loop {
            match self.session.read_tls(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) => return Ok((n, probe.short)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypts what [`TlsStream::read_records`] brought: the plaintext bytes now waiting and
    /// whether the peer closed. An invalid record, a failed handshake or a refused client
    /// certificate is an `InvalidData` error naming the cause, after the alert rustls
    /// prepared is sent (best effort). Notes the end of the handshake.
    pub fn process(&mut self) -> io::Result<(usize, bool)> {
        let state = match self.session.process_new_packets() {
            Ok(state) => state,
            Err(e) => {
                let _ = self.flush_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
        };
        if self.handshake_deadline.is_some() && !self.session.is_handshaking() {
            self.handshake_deadline = None;
            self.handshake_done = true;
        }
        Ok((state.plaintext_bytes_to_read(), state.peer_has_closed()))
    }

    /// Copies decrypted plaintext into `buf`; `Ok(0)` when none is waiting.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.session.reader().read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }
}

/// The socket as rustls reads it, noting whether a read returned less than it asked for.
struct ShortReadProbe<'a> {
    socket: &'a mut TcpStream,
    short: bool,
}

impl Read for ShortReadProbe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n > 0 && n < buf.len();
        Ok(n)
    }
}

/// [`Write`] over a TLS stream for the reply queue: each `write` hands plaintext to rustls and
/// pushes the records it makes to the socket; `WouldBlock` once the socket is full and rustls
/// still holds records.
pub struct TlsWriter<'a>(pub &'a mut TlsStream);

impl TlsStream {
    /// Writes rustls's pending records to the socket until it has none (`Ok`) or the socket
    /// is full (`WouldBlock`).
    pub fn flush_records(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Write for TlsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let tls = &mut *self.0;
        tls.flush_records()?;
        let n = tls.session.writer().write(buf)?;
        if n == 0 {
            // rustls's buffer is full although its records just went out: cannot happen
            // with an empty buffer; treated as a full socket, so the writer comes back.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match tls.flush_records() {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush_records()
    }
}

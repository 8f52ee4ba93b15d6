//! The acceptor: one thread that owns the listening sockets (the plain port, the TLS port, or
//! both) and hands each accepted connection to a shard.
//!
//! Connections are dealt to shards round-robin, plain and TLS alike. The acceptor also
//! enforces `max-clients`: a connection past the limit is told so and closed here, before any
//! shard sees it. A connection on the TLS port leaves here with a fresh rustls session of the
//! current certificate ([`TlsContext::accept`]) and its handshake deadline; the handshake
//! itself runs on its shard.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};

use crate::log_limit::RateLimitedWarn;
use crate::shard::mailbox::Message;
use crate::shard::Shared;
use crate::tls::stream::{TlsStream, Transport};
use crate::tls::TlsContext;

/// The plain listening socket's token.
const LISTENER: Token = Token(0);
/// The token of the waker that announces shutdown.
pub const WAKER: Token = Token(1);
/// The TLS listening socket's token.
const TLS_LISTENER: Token = Token(2);

/// Pending connections the kernel queues for us: a reconnect storm of thousands of clients
/// must not see refused connections while the acceptor catches up. (The kernel caps it at
/// `net.core.somaxconn`.)
const BACKLOG: i32 = 4096;

/// How long to back off when the process is out of file descriptors, before trying again.
const EMFILE_BACKOFF: Duration = Duration::from_millis(50);

/// Opens the listening socket (SO_REUSEADDR, non-blocking, real backlog).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Restart on the same port while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

pub struct Acceptor {
    poll: Poll,
    /// The plain port (absent with `--port 0` and a TLS port).
    listener: Option<TcpListener>,
    /// The TLS port and what its connections start with.
    tls: Option<(TcpListener, Arc<TlsContext>)>,
    shared: Arc<Shared>,
    next_shard: usize,
    /// The line for a connection refused at `max-clients`, at most one a second.
    refusals: RateLimitedWarn,
}

impl Acceptor {
    /// `poll` must already carry the shutdown waker under [`WAKER`]. `tls` is the TLS
    /// port's listener; its context comes from `shared`.
    pub fn new(
        poll: Poll,
        listener: Option<std::net::TcpListener>,
        tls: Option<std::net::TcpListener>,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let listener = match listener {
            Some(listener) => {
                let mut listener = TcpListener::from_std(listener);
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)?;
                Some(listener)
            }
            None => None,
        };
        let tls = match (tls, &shared.tls) {
            (Some(listener), Some(context)) => {
                let mut listener = TcpListener::from_std(listener);
                poll.registry()
                    .register(&mut listener, TLS_LISTENER, Interest::READABLE)?;
                Some((listener, context.clone()))
            }
            _ => None,
        };
        Ok(Acceptor {
            poll,
            listener,
            tls,
            shared,
            next_shard: 0,
            refusals: RateLimitedWarn::new("connections refused at max-clients", Instant::now()),
        })
    }

    /// Accepts until shutdown is requested; then the listener closes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut timeout = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("acceptor: poll failed: {e}");
                }
            }
            if self.shared.shutdown.is_requested() {
                log::info!("acceptor: listener closed");
                return;
            }
            // After a back-off there may be no new event: try accepting anyway.
            let now = Instant::now();
            self.refusals.flush(now, &"acceptor");
            timeout = match (self.accept_all(), self.refusals.due_in(now)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// Accepts every pending connection of both ports. Returns a poll timeout when it must
    /// retry later.
    fn accept_all(&mut self) -> Option<Duration> {
        let plain = self.accept_from(false);
        let tls = self.accept_from(true);
        plain.or(tls)
    }

    /// Accepts every pending connection of one port.
    fn accept_from(&mut self, tls: bool) -> Option<Duration> {
        loop {
            let listener = match (tls, &self.listener, &self.tls) {
                (false, Some(listener), _) => listener,
                (true, _, Some((listener, _))) => listener,
                _ => return None,
            };
            match listener.accept() {
                Ok((socket, peer)) => self.hand_off(socket, peer, tls),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    log::warn!("acceptor: {e}; pausing accepts for {EMFILE_BACKOFF:?}");
                    return Some(EMFILE_BACKOFF);
                }
                // A connection that died in the backlog (ECONNABORTED, ...) concerns only itself.
                Err(e) => log::debug!("acceptor: accept failed: {e}"),
            }
        }
    }

    fn hand_off(&mut self, mut socket: mio::net::TcpStream, peer: SocketAddr, tls: bool) {
        let max = self.shared.config.live.max_clients();
        // Only this thread increments, so check-then-add cannot overshoot.
        if self.shared.clients.load(Ordering::Relaxed) >= max {
            // Best effort: the socket is fresh, its send buffer empty, so this small write
            // does not block. Dropping it closes the connection. A TLS client could not read
            // it before a handshake, so it is only closed.
            if !tls {
                let _ = socket.write_all(b"-ERR max number of clients reached\r\n");
            }
            crate::metrics::ShardMetrics::add(&self.shared.metrics.rejected_connections, 1);
            // A peer can open connections faster than anyone reads the log.
            self.refusals.event(Instant::now(), || {
                format!("refused {peer}: max number of clients ({max}) reached")
            });
            return;
        }
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("set TCP_NODELAY for {peer}: {e}");
        }
        let transport = match (&self.tls, tls) {
            (Some((_, context)), true) => match context.accept() {
                Ok(session) => {
                    let deadline = Instant::now() + context.settings().handshake_timeout;
                    Transport::Tls(Box::new(TlsStream::new(socket, session, deadline)))
                }
                Err(e) => {
                    log::warn!("cannot start a TLS session for {peer}: {e}");
                    return;
                }
            },
            _ => Transport::Plain(socket),
        };
        self.shared.clients.fetch_add(1, Ordering::Relaxed);
        let shard = self.next_shard;
        self.next_shard = (self.next_shard + 1) % self.shared.shards.len();
        self.shared.shards[shard].send(Message::NewConnection(transport, peer));
    }
}

//! What a shard does for TLS connections beyond reading and writing them: the end of a
//! handshake (a login by client certificate, `--tls-cert-user`), handshakes past their
//! deadline, and the log line of a refused connection.
//!
//! Handshakes run in the shard's loop like any read (see [`crate::tls`]); a connection enters
//! `Core::tls_handshakes` when it arrives and leaves it at its deadline, closed if its
//! handshake has not finished by then. All connections share one timeout, so the queue is in
//! deadline order and the `tls-handshakes` housekeeping step only ever looks at its front.

use std::io;

use crate::tls::cert_name;
use crate::tls::stream::Transport;

use super::connection::Connection;
use super::{Core, Shard};

impl Core {
    /// A read failed and the connection closes: a TLS error (a bad record, a failed handshake,
    /// a refused certificate) is logged at WARN, at most one line a second per shard; a plain
    /// socket error, at debug, as any lost peer.
    pub(super) fn read_failed(&mut self, conn: &Connection, e: &io::Error) {
        if matches!(conn.socket, Transport::Tls(_)) && e.kind() == io::ErrorKind::InvalidData {
            let peer = conn.peer;
            self.tls_refusals.event(self.now, || {
                format!("closing TLS connection from {peer}: {e}")
            });
        } else {
            log::debug!("read from {}: {e}", conn.peer);
        }
    }

    /// The connection's handshake just finished. With `--tls-cert-user yes` and a verified
    /// client certificate, logs it in as the user its subject CN names, as a successful AUTH
    /// would (the user's default partition selected); false (close it) when no user has that
    /// name or the certificate has no usable CN. Without a certificate (`optional`) the
    /// connection logs in as any other does.
    pub(super) fn tls_handshake_done(&mut self, conn: &mut Connection) -> bool {
        let cert_user = self
            .shared
            .tls
            .as_ref()
            .is_some_and(|tls| tls.settings().cert_user);
        let Transport::Tls(tls) = &conn.socket else {
            return true;
        };
        if !cert_user {
            return true;
        }
        // Only certificates the verifier accepted get here: a refused one failed the handshake.
        let Some(leaf) = tls
            .session
            .peer_certificates()
            .and_then(|chain| chain.first())
        else {
            return true;
        };
        let peer = conn.peer;
        let name = match cert_name::subject_common_name(leaf) {
            Ok(name) => name,
            Err(why) => {
                self.tls_refusals.event(self.now, || {
                    format!("closing TLS connection from {peer}: client certificate refused: {why}")
                });
                return false;
            }
        };
        let Some(user) = self.acl.get(name.as_bytes()).cloned() else {
            self.tls_refusals.event(self.now, || {
                format!(
                    "closing TLS connection from {peer}: client certificate CN '{}' names no user",
                    name.escape_debug()
                )
            });
            return false;
        };
        log::debug!("{peer}: logged in as '{}' by client certificate", user.name);
        super::session::bind_user(&mut conn.session, user, self.acl.version);
        true
    }
}

impl Shard {
    /// When the oldest handshake still queued is due (the `tls-handshakes` step).
    pub(super) fn next_handshake_deadline(&self) -> Option<std::time::Instant> {
        self.core
            .tls_handshakes
            .front()
            .map(|&(_, deadline)| deadline)
    }

    /// Closes the connections whose handshake passed its deadline unfinished; forgets the
    /// entries of connections that finished (or went) meanwhile.
    pub(super) fn close_late_handshakes(&mut self, now: std::time::Instant) {
        while let Some(&(conn_ref, deadline)) = self.core.tls_handshakes.front() {
            if deadline > now {
                break;
            }
            self.core.tls_handshakes.pop_front();
            let index = conn_ref.index as usize;
            let late = self.conns.get(index).is_some_and(|conn| {
                conn.conn_ref == conn_ref
                    && matches!(&conn.socket, Transport::Tls(tls) if tls.handshake_deadline.is_some())
            });
            if !late {
                continue;
            }
            if let Some(conn) = self.conns.get(index) {
                let peer = conn.peer;
                let timeout = self
                    .core
                    .shared
                    .tls
                    .as_ref()
                    .map(|tls| tls.settings().handshake_timeout)
                    .unwrap_or_default();
                self.core.tls_refusals.event(now, || {
                    format!(
                        "closing TLS connection from {peer}: handshake not finished after {} ms",
                        timeout.as_millis()
                    )
                });
            }
            self.close(index);
        }
        let id = self.core.id;
        self.core
            .tls_refusals
            .flush(now, &format_args!("shard {id}"));
    }

    /// When the refusal line has a count to log.
    pub(super) fn tls_refusals_due_in(
        &self,
        now: std::time::Instant,
    ) -> Option<std::time::Duration> {
        self.core.tls_refusals.due_in(now)
    }
}

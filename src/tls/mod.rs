//! TLS with rustls (the *ring* provider: no OpenSSL, no cmake): the flags, the server's
//! certificate and its live rotation, and the encrypted stream a shard reads and writes.
//!
//! # Who owns what
//! - [`TlsContext`] (in [`crate::shard::Shared`], one per server) holds the rustls
//!   `ServerConfig` new connections start with. The acceptor thread takes a new
//!   [`rustls::ServerConnection`] from it for each connection accepted on the TLS port and hands
//!   it, with the socket, to a shard as a [`stream::Transport::Tls`]; from then on the
//!   connection belongs to that shard like a plain one (it may move to another shard with
//!   its session, its TLS state travelling along).
//! - The shard does the handshake in its event loop: the socket is non-blocking, every read
//!   feeds rustls and answers what the handshake asks for, and a handshake not finished after
//!   `tls-handshake-timeout-ms` (10 s by default) is closed by the `tls-handshakes`
//!   housekeeping step. rustls bounds what one handshake can make it buffer (one handshake
//!   message, at most 64 KiB), so a stalled or hostile handshake costs its own connection a
//!   socket, a few buffers and at most the deadline, and no other connection anything.
//! - A plain connection is [`stream::Transport::Plain`]: the same `read` into the read buffer
//!   and `write` from the reply buffer as before TLS existed, behind one enum match per read
//!   and per write (no copy, no per-byte work).
//!
//! # Rotation
//! [`TlsContext::reload`] (SIGHUP, and `CONFIG SET tls-cert-file|tls-key-file|
//! tls-ca-cert-file` once it is wired to it) reads the files again and builds a new config;
//! only if that succeeds does it replace the current one. Connections already open keep the
//! session they negotiated; new connections get the new certificate. A reload that fails
//! leaves everything as it was and returns (and logs) why.
//!
//! # Client certificates
//! `--tls-auth-clients yes|optional` asks for a certificate chaining to `--tls-ca-cert-file`
//! (webpki checks the chain, the validity period and the key usage). With `--tls-cert-user
//! yes` the shard reads the verified certificate's subject CN ([`cert_name`]) once the
//! handshake is done, and logs the connection in as the user of that name, exactly as a
//! successful AUTH would (default partition included), or closes it when no such user
//! exists.
//!
//! The lock here is taken by the acceptor once per accepted TLS connection, and by a reload;
//! never by a shard.

pub mod cert_name;
pub mod settings;
pub mod stream;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

pub use settings::{AuthClients, TlsFiles, TlsFlags, TlsSettings};

/// Sessions the server remembers for resumption by session id (TLS 1.2) or stateful ticket:
/// Redis's `tls-session-cache-size` default. An entry is a few hundred bytes.
const SESSION_CACHE_SIZE: usize = 20 * 1024;

/// How long a replication link's TLS handshake may take (the primary's own handshake
/// timeout is 10 s by default).
pub const REPLICA_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The certificate and settings new TLS connections start with, replaceable while running.
pub struct TlsContext {
    settings: TlsSettings,
    /// The config new connections get, and the files it was read from.
    current: Mutex<Current>,
}

/// What one reading of the files made.
struct Current {
    server: Arc<ServerConfig>,
    /// With `--tls-replication yes`: the config of the link to a primary (the same
    /// certificate, presented as a client's, and the CA checking the primary's).
    replica: Option<Arc<ClientConfig>>,
    files: TlsFiles,
}

impl TlsContext {
    /// Reads and checks the certificate, key and CA named by `settings`: an error says which
    /// file and what is wrong with it, and the server refuses to start.
    pub fn new(settings: TlsSettings) -> Result<TlsContext, String> {
        let current = build(&settings, &settings.files)?;
        Ok(TlsContext {
            settings,
            current: Mutex::new(current),
        })
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// A fresh server-side TLS session for a connection just accepted on the TLS port.
    pub fn accept(&self) -> Result<ServerConnection, rustls::Error> {
        let config = self.lock().server.clone();
        ServerConnection::new(config)
    }

    /// A TLS session for a replication link to the primary at `host` (`--tls-replication
    /// yes`), over `socket` (connected, blocking): its certificate must chain to
    /// `tls-ca-cert-file` and name `host` (a DNS name or an IP address). Does the handshake
    /// (within the socket's timeouts, or [`REPLICA_HANDSHAKE_TIMEOUT`] when it has none).
    /// An `InvalidData` error is a refusal (a certificate that does not verify, an alert),
    /// any other an I/O failure.
    pub fn connect_replica(
        &self,
        host: &str,
        socket: std::net::TcpStream,
    ) -> std::io::Result<crate::replication::link::LinkStream> {
        use std::io::{Error, ErrorKind};
        let invalid = |e: String| Error::new(ErrorKind::InvalidData, e);
        let Some(config) = self.lock().replica.clone() else {
            return Err(invalid("tls-replication is off".into()));
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| invalid(format!("'{host}' cannot name a TLS server: {e}")))?;
        let session = ClientConnection::new(config, name)
            .map_err(|e| invalid(format!("cannot start a TLS session: {e}")))?;
        let read_timeout = socket.read_timeout()?;
        socket.set_read_timeout(Some(REPLICA_HANDSHAKE_TIMEOUT))?;
        let mut stream = rustls::StreamOwned::new(session, socket);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        stream.sock.set_read_timeout(read_timeout)?;
        Ok(crate::replication::link::LinkStream::TlsClient(Box::new(
            stream,
        )))
    }

    /// The files the current certificate was read from.
    pub fn files(&self) -> TlsFiles {
        self.lock().files.clone()
    }

    /// Reads `files` and, if they make a valid configuration (PEM, a key that matches the
    /// certificate, a readable CA when client certificates are asked for), makes it the one
    /// new connections get. On error nothing changes and the error says why. Reads files:
    /// call it off the shards' event loops (blocking I/O), from any thread.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), String> {
        *self.lock() = build(&self.settings, files)?;
        log::info!(
            "TLS certificate reloaded from {} (key {}{}); new connections use it",
            files.cert.display(),
            files.key.display(),
            files
                .ca
                .as_ref()
                .map(|ca| format!(", CA {}", ca.display()))
                .unwrap_or_default()
        );
        Ok(())
    }

    /// [`TlsContext::reload`] of the files in use now (SIGHUP: the files were replaced in
    /// place).
    pub fn reload_current(&self) -> Result<(), String> {
        let files = self.files();
        self.reload(&files)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding it can only have happened between two plain assignments;
        // the value inside is whole either way.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The rustls configs for `settings` with the certificate files `files`.
fn build(settings: &TlsSettings, files: &TlsFiles) -> Result<Current, String> {
    let certs = read_certs("tls-cert-file", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "tls-key-file {}: no private key in it (expected a PEM 'PRIVATE KEY', \
             'RSA PRIVATE KEY' or 'EC PRIVATE KEY' section)",
            files.key.display()
        ),
        e => pem_error("tls-key-file", &files.key, e),
    })?;
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: settings.suites.clone(),
        ..rustls::crypto::ring::default_provider()
    };
    let mut versions = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls-protocols and tls-ciphersuites do not fit together: {e}"))?;
    let builder = match (settings.auth_clients, &files.ca) {
        (AuthClients::No, _) => builder.with_no_client_auth(),
        (_, None) => return Err("client certificates are asked for but no tls-ca-cert-file".into()),
        (auth, Some(ca)) => {
            let roots = read_roots(ca)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = match auth {
                AuthClients::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls-ca-cert-file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let replica = match (settings.replication, &files.ca) {
        (true, Some(ca)) => Some(build_replica(
            provider.clone(),
            &versions,
            read_roots(ca)?,
            certs.clone(),
            key.clone_key(),
        )?),
        _ => None,
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "tls-cert-file {} with tls-key-file {}: {e} (is the key the certificate's?)",
            files.cert.display(),
            files.key.display()
        )
    })?;
    // Resumption: stateless tickets (TLS 1.2 and 1.3) and a cache by session id. A fresh
    // one with every config, so that a reload with a new CA is never bypassed by a session
    // verified under the old one.
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| format!("cannot make TLS session tickets: {e}"))?;
    Ok(Current {
        server: Arc::new(config),
        replica,
        files: files.clone(),
    })
}

/// The client side of replication links: the primary must present a certificate chaining
/// to `roots` that names the host; this server presents its own certificate, which a
/// primary asking for client certificates checks against its CA.
fn build_replica(
    provider: Arc<rustls::crypto::CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    roots: RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls-protocols and tls-ciphersuites do not fit together: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("tls-cert-file as the replication link's certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// The CA certificates of `ca` (`tls-ca-cert-file`).
fn read_roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("tls-ca-cert-file", ca)? {
        roots.add(cert).map_err(|e| {
            format!(
                "tls-ca-cert-file {}: not a usable CA certificate: {e}",
                ca.display()
            )
        })?;
    }
    Ok(roots)
}

/// Every certificate in a PEM file; none at all is an error (a DER file, a key file, text).
fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(flag, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(flag, path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in it (expected PEM: a '-----BEGIN CERTIFICATE-----' \
             section)",
            path.display()
        ));
    }
    Ok(certs)
}

fn pem_error(flag: &str, path: &Path, e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => {
            format!("cannot read {flag} {}: {e}", path.display())
        }
        e => format!("{flag} {}: not valid PEM: {e}", path.display()),
    }
}

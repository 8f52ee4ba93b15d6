//! The TLS flags as Redis 7 names them, parsed and checked once at startup.
//!
//! Everything here is plain data ([`TlsSettings`]); the certificates themselves are read and
//! checked by [`super::TlsContext`], at startup and on every reload.

use std::path::PathBuf;
use std::time::Duration;

use rustls::crypto::ring::cipher_suite as suites;
use rustls::SupportedCipherSuite;

/// `--tls-auth-clients`: whether a client must present a certificate signed by the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    /// No certificate is asked for.
    No,
    /// A certificate is asked for; one that is presented must verify, none is fine.
    Optional,
    /// A verified certificate is required (Redis's default).
    Yes,
}

impl AuthClients {
    pub fn parse(text: &str) -> Result<AuthClients, String> {
        match text.to_ascii_lowercase().as_str() {
            "no" => Ok(AuthClients::No),
            "optional" => Ok(AuthClients::Optional),
            "yes" => Ok(AuthClients::Yes),
            _ => Err(format!(
                "tls-auth-clients must be no, optional or yes, got '{text}'"
            )),
        }
    }
}

/// The certificate files: what a reload reads again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates (PEM) that client certificates must chain to.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// These files with one replaced, by its config key (`tls-cert-file`, `tls-key-file`,
    /// `tls-ca-cert-file`): what `CONFIG SET` builds before [`super::TlsContext::reload`]. A
    /// certificate and its key change together: set both, then reload once.
    pub fn with(&self, key: &str, path: &str) -> Result<TlsFiles, String> {
        let mut files = self.clone();
        match key.to_ascii_lowercase().as_str() {
            "tls-cert-file" => files.cert = PathBuf::from(path),
            "tls-key-file" => files.key = PathBuf::from(path),
            "tls-ca-cert-file" => files.ca = Some(PathBuf::from(path)),
            _ => {
                return Err(format!(
                    "'{key}' is not a TLS file: expected tls-cert-file, tls-key-file or \
                     tls-ca-cert-file"
                ))
            }
        }
        Ok(files)
    }
}

/// The validated TLS configuration (present only with a `--tls-port`).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub port: u16,
    pub files: TlsFiles,
    pub auth_clients: AuthClients,
    /// `--tls-protocols`: TLS 1.2 allowed.
    pub tls12: bool,
    /// `--tls-protocols`: TLS 1.3 allowed.
    pub tls13: bool,
    /// The cipher suites offered: the TLS 1.3 ones (`--tls-ciphersuites`) and the TLS 1.2
    /// ones (`--tls-ciphers`), each list defaulting to every suite rustls's ring provider has.
    pub suites: Vec<SupportedCipherSuite>,
    /// `--tls-cert-user yes`: a verified client certificate whose subject CN names a user
    /// logs the connection in as that user; a CN that names none closes the connection.
    pub cert_user: bool,
    /// `--tls-replication yes`: this server, as a replica, links to its primary with TLS
    /// ([`crate::replication::link`]).
    pub replication: bool,
    /// How long a handshake may take before the connection is closed.
    pub handshake_timeout: Duration,
}

/// A handshake that has not finished after this is a peer that stalls (or dribbles a byte at
/// a time) on purpose or is hopelessly slow: ten seconds is far beyond any real round trip,
/// and bounds what a flood of stalled handshakes can hold (a socket and rustls's buffers each).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the flags (or the config file's keys of the same names) said, before validation.
#[derive(Debug, Default, Clone)]
pub struct TlsFlags {
    pub port: Option<u16>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_cert_file: Option<PathBuf>,
    pub auth_clients: Option<String>,
    pub protocols: Option<String>,
    pub ciphersuites: Option<String>,
    pub ciphers: Option<String>,
    pub cert_user: Option<String>,
    pub replication: Option<String>,
    pub handshake_timeout_ms: Option<u64>,
}

impl TlsFlags {
    /// Each field from `self` (the command line) or else from `file`.
    pub fn or(self, file: TlsFlags) -> TlsFlags {
        TlsFlags {
            port: self.port.or(file.port),
            cert_file: self.cert_file.or(file.cert_file),
            key_file: self.key_file.or(file.key_file),
            ca_cert_file: self.ca_cert_file.or(file.ca_cert_file),
            auth_clients: self.auth_clients.or(file.auth_clients),
            protocols: self.protocols.or(file.protocols),
            ciphersuites: self.ciphersuites.or(file.ciphersuites),
            ciphers: self.ciphers.or(file.ciphers),
            cert_user: self.cert_user.or(file.cert_user),
            replication: self.replication.or(file.replication),
            handshake_timeout_ms: self.handshake_timeout_ms.or(file.handshake_timeout_ms),
        }
    }

    /// The settings, or `None` without a TLS port; an error says which flag is wrong and why.
    pub fn settings(self) -> Result<Option<TlsSettings>, String> {
        let replication = match &self.replication {
            Some(value) => yes_no("tls-replication", value)?,
            None => false,
        };
        let port = self.port.unwrap_or(0);
        if port == 0 {
            let given = [
                ("tls-cert-file", self.cert_file.is_some()),
                ("tls-key-file", self.key_file.is_some()),
                ("tls-ca-cert-file", self.ca_cert_file.is_some()),
                ("tls-auth-clients", self.auth_clients.is_some()),
                ("tls-protocols", self.protocols.is_some()),
                ("tls-ciphersuites", self.ciphersuites.is_some()),
                ("tls-ciphers", self.ciphers.is_some()),
                ("tls-cert-user", self.cert_user.is_some()),
                (
                    "tls-handshake-timeout-ms",
                    self.handshake_timeout_ms.is_some(),
                ),
            ];
            if replication {
                return Err(
                    "tls-replication yes needs a --tls-port: the replication link \
                            presents that port's certificate (tls-cert-file, tls-key-file) and \
                            checks the primary's against its tls-ca-cert-file"
                        .into(),
                );
            }
            if let Some((name, _)) = given.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{name} is set but tls-port is not: TLS is served only on a --tls-port"
                ));
            }
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (self.cert_file, self.key_file) else {
            return Err(
                "tls-port needs tls-cert-file and tls-key-file (the server's \
                        certificate and private key, PEM)"
                    .into(),
            );
        };
        let auth_clients = match &self.auth_clients {
            Some(text) => AuthClients::parse(text)?,
            None => AuthClients::Yes,
        };
        if auth_clients != AuthClients::No && self.ca_cert_file.is_none() {
            return Err(format!(
                "tls-auth-clients {} needs tls-ca-cert-file (the CA that client \
                 certificates must chain to); or pass --tls-auth-clients no",
                if auth_clients == AuthClients::Yes {
                    "yes (the default)"
                } else {
                    "optional"
                }
            ));
        }
        if replication && self.ca_cert_file.is_none() {
            return Err(
                "tls-replication yes needs tls-ca-cert-file (the CA the primary's \
                        certificate must chain to)"
                    .into(),
            );
        }
        let cert_user = match &self.cert_user {
            Some(value) => yes_no("tls-cert-user", value)?,
            None => false,
        };
        if cert_user && auth_clients == AuthClients::No {
            return Err("tls-cert-user yes needs client certificates: set \
                        tls-auth-clients to yes or optional"
                .into());
        }
        let (tls12, tls13) = match &self.protocols {
            Some(text) => parse_protocols(text)?,
            None => (true, true),
        };
        let mut suites = Vec::new();
        if tls13 {
            suites.extend(parse_suites(
                "tls-ciphersuites",
                self.ciphersuites.as_deref(),
                TLS13_SUITES,
            )?);
        } else if self.ciphersuites.is_some() {
            return Err(
                "tls-ciphersuites lists TLS 1.3 suites, but tls-protocols leaves \
                        out TLSv1.3"
                    .into(),
            );
        }
        if tls12 {
            suites.extend(parse_suites(
                "tls-ciphers",
                self.ciphers.as_deref(),
                TLS12_SUITES,
            )?);
        } else if self.ciphers.is_some() {
            return Err(
                "tls-ciphers lists TLS 1.2 suites, but tls-protocols leaves out TLSv1.2".into(),
            );
        }
        // A minute is already far past any honest handshake; longer only holds sockets.
        const MAX_HANDSHAKE_TIMEOUT_MS: u64 = 60_000;
        let handshake_timeout = match self.handshake_timeout_ms {
            None => DEFAULT_HANDSHAKE_TIMEOUT,
            Some(ms @ 1..=MAX_HANDSHAKE_TIMEOUT_MS) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(format!(
                    "tls-handshake-timeout-ms must be 1..={MAX_HANDSHAKE_TIMEOUT_MS}, got {ms}"
                ))
            }
        };
        Ok(Some(TlsSettings {
            port,
            files: TlsFiles {
                cert,
                key,
                ca: self.ca_cert_file,
            },
            auth_clients,
            tls12,
            tls13,
            suites,
            cert_user,
            replication,
            handshake_timeout,
        }))
    }
}

/// `yes` or `no`, as Redis spells its booleans.
fn yes_no(name: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{name} must be yes or no, got '{value}'")),
    }
}

/// `--tls-protocols "TLSv1.2 TLSv1.3"`: which versions, as (1.2, 1.3).
fn parse_protocols(text: &str) -> Result<(bool, bool), String> {
    let (mut tls12, mut tls13) = (false, false);
    for word in text.split_whitespace() {
        match word.to_ascii_lowercase().as_str() {
            "tlsv1.2" => tls12 = true,
            "tlsv1.3" => tls13 = true,
            "tlsv1" | "tlsv1.1" => {
                return Err(format!(
                    "tls-protocols: {word} is not supported (rustls speaks only TLSv1.2 and \
                     TLSv1.3, the versions without known weaknesses)"
                ))
            }
            _ => {
                return Err(format!(
                    "tls-protocols: unknown protocol '{word}': expected TLSv1.2 and/or TLSv1.3"
                ))
            }
        }
    }
    if !tls12 && !tls13 {
        return Err("tls-protocols names no protocol: expected TLSv1.2 and/or TLSv1.3".into());
    }
    Ok((tls12, tls13))
}

/// The TLS 1.3 suites under their OpenSSL (and so Redis) names.
const TLS13_SUITES: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_256_GCM_SHA384", suites::TLS13_AES_256_GCM_SHA384),
    ("TLS_AES_128_GCM_SHA256", suites::TLS13_AES_128_GCM_SHA256),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        suites::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// The TLS 1.2 suites under their OpenSSL names (rustls has only forward-secret AEAD ones).
const TLS12_SUITES: &[(&str, SupportedCipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// A colon-separated list of suite names (OpenSSL's spelling, or rustls's), in the order
/// given; `None` is every suite of `table`. OpenSSL's cipher-string grammar (`DEFAULT`,
/// `!aNULL`, `HIGH`) is refused: rustls has no weak suites to leave out, and a list that
/// silently meant something else would be worse than an error.
fn parse_suites(
    flag: &str,
    text: Option<&str>,
    table: &[(&str, SupportedCipherSuite)],
) -> Result<Vec<SupportedCipherSuite>, String> {
    let Some(text) = text else {
        return Ok(table.iter().map(|(_, suite)| *suite).collect());
    };
    let mut chosen = Vec::new();
    for name in text.split(':').map(str::trim).filter(|n| !n.is_empty()) {
        let found = table.iter().find(|(openssl, suite)| {
            openssl.eq_ignore_ascii_case(name)
                || suite
                    .suite()
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(name))
        });
        match found {
            Some((_, suite)) if !chosen.contains(suite) => chosen.push(*suite),
            Some(_) => {}
            None => {
                let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "{flag}: '{name}' is not a cipher suite rustls can offer; expected a \
                     colon-separated list of {}",
                    known.join(", ")
                ));
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!("{flag} names no cipher suite"));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> TlsFlags {
        TlsFlags {
            port: Some(7380),
            cert_file: Some("cert.pem".into()),
            key_file: Some("key.pem".into()),
            ca_cert_file: Some("ca.pem".into()),
            ..TlsFlags::default()
        }
    }

    #[test]
    fn no_port_no_tls_and_files_without_a_port_are_refused() {
        assert!(TlsFlags::default().settings().unwrap().is_none());
        let e = TlsFlags {
            cert_file: Some("c.pem".into()),
            ..TlsFlags::default()
        }
        .settings()
        .unwrap_err();
        assert_eq!(
            e,
            "tls-cert-file is set but tls-port is not: TLS is served only on a --tls-port"
        );
    }

    #[test]
    fn defaults_are_redis_defaults() {
        let s = flags().settings().unwrap().unwrap();
        assert_eq!(s.auth_clients, AuthClients::Yes);
        assert!(s.tls12 && s.tls13 && !s.cert_user);
        assert_eq!(s.suites.len(), 9);
        assert_eq!(s.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    }

    #[test]
    fn auth_clients_needs_a_ca_unless_no() {
        let e = TlsFlags {
            ca_cert_file: None,
            ..flags()
        }
        .settings()
        .unwrap_err();
        assert!(
            e.contains("tls-auth-clients yes (the default) needs tls-ca-cert-file"),
            "{e}"
        );
        let s = TlsFlags {
            ca_cert_file: None,
            auth_clients: Some("no".into()),
            ..flags()
        }
        .settings()
        .unwrap()
        .unwrap();
        assert_eq!(s.auth_clients, AuthClients::No);
        let e = TlsFlags {
            auth_clients: Some("maybe".into()),
            ..flags()
        }
        .settings()
        .unwrap_err();
        assert_eq!(
            e,
            "tls-auth-clients must be no, optional or yes, got 'maybe'"
        );
    }

    #[test]
    fn cert_user_needs_client_certificates() {
        let e = TlsFlags {
            auth_clients: Some("no".into()),
            cert_user: Some("yes".into()),
            ..flags()
        }
        .settings()
        .unwrap_err();
        assert!(
            e.contains("tls-cert-user yes needs client certificates"),
            "{e}"
        );
    }

    #[test]
    fn protocols_and_suites() {
        let s = TlsFlags {
            protocols: Some("TLSv1.3".into()),
            ciphersuites: Some("TLS_AES_128_GCM_SHA256:TLS13_CHACHA20_POLY1305_SHA256".into()),
            ..flags()
        }
        .settings()
        .unwrap()
        .unwrap();
        assert!(!s.tls12 && s.tls13);
        assert_eq!(
            s.suites,
            vec![
                suites::TLS13_AES_128_GCM_SHA256,
                suites::TLS13_CHACHA20_POLY1305_SHA256
            ]
        );
        let e = parse_protocols("TLSv1.1 TLSv1.2").unwrap_err();
        assert!(e.contains("TLSv1.1 is not supported"), "{e}");
        assert!(parse_protocols("SSLv3")
            .unwrap_err()
            .contains("unknown protocol"));
        let e = TlsFlags {
            ciphers: Some("DEFAULT:!MEDIUM".into()),
            ..flags()
        }
        .settings()
        .unwrap_err();
        assert!(
            e.starts_with("tls-ciphers: 'DEFAULT' is not a cipher suite rustls can offer"),
            "{e}"
        );
        let e = TlsFlags {
            protocols: Some("TLSv1.2".into()),
            ciphersuites: Some("TLS_AES_128_GCM_SHA256".into()),
            ..flags()
        }
        .settings()
        .unwrap_err();
        assert!(e.contains("leaves out TLSv1.3"), "{e}");
    }

    #[test]
    fn files_with_one_replaced_for_config_set() {
        let files = flags().settings().unwrap().unwrap().files;
        let both = files
            .with("tls-cert-file", "new.crt")
            .and_then(|f| f.with("TLS-KEY-FILE", "new.key"))
            .unwrap();
        assert_eq!(both.cert, PathBuf::from("new.crt"));
        assert_eq!(both.key, PathBuf::from("new.key"));
        assert_eq!(both.ca, files.ca);
        let ca = files.with("tls-ca-cert-file", "ca2.pem").unwrap();
        assert_eq!(ca.ca, Some(PathBuf::from("ca2.pem")));
        assert!(files
            .with("tls-port", "1")
            .unwrap_err()
            .contains("not a TLS file"));
    }

    #[test]
    fn tls_replication_needs_a_tls_port_and_a_ca() {
        let yes = |f: TlsFlags| TlsFlags {
            replication: Some("yes".into()),
            ..f
        };
        let on = yes(flags()).settings().unwrap().unwrap();
        assert!(on.replication);
        assert!(!flags().settings().unwrap().unwrap().replication);
        let e = yes(TlsFlags::default()).settings().unwrap_err();
        assert!(
            e.starts_with("tls-replication yes needs a --tls-port"),
            "{e}"
        );
        let e = yes(TlsFlags {
            ca_cert_file: None,
            auth_clients: Some("no".into()),
            ..flags()
        })
        .settings()
        .unwrap_err();
        assert!(
            e.starts_with("tls-replication yes needs tls-ca-cert-file"),
            "{e}"
        );
        let e = TlsFlags {
            replication: Some("maybe".into()),
            ..flags()
        }
        .settings()
        .unwrap_err();
        assert_eq!(e, "tls-replication must be yes or no, got 'maybe'");
    }
}

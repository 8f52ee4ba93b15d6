//! TLS, black-box: the real server on a TLS port, with certificates from
//! `scripts/gen-test-certs.sh` made in a temporary directory, talked to by a rustls client
//! (raw bytes over TLS), by `redis-cli --tls`, redis-py `ssl=True` and `redis-benchmark --tls`;
//! and bad input (plain RESP to the TLS port, a ClientHello to the plain port, garbage
//! records, a handshake that stalls, refused client certificates), each a closed connection
//! with a log line while the server goes on answering others.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::replication::repl_info;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A test CA and certificates (see scripts/gen-test-certs.sh), removed with the value.
struct Certs {
    dir: DataDir,
}

impl Certs {
    /// Certificates whose client CN is `user`; `None` (the test is skipped, saying so) when
    /// the openssl command is missing, a failure under `GOKV_REQUIRE_REDIS` (CI installs it).
    fn new(user: &str) -> Option<Certs> {
        if let Err(e) = Command::new("openssl").arg("version").output() {
            missing("tls", "openssl (to make test certificates)", &e.to_string());
            return None;
        }
        let dir = DataDir::new("certs");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-test-certs.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(dir.path())
            .arg(user)
            .output()
            .expect("run scripts/gen-test-certs.sh");
        assert!(
            out.status.success(),
            "gen-test-certs.sh failed (is openssl installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Certs { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// A server with a TLS port on `certs`, the plain port too unless `extra` says `--port 0`;
/// returns it and its TLS port.
fn start_tls(certs: &Certs, extra: &[&str]) -> (Server, u16) {
    let tls_port = free_port();
    let mut args = vec![
        "--tls-port".to_string(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        certs.path("server.crt"),
        "--tls-key-file".into(),
        certs.path("server.key"),
        "--tls-ca-cert-file".into(),
        certs.path("ca.crt"),
    ];
    if !extra.contains(&"--port") {
        args.extend(["--port".into(), free_port().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(&args), tls_port)
}

/// The client side: trusts `certs`' CA (or the one in `ca`), presents `client` (a name like
/// "client" for client.crt/client.key) if given.
fn client_config(certs: &Certs, ca: &str, client: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.path(ca)).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(certs.path(&format!("{name}.crt")))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(certs.path(&format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A TLS connection over rustls, reading whole RESP replies.
struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// Connects and finishes the handshake (as far as the client can tell: with TLS 1.3 a
    /// refused client certificate shows only at the first read).
    fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> io::Result<TlsConn> {
        let socket = TcpStream::connect(("127.0.0.1", port))?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut session = rustls::ClientConnection::new(config, name).unwrap();
        let mut socket = socket;
        while session.is_handshaking() {
            session.complete_io(&mut socket)?;
        }
        Ok(TlsConn {
            stream: rustls::StreamOwned::new(session, socket),
            buf: Vec::new(),
        })
    }

    /// Sends a command and reads its reply; an error when the server closes or refuses.
    fn call(&mut self, args: &[&str]) -> io::Result<Vec<u8>> {
        self.stream.write_all(&cmd(args))?;
        self.stream.flush()?;
        loop {
            if let Ok(Some((_, used))) = parse_resp(&self.buf) {
                return Ok(self.buf.drain(..used).collect());
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A fresh TLS connection with the client certificate answers PING: the server is fine.
fn still_serves(port: u16, certs: &Certs) {
    let mut c = TlsConn::connect(port, client_config(certs, "ca.crt", Some("client")))
        .expect("a good TLS client connects");
    assert_eq!(c.call(&["PING"]).unwrap(), b"+PONG\r\n");
}

/// Reads `socket` until the server closes it (EOF or reset), within `within`; what it read.
fn read_until_closed(socket: &mut TcpStream, within: Duration) -> Vec<u8> {
    socket.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match socket.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "the server did not close the connection within {within:?} ({e}, after {:?})",
                started.elapsed()
            ),
        }
    }
}

/// The bytes of a ClientHello, as a real client sends them first.
fn client_hello(certs: &Certs) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut session =
        rustls::ClientConnection::new(client_config(certs, "ca.crt", None), name).unwrap();
    let mut hello = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut hello).unwrap();
    }
    hello
}

// ------------------------------------------------------------------------------------------
// Serving
// ------------------------------------------------------------------------------------------

#[test]
fn tls_and_plain_ports_at_once_with_a_client_certificate() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &[]);
    assert!(
        server
            .startup_line()
            .contains(&format!(", TLS on 127.0.0.1:{tls_port}")),
        "{}",
        server.startup_line()
    );
    let mut tls = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", Some("client")))
        .expect("handshake");
    // Without --tls-cert-user the certificate proves nothing about the user.
    assert!(tls
        .call(&["GET", "p", "k"])
        .unwrap()
        .starts_with(b"-NOAUTH"));
    assert_eq!(tls.call(&["AUTH", "admin", ADMIN_PASSWORD]).unwrap(), OK);
    assert_eq!(
        tls.call(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"])
            .unwrap(),
        OK
    );
    assert_eq!(tls.call(&["SET", "p", "k", "over-tls"]).unwrap(), OK);
    // A value larger than a TLS record (16 KiB) and than rustls's buffers, both ways.
    let big = "x".repeat(300 * 1024);
    assert_eq!(tls.call(&["SET", "p", "big", &big]).unwrap(), OK);
    assert_eq!(
        tls.call(&["GET", "p", "big"]).unwrap(),
        bulk(big.as_bytes())
    );
    // The plain port sees the same data.
    let mut plain = server.raw();
    plain.expect(&cmd(&["GET", "p", "k"]), &bulk(b"over-tls"));
}

/// A TLS connection that uses only another shard's partition moves there, TLS session and
/// all, and goes on working.
#[test]
fn a_tls_connection_moves_to_the_shard_of_its_partition() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &["--shards", "2", "--tls-cert-user", "yes"]);
    let mut admin = server.raw();
    admin.call_ok(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]);
    // Connections are dealt round-robin: of two, one starts on the other shard.
    let mut conns: Vec<TlsConn> = (0..2)
        .map(|_| {
            TlsConn::connect(tls_port, client_config(&certs, "ca.crt", Some("client"))).unwrap()
        })
        .collect();
    for i in 0..300 {
        for (n, c) in conns.iter_mut().enumerate() {
            let key = format!("k{n}-{i}");
            assert_eq!(c.call(&["SET", "p", &key, "v"]).unwrap(), OK);
        }
    }
    let info = String::from_utf8(admin.call(&["INFO", "shards"])).unwrap();
    let migrated: u64 = info
        .split("migrated_out=")
        .skip(1)
        .map(|rest| rest.split(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(migrated >= 1, "no connection moved: {info}");
    for c in &mut conns {
        assert_eq!(c.call(&["GET", "p", "k0-299"]).unwrap(), bulk(b"v"));
        assert_eq!(c.call(&["WHOAMI"]).unwrap(), bulk(b"admin"));
    }
}

/// QUIT ends a TLS connection with close_notify: the client sees a clean end of stream, not a
/// cut (rustls reports a TCP close without it as `UnexpectedEof`).
#[test]
fn quit_over_tls_ends_with_close_notify() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (_server, tls_port) = start_tls(&certs, &[]);
    let mut c = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", Some("client")))
        .expect("handshake");
    assert_eq!(c.call(&["QUIT"]).unwrap(), OK);
    let mut rest = Vec::new();
    let end = c.stream.read_to_end(&mut rest);
    assert!(matches!(end, Ok(0)), "{end:?} after {}", show(&rest));
}

#[test]
fn port_0_with_a_tls_port_serves_tls_only() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &["--port", "0"]);
    assert!(
        server.startup_line().contains("(TLS only)"),
        "{}",
        server.startup_line()
    );
    // The harness found the one port there is: the TLS one.
    assert_eq!(server.port(), tls_port);
    still_serves(tls_port, &certs);
}

#[test]
fn tls_cert_user_logs_in_by_certificate_with_the_default_partition() {
    let Some(certs) = Certs::new("app") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &["--tls-cert-user", "yes"]);
    let mut admin = server.raw();
    admin.call_ok(&["CREATE", "PARTITION", "bench", "STRING", "MEMORY"]);
    admin.call_ok(&["CREATE", "USER", "app", "app-pw", "DEFAULT", "bench"]);
    admin.call_ok(&["GRANT", "WRITE", "ON", "bench", "TO", "app"]);
    let mut app = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", Some("client")))
        .expect("handshake");
    assert_eq!(app.call(&["WHOAMI"]).unwrap(), bulk(b"app"));
    // Redis grammar on the user's default partition, as after AUTH.
    assert_eq!(app.call(&["SET", "k", "v"]).unwrap(), OK);
    admin.expect(&cmd(&["GET", "bench", "k"]), &bulk(b"v"));
}

/// A resumed session (a TLS 1.3 ticket) logs in as the certificate of the session it resumes.
#[test]
fn a_resumed_session_keeps_its_certificate_login() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (_server, tls_port) = start_tls(&certs, &["--tls-cert-user", "yes"]);
    // One config: rustls's client keeps the tickets it got and offers them next time.
    let config = client_config(&certs, "ca.crt", Some("client"));
    let mut first = TlsConn::connect(tls_port, config.clone()).expect("handshake");
    assert_eq!(first.call(&["WHOAMI"]).unwrap(), bulk(b"admin"));
    let mut second = TlsConn::connect(tls_port, config).expect("resumed handshake");
    assert_eq!(
        second.stream.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(second.call(&["WHOAMI"]).unwrap(), bulk(b"admin"));
}

#[test]
fn tls_cert_user_refuses_a_cn_that_names_no_user() {
    let Some(certs) = Certs::new("nobody") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &["--tls-cert-user", "yes"]);
    let mut c = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", Some("client")))
        .expect("the handshake itself succeeds");
    assert!(c.call(&["PING"]).is_err(), "an unknown CN must be closed");
    let log = server.log_text_once_it_contains("names no user");
    assert!(
        log.contains("client certificate CN 'nobody' names no user"),
        "{log}"
    );
    // The server goes on: admin over the plain port.
    server.raw().expect(&cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn auth_clients_optional_and_no() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (_server, tls_port) = start_tls(
        &certs,
        &["--tls-auth-clients", "optional", "--tls-cert-user", "yes"],
    );
    // No certificate: fine, but not logged in.
    let mut anonymous =
        TlsConn::connect(tls_port, client_config(&certs, "ca.crt", None)).expect("handshake");
    assert!(anonymous.call(&["WHOAMI"]).unwrap().starts_with(b"-NOAUTH"));
    // A certificate: verified and logged in.
    let mut admin = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", Some("client")))
        .expect("handshake");
    assert_eq!(admin.call(&["WHOAMI"]).unwrap(), bulk(b"admin"));
    // A wrong-CA one is refused even when optional.
    let mut bad = TlsConn::connect(
        tls_port,
        client_config(&certs, "ca.crt", Some("client-wrong-ca")),
    )
    .and_then(|mut c| c.call(&["PING"]));
    assert!(bad.as_mut().is_err(), "{bad:?}");

    let (_server, tls_port) = start_tls(&certs, &["--tls-auth-clients", "no"]);
    let mut c =
        TlsConn::connect(tls_port, client_config(&certs, "ca.crt", None)).expect("handshake");
    assert_eq!(c.call(&["PING"]).unwrap(), b"+PONG\r\n");
}

// ------------------------------------------------------------------------------------------
// Bad input: a closed connection, a log line, and a server that goes on
// ------------------------------------------------------------------------------------------

#[test]
fn a_required_client_certificate_that_is_missing_expired_or_from_another_ca_is_refused() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &[]);
    for (client, why) in [
        (None, "peer sent no certificates"),
        (Some("client-expired"), "Expired"),
        (Some("client-wrong-ca"), "UnknownIssuer"),
    ] {
        let result = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", client))
            .and_then(|mut c| c.call(&["PING"]));
        assert!(result.is_err(), "{client:?} was served: {result:?}");
        let log = server.log_text_once_it_contains(why);
        assert!(
            log.contains(why),
            "{client:?}: no '{why}' in the log:\n{log}"
        );
        still_serves(tls_port, &certs);
        // One line a second per shard: wait for the next one to be logged in full.
        std::thread::sleep(Duration::from_millis(1100));
    }
}

#[test]
fn plain_resp_to_the_tls_port_is_closed() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &[]);
    let mut socket = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    socket.write_all(&cmd(&["PING"])).unwrap();
    let got = read_until_closed(&mut socket, Duration::from_secs(10));
    assert!(!got.windows(4).any(|w| w == b"PONG"), "{}", show(&got));
    let log = server.log_text_once_it_contains("closing TLS connection from");
    assert!(log.contains("closing TLS connection from"), "{log}");
    still_serves(tls_port, &certs);
}

#[test]
fn a_client_hello_to_the_plain_port_is_answered_and_closed() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, _tls_port) = start_tls(&certs, &[]);
    let mut socket = TcpStream::connect(server.addr()).unwrap();
    socket.write_all(&client_hello(&certs)).unwrap();
    let got = read_until_closed(&mut socket, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: TLS handshake on a plain-text port (connect to the server's \
         --tls-port)\r\n"
    );
    server.raw().expect(&cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn garbage_records_after_the_handshake_are_closed() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &[]);
    let mut c = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", Some("client")))
        .expect("handshake");
    assert_eq!(c.call(&["PING"]).unwrap(), b"+PONG\r\n");
    // An application-data record whose contents are not what the session key made.
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    record.extend((0..32u8).map(|i| i.wrapping_mul(37)));
    c.stream.sock.write_all(&record).unwrap();
    read_until_closed(&mut c.stream.sock, Duration::from_secs(10));
    let log = server.log_text_once_it_contains("closing TLS connection from");
    assert!(log.contains("closing TLS connection from"), "{log}");
    still_serves(tls_port, &certs);
}

#[test]
fn a_handshake_that_stalls_byte_by_byte_is_closed_at_its_deadline() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &["--tls-handshake-timeout-ms", "1000"]);
    let hello = client_hello(&certs);
    let mut socket = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    socket.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    let started = Instant::now();
    let mut sent = 0;
    // One byte every 100 ms: activity, but never a whole ClientHello before the deadline.
    let closed = loop {
        if socket.write_all(&hello[sent..sent + 1]).is_err() {
            break true;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
        // Others are served meanwhile.
        if sent == 3 {
            still_serves(tls_port, &certs);
        }
        socket.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let state = socket.read(&mut byte);
        socket.set_nonblocking(false).unwrap();
        match state {
            Ok(0) => break true,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break true,
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(15) {
            break false;
        }
    };
    let took = started.elapsed();
    assert!(closed, "a stalled handshake stayed open for {took:?}");
    assert!(
        took >= Duration::from_millis(900) && sent < hello.len(),
        "closed after {took:?} and {sent} of {} bytes",
        hello.len()
    );
    let log = server.log_text_once_it_contains("handshake not finished");
    assert!(
        log.contains("handshake not finished after 1000 ms"),
        "{log}"
    );
    still_serves(tls_port, &certs);
}

// ------------------------------------------------------------------------------------------
// Startup refusals
// ------------------------------------------------------------------------------------------

#[test]
fn a_certificate_that_is_not_pem_a_key_that_does_not_match_or_a_missing_file_stops_the_start() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let not_pem = certs.dir.path().join("not-pem.crt");
    std::fs::write(&not_pem, b"this is not a certificate\n").unwrap();
    let missing = certs.path("missing.crt");
    let cases = [
        (
            not_pem.to_str().unwrap().to_string(),
            certs.path("server.key"),
            "no certificate in it (expected PEM",
        ),
        (
            certs.path("server.crt"),
            certs.path("client.key"),
            "(is the key the certificate's?)",
        ),
        (
            missing.clone(),
            certs.path("server.key"),
            "cannot read tls-cert-file",
        ),
        (
            certs.path("server.crt"),
            certs.path("ca.crt"),
            "no private key in it",
        ),
    ];
    for (cert, key, expected) in cases {
        let port = free_port().to_string();
        let ca = certs.path("ca.crt");
        let args = [
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
        ];
        let failed = match Server::launch(&args).try_start() {
            Ok(_) => panic!("started with {cert} and {key}"),
            Err(failed) => failed,
        };
        assert_eq!(failed.status.code(), Some(1), "{}", failed.stderr);
        assert!(
            failed.stderr.contains(expected),
            "{expected}: {}",
            failed.stderr
        );
    }
}

/// A replica with `--tls-replication yes` of a primary's TLS port: `args` for the replica,
/// its own TLS port on the same certificates, `ca` the CA it checks the primary's against.
fn tls_replica_args(certs: &Certs, primary_tls_port: u16, ca: &str) -> Vec<String> {
    [
        "--replicaof",
        &format!("127.0.0.1:{primary_tls_port}"),
        "--primary-user",
        "admin",
        "--primary-password",
        ADMIN_PASSWORD,
        "--tls-replication",
        "yes",
        "--tls-port",
        &free_port().to_string(),
        "--tls-cert-file",
        &certs.path("server.crt"),
        "--tls-key-file",
        &certs.path("server.key"),
        "--tls-ca-cert-file",
        &certs.path(ca),
        "--tls-auth-clients",
        "no",
        "--port",
        &free_port().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `--tls-replication yes`: the replica links to its primary's TLS port, checks the
/// primary's certificate against its CA and presents its own (the primary asks for client
/// certificates: `--tls-auth-clients yes`, the default); the full sync and the live stream
/// flow through the encrypted link.
#[test]
fn a_replica_follows_its_primary_over_tls() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (primary, primary_tls) = start_tls(&certs, &[]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "t", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["SET", "t", "before", "1"]);
    let args = tls_replica_args(&certs, primary_tls, "ca.crt");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = Server::start(&args);
    q_ok::<()>(&mut p, &["SET", "t", "after", "2"]);
    // (Its login may race the full sync's USERS: retried.)
    let url = replica.url();
    let mut r = poll_until(Duration::from_secs(20), || {
        redis::Client::open(url.as_str())
            .ok()?
            .get_connection()
            .ok()
    })
    .expect("a client of the replica");
    let synced = poll_until(Duration::from_secs(60), || {
        let link = repl_info(&mut r, "master_link_status")?;
        let got: Option<String> = q(&mut r, &["GET", "t", "after"]).ok()?;
        (link == "up" && got.as_deref() == Some("2")).then_some(())
    });
    assert!(synced.is_some(), "{}", replica.log_text());
    let before: Option<String> = q_ok(&mut r, &["GET", "t", "before"]);
    assert_eq!(before.as_deref(), Some("1"));
    assert_eq!(repl_info(&mut p, "connected_slaves").as_deref(), Some("1"));
    let log = replica.log_text();
    assert!(log.contains("over TLS"), "{log}");
    // The acks come back through the same TLS session: WAIT counts the replica, and its
    // acknowledged offset reaches the primary's.
    q_ok::<()>(&mut p, &["SET", "t", "acked", "3"]);
    let acked: i64 = q_ok(&mut p, &["WAIT", "1", "20000"]);
    assert_eq!(acked, 1, "{}", primary.log_text());
    let caught_up = poll_until(Duration::from_secs(30), || {
        let want = repl_info(&mut p, "master_repl_offset")?;
        let slave = repl_info(&mut p, "slave0")?;
        slave.contains(&format!(",offset={want},")).then_some(())
    });
    assert!(caught_up.is_some(), "{:?}", repl_info(&mut p, "slave0"));
}

/// A primary whose certificate does not chain to the replica's CA is refused (a clear
/// log line, retried with back-off), and nothing is synced.
#[test]
fn a_primary_certificate_from_an_untrusted_ca_is_refused() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (primary, primary_tls) = start_tls(&certs, &[]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "t", "STRING", "MEMORY"]);
    let args = tls_replica_args(&certs, primary_tls, "wrong-ca.crt");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = Server::start(&args);
    let log = replica.log_text_once_it_contains("retrying in 2 s");
    let refusal = log
        .lines()
        .find(|l| l.contains("refused this replica"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        refusal.contains("TLS: invalid peer certificate"),
        "{refusal}"
    );
    let mut r = replica.client();
    assert_eq!(
        repl_info(&mut r, "master_link_status").as_deref(),
        Some("down")
    );
    let parts: Vec<String> = q_ok(&mut r, &["LIST", "PARTITIONS"]);
    assert!(parts.is_empty(), "{parts:?}");
    assert_eq!(repl_info(&mut p, "connected_slaves").as_deref(), Some("0"));
}

#[test]
fn tls_replication_needs_a_tls_port() {
    let failed = match Server::launch(&["--tls-replication", "yes"]).try_start() {
        Ok(_) => panic!("started with --tls-replication yes and no --tls-port"),
        Err(failed) => failed,
    };
    assert_eq!(failed.status.code(), Some(2));
    assert!(
        failed
            .stderr
            .contains("tls-replication yes needs a --tls-port"),
        "{}",
        failed.stderr
    );
}

#[test]
fn unsupported_protocols_and_ciphers_are_refused_with_what_is_supported() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let port = free_port().to_string();
    let (cert, key) = (certs.path("server.crt"), certs.path("server.key"));
    let base = [
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-auth-clients",
        "no",
    ];
    for (extra, expected) in [
        (
            ["--tls-protocols", "TLSv1.1"],
            "tls-protocols: TLSv1.1 is not supported",
        ),
        (
            ["--tls-ciphersuites", "TLS_AES_128_CCM_SHA256"],
            "tls-ciphersuites: 'TLS_AES_128_CCM_SHA256' is not a cipher suite rustls can offer",
        ),
    ] {
        let args = [&base[..], &extra[..]].concat();
        let failed = match Server::launch(&args).try_start() {
            Ok(_) => panic!("started with {extra:?}"),
            Err(failed) => failed,
        };
        assert!(failed.stderr.contains(expected), "{}", failed.stderr);
    }
    // What rustls can honour is honoured: TLS 1.3 only, one suite.
    let tls_port = free_port();
    let port = tls_port.to_string();
    let _server = Server::start(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-auth-clients",
        "no",
        "--tls-protocols",
        "TLSv1.3",
        "--tls-ciphersuites",
        "TLS_CHACHA20_POLY1305_SHA256",
    ]);
    let c = TlsConn::connect(tls_port, client_config(&certs, "ca.crt", None)).expect("handshake");
    let session = &c.stream.conn;
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        session.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)
    );
}

// ------------------------------------------------------------------------------------------
// Rotation
// ------------------------------------------------------------------------------------------

#[test]
fn sighup_reloads_the_certificate_open_connections_keep_working_and_a_bad_reload_keeps_the_old() {
    let Some(old) = Certs::new("admin") else {
        return;
    };
    let Some(new) = Certs::new("admin") else {
        return;
    };
    // The server's files live in a directory of their own, replaced in place.
    let live = DataDir::new("live-certs");
    let file = |name: &str| live.path().join(name).to_str().unwrap().to_string();
    for name in ["server.crt", "server.key", "ca.crt"] {
        std::fs::copy(old.path(name), file(name)).unwrap();
    }
    let tls_port = free_port();
    let port = tls_port.to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let server = Server::start(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
    ]);
    let mut open = TlsConn::connect(tls_port, client_config(&old, "ca.crt", Some("client")))
        .expect("handshake");
    assert_eq!(open.call(&["PING"]).unwrap(), b"+PONG\r\n");

    for name in ["server.crt", "server.key", "ca.crt"] {
        std::fs::copy(new.path(name), file(name)).unwrap();
    }
    let hup = |server: &Server| {
        let status = Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup(&server);
    let log = server.log_text_once_it_contains("TLS certificate reloaded");
    assert!(log.contains("TLS certificate reloaded from"), "{log}");
    // New connections get the new certificate (and the new CA checks their certificates).
    let fresh = TlsConn::connect(tls_port, client_config(&new, "ca.crt", Some("client")));
    assert_eq!(fresh.unwrap().call(&["PING"]).unwrap(), b"+PONG\r\n");
    assert!(
        TlsConn::connect(tls_port, client_config(&old, "ca.crt", Some("client"))).is_err(),
        "the old certificate is still served"
    );
    // The connection opened before the reload goes on.
    assert_eq!(open.call(&["PING"]).unwrap(), b"+PONG\r\n");

    // A bad reload keeps what works and says why.
    std::fs::write(file("server.key"), b"garbage\n").unwrap();
    hup(&server);
    let log = server.log_text_once_it_contains("TLS reload failed");
    assert!(
        log.contains("SIGHUP: TLS reload failed, keeping the current certificate: tls-key-file"),
        "{log}"
    );
    still_serves(tls_port, &new);
    assert_eq!(open.call(&["PING"]).unwrap(), b"+PONG\r\n");
}

/// `CONFIG SET tls-cert-file ... tls-key-file ...` reloads as SIGHUP does, in one call;
/// a file that does not load is refused in Redis's `CONFIG SET failed` words and changes
/// nothing (neither the certificate nor a live setting of the same call); `CONFIG GET` shows
/// the files in use.
#[test]
fn config_set_of_the_tls_files_reloads_them_all_or_none() {
    let Some(old) = Certs::new("admin") else {
        return;
    };
    let Some(new) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&old, &["--tls-auth-clients", "no"]);
    let mut admin = server.raw();
    let (cert, key) = (new.path("server.crt"), new.path("server.key"));
    let (cert, key) = (cert.as_str(), key.as_str());
    // A key that does not load: refused, and the timeout of the same call is not stored.
    let bad = admin.call_err(&[
        "CONFIG",
        "SET",
        "timeout",
        "77",
        "tls-cert-file",
        cert,
        "tls-key-file",
        "/nonexistent",
    ]);
    assert!(
        bad.starts_with("ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - "),
        "{bad}"
    );
    assert!(bad.contains("tls-key-file"), "{bad}");
    let timeout = String::from_utf8_lossy(&admin.call(&["CONFIG", "GET", "timeout"])).into_owned();
    assert!(!timeout.contains("77"), "{timeout}");
    still_serves(tls_port, &old);
    // Both files at once: new connections get the new certificate.
    admin.call_ok(&["CONFIG", "SET", "tls-cert-file", cert, "tls-key-file", key]);
    still_serves(tls_port, &new);
    assert!(
        TlsConn::connect(tls_port, client_config(&old, "ca.crt", None)).is_err(),
        "the old certificate is still served"
    );
    let got =
        String::from_utf8_lossy(&admin.call(&["CONFIG", "GET", "tls-cert-file"])).into_owned();
    assert!(got.contains(cert), "{got}");
}

/// Without a `--tls-port` the TLS files cannot be set: a clear refusal.
#[test]
fn config_set_of_a_tls_file_without_tls_is_refused() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    let e = admin.call_err(&["CONFIG", "SET", "tls-cert-file", "/tmp/x.crt"]);
    assert_eq!(
        e,
        "ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - TLS is off: \
         the certificates can only be set with a --tls-port"
    );
}

// ------------------------------------------------------------------------------------------
// Real clients, unchanged
// ------------------------------------------------------------------------------------------

/// A tool the test needs is missing: fails under `GOKV_REQUIRE_REDIS`, else the test says it
/// is skipped (the caller returns).
fn missing(test: &str, what: &str, why: &str) {
    if std::env::var_os("GOKV_REQUIRE_REDIS").is_some() {
        panic!("{test}: GOKV_REQUIRE_REDIS is set but {what} cannot run: {why}");
    }
    eprintln!("{test}: skipping: {what} cannot run: {why}");
}

#[test]
fn redis_cli_tls_with_cacert_cert_and_key() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (_server, tls_port) = start_tls(&certs, &["--tls-cert-user", "yes"]);
    let port = tls_port.to_string();
    let (ca, cert, key) = (
        certs.path("ca.crt"),
        certs.path("client.crt"),
        certs.path("client.key"),
    );
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "--tls", "--cacert", &ca])
            .args(["--cert", &cert, "--key", &key])
            .args(args)
            .output()
    };
    let out = match cli(&["WHOAMI"]) {
        Ok(out) => out,
        Err(e) => return missing("redis_cli_tls", "redis-cli", &e.to_string()),
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "admin\n");
    let out = cli(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let out = cli(&["SET", "p", "k", "v"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let out = cli(&["GET", "p", "k"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v\n");
}

#[test]
fn redis_py_ssl_true() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (_server, tls_port) = start_tls(&certs, &["--databases", "4"]);
    let script = "
import sys, redis
port, ca, cert, key, pw = sys.argv[1:6]
r = redis.Redis(host='127.0.0.1', port=int(port), username='admin', password=pw, ssl=True,
                ssl_ca_certs=ca, ssl_certfile=cert, ssl_keyfile=key, db=3)
assert r.set('k', 'v') is True
assert r.get('k') == b'v', r.get('k')
assert r.incr('n') == 1
";
    let probe = Command::new("python3")
        .args(["-c", "import redis"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            return missing("redis_py_ssl_true", "redis-py (pip install redis)", &why);
        }
        Err(e) => return missing("redis_py_ssl_true", "python3", &e.to_string()),
    }
    let out = Command::new("python3")
        .args(["-c", script, &tls_port.to_string()])
        .args([
            certs.path("ca.crt"),
            certs.path("client.crt"),
            certs.path("client.key"),
        ])
        .arg(ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_benchmark_tls_short_clean_run() {
    let Some(certs) = Certs::new("admin") else {
        return;
    };
    let (server, tls_port) = start_tls(&certs, &["--databases", "4", "--shards", "2"]);
    let run = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &tls_port.to_string(), "--tls"])
        .args(["--cacert", &certs.path("ca.crt")])
        .args(["--cert", &certs.path("client.crt")])
        .args(["--key", &certs.path("client.key")])
        .args(["--user", "admin", "-a", ADMIN_PASSWORD, "--dbnum", "3"])
        .args(["-t", "set,get", "-n", "5000", "-c", "10", "-P", "4", "-q"])
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => return missing("redis_benchmark_tls", "redis-benchmark", &e.to_string()),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark failed: {text}");
    for test in ["SET", "GET"] {
        assert!(
            text.split(['\r', '\n'])
                .any(|l| l.trim_start().starts_with(test) && l.contains("requests per second")),
            "no {test} result in: {text}"
        );
    }
    assert!(!text.contains("ERR"), "{text}");
    let mut admin = server.raw();
    admin.expect(&cmd(&["DBSIZE", "3"]), &int(1));
}

/// `CONFIG REWRITE` writes the TLS files CONFIG SET put in place: a restart from the
/// rewritten file (the port flags only) serves the new certificate, not the one of the first
/// start's flags.
#[test]
fn config_rewrite_writes_the_tls_files_set_live() {
    let Some(old) = Certs::new("admin") else {
        return;
    };
    let Some(new) = Certs::new("admin") else {
        return;
    };
    let dir = DataDir::new("tls-rewrite");
    let file = dir.path().join("gokv.toml");
    std::fs::write(&file, "tls-auth-clients = \"no\"\n").unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let (server, tls_port) = start_tls(&old, &["--config", &file_arg]);
    let mut admin = server.raw();
    let (cert, key, ca) = (
        new.path("server.crt"),
        new.path("server.key"),
        new.path("ca.crt"),
    );
    admin.call_ok(&[
        "CONFIG",
        "SET",
        "tls-cert-file",
        &cert,
        "tls-key-file",
        &key,
        "tls-ca-cert-file",
        &ca,
    ]);
    admin.call_ok(&["CONFIG", "REWRITE"]);
    drop(server);
    let text = std::fs::read_to_string(&file).unwrap();
    for (key, path) in [
        ("tls-cert-file", &cert),
        ("tls-key-file", &key),
        ("tls-ca-cert-file", &ca),
    ] {
        assert!(text.contains(&format!("{key} = \"{path}\"")), "{text}");
    }
    let port = free_port().to_string();
    let tls_port_arg = tls_port.to_string();
    let _restarted = Server::start(&[
        "--config",
        &file_arg,
        "--port",
        &port,
        "--tls-port",
        &tls_port_arg,
    ]);
    still_serves(tls_port, &new);
    assert!(
        TlsConn::connect(tls_port, client_config(&old, "ca.crt", None)).is_err(),
        "the first start's certificate is served after the restart"
    );
}

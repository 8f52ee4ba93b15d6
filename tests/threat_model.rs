//! The lines of `docs/threat-model.md` that no other test file already backs: what a peer
//! learns before logging in, what a tenant's partition ADMIN can and cannot do, and what the
//! files of the data directory give away to someone who can read or write them. Several are
//! *limitations*, asserted as they are so that a change to them is a decision (and the doc
//! is updated with it), not an accident.

mod common;

use common::*;

/// Limitation: before logging in, `HELLO` answers with the server's name and version (as it
/// must, for clients that negotiate RESP3 first). Nothing else is served: see
/// `tests/auth.rs` `before_login_only_open_commands_run`.
#[test]
fn an_unauthenticated_peer_learns_the_server_name_and_version_from_hello() {
    let server = Server::start(&["--shards", "1"]);
    let mut peer = server.raw_unauthenticated();
    let hello = peer.call_value(&["HELLO", "2"]);
    let Resp::Array(Some(fields)) = hello else {
        panic!("HELLO answered {hello:?}");
    };
    assert!(
        fields.contains(&Resp::Bulk(Some(b"gokv".to_vec()))),
        "{fields:?}"
    );
    assert!(
        fields.contains(&Resp::Bulk(Some(
            env!("CARGO_PKG_VERSION").as_bytes().to_vec()
        ))),
        "{fields:?}"
    );
    assert!(peer
        .call_value(&["LIST", "PARTITIONS"])
        .is_error_code("NOAUTH"));
}

/// A tenant holding ADMIN on its own partition manages that partition (drop it, grant and
/// revoke on it) and nothing else: no other partition, no `*`, no users, no server settings.
#[test]
fn a_partition_admin_manages_only_its_partition() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    for c in [
        &["CREATE", "PARTITION", "mine", "STRING", "MEMORY"][..],
        &["CREATE", "PARTITION", "theirs", "STRING", "MEMORY"],
        &["CREATE", "USER", "tenant", "tenant-pw"],
        &["CREATE", "USER", "helper", "helper-pw"],
        &["GRANT", "ADMIN", "ON", "mine", "TO", "tenant"],
        &["SET", "theirs", "k", "secret"],
    ] {
        assert_eq!(admin.call_value(c), Resp::ok(), "{c:?}");
    }
    let mut tenant = server.login("tenant", "tenant-pw");
    // Its own partition: everything.
    assert_eq!(tenant.call_value(&["SET", "mine", "k", "v"]), Resp::ok());
    assert_eq!(
        tenant.call_value(&["GRANT", "READ", "ON", "mine", "TO", "helper"]),
        Resp::ok()
    );
    assert_eq!(
        tenant.call_value(&["REVOKE", "READ", "ON", "mine", "FROM", "helper"]),
        Resp::ok()
    );
    // Anything else: refused, and another partition's name is not confirmed.
    for c in [
        &["GET", "theirs", "k"][..],
        &["DROP", "PARTITION", "theirs"],
        &["GRANT", "READ", "ON", "theirs", "TO", "tenant"],
        &["GRANT", "READ", "ON", "*", "TO", "tenant"],
        &["CREATE", "PARTITION", "more", "STRING", "MEMORY"],
        &["CREATE", "USER", "sock", "puppet-pw"],
        &["LIST", "USERS"],
        &["DESCRIBE", "USER", "helper"],
        &["ALTER", "USER", "helper", "PASSWORD", "taken-over"],
        &["DROP", "USER", "helper"],
        &["CONFIG", "GET", "dir"],
        &["SHUTDOWN"],
    ] {
        let reply = tenant.call_value(c);
        assert!(reply.is_error_code("NOPERM"), "{c:?} answered {reply:?}");
    }
    assert_eq!(
        tenant.call_value(&["LIST", "PARTITIONS"]),
        Resp::Array(Some(vec![Resp::Bulk(Some(b"mine".to_vec()))]))
    );
    assert_eq!(
        tenant.call_value(&["DROP", "PARTITION", "mine"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GET", "theirs", "k"]),
        Resp::Bulk(Some(b"secret".to_vec()))
    );
}

/// Limitation: a partition ADMIN can tell whether a user name exists, because GRANT on its
/// partition names a missing user. User names are not secret from tenants' admins (their
/// grants and passwords are).
#[test]
fn a_partition_admin_can_tell_whether_a_user_name_exists() {
    let server = Server::start(&["--shards", "1"]);
    let mut admin = server.raw();
    for c in [
        &["CREATE", "PARTITION", "mine", "STRING", "MEMORY"][..],
        &["CREATE", "USER", "tenant", "tenant-pw"],
        &["CREATE", "USER", "someone", "someone-pw"],
        &["GRANT", "ADMIN", "ON", "mine", "TO", "tenant"],
    ] {
        assert_eq!(admin.call_value(c), Resp::ok(), "{c:?}");
    }
    let mut tenant = server.login("tenant", "tenant-pw");
    assert_eq!(
        tenant.call_value(&["GRANT", "READ", "ON", "mine", "TO", "someone"]),
        Resp::ok()
    );
    let missing = tenant.call_value(&["GRANT", "READ", "ON", "mine", "TO", "nobody"]);
    assert_eq!(
        missing,
        Resp::Error(b"ERR user 'nobody' does not exist".to_vec())
    );
}

/// Limitation: the data directory is not encrypted, and its checksums catch accidents, not
/// attackers. Someone who can read the files reads every durable value; someone who can
/// write them can change a value and recompute its CRC32C, and the server loads it. Protect
/// the directory with file permissions (the server creates its secrets 0600; see
/// `tests/auth.rs` `no_plaintext_password_on_disk_or_in_logs` for what never reaches disk).
#[test]
fn the_data_directory_is_readable_and_forgeable_by_whoever_holds_it() {
    use gokv::persist::record::{encode, Record};
    let dir = DataDir::new("threat-files");
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.raw();
    assert_eq!(
        c.call_value(&["CREATE", "PARTITION", "vault", "STRING", "SYNC"]),
        Resp::ok()
    );
    assert_eq!(
        c.call_value(&["SET", "vault", "pin", "original-1234"]),
        Resp::ok()
    );
    drop(c);
    node.kill9();

    let (mut genuine, mut forged) = (Vec::new(), Vec::new());
    let record = |value: &'static [u8]| Record::SetStr {
        key: b"pin",
        value,
        deadline: None,
    };
    encode(&record(b"original-1234"), &mut genuine);
    encode(&record(b"attacker-9999"), &mut forged);
    let mut replaced = 0;
    for file in walk(&dir.path().join("partitions")) {
        let mut bytes = std::fs::read(&file).unwrap();
        if let Some(at) = bytes.windows(genuine.len()).position(|w| w == genuine) {
            // Read: the value is there in clear.
            assert!(bytes.windows(13).any(|w| w == b"original-1234"));
            // Write: swap in the forged record, checksum and all.
            bytes[at..at + forged.len()].copy_from_slice(&forged);
            std::fs::write(&file, &bytes).unwrap();
            replaced += 1;
        }
    }
    assert_eq!(replaced, 1, "the SET's record is in one log file");
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.raw();
    assert_eq!(
        c.call_value(&["GET", "vault", "pin"]),
        Resp::Bulk(Some(b"attacker-9999".to_vec()))
    );
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

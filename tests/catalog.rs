//! The catalog and the ACL on disk against the real binary: what a failed catalog or ACL write
//! answers and what a restart then finds (they must agree), and the startup checks that refuse
//! a data directory with missing files instead of starting empty (`--accept-data-loss` accepts
//! the loss, logged at WARN).

mod common;

use std::path::{Path, PathBuf};

use common::{q_err, q_ok, DataDir, Server, StartFailure};

/// The grants of `user`, as DESCRIBE USER lists them (`partition:PERM`).
fn grants(c: &mut redis::Connection, user: &str) -> Vec<String> {
    let v: Vec<redis::Value> = q_ok(c, &["DESCRIBE", "USER", user]);
    redis::from_redis_value(&v[3]).expect("grants array")
}

/// The directory of the only durable partition in `dir`.
fn only_partition_dir(dir: &DataDir) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("partitions"))
        .expect("partitions dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

/// Starts a server in `dir` that must refuse to start; returns its output.
fn refused(dir: &DataDir, args: &[&str]) -> StartFailure {
    match Server::launch(args).data_dir(dir).try_start() {
        Ok(server) => panic!(
            "the server started although it should refuse:\n{}",
            server.log_text()
        ),
        Err(failed) => failed,
    }
}

/// Makes every later `users.json` save fail (as a full disk would), the way the ACL store's
/// atomic replace is exposed: its temporary file cannot be created.
fn block_users_file(dir: &Path) -> PathBuf {
    let blocker = dir.join("users.json.tmp");
    std::fs::create_dir(&blocker).expect("create blocker");
    blocker
}

/// DROP PARTITION of a partition with grants, while `users.json` cannot be written: the drop
/// is one durable step (the catalog), the grants on the dropped name are void through the
/// catalog until `users.json` is written again, and what the client heard is what a restart
/// finds. Before the fix: `-IOERR ... nothing changed`, the partition kept serving and
/// acknowledging SYNC writes, and the next start deleted its directory.
#[test]
fn drop_with_an_unwritable_acl_is_durable_and_its_grants_stay_void() {
    let dir = DataDir::new("drop-acl");
    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "other", "STRING", "SYNC"]);
    let _: () = q_ok(&mut c, &["CREATE", "USER", "bob", "bpw"]);
    let _: () = q_ok(&mut c, &["GRANT", "READ", "ON", "p", "TO", "bob"]);
    let _: () = q_ok(&mut c, &["GRANT", "WRITE", "ON", "other", "TO", "bob"]);
    let _: () = q_ok(&mut c, &["SET", "p", "k", "before"]);
    let _: () = q_ok(&mut c, &["SET", "other", "k", "kept"]);
    let blocker = block_users_file(dir.path());

    // The drop is answered +OK: it is durable in the catalog, which also voids the grants.
    let dropped: redis::RedisResult<()> =
        redis::cmd("DROP").arg("PARTITION").arg("p").query(&mut c);
    assert!(dropped.is_ok(), "DROP answered {dropped:?}");
    let (code, msg) = q_err(&mut c, &["SET", "p", "k", "after"]);
    assert_eq!(code, "NOPARTITION", "{msg}");
    assert_eq!(grants(&mut c, "bob"), ["other:WRITE"]);
    // An ACL change that cannot be persisted is refused and changes nothing.
    let (code, msg) = q_err(&mut c, &["GRANT", "READ", "ON", "other", "TO", "bob"]);
    assert_eq!(code, "IOERR", "{msg}");
    assert_eq!(grants(&mut c, "bob"), ["other:WRITE"]);
    // A new partition of the dropped name: the stale grants on disk must not apply to it.
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
    let _: () = q_ok(&mut c, &["SET", "p", "new", "v"]);
    assert_eq!(grants(&mut c, "bob"), ["other:WRITE"]);
    drop(c);
    node.kill9();

    // The disk has room again: the restart can rewrite users.json.
    std::fs::remove_dir(&blocker).expect("remove blocker");
    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = node.client();
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert_eq!(names, ["other", "p"]);
    assert_eq!(q_ok::<Option<String>>(&mut c, &["GET", "p", "k"]), None);
    assert_eq!(q_ok::<String>(&mut c, &["GET", "p", "new"]), "v");
    assert_eq!(q_ok::<String>(&mut c, &["GET", "other", "k"]), "kept");
    assert_eq!(grants(&mut c, "bob"), ["other:WRITE"]);
    let users = std::fs::read_to_string(dir.path().join("users.json")).unwrap();
    assert!(
        !users.contains("\"p\""),
        "void grants left in users.json:\n{users}"
    );
    let mut bob = node.login("bob", "bpw");
    assert!(bob.call_value(&["GET", "p", "new"]).is_error_code("NOPERM"));
    drop(c);
    node.kill9();

    // And again, now that the catalog no longer needs to void them.
    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = node.client();
    assert_eq!(grants(&mut c, "bob"), ["other:WRITE"]);
}

/// The same drop, restarted while `users.json` still cannot be written: the catalog keeps
/// the grants on the dropped name void, so they do not come back on the new partition of that
/// name, neither after this restart nor after the next one, once the file can be written.
#[test]
fn stale_grants_never_come_back_while_the_acl_is_unwritable() {
    let dir = DataDir::new("drop-acl-stuck");
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
    let _: () = q_ok(&mut c, &["CREATE", "USER", "bob", "bpw"]);
    let _: () = q_ok(&mut c, &["GRANT", "READ", "ON", "p", "TO", "bob"]);
    let blocker = block_users_file(dir.path());
    let _: () = q_ok(&mut c, &["DROP", "PARTITION", "p"]);
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
    drop(c);
    node.kill9();
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    assert!(grants(&mut c, "bob").is_empty());
    let (code, msg) = q_err(&mut c, &["GRANT", "WRITE", "ON", "p", "TO", "bob"]);
    assert_eq!(code, "IOERR", "{msg}");
    drop(c);
    node.kill9();
    std::fs::remove_dir(&blocker).expect("remove blocker");
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    assert!(grants(&mut c, "bob").is_empty());
    let _: () = q_ok(&mut c, &["GRANT", "WRITE", "ON", "p", "TO", "bob"]);
    drop(c);
    node.kill9();
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    assert_eq!(grants(&mut c, "bob"), ["p:WRITE"]);
}

/// A first start in an empty directory works, and so does the next start of a directory in
/// which nothing was ever created (the first start wrote its catalog).
#[test]
fn a_fresh_directory_starts_and_restarts() {
    let dir = DataDir::new("fresh");
    let node = Server::start_in(&dir, &[]);
    node.stop();
    assert!(dir.path().join("catalog").exists());
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert!(names.is_empty());
}

/// The previous release wrote no catalog until a partition was created, and no
/// `catalog_version` in `users.json`: such a directory is an upgrade, not a lost catalog, and
/// starts. The same directory whose `users.json` this release wrote (so a catalog existed)
/// is a lost catalog and is refused: its MEMORY partitions' definitions would be gone.
#[test]
fn a_previous_release_first_start_is_an_upgrade_not_a_lost_catalog() {
    let dir = DataDir::new("upgrade");
    let node = Server::start_in(&dir, &[]);
    node.stop();
    std::fs::remove_file(dir.path().join("catalog")).unwrap();
    let users = dir.path().join("users.json");
    let ours = std::fs::read_to_string(&users).unwrap();
    assert!(ours.contains("\"catalog_version\""), "{ours}");
    assert_names(&refused(&dir, &[]), "catalog");
    let previous: String = ours
        .lines()
        .filter(|l| !l.contains("\"catalog_version\""))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&users, previous).unwrap();
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert!(names.is_empty());
    drop(c);
    node.stop();
    assert!(
        dir.path().join("catalog").exists(),
        "the upgrade writes the catalog"
    );
}

/// A data directory with a durable partition `p` (key `k` = `v`) and a user `bob`.
fn populated(tag: &str) -> DataDir {
    let dir = DataDir::new(tag);
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
    let _: () = q_ok(&mut c, &["SET", "p", "k", "v"]);
    let _: () = q_ok(&mut c, &["CREATE", "USER", "bob", "bpw"]);
    drop(c);
    node.stop();
    dir
}

/// Asserts that a refusal names the missing or unexplained file and the flag.
fn assert_names(failed: &StartFailure, what: &str) {
    assert!(
        failed.stderr.contains(what) && failed.stderr.contains("--accept-data-loss"),
        "expected the refusal to name {what} and --accept-data-loss:\n{}",
        failed.stderr
    );
}

/// A deleted catalog: before the fix the server started empty and deleted every partition
/// directory (logged at INFO).
#[test]
fn a_deleted_catalog_refuses_to_start() {
    let dir = populated("no-catalog");
    let partition = only_partition_dir(&dir);
    std::fs::remove_file(dir.path().join("catalog")).unwrap();
    let failed = refused(&dir, &[]);
    assert_names(&failed, "catalog");
    assert!(
        partition.exists(),
        "the refused start deleted {partition:?}"
    );

    let node = Server::start_in(&dir, &["--accept-data-loss"]);
    assert!(node.log_text().contains("WARN"), "{}", node.log_text());
    let mut c = node.client();
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert!(names.is_empty());
    drop(c);
    node.stop();
    // Accepted once: the next start is an ordinary one.
    let node = Server::start_in(&dir, &[]);
    drop(node);
}

/// A deleted `users.json`: before the fix the server started with only `admin`, no warning.
#[test]
fn a_deleted_users_file_refuses_to_start() {
    let dir = populated("no-users");
    std::fs::remove_file(dir.path().join("users.json")).unwrap();
    let failed = refused(&dir, &[]);
    assert_names(&failed, "users.json");

    let node = Server::start_in(&dir, &["--accept-data-loss"]);
    assert!(
        node.log_text().contains("WARN") && node.log_text().contains("users.json"),
        "{}",
        node.log_text()
    );
    let mut c = node.client();
    let users: Vec<String> = q_ok(&mut c, &["LIST", "USERS"]);
    assert_eq!(users, ["admin"]);
    assert_eq!(q_ok::<String>(&mut c, &["GET", "p", "k"]), "v");
}

/// A deleted partition directory: before the fix the partition started empty.
#[test]
fn a_deleted_partition_directory_refuses_to_start() {
    let dir = populated("no-partition");
    let partition = only_partition_dir(&dir);
    std::fs::remove_dir_all(&partition).unwrap();
    let failed = refused(&dir, &[]);
    assert_names(&failed, &partition.display().to_string());

    let node = Server::start_in(&dir, &["--accept-data-loss"]);
    assert!(node.log_text().contains("WARN"), "{}", node.log_text());
    let mut c = node.client();
    assert_eq!(q_ok::<Option<String>>(&mut c, &["GET", "p", "k"]), None);
    let _: () = q_ok(&mut c, &["SET", "p", "k", "again"]);
}

/// Partition data the catalog does not explain (a directory with records under an id the
/// catalog never handed out, e.g. a catalog restored from an older copy): before the fix it
/// was deleted at INFO as "files of a dropped partition".
#[test]
fn unexplained_partition_data_refuses_to_start() {
    let dir = populated("orphan");
    let partition = only_partition_dir(&dir);
    let stranger = dir.path().join("partitions").join("999");
    std::fs::create_dir(&stranger).unwrap();
    for entry in std::fs::read_dir(&partition).unwrap().flatten() {
        std::fs::copy(entry.path(), stranger.join(entry.file_name())).unwrap();
    }
    let failed = refused(&dir, &[]);
    assert_names(&failed, &stranger.display().to_string());
    assert!(stranger.exists());

    let node = Server::start_in(&dir, &["--accept-data-loss"]);
    assert!(node.log_text().contains("WARN"), "{}", node.log_text());
    assert!(!stranger.exists());
    let mut c = node.client();
    assert_eq!(q_ok::<String>(&mut c, &["GET", "p", "k"]), "v");
}

/// Makes `dir` read-only for this process, even as root (whose permission checks a mode of
/// 0555 does not stop): the mode first, then the immutable attribute. False when neither
/// works here (then the caller skips).
fn make_read_only(dir: &Path) -> bool {
    let writable = || {
        let probe = dir.join("probe");
        let ok = std::fs::write(&probe, b"x").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if !writable() {
        return true;
    }
    let _ = std::process::Command::new("chattr")
        .arg("+i")
        .arg(dir)
        .status();
    !writable()
}

/// Undoes [`make_read_only`].
fn make_writable(dir: &Path) {
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(dir)
        .status();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A read-only data directory: the start fails saying so and naming it. Before the fix it
/// said "cannot remove .../admin-password" (the generated password file, which a configured
/// password makes obsolete).
#[test]
fn a_read_only_data_directory_is_named_as_such() {
    let dir = DataDir::new("read-only");
    let node = Server::launch(&[])
        .data_dir(&dir)
        .without_admin_password()
        .start();
    node.stop();
    assert!(dir.path().join("admin-password").exists());
    if !make_read_only(dir.path()) {
        eprintln!("skipped: cannot make a directory read-only here (root without chattr)");
        make_writable(dir.path());
        return;
    }
    let result = Server::launch(&[]).data_dir(&dir).try_start();
    make_writable(dir.path());
    let failed = match result {
        Ok(server) => panic!("started on a read-only directory:\n{}", server.log_text()),
        Err(failed) => failed,
    };
    let expected = format!(
        "the data directory {} is not writable",
        dir.path().display()
    );
    assert!(failed.stderr.contains(&expected), "{}", failed.stderr);
}

/// The directory fsync that ends an atomic replace fails after the rename: the new file is in
/// place and is what a restart reads, so the change is made (here and after a restart), and
/// the client hears `-IOERR` saying it is made but may not survive a power loss. Before the
/// fix the coordinator answered "nothing changed" and kept the old state in memory: a DROP
/// kept serving a partition the next start deleted, a CREATE's files were removed although
/// the catalog named the partition, a GRANT appeared only after a restart.
#[cfg(feature = "fault-injection")]
#[test]
fn a_failed_directory_fsync_after_the_rename_is_a_made_change() {
    let dir = DataDir::new("dirsync");
    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "USER", "bob", "bpw"]);
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "doomed", "STRING", "SYNC"]);
    let _: () = q_ok(&mut c, &["SET", "doomed", "k", "v"]);

    let _: () = q_ok(&mut c, &["DEBUG", "FAIL-DIRSYNC", "1"]);
    let (code, msg) = q_err(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
    assert_eq!(code, "IOERR", "{msg}");
    assert!(msg.contains("power loss"), "{msg}");
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert_eq!(names, ["doomed", "p"]);
    let _: () = q_ok(&mut c, &["SET", "p", "k", "kept"]);

    let _: () = q_ok(&mut c, &["DEBUG", "FAIL-DIRSYNC", "1"]);
    let (code, msg) = q_err(&mut c, &["DROP", "PARTITION", "doomed"]);
    assert_eq!(code, "IOERR", "{msg}");
    let (code, msg) = q_err(&mut c, &["SET", "doomed", "k", "after"]);
    assert_eq!(code, "NOPARTITION", "{msg}");

    let _: () = q_ok(&mut c, &["DEBUG", "FAIL-DIRSYNC", "1"]);
    let (code, msg) = q_err(&mut c, &["GRANT", "READ", "ON", "p", "TO", "bob"]);
    assert_eq!(code, "IOERR", "{msg}");
    assert_eq!(grants(&mut c, "bob"), ["p:READ"]);
    drop(c);
    node.kill9();

    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = node.client();
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert_eq!(names, ["p"]);
    assert_eq!(q_ok::<String>(&mut c, &["GET", "p", "k"]), "kept");
    assert_eq!(grants(&mut c, "bob"), ["p:READ"]);
}

//! The Redis face (PROTOCOL.md, "The Redis face: SELECT a partition") against the real
//! binary: `SELECT <partition>` puts a connection in Redis grammar on it, `RESET` takes it
//! back; and real Redis tools (redis-benchmark, redis-py) run on it unchanged.
//!
//! The differential table of `tests/keyspace.rs` runs its rows on the Redis face too; this
//! file covers the rest: permissions, switching, the forwarded and durable paths, DROP of the
//! selected partition, pipelines across SELECT.

mod common;

use std::process::Command;

use common::*;

/// A user `name` (password `pw`) holding `perm` on `partition` (`None`: nothing).
fn user(admin: &mut RawConn, name: &str, grant: Option<(&str, &str)>) {
    admin.expect(&cmd(&["CREATE", "USER", name, "pw"]), OK);
    if let Some((perm, partition)) = grant {
        admin.expect(&cmd(&["GRANT", perm, "ON", partition, "TO", name]), OK);
    }
}

fn create(admin: &mut RawConn, name: &str, persist: &str) {
    admin.expect(&cmd(&["CREATE", "PARTITION", name, "STRING", persist]), OK);
}

#[test]
fn select_puts_the_connection_in_redis_grammar_on_the_partition() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "p", "MEMORY");
    c.expect(&cmd(&["SET", "p", "k", "before"]), OK);
    c.expect(&cmd(&["SELECT", "p"]), OK);
    c.expect(&cmd(&["GET", "k"]), &bulk(b"before"));
    c.expect(&cmd(&["SET", "k", "v", "EX", "100"]), OK);
    c.expect(&cmd(&["MSET", "a", "1", "b", "2"]), OK);
    c.expect(
        &cmd(&["MGET", "a", "b", "k"]),
        &array(&[bulk(b"1"), bulk(b"2"), bulk(b"v")]),
    );
    c.expect(&cmd(&["DEL", "a", "b"]), &int(2));
    c.expect(&cmd(&["DBSIZE"]), &int(1));
    c.expect(&cmd(&["INCR", "n"]), &int(1));
    // Arity is Redis's: no partition counted.
    c.expect(
        &cmd(&["GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    c.expect(
        &cmd(&["GET", "a", "b"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    // RESET: GoKV grammar again, and logged out (as Redis's RESET deauthenticates).
    c.expect(&cmd(&["RESET"]), b"+RESET\r\n");
    c.expect_prefix(&cmd(&["GET", "p", "k"]), b"-NOAUTH");
    c.expect(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]), OK);
    c.expect(&cmd(&["GET", "p", "k"]), &bulk(b"v"));
    // In GoKV grammar a Redis-form GET is a GoKV GET of key... on partition "k".
    c.expect_prefix(&cmd(&["GET", "k"]), b"-ERR wrong number of arguments");
}

#[test]
fn reset_answers_in_resp2_and_clears_the_client_name() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "p", "MEMORY");
    assert!(c.call(&["HELLO", "3", "SETNAME", "app"]).starts_with(b"%"));
    c.expect(&cmd(&["SELECT", "p"]), OK);
    c.expect(&cmd(&["RESET"]), b"+RESET\r\n");
    c.expect(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]), OK);
    // RESP2 again: a null is `$-1`, not `_`.
    c.expect(&cmd(&["CLIENT", "GETNAME"]), NULL2);
    c.expect(&cmd(&["GET", "p", "missing"]), NULL2);
}

#[test]
fn select_needs_a_grant_and_the_selected_partition_s_permissions_apply() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    create(&mut admin, "p", "MEMORY");
    create(&mut admin, "q", "MEMORY");
    admin.expect(&cmd(&["SET", "p", "k", "v"]), OK);
    user(&mut admin, "reader", Some(("READ", "p")));
    user(&mut admin, "stranger", Some(("READ", "q")));

    let mut reader = server.login("reader", "pw");
    reader.expect(&cmd(&["SELECT", "p"]), OK);
    reader.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
    reader.expect(
        &cmd(&["SET", "k", "w"]),
        b"-NOPERM user 'reader' has no WRITE permission on 'p'\r\n",
    );
    reader.expect(&cmd(&["GET", "k"]), &bulk(b"v"));

    // Holding nothing on it: refused as any command on it is, and exactly as a partition
    // that does not exist (no leak of which names exist).
    let mut stranger = server.login("stranger", "pw");
    let refused = stranger.call(&["SELECT", "p"]);
    assert_eq!(
        show(&refused),
        show(b"-NOPERM user 'stranger' has no READ, WRITE or ADMIN permission on 'p'\r\n")
    );
    let missing = stranger.call(&["SELECT", "nosuch"]);
    assert_eq!(
        show(&missing),
        show(&refused).replace("'p'", "'nosuch'"),
        "a missing partition answers as one not granted"
    );
    // Still in GoKV grammar on its own partition.
    stranger.expect(&cmd(&["GET", "q", "k"]), NULL2);
    // The admin may know: NOPARTITION.
    admin.expect_prefix(&cmd(&["SELECT", "nosuch"]), b"-NOPARTITION");
}

#[test]
fn select_again_switches_and_partition_commands_keep_their_form() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "a", "MEMORY");
    create(&mut c, "b", "MEMORY");
    c.expect(&cmd(&["SELECT", "a"]), OK);
    c.expect(&cmd(&["SET", "k", "in-a"]), OK);
    c.expect(&cmd(&["SELECT", "b"]), OK);
    c.expect(&cmd(&["GET", "k"]), NULL2);
    c.expect(&cmd(&["SET", "k", "in-b"]), OK);
    // Partition, user and server commands as in GoKV grammar.
    c.expect(&cmd(&["SET", "k", "x", "NX"]), NULL2);
    create(&mut c, "c", "MEMORY");
    c.expect_prefix(&cmd(&["DESCRIBE", "PARTITION", "a"]), b"*");
    c.expect(
        &cmd(&["LIST", "PARTITIONS"]),
        &array(&[bulk(b"a"), bulk(b"b"), bulk(b"c")]),
    );
    c.expect(&cmd(&["FLUSH", "PARTITION", "a"]), OK);
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    c.expect_prefix(&cmd(&["INFO", "server"]), b"$");
    c.expect(&cmd(&["GET", "k"]), &bulk(b"in-b"));
    c.expect(&cmd(&["SELECT", "a"]), OK);
    c.expect(&cmd(&["DBSIZE"]), &int(0));
    // FLUSHDB is FLUSH PARTITION of the selected one.
    c.expect(&cmd(&["SET", "x", "1"]), OK);
    c.expect(&cmd(&["FLUSHDB"]), OK);
    c.expect(&cmd(&["DBSIZE"]), &int(0));
    c.expect(&cmd(&["SELECT", "b"]), OK);
    c.expect(&cmd(&["DBSIZE"]), &int(1));
    c.expect(&cmd(&["FLUSHDB", "ASYNC"]), OK);
    c.expect(&cmd(&["DBSIZE"]), &int(0));
    c.expect(&cmd(&["FLUSHDB", "NOW"]), b"-ERR syntax error\r\n");
}

#[test]
fn flushdb_needs_admin_on_the_selected_partition() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    create(&mut admin, "p", "MEMORY");
    user(&mut admin, "writer", Some(("WRITE", "p")));
    let mut w = server.login("writer", "pw");
    w.expect(&cmd(&["SELECT", "p"]), OK);
    w.expect(&cmd(&["SET", "k", "v"]), OK);
    w.expect_prefix(&cmd(&["FLUSHDB"]), b"-NOPERM");
    admin.expect(&cmd(&["EXISTS", "p", "k"]), &int(1));
}

#[test]
fn swapdb_move_and_flushdb_without_select_are_refused_clearly() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "0", "MEMORY");
    create(&mut c, "1", "MEMORY");
    c.expect_prefix(
        &cmd(&["FLUSHDB"]),
        b"-ERR FLUSHDB needs a selected partition",
    );
    c.expect(&cmd(&["SELECT", "0"]), OK);
    c.expect(&cmd(&["SET", "k", "v"]), OK);
    c.expect_prefix(&cmd(&["SWAPDB", "0", "1"]), b"-ERR SWAPDB is not supported");
    c.expect_prefix(&cmd(&["MOVE", "k", "1"]), b"-ERR MOVE is not supported");
    c.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
}

#[test]
fn a_selected_partition_on_another_shard_takes_the_forwarded_path() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let home = c.shard();
    let far = (0..16)
        .map(|i| format!("far{i}"))
        .find(|name| {
            create(&mut c, name, "MEMORY");
            c.partition_shard(name) != home
        })
        .expect("one of 16 partitions lands on the other shard");
    c.expect(&cmd(&["SELECT", &far]), OK);
    c.expect(&cmd(&["SET", "k", "v"]), OK);
    c.expect(&cmd(&["MSET", "a", "1", "b", "2"]), OK);
    c.expect(
        &cmd(&["MGET", "k", "a", "b"]),
        &array(&[bulk(b"v"), bulk(b"1"), bulk(b"2")]),
    );
    c.expect(&cmd(&["DBSIZE"]), &int(3));
    c.expect(&cmd(&["RESET"]), b"+RESET\r\n");
    let mut admin = server.raw();
    admin.expect(&cmd(&["GET", &far, "a"]), &bulk(b"1"));
}

#[test]
fn writes_to_a_selected_sync_partition_survive_a_restart() {
    let dir = DataDir::new("face-sync");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    create(&mut c, "d", "SYNC");
    c.expect(&cmd(&["SELECT", "d"]), OK);
    c.expect(&cmd(&["SET", "k", "v"]), OK);
    c.expect(&cmd(&["INCRBY", "n", "5"]), &int(5));
    c.expect(&cmd(&["DEL", "k"]), &int(1));
    c.expect(&cmd(&["SET", "kept", "yes"]), OK);
    drop(c);
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    c.expect(&cmd(&["SELECT", "d"]), OK);
    c.expect(
        &cmd(&["MGET", "k", "n", "kept"]),
        &array(&[NULL2.to_vec(), bulk(b"5"), bulk(b"yes")]),
    );
}

#[test]
fn dropping_the_selected_partition_answers_an_error_and_nothing_breaks() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create(&mut c, "gone", "MEMORY");
    c.expect(&cmd(&["SELECT", "gone"]), OK);
    c.expect(&cmd(&["SET", "k", "v"]), OK);
    c.expect(&cmd(&["DROP", "PARTITION", "gone"]), OK);
    c.expect(
        &cmd(&["GET", "k"]),
        b"-NOPARTITION partition 'gone' does not exist\r\n",
    );
    c.expect(
        &cmd(&["SET", "k", "v"]),
        b"-NOPARTITION partition 'gone' does not exist\r\n",
    );
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    // A user whose grant went with it is told NOPERM, and nothing else breaks either.
    create(&mut c, "again", "MEMORY");
    user(&mut c, "u", Some(("WRITE", "again")));
    let mut u = server.login("u", "pw");
    u.expect(&cmd(&["SELECT", "again"]), OK);
    c.expect(&cmd(&["DROP", "PARTITION", "again"]), OK);
    u.expect_prefix(&cmd(&["SET", "k", "v"]), b"-NOPERM");
    u.expect(&cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn each_pipelined_command_runs_on_the_partition_selected_before_it() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    for p in ["a", "b", "c"] {
        create(&mut c, p, "MEMORY");
    }
    let replies = c.pipeline(&[
        cmd(&["SELECT", "a"]),
        cmd(&["SET", "k", "1"]),
        cmd(&["SELECT", "b"]),
        cmd(&["SET", "k", "2"]),
        cmd(&["GET", "k"]),
        cmd(&["SELECT", "c"]),
        cmd(&["SET", "k", "3"]),
        cmd(&["SELECT", "a"]),
        cmd(&["GET", "k"]),
        cmd(&["RESET"]),
        cmd(&["AUTH", "admin", ADMIN_PASSWORD]),
        cmd(&["MGET", "c", "k"]),
    ]);
    let want: Vec<Vec<u8>> = vec![
        OK.to_vec(),
        OK.to_vec(),
        OK.to_vec(),
        OK.to_vec(),
        bulk(b"2"),
        OK.to_vec(),
        OK.to_vec(),
        OK.to_vec(),
        bulk(b"1"),
        b"+RESET\r\n".to_vec(),
        OK.to_vec(),
        array(&[bulk(b"3")]),
    ];
    assert_eq!(
        replies.iter().map(|r| show(r)).collect::<Vec<_>>(),
        want.iter().map(|r| show(r)).collect::<Vec<_>>()
    );
}

// ------------------------------------------------------------------------------------------
// A user's default partition
// ------------------------------------------------------------------------------------------

/// The `default` field of `DESCRIBE USER <name>` (`None`: nil).
fn default_of(c: &mut RawConn, name: &str) -> Option<String> {
    let pairs = c.call_value(&["DESCRIBE", "USER", name]).pairs();
    let (field, value) = pairs.last().expect("DESCRIBE USER has fields").clone();
    assert_eq!(field.text(), "default", "{pairs:?}");
    match value {
        Resp::Bulk(None) | Resp::Null => None,
        value => Some(value.text()),
    }
}

/// A user `name` (password `pw`) bound to `partition`, holding `perm` on it.
fn bound_user(admin: &mut RawConn, name: &str, partition: &str, perm: Option<&str>) {
    admin.expect(
        &cmd(&["CREATE", "USER", name, "pw", "DEFAULT", partition]),
        OK,
    );
    if let Some(perm) = perm {
        admin.expect(&cmd(&["GRANT", perm, "ON", partition, "TO", name]), OK);
    }
}

#[test]
fn a_user_with_a_default_partition_starts_in_redis_grammar_on_it() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    create(&mut admin, "app", "MEMORY");
    bound_user(&mut admin, "app", "app", Some("WRITE"));
    admin.expect(&cmd(&["GRANT", "READ", "ON", "app", "TO", "app"]), OK);
    // Every way of logging in lands on it.
    let mut c = server.login("app", "pw");
    c.expect(&cmd(&["SET", "k", "v"]), OK);
    c.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
    c.expect(&cmd(&["DBSIZE"]), &int(1));
    let mut c = RawConn::connect(&server.addr());
    c.expect(&cmd(&["LOGIN", "app", "pw"]), OK);
    c.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
    let mut c = RawConn::connect(&server.addr());
    assert!(c
        .call(&["HELLO", "3", "AUTH", "app", "pw"])
        .starts_with(b"%"));
    c.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
    // Redis-style AUTH <password>: user `default`.
    admin.expect(
        &cmd(&["CREATE", "USER", "default", "dpw", "DEFAULT", "app"]),
        OK,
    );
    admin.expect(&cmd(&["GRANT", "READ", "ON", "app", "TO", "default"]), OK);
    let mut c = RawConn::connect(&server.addr());
    c.expect(&cmd(&["AUTH", "dpw"]), OK);
    c.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
    // SELECT still switches, RESET logs out, and the next login lands on the default again.
    create(&mut admin, "other", "MEMORY");
    admin.expect(&cmd(&["GRANT", "READ", "ON", "other", "TO", "app"]), OK);
    let mut c = server.login("app", "pw");
    c.expect(&cmd(&["SELECT", "other"]), OK);
    c.expect(&cmd(&["GET", "k"]), NULL2);
    c.expect(&cmd(&["RESET"]), b"+RESET\r\n");
    c.expect_prefix(&cmd(&["GET", "k"]), b"-NOAUTH");
    c.expect(&cmd(&["AUTH", "app", "pw"]), OK);
    c.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
    // A user without a default leaves the selection as it was (Redis's AUTH keeps the db).
    c.expect(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]), OK);
    c.expect(&cmd(&["GET", "k"]), &bulk(b"v"));
    // And a user without one starts in GoKV grammar.
    admin.expect(&cmd(&["GET", "app", "k"]), &bulk(b"v"));
}

/// A request pipelined behind the AUTH runs in the grammar the login set: the first login of
/// a user goes to the hasher pool (the connection waits behind a barrier), a later one is
/// answered from the shard's login cache at once; both must order the switch before the
/// next request.
#[test]
fn requests_pipelined_after_the_login_run_on_the_default_partition() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    create(&mut admin, "app", "MEMORY");
    bound_user(&mut admin, "app", "app", Some("WRITE"));
    admin.expect(&cmd(&["GRANT", "READ", "ON", "app", "TO", "app"]), OK);
    for round in 0..3 {
        let value = format!("v{round}");
        let mut c = RawConn::connect(&server.addr());
        let replies = c.pipeline(&[
            cmd(&["AUTH", "app", "pw"]),
            cmd(&["SET", "k", &value]),
            cmd(&["GET", "k"]),
            cmd(&["DBSIZE"]),
        ]);
        assert_eq!(
            replies.iter().map(|r| show(r)).collect::<Vec<_>>(),
            [OK.to_vec(), OK.to_vec(), bulk(value.as_bytes()), int(1)]
                .iter()
                .map(|r| show(r))
                .collect::<Vec<_>>(),
            "round {round}"
        );
        admin.expect(&cmd(&["GET", "app", "k"]), &bulk(value.as_bytes()));
    }
    // HELLO ... AUTH the same way.
    let mut c = RawConn::connect(&server.addr());
    let replies = c.pipeline(&[
        cmd(&["HELLO", "2", "AUTH", "app", "pw"]),
        cmd(&["GET", "k"]),
    ]);
    assert_eq!(show(&replies[1]), show(&bulk(b"v2")));
}

#[test]
fn a_default_partition_grants_nothing_and_names_do_not_leak() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    create(&mut admin, "p", "MEMORY");
    admin.expect(&cmd(&["SET", "p", "k", "v"]), OK);
    bound_user(&mut admin, "bare", "p", None);
    bound_user(&mut admin, "lost", "nosuch", None);
    let mut bare = server.login("bare", "pw");
    let refused = bare.call(&["GET", "k"]);
    assert_eq!(
        show(&refused),
        show(b"-NOPERM user 'bare' has no READ permission on 'p'\r\n")
    );
    bare.expect_prefix(&cmd(&["SET", "k", "w"]), b"-NOPERM");
    // A default naming no partition answers exactly as one that exists but is not theirs.
    let mut lost = server.login("lost", "pw");
    assert_eq!(
        show(&lost.call(&["GET", "k"])),
        show(&refused)
            .replace("'bare'", "'lost'")
            .replace("'p'", "'nosuch'")
    );
    admin.expect(&cmd(&["GET", "p", "k"]), &bulk(b"v"));
}

#[test]
fn a_default_partition_that_is_missing_or_dropped_answers_its_next_command_with_an_error() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    // Allowed before the partition exists; a user who may know (holds something on `*`)
    // is told it is missing.
    admin.expect(
        &cmd(&["CREATE", "USER", "ops", "pw", "DEFAULT", "later"]),
        OK,
    );
    admin.expect(&cmd(&["GRANT", "WRITE", "ON", "*", "TO", "ops"]), OK);
    let mut ops = server.login("ops", "pw");
    ops.expect(
        &cmd(&["SET", "k", "v"]),
        b"-NOPARTITION partition 'later' does not exist\r\n",
    );
    ops.expect(&cmd(&["PING"]), b"+PONG\r\n");
    create(&mut admin, "later", "MEMORY");
    ops.expect(&cmd(&["SET", "k", "v"]), OK);
    // Dropped later: the default stays (it is a name), the next command gets the error.
    admin.expect(&cmd(&["DROP", "PARTITION", "later"]), OK);
    ops.expect(
        &cmd(&["SET", "k", "v"]),
        b"-NOPARTITION partition 'later' does not exist\r\n",
    );
    assert_eq!(default_of(&mut admin, "ops").as_deref(), Some("later"));
}

#[test]
fn alter_user_default_sets_and_clears_it_for_new_logins_only() {
    let dir = DataDir::new("face-default");
    let server = Server::start_in(&dir, &[]);
    let mut admin = server.raw();
    create(&mut admin, "a", "MEMORY");
    create(&mut admin, "b", "MEMORY");
    admin.expect(&cmd(&["SET", "a", "k", "in-a"]), OK);
    admin.expect(&cmd(&["SET", "b", "k", "in-b"]), OK);
    user(&mut admin, "u", Some(("READ", "a")));
    admin.expect(&cmd(&["GRANT", "READ", "ON", "b", "TO", "u"]), OK);
    assert_eq!(default_of(&mut admin, "u"), None);
    let mut plain = server.login("u", "pw");
    plain.expect(&cmd(&["GET", "a", "k"]), &bulk(b"in-a"));
    admin.expect(&cmd(&["ALTER", "USER", "u", "DEFAULT", "a"]), OK);
    assert_eq!(default_of(&mut admin, "u").as_deref(), Some("a"));
    // An open connection keeps its grammar; a new login lands on the default.
    plain.expect(&cmd(&["GET", "a", "k"]), &bulk(b"in-a"));
    let mut on_a = server.login("u", "pw");
    on_a.expect(&cmd(&["GET", "k"]), &bulk(b"in-a"));
    // The user may change its own (it grants nothing).
    on_a.expect(&cmd(&["ALTER", "USER", "u", "DEFAULT", "b"]), OK);
    on_a.expect(&cmd(&["GET", "k"]), &bulk(b"in-a"));
    server
        .login("u", "pw")
        .expect(&cmd(&["GET", "k"]), &bulk(b"in-b"));
    // It survives a restart (users.json).
    drop((plain, on_a, admin));
    server.stop();
    let server = Server::start_in(&dir, &[]);
    let mut admin = server.raw();
    assert_eq!(default_of(&mut admin, "u").as_deref(), Some("b"));
    // A MEMORY partition comes back empty.
    admin.expect(&cmd(&["SET", "b", "k", "again"]), OK);
    server
        .login("u", "pw")
        .expect(&cmd(&["GET", "k"]), &bulk(b"again"));
    // NONE clears it (any case): GoKV grammar from the next login.
    admin.expect(&cmd(&["ALTER", "USER", "u", "DEFAULT", "none"]), OK);
    assert_eq!(default_of(&mut admin, "u"), None);
    server
        .login("u", "pw")
        .expect(&cmd(&["GET", "b", "k"]), &bulk(b"again"));
}

#[test]
fn bad_default_partitions_are_refused_and_change_nothing() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    user(&mut admin, "u", None);
    admin.expect(
        &cmd(&["CREATE", "USER", "v", "pw", "DEFAULT", "bad name!"]),
        b"-ERR invalid partition name 'bad name!': expected 1 to 64 bytes of [A-Za-z0-9_.-]\r\n",
    );
    admin.expect_prefix(
        &cmd(&["CREATE", "USER", "v", "pw", "DEFAULT", "*"]),
        b"-ERR invalid partition name",
    );
    admin.expect(
        &cmd(&["CREATE", "USER", "v", "pw", "DEFALT", "p"]),
        b"-ERR syntax error: expected CREATE USER <name> <password> [DEFAULT <partition>]\r\n",
    );
    admin.expect(
        &cmd(&["CREATE", "USER", "v", "pw", "DEFAULT"]),
        b"-ERR syntax error: expected CREATE USER <name> <password> [DEFAULT <partition>]\r\n",
    );
    admin.expect_prefix(
        &cmd(&["DESCRIBE", "USER", "v"]),
        b"-ERR user 'v' does not exist",
    );
    admin.expect_prefix(
        &cmd(&["ALTER", "USER", "u", "DEFAULT", "x y"]),
        b"-ERR invalid partition name",
    );
    admin.expect(
        &cmd(&["ALTER", "USER", "nobody", "DEFAULT", "p"]),
        b"-ERR user 'nobody' does not exist\r\n",
    );
    admin.expect_prefix(
        &cmd(&["ALTER", "USER", "u", "DEFAULTS", "p"]),
        b"-ERR syntax error: expected ALTER USER <name> PASSWORD <password> or ALTER USER <name> DEFAULT <partition|NONE>",
    );
    assert_eq!(default_of(&mut admin, "u"), None);
    // Only ADMIN on `*` or the user itself.
    user(&mut admin, "w", None);
    let mut w = server.login("w", "pw");
    w.expect_prefix(&cmd(&["ALTER", "USER", "u", "DEFAULT", "p"]), b"-NOPERM");
    w.expect_prefix(
        &cmd(&["CREATE", "USER", "x", "pw", "DEFAULT", "p"]),
        b"-NOPERM",
    );
}

// ------------------------------------------------------------------------------------------
// FLUSHALL
// ------------------------------------------------------------------------------------------

/// Partitions `names` with `persist`, each holding keys `k0` .. `k{n-1}`, spread over shards.
fn filled(admin: &mut RawConn, names: &[(&str, &str)], n: usize) {
    for (name, persist) in names {
        create(admin, name, persist);
        for i in 0..n {
            admin.expect(&cmd(&["SET", name, &format!("k{i}"), "v"]), OK);
        }
    }
}

fn dbsize(c: &mut RawConn, p: &str) -> i64 {
    c.call_value(&["DBSIZE", p]).int()
}

#[test]
fn flushall_empties_every_partition_the_caller_holds_admin_on() {
    let dir = DataDir::new("face-flushall");
    let server = Server::start_in(&dir, &["--shards", "3"]);
    let mut admin = server.raw();
    let parts = [
        ("m1", "MEMORY"),
        ("m2", "MEMORY"),
        ("s1", "SYNC"),
        ("a1", "ASYNC"),
        ("kept", "SYNC"),
        ("seen", "MEMORY"),
    ];
    filled(&mut admin, &parts, 50);
    let shards: std::collections::BTreeSet<String> = parts
        .iter()
        .map(|(p, _)| admin.partition_shard(p))
        .collect();
    assert_eq!(shards.len(), 3, "local and forwarded parts both run");
    user(&mut admin, "ops", Some(("ADMIN", "m1")));
    for p in ["m2", "s1", "a1"] {
        admin.expect(&cmd(&["GRANT", "ADMIN", "ON", p, "TO", "ops"]), OK);
    }
    admin.expect(&cmd(&["GRANT", "READ", "ON", "seen", "TO", "ops"]), OK);
    let mut ops = server.login("ops", "pw");
    // A pipeline: writes before it are flushed, the reads after it see it done, on every
    // shard; one reply for the FLUSHALL.
    let replies = ops.pipeline(&[
        cmd(&["SET", "s1", "late", "x"]),
        cmd(&["FLUSHALL"]),
        cmd(&["DBSIZE", "m1"]),
        cmd(&["DBSIZE", "s1"]),
        cmd(&["DBSIZE", "a1"]),
        cmd(&["GET", "m2", "k0"]),
        cmd(&["DBSIZE", "seen"]),
    ]);
    assert_eq!(
        replies.iter().map(|r| show(r)).collect::<Vec<_>>(),
        [
            OK.to_vec(),
            OK.to_vec(),
            int(0),
            int(0),
            int(0),
            NULL2.to_vec(),
            int(50)
        ]
        .iter()
        .map(|r| show(r))
        .collect::<Vec<_>>()
    );
    // Where it holds no ADMIN, nothing changed.
    assert_eq!(dbsize(&mut admin, "kept"), 50);
    assert_eq!(dbsize(&mut admin, "seen"), 50);
    // The durable flushes were logged: a crash does not bring the keys back.
    admin.expect(&cmd(&["SET", "s1", "after", "y"]), OK);
    drop((ops, admin));
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "3"]);
    let mut admin = server.raw();
    assert_eq!(dbsize(&mut admin, "s1"), 1);
    admin.expect(&cmd(&["GET", "s1", "after"]), &bulk(b"y"));
    assert_eq!(dbsize(&mut admin, "kept"), 50);
    // ADMIN on `*`: every partition; Redis 7's modifiers are accepted.
    admin.expect(&cmd(&["FLUSHALL", "ASYNC"]), OK);
    for (p, _) in parts {
        assert_eq!(dbsize(&mut admin, p), 0, "{p}");
    }
    admin.expect(&cmd(&["FLUSHALL", "SYNC"]), OK);
    admin.expect(&cmd(&["FLUSHALL", "NOW"]), b"-ERR syntax error\r\n");
    // In Redis grammar too.
    admin.expect(&cmd(&["SET", "kept", "k", "v"]), OK);
    admin.expect(&cmd(&["SELECT", "m1"]), OK);
    admin.expect(&cmd(&["SET", "k", "v"]), OK);
    admin.expect(&cmd(&["FLUSHALL"]), OK);
    admin.expect(&cmd(&["DBSIZE"]), &int(0));
    admin.expect(&cmd(&["SELECT", "kept"]), OK);
    admin.expect(&cmd(&["DBSIZE"]), &int(0));
}

#[test]
fn flushall_without_admin_anywhere_is_refused_and_flushes_nothing() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    filled(&mut admin, &[("p", "MEMORY")], 3);
    user(&mut admin, "app", Some(("WRITE", "p")));
    admin.expect(&cmd(&["GRANT", "READ", "ON", "p", "TO", "app"]), OK);
    let mut app = server.login("app", "pw");
    app.expect(
        &cmd(&["FLUSHALL"]),
        b"-NOPERM user 'app' has no ADMIN permission on any partition ('flushall' empties the \
          partitions it holds ADMIN on)\r\n",
    );
    assert_eq!(dbsize(&mut admin, "p"), 3);
    // ADMIN only on a name that does not exist: it administers nothing that holds keys.
    user(&mut admin, "future", Some(("ADMIN", "later")));
    server.login("future", "pw").expect(&cmd(&["FLUSHALL"]), OK);
    assert_eq!(dbsize(&mut admin, "p"), 3);
    // Before login: NOAUTH.
    server
        .raw_unauthenticated()
        .expect_prefix(&cmd(&["FLUSHALL"]), b"-NOAUTH");
}

#[test]
fn flushall_answers_the_error_of_a_durable_flush_that_failed() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    filled(&mut admin, &[("d", "SYNC"), ("m", "MEMORY")], 20);
    admin.expect(&cmd(&["DEBUG", "FAIL-WRITE", "1"]), OK);
    let reply = admin.call_value(&["FLUSHALL"]);
    assert!(reply.is_error_code("IOERR"), "{reply:?}");
    // The durable one was rolled back; the memory one is empty.
    assert_eq!(dbsize(&mut admin, "d"), 20);
    assert_eq!(dbsize(&mut admin, "m"), 0);
    admin.expect(&cmd(&["FLUSHALL"]), OK);
    assert_eq!(dbsize(&mut admin, "d"), 0);
}

// ------------------------------------------------------------------------------------------
// INFO keyspace
// ------------------------------------------------------------------------------------------

#[test]
fn info_keyspace_prints_numbered_partitions_as_redis_databases() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    for (p, keys) in [("10", 1), ("3", 2), ("0", 0), ("03", 1), ("shop", 4)] {
        create(&mut admin, p, "MEMORY");
        for i in 0..keys {
            admin.expect(&cmd(&["SET", p, &format!("k{i}"), "v"]), OK);
        }
    }
    admin.expect(&cmd(&["EXPIRE", "3", "k0", "1000"]), &int(1));
    let keyspace = admin.call_value(&["INFO", "keyspace"]).text();
    let lines: Vec<&str> = keyspace.split("\r\n").collect();
    // Numbered ones first, by number, as Redis's `db<N>`; the rest by name, as before.
    assert_eq!(lines[0], "# Keyspace");
    assert_eq!(lines[1], "db0:keys=0,expires=0,avg_ttl=0");
    assert!(
        lines[2].starts_with("db3:keys=2,expires=1,avg_ttl="),
        "{keyspace}"
    );
    assert_eq!(lines[3], "db10:keys=1,expires=0,avg_ttl=0");
    assert_eq!(lines[4], "03:keys=1,expires=0,avg_ttl=0");
    assert_eq!(lines[5], "shop:keys=4,expires=0,avg_ttl=0");
    assert_eq!(lines[6..], [""]);
    // A caller sees only what it may READ.
    user(&mut admin, "r", Some(("READ", "3")));
    let mut r = server.login("r", "pw");
    let mine = r.call_value(&["INFO", "keyspace"]).text();
    assert!(
        mine.starts_with("# Keyspace\r\ndb3:keys=2,expires=1,avg_ttl="),
        "{mine}"
    );
    assert_eq!(mine.lines().count(), 2, "{mine}");
}

/// `redis-cli --stat` sums the keys of Redis's `db0` .. `db19` lines: numbered partitions
/// count there.
#[test]
fn redis_cli_stat_counts_the_keys_of_numbered_partitions() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    for (p, keys) in [("0", 2), ("5", 3), ("named", 7)] {
        create(&mut admin, p, "MEMORY");
        for i in 0..keys {
            admin.expect(&cmd(&["SET", p, &format!("k{i}"), "v"]), OK);
        }
    }
    let run = Command::new("redis-cli")
        .args(["-p", &server.port().to_string()])
        .args([
            "--user",
            "admin",
            "--pass",
            ADMIN_PASSWORD,
            "--no-auth-warning",
        ])
        .args(["INFO", "keyspace"])
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => return missing("redis_cli", "redis-cli", &e.to_string()),
    };
    assert!(String::from_utf8_lossy(&out.stdout).contains("db5:keys=3,"));
    let (rows, text) = match redis_cli_stat(server.port()) {
        Ok(stat) => stat,
        Err(why) => return missing("redis_cli_stat", "stdbuf", &why),
    };
    for row in rows {
        assert_eq!(row[0], "5", "keys of db0 and db5, not of 'named':\n{text}");
    }
}

// ------------------------------------------------------------------------------------------
// --databases N
// ------------------------------------------------------------------------------------------

#[test]
fn databases_creates_numbered_partitions_on_a_first_start_only() {
    let dir = DataDir::new("face-databases");
    let server = Server::start_in(&dir, &["--shards", "2", "--databases", "4"]);
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["LIST", "PARTITIONS"]).texts(),
        ["0", "1", "2", "3"]
    );
    let described = admin.call_value(&["DESCRIBE", "PARTITION", "2"]).pairs();
    let field = |name: &str| {
        described
            .iter()
            .find(|(f, _)| f.text() == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {described:?}"))
    };
    assert_eq!(field("schema").text(), "STRING");
    assert_eq!(field("persist").text(), "MEMORY");
    // Spread over the shards as CREATE PARTITION spreads them.
    let shards: std::collections::BTreeSet<String> = (0..4)
        .map(|i| admin.partition_shard(&i.to_string()))
        .collect();
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert_eq!(
        admin.call_value(&["CONFIG", "GET", "databases"]).texts(),
        ["databases", "4"]
    );
    admin.expect(&cmd(&["SELECT", "3"]), OK);
    admin.expect(&cmd(&["SET", "k", "v"]), OK);
    admin.expect(&cmd(&["DROP", "PARTITION", "1"]), OK);
    drop(admin);
    server.stop();
    // A restart makes nothing again: the dropped one stays dropped, and a larger N is not a
    // first start either.
    for n in ["4", "8"] {
        let server = Server::start_in(&dir, &["--shards", "2", "--databases", n]);
        let mut admin = server.raw();
        assert_eq!(
            admin.call_value(&["LIST", "PARTITIONS"]).texts(),
            ["0", "2", "3"],
            "--databases {n}"
        );
        server.stop();
    }
    // An existing directory without numbered partitions does not get them later.
    let dir = DataDir::new("face-databases-later");
    Server::start_in(&dir, &[]).stop();
    let server = Server::start_in(&dir, &["--databases", "4"]);
    assert!(server
        .raw()
        .call_value(&["LIST", "PARTITIONS"])
        .texts()
        .is_empty());
    // The default makes none.
    let server = Server::start(&[]);
    assert!(server
        .raw()
        .call_value(&["LIST", "PARTITIONS"])
        .texts()
        .is_empty());
}

#[test]
fn databases_out_of_bounds_is_refused_at_startup() {
    for bad in ["1025", "100000000"] {
        let failed = match Server::launch(&["--databases", bad]).try_start() {
            Ok(_) => panic!("--databases {bad} started"),
            Err(failed) => failed,
        };
        assert!(!failed.status.success());
        assert!(
            failed
                .stderr
                .contains(&format!("databases must be 0..=1024, got {bad}")),
            "{}",
            failed.stderr
        );
    }
    let failed = match Server::launch(&["--databases", "many"]).try_start() {
        Ok(_) => panic!("--databases many started"),
        Err(failed) => failed,
    };
    assert!(failed.stderr.contains("--databases"), "{}", failed.stderr);
}

// ------------------------------------------------------------------------------------------
// Real tools, unchanged
// ------------------------------------------------------------------------------------------

/// A tool the test needs is missing: fails in CI (`GOKV_REQUIRE_REDIS`, where `.ci/run`
/// installs it), else says the test is skipped (the caller returns).
fn missing(test: &str, what: &str, why: &str) {
    if std::env::var_os("GOKV_REQUIRE_REDIS").is_some() {
        panic!("{test}: GOKV_REQUIRE_REDIS is set but {what} cannot run: {why}");
    }
    eprintln!("{test}: skipping: {what} cannot run: {why}");
}

/// Runs a redis-py `script` with `args` and asserts it succeeded; false (the caller returns)
/// when python3 or redis-py is not installed (a failure under `GOKV_REQUIRE_REDIS`).
fn redis_py(script: &str, args: &[&str]) -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import redis"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            missing("redis_py", "redis-py (pip install redis)", &why);
            return false;
        }
        Err(e) => {
            missing("redis_py", "python3", &e.to_string());
            return false;
        }
    }
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 ran a moment ago");
    assert!(
        out.status.success(),
        "redis-py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Runs redis-benchmark against `server` with `args` (after host and port) and checks that
/// every test in `tests` reported a rate: it aborts at the first error reply. `None`: it is
/// not installed (and the caller returns).
fn redis_benchmark(server: &Server, args: &[&str], tests: &[&str]) -> Option<String> {
    let run = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(args)
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => {
            missing("redis_benchmark", "redis-benchmark", &e.to_string());
            return None;
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark failed: {text}");
    for test in tests {
        assert!(
            // Progress lines end in `\r`, results in `\n`.
            text.split(['\r', '\n'])
                .any(|l| l.trim_start().starts_with(test) && l.contains("requests per second")),
            "no {test} result in: {text}"
        );
    }
    assert!(!text.contains("ERR"), "{text}");
    Some(text)
}

/// `--databases 16` (Redis's layout) and redis-benchmark `--dbnum 3` as admin: no setup.
#[test]
fn redis_benchmark_runs_with_dbnum_on_databases_with_no_setup() {
    let server = Server::start(&["--shards", "2", "--databases", "16"]);
    let args = ["--user", "admin", "-a", ADMIN_PASSWORD, "--dbnum", "3"];
    let args = [&args[..], &["-t", "set,get,incr", "-n", "10000", "-q"]].concat();
    if redis_benchmark(&server, &args, &["SET", "GET", "INCR"]).is_none() {
        return;
    }
    let mut admin = server.raw();
    admin.expect(&cmd(&["GET", "3", "counter:__rand_int__"]), &bulk(b"10000"));
    admin.expect(&cmd(&["DBSIZE", "0"]), &int(0));
}

/// `--dbnum 3`: redis-benchmark sends `SELECT 3` on each connection. (With `--dbnum 0`, its
/// default, it sends no SELECT at all, as redis-py does with `db=0`: Redis starts every
/// connection on database 0. Those need a user's default partition: see
/// [`redis_benchmark_runs_unchanged_as_a_user_bound_to_a_partition`].)
#[test]
fn redis_benchmark_runs_unchanged_with_dbnum() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create(&mut c, "3", "MEMORY");
    let args = ["--user", "admin", "-a", ADMIN_PASSWORD, "--dbnum", "3"];
    let args = [&args[..], &["-t", "set,get", "-n", "20000", "-q"]].concat();
    if redis_benchmark(&server, &args, &["SET", "GET"]).is_none() {
        return;
    }
    c.expect(&cmd(&["SELECT", "3"]), OK);
    assert_eq!(
        c.call_value(&["DBSIZE"]).int(),
        1,
        "redis-benchmark's one key"
    );
}

/// A user bound to a partition (`CREATE USER app <pw> DEFAULT bench`): redis-benchmark with
/// `--user app -a <pw>` and no `--dbnum` runs its SET, GET, INCR and MSET tests unchanged,
/// every key lands in `bench`; with `--dbnum 3` it selects `3` over the default.
#[test]
fn redis_benchmark_runs_unchanged_as_a_user_bound_to_a_partition() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    create(&mut admin, "bench", "MEMORY");
    create(&mut admin, "3", "MEMORY");
    bound_user(&mut admin, "app", "bench", Some("READ"));
    for (perm, partition) in [("WRITE", "bench"), ("READ", "3"), ("WRITE", "3")] {
        admin.expect(&cmd(&["GRANT", perm, "ON", partition, "TO", "app"]), OK);
    }
    let tests = ["SET", "GET", "INCR", "MSET"];
    let run = [
        "--user",
        "app",
        "-a",
        "pw",
        "-t",
        "set,get,incr,mset",
        "-n",
        "10000",
        "-q",
    ];
    if redis_benchmark(&server, &run, &tests).is_none() {
        return;
    }
    // Its keys: `key:__rand_int__` (SET, GET, MSET) and `counter:__rand_int__` (INCR, once
    // per request: every one of them ran on `bench`).
    admin.expect(&cmd(&["DBSIZE", "bench"]), &int(2));
    admin.expect(
        &cmd(&["GET", "bench", "counter:__rand_int__"]),
        &bulk(b"10000"),
    );
    admin.expect(&cmd(&["DBSIZE", "3"]), &int(0));
    let run = [&run[..], &["--dbnum", "3"]].concat();
    redis_benchmark(&server, &run, &tests);
    admin.expect(&cmd(&["DBSIZE", "3"]), &int(2));
    admin.expect(&cmd(&["GET", "3", "counter:__rand_int__"]), &bulk(b"10000"));
    admin.expect(
        &cmd(&["GET", "bench", "counter:__rand_int__"]),
        &bulk(b"10000"),
    );
}

/// redis-cli with `--user` and `--pass` of a bound user: plain `SET k v`, `GET k`.
#[test]
fn redis_cli_runs_unchanged_as_a_user_bound_to_a_partition() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    create(&mut admin, "cache", "MEMORY");
    bound_user(&mut admin, "web", "cache", Some("READ"));
    admin.expect(&cmd(&["GRANT", "WRITE", "ON", "cache", "TO", "web"]), OK);
    let cli = |words: &[&str]| {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
            .args(["--user", "web", "--pass", "pw", "--no-auth-warning"])
            .args(words)
            .output()
    };
    let out = match cli(&["SET", "k", "v"]) {
        Ok(out) => out,
        Err(e) => return missing("redis_cli", "redis-cli", &e.to_string()),
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let out = cli(&["GET", "k"]).expect("redis-cli ran a moment ago");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v\n");
    admin.expect(&cmd(&["GET", "cache", "k"]), &bulk(b"v"));
}

/// redis-py's client, as an application would use it: `db=3` (it sends `SELECT 3` on
/// connect; with `db=0` it sends none, see [`redis_benchmark_runs_unchanged_with_dbnum`]).
const REDIS_PY: &str = r#"
import sys
import redis
port, password = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, username="admin", password=password, db=3)
assert r.set("k", "v") is True
assert r.get("k") == b"v"
assert r.expire("k", 100) is True
assert 99 <= r.ttl("k") <= 100
r.mset({"a": "1", "b": "2"})
assert sorted(r.scan_iter(match="*")) == [b"a", b"b", b"k"], list(r.scan_iter())
assert r.dbsize() == 3
assert r.delete("a", "b") == 2
print("redis-py ok")
"#;

#[test]
fn redis_py_runs_unchanged_with_db_3() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create(&mut c, "3", "MEMORY");
    if !redis_py(REDIS_PY, &[&server.port().to_string(), ADMIN_PASSWORD]) {
        return;
    }
    c.expect(&cmd(&["GET", "3", "k"]), &bulk(b"v"));
}

/// redis-py as an unchanged application on "db 0": a username and password, no `db`.
const REDIS_PY_BOUND: &str = r#"
import sys
import redis
port = int(sys.argv[1])
r = redis.Redis(host="127.0.0.1", port=port, username="app", password="pw")
assert r.set("k", "v") is True
assert r.get("k") == b"v"
assert r.incr("n") == 1
assert r.dbsize() == 2
print("redis-py ok")
"#;

#[test]
fn redis_py_runs_unchanged_as_a_user_bound_to_a_partition() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    create(&mut admin, "tenant", "MEMORY");
    bound_user(&mut admin, "app", "tenant", Some("READ"));
    admin.expect(&cmd(&["GRANT", "WRITE", "ON", "tenant", "TO", "app"]), OK);
    if !redis_py(REDIS_PY_BOUND, &[&server.port().to_string()]) {
        return;
    }
    admin.expect(&cmd(&["GET", "tenant", "k"]), &bulk(b"v"));
}

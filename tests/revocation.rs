//! REVOKE, DROP PARTITION and DROP USER are final once they answer `+OK` (issue 18, item 4):
//! no request approved under the old grants, for the old partition or by the old user runs
//! anywhere after that, not even one already on its way to another shard.
//!
//! Each test keeps connections remote (`--migrate-connections false`) and widens the window
//! the way the issue found it: the requesting shard is kept busy with SYNC commits, so the
//! requests it forwards leave well after it acknowledged the new ACL or catalog version.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// How long each test looks for a violation before calling the server right. The unfixed
/// server showed one within the first second every time.
const RUN_FOR: Duration = Duration::from_secs(6);

/// Requests a pipelining client sends per round.
const PIPELINE: usize = 32;

struct Cluster {
    server: Server,
    /// The shard that owns `p` (and where the admin's own writes run locally).
    home: String,
    /// The other shard: it owns the SYNC partition `s`, and the clients under test live on it.
    busy: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Two shards, `p` on one (MEMORY), `s` on the other (SYNC), and a writer keeping `s`'s
    /// shard busy with fsyncs.
    fn start() -> Cluster {
        let server = Server::start(&["--shards", "2", "--migrate-connections", "false"]);
        let mut admin = server.raw();
        admin.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
        admin.expect(&cmd(&["CREATE", "PARTITION", "s", "STRING", "SYNC"]), OK);
        let home = admin.partition_shard("p");
        let busy = admin.partition_shard("s");
        assert_ne!(home, busy, "p and s should be placed on different shards");
        let mut cluster = Cluster {
            server,
            home,
            busy,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let mut writer = cluster.admin_on(&cluster.busy.clone());
        let stop = cluster.stop.clone();
        cluster.threads.push(std::thread::spawn(move || {
            let value = "w".repeat(64 << 10);
            let round: Vec<Vec<u8>> = (0..16)
                .map(|i| cmd(&["SET", "s", &format!("k{i}"), &value]))
                .collect();
            while !stop.load(Ordering::Relaxed) {
                for reply in writer.pipeline(&round) {
                    assert_eq!(show(&reply), show(OK));
                }
            }
        }));
        cluster
    }

    /// A connection logged in as `user` that lives on `shard`.
    fn conn_on(&self, shard: &str, user: &str, password: &str) -> RawConn {
        loop {
            let mut c = RawConn::connect_as(&self.server.addr(), user, password);
            if c.shard() == shard {
                return c;
            }
        }
    }

    fn admin_on(&self, shard: &str) -> RawConn {
        self.conn_on(shard, "admin", ADMIN_PASSWORD)
    }

    /// Runs `round` in a loop on `conn` until the test stops or the connection closes;
    /// `judge` sees every reply and says whether it is a violation, which is counted.
    fn pipeline_until_stopped(
        &mut self,
        mut conn: RawConn,
        round: Vec<Vec<u8>>,
        violations: Arc<AtomicUsize>,
        judge: fn(&[u8]) -> bool,
    ) {
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                conn.send(&round.concat());
                for _ in 0..round.len() {
                    match conn.try_read_reply() {
                        Ok(Some(reply)) => {
                            if judge(&reply) {
                                violations.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // Closed (a dropped user): this client is done.
                        _ => return,
                    }
                }
            }
        }));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// (i) A reader pipelining GETs from the other shard while its READ grant is revoked: a
/// value written after REVOKE answered `+OK` must never reach it.
#[test]
fn revoke_stops_reads_already_in_flight() {
    let mut cluster = Cluster::start();
    let mut admin = cluster.admin_on(&cluster.home.clone());
    admin.expect(&cmd(&["CREATE", "USER", "bob", "bpw"]), OK);
    admin.expect(&cmd(&["SET", "p", "secret", "before"]), OK);
    admin.expect(&cmd(&["GRANT", "READ", "ON", "p", "TO", "bob"]), OK);
    let reader = cluster.conn_on(&cluster.busy.clone(), "bob", "bpw");
    let leaks = Arc::new(AtomicUsize::new(0));
    let round = vec![cmd(&["GET", "p", "secret"]); PIPELINE];
    cluster.pipeline_until_stopped(reader, round, leaks.clone(), |reply| {
        reply.windows(5).any(|w| w == b"after")
    });
    let started = Instant::now();
    let mut cycles = 0;
    while started.elapsed() < RUN_FOR && leaks.load(Ordering::Relaxed) == 0 {
        admin.expect(&cmd(&["GRANT", "READ", "ON", "p", "TO", "bob"]), OK);
        std::thread::sleep(Duration::from_millis(2));
        admin.expect(&cmd(&["REVOKE", "READ", "ON", "p", "FROM", "bob"]), OK);
        // From here on bob may read nothing: this value must never reach him.
        admin.expect(
            &cmd(&["SET", "p", "secret", &format!("after-{cycles}")]),
            OK,
        );
        std::thread::sleep(Duration::from_millis(2));
        admin.expect(&cmd(&["SET", "p", "secret", "before"]), OK);
        cycles += 1;
    }
    drop(cluster);
    let leaks = leaks.load(Ordering::Relaxed);
    assert_eq!(
        leaks, 0,
        "bob read {leaks} values written after REVOKE READ answered +OK ({cycles} cycles)"
    );
}

/// (ii) A writer pipelining SETs from the other shard while its partition is dropped and
/// created again under the same name: the new partition, on which it holds nothing, must
/// receive none of the writes approved for the old one.
#[test]
fn drop_and_create_keep_old_writes_out_of_the_new_partition() {
    let mut cluster = Cluster::start();
    let mut admin = cluster.admin_on(&cluster.home.clone());
    admin.expect(&cmd(&["CREATE", "USER", "carol", "cpw"]), OK);
    admin.expect(&cmd(&["GRANT", "WRITE", "ON", "p", "TO", "carol"]), OK);
    let writer = cluster.conn_on(&cluster.busy.clone(), "carol", "cpw");
    let round = vec![cmd(&["SET", "p", "k", "carol"]); PIPELINE];
    cluster.pipeline_until_stopped(writer, round, Arc::new(AtomicUsize::new(0)), |_| false);
    let started = Instant::now();
    let mut cycles = 0;
    let mut leaks = 0;
    while started.elapsed() < RUN_FOR && leaks == 0 {
        admin.expect(&cmd(&["DROP", "PARTITION", "p"]), OK);
        admin.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
        assert_eq!(
            admin.partition_shard("p"),
            cluster.home,
            "p was created on the other shard"
        );
        // Give requests that were already on their way time to land.
        std::thread::sleep(Duration::from_millis(20));
        if admin.call(&["GET", "p", "k"]) != b"$-1\r\n" {
            leaks += 1;
        }
        // carol's next writes are approved for this partition, which the next cycle drops.
        admin.expect(&cmd(&["GRANT", "WRITE", "ON", "p", "TO", "carol"]), OK);
        std::thread::sleep(Duration::from_millis(2));
        cycles += 1;
    }
    drop(cluster);
    assert_eq!(
        leaks, 0,
        "carol wrote into a re-created p she holds no grant on ({cycles} cycles)"
    );
}

/// (iii) A writer pipelining SETs from the other shard while its user is dropped: once DROP
/// USER answered `+OK`, none of its writes may land.
#[test]
fn drop_user_stops_writes_already_in_flight() {
    let mut cluster = Cluster::start();
    let mut admin = cluster.admin_on(&cluster.home.clone());
    let started = Instant::now();
    let mut cycles = 0;
    let mut leaks = 0;
    while started.elapsed() < RUN_FOR && leaks == 0 {
        admin.expect(&cmd(&["CREATE", "USER", "dave", "dpw"]), OK);
        admin.expect(&cmd(&["GRANT", "WRITE", "ON", "p", "TO", "dave"]), OK);
        let writer = cluster.conn_on(&cluster.busy.clone(), "dave", "dpw");
        let round = vec![cmd(&["SET", "p", "k", "dave"]); PIPELINE];
        cluster.pipeline_until_stopped(writer, round, Arc::new(AtomicUsize::new(0)), |_| false);
        std::thread::sleep(Duration::from_millis(5));
        admin.expect(&cmd(&["DROP", "USER", "dave"]), OK);
        // From here on nothing dave sent may land.
        admin.expect(&cmd(&["SET", "p", "k", "clean"]), OK);
        std::thread::sleep(Duration::from_millis(20));
        if admin.call(&["GET", "p", "k"]) != bulk(b"clean") {
            leaks += 1;
        }
        cycles += 1;
    }
    drop(cluster);
    assert_eq!(
        leaks, 0,
        "a dropped user's writes landed after DROP USER answered +OK ({cycles} cycles)"
    );
}

/// (iv) The coordinator's side: a partition ADMIN pipelining GRANTs from the other shard
/// while her ADMIN is revoked. A change she sent before the REVOKE may still be on its way
/// (in her shard's outbox, or queued at the coordinator); once the REVOKE answered `+OK`,
/// none of her GRANTs may take effect.
#[test]
fn revoke_stops_changes_already_in_flight() {
    let mut cluster = Cluster::start();
    let mut admin = cluster.admin_on(&cluster.home.clone());
    admin.expect(&cmd(&["CREATE", "USER", "eve", "epw"]), OK);
    admin.expect(&cmd(&["CREATE", "USER", "xavier", "xpw"]), OK);
    admin.expect(&cmd(&["GRANT", "ADMIN", "ON", "p", "TO", "eve"]), OK);
    let granter = cluster.conn_on(&cluster.busy.clone(), "eve", "epw");
    let round = vec![cmd(&["GRANT", "READ", "ON", "p", "TO", "xavier"]); PIPELINE];
    cluster.pipeline_until_stopped(granter, round, Arc::new(AtomicUsize::new(0)), |_| false);
    let mut xavier = cluster.conn_on(&cluster.home.clone(), "xavier", "xpw");
    let started = Instant::now();
    let mut cycles = 0;
    let mut leaks = 0;
    while started.elapsed() < RUN_FOR && leaks == 0 {
        std::thread::sleep(Duration::from_millis(2));
        admin.expect(&cmd(&["REVOKE", "ADMIN", "ON", "p", "FROM", "eve"]), OK);
        // Whatever eve granted before is taken back here; nothing may grant it again.
        admin.expect(&cmd(&["REVOKE", "READ", "ON", "p", "FROM", "xavier"]), OK);
        std::thread::sleep(Duration::from_millis(20));
        let read = xavier.call(&["GET", "p", "k"]);
        if !read.starts_with(b"-NOPERM") {
            leaks += 1;
        }
        admin.expect(&cmd(&["GRANT", "ADMIN", "ON", "p", "TO", "eve"]), OK);
        cycles += 1;
    }
    drop(cluster);
    assert_eq!(
        leaks, 0,
        "a GRANT by eve took effect after REVOKE ADMIN answered +OK ({cycles} cycles)"
    );
}

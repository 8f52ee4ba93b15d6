//! A real failover by unmodified `redis-sentinel` processes: a GoKV primary, two GoKV
//! replicas, three sentinels on loopback, and a writer that counts a write as acknowledged
//! only once `WAIT 1` says a replica has it. The primary is killed with SIGKILL; a replica
//! must be promoted, the other must follow it, every acknowledged write must be on the new
//! primary, and the old primary, restarted, must become a replica holding the new primary's
//! data (what it had and the new primary lacks is dropped, never merged).
//!
//! redis-py's Sentinel client (`Sentinel(...).master_for(...)`), unchanged, writes through the
//! same failover and must find the new primary by itself.
//!
//! Skipped, with a message, when `redis-sentinel` is not installed, unless
//! `GOKV_REQUIRE_REDIS` is set (CI installs it: never skipped there).

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, poll_until, DataDir, Server, ADMIN_PASSWORD};

const MASTER: &str = "gokv";

/// How long a step may take on a loaded 2-core machine running debug builds.
const STEP: Duration = Duration::from_secs(60);

fn sentinel_bin() -> Option<String> {
    let bin = std::env::var("REDIS_SENTINEL_BIN").unwrap_or_else(|_| "redis-sentinel".into());
    Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .map(|_| bin)
}

/// A `redis-sentinel` process with its own config file (Sentinel rewrites it).
struct Sentinel {
    child: Child,
    port: u16,
    dir: DataDir,
}

impl Sentinel {
    fn start(bin: &str, primary_port: u16) -> Sentinel {
        let dir = DataDir::new("sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
             sentinel auth-user {MASTER} admin\n\
             sentinel auth-pass {MASTER} {ADMIN_PASSWORD}\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 10000\n\
             sentinel parallel-syncs {MASTER} 2\n",
            dir = dir.path().display()
        );
        std::fs::write(&conf, text).unwrap();
        let log = std::fs::File::create(dir.path().join("sentinel.log")).unwrap();
        let child = Command::new(bin)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-sentinel");
        Sentinel { child, port, dir }
    }

    fn client(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).ok()?;
        let con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(con)
    }

    /// The primary this sentinel names now.
    fn master_port(&self) -> Option<u16> {
        let mut con = self.client()?;
        let (_, port): (String, String) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query(&mut con)
            .ok()?;
        port.parse().ok()
    }

    /// How many other sentinels this one knows (found through `__sentinel__:hello`).
    fn other_sentinels(&self) -> Option<u64> {
        let mut con = self.client()?;
        let fields: Vec<String> = redis::cmd("SENTINEL")
            .arg("master")
            .arg(MASTER)
            .query(&mut con)
            .ok()?;
        let at = fields.iter().position(|f| f == "num-other-sentinels")?;
        fields.get(at + 1)?.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

/// Kills the sentinels when the test ends, by a panic too: the writer thread holds them as
/// well (an `Arc`), and a thread still running when the test binary exits never drops its
/// share, which left three `redis-sentinel`s running after a failed run. Declared after the
/// sentinels, it runs before their own drop reaps them, so the pids are still theirs.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GoKV node at a fixed port with a config file (Sentinel's failover runs CONFIG REWRITE)
/// and its own data directory, so that it can be restarted at the same address.
struct Node {
    port: u16,
    dir: DataDir,
    config: String,
    replicaof: Option<u16>,
}

impl Node {
    fn new(replicaof: Option<u16>) -> Node {
        let dir = DataDir::new("failover-node");
        let config = dir.path().join("gokv.toml");
        std::fs::write(&config, "# a failover test node\n").unwrap();
        Node {
            port: free_port(),
            config: config.to_str().unwrap().to_string(),
            dir,
            replicaof,
        }
    }

    fn start(&self) -> Server {
        let port = self.port.to_string();
        let mut args = vec![
            "--port".to_string(),
            port,
            "--shards".into(),
            "2".into(),
            "--config".into(),
            self.config.clone(),
            "--primary-user".into(),
            "admin".into(),
            "--primary-password".into(),
            ADMIN_PASSWORD.into(),
        ];
        if let Some(p) = self.replicaof {
            args.extend(["--replicaof".into(), format!("127.0.0.1:{p}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_in(&self.dir, &args)
    }
}

fn connect(port: u16) -> Option<redis::Connection> {
    let url = format!("redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{port}/");
    let con = redis::Client::open(url)
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    con.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(con)
}

fn info_field(port: u16, field: &str) -> Option<String> {
    let mut con = connect(port)?;
    let text: String = redis::cmd("INFO").arg("replication").query(&mut con).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// What the writer saw.
#[derive(Default)]
struct Writes {
    /// Keys acknowledged by `WAIT 1` (a replica had them), with their values.
    acked: BTreeMap<String, String>,
    /// The first write that succeeded on each primary port, and when.
    first_on: BTreeMap<u16, Instant>,
}

/// Writes `SET p k<i> <i>` then `WAIT 1 1000` in a loop, to the primary the sentinels name,
/// reconnecting (and asking again) whenever a write fails: as a Sentinel-aware client does.
fn writer(sentinels: Arc<Vec<Sentinel>>, stop: Arc<AtomicBool>, writes: Arc<Mutex<Writes>>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(port) = sentinels.iter().find_map(Sentinel::master_port) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let Some(mut con) = connect(port) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let (key, value) = (format!("k{i}"), i.to_string());
            let set: redis::RedisResult<()> = redis::cmd("SET")
                .arg("p")
                .arg(&key)
                .arg(&value)
                .query(&mut con);
            if set.is_err() {
                break;
            }
            writes
                .lock()
                .unwrap()
                .first_on
                .entry(port)
                .or_insert_with(Instant::now);
            let acked: redis::RedisResult<i64> =
                redis::cmd("WAIT").arg(1).arg(1000).query(&mut con);
            match acked {
                Ok(n) if n >= 1 => {
                    writes.lock().unwrap().acked.insert(key, value);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// redis-py's own Sentinel client, unchanged: `Sentinel(...).master_for(...)`, writing once
/// every 50 ms across the failover. It prints `ok <port>` after each write that succeeded (the
/// primary it wrote to) and `err <kind>` after each that failed; redis-py finds the new
/// primary through the sentinels when its connection to the old one breaks.
const SENTINEL_CLIENT: &str = r#"
import sys, time
from redis.sentinel import Sentinel
ports = [int(p) for p in sys.argv[1].split(",")]
sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=1)
master = sentinel.master_for("gokv", username="admin", password=sys.argv[2],
                             socket_timeout=2, socket_connect_timeout=1)
i = 0
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    i += 1
    try:
        master.execute_command("SET", "p", "py%d" % i, i)
        host, port = sentinel.discover_master("gokv")
        print("ok", port, flush=True)
    except Exception as e:
        print("err", type(e).__name__, flush=True)
    time.sleep(0.05)
"#;

/// Starts [`SENTINEL_CLIENT`] for `secs` seconds; its lines arrive on the channel. `None`
/// (with a message) without python3 and redis-py, a failure under `GOKV_REQUIRE_REDIS`.
fn redis_py_client(
    sentinels: &[Sentinel],
    secs: u64,
) -> Option<(Child, std::sync::mpsc::Receiver<String>)> {
    use std::io::BufRead as _;
    let probe = Command::new("python3")
        .args(["-c", "import redis.sentinel"])
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        if std::env::var_os("GOKV_REQUIRE_REDIS").is_some() {
            panic!("GOKV_REQUIRE_REDIS is set but python3 with redis-py is not installed");
        }
        let _ = writeln!(
            std::io::stderr(),
            "failover: redis-py's Sentinel client skipped: no python3 with redis-py"
        );
        return None;
    }
    let ports: Vec<String> = sentinels.iter().map(|s| s.port.to_string()).collect();
    let mut child = Command::new("python3")
        .args([
            "-c",
            SENTINEL_CLIENT,
            &ports.join(","),
            ADMIN_PASSWORD,
            &secs.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python3");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Some((child, rx))
}

/// Every acknowledged key holds its value on the server at `port`; the keys missing.
fn missing_acked(port: u16, acked: &BTreeMap<String, String>) -> Vec<String> {
    let mut con = connect(port).expect("a client of the new primary");
    let keys: Vec<&String> = acked.keys().collect();
    let mut missing = Vec::new();
    for chunk in keys.chunks(500) {
        let mut cmd = redis::cmd("MGET");
        cmd.arg("p");
        for k in chunk {
            cmd.arg(k.as_str());
        }
        let values: Vec<Option<String>> = cmd.query(&mut con).expect("MGET");
        for (k, v) in chunk.iter().zip(values) {
            if v.as_deref() != Some(acked[*k].as_str()) {
                missing.push((*k).clone());
            }
        }
    }
    missing
}

#[test]
fn sentinel_fails_over_to_a_replica_and_no_acknowledged_write_is_lost() {
    let Some(bin) = sentinel_bin() else {
        if std::env::var_os("GOKV_REQUIRE_REDIS").is_some() {
            panic!("GOKV_REQUIRE_REDIS is set but redis-sentinel is not installed");
        }
        let _ = writeln!(
            std::io::stderr(),
            "failover: skipped: redis-sentinel is not installed (Debian: apt-get install \
             redis-sentinel; GOKV_REQUIRE_REDIS=1 makes this a failure)"
        );
        return;
    };
    let a = Node::new(None);
    let primary = a.start();
    let mut p = connect(a.port).unwrap();
    let _: () = redis::cmd("CREATE")
        .arg(&["PARTITION", "p", "STRING", "MEMORY"][..])
        .query(&mut p)
        .unwrap();
    let b = Node::new(Some(a.port));
    let c = Node::new(Some(a.port));
    let replicas = [b.start(), c.start()];
    for node in [&b, &c] {
        let up = poll_until(STEP, || {
            (info_field(node.port, "master_link_status")? == "up").then_some(())
        });
        assert!(up.is_some(), "replica {} never linked", node.port);
    }
    let sentinels = Arc::new(vec![
        Sentinel::start(&bin, a.port),
        Sentinel::start(&bin, a.port),
        Sentinel::start(&bin, a.port),
    ]);
    let _kill = KillOnDrop(sentinels.iter().map(|s| s.child.id()).collect());
    // The sentinels find each other through `__sentinel__:hello` on the primary and the
    // replicas (Pub/Sub), and the replicas through the primary's INFO.
    let met = poll_until(STEP, || {
        sentinels
            .iter()
            .all(|s| s.other_sentinels() == Some(2))
            .then_some(())
    });
    assert!(
        met.is_some(),
        "the sentinels never met:\n{}",
        sentinels[0].log()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let writing = {
        let (s, stop, w) = (sentinels.clone(), stop.clone(), writes.clone());
        thread::spawn(move || writer(s, stop, w))
    };
    let acked_some = poll_until(STEP, || {
        (writes.lock().unwrap().acked.len() >= 200).then_some(())
    });
    assert!(acked_some.is_some(), "no write was acknowledged by WAIT 1");

    // redis-py's Sentinel client, writing through the failover.
    let mut py = redis_py_client(&sentinels, 60);
    if let Some((_, lines)) = &py {
        let first = lines
            .recv_timeout(STEP)
            .expect("the redis-py client writes");
        assert_eq!(
            first,
            format!("ok {}", a.port),
            "redis-py found the primary"
        );
    }

    // The primary dies.
    let killed = Instant::now();
    primary.kill9();
    let promoted = poll_until(STEP, || {
        let w = writes.lock().unwrap();
        w.first_on
            .iter()
            .find(|(port, at)| **port != a.port && **at > killed)
            .map(|(port, at)| (*port, *at))
    });
    let Some((new_port, first_write)) = promoted else {
        panic!(
            "no write succeeded on a new primary:\n{}",
            sentinels[0].log()
        );
    };
    let failover = first_write.duration_since(killed);
    let _ = writeln!(
        std::io::stderr(),
        "failover: from SIGKILL to the first write on the new primary: {failover:?}"
    );
    assert!(new_port == b.port || new_port == c.port, "{new_port}");
    // redis-py's client, unchanged, found the new primary once its connection broke.
    if let Some((child, lines)) = &mut py {
        let wanted = format!("ok {new_port}");
        let deadline = Instant::now() + STEP;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match lines.recv_timeout(Duration::from_secs(1)) {
                Ok(line) if line == wanted => break,
                Ok(line) => seen.push(line),
                Err(_) => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-py's Sentinel client never wrote to the new primary: {seen:?}"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    // Some more writes on the new primary, acknowledged by the replica that follows it.
    let before = writes.lock().unwrap().acked.len();
    let more = poll_until(STEP, || {
        (writes.lock().unwrap().acked.len() >= before + 100).then_some(())
    });
    assert!(more.is_some(), "no write acknowledged after the failover");

    // The old primary comes back: Sentinel makes it a replica of the new one.
    let old = a.start();
    let follows = poll_until(STEP, || {
        let role = info_field(a.port, "role")?;
        let port = info_field(a.port, "master_port")?;
        let link = info_field(a.port, "master_link_status")?;
        (role == "slave" && port == new_port.to_string() && link == "up").then_some(())
    });
    assert!(
        follows.is_some(),
        "the old primary did not follow the new one:\n{}",
        sentinels[0].log()
    );
    stop.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    let acked = writes.lock().unwrap().acked.clone();
    let lost = missing_acked(new_port, &acked);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    // The other replica follows the new primary, and every node converges on its data.
    let other = if new_port == b.port { &c } else { &b };
    for port in [other.port, a.port] {
        let converged = poll_until(STEP, || {
            (info_field(port, "master_port")? == new_port.to_string()
                && info_field(port, "master_link_status")? == "up"
                && missing_acked(port, &acked).is_empty())
            .then_some(())
        });
        assert!(
            converged.is_some(),
            "node {port} did not converge on the new primary"
        );
    }
    drop(old);
    drop(replicas);
}

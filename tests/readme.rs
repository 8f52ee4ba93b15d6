//! The README as a newcomer uses it: every session block pastes into `redis-cli` as it is and
//! answers what the README shows, the `nc` example works under default deny, and
//! `redis-cli --stat` shows sane numbers.
//!
//! A session block is a ```` ```text ```` block with `127.0.0.1:7379> ` prompts. The blocks run
//! in README order against one server started with the password a block's
//! `$ redis-cli ... --pass '<pw>'` line gives (a block without one logs in as the user and
//! with the password of the block before it; `--user` defaults to `admin`), each block through one real `redis-cli` reading it from stdin
//! (`--no-raw`: printed as an interactive session prints), so that a `# comment` or an
//! apostrophe on a command line fails here as it fails for a reader. The only tolerance: the
//! value after `"created_ms"` (the time the partition was made) is not compared.
//!
//! Without `redis-cli` the redis-cli tests are skipped with a message, unless
//! `GOKV_REQUIRE_REDIS` is set (CI installs redis-tools and sets it), where they fail.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The prompt of a session block (the README's port; the test server's port differs).
const PROMPT: &str = "127.0.0.1:7379> ";

/// One session block: the password it logs in with, its commands, and what redis-cli prints
/// for them (one line per line).
#[derive(Debug)]
struct Session {
    /// The README line the block starts on, for messages.
    line: usize,
    user: String,
    password: String,
    commands: Vec<String>,
    expected: Vec<String>,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The value of `--pass '<pw>'` (or `--pass <pw>`) on a `$ redis-cli` line.
fn pass_of(line: &str) -> Option<String> {
    let rest = line.split("--pass ").nth(1)?;
    let pw = if let Some(quoted) = rest.strip_prefix('\'') {
        quoted.split('\'').next()?
    } else {
        rest.split_whitespace().next()?
    };
    Some(pw.to_string())
}

/// The value of `--user <name>` on a `$ redis-cli` line.
fn user_of(line: &str) -> Option<String> {
    let rest = line.split("--user ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// The README's session blocks, in order.
fn sessions(text: &str) -> Vec<Session> {
    let mut out = Vec::new();
    let mut password: Option<String> = None;
    let mut user = String::from("admin");
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim() != "```text" {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim() != "```")
            .collect();
        if !body.iter().any(|l| l.starts_with(PROMPT)) {
            continue;
        }
        let mut s = Session {
            line: n + 1,
            user: String::new(),
            password: String::new(),
            commands: Vec::new(),
            expected: Vec::new(),
        };
        for l in body {
            if let Some(command) = l.strip_prefix(PROMPT) {
                s.commands.push(command.to_string());
            } else if l.starts_with("$ ") {
                assert!(
                    s.commands.is_empty(),
                    "README line {}: a $ line after a command",
                    n + 1
                );
                if let Some(pw) = pass_of(l) {
                    password = Some(pw);
                }
                user = user_of(l).unwrap_or_else(|| "admin".into());
            } else {
                assert!(
                    !s.commands.is_empty(),
                    "README line {}: output before any command",
                    n + 1
                );
                s.expected.push(l.to_string());
            }
        }
        s.user = user.clone();
        s.password = password
            .clone()
            .unwrap_or_else(|| panic!("README line {}: no `--pass` before this session", n + 1));
        out.push(s);
    }
    out
}

/// Whether `redis-cli` can run; if not, says so (and fails under `GOKV_REQUIRE_REDIS`).
fn have_redis_cli(test: &str) -> bool {
    let ok = Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("GOKV_REQUIRE_REDIS").is_none(),
            "{test}: redis-cli is not installed and GOKV_REQUIRE_REDIS is set"
        );
        println!("{test}: skipped, redis-cli is not installed (apt-get install redis-tools)");
    }
    ok
}

/// The lines redis-cli prints, with the one volatile value (after `"created_ms"`) masked.
fn masked(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for line in lines {
        let after_created = out
            .last()
            .is_some_and(|prev| prev.ends_with("\"created_ms\""));
        out.push(if after_created {
            let (head, _) = line.split_once("(integer) ").unwrap_or((line, ""));
            format!("{head}(integer) <ms>")
        } else {
            line.trim_end().to_string()
        });
    }
    out
}

#[test]
fn readme_finds_its_session_blocks() {
    let sessions = sessions(&readme());
    assert!(sessions.len() >= 2, "{sessions:?}");
    assert!(sessions.iter().all(|s| !s.commands.is_empty()));
    assert_eq!(
        pass_of("$ redis-cli -p 7379 --user admin --pass 'x y'"),
        Some("x y".into())
    );
    assert_eq!(pass_of("$ redis-cli --pass pw -p 1"), Some("pw".into()));
    assert_eq!(
        user_of("$ redis-cli -p 7379 --user app --pass pw"),
        Some("app".into())
    );
    let masked = masked(&[" 11) \"created_ms\"".into(), " 12) (integer) 17".into()]);
    assert_eq!(masked[1], " 12) (integer) <ms>");
}

#[test]
fn readme_sessions_paste_into_redis_cli_as_they_are() {
    if !have_redis_cli("readme_sessions_paste_into_redis_cli_as_they_are") {
        return;
    }
    let sessions = sessions(&readme());
    let password = sessions[0].password.clone();
    let server = Server::start(&["--shards", "2", "--admin-password", &password]);
    for s in &sessions {
        let mut child = Command::new("redis-cli")
            .args([
                "-p",
                &server.port().to_string(),
                "--user",
                &s.user,
                "--pass",
            ])
            .arg(&s.password)
            .args(["--no-auth-warning", "--no-raw"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = s.commands.join("\n") + "\n";
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            // redis-cli notes a command that took over half a second as `(2.07s)` (a login
            // hash on a loaded machine): its own timing, not a reply.
            .filter(|l| !is_redis_cli_timing(l))
            .map(str::to_string)
            .collect();
        let (got, want) = (masked(&got), masked(&s.expected));
        assert!(
            got == want,
            "README session at line {}: redis-cli printed\n{}\n-- the README shows --\n{}",
            s.line,
            got.join("\n"),
            want.join("\n")
        );
    }
}

/// The README's `printf '...' | nc` line: what printf sends.
fn nc_example(text: &str) -> (String, Vec<u8>) {
    let line = text
        .lines()
        .find(|l| l.starts_with("printf '") && l.contains("| nc "))
        .expect("the README has a printf ... | nc example");
    let quoted = line["printf '".len()..].split('\'').next().unwrap();
    let bytes = quoted
        .replace("\\r", "\r")
        .replace("\\n", "\n")
        .into_bytes();
    (line.to_string(), bytes)
}

#[test]
fn readme_nc_example_logs_in_and_works_under_default_deny() {
    let text = readme();
    let (line, request) = nc_example(&text);
    let password = sessions(&text)[0].password.clone();
    assert!(
        line.starts_with(&format!("printf 'AUTH admin {password}\\r\\n")),
        "the nc example must log in first: {line}"
    );
    let server = Server::start(&["--admin-password", &password]);
    // What `nc -q 1` does: send the lines, keep the connection open (no FIN: a peer that
    // hangs up while its login is checked is dropped unanswered, as Redis drops a client at
    // EOF) and print what comes back.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(&request).unwrap();
    let want = b"+OK\r\n+OK\r\n+OK\r\n$3\r\na b\r\n";
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    while got.len() < want.len() && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert_eq!(show(&got), show(want), "{line}");
    // What the README says it answers.
    assert!(text.contains("answers `+OK`, `+OK`, `+OK`, `$3` `a b`"));
}

#[test]
fn redis_cli_stat_shows_no_blocked_garbage() {
    if !have_redis_cli("redis_cli_stat_shows_no_blocked_garbage") {
        return;
    }
    // redis-cli --stat prints a line per interval until killed; stdbuf makes it print each
    // line as it goes (its stdout is a pipe here).
    if !Command::new("stdbuf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("redis_cli_stat_shows_no_blocked_garbage: skipped, no stdbuf");
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    c.expect(&cmd(&["SET", "p", "k", "v"]), OK);
    let (rows, text) = redis_cli_stat(server.port()).expect("stdbuf ran a moment ago");
    for row in rows {
        // keys mem clients blocked requests ...: redis-cli sums `db0`..`db19` lines for keys,
        // which only numbered partitions print (`tests/redis_face.rs` shows those), so keys
        // is 0 for `p`.
        assert_eq!(row[0], "0", "keys:\n{text}");
        assert!(row[2].parse::<u64>().unwrap() >= 1, "clients:\n{text}");
        assert_eq!(row[3], "0", "blocked (INFO blocked_clients):\n{text}");
    }
}

/// A line redis-cli adds after a slow command: `(<seconds>s)`.
fn is_redis_cli_timing(line: &str) -> bool {
    line.strip_prefix('(')
        .and_then(|l| l.strip_suffix("s)"))
        .is_some_and(|t| !t.is_empty() && t.parse::<f64>().is_ok())
}

//! Password hashing off the event loop: a small pool of hasher threads.
//!
//! argon2id is slow on purpose (tens of milliseconds, see [`PARAMS`]). Run on a shard's
//! thread, one `AUTH` would freeze every other client of that shard for that long, and a
//! reconnect storm of 200 clients for seconds. So a shard never hashes: it sends a [`Job`] to
//! this pool, gives the connection a waiting reply slot and a barrier (like a catalog change:
//! later pipelined requests wait for the answer), and carries on serving its other clients.
//! The answer comes back to the shard as a message (`AuthChecked`), or, for a new password, the
//! pool forwards the hashed change to the coordinator itself.
//!
//! # The login cache
//! A reconnect storm (`redis-benchmark -c 200 -k 0`, a web tier restarting) presents the same
//! user and password hundreds of times a second. So each shard, and each hasher thread, keeps
//! a [`LoginCache`] of the pairs *successfully* verified, as a keyed BLAKE2b MAC of (PHC hash
//! string, password) under a random key of its own. A shard computes the MAC of a login (a
//! microsecond) and, when it is remembered, answers at once without the pool; otherwise the
//! pool runs argon2 and, on success, the shard remembers the MAC. The pool's own cache covers
//! the cold burst: 200 identical logins arriving before the first is answered cost one argon2
//! per hasher thread, not 200. Only successes are cached, so a wrong password always costs
//! the full argon2 time, and the MAC covers the PHC string (salt included), so a changed
//! password or a re-created user never matches an old entry.
//!
//! The trade-off: while the process runs, its memory holds fast MACs of recently used
//! passwords besides their slow hashes. Someone who can read the process's memory (a core
//! dump, a debugger) gets the key too, and could then test password guesses at BLAKE2b speed
//! instead of argon2 speed for those users. Such an attacker can already read every value in
//! the store and sniff passwords as they arrive, so we accept it; nothing of the cache ever
//! reaches the disk. A membership test of the set is not constant-time, but what it compares
//! are MACs under a key the client never sees, which reveal nothing about the password.
//!
//! The threads are not pinned: hashing is rare and short, and the kernel puts them on
//! whichever core is idlest. They run in the `SCHED_IDLE` class, so that during a storm of
//! failing logins (each a full argon2) a shard sharing their core still gets the CPU first:
//! logins queue up, reads and writes do not.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use blake2::digest::{consts::U32, Mac};
use blake2::Blake2bMac;
use crossbeam_channel::{Receiver, Sender};

use super::AclChange;
use crate::command::CommandError;
use crate::shard::mailbox::{Approved, Change, Message, ReplyTo, ShardHandle};
use crate::shard::COORDINATOR;

/// argon2id with 19 MiB of memory, 2 passes, 1 lane: OWASP's first recommended setting for
/// argon2id. It costs 30-90 ms per check on the 2-vCPU VM the README's numbers come from
/// (less on an idle server core): slow enough to make guessing expensive, fast enough that a
/// person logging in does not notice. Verification reads the parameters from each stored hash, so raising
/// them later needs no migration: old hashes keep verifying with theirs.
pub const PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);

/// Hasher threads. Two keep a login storm moving while one hash runs, without taking more
/// than a sliver of CPU from the shards; the verified cache makes repeated logins cheap.
pub const THREADS: usize = 2;

/// Remembered successful verifications per thread. A few thousand distinct (user, password)
/// pairs cover any realistic client fleet; when full, the set is emptied (the next login of
/// each pair pays one argon2 again), which bounds its memory at about 200 KiB.
const MAX_CACHED: usize = 4096;

/// Longest password accepted: argon2 digests any length, but a bound keeps a hostile 512 MiB
/// "password" from being copied to the hasher and hashed.
pub const MAX_PASSWORD_LEN: usize = 4096;

fn argon2() -> Argon2<'static> {
    let (m, t, p) = PARAMS;
    // Invariant: these constants are within argon2's documented bounds (checked by a test).
    let params = Params::new(m, t, p, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with a fresh random salt; returns the PHC string. Slow: never call it on
/// a shard's thread.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Checks a password against a PHC string, comparing in constant time (the `argon2` crate
/// compares its output with `subtle`). Slow: never call it on a shard's thread.
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// What to do once a new password is hashed.
#[derive(Debug, Clone)]
pub enum NewPassword {
    CreateUser(String),
    SetPassword(String),
}

/// Work for the pool.
pub enum Job {
    /// Check a login. `hash` is `None` for an unknown user: the pool then verifies against a
    /// dummy hash anyway, so the reply time does not tell whether the user exists.
    Verify {
        reply_to: ReplyTo,
        user_id: u64,
        hash: Option<Arc<str>>,
        password: Vec<u8>,
    },
    /// Hash a new password, then send the change to the coordinator.
    Hash {
        reply_to: ReplyTo,
        password: Vec<u8>,
        then: NewPassword,
        /// Passed on to the coordinator with the change.
        by: Approved,
    },
}

/// The pool's sending side; cheap to share.
pub struct Hasher {
    jobs: Sender<Job>,
}

impl Hasher {
    /// Starts `threads` hasher threads that answer to `shards`.
    pub fn start(threads: usize, shards: Vec<ShardHandle>) -> Result<Hasher, String> {
        let (jobs, inbox) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let inbox = inbox.clone();
            let shards = shards.clone();
            thread::Builder::new()
                .name(format!("gokv-hasher-{i}"))
                .spawn(move || run(inbox, shards))
                .map_err(|e| format!("cannot start hasher thread: {e}"))?;
        }
        Ok(Hasher { jobs })
    }

    /// Queues a job (never blocks).
    pub fn submit(&self, job: Job) {
        // Fails only when every hasher thread has died, which `run` never lets happen.
        if self.jobs.send(job).is_err() {
            log::error!("password hasher pool is gone");
        }
    }
}

/// Successful verifications one thread remembers (see the module docs). Owned by one thread;
/// no locks.
pub struct LoginCache {
    key: [u8; 32],
    entries: HashSet<[u8; 32]>,
}

impl Default for LoginCache {
    fn default() -> Self {
        LoginCache::new()
    }
}

impl LoginCache {
    pub fn new() -> LoginCache {
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::getrandom(&mut key) {
            // Without a secret key the cache would be a plain fast hash: run without it.
            log::warn!("no randomness for the login cache key ({e}); cache disabled");
        }
        LoginCache {
            key,
            entries: HashSet::new(),
        }
    }

    fn enabled(&self) -> bool {
        self.key != [0u8; 32]
    }

    /// The MAC of a (hash, password) pair; `None` when the cache is disabled. Fast (BLAKE2b
    /// over a few hundred bytes): fine on a shard's thread.
    pub fn mac(&self, phc: &str, password: &[u8]) -> Option<[u8; 32]> {
        if !self.enabled() {
            return None;
        }
        let mut mac = <Blake2bMac<U32> as Mac>::new_from_slice(&self.key).ok()?;
        // Length-prefixed, so (hash, password) pairs cannot collide by shifting bytes.
        mac.update(&(phc.len() as u64).to_le_bytes());
        mac.update(phc.as_bytes());
        mac.update(password);
        Some(mac.finalize().into_bytes().into())
    }

    pub fn contains(&self, mac: &[u8; 32]) -> bool {
        self.entries.contains(mac)
    }

    /// Remembers a pair that argon2 verified.
    pub fn remember(&mut self, mac: [u8; 32]) {
        if self.entries.len() >= MAX_CACHED {
            self.entries.clear();
        }
        self.entries.insert(mac);
    }

    /// Verifies through the cache. Slow on a miss: only for hasher threads.
    fn verify(&mut self, phc: &str, password: &[u8]) -> bool {
        let mac = self.mac(phc, password);
        if mac.is_some_and(|m| self.contains(&m)) {
            return true;
        }
        let ok = verify_password(phc, password);
        if let (true, Some(mac)) = (ok, mac) {
            self.remember(mac);
        }
        ok
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class (`sched_setscheduler` with pid 0
/// is the calling thread): a shard that wakes up preempts a hashing thread at once instead of
/// waiting for its time slice, which is what keeps a shard's tail latency flat when a storm of
/// failing logins keeps the hashers busy on the same cores. The hashers still get the CPU
/// that shards leave idle (and a small share when none is), so logins slow down under full
/// load instead of stalling reads and writes: the order of priorities a store wants. Falls
/// back to nice 19 where the class is refused.
fn lower_priority() {
    // The policy's number in the Linux ABI (include/uapi/linux/sched.h), stable since 2.6.23;
    // the libc crate does not export it for every target.
    const SCHED_IDLE: libc::c_int = 5;
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call, which only
    // reads it; pid 0 names the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, SCHED_IDLE, &param) };
    if rc == 0 {
        return;
    }
    let idle_error = std::io::Error::last_os_error();
    // SAFETY: setpriority takes plain integers and touches no memory of ours; who = 0 is the
    // calling thread on Linux.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if rc != 0 {
        log::debug!(
            "hasher thread keeps its priority: SCHED_IDLE: {idle_error}; nice: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn run(inbox: Receiver<Job>, shards: Vec<ShardHandle>) {
    lower_priority();
    let mut cache = LoginCache::new();
    // A hash of a random password: what unknown users are checked against.
    let mut secret = [0u8; 32];
    let _ = getrandom::getrandom(&mut secret);
    let dummy = hash_password(&secret).unwrap_or_default();
    for job in inbox.iter() {
        match job {
            Job::Verify {
                reply_to,
                user_id,
                hash,
                password,
            } => {
                let ok = match &hash {
                    Some(phc) => cache.verify(phc, &password),
                    None => {
                        let _ = verify_password(&dummy, &password);
                        false
                    }
                };
                shards[reply_to.shard].send(Message::AuthChecked {
                    reply_to,
                    user_id,
                    hash,
                    ok,
                });
            }
            Job::Hash {
                reply_to,
                password,
                then,
                by,
            } => match hash_password(&password) {
                Ok(hash) => {
                    let change = match then {
                        NewPassword::CreateUser(name) => AclChange::CreateUser { name, hash },
                        NewPassword::SetPassword(name) => AclChange::SetPassword { name, hash },
                    };
                    shards[COORDINATOR].send(Message::Change {
                        reply_to,
                        change: Change::Acl(change),
                        by,
                    });
                }
                Err(e) => {
                    log::error!("{e}");
                    shards[reply_to.shard].send(Message::ChangeDone {
                        reply_to,
                        result: Err(CommandError::NotAvailable(e)),
                    });
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_valid() {
        let (m, t, p) = PARAMS;
        assert!(Params::new(m, t, p, None).is_ok());
    }

    #[test]
    fn hash_then_verify() {
        let phc = hash_password(b"s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!phc.contains("s3cret"));
        assert!(verify_password(&phc, b"s3cret"));
        assert!(!verify_password(&phc, b"s3cres"));
        assert!(!verify_password("garbage", b"s3cret"));
        // Salted: the same password hashes differently each time.
        assert_ne!(phc, hash_password(b"s3cret").unwrap());
    }

    #[test]
    fn cache_only_remembers_successes_of_the_same_hash() {
        let phc = hash_password(b"pw").unwrap();
        let mut cache = LoginCache::new();
        assert!(!cache.verify(&phc, b"wrong"));
        assert!(cache.entries.is_empty());
        assert!(cache.verify(&phc, b"pw"));
        assert_eq!(cache.entries.len(), 1);
        assert!(cache.verify(&phc, b"pw"));
        let other = hash_password(b"pw").unwrap();
        assert!(cache.verify(&other, b"pw"));
        assert_eq!(cache.entries.len(), 2);
        assert!(!cache.verify(&phc, b"pw2"));
    }
}

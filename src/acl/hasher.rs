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
//! # Floods of failing logins
//! Each failing login is a full argon2, so the work a peer can queue must be bounded, and a
//! login nobody waits for any more must cost nothing:
//! - At most [`MAX_PENDING_LOGINS`] logins wait or run at once, server-wide. Each holds a
//!   [`LoginTicket`] (in the connection's pending login); past the bound, [`Hasher::verify`]
//!   answers [`CommandError::TooManyLogins`] at once and the client may retry, instead of
//!   queueing behind thousands of others for minutes.
//! - Dropping the ticket (the shard answered the login, or closed the connection: a peer
//!   that hangs up while its login is checked is dropped at once) frees the slot and marks the
//!   job cancelled; the pool skips a cancelled job without hashing.
//! - New passwords (CREATE USER, ALTER USER) have their own queue, which the threads serve
//!   first: user management never waits behind logins, and takes no login slot.
//!
//! The threads are not pinned: hashing is rare and short, and the kernel puts them on
//! whichever core is idlest. They run in the `SCHED_IDLE` class, so that during a storm of
//! failing logins (each a full argon2) a shard sharing their core still gets the CPU first:
//! logins queue up, reads and writes do not.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use blake2::digest::{consts::U32, Mac};
use blake2::Blake2bMac;

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

/// Logins waiting for or in an argon2 check at once, server-wide. With [`THREADS`] threads at
/// 30-90 ms a check, the last of them is answered within about 256 / 2 x 50 ms = 6 s even
/// when every one is a wrong password; a flood past that is told to retry at once instead of
/// making real users wait minutes. Large enough for a cold reconnect storm of a few hundred
/// clients (identical logins cost one argon2 each per thread, then a MAC: see the login
/// cache), and logins a shard's cache knows never take a slot.
pub const MAX_PENDING_LOGINS: usize = 256;

/// Jobs the login queue holds, cancelled ones included: they stay queued until a thread skips
/// them, and the threads run at idle priority, so during a flood of peers that hang up they
/// may not get the CPU to. Bounds the queue's memory at about 4 MiB of passwords; when it is
/// full, the submitting shard drops the cancelled jobs itself (see [`Hasher::verify`]).
const LOGIN_QUEUE_CAPACITY: usize = 4 * MAX_PENDING_LOGINS;

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
    /// A new user, with its default partition.
    CreateUser(String, Option<String>),
    SetPassword(String),
}

/// Work for the pool.
enum Job {
    /// Check a login. `hash` is `None` for an unknown user: the pool then verifies against a
    /// dummy hash anyway, so the reply time does not tell whether the user exists.
    Verify {
        reply_to: ReplyTo,
        user_id: u64,
        hash: Option<Arc<str>>,
        password: Vec<u8>,
        /// Set when its [`LoginTicket`] is dropped: nobody waits for the answer any more.
        cancelled: Arc<AtomicBool>,
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

/// A login's slot in the pool, held by the shard while the login is pending. Dropping it
/// (answered, or its connection closed) frees the slot and cancels the job if it has not run
/// yet: the one place that bookkeeping happens, so it happens exactly once.
#[derive(Debug)]
pub struct LoginTicket {
    cancelled: Arc<AtomicBool>,
    pending: Arc<AtomicUsize>,
}

impl Drop for LoginTicket {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pool's queues: new passwords (served first, see the module docs) and logins. A plain
/// mutex: a shard holds it to push one job (a cold login or a password change, never a data
/// request), a hasher thread to take one, and nobody while hashing, so it is never held for
/// more than a few hundred nanoseconds. It also lets a full login queue be purged of
/// cancelled jobs in place, which a channel would not.
#[derive(Default)]
struct Queues {
    changes: VecDeque<Job>,
    logins: VecDeque<Job>,
}

/// The pool's sending side; cheap to share.
pub struct Hasher {
    queues: Arc<(Mutex<Queues>, Condvar)>,
    /// Logins holding a [`LoginTicket`].
    pending: Arc<AtomicUsize>,
}

impl Hasher {
    /// Starts `threads` hasher threads that answer to `shards`.
    pub fn start(threads: usize, shards: Vec<ShardHandle>) -> Result<Hasher, String> {
        let queues = Arc::new((Mutex::new(Queues::default()), Condvar::new()));
        for i in 0..threads.max(1) {
            let queues = queues.clone();
            let shards = shards.clone();
            thread::Builder::new()
                .name(format!("gokv-hasher-{i}"))
                .spawn(move || run(&queues, shards))
                .map_err(|e| format!("cannot start hasher thread: {e}"))?;
        }
        Ok(Hasher {
            queues,
            pending: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Takes a login slot, or answers [`CommandError::TooManyLogins`] when all
    /// [`MAX_PENDING_LOGINS`] are taken. The login's job follows with [`Hasher::verify`].
    pub fn reserve_login(&self) -> Result<LoginTicket, CommandError> {
        let ticket = LoginTicket {
            cancelled: Arc::new(AtomicBool::new(false)),
            pending: self.pending.clone(),
        };
        // Counted first, so that a refused ticket's drop undoes exactly this.
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_LOGINS {
            return Err(CommandError::TooManyLogins);
        }
        Ok(ticket)
    }

    /// Queues the password check of a login holding `ticket` (never blocks on hashing).
    pub fn verify(
        &self,
        ticket: &LoginTicket,
        reply_to: ReplyTo,
        user_id: u64,
        hash: Option<Arc<str>>,
        password: Vec<u8>,
    ) -> Result<(), CommandError> {
        let job = Job::Verify {
            reply_to,
            user_id,
            hash,
            password,
            cancelled: ticket.cancelled.clone(),
        };
        let (lock, wake) = &*self.queues;
        let mut queues = lock_queues(lock);
        if queues.logins.len() >= LOGIN_QUEUE_CAPACITY {
            // At most MAX_PENDING_LOGINS of its jobs are live (each holds a slot), so at
            // least three quarters go, and the next purge is hundreds of logins away.
            queues.logins.retain(|job| !is_cancelled(job));
        }
        // Cannot fail after the purge (the live jobs fit); checked all the same.
        if queues.logins.len() >= LOGIN_QUEUE_CAPACITY {
            return Err(CommandError::TooManyLogins);
        }
        queues.logins.push_back(job);
        wake.notify_one();
        Ok(())
    }

    /// Queues the hashing of a new password, which then goes to the coordinator as `then`
    /// (never blocks on hashing; ahead of every login).
    pub fn hash_then(&self, reply_to: ReplyTo, password: Vec<u8>, then: NewPassword, by: Approved) {
        let (lock, wake) = &*self.queues;
        lock_queues(lock).changes.push_back(Job::Hash {
            reply_to,
            password,
            then,
            by,
        });
        wake.notify_one();
    }
}

/// Locks the queues. Nothing panics while holding them (pushes and pops only), so a poisoned
/// lock still guards consistent queues: take it anyway rather than stop all logins.
fn lock_queues(lock: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_cancelled(job: &Job) -> bool {
    matches!(job, Job::Verify { cancelled, .. } if cancelled.load(Ordering::Relaxed))
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

/// The next job to run: a new password if one waits, else the oldest live login; cancelled
/// logins are dropped on the way. Waits while both queues are empty.
fn next_job((lock, wake): &(Mutex<Queues>, Condvar)) -> Job {
    let mut queues = lock_queues(lock);
    loop {
        if let Some(job) = queues.changes.pop_front() {
            return job;
        }
        while let Some(job) = queues.logins.pop_front() {
            // Its connection closed, or it was answered some other way: nobody to tell.
            if !is_cancelled(&job) {
                return job;
            }
        }
        queues = wake
            .wait(queues)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

fn run(queues: &(Mutex<Queues>, Condvar), shards: Vec<ShardHandle>) {
    lower_priority();
    let mut cache = LoginCache::new();
    // A hash of a random password: what unknown users are checked against.
    let mut secret = [0u8; 32];
    let _ = getrandom::getrandom(&mut secret);
    let dummy = hash_password(&secret).unwrap_or_default();
    loop {
        match next_job(queues) {
            Job::Verify {
                reply_to,
                user_id,
                hash,
                password,
                cancelled: _,
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
                        NewPassword::CreateUser(name, default_partition) => AclChange::CreateUser {
                            name,
                            hash,
                            default_partition,
                        },
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

    /// A pool without threads, so that its queues can be inspected.
    fn idle_pool() -> Hasher {
        Hasher {
            queues: Arc::new((Mutex::new(Queues::default()), Condvar::new())),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn reply_to(seq: u64) -> ReplyTo {
        ReplyTo {
            shard: 0,
            conn: crate::shard::mailbox::ConnRef {
                index: 0,
                generation: 0,
            },
            seq,
        }
    }

    #[test]
    fn a_full_login_queue_drops_its_cancelled_jobs_and_keeps_the_live_ones_in_order() {
        let pool = idle_pool();
        let live: Vec<LoginTicket> = (0..4).map(|_| pool.reserve_login().unwrap()).collect();
        for seq in 0..LOGIN_QUEUE_CAPACITY as u64 {
            // Every 300th job stays live; the others' peers hang up (their tickets drop).
            let job = (reply_to(seq), 1, None, b"pw".to_vec());
            if seq % 300 == 0 {
                let ticket = &live[(seq / 300) as usize];
                pool.verify(ticket, job.0, job.1, job.2, job.3).unwrap();
            } else {
                let ticket = pool.reserve_login().unwrap();
                pool.verify(&ticket, job.0, job.1, job.2, job.3).unwrap();
            }
        }
        assert_eq!(pool.pending.load(Ordering::Relaxed), 4);
        pool.verify(&live[0], reply_to(9999), 1, None, b"pw".to_vec())
            .unwrap();
        let spans = [crate::protocol::Span { start: 0, end: 5 }];
        let by = Approved::new(1, 1, &crate::protocol::Args::new(b"ALTER", &spans));
        pool.hash_then(
            reply_to(7),
            b"new".to_vec(),
            NewPassword::SetPassword("u".into()),
            by,
        );
        // The change first, then the live logins in their order.
        let mut order = Vec::new();
        while let Some(job) = {
            let mut q = lock_queues(&pool.queues.0);
            q.changes.pop_front().or_else(|| q.logins.pop_front())
        } {
            order.push(match job {
                Job::Hash { reply_to, .. } => (reply_to.seq, "hash"),
                Job::Verify { reply_to, .. } => (reply_to.seq, "verify"),
            });
        }
        assert_eq!(
            order,
            [
                (7, "hash"),
                (0, "verify"),
                (300, "verify"),
                (600, "verify"),
                (900, "verify"),
                (9999, "verify")
            ]
        );
    }

    #[test]
    fn login_slots_are_bounded_and_freed_by_dropping_tickets() {
        let hasher = idle_pool();
        let tickets: Vec<LoginTicket> = (0..MAX_PENDING_LOGINS)
            .map(|_| hasher.reserve_login().unwrap())
            .collect();
        assert_eq!(
            hasher.reserve_login().unwrap_err(),
            CommandError::TooManyLogins
        );
        // The refusal took no slot; dropping a ticket frees one and cancels its job.
        assert_eq!(hasher.pending.load(Ordering::Relaxed), MAX_PENDING_LOGINS);
        let cancelled = tickets[0].cancelled.clone();
        drop(tickets);
        assert!(cancelled.load(Ordering::Relaxed));
        assert_eq!(hasher.pending.load(Ordering::Relaxed), 0);
        assert!(hasher.reserve_login().is_ok());
    }
}

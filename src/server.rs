//! Boot and shutdown: reads the TLS certificate (with a `--tls-port`: a file that is missing,
//! not PEM, or a key that is not the certificate's refuses the start), loads the catalog,
//! starts the shard threads (pinned), which recover their durable partitions in parallel,
//! then opens the listeners (the plain port unless `--port 0` with a TLS port; the TLS port),
//! starts the acceptor and the signal watcher (SIGTERM/SIGINT: shutdown; SIGHUP: reload the
//! TLS certificate), and waits for them to finish. The listener opens only after every shard has
//! recovered, so no client ever sees a half-loaded partition; a recovery error stops startup.
//!
//! Before any of that, the data directory is checked against itself ([`open_data_dir`]): it
//! must be writable, and a file that should be there and is not (the catalog next to users or
//! partition data, `users.json` next to a catalog, a durable partition's directory), or
//! partition data the catalog does not explain, refuses the start with a message naming it and
//! `--accept-data-loss`. With that flag the loss is logged at WARN and the start goes on. Only
//! a directory with none of these files is a first start; it writes `users.json` and then a
//! catalog (empty, or with the partitions `0` .. `N-1` of `--databases N`), so every later
//! start finds both, and never makes the numbered partitions again (a dropped one stays
//! dropped).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crate::acceptor::{self, Acceptor};
use crate::acl::hasher::{self, Hasher};
use crate::acl::store as acl_store;
use crate::acl::Acl;
use crate::catalog::{Catalog, PartitionMeta};
use crate::config::Config;
use crate::metrics::ServerMetrics;
use crate::persist::catalog_file::{self, Revoked};
use crate::persist::record::FILE_HEADER;
use crate::persist::{partition_dir, partitions_dir, segment_path, sync_dir};
use crate::shard::coordinator::Resume;
use crate::shard::{Shard, Shared, Shutdown};
use crate::store::PersistMode;

/// Runs the server until SIGTERM, SIGINT or SHUTDOWN, then returns.
pub fn run(config: Config) -> Result<(), String> {
    let addr = resolve(&config.bind, config.port)?;
    // Before anything else: a certificate that cannot be used stops the start at once.
    let tls = match &config.tls {
        Some(settings) => Some(Arc::new(crate::tls::TlsContext::new(settings.clone())?)),
        None => None,
    };
    // `--port 0` with a TLS port serves TLS only, as in Redis; without one it is a free port.
    let plain = config.tls.is_none() || config.port != 0;
    let mut live = config.live.values();
    live.max_clients = raise_fd_limit(live.max_clients);
    config.live.store(&live);
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;

    check_writable(&config.data_dir)?;

    let shards = config.shards;
    let (catalog, acl, resume) = open_data_dir(&config)?;
    let mut parts = Vec::with_capacity(shards);
    for _ in 0..shards {
        parts.push(Shard::create().map_err(|e| format!("cannot create shard event loop: {e}"))?);
    }
    let handles: Vec<_> = parts.iter().map(|(_, _, handle)| handle.clone()).collect();

    let acceptor_poll =
        mio::Poll::new().map_err(|e| format!("cannot create acceptor poll: {e}"))?;
    let acceptor_waker = Arc::new(
        mio::Waker::new(acceptor_poll.registry(), acceptor::WAKER)
            .map_err(|e| format!("cannot create acceptor waker: {e}"))?,
    );
    let shutdown = Arc::new(Shutdown::new(handles.clone(), acceptor_waker));
    let metrics = Arc::new(ServerMetrics::new(shards));
    // The slow log and the latency monitor take the live settings (and each CONFIG SET's).
    crate::slowlog::configure(&config.live.values());
    crate::latency::configure(&config.live.values());

    let acl = Arc::new(acl);
    let hasher = Hasher::start(hasher::THREADS, handles.clone())?;
    let primary_login = match (&config.primary_user, &config.primary_password) {
        (Some(user), Some(password)) => Some((user.clone(), password.expose().to_string())),
        (None, None) => None,
        _ => {
            return Err(
                "--primary-user and --primary-password go together (a replica logs in to its \
                 primary with both)"
                    .into(),
            )
        }
    };
    let replication = Arc::new(
        crate::replication::State::open(
            &config.data_dir,
            shards,
            config.repl_buffer,
            primary_login,
        )?
        .with_backlog(repl_backlog(&config)),
    );
    let _ = replication.handles.set(handles.clone());
    if let Some(tls) = tls.as_ref().filter(|t| t.settings().replication) {
        let _ = replication.tls.set(tls.clone());
    }
    let config = Arc::new(config);
    let _ = replication.config.set(config.clone());
    let shared = Arc::new(Shared {
        config,
        metrics: metrics.clone(),
        shards: handles,
        shutdown: shutdown.clone(),
        clients: Arc::new(AtomicUsize::new(0)),
        next_client_id: AtomicU64::new(1),
        hasher,
        tls: tls.clone(),
        replication: replication.clone(),
        monitors: crate::shard::Monitors::new(shards),
    });

    let catalog = Arc::new(catalog);

    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    type Started = (usize, Option<usize>, Result<(), String>);
    let (pinned_tx, pinned_rx) = crossbeam_channel::bounded::<Started>(shards);
    let mut threads = Vec::with_capacity(shards + 1);
    let recovery_started = std::time::Instant::now();
    for (id, (poll, mailbox, _)) in parts.into_iter().enumerate() {
        let core = (!core_ids.is_empty()).then(|| core_ids[id % core_ids.len()]);
        let pinned_tx = pinned_tx.clone();
        let metrics = metrics.clone();
        let shared = shared.clone();
        let catalog = catalog.clone();
        let acl = acl.clone();
        let resume = resume.clone();
        let thread = thread::Builder::new()
            .name(format!("gokv-shard-{id}"))
            .spawn(move || {
                let pinned = core
                    .filter(|&c| core_affinity::set_for_current(c))
                    .map(|c| c.id);
                if pinned.is_none() {
                    log::warn!("shard {id}: could not pin to a core; running unpinned");
                }
                metrics.shards[id]
                    .core
                    .store(pinned.map_or(-1, |c| c as i64), Ordering::Relaxed);
                // Recovery runs here, in the shard's own (pinned) thread, all shards at once.
                match Shard::new(id, poll, mailbox, shared, catalog, acl, resume) {
                    Ok(shard) => {
                        let _ = pinned_tx.send((id, pinned, Ok(())));
                        shard.run();
                    }
                    Err(e) => {
                        let _ = pinned_tx.send((id, pinned, Err(e)));
                    }
                }
            })
            .map_err(|e| format!("cannot start shard thread: {e}"))?;
        threads.push(thread);
    }
    drop(pinned_tx);
    let mut started: Vec<Started> = pinned_rx.iter().take(shards).collect();
    started.sort_unstable_by_key(|s| s.0);
    let errors: Vec<String> = started
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().err().cloned())
        .collect();
    if !errors.is_empty() || started.len() < shards {
        // Stop the shards that did start; they have no clients yet.
        shutdown.request();
        for thread in threads {
            let _ = thread.join();
        }
        return Err(if errors.is_empty() {
            "a shard thread died during recovery".into()
        } else {
            errors.join("; ")
        });
    }
    log::info!(
        "recovery done in {} ms",
        recovery_started.elapsed().as_millis()
    );
    let pinning: Vec<(usize, Option<usize>)> = started
        .into_iter()
        .map(|(id, core, _)| (id, core))
        .collect();

    start_metrics(&shared)?;
    let listener = match plain {
        true => Some(acceptor::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?),
        false => None,
    };
    let tls_listener = match &shared.config.tls {
        Some(settings) => {
            let addr = resolve(&shared.config.bind, settings.port)?;
            Some(
                acceptor::bind(addr)
                    .map_err(|e| format!("cannot listen for TLS on {addr}: {e}"))?,
            )
        }
        None => None,
    };
    let local = |listener: &Option<std::net::TcpListener>| match listener {
        Some(l) => l.local_addr().map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    };
    let (plain_addr, tls_addr) = (local(&listener)?, local(&tls_listener)?);
    let acceptor = Acceptor::new(acceptor_poll, listener, tls_listener, shared.clone())
        .map_err(|e| format!("cannot register listener: {e}"))?;
    threads.push(
        thread::Builder::new()
            .name("gokv-acceptor".into())
            .spawn(move || acceptor.run())
            .map_err(|e| format!("cannot start acceptor thread: {e}"))?,
    );

    watch_signals(shutdown, tls)?;
    // (REPLICAOF's self check and the port a replica reports; a TLS-only server reports
    // its TLS port.)
    if let Some(addr) = plain_addr.or(tls_addr) {
        let _ = replication.listen.set(addr);
    }
    if let Some(primary) = shared.config.replicaof.clone() {
        replication.follow(Some(primary));
    }

    let pins: Vec<String> = pinning
        .iter()
        .map(|(id, core)| match core {
            Some(c) => format!("shard{id}->core{c}"),
            None => format!("shard{id}->unpinned"),
        })
        .collect();
    let listening = match (plain_addr, tls_addr) {
        (Some(plain), Some(tls)) => format!("{plain}, TLS on {tls}"),
        (None, Some(tls)) => format!("{tls} (TLS only)"),
        (Some(plain), None) => plain.to_string(),
        (None, None) => unreachable!("a plain listener opens whenever no TLS one does"),
    };
    log::info!(
        "GoKV {} listening on {listening} with {shards} shards (pinning: {})",
        env!("CARGO_PKG_VERSION"),
        pins.join(", ")
    );

    for thread in threads {
        if thread.join().is_err() {
            return Err("a server thread panicked".into());
        }
    }
    log::info!("shutdown complete");
    Ok(())
}

/// Fails, naming the directory, when the server cannot create files in it: every later step
/// (the catalog, users, logs, the generated admin password) needs to, and their own errors
/// would name a file rather than the cause.
fn check_writable(data_dir: &Path) -> Result<(), String> {
    let probe = data_dir.join(".gokv-write-probe");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe));
    written.map_err(|e| not_writable(data_dir, &e))
}

/// The startup error for a data directory the server cannot write to.
fn not_writable(data_dir: &Path, e: &std::io::Error) -> String {
    format!(
        "the data directory {} is not writable ({e}): the server keeps its catalog, users and \
         logs there; make it writable for this user (permissions, a read-only mount), or \
         choose another --data-dir",
        data_dir.display()
    )
}

/// Loads the catalog and the ACL, checks that the data directory lost nothing (see the module
/// docs), removes the files of dropped partitions, moves partitions of shards that no longer
/// exist (fewer `--shards` than last time), applies the catalog's revocations to the ACL and
/// makes sure `admin` exists. Returns the catalog and ACL to start with and what the
/// coordinator resumes from.
fn open_data_dir(config: &Config) -> Result<(Catalog, Acl, Resume), String> {
    let data_dir = &config.data_dir;
    let shards = config.shards;
    let catalog_path = catalog_file::path(data_dir);
    let users_path = data_dir.join(acl_store::USERS_FILE);
    let stored = catalog_file::load(data_dir).map_err(|e| e.to_string())?;
    let stored_acl = acl_store::load(data_dir)?;
    let dirs = partition_dirs(data_dir)?;

    // What is missing or unexplained, each with what it means.
    let mut losses = Vec::new();
    let next_id = stored.as_ref().map_or(1, |s| s.next_id);
    let durable: Vec<Arc<PartitionMeta>> = stored.as_ref().map_or_else(Vec::new, |s| {
        s.catalog
            .partitions
            .values()
            .filter(|m| m.persist != PersistMode::Memory)
            .cloned()
            .collect()
    });
    let mut remove = Vec::new();
    for (id, path) in &dirs {
        if durable.iter().any(|m| m.id == *id) {
            continue;
        }
        let explained = stored.is_some()
            && if *id < next_id {
                // A dropped partition whose files the crash kept (the catalog handed out the
                // id and no longer names it), or a durable partition changed to MEMORY whose
                // files the crash kept (ALTER PARTITION ... SET persist MEMORY writes the
                // catalog first; its shard then removes them). A MEMORY partition's files
                // are never read, so removing them loses nothing.
                stored.as_ref().is_some_and(|s| {
                    s.catalog
                        .partitions
                        .values()
                        .all(|m| m.id != *id || m.persist == PersistMode::Memory)
                })
            } else {
                // A CREATE whose catalog write never happened: only a fresh, empty log.
                is_fresh(path)
            };
        if !explained {
            losses.push(format!(
                "{} holds partition data the catalog does not explain",
                path.display()
            ));
        }
        remove.push((path.clone(), explained));
    }
    // The previous release wrote no catalog until a partition was created (and then one
    // that names it), and no catalog version in users.json: users.json alone, from it, with
    // no partition data, is an upgrade from a first start, not a lost catalog.
    let upgrade = stored.is_none()
        && dirs.is_empty()
        && stored_acl.as_ref().is_some_and(|s| !s.beside_a_catalog);
    match &stored {
        None if upgrade => log::info!(
            "{} from an earlier release and no catalog: no partition was ever created there; \
             writing an empty catalog",
            users_path.display()
        ),
        None if stored_acl.is_some() || !dirs.is_empty() => losses.push(format!(
            "{} is missing although the directory holds {}: every partition's name, schema \
             and persist mode is lost",
            catalog_path.display(),
            if stored_acl.is_some() {
                "users.json"
            } else {
                "partition data"
            }
        )),
        None => log::info!("first start in {}", data_dir.display()),
        Some(_) if stored_acl.is_none() => losses.push(format!(
            "{} is missing: every user and grant but '{}' is lost",
            users_path.display(),
            crate::acl::ADMIN_USER
        )),
        Some(_) => {}
    }
    for meta in &durable {
        let dir = partition_dir(data_dir, meta.id);
        if !dir.exists() {
            losses.push(format!(
                "{} of {} partition '{}' is missing: it would start empty",
                dir.display(),
                meta.persist,
                meta.name
            ));
        }
    }
    if !losses.is_empty() {
        if !config.accept_data_loss {
            return Err(format!(
                "refusing to start: {}; restore what is missing (or move away what is not \
                 explained), or start with --accept-data-loss to accept the loss",
                losses.join("; ")
            ));
        }
        for loss in &losses {
            log::warn!("accepting a loss (--accept-data-loss): {loss}");
        }
    }
    for (path, explained) in remove {
        match std::fs::remove_dir_all(&path) {
            Ok(()) if explained => {
                log::info!("removed files of a dropped partition: {}", path.display())
            }
            Ok(()) => log::warn!("removed unexplained partition data: {}", path.display()),
            Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
        }
    }
    let _ = sync_dir(&partitions_dir(data_dir));

    let first_start = stored.is_none();
    // A directory with nothing of GoKV's in it: not an upgrade, not an accepted loss.
    let empty_dir = first_start && stored_acl.is_none() && dirs.is_empty();
    let catalog_file::Stored {
        mut catalog,
        mut next_id,
        revoked,
    } = stored.unwrap_or_else(|| catalog_file::Stored {
        catalog: Catalog::default(),
        // Past any id an accepted loss discarded, so no id is ever used twice.
        next_id: dirs.iter().map(|(id, _)| id + 1).max().unwrap_or(1),
        revoked: Vec::new(),
    });
    if empty_dir && config.databases > 0 {
        (catalog, next_id) = numbered_databases(catalog, config.databases, shards, next_id)?;
        log::info!(
            "first start: created partitions 0 .. {} (STRING MEMORY, --databases {})",
            config.databases - 1,
            config.databases
        );
    }
    let moved = move_to_existing_shards(&mut catalog, shards);

    let (mut acl, acl_catalog_version) = match stored_acl {
        Some(s) => (s.acl, s.catalog_version),
        None => (Acl::default(), 0),
    };
    // Grants a DROP revoked in the catalog but could not remove from users.json.
    let mut revoked: Vec<Revoked> = revoked
        .into_iter()
        .filter(|r| r.voids(acl_catalog_version))
        .collect();
    let mut pruned = false;
    for r in &revoked {
        if let Some(without) = acl.without_partition(&r.name) {
            pruned = true;
            log::info!(
                "grants on '{}' are void: the partition was dropped (catalog version {})",
                r.name,
                r.version
            );
            acl = without;
        }
    }
    // A catalog older than users.json (lost and accepted): later revocations must still
    // void what this users.json holds.
    catalog.version = catalog.version.max(acl_catalog_version);
    // Users and grants, with `admin` ensured, before any client can connect.
    let acl = acl_store::bootstrap(
        data_dir,
        acl,
        catalog.version,
        config.admin_password.as_ref().map(|p| p.expose()),
    )?;
    let users = acl.users.len();
    log::info!(
        "{users} {} loaded from {}",
        if users == 1 { "user" } else { "users" },
        users_path.display()
    );
    if pruned {
        // A clean-up: until it succeeds the catalog keeps voiding those grants.
        match acl_store::save(data_dir, &acl, catalog.version) {
            Ok(()) => revoked.clear(),
            Err(e) => log::warn!("{e}: the void grants stay in it for now"),
        }
    }
    // After users.json, so that a directory with a catalog always has users.json too.
    if first_start || moved {
        catalog_file::store(data_dir, &catalog, next_id, &revoked)
            .map_err(|e| format!("cannot write {}: {e}", catalog_path.display()))?;
    }
    log::info!(
        "catalog version {}: {} partitions ({} durable)",
        catalog.version,
        catalog.partitions.len(),
        durable.len()
    );
    let resume = Resume {
        next_partition_id: next_id,
        revoked,
    };
    Ok((catalog, acl, resume))
}

/// `catalog` with partitions `0` .. `n-1` added (STRING MEMORY, spread over the shards as
/// CREATE PARTITION spreads them), and the next partition id after them: what `--databases`
/// makes on a first start. Each goes through CREATE PARTITION's own parsing and planning, so
/// it is exactly what `CREATE PARTITION <i> STRING MEMORY` would have made.
fn numbered_databases(
    mut catalog: Catalog,
    n: usize,
    shards: usize,
    mut next_id: u64,
) -> Result<(Catalog, u64), String> {
    use crate::command::partition::{parse_create, plan_create};
    use crate::protocol::Args;
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for i in 0..n {
        let name = i.to_string();
        let words = ["CREATE", "PARTITION", name.as_str(), "STRING", "MEMORY"];
        let (buf, spans) = crate::protocol::lay_out(&words);
        let fail = |e: crate::command::CommandError| format!("--databases: partition {name}: {e}");
        let request = parse_create(&Args::new(&buf, &spans)).map_err(fail)?;
        catalog = plan_create(&catalog, &request, shards, next_id, created_ms).map_err(fail)?;
        next_id += 1;
    }
    Ok((catalog, next_id))
}

/// Every numbered directory under `partitions/` (created if missing), with its id. Anything
/// else there is not the server's and is left alone.
fn partition_dirs(data_dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let dir = partitions_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        match entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(id) => dirs.push((id, entry.path())),
            None => log::warn!("ignoring {}: not a partition's", entry.path().display()),
        }
    }
    dirs.sort_unstable();
    Ok(dirs)
}

/// A partition directory as `PartitionLog::create_files` leaves it: one segment holding only
/// its header (so no record, nothing anybody wrote).
fn is_fresh(dir: &Path) -> bool {
    let first = segment_path(dir, 1);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut only_first = true;
    for entry in entries.flatten() {
        only_first &= entry.path() == first;
    }
    only_first
        && std::fs::metadata(&first)
            .map(|m| m.len() <= FILE_HEADER as u64)
            .unwrap_or(true)
}

/// Moves the partitions of shards that no longer exist (fewer `--shards` than last time) to
/// existing ones; true when it moved any.
fn move_to_existing_shards(catalog: &mut Catalog, shards: usize) -> bool {
    let mut moved = false;
    let names: Vec<String> = catalog.partitions.keys().cloned().collect();
    for name in names {
        let Some(meta) = catalog.partitions.get(&name) else {
            continue;
        };
        if meta.shard < shards {
            continue;
        }
        let shard = {
            let rest = catalog.without_partition(&name);
            rest.placement(shards)
        };
        log::info!(
            "partition '{name}' was on shard {}, which does not exist now: moving it to shard {shard}",
            meta.shard
        );
        let meta = Arc::new(PartitionMeta {
            name: meta.name.clone(),
            id: meta.id,
            shard,
            schema: meta.schema,
            persist: meta.persist,
            created_ms: meta.created_ms,
            options: meta.options,
            stats: meta.stats.clone(),
        });
        catalog.partitions.insert(name, meta);
        moved = true;
    }
    moved
}

/// File descriptors the server needs besides one per client: listener, pollers, wakers,
/// logs, data files. Generous, since running out makes `accept` fail for everyone.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open files to the hard limit (as far as the process may without
/// privileges), so that `max-clients` connections fit with the distribution's default
/// `ulimit -n` of 1024; logs the result. Returns the max-clients to enforce: lowered (as Redis
/// does) when the hard limit cannot hold the configured number, so that a client past it is
/// told `max number of clients reached` rather than the acceptor failing with EMFILE.
pub(crate) fn raise_fd_limit(max_clients: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which is a valid, owned `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        log::warn!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return max_clients;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass; raising the soft limit up to the
        // hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            log::warn!(
                "cannot raise the open-file limit from {before} to {}: {}",
                limit.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    let now = limit.rlim_cur;
    let needed = (max_clients as u64).saturating_add(RESERVED_FDS);
    if now == libc::RLIM_INFINITY || now >= needed {
        log::info!("open-file limit: {now} (was {before}); enough for max-clients {max_clients}");
        max_clients
    } else {
        let fit = now.saturating_sub(RESERVED_FDS).max(1) as usize;
        log::warn!(
            "open-file limit is {now} (the hard limit); max-clients {max_clients} needs about \
             {needed}, so max-clients is lowered to {fit} (raise `ulimit -Hn` to lift this)"
        );
        fit
    }
}

fn resolve(bind: &str, port: u16) -> Result<SocketAddr, String> {
    (bind, port)
        .to_socket_addrs()
        .map_err(|e| format!("invalid bind address {bind}: {e}"))?
        .next()
        .ok_or_else(|| format!("bind address {bind} resolves to nothing"))
}

/// SIGTERM and SIGINT start a graceful shutdown; a second one exits at once. SIGHUP reloads
/// the TLS certificate, key and CA from their files (with a TLS port; otherwise it is logged
/// and ignored): a reload that fails keeps the old certificate and logs why.
fn watch_signals(
    shutdown: Arc<Shutdown>,
    tls: Option<Arc<crate::tls::TlsContext>>,
) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    thread::Builder::new()
        .name("gokv-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    match &tls {
                        Some(tls) => match tls.reload_current() {
                            // The reload logs the files it read.
                            Ok(()) => {}
                            Err(e) => log::error!(
                                "SIGHUP: TLS reload failed, keeping the current certificate: {e}"
                            ),
                        },
                        None => log::info!("SIGHUP received: no TLS port, nothing to reload"),
                    }
                    continue;
                }
                if shutdown.is_requested() {
                    log::warn!("signal {signal} during shutdown: exiting now");
                    std::process::exit(1);
                }
                log::info!("signal {signal} received");
                shutdown.request();
            }
        })
        .map_err(|e| format!("cannot start signal thread: {e}"))?;
    Ok(())
}

/// Opens the Prometheus endpoint (`--metrics-port`, 0: off) and starts its thread. A port
/// given explicitly that cannot be opened stops the start, as for the main port; the default
/// one taken (another server on this machine, say) only costs the metrics, with a warning.
fn start_metrics(shared: &Arc<Shared>) -> Result<(), String> {
    let config = &shared.config;
    if config.metrics_port == 0 {
        return Ok(());
    }
    let addr = resolve(&config.metrics_bind, config.metrics_port)?;
    let listener = match crate::exposition::bind(addr) {
        Ok(listener) => listener,
        Err(e) if !config.metrics_port_given => {
            log::warn!("cannot open the metrics endpoint on {addr}: {e}; running without metrics");
            return Ok(());
        }
        Err(e) => return Err(format!("cannot listen for metrics on {addr}: {e}")),
    };
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    crate::exposition::start(
        listener,
        crate::exposition::Sources {
            metrics: shared.metrics.clone(),
            config: shared.config.clone(),
            inboxes: shared.shards.clone(),
            replication: Some(shared.replication.clone()),
        },
    )
    .map_err(|e| format!("cannot start the metrics endpoint: {e}"))?;
    log::info!("metrics at http://{local}/metrics");
    Ok(())
}

/// `--repl-backlog`, at most half of `--repl-buffer`: a resumed replica may be sent the
/// whole backlog at once, which must fit its feed with room for the live stream.
fn repl_backlog(config: &Config) -> usize {
    let most = config.repl_buffer / 2;
    if config.repl_backlog > most {
        log::info!(
            "--repl-backlog ({} bytes) is more than half of --repl-buffer ({} bytes); the \
             backlog keeps {most} bytes",
            config.repl_backlog,
            config.repl_buffer,
        );
    }
    config.repl_backlog.min(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message names the directory and the cause (the black-box test in tests/catalog.rs
    /// needs a way to make a directory read-only for root, which not every machine has).
    #[test]
    fn a_read_only_directory_is_named() {
        let e = std::io::Error::from_raw_os_error(libc::EROFS);
        let text = not_writable(Path::new("/srv/gokv"), &e);
        assert!(
            text.starts_with("the data directory /srv/gokv is not writable (Read-only file"),
            "{text}"
        );
        assert!(text.contains("--data-dir"), "{text}");
    }
}

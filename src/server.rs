//! Boot and shutdown: loads the catalog, starts the shard threads (pinned), which recover
//! their durable partitions in parallel, then opens the listener, starts the acceptor and the
//! signal watcher, and waits for them to finish. The listener opens only after every shard has
//! recovered, so no client ever sees a half-loaded partition; a recovery error stops startup.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crate::acceptor::{self, Acceptor};
use crate::acl::hasher::{self, Hasher};
use crate::acl::store as acl_store;
use crate::catalog::{Catalog, PartitionMeta};
use crate::config::Config;
use crate::metrics::ServerMetrics;
use crate::persist::{catalog_file, partitions_dir, recovery};
use crate::shard::{Shard, Shared, Shutdown};
use crate::store::PersistMode;

/// Runs the server until SIGTERM, SIGINT or SHUTDOWN, then returns.
pub fn run(mut config: Config) -> Result<(), String> {
    let addr = resolve(&config.bind, config.port)?;
    config.max_clients = raise_fd_limit(config.max_clients);
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;

    let shards = config.shards;
    let (catalog, next_partition_id) = load_catalog(&config.data_dir, shards)?;
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

    // Users and grants, with `admin` ensured, before any client can connect.
    let acl = acl_store::bootstrap(
        &config.data_dir,
        config.admin_password.as_ref().map(|p| p.expose()),
    )?;
    log::info!(
        "{} users loaded from {}",
        acl.users.len(),
        config.data_dir.join(acl_store::USERS_FILE).display()
    );
    let acl = Arc::new(acl);
    let hasher = Hasher::start(hasher::THREADS, handles.clone())?;
    let shared = Arc::new(Shared {
        config: Arc::new(config),
        metrics: metrics.clone(),
        shards: handles,
        shutdown: shutdown.clone(),
        clients: Arc::new(AtomicUsize::new(0)),
        next_client_id: AtomicU64::new(1),
        hasher,
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
                match Shard::new(id, poll, mailbox, shared, catalog, acl, next_partition_id) {
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

    let listener = acceptor::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = Acceptor::new(acceptor_poll, listener, shared.clone())
        .map_err(|e| format!("cannot register listener: {e}"))?;
    threads.push(
        thread::Builder::new()
            .name("gokv-acceptor".into())
            .spawn(move || acceptor.run())
            .map_err(|e| format!("cannot start acceptor thread: {e}"))?,
    );

    watch_signals(shutdown)?;

    let pins: Vec<String> = pinning
        .iter()
        .map(|(id, core)| match core {
            Some(c) => format!("shard{id}->core{c}"),
            None => format!("shard{id}->unpinned"),
        })
        .collect();
    log::info!(
        "GoKV {} listening on {local} with {shards} shards (pinning: {})",
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

/// Loads the catalog file (an empty catalog on a first start), moves partitions of shards
/// that no longer exist (fewer `--shards` than last time), and removes the files of
/// partitions the catalog no longer names.
fn load_catalog(data_dir: &std::path::Path, shards: usize) -> Result<(Catalog, u64), String> {
    std::fs::create_dir_all(partitions_dir(data_dir))
        .map_err(|e| format!("cannot create {}: {e}", partitions_dir(data_dir).display()))?;
    let Some(stored) = catalog_file::load(data_dir).map_err(|e| e.to_string())? else {
        recovery::remove_orphans(data_dir, &[]);
        return Ok((Catalog::default(), 1));
    };
    let mut catalog = stored.catalog;
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
            stats: meta.stats.clone(),
        });
        catalog.partitions.insert(name, meta);
        moved = true;
    }
    if moved {
        catalog_file::store(data_dir, &catalog, stored.next_id)
            .map_err(|e| format!("cannot rewrite the catalog: {e}"))?;
    }
    let durable: Vec<u64> = catalog
        .partitions
        .values()
        .filter(|m| m.persist != PersistMode::Memory)
        .map(|m| m.id)
        .collect();
    recovery::remove_orphans(data_dir, &durable);
    log::info!(
        "catalog version {}: {} partitions ({} durable)",
        catalog.version,
        catalog.partitions.len(),
        durable.len()
    );
    Ok((catalog, stored.next_id))
}

/// File descriptors the server needs besides one per client: listener, pollers, wakers,
/// logs, data files. Generous, since running out makes `accept` fail for everyone.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open files to the hard limit (as far as the process may without
/// privileges), so that `max-clients` connections fit with the distribution's default
/// `ulimit -n` of 1024; logs the result. Returns the max-clients to enforce: lowered (as Redis
/// does) when the hard limit cannot hold the configured number, so that a client past it is
/// told `max number of clients reached` rather than the acceptor failing with EMFILE.
fn raise_fd_limit(max_clients: usize) -> usize {
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

/// SIGTERM and SIGINT start a graceful shutdown; a second one exits at once.
fn watch_signals(shutdown: Arc<Shutdown>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    thread::Builder::new()
        .name("gokv-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
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

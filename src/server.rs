//! Boot and shutdown: opens the listener, starts the shard threads (pinned), the acceptor and
//! the signal watcher, and waits for them to finish.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crate::acceptor::{self, Acceptor};
use crate::acl::hasher::{self, Hasher};
use crate::acl::store as acl_store;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::metrics::ServerMetrics;
use crate::shard::{Shard, Shared, Shutdown};

/// Runs the server until SIGTERM, SIGINT or SHUTDOWN, then returns.
pub fn run(config: Config) -> Result<(), String> {
    let addr = resolve(&config.bind, config.port)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;

    let shards = config.shards;
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

    // Recovery will run here, per shard, before the listener opens.
    let catalog = Arc::new(Catalog::default());

    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let (pinned_tx, pinned_rx) = crossbeam_channel::bounded::<(usize, Option<usize>)>(shards);
    let mut threads = Vec::with_capacity(shards + 1);
    for (id, (poll, mailbox, _)) in parts.into_iter().enumerate() {
        let shard = Shard::new(
            id,
            poll,
            mailbox,
            shared.clone(),
            catalog.clone(),
            acl.clone(),
        );
        let core = (!core_ids.is_empty()).then(|| core_ids[id % core_ids.len()]);
        let pinned_tx = pinned_tx.clone();
        let metrics = metrics.clone();
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
                let _ = pinned_tx.send((id, pinned));
                shard.run();
            })
            .map_err(|e| format!("cannot start shard thread: {e}"))?;
        threads.push(thread);
    }
    drop(pinned_tx);
    let mut pinning: Vec<(usize, Option<usize>)> = pinned_rx.iter().take(shards).collect();
    pinning.sort_unstable();

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

//! The coordinator: runs inside shard 0 and owns the truth of the catalog and the ACL.
//!
//! A change (CREATE/DROP PARTITION, a user or grant change) arrives as a message from the
//! connection's shard (or from the hasher pool, once a new password is hashed). The
//! coordinator validates it against the current state, builds the next version, persists the
//! ACL when it changed (`users.json`, atomically, before anyone can see the new version),
//! broadcasts catalog and ACL to every shard (itself included) and answers the client only
//! when every shard has acknowledged that epoch, so a client never sees its own change missing
//! on any shard, and a revoked grant is gone everywhere before REVOKE answers `+OK`.
//! Changes are applied one at a time, in arrival order.
//!
//! A change was authorized by the connection's shard, under its ACL version of that moment.
//! It can reach the front of the queue after a REVOKE or DROP USER that took that right away
//! has answered `+OK` (the sending shard acknowledges a version before its outboxes leave, and
//! changes queue here). So a change approved under an older ACL version than the one held
//! here is authorized again against it, with the same check as at dispatch, before it runs.
//!
//! Persisting blocks shard 0 for a write and two fsyncs; user changes are rare enough that
//! this is cheaper than a dedicated I/O thread.
//!
//! Partitions: before broadcasting, the coordinator creates a new durable partition's first
//! log segment and then replaces the catalog file (`persist::catalog_file`), both fsync'd. So
//! a CREATE or DROP the client hears `+OK` for survives a crash, and the catalog on disk never
//! names a durable partition without its files. If either step fails the change is refused
//! with `-IOERR` and nothing changes; except when only the directory fsync after the rename
//! fails (of the catalog or of `users.json`): the new file is then what a restart reads, so
//! the change is made and broadcast, and the client hears `-IOERR` saying it is made but a
//! power loss may undo it.
//!
//! Every change is one durable step, so what the client hears is what a restart finds: a user
//! or grant change is one `users.json` write, a CREATE one catalog write (after the
//! partition's files, which are removed again if the catalog write fails). A DROP revokes the
//! grants on the partition's name too, which would be a second file; instead the catalog it
//! writes carries a `revoked <name> <version>` line that voids those grants in any
//! `users.json` written before it, and `users.json` is then rewritten as a clean-up whose
//! failure is only logged. Until a later `users.json` write succeeds, every catalog the
//! coordinator writes keeps those lines ([`Coordinator::revoked`]), so a CREATE of the same
//! name never inherits the stale grants, not even after a restart.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::acl::{store, Acl, AclChange, ADMIN_USER};
use crate::catalog::Catalog;
use crate::command::partition::{plan_alter, plan_create, plan_drop};
use crate::command::CommandError;
use crate::persist::catalog_file::{self, Revoked};
use crate::persist::PartitionLog;
use crate::store::PersistMode;

use crate::command::access::authorize;
use crate::command::lookup;

use super::mailbox::{Approved, Change, Message, ReplyTo, ShardHandle};
use crate::replication::Feed;
use crossbeam_channel::Sender;

/// Who waits for a change: a client's connection, or the replica's link (a catalog or
/// users from the primary), which hears the catalog every shard now runs.
enum Waiter {
    Client(ReplyTo),
    Link(Sender<Result<Arc<Catalog>, String>>),
}

/// The change whose broadcast is being acknowledged.
struct InFlight {
    waiter: Waiter,
    epoch: u64,
    acks_missing: usize,
    /// What the client hears once every shard has acknowledged.
    reply: Result<(), CommandError>,
}

/// A change that is made (in the files a restart reads), to broadcast.
struct Planned {
    catalog: Option<Catalog>,
    acl: Option<Acl>,
    /// `Err` when the change is made but the directory fsync after its rename failed, so a
    /// power loss may undo it: the client is told both.
    reply: Result<(), CommandError>,
}

/// What the coordinator resumes from at startup, besides the catalog and the ACL: what the
/// catalog file says beyond the catalog itself.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The next partition id to hand out (from the catalog file; raised past every id in the
    /// catalog).
    pub next_partition_id: u64,
    /// Drops whose revocation `users.json` may still lack.
    pub revoked: Vec<Revoked>,
}

pub struct Coordinator {
    catalog: Arc<Catalog>,
    acl: Arc<Acl>,
    /// Where `users.json`, the catalog file and the partitions' files live.
    data_dir: PathBuf,
    /// Counts broadcasts; what shards acknowledge.
    epoch: u64,
    queue: VecDeque<Queued>,
    in_flight: Option<InFlight>,
    /// Never reused, even after a restart (it is in the catalog file), so a partition's files
    /// can never be mistaken for a dropped predecessor's.
    next_partition_id: u64,
    /// Drops whose revocation of grants is in the catalog file but maybe not in `users.json`
    /// (its rewrite failed): written into every catalog file until `users.json` is written
    /// again, which makes them moot.
    revoked: Vec<Revoked>,
    /// Replicas attached (primary side): every catalog and ACL version goes into each feed
    /// before it is broadcast, so a replica never gets a record of a partition before the
    /// catalog that names it.
    feeds: Vec<Arc<Feed>>,
}

/// A change waiting its turn.
enum Queued {
    Client(ReplyTo, Change, Approved),
    /// From the replica's link: the primary's catalog and/or users, to adopt.
    Install {
        catalog: Option<Catalog>,
        acl: Option<Acl>,
        done: Sender<Result<Arc<Catalog>, String>>,
    },
}

impl Coordinator {
    pub fn new(catalog: Arc<Catalog>, acl: Arc<Acl>, resume: Resume, data_dir: PathBuf) -> Self {
        let next_partition_id = catalog
            .partitions
            .values()
            .map(|m| m.id + 1)
            .max()
            .unwrap_or(1)
            .max(resume.next_partition_id);
        Coordinator {
            catalog,
            acl,
            data_dir,
            epoch: 0,
            queue: VecDeque::new(),
            in_flight: None,
            next_partition_id,
            revoked: resume.revoked,
            feeds: Vec::new(),
        }
    }

    /// A replica attached: the catalog and users go into its feed first, then every shard
    /// starts its full sync (the shards hear it after every version broadcast so far).
    pub fn attach_feed(&mut self, feed: Arc<Feed>, shards: &[ShardHandle]) {
        // A revocation may have come between its REPLSYNC and now.
        if !feed.still_allowed(&self.acl) {
            drop_unauthorized(&feed);
            return;
        }
        let mut frames = Vec::new();
        self.catalog_frame(&mut frames);
        self.users_frame(&mut frames);
        if !feed.push(Arc::new(frames)) {
            return;
        }
        self.feeds.push(feed.clone());
        for shard in shards {
            shard.send(Message::FeedStart(feed.clone()));
        }
    }

    fn catalog_frame(&self, out: &mut Vec<u8>) {
        let text = catalog_file::encode(&self.catalog, self.next_partition_id, &[]);
        crate::replication::wire::encode(out, &[b"CATALOG", text.as_bytes()]);
    }

    fn users_frame(&self, out: &mut Vec<u8>) {
        let text = store::encode(&self.acl);
        crate::replication::wire::encode(out, &[b"USERS", text.as_bytes()]);
    }

    /// Sends the new catalog and/or users to every replica (before the broadcast).
    fn feed_replicas(&mut self, catalog: bool, acl: bool) {
        if acl {
            // A replica whose user was dropped or lost ADMIN on `*` gets nothing more, not
            // even these users: its link ends as a session's reads end at a REVOKE.
            for feed in self.feeds.iter().filter(|f| !f.still_allowed(&self.acl)) {
                drop_unauthorized(feed);
            }
        }
        self.feeds.retain(|f| !f.is_dropped());
        if self.feeds.is_empty() || !(catalog || acl) {
            return;
        }
        let mut frames = Vec::new();
        if catalog {
            self.catalog_frame(&mut frames);
        }
        if acl {
            self.users_frame(&mut frames);
        }
        let frames = Arc::new(frames);
        crate::replication::feed::push_to_all(self.feeds.iter(), &frames, |_| {});
    }

    /// From the replica's link: adopt the primary's catalog and/or users.
    pub fn install(
        &mut self,
        catalog: Option<Catalog>,
        acl: Option<Acl>,
        done: Sender<Result<Arc<Catalog>, String>>,
        shards: &[ShardHandle],
    ) {
        self.queue.push_back(Queued::Install { catalog, acl, done });
        self.start_next(shards);
    }

    /// Queues a change and starts it if nothing else is in flight.
    pub fn submit(
        &mut self,
        reply_to: ReplyTo,
        change: Change,
        by: Approved,
        shards: &[ShardHandle],
    ) {
        self.queue.push_back(Queued::Client(reply_to, change, by));
        self.start_next(shards);
    }

    /// A shard now uses the state of `epoch`; `failed`: the persist change it was to make
    /// failed (the catalog stands, the partition's writes answer `-IOERR`), and the client
    /// hears that.
    pub fn ack(&mut self, epoch: u64, failed: Option<String>, shards: &[ShardHandle]) {
        let Some(flight) = &mut self.in_flight else {
            return;
        };
        if flight.epoch != epoch {
            return;
        }
        if let Some(why) = failed {
            flight.reply = Err(CommandError::Io(format!(
                "the persist change is in the catalog, but {why}; the partition's writes \
                 answer -IOERR until a restart recovers it"
            )));
        }
        flight.acks_missing -= 1;
        if flight.acks_missing == 0 {
            if let Some(flight) = self.in_flight.take() {
                match flight.waiter {
                    Waiter::Client(reply_to) => shards[reply_to.shard].send(Message::ChangeDone {
                        reply_to,
                        result: flight.reply,
                    }),
                    Waiter::Link(done) => {
                        let _ = done.send(
                            flight
                                .reply
                                .map(|()| self.catalog.clone())
                                .map_err(|e| e.to_string()),
                        );
                    }
                }
            }
            self.start_next(shards);
        }
    }

    fn start_next(&mut self, shards: &[ShardHandle]) {
        while self.in_flight.is_none() {
            let Some(queued) = self.queue.pop_front() else {
                return;
            };
            let (waiter, planned, what) = match queued {
                Queued::Client(reply_to, change, by) => {
                    let planned = self
                        .authorize_again(&by)
                        .and_then(|()| self.plan(&change, shards.len()));
                    (Waiter::Client(reply_to), planned, format!("{change:?}"))
                }
                Queued::Install { catalog, acl, done } => {
                    let what = format!(
                        "replicated {}{}",
                        if catalog.is_some() { "catalog " } else { "" },
                        if acl.is_some() { "users" } else { "" }
                    );
                    let planned = self.plan_install(catalog, acl, shards.len());
                    (Waiter::Link(done), planned, what)
                }
            };
            match planned {
                Err(e) => match waiter {
                    Waiter::Client(reply_to) => shards[reply_to.shard].send(Message::ChangeDone {
                        reply_to,
                        result: Err(e),
                    }),
                    Waiter::Link(done) => {
                        let _ = done.send(Err(e.to_string()));
                    }
                },
                Ok(Planned {
                    catalog,
                    acl,
                    reply,
                }) => {
                    self.epoch += 1;
                    log::info!("epoch {}: {what}", self.epoch);
                    let (new_catalog, new_acl) = (catalog.is_some(), acl.is_some());
                    if let Some(catalog) = catalog {
                        self.catalog = Arc::new(catalog);
                    }
                    if let Some(acl) = acl {
                        self.acl = Arc::new(acl);
                    }
                    self.feed_replicas(new_catalog, new_acl);
                    self.in_flight = Some(InFlight {
                        waiter,
                        epoch: self.epoch,
                        acks_missing: shards.len(),
                        reply,
                    });
                    for shard in shards {
                        shard.send(Message::Update {
                            epoch: self.epoch,
                            catalog: self.catalog.clone(),
                            acl: self.acl.clone(),
                        });
                    }
                }
            }
        }
    }

    /// The replica's next catalog and/or users: the primary's, adopted whole (see
    /// `crate::replication`). A partition keeps its shard when this replica has it already
    /// (same id), a new one is placed as a CREATE would be; a new durable one gets its files
    /// first; then the catalog file and `users.json`, as for any change.
    fn plan_install(
        &mut self,
        catalog: Option<Catalog>,
        acl: Option<Acl>,
        shards: usize,
    ) -> Result<Planned, CommandError> {
        let mut planned = Planned {
            catalog: None,
            acl: None,
            reply: Ok(()),
        };
        if let Some(primary) = catalog {
            let mut next = Catalog {
                version: self.catalog.version + 1,
                partitions: Default::default(),
            };
            let mut new_durable = Vec::new();
            for meta in primary.partitions.into_values() {
                let meta =
                    Arc::try_unwrap(meta).unwrap_or_else(|m| crate::catalog::PartitionMeta {
                        name: m.name.clone(),
                        id: m.id,
                        shard: m.shard,
                        schema: m.schema,
                        persist: m.persist,
                        created_ms: m.created_ms,
                        options: m.options,
                        stats: Default::default(),
                    });
                let ours = self
                    .catalog
                    .partitions
                    .get(&meta.name)
                    .filter(|o| o.id == meta.id && o.schema == meta.schema);
                let (shard, stats) = match ours {
                    Some(o) => (o.shard, o.stats.clone()),
                    None => (next.placement(shards), Default::default()),
                };
                let was_durable = ours.is_some_and(|o| o.persist != PersistMode::Memory);
                if meta.persist != PersistMode::Memory && !was_durable {
                    new_durable.push(meta.id);
                }
                self.next_partition_id = self.next_partition_id.max(meta.id + 1);
                next.partitions.insert(
                    meta.name.clone(),
                    Arc::new(crate::catalog::PartitionMeta {
                        shard,
                        stats,
                        ..meta
                    }),
                );
            }
            for &id in &new_durable {
                PartitionLog::create_files(&self.data_dir, id).map_err(|e| {
                    CommandError::Io(format!("cannot create the files of partition {id}: {e}"))
                })?;
            }
            planned.reply = self.persist_catalog(&next, None, &[])?;
            planned.catalog = Some(next);
        }
        if let Some(mut acl) = acl {
            acl.version = self.acl.version + 1;
            let catalog_version = planned
                .catalog
                .as_ref()
                .map_or(self.catalog.version, |c| c.version);
            store::save(&self.data_dir, &acl, catalog_version)
                .map_err(|e| CommandError::Io(format!("cannot write the users: {e}")))?;
            self.revoked.clear();
            planned.acl = Some(acl);
        }
        Ok(planned)
    }

    /// Checks a change again when the ACL moved since the connection's shard approved it: a
    /// REVOKE or DROP USER answered `+OK` while the change was on its way (in the sender's
    /// outbox, or queued here) takes it back. The same check as at dispatch, against the
    /// ACL and catalog this coordinator holds, which are the newest there are.
    fn authorize_again(&self, by: &Approved) -> Result<(), CommandError> {
        if by.acl_version >= self.acl.version {
            return Ok(());
        }
        let user = self.acl.user_by_id(by.user);
        let args = by.args();
        authorize(lookup(&args)?, &args, user.map(|u| &**u), &self.catalog)
    }

    /// The next catalog and/or ACL for `change` (`None`: unchanged), already in the files a
    /// restart reads; or why not (and then nothing changed, on disk or here).
    fn plan(&mut self, change: &Change, shards: usize) -> Result<Planned, CommandError> {
        match change {
            Change::Create(request) => {
                let id = self.next_partition_id;
                let created_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let catalog = plan_create(&self.catalog, request, shards, id, created_ms)?;
                self.next_partition_id += 1;
                let durable = request.persist != PersistMode::Memory;
                let reply = self.persist_catalog(&catalog, durable.then_some(id), &self.revoked)?;
                Ok(Planned {
                    catalog: Some(catalog),
                    acl: None,
                    reply,
                })
            }
            // New options for a partition that stays where it is: one catalog write. The owning
            // shard copies them next to the partition when it applies the new version, between
            // two requests: no pause, no request sees half of the change.
            Change::Alter(request) => {
                let catalog = plan_alter(&self.catalog, request)?;
                // MEMORY -> durable: the files first, as for a CREATE (the owning shard then
                // writes the snapshot into them before it acknowledges).
                let was = self.catalog.partitions.get(&request.name);
                let now = catalog.partitions.get(&request.name);
                let new_durable = match (was, now) {
                    (Some(was), Some(now))
                        if was.persist == PersistMode::Memory
                            && now.persist != PersistMode::Memory =>
                    {
                        Some(now.id)
                    }
                    _ => None,
                };
                let reply = self.persist_catalog(&catalog, new_durable, &self.revoked)?;
                Ok(Planned {
                    catalog: Some(catalog),
                    acl: None,
                    reply,
                })
            }
            // Dropping a partition revokes every grant on its name, in the same catalog write
            // (see the module docs). The owning shard deletes its files when it applies the
            // new catalog; a crash before that leaves orphans, which startup removes.
            Change::Drop(name) => {
                let catalog = plan_drop(&self.catalog, name)?;
                let acl = self.acl.without_partition(name);
                let mut revoked = self.revoked.clone();
                if acl.is_some() {
                    revoked.push(Revoked {
                        name: name.clone(),
                        version: catalog.version,
                    });
                }
                let reply = self.persist_catalog(&catalog, None, &revoked)?;
                // Committed: from here on the drop stands, whatever happens to users.json.
                self.revoked = revoked;
                if let Some(acl) = &acl {
                    match store::save(&self.data_dir, acl, catalog.version) {
                        Ok(()) => self.revoked.clear(),
                        Err(e) => log::error!(
                            "{e}: the grants on the dropped partition '{name}' stay revoked \
                             through the catalog file until users.json can be written"
                        ),
                    }
                }
                Ok(Planned {
                    catalog: Some(catalog),
                    acl,
                    reply,
                })
            }
            Change::Acl(change) => {
                let acl = self.acl.apply(change)?;
                let reply = match store::save(&self.data_dir, &acl, self.catalog.version) {
                    Ok(()) => {
                        // users.json now says everything the `revoked` lines said.
                        self.revoked.clear();
                        Ok(())
                    }
                    Err(e) if e.replaced => {
                        log::error!("{e}");
                        Err(unsynced("the user change is made", &e))
                    }
                    Err(e) => {
                        log::error!("{e}");
                        return Err(CommandError::Io(format!(
                            "the user change could not be persisted: {e}; nothing changed"
                        )));
                    }
                };
                if let AclChange::SetPassword { name, .. } = change {
                    if name == ADMIN_USER {
                        // The change is durable already: a file we cannot remove is only
                        // logged.
                        if let Err(e) = store::forget_generated_admin_password(&self.data_dir) {
                            log::error!("{e}");
                        }
                    }
                }
                Ok(Planned {
                    catalog: None,
                    acl: Some(acl),
                    reply,
                })
            }
        }
    }

    /// Makes a catalog version durable (creating a new durable partition's files first).
    /// `Err`: nothing changed. `Ok(Err)`: the new catalog is in place (a restart reads it),
    /// but the directory fsync after its rename failed; the change is made and the client
    /// hears that it may not survive a power loss.
    fn persist_catalog(
        &self,
        catalog: &Catalog,
        new_durable: Option<u64>,
        revoked: &[Revoked],
    ) -> Result<Result<(), CommandError>, CommandError> {
        if let Some(id) = new_durable {
            PartitionLog::create_files(&self.data_dir, id).map_err(|e| {
                log::error!("cannot create the files of partition {id}: {e}");
                CommandError::Io(format!(
                    "cannot create the partition's log: {e}; the partition was not created"
                ))
            })?;
        }
        match catalog_file::store(&self.data_dir, catalog, self.next_partition_id, revoked) {
            Ok(()) => Ok(Ok(())),
            Err(e) if e.replaced => {
                log::error!("catalog version {}: {e}", catalog.version);
                Ok(Err(unsynced("the partition change is made", &e)))
            }
            Err(e) => {
                log::error!("cannot write the catalog: {e}");
                if let Some(id) = new_durable {
                    let _ =
                        std::fs::remove_dir_all(crate::persist::partition_dir(&self.data_dir, id));
                }
                Err(CommandError::Io(format!(
                    "cannot write the catalog: {e}; nothing changed"
                )))
            }
        }
    }
}

/// The reply to a change that is made but whose last directory fsync failed.
fn unsynced(made: &str, e: &dyn std::fmt::Display) -> CommandError {
    CommandError::Io(format!(
        "{made}, but {e}: a power loss may undo it (a restart keeps it)"
    ))
}

/// Ends a replica's link because its user may no longer replicate (logged once).
fn drop_unauthorized(feed: &Feed) {
    feed.drop_replica(&format!(
        "its user '{}' was dropped or no longer holds ADMIN on *",
        feed.user.name
    ));
}

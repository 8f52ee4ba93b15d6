//! The catalog coordinator: runs inside shard 0 and owns the catalog's truth.
//!
//! A change (CREATE/DROP PARTITION) arrives as a message from the connection's shard. The
//! coordinator validates it against the current catalog, builds the next version, broadcasts
//! it to every shard (itself included) and answers the client only when every shard has
//! acknowledged that version, so a client never sees its own change missing on any shard.
//! Changes are applied one at a time, in arrival order.
//!
//! Durability: before broadcasting, the coordinator creates a new durable partition's first
//! log segment and then replaces the catalog file (`persist::catalog_file`), both fsync'd. So
//! a change the client hears `+OK` for survives a crash, and the catalog on disk never names a
//! durable partition without its files. If either step fails the change is refused with
//! `-IOERR` and nothing changes. This blocks shard 0's loop for a few fsyncs, which is fine
//! for something as rare as CREATE or DROP.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::Catalog;
use crate::command::partition::{plan_create, plan_drop};
use crate::command::CommandError;
use crate::persist::{catalog_file, PartitionLog};
use crate::store::PersistMode;

use super::mailbox::{CatalogChange, Message, ReplyTo, ShardHandle};

/// The change whose broadcast is being acknowledged.
struct InFlight {
    reply_to: ReplyTo,
    version: u64,
    acks_missing: usize,
}

pub struct Coordinator {
    catalog: Arc<Catalog>,
    queue: VecDeque<(ReplyTo, CatalogChange)>,
    in_flight: Option<InFlight>,
    /// Never reused, even after a restart (it is in the catalog file), so a partition's files
    /// can never be mistaken for a dropped predecessor's.
    next_partition_id: u64,
    data_dir: PathBuf,
}

impl Coordinator {
    pub fn new(catalog: Arc<Catalog>, next_partition_id: u64, data_dir: PathBuf) -> Self {
        let next_partition_id = catalog
            .partitions
            .values()
            .map(|m| m.id + 1)
            .max()
            .unwrap_or(1)
            .max(next_partition_id);
        Coordinator {
            catalog,
            queue: VecDeque::new(),
            in_flight: None,
            next_partition_id,
            data_dir,
        }
    }

    /// Queues a change and starts it if nothing else is in flight.
    pub fn submit(&mut self, reply_to: ReplyTo, change: CatalogChange, shards: &[ShardHandle]) {
        self.queue.push_back((reply_to, change));
        self.start_next(shards);
    }

    /// A shard now uses `version`.
    pub fn ack(&mut self, version: u64, shards: &[ShardHandle]) {
        let Some(flight) = &mut self.in_flight else {
            return;
        };
        if flight.version != version {
            return;
        }
        flight.acks_missing -= 1;
        if flight.acks_missing == 0 {
            let reply_to = flight.reply_to;
            self.in_flight = None;
            shards[reply_to.shard].send(Message::ChangeDone {
                reply_to,
                result: Ok(()),
            });
            self.start_next(shards);
        }
    }

    fn start_next(&mut self, shards: &[ShardHandle]) {
        while self.in_flight.is_none() {
            let Some((reply_to, change)) = self.queue.pop_front() else {
                return;
            };
            let planned = match &change {
                CatalogChange::Create(request) => {
                    let id = self.next_partition_id;
                    let created_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    plan_create(&self.catalog, request, shards.len(), id, created_ms).and_then(
                        |catalog| {
                            self.next_partition_id += 1;
                            let durable = request.persist != PersistMode::Memory;
                            self.persist(&catalog, durable.then_some(id))?;
                            Ok(catalog)
                        },
                    )
                }
                CatalogChange::Drop(name) => plan_drop(&self.catalog, name).and_then(|catalog| {
                    // The owning shard deletes the files when it applies this version; a
                    // crash before that leaves orphans, which startup removes.
                    self.persist(&catalog, None)?;
                    Ok(catalog)
                }),
            };
            match planned {
                Err(e) => shards[reply_to.shard].send(Message::ChangeDone {
                    reply_to,
                    result: Err(e),
                }),
                Ok(catalog) => {
                    log::info!("catalog version {}: {change:?}", catalog.version);
                    let catalog = Arc::new(catalog);
                    self.catalog = catalog.clone();
                    self.in_flight = Some(InFlight {
                        reply_to,
                        version: catalog.version,
                        acks_missing: shards.len(),
                    });
                    for shard in shards {
                        shard.send(Message::CatalogUpdate(catalog.clone()));
                    }
                }
            }
        }
    }

    /// Makes a catalog version durable (creating a new durable partition's files first).
    fn persist(&self, catalog: &Catalog, new_durable: Option<u64>) -> Result<(), CommandError> {
        if let Some(id) = new_durable {
            PartitionLog::create_files(&self.data_dir, id).map_err(|e| {
                log::error!("cannot create the files of partition {id}: {e}");
                CommandError::Io(format!("cannot create the partition's log: {e}"))
            })?;
        }
        catalog_file::store(&self.data_dir, catalog, self.next_partition_id).map_err(|e| {
            log::error!("cannot write the catalog: {e}");
            if let Some(id) = new_durable {
                let _ = std::fs::remove_dir_all(crate::persist::partition_dir(&self.data_dir, id));
            }
            CommandError::Io(format!("cannot write the catalog: {e}"))
        })
    }
}

//! The catalog coordinator: runs inside shard 0 and owns the catalog's truth.
//!
//! A change (CREATE/DROP PARTITION) arrives as a message from the connection's shard. The
//! coordinator validates it against the current catalog, builds the next version, broadcasts
//! it to every shard (itself included) and answers the client only when every shard has
//! acknowledged that version, so a client never sees its own change missing on any shard.
//! Changes are applied one at a time, in arrival order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::Catalog;
use crate::command::partition::{plan_create, plan_drop};

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
    next_partition_id: u64,
}

impl Coordinator {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        let next_partition_id = catalog
            .partitions
            .values()
            .map(|m| m.id + 1)
            .max()
            .unwrap_or(1);
        Coordinator {
            catalog,
            queue: VecDeque::new(),
            in_flight: None,
            next_partition_id,
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
                    let planned = plan_create(&self.catalog, request, shards.len(), id, created_ms);
                    if planned.is_ok() {
                        self.next_partition_id += 1;
                    }
                    planned
                }
                CatalogChange::Drop(name) => plan_drop(&self.catalog, name),
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
}

//! GoKV: a thread-per-core, shared-nothing, partitioned in-memory key-value server that speaks
//! RESP (so `redis-cli`, `redis-benchmark` and Redis client libraries work unchanged).
//!
//! # The model
//! - One OS thread per core (a *shard*, [`shard`]), pinned, each with its own `mio::Poll`, its
//!   own connections and a disjoint set of *partitions* (named keyspaces with a schema). A
//!   partition is touched only by its shard's thread: no locks on the data path.
//! - An acceptor thread ([`acceptor`]) hands accepted sockets to shards round-robin.
//! - A request for a partition on another shard is copied into a per-destination batch and
//!   sent over a crossbeam channel once per event-loop pass; replies come back the same way and
//!   are written to the client in request order.
//! - The catalog of partitions ([`catalog`]) and the users and grants ([`acl`]) are immutable
//!   values every shard holds a copy of; changes go through a coordinator on shard 0 and are
//!   acknowledged by every shard before the client hears back.
//! - Counters ([`metrics`]) are single-writer atomics each shard keeps; INFO and the
//!   Prometheus endpoint's own thread ([`exposition`]) read them without asking a shard.
//! - Access is default-deny: a connection must log in, and every command is checked against
//!   the shard's ACL copy before it is routed. Password hashing (argon2id) runs on a small
//!   hasher pool, never on a shard's thread.
//!
//! # Layers
//! bytes -> [`protocol::Parser`] -> [`command::lookup`] -> a command family in [`command`] ->
//! [`protocol::ReplyWriter`] -> bytes. Commands never touch sockets.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod acceptor;
pub mod acl;
pub mod catalog;
pub mod command;
pub mod config;
pub mod exposition;
pub mod latency;
pub mod log_limit;
pub mod metrics;
pub mod persist;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod shard;
pub mod slowlog;
pub mod store;
pub mod tls;

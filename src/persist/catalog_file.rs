//! The catalog on disk: every partition's name, id, shard, schema, persist mode and options.
//!
//! A small text file, rewritten whole on every change by the coordinator (shard 0) with an
//! atomic replace: write `catalog.tmp`, fsync it, rename it over `catalog`, fsync the
//! directory. A reader therefore sees the old catalog or the new one, never a mix. The last
//! line is a CRC32C of everything before it, so a damaged file is an error at startup rather
//! than a silently different set of partitions.
//!
//! ```text
//! gokv-catalog 1
//! version 7
//! next-id 12
//! partition orders 3 0 STRING SYNC 1795641684456
//! partition cache 5 1 STRING MEMORY 1795641690000 max-memory=1073741824 eviction=allkeys-lru
//! revoked carts 6
//! crc32c 1a2b3c4d
//! ```
//! (`partition <name> <id> <shard> <schema> <persist> <created_ms> [<option>=<value> ...]`;
//! names are `[A-Za-z0-9_.-]`, so no quoting is needed.)
//!
//! Options ([`PartitionOptions`]) follow as `name=value` words, only those not at their
//! default (`max-memory`, `max-keys`, `max-ops` and `default-ttl` as plain numbers, `eviction`
//! as Redis's policy name), so a catalog written before options existed, whose lines end at
//! `<created_ms>`, reads as partitions without options. An unknown option name is an error:
//! a catalog from a newer version is refused rather than read without its limits.
//!
//! `revoked <name> <version>`: DROP PARTITION `<name>`, which made catalog version
//! `<version>`, revoked every grant on that name, but `users.json` could not be rewritten
//! (a full disk, say). Grants on `<name>` in a `users.json` written under an older catalog
//! version are void ([`Revoked`]). So a DROP is one durable step, this file, whether or not
//! the ACL file follows; the line goes away once `users.json` has been written since.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::{is_valid_name, Catalog, PartitionMeta, PartitionOptions};
use crate::store::{Eviction, PartitionStats, PersistMode, Schema};

use super::{sync_dir, PersistError};

const MAGIC: &str = "gokv-catalog 1";

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("catalog")
}

/// The catalog and the next partition id to hand out.
#[derive(Debug)]
pub struct Stored {
    pub catalog: Catalog,
    pub next_id: u64,
    /// Drops whose revocation of grants may be missing from `users.json`.
    pub revoked: Vec<Revoked>,
}

/// A DROP PARTITION whose revocation of the grants on `name` is recorded here rather than
/// (yet) in `users.json`: grants on `name` in a `users.json` written under a catalog version
/// below `version` are void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub name: String,
    /// The catalog version the drop made.
    pub version: u64,
}

impl Revoked {
    /// Do the grants on `name` in a `users.json` written under catalog version
    /// `acl_catalog_version` predate this drop?
    pub fn voids(&self, acl_catalog_version: u64) -> bool {
        acl_catalog_version < self.version
    }
}

/// Serialises a catalog.
pub fn encode(catalog: &Catalog, next_id: u64, revoked: &[Revoked]) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(text, "{MAGIC}");
    let _ = writeln!(text, "version {}", catalog.version);
    let _ = writeln!(text, "next-id {next_id}");
    for meta in catalog.partitions.values() {
        let _ = write!(
            text,
            "partition {} {} {} {} {} {}",
            meta.name, meta.id, meta.shard, meta.schema, meta.persist, meta.created_ms
        );
        encode_options(&meta.options, &mut text);
        text.push('\n');
    }
    for r in revoked {
        let _ = writeln!(text, "revoked {} {}", r.name, r.version);
    }
    let crc = crc32c::crc32c(text.as_bytes());
    let _ = writeln!(text, "crc32c {crc:08x}");
    text
}

/// Appends ` name=value` for every option not at its default.
fn encode_options(options: &PartitionOptions, text: &mut String) {
    let defaults = PartitionOptions::default();
    for (name, value, default) in [
        ("max-memory", options.max_memory, defaults.max_memory),
        ("max-keys", options.max_keys, defaults.max_keys),
        ("max-ops", options.max_ops, defaults.max_ops),
        ("default-ttl", options.default_ttl, defaults.default_ttl),
    ] {
        if value != default {
            let _ = write!(text, " {name}={value}");
        }
    }
    if options.eviction != defaults.eviction {
        let _ = write!(text, " eviction={}", options.eviction);
    }
}

/// Reads the `name=value` words after a partition line's fixed fields.
fn decode_options(words: &[&str]) -> Option<PartitionOptions> {
    let mut options = PartitionOptions::default();
    for word in words {
        let (name, value) = word.split_once('=')?;
        match name {
            "max-memory" => options.max_memory = value.parse().ok()?,
            "max-keys" => options.max_keys = value.parse().ok()?,
            "max-ops" => options.max_ops = value.parse().ok()?,
            "default-ttl" => options.default_ttl = value.parse().ok()?,
            "eviction" => options.eviction = Eviction::parse(value.as_bytes())?,
            _ => return None,
        }
    }
    Some(options)
}

/// Parses a catalog file's text. Errors say which line is wrong.
pub fn decode(text: &str) -> Result<Stored, String> {
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("file is too short")?;
    let (body, crc_line) = text.split_at(body_end);
    let crc = crc_line
        .trim_end()
        .strip_prefix("crc32c ")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("last line is not a crc32c line")?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return Err("checksum mismatch".into());
    }
    let mut lines = body.lines().enumerate();
    if lines.next().map(|(_, l)| l) != Some(MAGIC) {
        return Err(format!("first line is not '{MAGIC}'"));
    }
    let mut version = None;
    let mut next_id = None;
    let mut partitions = BTreeMap::new();
    let mut revoked = Vec::new();
    for (i, line) in lines {
        let bad = || format!("line {}: cannot parse '{line}'", i + 1);
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["version", v] => version = Some(v.parse().map_err(|_| bad())?),
            ["next-id", n] => next_id = Some(n.parse().map_err(|_| bad())?),
            ["partition", name, id, shard, schema, persist, created, options @ ..] => {
                if !is_valid_name(name.as_bytes()) {
                    return Err(bad());
                }
                let meta = PartitionMeta {
                    name: name.to_string(),
                    id: id.parse().map_err(|_| bad())?,
                    shard: shard.parse().map_err(|_| bad())?,
                    schema: Schema::parse(schema.as_bytes()).ok_or_else(bad)?,
                    persist: PersistMode::parse(persist.as_bytes()).ok_or_else(bad)?,
                    created_ms: created.parse().map_err(|_| bad())?,
                    options: decode_options(options).ok_or_else(bad)?,
                    stats: Arc::new(PartitionStats::default()),
                };
                partitions.insert(meta.name.clone(), Arc::new(meta));
            }
            ["revoked", name, version] => {
                if !is_valid_name(name.as_bytes()) {
                    return Err(bad());
                }
                revoked.push(Revoked {
                    name: name.to_string(),
                    version: version.parse().map_err(|_| bad())?,
                });
            }
            _ => return Err(bad()),
        }
    }
    let catalog = Catalog {
        version: version.ok_or("no version line")?,
        partitions,
    };
    let next_id = next_id.ok_or("no next-id line")?;
    Ok(Stored {
        catalog,
        next_id,
        revoked,
    })
}

/// Loads the catalog; `None` on a first start (no file).
pub fn load(data_dir: &Path) -> Result<Option<Stored>, PersistError> {
    let path = path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PersistError::io(&path, e)),
    };
    decode(&text)
        .map(Some)
        .map_err(|why| PersistError::corrupt(&path, 0, why))
}

/// Why [`store`] failed, and whether the new catalog is in place anyway.
#[derive(Debug)]
pub struct StoreError {
    pub error: io::Error,
    /// The rename happened, only the directory fsync after it failed: the new catalog is what
    /// a restart reads, but a power loss may bring the old one back.
    pub replaced: bool,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.replaced {
            write!(
                f,
                "cannot fsync the directory after the rename: {}",
                self.error
            )
        } else {
            self.error.fmt(f)
        }
    }
}

/// Replaces the catalog file atomically and durably.
pub fn store(
    data_dir: &Path,
    catalog: &Catalog,
    next_id: u64,
    revoked: &[Revoked],
) -> Result<(), StoreError> {
    let before = |error| StoreError {
        error,
        replaced: false,
    };
    let tmp = data_dir.join("catalog.tmp");
    let mut file = File::create(&tmp).map_err(before)?;
    super::fault::check(super::fault::Fault::Write).map_err(before)?;
    file.write_all(encode(catalog, next_id, revoked).as_bytes())
        .map_err(before)?;
    super::fault::check(super::fault::Fault::Fsync).map_err(before)?;
    file.sync_all().map_err(before)?;
    drop(file);
    std::fs::rename(&tmp, path(data_dir)).map_err(before)?;
    super::fault::check(super::fault::Fault::DirSync)
        .and_then(|()| sync_dir(data_dir))
        .map_err(|error| StoreError {
            error,
            replaced: true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let c = Catalog::default().with_partition(PartitionMeta {
            name: "orders".into(),
            id: 3,
            shard: 1,
            schema: Schema::String,
            persist: PersistMode::Sync,
            created_ms: 42,
            options: PartitionOptions::default(),
            stats: Arc::default(),
        });
        let revoked = [Revoked {
            name: "carts".into(),
            version: 6,
        }];
        let text = encode(&c, 4, &revoked);
        let back = decode(&text).expect("valid");
        assert_eq!(back.next_id, 4);
        assert_eq!(back.revoked, revoked);
        assert!(revoked[0].voids(5) && !revoked[0].voids(6));
        assert_eq!(back.catalog.version, c.version);
        let m = &back.catalog.partitions["orders"];
        assert_eq!(
            (m.id, m.shard, m.schema, m.persist, m.created_ms),
            (3, 1, Schema::String, PersistMode::Sync, 42)
        );
        let damaged = text.replace("orders", "ordets");
        assert!(decode(&damaged).unwrap_err().contains("checksum"));
        assert!(decode("").is_err());
        assert!(decode(&text[..text.len() / 2]).is_err());
    }

    /// Options round-trip; only those not at their default are written.
    #[test]
    fn options_round_trip() {
        let options = PartitionOptions {
            max_memory: 1 << 30,
            max_keys: 7,
            max_ops: 10_000,
            eviction: Eviction::VolatileTtl,
            default_ttl: 60_000,
        };
        let c = Catalog::default().with_partition(PartitionMeta {
            name: "cache".into(),
            id: 5,
            shard: 0,
            schema: Schema::String,
            persist: PersistMode::Memory,
            created_ms: 9,
            options,
            stats: Arc::default(),
        });
        let text = encode(&c, 6, &[]);
        assert!(text.contains(
            "partition cache 5 0 STRING MEMORY 9 max-memory=1073741824 max-keys=7 \
             max-ops=10000 default-ttl=60000 eviction=volatile-ttl\n"
        ));
        assert_eq!(
            decode(&text).unwrap().catalog.partitions["cache"].options,
            options
        );
        let partial = PartitionOptions {
            max_keys: 3,
            ..Default::default()
        };
        let c = c
            .with_options("cache", PersistMode::Memory, partial)
            .unwrap();
        let text = encode(&c, 6, &[]);
        assert!(text.contains("partition cache 5 0 STRING MEMORY 9 max-keys=3\n"));
        assert_eq!(
            decode(&text).unwrap().catalog.partitions["cache"].options,
            partial
        );
    }

    /// With its crc32c line recomputed: what a file with this body would be.
    fn sealed(body: &str) -> String {
        format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()))
    }

    /// A catalog written before options existed (its partition lines end at `created_ms`)
    /// still loads, as partitions without options; an unknown option is refused.
    #[test]
    fn a_catalog_without_options_still_loads() {
        let old =
            sealed("gokv-catalog 1\nversion 3\nnext-id 4\npartition orders 3 1 INT SYNC 42\n");
        let back = decode(&old).expect("an older catalog loads");
        let m = &back.catalog.partitions["orders"];
        assert_eq!((m.id, m.shard, m.schema), (3, 1, Schema::Int));
        assert_eq!(m.options, PartitionOptions::default());
        for bad in ["max-color=1", "max-keys=-1", "max-keys", "eviction=lru"] {
            let text = sealed(&format!(
                "gokv-catalog 1\nversion 3\nnext-id 4\npartition orders 3 1 INT SYNC 42 {bad}\n"
            ));
            let e = decode(&text).unwrap_err();
            assert!(e.contains("line 4"), "{bad}: {e}");
        }
    }
}

//! Users and grants on disk, and the `admin` bootstrap.
//!
//! The ACL lives in `<data-dir>/users.json`: users with their id, argon2id PHC hash,
//! grants and default partition (`default_partition`, absent when there is none and in
//! files written before it existed), never a password. It is replaced atomically: written to `users.json.tmp`, fsync'd,
//! renamed over the old file, then the directory is fsync'd, so a crash leaves either the old
//! or the new version, never a torn one. The coordinator writes it before it broadcasts a new
//! version, so nothing a client was told succeeded is lost.
//!
//! The file also records the catalog version it was written under (`catalog_version`): a
//! DROP PARTITION that could write the catalog but not this file leaves a `revoked` line in
//! the catalog (see `persist::catalog_file`), and the grants on that name in a file written
//! before the drop are void. Startup applies those revocations before anything else reads the
//! ACL.
//!
//! Bootstrap (at startup, before any shard runs) makes sure a user `admin` with ADMIN on `*`
//! exists. Its password comes from `--admin-password` / `GOKV_ADMIN_PASSWORD` (and is reset to
//! that value whenever it is given), or, on a start where `admin` does not exist yet and none
//! is given, is generated and written to `<data-dir>/admin-password` (mode 0600); only that
//! path is logged. The file is removed once `admin` has another password: one given at a
//! later start, or `ALTER USER admin PASSWORD` at run time (the coordinator).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use argon2::password_hash::PasswordHash;
use serde::{Deserialize, Serialize};

use super::hasher::{hash_password, verify_password};
use super::{Acl, Perms, User, ADMIN_USER, ALL};
use crate::catalog::is_valid_name;

/// The ACL file inside the data directory.
pub const USERS_FILE: &str = "users.json";

/// Where a generated admin password is written (mode 0600).
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// Version of the file's layout, so a future change can be recognised.
const FORMAT: u32 = 1;

/// Length of a generated password: 24 characters of 62 carry about 143 bits.
const GENERATED_LEN: usize = 24;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    format: u32,
    /// The catalog version when this file was written. Absent in files of the previous
    /// release, which wrote no catalog until a partition was created: startup tells such a
    /// directory (an upgrade) from one whose catalog was lost by this field.
    #[serde(default)]
    catalog_version: Option<u64>,
    next_user_id: u64,
    users: Vec<UserRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRecord {
    id: u64,
    name: String,
    /// argon2id PHC string.
    hash: String,
    /// Target (`*` or a partition name) -> permissions (`READ`, `WRITE`, `ADMIN`).
    grants: BTreeMap<String, Vec<String>>,
    /// The partition its connections start on in Redis grammar. Absent in older files (and
    /// left out when there is none, so a file without defaults still reads in an older
    /// release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_partition: Option<String>,
}

fn to_file(acl: &Acl, catalog_version: u64) -> UsersFile {
    UsersFile {
        format: FORMAT,
        catalog_version: Some(catalog_version),
        next_user_id: acl.next_user_id,
        users: acl
            .users
            .values()
            .map(|u| {
                let mut grants = BTreeMap::new();
                if !u.all.is_empty() {
                    grants.insert(ALL.to_string(), u.all.names().map(String::from).collect());
                }
                for (p, perms) in &u.grants {
                    grants.insert(p.clone(), perms.names().map(String::from).collect());
                }
                UserRecord {
                    id: u.id,
                    name: u.name.clone(),
                    hash: u.hash.to_string(),
                    grants,
                    default_partition: u.default_partition.clone(),
                }
            })
            .collect(),
    }
}

fn from_file(file: UsersFile, path: &Path) -> Result<Acl, String> {
    let bad = |what: String| format!("{}: {what}", path.display());
    if file.format != FORMAT {
        return Err(bad(format!("unknown format {}", file.format)));
    }
    let mut acl = Acl {
        version: 0,
        users: BTreeMap::new(),
        next_user_id: file.next_user_id,
    };
    for record in file.users {
        if !is_valid_name(record.name.as_bytes()) {
            return Err(bad(format!("invalid user name '{}'", record.name)));
        }
        if PasswordHash::new(&record.hash).is_err() {
            return Err(bad(format!("user '{}' has an invalid hash", record.name)));
        }
        if record.id >= acl.next_user_id || acl.users.values().any(|u| u.id == record.id) {
            return Err(bad(format!("user '{}' has a bad id", record.name)));
        }
        if let Some(p) = &record.default_partition {
            if !is_valid_name(p.as_bytes()) {
                return Err(bad(format!(
                    "user '{}': invalid default partition name",
                    record.name
                )));
            }
        }
        let mut user = User {
            id: record.id,
            name: record.name.clone(),
            hash: record.hash.into(),
            all: Perms::NONE,
            grants: BTreeMap::new(),
            default_partition: record.default_partition,
        };
        for (target, names) in record.grants {
            let mut perms = Perms::NONE;
            for name in names {
                perms = perms.union(Perms::parse(name.as_bytes()).ok_or_else(|| {
                    bad(format!("user '{}': unknown permission '{name}'", user.name))
                })?);
            }
            if target == ALL {
                user.all = perms;
            } else if is_valid_name(target.as_bytes()) {
                if !perms.is_empty() {
                    user.grants.insert(target, perms);
                }
            } else {
                return Err(bad(format!("user '{}': bad grant target", user.name)));
            }
        }
        if acl.users.insert(record.name, Arc::new(user)).is_some() {
            return Err(bad("a user appears twice".into()));
        }
    }
    Ok(acl)
}

/// The ACL as `users.json` text (replication sends it to replicas).
pub fn encode(acl: &Acl) -> String {
    serde_json::to_string(&to_file(acl, 0)).unwrap_or_default()
}

/// Parses [`encode`]'s text, checked as a file is.
pub fn decode(text: &str) -> Result<Acl, String> {
    let file: UsersFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    from_file(file, Path::new("the primary's users"))
}

/// What `users.json` holds.
#[derive(Debug)]
pub struct Stored {
    pub acl: Acl,
    /// The catalog version the file was written under (0 in the previous release's files).
    pub catalog_version: u64,
    /// Written by a release that always writes a catalog next to it: without the catalog,
    /// the catalog was lost (otherwise the directory may be a previous release's first start).
    pub beside_a_catalog: bool,
}

/// Reads the ACL file; `None` when there is none (a first start, or a lost file: the caller
/// tells them apart).
pub fn load(dir: &Path) -> Result<Option<Stored>, String> {
    let path = dir.join(USERS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: UsersFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let beside_a_catalog = file.catalog_version.is_some();
    let catalog_version = file.catalog_version.unwrap_or(0);
    let acl = from_file(file, &path)?;
    Ok(Some(Stored {
        acl,
        catalog_version,
        beside_a_catalog,
    }))
}

/// Why [`save`] failed, and whether the new file is in place anyway.
#[derive(Debug)]
pub struct SaveError {
    pub message: String,
    /// The rename happened, only the directory fsync after it failed: the new file is what a
    /// restart reads, but a power loss may bring the old one back.
    pub replaced: bool,
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<SaveError> for String {
    fn from(e: SaveError) -> String {
        e.message
    }
}

/// Writes the ACL file atomically (temp file, fsync, rename, fsync the directory), recording
/// the catalog version in force.
pub fn save(dir: &Path, acl: &Acl, catalog_version: u64) -> Result<(), SaveError> {
    let path = dir.join(USERS_FILE);
    let tmp = dir.join(format!("{USERS_FILE}.tmp"));
    let fail = |what: &str, e: std::io::Error| SaveError {
        message: format!("cannot {what} {}: {e}", path.display()),
        replaced: false,
    };
    let text =
        serde_json::to_vec_pretty(&to_file(acl, catalog_version)).map_err(|e| SaveError {
            message: format!("cannot encode {}: {e}", path.display()),
            replaced: false,
        })?;
    // 0600: the hashes are slow to crack, not impossible; nobody else needs them.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create a temporary file for", e))?;
    // `mode` applies only to a file it creates; a temporary file left by a crash keeps its own.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| fail("restrict the temporary file of", e))?;
    file.write_all(&text).map_err(|e| fail("write", e))?;
    file.sync_all().map_err(|e| fail("fsync", e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| fail("replace", e))?;
    crate::persist::fault::check(crate::persist::fault::Fault::DirSync)
        .and_then(|()| sync_dir(dir))
        .map_err(|e| SaveError {
            replaced: true,
            ..fail("fsync the directory after replacing", e)
        })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A password of [`GENERATED_LEN`] characters from `[A-Za-z0-9]`, uniformly drawn.
fn generate_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(GENERATED_LEN);
    while out.len() < GENERATED_LEN {
        let mut bytes = [0u8; 64];
        getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
        // Rejection sampling: 248 = 4 * 62, so the bytes kept map uniformly.
        for b in bytes.into_iter().filter(|&b| b < 248) {
            if out.len() < GENERATED_LEN {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// Writes a generated password where only the owner can read it.
fn write_password_file(path: &Path, password: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    // `mode` applies only to a file it creates; an older one may have other bits.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(format!("{password}\n").as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(fail)?;
    }
    Ok(())
}

/// Makes sure `acl` (as loaded, or empty on a first start) has a user `admin` with ADMIN on
/// `*` and, when one is configured, the configured password. Persists what it changed, under
/// `catalog_version`. Runs once, at startup.
pub fn bootstrap(
    dir: &Path,
    mut acl: Acl,
    catalog_version: u64,
    admin_password: Option<&str>,
) -> Result<Acl, String> {
    let mut changed = false;
    let password_file: PathBuf = dir.join(ADMIN_PASSWORD_FILE);
    let admin = match acl.users.get(ADMIN_USER) {
        Some(admin) => {
            let mut admin = (**admin).clone();
            if let Some(password) = admin_password {
                if !verify_password(&admin.hash, password.as_bytes()) {
                    admin.hash = hash_password(password.as_bytes())?.into();
                    changed = true;
                    log::info!("password of user '{ADMIN_USER}' set from the configuration");
                }
            }
            admin
        }
        None => {
            let hash = match admin_password {
                Some(password) => hash_password(password.as_bytes())?,
                None => {
                    let password = generate_password()?;
                    write_password_file(&password_file, &password)?;
                    log::warn!(
                        "no admin password configured: generated one for user '{ADMIN_USER}' \
                         in {} (readable only by its owner); set --admin-password or \
                         GOKV_ADMIN_PASSWORD to choose your own",
                        password_file.display()
                    );
                    hash_password(password.as_bytes())?
                }
            };
            let id = acl.next_user_id.max(1);
            acl.next_user_id = id + 1;
            changed = true;
            User {
                id,
                name: ADMIN_USER.into(),
                hash: hash.into(),
                all: Perms::NONE,
                grants: BTreeMap::new(),
                default_partition: None,
            }
        }
    };
    let mut admin = admin;
    if !admin.all.covers(Perms::ADMIN) {
        admin.all = admin.all.union(Perms::ADMIN);
        changed = true;
    }
    acl.users.insert(ADMIN_USER.into(), Arc::new(admin));
    if changed {
        save(dir, &acl, catalog_version)?;
    }
    if admin_password.is_some() {
        forget_generated_admin_password(dir)?;
    }
    Ok(acl)
}

/// Removes the generated admin password file, if there is one: once `admin` has another
/// password, the old one must not lie around in plain text.
pub fn forget_generated_admin_password(dir: &Path) -> Result<(), String> {
    let path = dir.join(ADMIN_PASSWORD_FILE);
    match fs::remove_file(&path) {
        Ok(()) => {
            log::info!(
                "removed {}: user '{ADMIN_USER}' has another password",
                path.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclChange, GrantChange};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gokv-acl-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = temp_dir("roundtrip");
        let acl = bootstrap(&dir, Acl::default(), 0, Some("pw")).unwrap();
        let acl = acl
            .apply(&AclChange::CreateUser {
                name: "bob".into(),
                hash: hash_password(b"b").unwrap(),
                default_partition: Some("orders".into()),
            })
            .unwrap()
            .apply(&AclChange::Grant(GrantChange {
                perms: Perms::READ,
                target: "orders".into(),
                user: "bob".into(),
            }))
            .unwrap();
        save(&dir, &acl, 7).unwrap();
        let loaded = load(&dir).unwrap().unwrap();
        assert_eq!(loaded.catalog_version, 7);
        let loaded = loaded.acl;
        assert_eq!(loaded.users, acl.users);
        assert_eq!(loaded.next_user_id, acl.next_user_id);
        let mode = fs::metadata(dir.join(USERS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.join(format!("{USERS_FILE}.tmp")).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_password_file_is_private_and_works() {
        let dir = temp_dir("generated");
        let acl = bootstrap(&dir, Acl::default(), 0, None).unwrap();
        let path = dir.join(ADMIN_PASSWORD_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let password = fs::read_to_string(&path).unwrap();
        let password = password.trim_end();
        assert_eq!(password.len(), GENERATED_LEN);
        let admin = acl.get(b"admin").unwrap();
        assert!(verify_password(&admin.hash, password.as_bytes()));
        assert!(admin.all.covers(Perms::ADMIN));
        // A second start keeps the same admin and file.
        let again = bootstrap(&dir, load(&dir).unwrap().unwrap().acl, 0, None).unwrap();
        assert_eq!(again.get(b"admin").unwrap().hash, admin.hash);
        // A configured password replaces it and removes the stale file.
        let set = bootstrap(&dir, load(&dir).unwrap().unwrap().acl, 0, Some("chosen")).unwrap();
        assert!(verify_password(&set.get(b"admin").unwrap().hash, b"chosen"));
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_without_default_partitions_loads_and_none_is_not_written() {
        let dir = temp_dir("older");
        let hash = hash_password(b"pw").unwrap();
        // As the release before default partitions wrote it.
        let older = format!(
            r#"{{"format":1,"catalog_version":3,"next_user_id":2,"users":[
                {{"id":1,"name":"bob","hash":"{hash}","grants":{{"p":["READ"]}}}}]}}"#
        );
        fs::write(dir.join(USERS_FILE), older).unwrap();
        let acl = load(&dir).unwrap().unwrap().acl;
        let bob = acl.get(b"bob").unwrap();
        assert_eq!(bob.default_partition, None);
        assert_eq!(bob.grant_list(), ["p:READ"]);
        // Written back without the field, so an older release still reads it.
        save(&dir, &acl, 3).unwrap();
        let text = fs::read_to_string(dir.join(USERS_FILE)).unwrap();
        assert!(!text.contains("default_partition"), "{text}");
        // A bad name in the field is refused, as a bad grant target is.
        let bad = text.replace(
            "\"grants\"",
            "\"default_partition\": \"no way\",\n      \"grants\"",
        );
        fs::write(dir.join(USERS_FILE), bad).unwrap();
        let e = load(&dir).unwrap_err();
        assert!(e.contains("invalid default partition name"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = temp_dir("corrupt");
        fs::write(dir.join(USERS_FILE), "{\"format\":1,").unwrap();
        assert!(load(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

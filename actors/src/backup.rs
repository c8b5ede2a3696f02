//! `keyward backup DIR` and `keyward restore DIR`: a consistent copy of an embedded node's
//! SQLite database, taken while the node serves (`VACUUM INTO`), with the avatars of its data
//! dir and a manifest (Keyward version, schema level, time, SHA-256 of every file); and its
//! restore into the data dir of a stopped node.
//!
//! The master key is never copied: it encrypts the signing keys and sealed secrets inside the
//! database, so a backup kept beside it would hand both to whoever reads it. The manifest
//! names the key only by an id derived from it, and is sealed with a MAC under a key derived
//! from it, so a restore can tell a wrong key from an altered backup.
//!
//! A node serving from a data dir holds `keyward.lock` there (shared, so several may); a
//! restore takes it exclusively, so it never writes under a running node.
//!
//! Refuses: PostgreSQL (pg_dump and pg_restore do that job), overwriting a backup, restoring
//! over a data dir in use, or over a non-empty one without `--force`, and restoring a backup
//! whose files do not match its manifest.
//!
//! NOTE: the file work here is blocking I/O, run from the CLI, never from an actor.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use keyward_config::Settings;
use keyward_storage::{migration_names, sqlite_file, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name in a backup.
pub const MANIFEST: &str = "manifest.json";
/// The database's file name in a backup.
const DATABASE: &str = "keyward.db";
/// The avatars' directory, in a data dir and in a backup.
const AVATARS: &str = "avatars";
/// In a data dir: held shared by every node serving from it, exclusively by a restore.
pub const LOCK_FILE: &str = "keyward.lock";
/// The master key an embedded node generates into its data dir.
const MASTER_KEY_FILE: &str = "master.key";
/// The manifest's format; a restore refuses any other.
const FORMAT: u32 = 1;

/// Why a backup or a restore did not happen (or stopped). Every message names the path or
/// setting at fault and what to do; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not possible as asked: the message says why and what to do instead.
    #[error("{0}")]
    Refused(String),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] keyward_storage::StorageError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn refused(message: impl Into<String>) -> BackupError {
    BackupError::Refused(message.into())
}

/// What a backup holds, written last (a directory without it is not a finished backup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The Keyward that made it.
    pub keyward_version: String,
    pub created_at: DateTime<Utc>,
    /// The last migration applied to the database copied (its schema level).
    pub migration: Option<String>,
    pub database: FileSum,
    /// The data dir's avatars, when it had an avatars directory.
    pub avatars: Option<TreeSum>,
    /// Names the master key of the node that was backed up (derived from it; it reveals
    /// nothing of the key): a restore with another key is refused.
    pub master_key_id: Option<String>,
    /// HMAC-SHA256 of this manifest without `seal`, under a key derived from the master key:
    /// a restore that has the key detects an altered manifest.
    pub seal: Option<String>,
}

/// One file: its name in the backup, size and SHA-256 (hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A directory tree: how many files and bytes, and the SHA-256 over each file's relative
/// path, size and SHA-256, in path order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeSum {
    pub dir: String,
    pub files: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// The master key this configuration uses, and where it comes from, without generating one.
fn existing_master_key(settings: &Settings) -> Result<Option<([u8; 32], String)>, BackupError> {
    let configured = settings
        .master_key_bytes()
        .map_err(|e| refused(e.to_string()))?;
    if let Some(k) = configured {
        let from = if settings.master_key.is_some() {
            "KEYWARD_MASTER_KEY"
        } else {
            "KEYWARD_MASTER_KEY_FILE"
        };
        return Ok(Some((k, from.to_owned())));
    }
    let path = settings.data_dir.join(MASTER_KEY_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    use base64::Engine as _;
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            refused(format!(
                "{}: not a base64 master key of 32 bytes",
                path.display()
            ))
        })?;
    Ok(Some((bytes, path.display().to_string())))
}

fn key_id(master: &[u8; 32]) -> String {
    hex::encode(&crate::tokens::derive_key(master, "backup: master key id")[..8])
}

fn seal_of(master: &[u8; 32], m: &Manifest) -> Result<String, BackupError> {
    let unsealed = Manifest {
        seal: None,
        ..m.clone()
    };
    let body = serde_json::to_vec(&unsealed)
        .map_err(|e| refused(format!("the manifest does not serialise: {e}")))?;
    let key = crate::tokens::derive_key(master, "backup: manifest seal");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .map_err(|e| refused(format!("the manifest seal: {e}")))?;
    mac.update(&body);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Copies `from` to a new file `to` (never over one), fsynced; its size and SHA-256.
fn copy_hashed(from: &Path, to: &Path) -> Result<(u64, String), BackupError> {
    let mut src = fs::File::open(from).map_err(io(from))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(io(to))?;
    let (mut hash, mut bytes, mut buf) = (Sha256::new(), 0u64, vec![0u8; 64 * 1024]);
    loop {
        let n = src.read(&mut buf).map_err(io(from))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io(to))?;
        bytes += n as u64;
    }
    dst.sync_all().map_err(io(to))?;
    Ok((bytes, hex::encode(hash.finalize())))
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = fs::File::open(path).map_err(io(path))?;
    let (mut hash, mut bytes, mut buf) = (Sha256::new(), 0u64, vec![0u8; 64 * 1024]);
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            return Ok((bytes, hex::encode(hash.finalize())));
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
}

/// The regular files under `root`, as sorted `/`-separated relative paths. Hidden names
/// (a rendition still being written is `.{key}.….tmp`) and symbolic links are left out.
fn files_under(root: &Path) -> Result<Vec<String>, BackupError> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), BackupError> {
        let dir = root.join(rel);
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type().map_err(io(&entry.path()))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// Sums a tree, copying each file into `copy_to` first when given (the sum is then the
/// copy's).
fn tree(root: &Path, copy_to: Option<&Path>) -> Result<TreeSum, BackupError> {
    let mut sum = Sha256::new();
    let (mut files, mut total) = (0u64, 0u64);
    for rel in files_under(root)? {
        let from = root.join(&rel);
        let (bytes, sha) = match copy_to {
            Some(dst) => {
                let to = dst.join(&rel);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                copy_hashed(&from, &to)?
            }
            None => hash_file(&from)?,
        };
        sum.update(format!("{rel}\0{bytes}\0{sha}\n").as_bytes());
        files += 1;
        total += bytes;
    }
    Ok(TreeSum {
        dir: AVATARS.to_owned(),
        files,
        bytes: total,
        sha256: hex::encode(sum.finalize()),
    })
}

/// The SQLite file the settings name, or why there is none to back up or restore.
fn database_file(settings: &Settings, doing: &str) -> Result<PathBuf, BackupError> {
    if !settings.is_sqlite() {
        return Err(refused(format!(
            "keyward {doing} works on an embedded node's SQLite database, and KEYWARD_DATABASE_URL names PostgreSQL: \
             use pg_dump (e.g. pg_dump --format=custom --file=keyward.dump \"$DATABASE_URL\") and pg_restore instead; \
             see \"Backup and restore\" in the README"
        )));
    }
    sqlite_file(&settings.database_url).ok_or_else(|| {
        refused(format!(
            "KEYWARD_DATABASE_URL: an in-memory database has nothing to {doing}"
        ))
    })
}

/// Creates `dir` for a backup (owner-only on Unix), or takes it if it exists and is empty.
fn fresh_dir(dir: &Path) -> Result<(), BackupError> {
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(refused(format!(
                "{} is not empty: back up into a new or empty directory (a backup never overwrites another)",
                dir.display()
            )));
        }
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(dir))
}

fn write_new(path: &Path, contents: &[u8]) -> Result<(), BackupError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(io(path))?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// `keyward backup DIR`: copies the node's database (consistent even while the node
/// writes), its avatars directory if any, and a manifest into `dir`, a new or empty directory.
/// Returns what it did, one line each, for the operator.
pub async fn backup(settings: &Settings, dir: &Path) -> Result<Vec<String>, BackupError> {
    let db_file = database_file(settings, "backup")?;
    if !db_file.is_file() {
        return Err(refused(format!(
            "there is no database at {} (KEYWARD_DATA_DIR / KEYWARD_DATABASE_URL): nothing to back up",
            db_file.display()
        )));
    }
    let key = existing_master_key(settings)?;
    fresh_dir(dir)?;
    let mut lines = Vec::new();
    let store = Store::connect(&settings.database_url).await?;
    let migration = store.migration_level().await?;
    let target = dir.join(DATABASE);
    let target_text = target.to_str().ok_or_else(|| {
        refused(format!(
            "{}: the backup directory's path must be valid UTF-8",
            dir.display()
        ))
    })?;
    store.vacuum_into(target_text).await?;
    drop(store);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).map_err(io(&target))?;
    }
    let (bytes, sha256) = hash_file(&target)?;
    lines.push(format!(
        "copied the database {} ({bytes} bytes, schema {}) into {}",
        db_file.display(),
        migration.as_deref().unwrap_or("empty"),
        target.display()
    ));
    let avatars_dir = settings.data_dir.join(AVATARS);
    let avatars = if let Some(endpoint) = &settings.avatars.s3_endpoint {
        lines.push(format!(
            "avatars are in the S3 store at {endpoint}, not in the data dir: back that bucket up with the store's own tools"
        ));
        None
    } else if avatars_dir.is_dir() {
        let to = dir.join(AVATARS);
        fs::create_dir_all(&to).map_err(io(&to))?;
        let sum = tree(&avatars_dir, Some(&to))?;
        lines.push(format!(
            "copied {} avatar files ({} bytes) into {}",
            sum.files,
            sum.bytes,
            to.display()
        ));
        Some(sum)
    } else {
        lines.push(format!(
            "no avatars directory at {}: none copied",
            avatars_dir.display()
        ));
        None
    };
    let mut manifest = Manifest {
        format: FORMAT,
        keyward_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: Utc::now(),
        migration,
        database: FileSum {
            file: DATABASE.to_owned(),
            bytes,
            sha256,
        },
        avatars,
        master_key_id: key.as_ref().map(|(k, _)| key_id(k)),
        seal: None,
    };
    if let Some((k, _)) = &key {
        manifest.seal = Some(seal_of(k, &manifest)?);
    }
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| refused(format!("the manifest does not serialise: {e}")))?;
    let path = dir.join(MANIFEST);
    write_new(&path, &text)?;
    lines.push(format!("wrote {} (SHA-256 of every file)", path.display()));
    lines.push(match &key {
        Some((_, from)) => format!(
            "the master key ({from}) is NOT in the backup: the signing keys and sealed secrets in it are encrypted with it, \
             so keep a copy of that key somewhere else (never beside the backup): without it the backup cannot be used"
        ),
        None => "no master key was found (KEYWARD_MASTER_KEY, KEYWARD_MASTER_KEY_FILE or the data dir's master.key): \
                 the node that uses this database has one; keep it somewhere else, never beside the backup"
            .to_owned(),
    });
    Ok(lines)
}

/// A node's hold on its data dir: shared with other nodes serving from the same directory,
/// and refused while a restore writes there. Released when dropped (or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

fn lock_file(data_dir: &Path) -> Result<(fs::File, PathBuf), BackupError> {
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let path = data_dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    Ok((file, path))
}

/// Takes a node's shared hold on `data_dir` (see [`DataDirLock`]); refused while a restore
/// holds it.
pub fn hold_data_dir(data_dir: &Path) -> Result<DataDirLock, BackupError> {
    let (file, path) = lock_file(data_dir)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(refused(format!(
            "KEYWARD_DATA_DIR {}: a restore is writing it ({} is held); start the node once it has finished",
            data_dir.display(),
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// Reads and checks a backup: its manifest, the key, every file's checksum. Nothing is
/// written.
fn verified(settings: &Settings, dir: &Path) -> Result<(Manifest, Vec<String>), BackupError> {
    let path = dir.join(MANIFEST);
    if !path.is_file() {
        return Err(refused(format!(
            "{} is missing: {} is not a Keyward backup, or one that did not finish; nothing was restored",
            path.display(),
            dir.display()
        )));
    }
    let text = fs::read(&path).map_err(io(&path))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        refused(format!(
            "{} does not parse ({e}): it was altered or damaged; nothing was restored",
            path.display()
        ))
    })?;
    if manifest.format != FORMAT {
        return Err(refused(format!(
            "{} is of format {}, this Keyward reads format {FORMAT}: restore it with the Keyward that made it ({})",
            path.display(),
            manifest.format,
            manifest.keyward_version
        )));
    }
    if let Some(m) = manifest
        .migration
        .as_ref()
        .filter(|m| !migration_names().contains(m))
    {
        return Err(refused(format!(
            "the backup's schema ({m}) is newer than this Keyward ({}) knows: restore it with Keyward {} or newer",
            env!("CARGO_PKG_VERSION"),
            manifest.keyward_version
        )));
    }
    let mut notes = Vec::new();
    match existing_master_key(settings)? {
        Some((key, from)) => {
            if manifest.master_key_id.as_ref().is_some_and(|id| *id != key_id(&key)) {
                return Err(refused(format!(
                    "the master key in use ({from}) is not the key of the node that made this backup: the signing keys \
                     and sealed secrets in it would not decrypt. Set KEYWARD_MASTER_KEY to that node's key; nothing was restored"
                )));
            }
            if let Some(seal) = &manifest.seal {
                if *seal != seal_of(&key, &manifest)? {
                    return Err(refused(format!(
                        "{} was altered (its seal does not match); nothing was restored",
                        path.display()
                    )));
                }
            }
            notes.push(match manifest.master_key_id {
                Some(_) => format!("the master key in use ({from}) is the backup's"),
                None => format!(
                    "the backup does not name its master key (none was at hand when it was made): make sure the key \
                     in use ({from}) is the one of the node that made it"
                ),
            });
        }
        None => notes.push(format!(
            "no master key is configured: before `keyward serve`, set KEYWARD_MASTER_KEY (or write {}) to the key of the \
             node that made the backup; a node started without it cannot read the restored signing keys",
            settings.data_dir.join(MASTER_KEY_FILE).display()
        )),
    }
    let db = dir.join(&manifest.database.file);
    if manifest.database.file != DATABASE || !db.is_file() {
        return Err(refused(format!(
            "{} is missing from the backup; nothing was restored",
            db.display()
        )));
    }
    let (bytes, sha256) = hash_file(&db)?;
    if (bytes, &sha256) != (manifest.database.bytes, &manifest.database.sha256) {
        return Err(refused(format!(
            "{} does not match the checksum in {} (altered or damaged); nothing was restored",
            db.display(),
            path.display()
        )));
    }
    if let Some(want) = &manifest.avatars {
        let avatars = dir.join(AVATARS);
        let got = if avatars.is_dir() {
            tree(&avatars, None)?
        } else {
            TreeSum {
                dir: AVATARS.to_owned(),
                files: 0,
                bytes: 0,
                sha256: String::new(),
            }
        };
        if got != *want {
            return Err(refused(format!(
                "{} does not match the checksum in {} (altered or damaged); nothing was restored",
                avatars.display(),
                path.display()
            )));
        }
    }
    Ok((manifest, notes))
}

/// What a data dir holds besides the lock and the master key (which a restore leaves there).
fn contents(data_dir: &Path, db_file: &Path) -> Result<Vec<String>, BackupError> {
    let mut found = Vec::new();
    if data_dir.is_dir() {
        for entry in fs::read_dir(data_dir).map_err(io(data_dir))? {
            let name = entry.map_err(io(data_dir))?.file_name();
            let name = name.to_string_lossy();
            if name != LOCK_FILE && name != MASTER_KEY_FILE {
                found.push(name.into_owned());
            }
        }
    }
    if db_file.exists() && !db_file.starts_with(data_dir) {
        found.push(db_file.display().to_string());
    }
    found.sort();
    Ok(found)
}

fn remove_if_there(path: &Path) -> Result<bool, BackupError> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(path)(e)),
    }
}

/// `keyward restore DIR`: checks the backup in `dir` against its manifest, then writes its
/// database and avatars into the data dir of a stopped node. Refuses a data dir a node is
/// serving from, and a non-empty one unless `force` (which replaces its database and
/// avatars and leaves the rest). Returns what it did, one line each.
pub async fn restore(
    settings: &Settings,
    dir: &Path,
    force: bool,
) -> Result<Vec<String>, BackupError> {
    let db_file = database_file(settings, "restore")?;
    let (manifest, notes) = verified(settings, dir)?;
    let data_dir = &settings.data_dir;
    let (lock, lock_path) = lock_file(data_dir)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(refused(format!(
                "KEYWARD_DATA_DIR {} is in use by a running keyward node (it holds {}): stop it before restoring",
                data_dir.display(),
                lock_path.display()
            )))
        }
        Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    let mut lines = vec![format!(
        "verified {} (Keyward {}, schema {}, made {}): every checksum matches",
        dir.display(),
        manifest.keyward_version,
        manifest.migration.as_deref().unwrap_or("empty"),
        manifest.created_at.to_rfc3339()
    )];
    let found = contents(data_dir, &db_file)?;
    if !found.is_empty() {
        if !force {
            return Err(refused(format!(
                "KEYWARD_DATA_DIR {} is not empty ({}): restore into an empty data dir, or pass --force to replace its \
                 database and avatars",
                data_dir.display(),
                found.join(", ")
            )));
        }
        let mut replaced = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db_file.clone().into_os_string();
            name.push(suffix);
            let path = PathBuf::from(name);
            if remove_if_there(&path)? {
                replaced.push(path.display().to_string());
            }
        }
        let avatars = data_dir.join(AVATARS);
        if remove_if_there(&avatars)? {
            replaced.push(avatars.display().to_string());
        }
        lines.push(format!(
            "--force: removed {} (anything else in the data dir is left as it was)",
            if replaced.is_empty() {
                "nothing".to_owned()
            } else {
                replaced.join(", ")
            }
        ));
    }
    if let Some(parent) = db_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut partial = db_file.clone().into_os_string();
    partial.push(".restoring");
    let partial = PathBuf::from(partial);
    remove_if_there(&partial)?;
    let (bytes, sha256) = copy_hashed(&dir.join(DATABASE), &partial)?;
    if sha256 != manifest.database.sha256 {
        let _ = fs::remove_file(&partial);
        return Err(refused(format!(
            "{} changed while it was being restored; nothing was restored",
            dir.join(DATABASE).display()
        )));
    }
    fs::rename(&partial, &db_file).map_err(io(&db_file))?;
    let store = Store::connect(&settings.database_url).await?;
    let level = store.migration_level().await?;
    drop(store);
    lines.push(format!(
        "restored the database to {} ({bytes} bytes, schema {})",
        db_file.display(),
        level.as_deref().unwrap_or("empty")
    ));
    if manifest.avatars.is_some() {
        let to = data_dir.join(AVATARS);
        fs::create_dir_all(&to).map_err(io(&to))?;
        let sum = tree(&dir.join(AVATARS), Some(&to))?;
        lines.push(format!(
            "restored {} avatar files ({} bytes) to {}",
            sum.files,
            sum.bytes,
            to.display()
        ));
    }
    lines.extend(notes);
    lines.push(
        "start the node with `keyward serve` (it applies any newer migrations at start)".to_owned(),
    );
    drop(lock);
    Ok(lines)
}

#[cfg(test)]
mod tests;

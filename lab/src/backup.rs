//! Backups: one archive of the store and the folders it points at, and its restore.
//!
//! [`create`] writes a tar archive of
//! - the store, copied consistently while others write: SQLite's `VACUUM INTO` (one read
//!   transaction) or `pg_dump` (one snapshot), as `store.sqlite` or `store.pgdump`;
//! - every registered model and agent directory and every session folder (its recording), under
//!   `folders/model-ID/` and `folders/session-ID/`; deployments, their risk limits, experiments
//!   and accounts are in the store;
//! - `manifest.json` (last): every file's size and SHA-256, and each folder's original path.
//!
//! The archive is written beside `--out` and renamed into place once complete. [`restore`]
//! unpacks into an empty folder, checks every file against the manifest before anything is
//! used (a mismatch names the file, and the folder is removed again), puts the store in place
//! (a SQLite file in the folder, or `pg_restore` into an empty PostgreSQL database), applies
//! newer migrations, and points the models and sessions at their restored folders.
//!
//! A folder written while the backup runs (a session appending to its recording) is copied as
//! far as it was when the copy read it; the store's copy is of one moment.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use dexlab_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{LabError, Result};

/// The archive's layout version.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its path in the archive.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A folder the store points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderEntry {
    /// `model` (models and RL agents) or `session`.
    pub kind: String,
    /// Its row's id.
    pub id: i64,
    /// Where it was.
    pub original: String,
    /// Where it is in the archive.
    pub archived: String,
}

/// What an archive holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// `store.sqlite` or `store.pgdump`.
    pub store_file: String,
    pub files: Vec<FileEntry>,
    pub folders: Vec<FolderEntry>,
}

/// What a backup or a restore did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub archive: PathBuf,
    pub backend: String,
    pub files: usize,
    pub bytes: u64,
    pub folders: usize,
    /// Folders the store pointed at that were not there (left out, said so).
    pub missing: Vec<String>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_owned(),
        source,
    }
}

fn refused(m: impl Into<String>) -> LabError {
    LabError::Refused(m.into())
}

/// A PostgreSQL URL without its password, and the password (for `PGPASSWORD`: never on a
/// command line, where other users of the machine could read it).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (a, h),
        None => return (url.to_owned(), None),
    };
    match auth.split_once(':') {
        Some((user, password)) => (
            format!("{scheme}://{user}@{host}"),
            Some(password.to_owned()),
        ),
        None => (url.to_owned(), None),
    }
}

/// Runs a PostgreSQL client tool on `url`; its error output is shown, the password never.
fn pg_tool(tool: &str, args: &[&str], url: &str) -> Result<()> {
    let (bare, password) = split_password(url);
    let mut c = Command::new(tool);
    c.args(args).arg(format!("--dbname={bare}"));
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    let out = c.output().map_err(|e| {
        refused(format!(
            "running {tool}: {e} (Debian's postgresql-client has it; scripts/setup.sh installs it)"
        ))
    })?;
    if !out.status.success() {
        return Err(refused(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Appends `file` to the archive as `name`, hashing exactly the bytes written.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    file: &Path,
    name: &str,
    entries: &mut Vec<FileEntry>,
) -> Result<()> {
    let f = std::fs::File::open(file).map_err(io(file))?;
    let bytes = f.metadata().map_err(io(file))?.len();
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    // Exactly `bytes` bytes even if the file grows meanwhile (a recording being appended).
    let mut hashing = HashingReader {
        inner: f.take(bytes),
        hash: Sha256::new(),
        read: 0,
    };
    tar.append_data(&mut header, name, &mut hashing)
        .map_err(io(file))?;
    if hashing.read != bytes {
        return Err(refused(format!(
            "{} shrank while it was copied ({} of {bytes} bytes)",
            file.display(),
            hashing.read
        )));
    }
    entries.push(FileEntry {
        path: name.to_owned(),
        bytes,
        sha256: hex::encode(hashing.hash.finalize()),
    });
    Ok(())
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Every file under `dir`, as paths relative to it, sorted; lock files left out.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let p = e.path();
            let t = e.file_type().map_err(io(&p))?;
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file()
                && !e.file_name().to_string_lossy().ends_with(".dexlab-lock")
                && let Ok(rel) = p.strip_prefix(dir)
            {
                out.push(rel.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a backup of `store` and its folders to `out`, which must not exist.
pub async fn create(store: &Store, out: &Path) -> Result<Summary> {
    if out.exists() {
        return Err(refused(format!(
            "{} exists; a backup never replaces a file",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".dexlab-backup-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let backend = store.backend().to_owned();
    let store_file = if backend == "sqlite" {
        let f = staging.path().join("store.sqlite");
        store.snapshot_sqlite(&f).await?;
        "store.sqlite"
    } else {
        let f = staging.path().join("store.pgdump");
        let target = f.to_string_lossy().into_owned();
        let url = store.connection_url().to_owned();
        tokio::task::spawn_blocking(move || {
            pg_tool(
                "pg_dump",
                &[
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    &format!("--file={target}"),
                ],
                &url,
            )
        })
        .await
        .map_err(|e| refused(format!("pg_dump: {e}")))??;
        "store.pgdump"
    };
    let mut folders = Vec::new();
    let mut missing = Vec::new();
    for m in store.list_models().await? {
        folders.push(("model", m.id, m.model.dir.clone()));
    }
    for s in store.list_sessions().await? {
        folders.push(("session", s.id, s.dir.clone()));
    }
    let partial = staging.path().join("archive.tar");
    let store_path = staging.path().join(store_file);
    let written = tokio::task::spawn_blocking(move || -> Result<(Manifest, u64, Vec<String>)> {
        let file = std::fs::File::create(&partial).map_err(io(&partial))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut entries = Vec::new();
        append_file(&mut tar, &store_path, store_file, &mut entries)?;
        let mut kept = Vec::new();
        for (kind, id, dir) in folders {
            let path = PathBuf::from(&dir);
            if !path.is_dir() {
                missing.push(format!("{kind} {id}: {dir}"));
                continue;
            }
            let archived = format!("folders/{kind}-{id}");
            for rel in files_under(&path)? {
                let name = format!("{archived}/{}", rel.to_string_lossy());
                append_file(&mut tar, &path.join(&rel), &name, &mut entries)?;
            }
            kept.push(FolderEntry {
                kind: kind.to_owned(),
                id,
                original: dir,
                archived,
            });
        }
        let manifest = Manifest {
            format: FORMAT,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            backend: backend.clone(),
            store_file: store_file.to_owned(),
            files: entries,
            folders: kept,
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| LabError::Json {
            what: "the backup manifest".into(),
            source: e,
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, MANIFEST, text.as_slice())
            .map_err(io(&partial))?;
        let mut w = tar.into_inner().map_err(io(&partial))?;
        w.flush().map_err(io(&partial))?;
        w.into_inner()
            .map_err(|e| io(&partial)(e.into_error()))?
            .sync_all()
            .map_err(io(&partial))?;
        let bytes = manifest.files.iter().map(|f| f.bytes).sum();
        Ok((manifest, bytes, missing))
    })
    .await
    .map_err(|e| refused(format!("writing the archive: {e}")))??;
    let (manifest, bytes, missing) = written;
    std::fs::rename(staging.path().join("archive.tar"), out).map_err(io(out))?;
    Ok(Summary {
        archive: out.to_owned(),
        backend: manifest.backend,
        files: manifest.files.len(),
        bytes,
        folders: manifest.folders.len(),
        missing,
    })
}

/// Where a restore puts the store.
#[derive(Debug, Clone)]
pub enum Target {
    /// A SQLite file in the restored folder (`dexlab.sqlite`); only from a SQLite backup.
    Sqlite,
    /// An empty PostgreSQL database; only from a PostgreSQL backup.
    Postgres(String),
}

/// Unpacks `archive` into `into` (missing or empty), checks it, and puts the store in place;
/// returns the summary and the restored store's URL.
pub async fn restore(archive: &Path, into: &Path, target: Target) -> Result<(Summary, String)> {
    if into.exists() && std::fs::read_dir(into).map_err(io(into))?.next().is_some() {
        return Err(refused(format!(
            "{} is not empty; a restore goes into an empty folder",
            into.display()
        )));
    }
    let created = !into.exists();
    std::fs::create_dir_all(into).map_err(io(into))?;
    let into = std::fs::canonicalize(into).map_err(io(into))?;
    let outcome = restore_into(archive, &into, target).await;
    if outcome.is_err() {
        // Nothing half restored is left behind.
        if created {
            let _ = std::fs::remove_dir_all(&into);
        } else if let Ok(entries) = std::fs::read_dir(&into) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    outcome
}

async fn restore_into(archive: &Path, into: &Path, target: Target) -> Result<(Summary, String)> {
    let (a, dir) = (archive.to_owned(), into.to_owned());
    let manifest = tokio::task::spawn_blocking(move || -> Result<Manifest> {
        let f = std::fs::File::open(&a).map_err(io(&a))?;
        let mut tar = tar::Archive::new(std::io::BufReader::new(f));
        for entry in tar.entries().map_err(io(&a))? {
            let mut entry = entry.map_err(io(&a))?;
            // `unpack_in` refuses paths that leave the folder.
            if !entry.unpack_in(&dir).map_err(io(&a))? {
                return Err(refused(format!(
                    "{}: an entry leads outside the folder",
                    a.display()
                )));
            }
        }
        let m = dir.join(MANIFEST);
        let text = std::fs::read(&m).map_err(|_| {
            refused(format!(
                "{} has no {MANIFEST}: not a dexlab backup, or cut short",
                a.display()
            ))
        })?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| LabError::Json {
            what: format!("{} in {}", MANIFEST, a.display()),
            source: e,
        })?;
        if manifest.format != FORMAT {
            return Err(refused(format!(
                "{} is backup format {}; this dexlab reads format {FORMAT}",
                a.display(),
                manifest.format
            )));
        }
        for f in &manifest.files {
            let p = dir.join(&f.path);
            let file = std::fs::File::open(&p)
                .map_err(|_| refused(format!("{} is missing from the archive", f.path)))?;
            // Streamed: a session's recording can be larger than memory wants to hold.
            let mut hashing = HashingReader {
                inner: file,
                hash: Sha256::new(),
                read: 0,
            };
            std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io(&p))?;
            let sha = hex::encode(hashing.hash.finalize());
            if hashing.read != f.bytes || sha != f.sha256 {
                return Err(refused(format!(
                    "{} does not match the manifest ({} bytes, SHA-256 {sha}; the manifest says \
                     {} bytes, {}): the archive is damaged",
                    f.path, hashing.read, f.bytes, f.sha256
                )));
            }
        }
        Ok(manifest)
    })
    .await
    .map_err(|e| refused(format!("reading the archive: {e}")))??;
    let store_path = into.join(&manifest.store_file);
    let url = match (&target, manifest.backend.as_str()) {
        (Target::Sqlite, "sqlite") => {
            let file = into.join("dexlab.sqlite");
            std::fs::rename(&store_path, &file).map_err(io(&file))?;
            format!("sqlite://{}", file.display())
        }
        (Target::Postgres(url), "postgres") => {
            if !Store::postgres_is_empty(url).await? {
                return Err(refused(
                    "the target PostgreSQL database is not empty; restore into a new one",
                ));
            }
            let (u, dump) = (url.clone(), store_path.to_string_lossy().into_owned());
            tokio::task::spawn_blocking(move || {
                pg_tool(
                    "pg_restore",
                    &[
                        "--no-owner",
                        "--no-privileges",
                        "--clean",
                        "--if-exists",
                        &dump,
                    ],
                    &u,
                )
            })
            .await
            .map_err(|e| refused(format!("pg_restore: {e}")))??;
            std::fs::remove_file(&store_path).map_err(io(&store_path))?;
            url.clone()
        }
        (Target::Sqlite, _) => {
            return Err(refused(
                "this is a PostgreSQL backup: restore it into an empty PostgreSQL database \
                 (--database-url)",
            ));
        }
        (Target::Postgres(_), _) => {
            return Err(refused(
                "this is a SQLite backup: restore it without --database-url (into a SQLite file)",
            ));
        }
    };
    let store = Store::connect(&url).await?;
    for f in &manifest.folders {
        let dir = into.join(&f.archived);
        let dir = dir.to_string_lossy();
        match f.kind.as_str() {
            "model" => store.relocate_model(f.id, &dir).await?,
            "session" => store.relocate_session(f.id, &dir).await?,
            other => {
                return Err(refused(format!(
                    "the manifest names a folder of kind {other:?}"
                )));
            }
        }
    }
    store.close().await;
    let bytes = manifest.files.iter().map(|f| f.bytes).sum();
    Ok((
        Summary {
            archive: archive.to_owned(),
            backend: manifest.backend,
            files: manifest.files.len(),
            bytes,
            folders: manifest.folders.len(),
            missing: Vec::new(),
        },
        url,
    ))
}

#[cfg(test)]
mod tests {
    use super::split_password;

    #[test]
    fn passwords_leave_the_url() {
        assert_eq!(
            split_password("postgres://u:s3cr:et@h:5432/db"),
            (
                "postgres://u@h:5432/db".to_owned(),
                Some("s3cr:et".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://u@h/db"),
            ("postgres://u@h/db".to_owned(), None)
        );
    }
}

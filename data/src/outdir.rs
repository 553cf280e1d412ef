//! Output folders that are never mixed, never half written and never written by two processes.
//!
//! Every command that writes a folder (`data import`, `data ingest`, `features build`, `evolve`,
//! `train`, `rl train`, `report`) goes through here:
//!
//! * [`OutputLock`] takes an exclusive advisory lock (`flock`) on a file beside the folder,
//!   `.NAME.dexlab-lock`, for as long as the command runs. A second writer is refused with an
//!   error that names the holder (pid, command, start time). The kernel drops the lock when the
//!   holder dies, so a killed run never leaves the folder locked.
//! * [`Staged`] builds a new folder under a temporary name beside the target and puts it in place
//!   only when it is complete. An existing non-empty target is refused unless the caller was told to
//!   replace it (`--force`); then the new folder takes its place in one `renameat2(RENAME_EXCHANGE)`
//!   (on Linux; elsewhere two renames), so a reader sees the old folder or the new one, never a mix,
//!   and the old one is deleted only after the swap.
//! * Writers that resume in place (`data ingest`, `evolve`) take the lock and decide themselves
//!   whether what is there is a run they can prove is the same; [`is_empty_or_absent`] and
//!   [`clear`] help them.
//!
//! The holder's description holds the program's subcommand words only, never its flags or their
//! values (an RPC URL can carry a key).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// An exclusive lock on an output folder, held until dropped.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Locks `out` for writing, or says who holds it. `out` need not exist; its parent is created.
    pub fn acquire(out: &Path) -> Result<Self> {
        let path = sibling(out, "dexlab-lock")?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        // Another process may delete and recreate the lock file between our open and our lock
        // (see `Drop`): lock, then check that the path still names the file we locked.
        for _ in 0..100 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| DataError::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(DataError::Locked {
                        path: out.to_path_buf(),
                        holder: if holder.is_empty() {
                            "another process".into()
                        } else {
                            holder.to_owned()
                        },
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(DataError::io(&path, e)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0).map_err(|e| DataError::io(&path, e))?;
            file.rewind().map_err(|e| DataError::io(&path, e))?;
            writeln!(file, "{}", holder_description()).map_err(|e| DataError::io(&path, e))?;
            return Ok(Self { file, path });
        }
        Err(DataError::Locked {
            path: out.to_path_buf(),
            holder: "processes that keep recreating its lock file".into(),
        })
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock: a process that opened the old file and locks it
        // after us sees that the path no longer names it and starts over.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// `pid N, \`dexlab data import\`, since UNIX-SECONDS`: the subcommand words only.
fn holder_description() -> String {
    let words: Vec<String> = std::env::args()
        .enumerate()
        .take_while(|(i, a)| *i == 0 || !a.starts_with('-'))
        .take(4)
        .map(|(i, a)| {
            if i == 0 {
                Path::new(&a)
                    .file_name()
                    .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                a
            }
        })
        .collect();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "pid {} (`{}`), since unix time {since}",
        std::process::id(),
        words.join(" ")
    )
}

/// `PARENT/.NAME.SUFFIX` for `out = PARENT/NAME`.
fn sibling(out: &Path, suffix: &str) -> Result<PathBuf> {
    let name = out.file_name().ok_or_else(|| DataError::Dataset {
        path: out.to_path_buf(),
        message: "the output must name a folder (it ends in `..` or `/`)".into(),
    })?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.{suffix}", name.to_string_lossy())))
}

/// Whether `path` is missing or an empty folder. A file at `path` is neither.
pub fn is_empty_or_absent(path: &Path) -> Result<bool> {
    match fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// Removes a folder the caller was told to replace (`--force`), by first renaming it aside so a
/// failure half way leaves no half-deleted folder under its own name. Call it holding the lock.
pub fn clear(out: &Path) -> Result<()> {
    if is_empty_or_absent(out)? {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(not_a_folder(out));
    }
    let old = sibling(out, &format!("old-{}", std::process::id()))?;
    fs::rename(out, &old).map_err(|e| DataError::io(out, e))?;
    fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))
}

fn not_a_folder(out: &Path) -> DataError {
    DataError::Dataset {
        path: out.to_path_buf(),
        message: "is a file, not a folder: not replacing it".into(),
    }
}

/// The error for a non-empty output folder the caller was not told to replace.
pub fn exists_error(out: &Path, what: &str) -> DataError {
    DataError::OutputExists {
        path: out.to_path_buf(),
        what: what.to_owned(),
    }
}

/// A new folder built beside its target and put in place by [`Staged::commit`]. Dropped without
/// a commit, it removes what it wrote and leaves the target as it was.
#[derive(Debug)]
pub struct Staged {
    out: PathBuf,
    tmp: PathBuf,
    committed: bool,
    _lock: OutputLock,
}

impl Staged {
    /// Locks `out` and creates its staging folder. A non-empty `out` is refused unless `replace`;
    /// `what` names the output in that error (`a dataset`, `a feature folder`).
    pub fn begin(out: &Path, replace: bool, what: &str) -> Result<Self> {
        let lock = OutputLock::acquire(out)?;
        if out.exists() && !out.is_dir() {
            return Err(not_a_folder(out));
        }
        if !replace && !is_empty_or_absent(out)? {
            return Err(exists_error(out, what));
        }
        // Staging folders of killed runs: nobody else can be writing them while we hold the lock.
        let prefix = sibling(out, "partial-")?;
        if let (Some(dir), Some(prefix)) = (prefix.parent(), prefix.file_name()) {
            let prefix = prefix.to_string_lossy();
            for entry in fs::read_dir(dir)
                .map_err(|e| DataError::io(dir, e))?
                .flatten()
            {
                if entry.file_name().to_string_lossy().starts_with(&*prefix) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let tmp = sibling(out, &format!("partial-{}", std::process::id()))?;
        fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            committed: false,
            _lock: lock,
        })
    }

    /// Where to write the new folder's contents.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The folder it will become.
    pub fn target(&self) -> &Path {
        &self.out
    }

    /// Puts the new folder in place of the target, atomically where the OS allows.
    pub fn commit(mut self) -> Result<PathBuf> {
        if is_empty_or_absent(&self.out)? {
            if self.out.exists() {
                fs::remove_dir(&self.out).map_err(|e| DataError::io(&self.out, e))?;
            }
            fs::rename(&self.tmp, &self.out).map_err(|e| DataError::io(&self.out, e))?;
        } else {
            exchange(&self.tmp, &self.out)?;
            // `tmp` now holds the old folder.
            fs::remove_dir_all(&self.tmp).map_err(|e| DataError::io(&self.tmp, e))?;
        }
        self.committed = true;
        Ok(self.out.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Swaps two existing paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); elsewhere, or on a
/// file system without it, `b` is moved aside first, so `b`'s name is briefly absent but nothing
/// is ever mixed.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(()),
            // A file system without RENAME_EXCHANGE: fall back to two renames.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(DataError::io(b, e.into())),
        }
    }
    let aside = sibling(b, &format!("old-{}", std::process::id()))?;
    fs::rename(b, &aside).map_err(|e| DataError::io(b, e))?;
    if let Err(e) = fs::rename(a, b) {
        let _ = fs::rename(&aside, b);
        return Err(DataError::io(b, e));
    }
    fs::rename(&aside, a).map_err(|e| DataError::io(a, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_second_writer_is_refused_with_the_holder_named() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("ds");
        let first = OutputLock::acquire(&out).unwrap();
        let err = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(err.contains("being written by pid"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        // Released: the next writer gets it, and no lock file is left behind afterwards.
        drop(OutputLock::acquire(&out).unwrap());
        assert!(!t.path().join(".ds.dexlab-lock").exists());
    }

    #[test]
    fn a_non_empty_folder_is_refused_without_force_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("ds");
        write(&out, "old.parquet", "old");
        let err = Staged::begin(&out, false, "a dataset")
            .unwrap_err()
            .to_string();
        assert!(err.contains("already holds a dataset"), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert_eq!(fs::read_to_string(out.join("old.parquet")).unwrap(), "old");
        // Nothing else is left beside it.
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn force_replaces_the_whole_folder_and_an_abandoned_stage_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("ds");
        write(&out, "old.parquet", "old");
        write(&out.join("sub"), "keep", "old");
        let s = Staged::begin(&out, true, "a dataset").unwrap();
        write(s.path(), "new.parquet", "new");
        drop(s);
        assert!(out.join("old.parquet").exists());
        let s = Staged::begin(&out, true, "a dataset").unwrap();
        write(s.path(), "new.parquet", "new");
        assert_eq!(s.commit().unwrap(), out);
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["new.parquet".to_owned()]);
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1, "no leftovers");
    }

    #[test]
    fn an_empty_or_missing_target_needs_no_force() {
        let t = tempfile::tempdir().unwrap();
        for out in [t.path().join("missing/deeper"), t.path().join("empty")] {
            fs::create_dir_all(t.path().join("empty")).unwrap();
            let s = Staged::begin(&out, false, "a dataset").unwrap();
            write(s.path(), "x", "1");
            s.commit().unwrap();
            assert_eq!(fs::read_to_string(out.join("x")).unwrap(), "1");
        }
    }

    #[test]
    fn a_file_in_the_way_is_never_replaced() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("ds");
        fs::write(&out, "precious").unwrap();
        let err = Staged::begin(&out, true, "a dataset")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a file"), "{err}");
        assert_eq!(fs::read_to_string(&out).unwrap(), "precious");
        assert!(clear(&out).is_err());
    }

    #[test]
    fn clear_removes_a_folder_and_tolerates_a_missing_one() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("ev");
        write(&out, "checkpoint.json", "{}");
        clear(&out).unwrap();
        assert!(!out.exists());
        clear(&out).unwrap();
    }
}

//! Folders in the object store, addressed by content: a manifest object `bundle/<hash>` lists
//! the files (relative path, SHA-256, size), each stored once as `file/<sha256>`. The hash is the
//! SHA-256 of the manifest, so the same files give the same hash on every machine.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{BUNDLES_BUCKET, Queue, QueueError, Result};

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// Relative to the folder, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// What a bundle holds, in path order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub files: Vec<BundleFile>,
}

impl BundleManifest {
    /// Every regular file under `dir` (names starting with `.` left out: locks, temporary
    /// files), hashed.
    pub fn of_dir(dir: &Path) -> Result<BundleManifest> {
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(BundleManifest { files })
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_bytes()))
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serialises")
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<BundleFile>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| QueueError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| QueueError::io(dir, e))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| QueueError::io(&path, e))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("walked from root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(BundleFile {
                path: rel,
                sha256: sha256_file(&path)?,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| QueueError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| QueueError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn manifest_name(hash: &str) -> String {
    format!("bundle/{hash}")
}

fn file_name(sha: &str) -> String {
    format!("file/{sha}")
}

/// A relative path from a manifest, refused when it could leave the folder.
fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}

impl Queue {
    /// Uploads the folder `dir` (only the files the store does not hold yet) and returns its
    /// bundle hash.
    pub async fn push_dir(&self, dir: &Path) -> Result<String> {
        let d = dir.to_path_buf();
        let manifest = tokio::task::spawn_blocking(move || BundleManifest::of_dir(&d))
            .await
            .expect("hashing does not panic")?;
        let hash = manifest.hash();
        if self.bundles.info(manifest_name(&hash)).await.is_ok() {
            return Ok(hash);
        }
        for f in &manifest.files {
            let name = file_name(&f.sha256);
            if self.bundles.info(&name).await.is_ok() {
                continue;
            }
            let path = dir.join(&f.path);
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| QueueError::io(&path, e))?;
            self.bundles
                .put(name.as_str(), &mut file)
                .await
                .map_err(|e| QueueError::nats(format!("uploading {}", path.display()), e))?;
        }
        let bytes = manifest.to_bytes();
        self.bundles
            .put(manifest_name(&hash).as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| QueueError::nats(format!("uploading the manifest of {hash}"), e))?;
        Ok(hash)
    }

    /// The folder of bundle `hash` under `cache` (`cache/<hash>`), downloaded and checked
    /// first when it is not there yet. A download is written to a temporary folder and renamed
    /// into place whole, so a killed worker leaves no half folder behind.
    pub async fn fetch_dir(&self, hash: &str, cache: &Path) -> Result<PathBuf> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QueueError::BundleCorrupt {
                hash: hash.into(),
                message: "not a bundle hash (64 hex digits)".into(),
            });
        }
        let target = cache.join(hash);
        if target.is_dir() {
            return Ok(target);
        }
        let corrupt = |message: String| QueueError::BundleCorrupt {
            hash: hash.into(),
            message,
        };
        let manifest_bytes = match self.bundles.get(manifest_name(hash)).await {
            Ok(mut o) => {
                let mut v = Vec::new();
                o.read_to_end(&mut v)
                    .await
                    .map_err(|e| QueueError::nats(format!("reading bundle {hash}"), e))?;
                v
            }
            Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => {
                return Err(QueueError::BundleMissing {
                    hash: hash.into(),
                    bucket: BUNDLES_BUCKET,
                    url: self.url.clone(),
                });
            }
            Err(e) => return Err(QueueError::nats(format!("reading bundle {hash}"), e)),
        };
        let manifest: BundleManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| corrupt(format!("unreadable manifest: {e}")))?;
        if manifest.hash() != hash {
            return Err(corrupt("the manifest does not hash to its name".into()));
        }
        std::fs::create_dir_all(cache).map_err(|e| QueueError::io(cache, e))?;
        let tmp = cache.join(format!(".tmp-{hash}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let fetched = self.fetch_files(&manifest, hash, &tmp).await;
        if let Err(e) = fetched {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, &target) {
            Ok(()) => Ok(target),
            // Another task of this machine got there first: same content.
            Err(_) if target.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(target)
            }
            Err(e) => Err(QueueError::io(&target, e)),
        }
    }

    async fn fetch_files(&self, manifest: &BundleManifest, hash: &str, tmp: &Path) -> Result<()> {
        for f in &manifest.files {
            let rel = safe_relative(&f.path).ok_or_else(|| QueueError::BundleCorrupt {
                hash: hash.into(),
                message: format!("file path `{}` leaves the folder", f.path),
            })?;
            let path = tmp.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| QueueError::io(parent, e))?;
            }
            let mut obj = self.bundles.get(file_name(&f.sha256)).await.map_err(|e| {
                if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound {
                    QueueError::BundleCorrupt {
                        hash: hash.into(),
                        message: format!("file {} ({}) is not in the store", f.path, f.sha256),
                    }
                } else {
                    QueueError::nats(format!("reading {} of bundle {hash}", f.path), e)
                }
            })?;
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(|e| QueueError::io(&path, e))?;
            let mut h = Sha256::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = obj
                    .read(&mut buf)
                    .await
                    .map_err(|e| QueueError::nats(format!("reading {} of {hash}", f.path), e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                size += n as u64;
                out.write_all(&buf[..n])
                    .await
                    .map_err(|e| QueueError::io(&path, e))?;
            }
            out.sync_all().await.map_err(|e| QueueError::io(&path, e))?;
            let got = hex::encode(h.finalize());
            if got != f.sha256 || size != f.size {
                return Err(QueueError::BundleCorrupt {
                    hash: hash.into(),
                    message: format!(
                        "file {} came back as {size} bytes with SHA-256 {got}, not {} bytes \
                         with {}",
                        f.path, f.size, f.sha256
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_files_relative_and_leaves_hidden_ones_out() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("logs")).unwrap();
        std::fs::write(d.path().join("pools.parquet"), b"pools").unwrap();
        std::fs::write(d.path().join("logs/000.parquet"), b"logs").unwrap();
        std::fs::write(d.path().join(".lock"), b"").unwrap();
        let m = BundleManifest::of_dir(d.path()).unwrap();
        let paths: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["logs/000.parquet", "pools.parquet"]);
        let h = m.hash();
        std::fs::write(d.path().join("pools.parquet"), b"pools!").unwrap();
        assert_ne!(BundleManifest::of_dir(d.path()).unwrap().hash(), h);
    }

    #[test]
    fn manifest_paths_cannot_leave_the_folder() {
        assert!(safe_relative("logs/a.parquet").is_some());
        for bad in ["", "../x", "/etc/passwd", "a/../../b"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }
}

//! Finding the chain tooling that `scripts/setup.sh` installs: the anvil binary and the compiled
//! DEX contracts, both under the project-local `.dexlab/` folder.

use std::path::{Path, PathBuf};

use alloy::primitives::Bytes;
use serde::Deserialize;

use crate::error::{DataError, Result};

/// The command that installs what this module looks for.
pub const SETUP_COMMAND: &str = "scripts/setup.sh";

/// The `.dexlab/` folder: `$DEXLAB_HOME`, else the nearest one above the working directory, else
/// the one of the source tree this binary was built from.
pub fn dexlab_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("DEXLAB_HOME") {
        return Some(PathBuf::from(h));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let cand = dir.join(".dexlab");
            if cand.is_dir() {
                return Some(cand);
            }
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".dexlab");
    built.is_dir().then_some(built)
}

/// The anvil binary: `$DEXLAB_ANVIL`, `.dexlab/bin/anvil`, or `anvil` on `PATH`.
pub fn find_anvil() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DEXLAB_ANVIL") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(DataError::Tooling(format!(
                "DEXLAB_ANVIL={} does not exist; unset it or run `{SETUP_COMMAND}`",
                p.display()
            )))
        };
    }
    if let Some(home) = dexlab_home() {
        let p = home.join("bin").join("anvil");
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("anvil");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(DataError::Tooling(format!(
        "anvil not found in .dexlab/bin, on PATH or at $DEXLAB_ANVIL; install it with `{SETUP_COMMAND}`"
    )))
}

/// A compiled contract as `tools/compile.js` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    #[serde(rename = "contractName")]
    pub contract_name: String,
    pub bytecode: Bytes,
    /// Runtime code (our own contracts only; the npm artifacts are copied as shipped).
    #[serde(rename = "deployedBytecode", default)]
    pub deployed_bytecode: Option<Bytes>,
    #[serde(default)]
    pub source: String,
    /// The contract's ABI as the artifact holds it (JSON).
    #[serde(default)]
    pub abi: serde_json::Value,
}

/// Loads `.dexlab/artifacts/<name>.json`.
pub fn artifact(name: &str) -> Result<Artifact> {
    let home = dexlab_home().ok_or_else(|| {
        DataError::Tooling(format!("no .dexlab folder found (looked at $DEXLAB_HOME and above the working directory); run `{SETUP_COMMAND}`"))
    })?;
    let path = home.join("artifacts").join(format!("{name}.json"));
    if !path.is_file() {
        return Err(DataError::Tooling(format!(
            "{} is missing; run `{SETUP_COMMAND}`",
            path.display()
        )));
    }
    let a: Artifact = crate::dataset::read_json(&path)?;
    if a.bytecode.is_empty() {
        return Err(DataError::Tooling(format!(
            "{}: empty bytecode; run `{SETUP_COMMAND}` again",
            path.display()
        )));
    }
    Ok(a)
}

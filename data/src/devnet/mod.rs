//! A local chain with the real DEX contracts and a reproducible market on top.
//!
//! [`AnvilProcess`] runs anvil with manual mining and a fixed genesis timestamp, so that every block
//! (and so every block hash) depends only on what we send: same seed, same chain. [`deploy`] puts
//! the npm bytecode of Uniswap V2 (twice, as `uniswap-v2` and `baseswap`), Uniswap V3 and
//! PancakeSwap V3 on it with tokens and liquidity; [`market`] then mines blocks of noise and
//! informed trading against a latent reference price.

mod anvil;
mod bindings;
mod deploy;
pub mod market;

pub use anvil::AnvilProcess;
pub use deploy::{DEFAULT_PRIORITY_FEE, Deployment, INFORMED, NOISE, deploy};

use std::path::PathBuf;

use crate::error::{DataError, Result};
use crate::manifest::ChainManifest;

/// `dexlab chain up` options, validated.
#[derive(Debug, Clone)]
pub struct ChainUpConfig {
    pub port: u16,
    pub seed: u64,
    /// Market blocks to mine after deployment.
    pub blocks: u64,
    pub chain_id: u64,
    /// Seconds between blocks (Base: 2).
    pub block_time: u64,
    pub manifest: PathBuf,
}

impl ChainUpConfig {
    pub fn validate(&self) -> Result<()> {
        if self.port == 0 {
            return Err(DataError::Config(
                "--port must be a free TCP port, not 0".into(),
            ));
        }
        if self.block_time == 0 {
            return Err(DataError::Config(
                "--block-time must be at least 1 second".into(),
            ));
        }
        if self.chain_id == 0 {
            return Err(DataError::Config("--chain-id must not be 0".into()));
        }
        Ok(())
    }
}

/// Genesis timestamp of every devnet: 2024-01-01 00:00:00 UTC.
pub const GENESIS_TIMESTAMP: u64 = 1_704_067_200;

/// Starts anvil, deploys, mines the market and writes the manifest. Returns the running node,
/// which stops when dropped.
pub async fn chain_up(
    cfg: &ChainUpConfig,
    progress: bool,
) -> Result<(AnvilProcess, ChainManifest)> {
    cfg.validate()?;
    let node = AnvilProcess::spawn(cfg.port, cfg.chain_id, GENESIS_TIMESTAMP).await?;
    let mut dep = deploy(&node, cfg).await?;
    market::run(&mut dep, cfg, progress).await?;
    let manifest = dep.manifest(cfg)?;
    manifest.save(&cfg.manifest)?;
    Ok((node, manifest))
}

//! The chain manifest: what `dexlab chain up` deployed, and what `dexlab data ingest --manifest`
//! needs to know about the pools it reads (protocol, tokens, decimals, fees, tick spacings).
//!
//! The same format describes pools on a real chain; `examples/` has one for the USDC/WETH sample.

use std::path::Path;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::types::{PoolInfo, Protocol, TokenInfo};

/// One DEX deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DexDeployment {
    pub name: String,
    pub protocol: Protocol,
    pub factory: Address,
    /// PancakeSwap V3 creates pools through a separate deployer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_deployer: Option<Address>,
    /// LP fee of the DEX's pools where the bytecode fixes it (V2), in pips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_fee: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainManifest {
    pub chain_id: u64,
    /// RPC endpoint the chain was served on (local devnets only; never a URL with credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_url: Option<String>,
    /// Seed of the simulated market, when this chain was made by `dexlab chain up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// First block with a pool event (pool creation) and last block of the simulated market.
    pub first_block: u64,
    pub last_block: u64,
    #[serde(default)]
    pub dexes: Vec<DexDeployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Address>,
    #[serde(default)]
    pub tokens: Vec<TokenInfo>,
    pub pools: Vec<PoolInfo>,
}

impl ChainManifest {
    pub fn load(path: &Path) -> Result<Self> {
        let m: ChainManifest = crate::dataset::read_json(path)?;
        m.validate().map_err(|message| DataError::Parse {
            path: path.into(),
            line: 0,
            message,
        })?;
        Ok(m)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::dataset::write_json_atomic(path, self)
    }

    /// Checks what serde cannot: consistent pools.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.first_block > self.last_block {
            return Err(format!(
                "first_block {} is after last_block {}",
                self.first_block, self.last_block
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.pools {
            if !seen.insert(p.address) {
                return Err(format!("pool {} is listed twice", p.address));
            }
            if p.protocol.is_v3() && p.tick_spacing.is_none() {
                return Err(format!(
                    "pool {} is {} but has no tick_spacing",
                    p.address, p.protocol
                ));
            }
            if p.token0.address >= p.token1.address {
                return Err(format!(
                    "pool {}: token0 must sort before token1",
                    p.address
                ));
            }
        }
        Ok(())
    }
}

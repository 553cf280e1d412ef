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

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
  "chain_id": 1,
  "first_block": 10,
  "last_block": 20,
  "pools": [
    {
      "address": "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640",
      "protocol": "uniswap_v3",
      "dex": "uniswap-v3",
      "token0": {"address": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "symbol": "USDC", "decimals": 6},
      "token1": {"address": "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", "symbol": "WETH", "decimals": 18},
      "fee": 500,
      "tick_spacing": 10
    }
  ]
}"#;

    fn load(text: &str) -> Result<ChainManifest> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, text).unwrap();
        ChainManifest::load(&p)
    }

    #[test]
    fn the_sample_manifest_loads() {
        load(MANIFEST).unwrap();
    }

    /// Pool metadata the AMM math cannot use is refused when the manifest is loaded, naming the
    /// file and the pool, instead of dividing by zero in a replay later.
    #[test]
    fn unusable_pool_metadata_is_refused_naming_file_and_pool() {
        let cases = [
            ("\"tick_spacing\": 10", "\"tick_spacing\": 0", "tick_spacing"),
            ("\"tick_spacing\": 10", "\"tick_spacing\": -10", "tick_spacing"),
            ("\"tick_spacing\": 10", "\"tick_spacing\": 16384", "tick_spacing"),
            ("\"fee\": 500", "\"fee\": 1000000", "fee"),
            ("\"decimals\": 18", "\"decimals\": 78", "decimals"),
            ("\"decimals\": 6", "\"decimals\": 255", "decimals"),
            ("\"symbol\": \"USDC\", \"decimals\": 6", "\"symbol\": \"USDC\", \"decimals\": 6", ""),
        ];
        for (from, to, field) in cases {
            assert!(MANIFEST.contains(from), "{from}");
            let text = MANIFEST.replace(from, to);
            if field.is_empty() {
                load(&text).unwrap();
                continue;
            }
            let e = load(&text).expect_err(to).to_string();
            assert!(e.contains("m.json"), "{e}");
            assert!(e.contains("0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640"), "{e}");
            assert!(e.contains(field), "{e}");
        }
    }
}

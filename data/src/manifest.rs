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
    /// WebSocket endpoint of the same node (local devnets only), for subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
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
    /// The account that trades on this chain in live mode, and its executor contract (`dexlab
    /// chain up` makes one for the devnet). The key is in the keystore, never here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorInfo>,
}

/// A live-mode operator: its account, its executor contract, and where its key is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorInfo {
    pub address: Address,
    pub executor: Address,
    /// An encrypted keystore file (Web3 Secret Storage).
    pub keystore: std::path::PathBuf,
    /// The file holding the keystore's password, if not `DEXLAB_KEYSTORE_PASSWORD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
}

impl ChainManifest {
    pub fn load(path: &Path) -> Result<Self> {
        let m: ChainManifest = crate::dataset::read_json(path)?;
        m.validate().map_err(|message| DataError::Input {
            path: path.into(),
            message,
        })?;
        Ok(m)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::dataset::write_json_atomic(path, self)
    }

    /// Checks what serde cannot: consistent blocks and pools the AMM math can use.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.first_block > self.last_block {
            return Err(format!(
                "first_block {} is after last_block {}",
                self.first_block, self.last_block
            ));
        }
        for t in &self.tokens {
            check_decimals(t).map_err(|m| format!("token {:#x}: {m}", t.address))?;
        }
        validate_pools(&self.pools)
    }
}

/// The most decimals a token can have for its amounts to fit a uint256 (10^77 < 2^256 < 10^78);
/// more would also turn human-unit prices into infinities.
pub const MAX_DECIMALS: u8 = 77;

/// Uniswap V3's factory accepts LP fees below 1,000,000 pips (100 %); V2 and Solidly math
/// subtracts the fee from 1,000,000.
pub const MAX_FEE_PIPS: u32 = 999_999;

/// Uniswap V3's factory accepts tick spacings in `(0, 16384)`.
pub const MAX_TICK_SPACING: i32 = 16_383;

fn check_decimals(t: &TokenInfo) -> std::result::Result<(), String> {
    if t.decimals > MAX_DECIMALS {
        return Err(format!(
            "decimals {} is above {MAX_DECIMALS} (a uint256 amount cannot have more digits)",
            t.decimals
        ));
    }
    Ok(())
}

/// Checks pool metadata wherever it comes from (a manifest, `dataset.json`, an import's options,
/// the chain): each pool once, tokens in the pools' order, and every number within what the
/// contracts accept, so that the AMM math never meets a zero tick spacing or a fee above 100 %.
/// The message names the pool and the field.
pub fn validate_pools(pools: &[PoolInfo]) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for p in pools {
        let bad = |m: String| Err(format!("pool {:#x}: {m}", p.address));
        if !seen.insert(p.address) {
            return bad("is listed twice".into());
        }
        if p.token0.address >= p.token1.address {
            return bad("token0 must sort before token1".into());
        }
        for t in [&p.token0, &p.token1] {
            if let Err(m) = check_decimals(t) {
                return bad(format!("token {:#x}: {m}", t.address));
            }
        }
        if p.fee > MAX_FEE_PIPS {
            return bad(format!("fee {} pips is not below 1000000 (100 %)", p.fee));
        }
        if p.protocol.is_v3() {
            match p.tick_spacing {
                None => return bad(format!("is {} but has no tick_spacing", p.protocol)),
                Some(s) if !(1..=MAX_TICK_SPACING).contains(&s) => {
                    return bad(format!(
                        "tick_spacing {s} is outside 1..={MAX_TICK_SPACING}"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
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
            (
                "\"tick_spacing\": 10",
                "\"tick_spacing\": 0",
                "tick_spacing",
            ),
            (
                "\"tick_spacing\": 10",
                "\"tick_spacing\": -10",
                "tick_spacing",
            ),
            (
                "\"tick_spacing\": 10",
                "\"tick_spacing\": 16384",
                "tick_spacing",
            ),
            ("\"fee\": 500", "\"fee\": 1000000", "fee"),
            ("\"decimals\": 18", "\"decimals\": 78", "decimals"),
            ("\"decimals\": 6", "\"decimals\": 255", "decimals"),
            (
                "\"symbol\": \"USDC\", \"decimals\": 6",
                "\"symbol\": \"USDC\", \"decimals\": 6",
                "",
            ),
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
            assert!(
                e.contains("0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640"),
                "{e}"
            );
            assert!(e.contains(field), "{e}");
        }
    }
}

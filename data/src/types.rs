//! Plain row types shared by ingestion, import, decoding and the dataset writer.

use std::fmt;

use alloy::primitives::{Address, B256, Bytes};
use serde::{Deserialize, Serialize};

/// One EVM log as `eth_getLogs` returns it, plus the chain it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawLog {
    pub block_number: u64,
    /// Unknown for some imported samples.
    pub block_hash: Option<B256>,
    pub transaction_index: u64,
    pub log_index: u64,
    pub transaction_hash: B256,
    pub address: Address,
    /// Zero to four topics, in order.
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub chain_id: u64,
}

impl RawLog {
    pub fn location(&self) -> LogLocation {
        LogLocation {
            block_number: self.block_number,
            transaction_hash: self.transaction_hash,
            transaction_index: self.transaction_index,
            log_index: self.log_index,
        }
    }

    pub fn topic0(&self) -> Option<&B256> {
        self.topics.first()
    }

    /// Sort key of a log on its chain.
    pub fn key(&self) -> (u64, u64) {
        (self.block_number, self.log_index)
    }
}

/// Where a log sits on the chain: printed in every error about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLocation {
    pub block_number: u64,
    pub transaction_hash: B256,
    pub transaction_index: u64,
    pub log_index: u64,
}

impl fmt::Display for LogLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "block {} tx {} (index {}) log index {}",
            self.block_number, self.transaction_hash, self.transaction_index, self.log_index
        )
    }
}

/// One block header, as much of it as the dataset keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRow {
    pub number: u64,
    pub hash: Option<B256>,
    pub parent_hash: Option<B256>,
    pub timestamp: u64,
    pub base_fee_per_gas: Option<u64>,
    pub gas_used: Option<u64>,
    pub gas_limit: Option<u64>,
    pub chain_id: u64,
}

/// One transaction that emitted a tracked event, with what it paid: a row of `transactions`.
///
/// Read from its receipt. `priority_fee_per_gas` is the effective gas price minus the block's base
/// fee (`None` when the block has no base fee, or for OP-stack deposit transactions, which pay no
/// gas price). The L1 fields are the OP-stack receipt's extra fields and `None` elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRow {
    pub chain_id: u64,
    pub block_number: u64,
    pub transaction_index: u64,
    pub transaction_hash: B256,
    pub from: Address,
    /// `None` for a contract creation.
    pub to: Option<Address>,
    pub status: bool,
    pub gas_used: u64,
    pub effective_gas_price: u128,
    pub priority_fee_per_gas: Option<u128>,
    pub l1_fee: Option<u128>,
    pub l1_gas_used: Option<u128>,
    pub l1_gas_price: Option<u128>,
    pub l1_base_fee_scalar: Option<u64>,
    pub l1_blob_base_fee: Option<u128>,
    pub l1_blob_base_fee_scalar: Option<u64>,
    /// Isthmus operator fee parameters.
    pub operator_fee_scalar: Option<u64>,
    pub operator_fee_constant: Option<u64>,
}

/// The AMM family a pool belongs to. It decides which events it emits and which math prices it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Uniswap-V2 style constant product (Uniswap V2, BaseSwap, SushiSwap, ...).
    UniswapV2,
    /// Uniswap V3 concentrated liquidity.
    UniswapV3,
    /// PancakeSwap V3: Uniswap V3 math, its own Swap event (with protocol fees) and callbacks.
    PancakeV3,
    /// Solidly style (Aerodrome, Velodrome): volatile x*y=k or stable x^3y+xy^3=k pools.
    Solidly,
    /// Aerodrome Slipstream (Velodrome Slipstream): Uniswap V3 math and events, pools keyed by tick
    /// spacing, the swap fee set by the factory (a fee module may change it at any block; the
    /// Swap event does not carry it) and split between unstaked LPs and the pool's gauge.
    Slipstream,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [
        Protocol::UniswapV2,
        Protocol::UniswapV3,
        Protocol::PancakeV3,
        Protocol::Solidly,
        Protocol::Slipstream,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::UniswapV2 => "uniswap_v2",
            Protocol::UniswapV3 => "uniswap_v3",
            Protocol::PancakeV3 => "pancake_v3",
            Protocol::Solidly => "solidly",
            Protocol::Slipstream => "slipstream",
        }
    }

    pub fn is_v3(self) -> bool {
        matches!(
            self,
            Protocol::UniswapV3 | Protocol::PancakeV3 | Protocol::Slipstream
        )
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown protocol `{s}` (expected one of uniswap_v2, uniswap_v3, pancake_v3, solidly, slipstream)"))
    }
}

/// An ERC-20 token as the dataset needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub address: Address,
    pub symbol: String,
    pub decimals: u8,
}

/// A pool and everything needed to decode and price its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    pub address: Address,
    pub protocol: Protocol,
    /// Venue name, e.g. `uniswap-v3`, `baseswap`, `aerodrome`.
    pub dex: String,
    pub token0: TokenInfo,
    pub token1: TokenInfo,
    /// LP fee in hundredths of a basis point (pips): 3000 = 0.30 %.
    pub fee: u32,
    /// V3 pools only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_spacing: Option<i32>,
    /// Solidly pools only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<bool>,
}

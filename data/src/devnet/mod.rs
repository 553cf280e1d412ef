//! A local chain with the real DEX contracts and a reproducible market on top.
//!
//! [`AnvilProcess`] runs anvil with manual mining and a fixed genesis timestamp, so that every block
//! (and so every block hash) depends only on what we send: same seed, same chain. [`deploy`] puts
//! the npm bytecode of Uniswap V2 (twice, as `uniswap-v2` and `baseswap`), Uniswap V3 and
//! PancakeSwap V3 on it, and Aerodrome and Aerodrome Slipstream built from their published source
//! ([`aerodrome`]), with tokens and liquidity; [`market`] then mines blocks of noise and informed
//! trading against a latent reference price.
//!
//! A living devnet ([`Devnet::mine_live`], `dexlab chain up --live`) keeps mining that market
//! after its history, one block every `block_time_ms` of wall-clock time. Its block timestamps
//! stay seconds, as every EVM header's are: live block `k` is stamped with the last history
//! block's timestamp plus `k * block_time_ms / 1000` rounded down, so with 200 ms blocks five
//! consecutive blocks share each second, as on Base. The stamps follow the block count, not the
//! wall clock, so a seed still gives the same chain, hash for hash.

pub mod aerodrome;
mod anvil;
mod bindings;
mod deploy;
pub mod market;
pub mod operator;

pub use anvil::AnvilProcess;
pub use deploy::{DEFAULT_PRIORITY_FEE, Deployment, INFORMED, NOISE, deploy, seed_liquidity};

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Seconds between history blocks.
    pub block_time: u64,
    pub manifest: PathBuf,
    /// Keep mining after the history, a block every this many milliseconds (`--live`).
    pub live_block_time_ms: Option<u64>,
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
        if let Some(ms) = self.live_block_time_ms
            && !(MIN_LIVE_BLOCK_TIME_MS..=MAX_LIVE_BLOCK_TIME_MS).contains(&ms)
        {
            return Err(DataError::Config(format!(
                "--block-time-ms must be between {MIN_LIVE_BLOCK_TIME_MS} and {MAX_LIVE_BLOCK_TIME_MS}, not {ms}"
            )));
        }
        Ok(())
    }
}

/// Genesis timestamp of every devnet: 2024-01-01 00:00:00 UTC.
pub const GENESIS_TIMESTAMP: u64 = 1_704_067_200;

/// Live block time of `dexlab chain up --live` when not given: Base's.
pub const DEFAULT_LIVE_BLOCK_TIME_MS: u64 = 200;
/// A market block takes a few dozen requests to anvil; shorter blocks would only fall behind.
pub const MIN_LIVE_BLOCK_TIME_MS: u64 = 20;
pub const MAX_LIVE_BLOCK_TIME_MS: u64 = 60_000;

/// A deployed devnet with its market, ready to mine more.
pub struct Devnet {
    /// The anvil child: it stops when this is dropped.
    pub node: AnvilProcess,
    /// As written to `cfg.manifest`: `last_block` is the last history block.
    pub manifest: ChainManifest,
    deployment: Deployment,
    market: market::Market,
    /// Live blocks mined so far, and the timestamp they count from.
    live_blocks: u64,
    live_base_timestamp: u64,
}

/// What [`Devnet::mine_live`] mined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveReport {
    pub blocks: u64,
    pub trades: u64,
    pub last_block: u64,
    /// Blocks that started later than their slot because the one before took longer than the
    /// block time.
    pub late_blocks: u64,
}

/// Starts anvil, deploys, mines the history and writes the manifest.
pub async fn start(cfg: &ChainUpConfig, progress: bool) -> Result<Devnet> {
    cfg.validate()?;
    let node = AnvilProcess::spawn(cfg.port, cfg.chain_id, GENESIS_TIMESTAMP).await?;
    let mut deployment = deploy(&node, cfg).await?;
    let mut market = market::run(&mut deployment, cfg, progress).await?;
    let dir = match cfg.manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = cfg
        .manifest
        .file_stem()
        .map_or_else(|| "chain".into(), |s| s.to_string_lossy().into_owned());
    let operator = operator::setup(&mut deployment, cfg.seed, &dir, &stem).await?;
    // The history includes the operator's set-up blocks.
    let mut manifest = deployment.manifest(cfg)?;
    manifest.operator = Some(operator);
    manifest.save(&cfg.manifest)?;
    let ms = cfg.live_block_time_ms.unwrap_or(DEFAULT_LIVE_BLOCK_TIME_MS);
    market.set_params(market::MarketParams::for_block_time_ms(ms));
    Ok(Devnet {
        node,
        manifest,
        live_base_timestamp: deployment.timestamp,
        deployment,
        market,
        live_blocks: 0,
    })
}

/// Starts anvil, deploys, mines the market and writes the manifest. Returns the running node,
/// which stops when dropped.
pub async fn chain_up(
    cfg: &ChainUpConfig,
    progress: bool,
) -> Result<(AnvilProcess, ChainManifest)> {
    let d = start(cfg, progress).await?;
    Ok((d.node, d.manifest))
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("node", &self.node)
            .field("last_block", &self.deployment.last_block)
            .field("live_blocks", &self.live_blocks)
            .finish()
    }
}

impl Devnet {
    pub fn http_url(&self) -> &str {
        &self.node.url
    }

    /// anvil serves WebSocket on its HTTP port.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.node.port)
    }

    /// Timestamp of live block `k` (counted from 1): seconds, shared by the blocks of a second.
    fn live_timestamp(&self, k: u64, block_time_ms: u64) -> u64 {
        let ms = u128::from(k) * u128::from(block_time_ms) / 1000;
        self.live_base_timestamp + u64::try_from(ms).unwrap_or(u64::MAX / 2)
    }

    /// Mines one live market block now, stamped `block_time_ms` after the previous live block.
    pub async fn mine_block(&mut self, block_time_ms: u64) -> Result<market::MarketBlock> {
        let ts = self.live_timestamp(self.live_blocks + 1, block_time_ms);
        let b = self.market.step(&mut self.deployment, ts).await?;
        self.live_blocks += 1;
        Ok(b)
    }

    /// Mines a market block every `block_time_ms` of wall-clock time until `stop` resolves. A stop
    /// lands between blocks, never inside one. When a block takes longer than the block time the
    /// next starts at once and the schedule shifts (no burst to catch up).
    pub async fn mine_live(
        &mut self,
        block_time_ms: u64,
        stop: impl Future<Output = ()>,
    ) -> Result<LiveReport> {
        if !(MIN_LIVE_BLOCK_TIME_MS..=MAX_LIVE_BLOCK_TIME_MS).contains(&block_time_ms) {
            return Err(DataError::Config(format!(
                "block time {block_time_ms} ms is outside {MIN_LIVE_BLOCK_TIME_MS}..={MAX_LIVE_BLOCK_TIME_MS}"
            )));
        }
        self.market
            .set_params(market::MarketParams::for_block_time_ms(block_time_ms));
        let period = Duration::from_millis(block_time_ms);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = LiveReport {
            last_block: self.deployment.last_block,
            ..Default::default()
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                at = tick.tick() => {
                    if at.elapsed() > period / 2 {
                        report.late_blocks += 1;
                    }
                }
            }
            let b = self.mine_block(block_time_ms).await?;
            tracing::debug!(
                block = b.number,
                timestamp = b.timestamp,
                trades = b.trades,
                "live block"
            );
            report.blocks += 1;
            report.trades += b.trades;
            report.last_block = b.number;
        }
        Ok(report)
    }
}

//! The execution config (the `[backtest]` section of an experiment TOML, and of a paper or live
//! session): quote and native tokens, capital, gas, competition, queue assumption and timing.
//! Validated once here, resolved against a market's pools into an [`ExecConfig`].

use alloy_primitives::{Address, U256};
use dexlab_strategy::TradingEnv;
use dexlab_strategy::gas::GasConfig;
use dexlab_strategy::market::{PoolMeta, from_human};
use serde::{Deserialize, Serialize};

use crate::backtest::{Competition, ExecConfig, QueueAssumption, Timing};
use crate::tape::Tape;

/// A value of the execution config that cannot be used, saying which key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Bounds far above any useful run, low enough that nothing overflows.
pub const MAX_PERIODS: usize = 10_000_000;
/// A bundle that takes longer than this to land is not a latency but a different strategy.
pub const MAX_LATENCY_BLOCKS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BacktestConfig {
    /// Token PnL is measured in: a symbol from the dataset's pools or a 0x address.
    pub quote: String,
    /// Wrapped native token (gas is paid in it).
    pub native: String,
    /// Starting balance, in quote-token units.
    pub capital: f64,
    pub periods: usize,
    pub block_time_secs: f64,
    pub competition: Competition,
    pub gas: GasConfig,
    /// Where our bundles land in blocks whose transactions' priority fees the data lacks.
    pub queue_without_fees: QueueAssumption,
    /// Most blocks before a window that warm a strategy up.
    pub max_warmup_blocks: usize,
    /// Blocks from a decision to the block its bundle lands in (at least 1). A fact of the chain
    /// and of how fast the engine sends, not a strategy parameter.
    pub latency_blocks: u64,
    /// Blocks after the first possible one that a bundle stays valid (0: only that block). Live,
    /// the executor contract reverts a bundle mined later, and the sender cancels it; a fast
    /// chain (Base: 5 blocks a second) wants a few. The simulation lands every bundle at its first
    /// possible block, so this changes no backtest.
    #[serde(skip_serializing_if = "is_zero")]
    pub deadline_blocks: u64,
    /// The risk limits (`[backtest.risk]`, keys as in `examples/risk.toml`) the backtest runs
    /// under, as a paper or live session does: refused bundles are never sent, halts halt. None:
    /// no limit (a backtest does not see the operator's kill switch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::risk::RiskLimits>,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Default for BacktestConfig {
    fn default() -> Self {
        Self {
            quote: "USDC".into(),
            native: "WETH".into(),
            capital: 100_000.0,
            periods: 200,
            block_time_secs: 2.0,
            competition: Competition::default(),
            gas: GasConfig::default(),
            queue_without_fees: QueueAssumption::default(),
            max_warmup_blocks: 2_000,
            latency_blocks: 1,
            deadline_blocks: 0,
            risk: None,
        }
    }
}

impl BacktestConfig {
    /// Checks every value once, naming the key that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let b = self;
        b.competition.validate("backtest.competition")?;
        if let Some(r) = &b.risk {
            r.validate().map_err(|e| format!("backtest.{e}"))?;
        }
        let within = |key: &str, v: usize, lo: usize, hi: usize, why: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{key} = {v} must be between {lo} and {hi}{why}"))
            }
        };
        within(
            "backtest.periods",
            b.periods,
            2,
            MAX_PERIODS,
            " (return periods per backtest window)",
        )?;
        if !(b.capital.is_finite() && b.capital > 0.0) {
            return Err(format!("backtest.capital = {} must be positive", b.capital));
        }
        within(
            "backtest.latency_blocks",
            usize::try_from(b.latency_blocks).unwrap_or(usize::MAX),
            1,
            MAX_LATENCY_BLOCKS,
            " (blocks from decision to inclusion)",
        )?;
        within(
            "backtest.deadline_blocks",
            usize::try_from(b.deadline_blocks).unwrap_or(usize::MAX),
            0,
            MAX_LATENCY_BLOCKS,
            " (blocks a bundle stays valid after its first possible one)",
        )?;
        if !(b.block_time_secs.is_finite() && b.block_time_secs > 0.0) {
            return Err(format!(
                "backtest.block_time_secs = {} must be a positive number of seconds",
                b.block_time_secs
            ));
        }
        b.gas.validate().map_err(|e| format!("backtest.gas.{e}"))?;
        Ok(())
    }
}

impl BacktestConfig {
    /// Resolves token names against the tape's pools.
    pub fn resolve(&self, tape: &Tape, seed: u64) -> Result<ExecConfig, ConfigError> {
        self.resolve_for(&tape.pools, seed)
    }

    /// Resolves token names against a market's pools (a tape's, or those a live session tracks).
    pub fn resolve_for(&self, pools: &[PoolMeta], seed: u64) -> Result<ExecConfig, ConfigError> {
        let quote = resolve_token(pools, &self.quote, "backtest.quote")?;
        let native = resolve_token(pools, &self.native, "backtest.native")?;
        let capital = self.capital_units(pools, quote)?;
        Ok(ExecConfig {
            env: TradingEnv {
                quote,
                native,
                gas: self.gas.clone(),
                model: None,
            },
            capital,
            competition: self.competition.clone(),
            periods: self.periods,
            block_time_secs: self.block_time_secs,
            seed,
            queue_without_fees: self.queue_without_fees,
            max_warmup_blocks: self.max_warmup_blocks,
            timing: Timing {
                latency_blocks: self.latency_blocks,
                deadline_blocks: self.deadline_blocks,
            },
            risk: self.risk.clone(),
        })
    }
}

impl BacktestConfig {
    /// The capital in the quote token's smallest unit. A token whose decimals no uint256 amount
    /// can carry, a capital too large for one, and one that rounds to nothing are each told
    /// apart.
    fn capital_units(&self, pools: &[PoolMeta], quote: Address) -> Result<U256, ConfigError> {
        let dec = pools
            .iter()
            .find_map(|p| {
                (p.token0 == quote)
                    .then_some(p.decimals0)
                    .or((p.token1 == quote).then_some(p.decimals1))
            })
            .unwrap_or(18);
        let symbol = pools
            .iter()
            .find_map(|p| {
                (p.token0 == quote)
                    .then_some(&p.symbol0)
                    .or((p.token1 == quote).then_some(&p.symbol1))
            })
            .map_or_else(|| quote.to_string(), Clone::clone);
        if dec > MAX_DECIMALS {
            return Err(ConfigError(format!(
                "backtest.quote = `{}`: the dataset's pools give {symbol} ({quote}) {dec} \
                 decimals, which no uint256 amount can carry (10^{dec} > 2^256; ERC-20 decimals \
                 must be at most {MAX_DECIMALS}): check the token metadata in the dataset's \
                 manifest",
                self.quote
            )));
        }
        let shown = short_number(self.capital);
        match from_human(self.capital, dec) {
            None => {
                let max = 2f64.powi(256) / 10f64.powi(i32::from(dec));
                Err(ConfigError(format!(
                    "backtest.capital = {shown} {symbol} is too large: in {symbol}'s smallest \
                     unit ({dec} decimals) it does not fit a uint256 amount (at most about \
                     {max:.3e} {symbol})"
                )))
            }
            Some(c) if c.is_zero() => Err(ConfigError(format!(
                "backtest.capital = {shown} {symbol} rounds to 0 in {symbol}'s smallest unit \
                 ({dec} decimals)"
            ))),
            Some(c) => Ok(c),
        }
    }
}

/// The largest decimals for which one whole token (10^decimals units) fits a uint256.
pub const MAX_DECIMALS: u8 = 77;

/// `1e300` rather than 301 digits; plain notation for ordinary amounts.
fn short_number(x: f64) -> String {
    if x != 0.0 && !(1e-6..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn resolve_token(pools: &[PoolMeta], name: &str, key: &str) -> Result<Address, ConfigError> {
    let mut tokens: Vec<(Address, &str)> = Vec::new();
    for p in pools {
        for t in [
            (p.token0, p.symbol0.as_str()),
            (p.token1, p.symbol1.as_str()),
        ] {
            if !tokens.iter().any(|x| x.0 == t.0) {
                tokens.push(t);
            }
        }
    }
    if let Ok(a) = name.parse::<Address>()
        && tokens.iter().any(|t| t.0 == a)
    {
        return Ok(a);
    }
    let want = if name.eq_ignore_ascii_case("ETH") {
        "WETH"
    } else {
        name
    };
    tokens
        .iter()
        .find(|t| t.1.eq_ignore_ascii_case(want))
        .map(|t| t.0)
        .ok_or_else(|| {
            let known: Vec<&str> = tokens.iter().map(|t| t.1).collect();
            ConfigError(format!(
                "{key} = `{name}` is not a token of the dataset's pools (tokens: {})",
                known.join(", ")
            ))
        })
}

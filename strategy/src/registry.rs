//! Every strategy by name, with its parameter space: what `dexlab strategies list` shows and what
//! the backtester, the optimiser and the live engine build from.

use serde::Serialize;

use crate::market::Market;
use crate::params::{ParamError, ParamSpace, Params};
use crate::{Strategy, TradingEnv, arb, gated, reversion};

/// A strategy's name, summary and parameter space.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: ParamSpace,
}

pub fn list() -> Vec<StrategyInfo> {
    vec![
        StrategyInfo {
            name: arb::NAME,
            summary: "two-leg arbitrage between pools on the same pair, sized with the exact pool math",
            params: arb::space(),
        },
        StrategyInfo {
            name: reversion::NAME,
            summary: "long/flat mean reversion of one pool's price around its moving average",
            params: reversion::space(),
        },
        StrategyInfo {
            name: gated::NAME,
            summary: "long/flat on one pool when a trained model's predicted forward return passes a threshold (needs --model)",
            params: gated::space(),
        },
        StrategyInfo {
            name: NO_TRADE,
            summary: "baseline: never trades (its equity is the starting capital)",
            params: ParamSpace::new(Vec::new()),
        },
    ]
}

/// The no-trading baseline.
pub const NO_TRADE: &str = "no-trade";

#[derive(Debug)]
struct NoTrade;

impl Strategy for NoTrade {
    fn name(&self) -> &'static str {
        NO_TRADE
    }
    fn on_block(&mut self, _: &Market, _: &crate::Context<'_>, _: &mut Vec<crate::Action>) {}
}

/// Why a strategy could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "unknown strategy `{0}` (known: cross-venue-arb, price-reversion, model-gated, no-trade)"
    )]
    Unknown(String),
    #[error(transparent)]
    Model(#[from] gated::GateError),
    #[error("strategy `{strategy}`: {source}")]
    Params {
        strategy: String,
        #[source]
        source: ParamError,
    },
}

pub fn info(name: &str) -> Result<StrategyInfo, RegistryError> {
    list()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| RegistryError::Unknown(name.to_owned()))
}

/// Validates JSON parameter overrides against the strategy's space.
pub fn parse_params(name: &str, overrides: &serde_json::Value) -> Result<Params, RegistryError> {
    info(name)?
        .params
        .parse(overrides)
        .map_err(|source| RegistryError::Params {
            strategy: name.to_owned(),
            source,
        })
}

/// Whether the strategy reads `env.model`.
pub fn needs_model(name: &str) -> bool {
    name == gated::NAME
}

/// Builds a strategy over `market`'s pools. `params` must come from this strategy's space; a
/// model-driven strategy fails here, once, when its model does not fit the market.
pub fn build(
    name: &str,
    market: &Market,
    env: &TradingEnv,
    params: &Params,
) -> Result<Box<dyn Strategy>, RegistryError> {
    match name {
        arb::NAME => Ok(Box::new(arb::CrossVenueArb::new(market, env, params))),
        reversion::NAME => Ok(Box::new(reversion::PriceReversion::new(
            market, env, params,
        ))),
        gated::NAME => Ok(Box::new(gated::ModelGated::new(market, env, params)?)),
        NO_TRADE => Ok(Box::new(NoTrade)),
        other => Err(RegistryError::Unknown(other.to_owned())),
    }
}

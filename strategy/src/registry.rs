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
    /// The parameter error is part of this message, not a separate source, so that a chain of
    /// causes (`anyhow`'s `{:#}`) does not print it twice.
    #[error("strategy `{strategy}`: {reason}")]
    Params {
        strategy: String,
        reason: ParamError,
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
        .map_err(|reason| RegistryError::Params {
            strategy: name.to_owned(),
            reason,
        })
}

/// Whether the strategy reads `env.model`.
pub fn needs_model(name: &str) -> bool {
    name == gated::NAME
}

/// Builds a strategy over `market`'s pools. `params` must come from this strategy's space (checked
/// here, once; the no-trade baseline reads none and takes any); a model-driven strategy fails here,
/// once, when its model does not fit the market.
pub fn build(
    name: &str,
    market: &Market,
    env: &TradingEnv,
    params: &Params,
) -> Result<Box<dyn Strategy>, RegistryError> {
    if name != NO_TRADE {
        info(name)?
            .params
            .check(params)
            .map_err(|reason| RegistryError::Params {
                strategy: name.to_owned(),
                reason,
            })?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every strategy reads its parameters when it is built; `Params::get` panics on a name the
    /// space does not declare, so a strategy that reads one fails here.
    #[test]
    fn every_strategy_builds_from_its_defaults() {
        let market = gated::tests::market();
        let env = gated::tests::fitting_env();
        for s in list() {
            let built = build(s.name, &market, &env, &s.params.defaults())
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            assert_eq!(built.name(), s.name);
        }
    }

    #[test]
    fn parameters_of_another_strategy_are_refused() {
        let market = gated::tests::market();
        let env = gated::tests::fitting_env();
        let foreign = reversion::space().defaults();
        let e = build(arb::NAME, &market, &env, &foreign).err().unwrap();
        assert!(
            e.to_string().starts_with("strategy `cross-venue-arb`: "),
            "{e}"
        );
        // The baseline reads nothing, so it takes whatever it is given.
        build(NO_TRADE, &market, &env, &foreign).unwrap();
        let e = parse_params(arb::NAME, &serde_json::json!({"window_blocks": 5})).unwrap_err();
        assert!(
            e.to_string().contains("unknown parameter `window_blocks`"),
            "{e}"
        );
        assert!(e.to_string().contains("min_profit_bps"), "{e}");
    }

    /// The parameter error is in the message once: a cause chain (`anyhow`'s `{:#}`) printing it
    /// again as a source would say everything twice.
    #[test]
    fn a_parameter_error_is_told_once() {
        let e = parse_params(arb::NAME, &serde_json::json!([1, 2, 3])).unwrap_err();
        assert!(std::error::Error::source(&e).is_none(), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("strategy `cross-venue-arb`: parameters must be a JSON object"),
            "{text}"
        );
        assert!(text.contains("got [1,2,3]"), "{text}");
        assert!(text.contains("this strategy has: min_profit_bps"), "{text}");
        assert_eq!(text.matches("got [1,2,3]").count(), 1, "{text}");
    }
}

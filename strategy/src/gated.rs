//! `model-gated`: long/flat on one pool, entering only when a model's predicted forward return
//! passes a threshold. The model is whatever implements [`Scorer`] (in dexlab a trained
//! `dexlab-models` directory), fed by [`OnlineFeatures`]: the same code path serves the backtest,
//! the optimiser and the live engine.
//!
//! The model must be a regression of `label_fwd_ret_<h>__<pool>`: the strategy trades that pool,
//! buying the pool's other token with quote when the predicted h-block log return exceeds
//! `entry_bps` and selling the whole position when it falls below `exit_bps`. The thresholds,
//! size, slippage and gas bid are ordinary parameters, so `dexlab evolve` tunes them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use alloy_primitives::Address;

use crate::market::Market;
use crate::online::{OnlineFeatures, UnsupportedColumns, market_labels};
use crate::params::{self, ParamKind, ParamSpace, ParamSpec, Params};
use crate::single::SwapPlan;
use crate::{Action, Context, Fill, Strategy, TradingEnv};

pub const NAME: &str = "model-gated";

/// A trained model as a strategy sees it.
pub trait Scorer: Send + Sync {
    /// What identifies the model in results and checkpoints (name and content hash).
    fn id(&self) -> String;
    /// Feature columns, in the order the model reads them.
    fn features(&self) -> &[String];
    /// Rows per decision.
    fn window(&self) -> usize;
    /// The label the model was trained on.
    fn target(&self) -> &str;
    /// The prediction from the last `window()` rows of raw feature values, oldest first.
    fn score(&self, rows: &[&[f64]]) -> Result<f64, String>;
}

/// A shared model, optionally with a memo of its answers (pure function of the input bits):
/// the optimiser backtests many parameter sets over the same blocks, and most of their feature
/// windows are identical.
#[derive(Clone)]
pub struct ModelHandle {
    scorer: Arc<dyn Scorer>,
    id: String,
    memo: Option<Arc<Mutex<Memo>>>,
}

/// Scores by the bits of their inputs.
type Memo = HashMap<Vec<u64>, f64>;

impl ModelHandle {
    pub fn new(scorer: Arc<dyn Scorer>) -> Self {
        Self {
            id: scorer.id(),
            scorer,
            memo: None,
        }
    }

    /// The same model, remembering every answer. For research runs, not for a live engine that
    /// runs forever.
    pub fn memoised(mut self) -> Self {
        self.memo = Some(Arc::default());
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn scorer(&self) -> &dyn Scorer {
        self.scorer.as_ref()
    }

    pub fn score(&self, rows: &[&[f64]]) -> Result<f64, String> {
        let Some(memo) = &self.memo else {
            return self.scorer.score(rows);
        };
        let key: Vec<u64> = rows
            .iter()
            .flat_map(|r| r.iter().map(|v| v.to_bits()))
            .collect();
        if let Some(&s) = memo.lock().expect("memo lock").get(&key) {
            return Ok(s);
        }
        let s = self.scorer.score(rows)?;
        memo.lock().expect("memo lock").insert(key, s);
        Ok(s)
    }
}

impl fmt::Debug for ModelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelHandle").field("id", &self.id).finish()
    }
}

impl PartialEq for ModelHandle {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// Why a model cannot drive this strategy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("model-gated needs a model (--model DIR)")]
    NoModel,
    #[error(
        "model-gated trades a pool's forward return, but model `{model}` predicts `{target}` \
         (train a regression of a `label_fwd_ret_<h>__<pool>` column)"
    )]
    Target { model: String, target: String },
    #[error(
        "model `{model}` predicts pool `{pool}`, which is not in this dataset (pools: {known})"
    )]
    Pool {
        model: String,
        pool: String,
        known: String,
    },
    #[error("model `{model}` predicts pool `{pool}`, which does not trade the quote token")]
    NotQuote { model: String, pool: String },
    #[error("model `{model}`: {source}")]
    Features {
        model: String,
        #[source]
        source: UnsupportedColumns,
    },
}

pub fn space() -> ParamSpace {
    ParamSpace::new(vec![
        ParamSpec {
            name: "entry_bps",
            kind: ParamKind::Float,
            lo: 0.0,
            hi: 50.0,
            default: 5.0,
            log_scale: false,
            unit: "bps",
            help: "buy when the predicted forward log return is above this",
        },
        ParamSpec {
            name: "exit_bps",
            kind: ParamKind::Float,
            lo: -50.0,
            hi: 20.0,
            default: 0.0,
            log_scale: false,
            unit: "bps",
            help: "sell the position when the predicted forward log return is below this",
        },
        params::trade_fraction(),
        params::max_slippage_bps(),
        params::gas_price_multiplier(1.1),
    ])
}

/// Checks that `model` can drive the strategy on `market`: returns the traded pool and the
/// feature plan.
pub fn plan(
    market: &Market,
    env: &TradingEnv,
    model: &ModelHandle,
) -> Result<(usize, OnlineFeatures), GateError> {
    let s = model.scorer();
    let target = s.target();
    let pool_label = target
        .strip_prefix("label_fwd_ret_")
        .and_then(|r| r.split_once("__"))
        .filter(|(h, _)| h.parse::<u32>().is_ok())
        .map(|(_, p)| p)
        .ok_or_else(|| GateError::Target {
            model: model.id().to_owned(),
            target: target.to_owned(),
        })?;
    let labels = market_labels(&market.pools);
    let pool = labels
        .iter()
        .position(|l| l == pool_label)
        .ok_or_else(|| GateError::Pool {
            model: model.id().to_owned(),
            pool: pool_label.to_owned(),
            known: labels.join(", "),
        })?;
    let m = &market.pools[pool];
    if m.token0 != env.quote && m.token1 != env.quote {
        return Err(GateError::NotQuote {
            model: model.id().to_owned(),
            pool: pool_label.to_owned(),
        });
    }
    let features =
        OnlineFeatures::new(&market.pools, s.features(), s.window()).map_err(|source| {
            GateError::Features {
                model: model.id().to_owned(),
                source,
            }
        })?;
    Ok((pool, features))
}

#[derive(Debug)]
pub struct ModelGated {
    model: ModelHandle,
    features: OnlineFeatures,
    pool: usize,
    base: Address,
    quote: Address,
    /// +1 when the traded token is the pool's token0 (the label's orientation), else −1.
    sign: f64,
    /// Thresholds on the traded token's predicted log return.
    entry: f64,
    exit: f64,
    trade_fraction: f64,
    slippage_bps: f64,
    gas_multiplier: f64,
    pending: bool,
    /// Decisions the model could not score (its error), counted rather than fatal: the live
    /// engine skips a decision, it does not stop trading on one bad row.
    pub score_errors: u64,
    pub first_error: Option<String>,
}

impl ModelGated {
    pub fn new(market: &Market, env: &TradingEnv, p: &Params) -> Result<Self, GateError> {
        let model = env.model.clone().ok_or(GateError::NoModel)?;
        let (pool, features) = plan(market, env, &model)?;
        let m = &market.pools[pool];
        let base = if m.token0 == env.quote {
            m.token1
        } else {
            m.token0
        };
        // The label is the return of token0 in token1; buying `base` profits from its price in
        // quote rising, which is the label's sign when base is token0.
        let sign = if m.token0 == base { 1.0 } else { -1.0 };
        Ok(Self {
            model,
            features,
            pool,
            base,
            quote: env.quote,
            sign,
            entry: p.get("entry_bps") / 1e4,
            exit: p.get("exit_bps") / 1e4,
            trade_fraction: p.get("trade_fraction"),
            slippage_bps: p.get("max_slippage_bps"),
            gas_multiplier: p.get("gas_price_multiplier"),
            pending: false,
            score_errors: 0,
            first_error: None,
        })
    }

    fn plan(&self) -> SwapPlan {
        // Like price-reversion: skip trades whose gas would eat more than 1 % of their notional.
        SwapPlan {
            slippage_bps: self.slippage_bps,
            gas_multiplier: self.gas_multiplier,
            max_gas_bps: Some(100),
        }
    }
}

impl Strategy for ModelGated {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_block(&mut self, market: &Market, ctx: &Context<'_>, out: &mut Vec<Action>) {
        self.features.on_block(market);
        if self.pending {
            return;
        }
        let Some(rows) = self.features.window() else {
            return;
        };
        let score = match self.model.score(&rows) {
            Ok(s) => s,
            Err(e) => {
                self.score_errors += 1;
                self.first_error.get_or_insert(e);
                return;
            }
        };
        let base_ret = self.sign * score;
        let (buy, sell) = (base_ret > self.entry, base_ret < self.exit);
        let bundle = self.plan().long_flat(
            market,
            ctx,
            self.pool,
            self.base,
            self.quote,
            buy.then_some(self.trade_fraction),
            sell,
        );
        if let Some(b) = bundle {
            self.pending = true;
            out.push(Action::Submit(b));
        }
    }

    fn on_fill(&mut self, _fill: &Fill) {
        self.pending = false;
    }

    fn warmup_blocks(&self) -> usize {
        self.features.history_blocks()
    }

    fn errors(&self) -> Option<(u64, String)> {
        let first = self.first_error.clone()?;
        Some((
            self.score_errors,
            format!("the model could not score a row: {first}"),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use alloy_primitives::U256;

    use super::*;
    use crate::gas::GasConfig;
    use crate::market::{BlockInfo, Family, PoolMeta, PoolState};
    use crate::{Clock, ReplayClock};

    /// A model of our own trait that always predicts the same return.
    struct Constant {
        value: f64,
        target: String,
        features: Vec<String>,
    }

    impl Scorer for Constant {
        fn id(&self) -> String {
            format!("constant({})", self.value)
        }
        fn features(&self) -> &[String] {
            &self.features
        }
        fn window(&self) -> usize {
            1
        }
        fn target(&self) -> &str {
            &self.target
        }
        fn score(&self, rows: &[&[f64]]) -> Result<f64, String> {
            assert_eq!(rows.len(), 1);
            Ok(self.value)
        }
    }

    const WETH: Address = Address::with_last_byte(1);
    const USDC: Address = Address::with_last_byte(2);

    pub(crate) fn market() -> Market {
        let mut m = Market::new(vec![PoolMeta {
            address: Address::with_last_byte(9),
            family: Family::V2,
            dex: "t".into(),
            token0: WETH,
            token1: USDC,
            symbol0: "WETH".into(),
            symbol1: "USDC".into(),
            decimals0: 18,
            decimals1: 6,
            fee: 3000,
            tick_spacing: 1,
            stable: false,
        }]);
        m.states[0] = PoolState::V2 {
            reserve0: U256::from(1000e18 as u128),
            reserve1: U256::from(2_000_000e6 as u128),
        };
        m.block = BlockInfo {
            number: 5,
            timestamp: 0,
            base_fee: Some(1),
            ..BlockInfo::default()
        };
        m
    }

    fn env(value: f64, target: &str, feature: &str) -> TradingEnv {
        let scorer = Constant {
            value,
            target: target.into(),
            features: vec![feature.into()],
        };
        TradingEnv {
            quote: USDC,
            native: WETH,
            gas: GasConfig::default(),
            model: Some(ModelHandle::new(Arc::new(scorer))),
        }
    }

    fn decide(env: &TradingEnv) -> Vec<Action> {
        let m = market();
        let mut s = ModelGated::new(&m, env, &space().defaults()).unwrap();
        let clock = ReplayClock::at(&m.block);
        let bal = |t: Address| {
            if t == USDC {
                U256::from(10_000e6 as u128)
            } else {
                U256::ZERO
            }
        };
        let ctx = Context {
            clock: &clock as &dyn Clock,
            balances: &bal,
            env,
            mark: &|_| None,
        };
        let mut out = Vec::new();
        s.on_block(&m, &ctx, &mut out);
        out
    }

    const TARGET: &str = "label_fwd_ret_5__t_weth_usdc_3000";
    const MID: &str = "t_weth_usdc_3000__mid_price";

    /// A model that fits [`market`].
    pub(crate) fn fitting_env() -> TradingEnv {
        env(0.0, TARGET, MID)
    }

    #[test]
    fn trades_only_past_the_threshold_in_the_label_orientation() {
        // WETH is token0: a positive predicted return of token0 in token1 means buy WETH.
        let buys = decide(&env(0.01, TARGET, MID));
        assert_eq!(buys.len(), 1);
        let Action::Submit(b) = &buys[0];
        assert_eq!((b.token_in(), b.tag), (USDC, crate::BundleTag::Buy));
        assert_eq!(
            b.amount_in,
            U256::from(2_500e6 as u128),
            "a quarter of the balance"
        );
        // Below the 5 bps default entry, or negative: no trade.
        assert!(decide(&env(0.0004, TARGET, MID)).is_empty());
        assert!(decide(&env(-0.01, TARGET, MID)).is_empty());
    }

    #[test]
    fn a_model_that_does_not_fit_is_refused_with_the_reason() {
        let m = market();
        let p = space().defaults();
        let mut no_model = env(0.0, TARGET, MID);
        no_model.model = None;
        assert_eq!(
            ModelGated::new(&m, &no_model, &p).unwrap_err(),
            GateError::NoModel
        );
        let e = ModelGated::new(&m, &env(0.0, "label_arb_profitable__a__b", MID), &p).unwrap_err();
        assert!(matches!(e, GateError::Target { .. }), "{e}");
        let e = ModelGated::new(&m, &env(0.0, "label_fwd_ret_5__other_pool", MID), &p).unwrap_err();
        assert!(e.to_string().contains("t_weth_usdc_3000"), "{e}");
        let e =
            ModelGated::new(&m, &env(0.0, TARGET, "t_weth_usdc_3000__volume1_10"), &p).unwrap_err();
        assert!(
            e.to_string().contains("`t_weth_usdc_3000__volume1_10`"),
            "{e}"
        );
    }
}

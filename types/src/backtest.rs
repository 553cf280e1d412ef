//! What a backtest (and, the same way, a live session) reports: its metrics and equity curve.

use serde::{Deserialize, Serialize};

/// Performance metrics of one backtest. Floats (these are reports, not money paths); the
/// backtester computes them in a fixed order so the same run gives bit-identical values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    pub initial_equity: f64,
    pub final_equity: f64,
    /// Final minus initial equity, in quote units, net of fees and gas.
    pub net_pnl_quote: f64,
    /// The same in USD, when the quote token is a stablecoin or priced against one.
    pub net_pnl_usd: Option<f64>,
    pub return_pct: f64,
    pub gas_spent_quote: f64,
    /// Bundles submitted.
    pub trades: u64,
    pub filled: u64,
    pub reverts: u64,
    /// Not sent: over the balance.
    pub rejected: u64,
    /// Sent but not included by their deadline block (or dropped by the node).
    #[serde(default)]
    pub expired: u64,
    /// Bundles a competitor front-ran (they then usually revert).
    pub lost_to_competition: u64,
    /// Profitable realisations over all realisations (reverts count as losses).
    pub hit_rate: f64,
    /// Annualised, from per-period equity returns; 0 when returns do not vary.
    pub sharpe: f64,
    /// Annualised; 0 when no period lost (the ratio is then unbounded, not zero: read it with
    /// `max_drawdown`).
    pub sortino: f64,
    /// Largest peak-to-trough fall of equity, as a fraction of the peak.
    pub max_drawdown: f64,
    /// Annualised (arithmetic) return over max drawdown; 0 without drawdown.
    pub calmar: f64,
    /// Traded notional over mean equity.
    pub turnover: f64,
    /// Mean fraction of equity held outside the quote token.
    pub exposure: f64,
    pub periods: u64,
    pub span_secs: f64,
    /// Final equity marked at reference prices minus what closing every open position really
    /// returned (LP fees, price impact, gas): already deducted from `final_equity`.
    #[serde(default)]
    pub close_cost_quote: f64,
    /// Historical events re-executed as flows on pools our trades had moved.
    #[serde(default)]
    pub diverged_events: u64,
    /// Of those, swaps that could not execute on our state (their senders would have reverted).
    #[serde(default)]
    pub failed_flows: u64,
    /// Rival bundles that executed.
    #[serde(default)]
    pub rival_fills: u64,
    /// Blocks before the window the strategy watched before trading.
    #[serde(default)]
    pub warmup_blocks: u64,
    /// Errors that did not stop the run (unpriceable gas or holdings, a model that failed to
    /// score): the run's figures are not to be trusted when this is not zero.
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub first_error: Option<String>,
    /// The queue assumption the run relied on, when the data has no transaction fees.
    #[serde(default)]
    pub queue_assumption: Option<String>,
}

/// One point of an equity curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub block: u64,
    pub timestamp: u64,
    /// Quote-token value of all balances, human units: at reference prices, and at the last block
    /// what closing every position would really return.
    pub equity: f64,
}

//! The feature-pipeline configuration, from TOML, validated once.

use serde::{Deserialize, Serialize};

use crate::FeatureError;

/// What to compute. Every field has a default, so an empty file is a valid config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Log-return horizons in blocks.
    pub return_horizons: Vec<u32>,
    /// Realised-volatility windows in blocks (std of 1-block log returns).
    pub vol_windows: Vec<u32>,
    /// Windows in blocks for volume, swap count and order-flow imbalance sums.
    pub flow_windows: Vec<u32>,
    /// Depth: token amounts that move each pool's price up or down by this many bps.
    pub depth_bps: Vec<u32>,
    /// Label horizons in blocks (forward return, forward spread change).
    pub label_horizons: Vec<u32>,
    /// Blocks between a decision and its inclusion, for the arbitrage label.
    pub latency_blocks: u32,
    /// Gas of one two-leg arbitrage transaction.
    pub gas_units: u64,
    /// Priority fee paid on top of the base fee, in wei per gas.
    pub priority_fee_wei: u64,
    /// Trade size of the arbitrage label, in units of the chain's native token (ETH on Base).
    pub notional_native: f64,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            return_horizons: vec![1, 5, 20],
            vol_windows: vec![20, 100],
            flow_windows: vec![10, 50],
            depth_bps: vec![10, 50],
            label_horizons: vec![1, 5, 20],
            latency_blocks: 1,
            gas_units: 250_000,
            priority_fee_wei: 1_000_000,
            notional_native: 5.0,
        }
    }
}

impl FeatureConfig {
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, FeatureError> {
        let c: FeatureConfig =
            toml::from_str(text).map_err(|e| FeatureError::Config(format!("{origin}: {e}")))?;
        c.validate()
            .map_err(|m| FeatureError::Config(format!("{origin}: {m}")))?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: &[u32]| {
            if v.is_empty() || v.contains(&0) {
                Err(format!(
                    "{name} must be a non-empty list of positive block counts"
                ))
            } else {
                Ok(())
            }
        };
        positive("return_horizons", &self.return_horizons)?;
        positive("vol_windows", &self.vol_windows)?;
        positive("flow_windows", &self.flow_windows)?;
        positive("label_horizons", &self.label_horizons)?;
        if self.vol_windows.contains(&1) {
            return Err("vol_windows must be at least 2 blocks".into());
        }
        if self.depth_bps.iter().any(|&b| b == 0 || b >= 10_000) {
            return Err("depth_bps must be between 1 and 9999".into());
        }
        if !(self.notional_native.is_finite() && self.notional_native > 0.0) {
            return Err("notional_native must be a positive number".into());
        }
        Ok(())
    }

    /// Checks the label horizons against the data: a label looking `h` blocks ahead of a row is
    /// null on the last `h` rows, so one at or beyond the span of `first..=last` (one row per
    /// block) would be a column of nulls only, and a model trained on it would have nothing.
    pub fn check_span(&self, first: i64, last: i64) -> Result<(), String> {
        let blocks = (last - first + 1).max(0);
        let fits = |h: u32| i64::from(h) < blocks;
        let tail = format!(
            "the dataset spans {blocks} blocks ({first}..={last}), so every label would be null; \
             use at most {}",
            (blocks - 1).max(0)
        );
        if let Some(&h) = self.label_horizons.iter().find(|&&h| !fits(h)) {
            return Err(format!("label_horizons = {h}: {tail}"));
        }
        if !fits(self.latency_blocks) {
            return Err(format!(
                "latency_blocks = {} (the arbitrage label's look-ahead): {tail}",
                self.latency_blocks
            ));
        }
        Ok(())
    }
}

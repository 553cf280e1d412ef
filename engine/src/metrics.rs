//! Performance metrics of one backtest. Floats (these are reports, not money paths), computed in a
//! fixed order so the same run gives bit-identical values.

use dexlab_strategy::market::to_human;

use crate::backtest::Tally;

const YEAR_SECS: f64 = 31_557_600.0;

/// The metrics' shape is shared with the store, the lab and the live engine (`dexlab-types`).
pub use dexlab_types::backtest::Metrics;

#[allow(clippy::too_many_arguments)]
pub(crate) fn compute_metrics(
    initial: f64,
    final_equity: f64,
    equity: &[f64],
    exposure_sum: f64,
    tally: &Tally,
    quote_dec: u8,
    span_secs: f64,
    usd_per_quote: Option<f64>,
) -> Metrics {
    let returns: Vec<f64> = equity
        .windows(2)
        .map(|w| if w[0] > 0.0 { w[1] / w[0] - 1.0 } else { 0.0 })
        .collect();
    let n = returns.len();
    let period_secs = if n > 0 { span_secs / n as f64 } else { 0.0 };
    let ann = if period_secs > 0.0 {
        (YEAR_SECS / period_secs).sqrt()
    } else {
        0.0
    };
    let mean = if n > 0 {
        returns.iter().sum::<f64>() / n as f64
    } else {
        0.0
    };
    let var = if n > 1 {
        returns.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let down = if n > 0 {
        (returns.iter().map(|r| r.min(0.0) * r.min(0.0)).sum::<f64>() / n as f64).sqrt()
    } else {
        0.0
    };
    let sharpe = if var > 0.0 {
        mean / var.sqrt() * ann
    } else {
        0.0
    };
    let sortino = if down > 0.0 { mean / down * ann } else { 0.0 };
    let mut peak = f64::MIN;
    let mut max_dd: f64 = 0.0;
    for &e in equity.iter().chain(std::iter::once(&final_equity)) {
        peak = peak.max(e);
        if peak > 0.0 {
            max_dd = max_dd.max((peak - e) / peak);
        }
    }
    let total_return = if initial > 0.0 {
        final_equity / initial - 1.0
    } else {
        0.0
    };
    let annual = if span_secs > 0.0 {
        total_return * YEAR_SECS / span_secs
    } else {
        0.0
    };
    let calmar = if max_dd > 0.0 { annual / max_dd } else { 0.0 };
    let mean_equity = if equity.is_empty() {
        initial
    } else {
        equity.iter().sum::<f64>() / equity.len() as f64
    };
    let traded = to_human(tally.traded_quote, quote_dec);
    let net = final_equity - initial;
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    Metrics {
        initial_equity: initial,
        final_equity,
        net_pnl_quote: net,
        net_pnl_usd: usd_per_quote.map(|u| finite(net * u)),
        return_pct: finite(total_return * 100.0),
        gas_spent_quote: to_human(tally.gas_quote, quote_dec),
        trades: tally.submitted,
        filled: tally.filled,
        reverts: tally.reverted,
        rejected: tally.rejected,
        expired: tally.expired,
        lost_to_competition: tally.lost,
        hit_rate: if tally.realizations > 0 {
            tally.wins as f64 / tally.realizations as f64
        } else {
            0.0
        },
        sharpe: finite(sharpe),
        sortino: finite(sortino),
        max_drawdown: finite(max_dd),
        calmar: finite(calmar),
        turnover: if mean_equity > 0.0 {
            finite(traded / mean_equity)
        } else {
            0.0
        },
        exposure: if equity.is_empty() {
            0.0
        } else {
            finite(exposure_sum / equity.len() as f64)
        },
        periods: n as u64,
        span_secs,
        close_cost_quote: 0.0,
        diverged_events: tally.diverged_events,
        failed_flows: tally.failed_flows,
        rival_fills: tally.rival_fills,
        warmup_blocks: tally.warmup_blocks,
        errors: tally.errors,
        first_error: tally.first_error.clone(),
        queue_assumption: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_sharpe_and_calmar_from_a_known_curve() {
        let eq = [100.0, 110.0, 99.0, 121.0];
        let m = compute_metrics(
            100.0,
            121.0,
            &eq,
            0.0,
            &Tally::default(),
            6,
            3.0 * 3600.0,
            Some(1.0),
        );
        assert!((m.max_drawdown - 0.1).abs() < 1e-12, "{}", m.max_drawdown);
        let r = [0.1, 99.0 / 110.0 - 1.0, 121.0 / 99.0 - 1.0];
        let mean = r.iter().sum::<f64>() / 3.0;
        let sd = (r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 2.0).sqrt();
        let want = mean / sd * (YEAR_SECS / 3600.0).sqrt();
        assert!((m.sharpe - want).abs() < 1e-9 * want.abs());
        assert!((m.net_pnl_quote - 21.0).abs() < 1e-12);
        assert!(m.calmar > 0.0 && m.sortino > 0.0);
        // A flat curve has no risk figures rather than NaN.
        let flat = compute_metrics(
            100.0,
            100.0,
            &[100.0; 5],
            0.0,
            &Tally::default(),
            6,
            100.0,
            None,
        );
        assert_eq!(
            (flat.sharpe, flat.sortino, flat.max_drawdown, flat.calmar),
            (0.0, 0.0, 0.0, 0.0)
        );
    }
}

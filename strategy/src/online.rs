//! Features computed block by block from the market a strategy sees, under the same column names
//! as the Polars pipeline (`dexlab features build`), so that a model trained on a features dataset
//! can be fed the same inputs in a backtest and in the live engine.
//!
//! Only features that follow from pool state and block headers are computed online: per pool
//! `<pool>__mid_price`, `<pool>__ret_<h>` (log return over h blocks), `<pool>__vol_<w>` (sample
//! standard deviation of the last w one-block log returns), per venue pair `spread_bps__<a>__<b>`,
//! and `base_fee_wei`. Flow features (volume, swap count, order-flow imbalance) need the swaps'
//! amounts, which pool state does not carry; a model that reads them cannot be served online, and
//! [`OnlineFeatures::new`] says which columns are the problem.
//!
//! Rows are per block number, like the pipeline's grid: blocks the feed skips (no events, no
//! header) repeat the last prices and have no base fee. One difference is deliberate: the pipeline
//! knows a pool's price only from its swaps, while the market also knows it from a snapshot or an
//! `Initialize` before the first swap, so online values can exist where the dataset has nulls.
//! The parity test in the root crate compares both on real and simulated data.

use std::collections::VecDeque;

use alloy_primitives::Address;

use crate::market::{Market, PoolMeta};

/// The column-safe pool names of the feature datasets: `<dex>_<sym0>_<sym1>_<fee>`, lowercased,
/// every other character `_`; a name taken twice gets the pool address' first 6 hex digits.
pub fn pool_labels<'a, I>(pools: I) -> Vec<String>
where
    I: IntoIterator<Item = (&'a str, &'a str, &'a str, u32, Address)>,
{
    let mut out = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (dex, sym0, sym1, fee, address) in pools {
        let base: String = format!("{dex}_{sym0}_{sym1}_{fee}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let n = seen.entry(base.clone()).or_default();
        *n += 1;
        out.push(if *n == 1 {
            base
        } else {
            format!("{base}_{}", &format!("{address:x}")[..6])
        });
    }
    out
}

/// [`pool_labels`] of a market's pools, in pool order.
pub fn market_labels(pools: &[PoolMeta]) -> Vec<String> {
    pool_labels(pools.iter().map(|p| {
        (
            p.dex.as_str(),
            p.symbol0.as_str(),
            p.symbol1.as_str(),
            p.fee,
            p.address,
        )
    }))
}

/// Why a column list cannot be computed online.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot compute {} online: {} (online features: <pool>__mid_price, <pool>__ret_<h>, \
     <pool>__vol_<w>, spread_bps__<a>__<b>, base_fee_wei; pools: {})",
    if .columns.len() == 1 { "this column" } else { "these columns" },
    .columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
    .pools.join(", ")
)]
pub struct UnsupportedColumns {
    pub columns: Vec<String>,
    pub pools: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Spec {
    Mid(usize),
    Ret(usize, usize),
    Vol(usize, usize),
    Spread(usize, usize),
    BaseFee,
}

/// One pool's price history (log mid price per block, newest last).
#[derive(Debug, Clone, Default)]
struct History {
    lp: VecDeque<f64>,
}

/// Computes a fixed list of feature columns for every block and keeps the last `window` rows.
#[derive(Debug, Clone)]
pub struct OnlineFeatures {
    columns: Vec<String>,
    specs: Vec<Spec>,
    /// Log prices to keep per pool: the longest horizon or volatility window, plus one.
    keep: usize,
    hist: Vec<History>,
    /// Pools some column needs.
    tracked: Vec<usize>,
    last_block: Option<u64>,
    window: usize,
    rows: VecDeque<Vec<f64>>,
}

impl OnlineFeatures {
    /// Plans `columns` (dataset names) over `pools`, keeping the last `window` rows.
    pub fn new<S: AsRef<str>>(
        pools: &[PoolMeta],
        columns: &[S],
        window: usize,
    ) -> Result<Self, UnsupportedColumns> {
        let labels = market_labels(pools);
        let pool_of = |name: &str| labels.iter().position(|l| l == name);
        let mut specs = Vec::new();
        let mut bad = Vec::new();
        for c in columns {
            let c = c.as_ref();
            let spec = if c == "base_fee_wei" {
                Some(Spec::BaseFee)
            } else if let Some(rest) = c.strip_prefix("spread_bps__") {
                rest.split_once("__")
                    .and_then(|(a, b)| Some(Spec::Spread(pool_of(a)?, pool_of(b)?)))
            } else if let Some((pool, feat)) = c.rsplit_once("__") {
                let n = |prefix: &str| {
                    feat.strip_prefix(prefix)
                        .and_then(|d| d.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                };
                pool_of(pool).and_then(|p| {
                    if feat == "mid_price" {
                        Some(Spec::Mid(p))
                    } else if let Some(h) = n("ret_") {
                        Some(Spec::Ret(p, h))
                    } else {
                        n("vol_").filter(|&w| w >= 2).map(|w| Spec::Vol(p, w))
                    }
                })
            } else {
                None
            };
            match spec {
                Some(s) => specs.push(s),
                None => bad.push(c.to_owned()),
            }
        }
        if !bad.is_empty() {
            return Err(UnsupportedColumns {
                columns: bad,
                pools: labels,
            });
        }
        let mut tracked: Vec<usize> = specs
            .iter()
            .flat_map(|s| match *s {
                Spec::Mid(p) | Spec::Ret(p, _) | Spec::Vol(p, _) => vec![p],
                Spec::Spread(a, b) => vec![a, b],
                Spec::BaseFee => vec![],
            })
            .collect();
        tracked.sort_unstable();
        tracked.dedup();
        let keep = specs
            .iter()
            .map(|s| match *s {
                Spec::Ret(_, h) => h + 1,
                Spec::Vol(_, w) => w + 1,
                _ => 1,
            })
            .max()
            .unwrap_or(1);
        Ok(Self {
            columns: columns.iter().map(|c| c.as_ref().to_owned()).collect(),
            specs,
            keep,
            hist: vec![History::default(); pools.len()],
            tracked,
            last_block: None,
            window: window.max(1),
            rows: VecDeque::new(),
        })
    }

    /// Blocks of history needed before every column of a full window is defined.
    pub fn history_blocks(&self) -> usize {
        self.keep + self.window
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Records the market at the end of its block (call once per block, in order). Blocks
    /// between the previous call and this one are filled in with the previous prices.
    pub fn on_block(&mut self, market: &Market) {
        let block = market.block.number;
        if let Some(last) = self.last_block {
            if block <= last {
                return;
            }
            // Skipped blocks: prices carried forward, no base fee. Only the last `window` rows
            // and `keep` prices can matter, so a long gap costs at most that much.
            let gap = (block - last - 1).min((self.keep + self.window) as u64) as usize;
            for _ in 0..gap {
                for &p in &self.tracked {
                    let lp = self.hist[p].lp.back().copied().unwrap_or(f64::NAN);
                    push_capped(&mut self.hist[p].lp, lp, self.keep);
                }
                self.push_row(f64::NAN);
            }
        }
        self.last_block = Some(block);
        for &p in &self.tracked {
            let lp = market.mid_price(p).map_or(f64::NAN, f64::ln);
            push_capped(&mut self.hist[p].lp, lp, self.keep);
        }
        self.push_row(market.block.base_fee.map_or(f64::NAN, |f| f as f64));
    }

    fn push_row(&mut self, base_fee: f64) {
        let row = self
            .specs
            .iter()
            .map(|s| self.value(*s, base_fee))
            .collect();
        push_capped(&mut self.rows, row, self.window);
    }

    fn value(&self, spec: Spec, base_fee: f64) -> f64 {
        let lp = |p: usize, back: usize| -> f64 {
            let h = &self.hist[p].lp;
            if back < h.len() {
                h[h.len() - 1 - back]
            } else {
                f64::NAN
            }
        };
        match spec {
            Spec::Mid(p) => lp(p, 0).exp(),
            Spec::Ret(p, h) => lp(p, 0) - lp(p, h),
            Spec::Vol(p, w) => {
                let rets: Vec<f64> = (0..w).map(|k| lp(p, k) - lp(p, k + 1)).collect();
                sample_std(&rets)
            }
            Spec::Spread(a, b) => (lp(a, 0).exp() / lp(b, 0).exp() - 1.0) * 1e4,
            Spec::BaseFee => base_fee,
        }
    }

    /// The newest row (after at least one block).
    pub fn last_row(&self) -> Option<&[f64]> {
        self.rows.back().map(Vec::as_slice)
    }

    /// The last `window` rows, oldest first, when there are that many and all are finite.
    pub fn window(&self) -> Option<Vec<&[f64]>> {
        if self.rows.len() < self.window
            || self.rows.iter().any(|r| r.iter().any(|v| !v.is_finite()))
        {
            return None;
        }
        Some(self.rows.iter().map(Vec::as_slice).collect())
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

/// Sample standard deviation (n − 1), NaN when any value is.
fn sample_std(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let ss: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    (ss / (n - 1.0)).sqrt()
}

#[cfg(test)]
mod tests {
    use alloy_primitives::U256;

    use super::*;
    use crate::market::{BlockInfo, Family, PoolState};

    fn pool(dex: &str, fee: u32, byte: u8) -> PoolMeta {
        PoolMeta {
            address: Address::repeat_byte(byte),
            family: Family::V2,
            dex: dex.into(),
            token0: Address::repeat_byte(1),
            token1: Address::repeat_byte(2),
            symbol0: "WETH".into(),
            symbol1: "USDC".into(),
            decimals0: 18,
            decimals1: 18,
            fee,
            tick_spacing: 1,
            stable: false,
        }
    }

    fn set(m: &mut Market, block: u64, prices: &[f64]) {
        m.block = BlockInfo {
            number: block,
            timestamp: 0,
            base_fee: Some(100),
            ..BlockInfo::default()
        };
        for (i, p) in prices.iter().enumerate() {
            m.states[i] = PoolState::V2 {
                reserve0: U256::from(1_000_000_000_000u64),
                reserve1: U256::from((p * 1e12) as u64),
            };
        }
    }

    #[test]
    fn labels_match_the_dataset_naming() {
        let pools = [
            pool("uniswap-v3", 500, 0xaa),
            pool("uniswap-v3", 500, 0xbb),
            pool("base.swap", 3000, 0xcc),
        ];
        assert_eq!(
            market_labels(&pools),
            [
                "uniswap_v3_weth_usdc_500",
                "uniswap_v3_weth_usdc_500_bbbbbb",
                "base_swap_weth_usdc_3000"
            ]
        );
    }

    #[test]
    fn returns_volatility_spreads_and_gaps() {
        let pools = vec![pool("a", 500, 0xaa), pool("b", 3000, 0xbb)];
        let cols = [
            "a_weth_usdc_500__ret_2",
            "a_weth_usdc_500__vol_3",
            "spread_bps__a_weth_usdc_500__b_weth_usdc_3000",
            "base_fee_wei",
        ];
        let mut f = OnlineFeatures::new(&pools, &cols, 2).unwrap();
        let mut m = Market::new(pools);
        let px = [100.0, 100.5, 101.0, 99.0, 102.0];
        for (i, p) in px.iter().enumerate() {
            set(&mut m, 10 + i as u64, &[*p, 100.0]);
            f.on_block(&m);
        }
        let row = f.last_row().unwrap();
        assert!((row[0] - (102f64 / 101.0).ln()).abs() < 1e-12, "{row:?}");
        let r: Vec<f64> = px[1..].windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let mean = r.iter().sum::<f64>() / 3.0;
        let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((row[1] - sd).abs() < 1e-12);
        assert!((row[2] - 200.0).abs() < 1e-9);
        assert_eq!(row[3], 100.0);
        assert!(f.window().is_some());
        // Two skipped blocks: the price is carried, the base fee is unknown, so the window
        // (2 rows) is not complete until two real blocks have passed again.
        set(&mut m, 17 + 1, &[102.0, 100.0]);
        f.on_block(&m);
        assert!(f.window().is_none());
        set(&mut m, 18 + 1, &[102.0, 100.0]);
        f.on_block(&m);
        let w = f.window().unwrap();
        assert_eq!(w[0][0], 0.0, "ret_2 over carried prices is zero");
    }

    #[test]
    fn unsupported_columns_are_named() {
        let pools = vec![pool("a", 500, 0xaa)];
        let e = OnlineFeatures::new(
            &pools,
            &[
                "a_weth_usdc_500__ofi_10",
                "a_weth_usdc_500__mid_price",
                "x__ret_1",
            ],
            1,
        )
        .unwrap_err();
        assert_eq!(e.columns, ["a_weth_usdc_500__ofi_10", "x__ret_1"]);
        assert!(
            e.to_string()
                .contains("`a_weth_usdc_500__ofi_10`, `x__ret_1`"),
            "{e}"
        );
    }
}

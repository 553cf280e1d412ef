//! The feature and label pipeline, in Polars' lazy API.
//!
//! One row per block. For each pool, columns `<pool>__<feature>`: mid price, log returns over
//! several horizons, realised volatility, swap count, volume, signed order-flow imbalance, active
//! liquidity and depth within ±x bps; for each pair of pools on the same tokens, the cross-venue
//! spread in bps; the base fee. Features at block t use events up to t only (backward shifts and
//! trailing windows); labels, all named `label_…`, use events after t only (forward shifts).

use std::collections::HashMap;

use alloy_primitives::Address;
use dexlab_data::types::PoolInfo;
use polars::prelude::*;

use crate::config::FeatureConfig;

/// Lazy inputs of the pipeline.
#[derive(Clone)]
pub struct Inputs {
    /// `block_number, log_index, pool, price_float, amount0_float, amount1_float, liquidity`.
    pub swaps: LazyFrame,
    /// `block_number, timestamp, base_fee_per_gas`.
    pub blocks: LazyFrame,
    /// `block_number, pool_label, depth_*` (see [`crate::depth`]).
    pub depth: LazyFrame,
    pub pools: Vec<PoolInfo>,
    pub first_block: i64,
    pub last_block: i64,
}

/// A short, stable, column-safe name for each pool: `<dex>_<token0>_<token1>_<fee>`.
pub fn pool_labels(pools: &[PoolInfo]) -> HashMap<Address, String> {
    let mut out = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for p in pools {
        let base: String = format!(
            "{}_{}_{}_{}",
            p.dex, p.token0.symbol, p.token1.symbol, p.fee
        )
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
        let label = if *n == 1 {
            base
        } else {
            format!("{base}_{}", &format!("{:x}", p.address)[..6])
        };
        out.insert(p.address, label);
    }
    out
}

/// Pairs of pools quoting the same two tokens, in a stable order.
pub fn venue_pairs(pools: &[PoolInfo]) -> Vec<(&PoolInfo, &PoolInfo)> {
    let mut v = Vec::new();
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            if a.token0.address == b.token0.address && a.token1.address == b.token1.address {
                v.push((a, b));
            }
        }
    }
    v
}

/// Per-block aggregates of one pool's swaps.
fn per_block_aggs() -> Vec<Expr> {
    vec![
        // The block's last swap: the one with the highest log index (no per-group sort).
        col("price_float")
            .get(col("log_index").arg_max(), false)
            .alias("px"),
        col("liquidity_f")
            .get(col("log_index").arg_max(), false)
            .alias("liq"),
        len().cast(DataType::Float64).alias("n"),
        col("amount0_float").abs().sum().alias("vol0"),
        col("amount1_float").abs().sum().alias("vol1"),
        // Token0 taken out of the pool (bought) is positive flow.
        (lit(0.0) - col("amount0_float")).sum().alias("net0"),
    ]
}

/// Left join on `block_number` that keeps the left side's (sorted) row order, so no re-sort of the
/// wide frame is needed afterwards.
fn join_blocks(left: LazyFrame, right: LazyFrame) -> LazyFrame {
    let mut args = JoinArgs::new(JoinType::Left);
    args.maintain_order = MaintainOrderJoin::Left;
    left.join(right, [col("block_number")], [col("block_number")], args)
}

fn ffill(name: &str) -> Expr {
    col(name).fill_null_with_strategy(FillNullStrategy::Forward(None))
}

fn window(w: u32) -> RollingOptionsFixedWindow {
    RollingOptionsFixedWindow {
        window_size: w as usize,
        min_periods: w as usize,
        ..Default::default()
    }
}

/// Builds the per-pool frame of one pool: features and labels, columns prefixed by its label.
fn pool_frame(
    inp: &Inputs,
    grid: &LazyFrame,
    pool: &PoolInfo,
    label: &str,
    cfg: &FeatureConfig,
) -> LazyFrame {
    let addr = format!("{:#x}", pool.address);
    // Filter first, then group by the integer block alone: cheaper than grouping every swap by
    // (pool string, block).
    let agg = inp
        .swaps
        .clone()
        .filter(col("pool").eq(lit(addr)))
        // Parse the exact decimal liquidity only for this pool's rows.
        .with_column(
            col("liquidity")
                .cast(DataType::Float64)
                .alias("liquidity_f"),
        )
        .group_by([col("block_number")])
        .agg(per_block_aggs());
    let depth_cols: Vec<String> = cfg
        .depth_bps
        .iter()
        .flat_map(|b| [format!("depth_up_{b}bps"), format!("depth_down_{b}bps")])
        .collect();
    let depth = inp
        .depth
        .clone()
        .filter(col("pool_label").eq(lit(label.to_string())))
        .drop(by_name(["pool_label"], true, false));
    let mut f = join_blocks(grid.clone(), agg);
    if !depth_cols.is_empty() {
        f = join_blocks(f, depth);
    }
    let mut fill = vec![
        ffill("px"),
        ffill("liq"),
        col("n").fill_null(lit(0.0)),
        col("vol0").fill_null(lit(0.0)),
        col("vol1").fill_null(lit(0.0)),
        col("net0").fill_null(lit(0.0)),
    ];
    fill.extend(depth_cols.iter().map(|c| ffill(c)));
    f = f
        .with_columns(fill)
        .with_column(col("px").log(lit(std::f64::consts::E)).alias("lp"));
    f = f.with_column((col("lp") - col("lp").shift(lit(1))).alias("ret_1"));
    let mut feats: Vec<Expr> = vec![];
    for &h in &cfg.return_horizons {
        if h != 1 {
            feats.push((col("lp") - col("lp").shift(lit(h as i64))).alias(format!("ret_{h}")));
        }
    }
    for &w in &cfg.vol_windows {
        feats.push(
            col("ret_1")
                .rolling_std(window(w))
                .alias(format!("vol_{w}")),
        );
    }
    for &w in &cfg.flow_windows {
        // Rolling sums drift by float error when values leave the window: where the window saw
        // no swap the sums are exactly zero, not a residue of 1e-9.
        let active = col("n").rolling_sum(window(w)).gt(lit(0.5));
        feats.push(col("n").rolling_sum(window(w)).alias(format!("swaps_{w}")));
        feats.push(
            when(active.clone())
                .then(col("vol1").rolling_sum(window(w)))
                .otherwise(
                    when(col("n").rolling_sum(window(w)).is_null())
                        .then(lit(NULL))
                        .otherwise(lit(0.0)),
                )
                .alias(format!("volume1_{w}")),
        );
        feats.push(
            when(active)
                .then(col("net0").rolling_sum(window(w)) / col("vol0").rolling_sum(window(w)))
                .otherwise(
                    when(col("n").rolling_sum(window(w)).is_null())
                        .then(lit(NULL))
                        .otherwise(lit(0.0)),
                )
                .alias(format!("ofi_{w}")),
        );
    }
    let mut labels: Vec<Expr> = vec![];
    for &h in &cfg.label_horizons {
        labels.push(
            (col("lp").shift(lit(-(h as i64))) - col("lp")).alias(format!("label_fwd_ret_{h}")),
        );
    }
    f = f.with_columns(feats).with_columns(labels);
    let keep: Vec<String> = {
        let mut k = vec![
            "px".to_string(),
            "liq".into(),
            "n".into(),
            "vol1".into(),
            "ret_1".into(),
        ];
        k.extend(
            cfg.return_horizons
                .iter()
                .filter(|&&h| h != 1)
                .map(|h| format!("ret_{h}")),
        );
        k.extend(cfg.vol_windows.iter().map(|w| format!("vol_{w}")));
        for w in &cfg.flow_windows {
            k.extend([
                format!("swaps_{w}"),
                format!("volume1_{w}"),
                format!("ofi_{w}"),
            ]);
        }
        k.extend(depth_cols);
        k
    };
    let mut sel = vec![col("block_number")];
    for k in &keep {
        let pretty = match k.as_str() {
            "px" => "mid_price".to_string(),
            "liq" => "active_liquidity".into(),
            "n" => "swaps_1".into(),
            "vol1" => "volume1_1".into(),
            other => other.to_string(),
        };
        sel.push(col(k.as_str()).alias(format!("{label}__{pretty}")));
    }
    for &h in &cfg.label_horizons {
        sel.push(
            col(format!("label_fwd_ret_{h}").as_str()).alias(format!("label_fwd_ret_{h}__{label}")),
        );
    }
    f.select(sel)
}

/// The whole pipeline; `extra` may add columns at the end (tests use it to inject leaks).
pub fn build_lazy(
    inp: &Inputs,
    cfg: &FeatureConfig,
    extra: Option<&dyn Fn(LazyFrame) -> LazyFrame>,
) -> PolarsResult<LazyFrame> {
    let grid =
        df!("block_number" => (inp.first_block..=inp.last_block).collect::<Vec<i64>>())?.lazy();
    let blocks = inp.blocks.clone().select([
        col("block_number").cast(DataType::Int64),
        col("timestamp").cast(DataType::Int64),
        col("base_fee_per_gas")
            .cast(DataType::Float64)
            .alias("base_fee_wei"),
    ]);
    let inp = Inputs {
        // Read once, shared by every pool's filter (the plan would otherwise scan once per pool).
        swaps: inp
            .swaps
            .clone()
            .with_columns([
                col("block_number").cast(DataType::Int64),
                col("log_index").cast(DataType::Int64),
            ])
            .cache(),
        depth: inp
            .depth
            .clone()
            .with_column(col("block_number").cast(DataType::Int64)),
        ..inp.clone()
    };
    let labels = pool_labels(&inp.pools);
    // Every pool frame has exactly the grid's rows in the grid's order: put them side by side
    // instead of joining.
    let mut parts = vec![join_blocks(grid.clone(), blocks)];
    for p in &inp.pools {
        parts.push(
            pool_frame(&inp, &grid, p, &labels[&p.address], cfg).drop(by_name(
                ["block_number"],
                true,
                false,
            )),
        );
    }
    let mut out = concat_lf_horizontal(parts, HConcatOptions::default())?;
    // Gas of one arbitrage transaction in bps of the notional, at each block's base fee.
    let gas_bps = (col("base_fee_wei") + lit(cfg.priority_fee_wei as f64))
        * lit(cfg.gas_units as f64)
        / lit(1e18)
        / lit(cfg.notional_native)
        * lit(1e4);
    out = out.with_column(gas_bps.alias("gas_cost_bps"));
    let mut spreads = vec![];
    let mut spread_labels = vec![];
    for (a, b) in venue_pairs(&inp.pools) {
        let (la, lb) = (&labels[&a.address], &labels[&b.address]);
        let name = format!("spread_bps__{la}__{lb}");
        let s = (col(format!("{la}__mid_price").as_str())
            / col(format!("{lb}__mid_price").as_str())
            - lit(1.0))
            * lit(1e4);
        spreads.push(s.clone().alias(name.as_str()));
        for &h in &cfg.label_horizons {
            spread_labels.push(
                (s.clone().shift(lit(-(h as i64))) - s.clone())
                    .alias(format!("label_fwd_spread_chg_{h}__{la}__{lb}")),
            );
        }
        let l = cfg.latency_blocks as i64;
        let hurdle = lit((a.fee + b.fee) as f64 / 100.0) + col("gas_cost_bps").shift(lit(-l));
        spread_labels.push(
            s.shift(lit(-l))
                .abs()
                .gt(hurdle)
                .alias(format!("label_arb_profitable__{la}__{lb}")),
        );
    }
    out = out.with_columns(spreads).with_columns(spread_labels);
    if let Some(extra) = extra {
        out = extra(out);
    }
    Ok(out)
}

//! The feature and label pipeline, in Polars' lazy API.
//!
//! One row per block. For each pool, columns `<pool>__<feature>`: mid price, log returns over
//! several horizons, realised volatility, swap count, volume, signed order-flow imbalance, active
//! liquidity and depth within ±x bps; for each pair of pools on the same tokens, the cross-venue
//! spread in bps; the base fee. Features at block t use events up to t only (backward shifts and
//! trailing windows); labels, all named `label_…`, use events after t only (forward shifts).

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::Address;
use dexlab_data::types::PoolInfo;
use polars::polars_utils::kahan_sum::KahanSum;
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

/// A short, stable, column-safe name for each pool: `<dex>_<token0>_<token1>_<fee>`. The one
/// naming rule shared with the online features that serve models to strategies.
pub fn pool_labels(pools: &[PoolInfo]) -> HashMap<Address, String> {
    let labels = dexlab_strategy::online::pool_labels(pools.iter().map(|p| {
        (
            p.dex.as_str(),
            p.token0.symbol.as_str(),
            p.token1.symbol.as_str(),
            p.fee,
            p.address,
        )
    }));
    pools.iter().map(|p| p.address).zip(labels).collect()
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

/// Names of the per-block aggregates of one pool, as [`per_block`] makes them.
const AGGS: [&str; 6] = ["px", "liq", "n", "vol0", "vol1", "net0"];

fn agg_name(label: &str, what: &str) -> String {
    format!("{label}__agg_{what}")
}

/// Per-block aggregates of every pool's swaps, on the block grid `first..=last`: the price and
/// liquidity after the block's last swap (the highest log index; null where the pool has no swap
/// in the block), the swap count, the volumes of both tokens and the token0 flow (zero where none).
///
/// One pass over all swaps, instead of a filter, a group-by and a join per pool, and the exact
/// decimal liquidity parsed for one swap per block and pool only. It computes what those did: sums
/// in row order with Kahan compensation, as Polars' hash group-by sums, and the last swap as
/// `get(arg_max(log_index))` picks it. `pool_id` indexes `labels`.
fn per_block(df: DataFrame, labels: &[String], first: i64, last: i64) -> PolarsResult<DataFrame> {
    let blocks = (last - first + 1).max(0) as usize;
    let cells = labels.len() * blocks;
    let (block, log, pool) = (
        df.column("block_number")?.i64()?.rechunk(),
        df.column("log_index")?.i64()?.rechunk(),
        df.column("pool_id")?.u32()?.rechunk(),
    );
    let (a0, a1) = (
        df.column("amount0_float")?.f64()?.rechunk(),
        df.column("amount1_float")?.f64()?.rechunk(),
    );
    let (block, log, pool, a0, a1) = (
        block.downcast_as_array(),
        log.downcast_as_array(),
        pool.downcast_as_array(),
        a0.downcast_as_array(),
        a1.downcast_as_array(),
    );
    // Plain slices and validity masks: the one loop over every swap.
    let (block_v, log_v, pool_v, a0_v, a1_v) = (
        block.values().as_slice(),
        log.values().as_slice(),
        pool.values().as_slice(),
        a0.values().as_slice(),
        a1.values().as_slice(),
    );
    let (block_ok, log_ok, pool_ok, a0_ok, a1_ok) = (
        block.validity(),
        log.validity(),
        pool.validity(),
        a0.validity(),
        a1.validity(),
    );
    // Cell `pool * blocks + block - first`. `IdxSize::MAX`: no swap with a log index (yet).
    let mut count = vec![0.0; cells];
    let mut last_row = vec![IdxSize::MAX; cells];
    let mut vol0 = vec![KahanSum::<f64>::default(); cells];
    let mut vol1 = vol0.clone();
    let mut net0 = vol0.clone();
    for i in 0..df.height() {
        if pool_ok.is_some_and(|v| !v.get_bit(i)) || block_ok.is_some_and(|v| !v.get_bit(i)) {
            continue;
        }
        let Some(b) = usize::try_from(block_v[i] - first)
            .ok()
            .filter(|&b| b < blocks)
        else {
            continue;
        };
        let c = pool_v[i] as usize * blocks + b;
        count[c] += 1.0;
        // The first of equal highest log indices, as `arg_max` picks it.
        if log_ok.is_none_or(|v| v.get_bit(i)) {
            let r = last_row[c];
            if r == IdxSize::MAX || log_v[i] > log_v[r as usize] {
                last_row[c] = i as IdxSize;
            }
        }
        if a0_ok.is_none_or(|v| v.get_bit(i)) {
            vol0[c] += a0_v[i].abs();
            net0[c] += 0.0 - a0_v[i];
        }
        if a1_ok.is_none_or(|v| v.get_bit(i)) {
            vol1[c] += a1_v[i].abs();
        }
    }
    let mut columns = vec![grid(first, last)];
    for (p, label) in labels.iter().enumerate() {
        let cells = p * blocks..(p + 1) * blocks;
        let rows = nullable_rows(last_row[cells.clone()].to_vec())?;
        let sums = |s: &[KahanSum<f64>]| {
            Float64Chunked::from_vec("sum".into(), s.iter().map(KahanSum::sum).collect())
        };
        let made = [
            df.column("price_float")?.take(&rows)?,
            // Only each block's last swap needs its exact decimal liquidity parsed.
            df.column("liquidity")?
                .take(&rows)?
                .cast(&DataType::Float64)?,
            Float64Chunked::from_vec("n".into(), count[cells.clone()].to_vec()).into_column(),
            sums(&vol0[cells.clone()]).into_column(),
            sums(&vol1[cells.clone()]).into_column(),
            sums(&net0[cells]).into_column(),
        ];
        for (c, what) in made.into_iter().zip(AGGS) {
            columns.push(c.with_name(agg_name(label, what).into()));
        }
    }
    DataFrame::new(blocks, columns)
}

/// [`per_block`] as a step of the lazy plan, on swaps as [`Inputs::swaps`] has them.
fn lazy_per_block(
    swaps: LazyFrame,
    pools: &[PoolInfo],
    labels: &HashMap<Address, String>,
    first: i64,
    last: i64,
) -> LazyFrame {
    let ordered: Vec<String> = pools.iter().map(|p| labels[&p.address].clone()).collect();
    // Which pool a swap belongs to, as an index into `ordered`; null for other pools.
    let mut pool_id = lit(NULL).cast(DataType::UInt32);
    for (i, p) in pools.iter().enumerate().rev() {
        pool_id = when(col("pool").eq(lit(format!("{:#x}", p.address))))
            .then(lit(i as u32))
            .otherwise(pool_id);
    }
    let schema_labels = ordered.clone();
    let schema = move |input: &Schema| -> PolarsResult<SchemaRef> {
        let px = input.try_get("price_float")?.clone();
        let mut fields = vec![Field::new("block_number".into(), DataType::Int64)];
        for label in &schema_labels {
            for (what, dtype) in AGGS.iter().zip(
                [px.clone()]
                    .into_iter()
                    .chain(std::iter::repeat_n(DataType::Float64, AGGS.len() - 1)),
            ) {
                fields.push(Field::new(agg_name(label, what).into(), dtype));
            }
        }
        Ok(Arc::new(Schema::from_iter(fields)))
    };
    let swaps = swaps.select([
        col("block_number").cast(DataType::Int64),
        col("log_index").cast(DataType::Int64),
        pool_id.alias("pool_id"),
        col("price_float"),
        col("amount0_float").cast(DataType::Float64),
        col("amount1_float").cast(DataType::Float64),
        col("liquidity"),
    ]);
    udf(
        swaps,
        "per_block",
        move |df| per_block(df, &ordered, first, last),
        Some(Arc::new(schema)),
    )
}

/// Places the rows of `df` (unique `block_number`s, in any order) on the block grid
/// `first..=last`: one row per block, in order, nulls where `df` has no row. What a left join of
/// the grid gives, by indexing instead of hashing.
fn onto_grid(df: DataFrame, first: i64, last: i64) -> PolarsResult<DataFrame> {
    let mut at = vec![IdxSize::MAX; (last - first + 1).max(0) as usize];
    let block = df.column("block_number")?.i64()?.rechunk();
    let block = block.downcast_as_array();
    for (row, &b) in block.values().iter().enumerate() {
        if block.validity().is_some_and(|v| !v.get_bit(row)) {
            continue;
        }
        let Some(slot) = usize::try_from(b - first).ok().and_then(|i| at.get_mut(i)) else {
            continue;
        };
        polars_ensure!(*slot == IdxSize::MAX, Duplicate: "block {b} has more than one row");
        *slot = row as IdxSize;
    }
    let mut out = df.take(&nullable_rows(at)?)?;
    out.replace("block_number", grid(first, last))?;
    Ok(out)
}

/// Row numbers for `take`, `IdxSize::MAX` standing for none (a null row).
fn nullable_rows(rows: Vec<IdxSize>) -> PolarsResult<IdxCa> {
    let rows = IdxCa::from_vec("rows".into(), rows);
    rows.set(&rows.equal(IdxSize::MAX), None)
}

fn grid(first: i64, last: i64) -> Column {
    Column::new("block_number".into(), (first..=last).collect::<Vec<i64>>())
}

/// `f` as a step of the lazy plan, with the schema `schema` makes from its input's (the same
/// schema if `None`). No optimisation may cross it: the rows it makes depend on all the rows it
/// gets.
fn udf(
    lf: LazyFrame,
    name: &'static str,
    f: impl Fn(DataFrame) -> PolarsResult<DataFrame> + Send + Sync + 'static,
    schema: Option<Arc<dyn UdfSchema>>,
) -> LazyFrame {
    lf.map(f, AllowedOptimizations::empty(), schema, Some(name))
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
    aggs: &LazyFrame,
    label: &str,
    cfg: &FeatureConfig,
) -> PolarsResult<LazyFrame> {
    let (first, last) = (inp.first_block, inp.last_block);
    let mut sel = vec![col("block_number")];
    sel.extend(AGGS.map(|what| col(agg_name(label, what)).alias(what)));
    let mut f = aggs.clone().select(sel);
    let depth_cols: Vec<String> = cfg
        .depth_bps
        .iter()
        .flat_map(|b| [format!("depth_up_{b}bps"), format!("depth_down_{b}bps")])
        .collect();
    if !depth_cols.is_empty() {
        let depth = inp
            .depth
            .clone()
            .filter(col("pool_label").eq(lit(label.to_string())))
            .drop(by_name(["pool_label"], true, false));
        f = concat_lf_horizontal(
            [
                f,
                udf(
                    depth,
                    "onto_grid",
                    move |df| onto_grid(df, first, last),
                    None,
                )
                .drop(by_name(["block_number"], true, false)),
            ],
            HConcatOptions::default(),
        )?;
    }
    // Counts and sums are zero where a block has no swap; the state carries forward.
    let mut fill = vec![ffill("px"), ffill("liq")];
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
    // Each window's sums once, as columns: the plan does not share repeated rolling sums.
    let sum = |c: &str, w: u32| format!("{c}_sum_{w}");
    let mut sums: Vec<Expr> = vec![];
    for &w in &cfg.flow_windows {
        for c in ["n", "vol0", "vol1", "net0"] {
            sums.push(col(c).rolling_sum(window(w)).alias(sum(c, w)));
        }
    }
    for &w in &cfg.flow_windows {
        // Rolling sums drift by float error when values leave the window: where the window saw
        // no swap the sums are exactly zero, not a residue of 1e-9.
        let n = col(sum("n", w));
        let active = n.clone().gt(lit(0.5));
        let quiet = when(n.clone().is_null())
            .then(lit(NULL))
            .otherwise(lit(0.0));
        feats.push(n.alias(format!("swaps_{w}")));
        feats.push(
            when(active.clone())
                .then(col(sum("vol1", w)))
                .otherwise(quiet.clone())
                .alias(format!("volume1_{w}")),
        );
        feats.push(
            when(active)
                .then(col(sum("net0", w)) / col(sum("vol0", w)))
                .otherwise(quiet)
                .alias(format!("ofi_{w}")),
        );
    }
    let mut labels: Vec<Expr> = vec![];
    for &h in &cfg.label_horizons {
        labels.push(
            (col("lp").shift(lit(-(h as i64))) - col("lp")).alias(format!("label_fwd_ret_{h}")),
        );
    }
    f = f
        .with_columns(sums)
        .with_columns(feats)
        .with_columns(labels);
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
    Ok(f.select(sel))
}

/// The whole pipeline; `extra` may add columns at the end (tests use it to inject leaks).
pub fn build_lazy(
    inp: &Inputs,
    cfg: &FeatureConfig,
    extra: Option<&dyn Fn(LazyFrame) -> LazyFrame>,
) -> PolarsResult<LazyFrame> {
    let (first, last) = (inp.first_block, inp.last_block);
    let blocks = inp.blocks.clone().select([
        col("block_number").cast(DataType::Int64),
        col("timestamp").cast(DataType::Int64),
        col("base_fee_per_gas")
            .cast(DataType::Float64)
            .alias("base_fee_wei"),
    ]);
    let labels = pool_labels(&inp.pools);
    let aggs = lazy_per_block(inp.swaps.clone(), &inp.pools, &labels, first, last)
        // Shared by every pool's frame.
        .cache();
    let inp = Inputs {
        depth: inp
            .depth
            .clone()
            .with_column(col("block_number").cast(DataType::Int64)),
        ..inp.clone()
    };
    // Every part has exactly the block grid's rows in the grid's order: put them side by side
    // instead of joining.
    let mut parts = vec![udf(
        blocks,
        "onto_grid",
        move |df| onto_grid(df, first, last),
        None,
    )];
    for p in &inp.pools {
        parts.push(
            pool_frame(&inp, &aggs, &labels[&p.address], cfg)?.drop(by_name(
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

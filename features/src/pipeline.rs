//! The feature and label pipeline, in Polars' lazy API.
//!
//! One row per block. For each pool, columns `<pool>__<feature>`: mid price, log returns over
//! several horizons, realised volatility, swap count, volume, signed order-flow imbalance, active
//! liquidity and depth within ±x bps; for each pair of pools on the same tokens, the cross-venue
//! spread in bps; the base fee. Features at block t use events up to t only (backward shifts and
//! trailing windows); labels, all named `label_…`, use events after t only (forward shifts).
//!
//! Two kinds of step are functions of ours in the plan rather than Polars expressions, because they
//! cost a fraction of what the expressions did: [`per_block`], one pass over the swaps that
//! aggregates a pool's swaps per block (it replaced a filter, a hash group-by and a join per
//! pool, with the same results to the bit), and [`onto_grid`], which puts a per-block table on the
//! block grid (a left join of the grid, by indexing instead of hashing).

use std::collections::HashMap;
use std::sync::Arc;

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

/// Compensated sums, one per block, with the arithmetic of Polars' hash group-by sum
/// (`polars_utils::kahan_sum::KahanSum`): the features stay what they were when a group-by
/// computed them.
struct KahanSums {
    sum: Vec<f64>,
    err: Vec<f64>,
}

impl KahanSums {
    fn new(blocks: usize) -> Self {
        Self {
            sum: vec![0.0; blocks],
            err: vec![0.0; blocks],
        }
    }

    fn add(&mut self, b: usize, x: f64) {
        let y = x - self.err[b];
        let sum = self.sum[b] + y;
        let err = (sum - self.sum[b]) - y;
        self.sum[b] = sum;
        if err.is_finite() {
            self.err[b] = err;
        }
    }
}

/// Per-block aggregates of the swaps of the pool at `address`, on the block grid
/// `first..=last`: `px` and `liq`, the price and liquidity after the block's last swap (the
/// highest log index; null where the pool has no swap in the block), the swap count `n`, the
/// volumes of both tokens `vol0` and `vol1` and the token0 flow `net0` (zero where none).
///
/// What a filter, a group-by and a join computed, at a fraction of their cost (most of which was
/// hashing and memory): sums in row order with Kahan compensation, as Polars' hash group-by sums
/// them, and the last swap as `get(arg_max(log_index))` picks it. The exact decimal liquidity is
/// parsed for one swap per block only.
fn per_block(mut df: DataFrame, address: &str, first: i64, last: i64) -> PolarsResult<DataFrame> {
    let blocks = (last - first + 1).max(0) as usize;
    let mut n = vec![0.0; blocks];
    let [mut vol0, mut vol1, mut net0] = std::array::from_fn(|_| KahanSums::new(blocks));
    let mut last_row = vec![IdxSize::MAX; blocks];
    let mut last_log = vec![0i64; blocks];
    df.align_chunks_par();
    let ours = df.column("pool")?.as_materialized_series().equal(address)?;
    let (block, log) = (
        df.column("block_number")?.i64()?,
        df.column("log_index")?.i64()?,
    );
    let (a0, a1) = (
        df.column("amount0_float")?.f64()?,
        df.column("amount1_float")?.f64()?,
    );
    let mut row0 = 0;
    // Chunk by chunk, over plain slices and validity masks.
    for ((block, log), (ours, (a0, a1))) in block.downcast_iter().zip(log.downcast_iter()).zip(
        ours.downcast_iter()
            .zip(a0.downcast_iter().zip(a1.downcast_iter())),
    ) {
        let (ours_v, block_v, log_v, a0_v, a1_v) = (
            ours.values(),
            block.values().as_slice(),
            log.values().as_slice(),
            a0.values().as_slice(),
            a1.values().as_slice(),
        );
        let (ours_ok, block_ok, log_ok, a0_ok, a1_ok) = (
            ours.validity(),
            block.validity(),
            log.validity(),
            a0.validity(),
            a1.validity(),
        );
        for i in 0..block_v.len() {
            if !ours_v.get_bit(i)
                || ours_ok.is_some_and(|v| !v.get_bit(i))
                || block_ok.is_some_and(|v| !v.get_bit(i))
            {
                continue;
            }
            let Some(b) = usize::try_from(block_v[i] - first)
                .ok()
                .filter(|&b| b < blocks)
            else {
                continue;
            };
            n[b] += 1.0;
            // The first of equal highest log indices, as `arg_max` picks it.
            if log_ok.is_none_or(|v| v.get_bit(i))
                && (last_row[b] == IdxSize::MAX || log_v[i] > last_log[b])
            {
                last_row[b] = (row0 + i) as IdxSize;
                last_log[b] = log_v[i];
            }
            if a0_ok.is_none_or(|v| v.get_bit(i)) {
                vol0.add(b, a0_v[i].abs());
                net0.add(b, 0.0 - a0_v[i]);
            }
            if a1_ok.is_none_or(|v| v.get_bit(i)) {
                vol1.add(b, a1_v[i].abs());
            }
        }
        row0 += block_v.len();
    }
    let [px, liq] = gather_f64(&df, ["price_float", "liquidity"], &last_row)?;
    DataFrame::new(
        blocks,
        vec![
            px.into_column().with_name("px".into()),
            liq.into_column().with_name("liq".into()),
            Column::new("n".into(), n),
            Column::new("vol0".into(), vol0.sum),
            Column::new("vol1".into(), vol1.sum),
            Column::new("net0".into(), net0.sum),
        ],
    )
}

/// The `names` columns of `df` (aligned chunks) at `rows` (`IdxSize::MAX`: null), cast to f64.
/// Gathered chunk by chunk, where taking rows copies no strings, and only the gathered values are
/// cast: what `take` and `cast` do, at a fraction of the cost on a string column in many chunks.
fn gather_f64<const N: usize>(
    df: &DataFrame,
    names: [&str; N],
    rows: &[IdxSize],
) -> PolarsResult<[Float64Chunked; N]> {
    let columns = names.map(|n| df.column(n).map(Column::as_materialized_series));
    let columns: Vec<&Series> = columns.into_iter().collect::<PolarsResult<_>>()?;
    let mut starts = vec![0];
    for len in columns
        .first()
        .map(|c| c.chunk_lengths())
        .into_iter()
        .flatten()
    {
        starts.push(starts[starts.len() - 1] + len);
    }
    // Per chunk: rows within it, and where their values go.
    let mut wanted: Vec<(Vec<IdxSize>, Vec<IdxSize>)> = vec![Default::default(); starts.len()];
    for (at, &row) in rows.iter().enumerate() {
        if row != IdxSize::MAX {
            let k = starts.partition_point(|&s| s <= row as usize) - 1;
            wanted[k].0.push(row - starts[k] as IdxSize);
            wanted[k].1.push(at as IdxSize);
        }
    }
    let mut out = [(); N].map(|_| (vec![0.0; rows.len()], vec![false; rows.len()]));
    for (k, (local, at)) in wanted.into_iter().enumerate() {
        if local.is_empty() {
            continue;
        }
        let local = IdxCa::from_vec("rows".into(), local);
        for (c, (values, valid)) in columns.iter().zip(out.iter_mut()) {
            let got = c.select_chunk(k).take(&local)?.cast(&DataType::Float64)?;
            for (&at, v) in at.iter().zip(got.f64()?.iter()) {
                if let Some(v) = v {
                    values[at as usize] = v;
                    valid[at as usize] = true;
                }
            }
        }
    }
    Ok(out.map(|(values, valid)| {
        Float64Chunked::from_vec_validity("".into(), values, Some(valid.into_iter().collect()))
    }))
}

/// The swap columns [`per_block`] reads.
fn swap_columns(swaps: LazyFrame) -> LazyFrame {
    swaps.select([
        col("block_number").cast(DataType::Int64),
        col("log_index").cast(DataType::Int64),
        col("pool"),
        col("price_float"),
        col("amount0_float").cast(DataType::Float64),
        col("amount1_float").cast(DataType::Float64),
        col("liquidity"),
    ])
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
    if df.height() == at.len() && at.iter().enumerate().all(|(i, &r)| r as usize == i) {
        // Already one row per block, in order: the common case for the blocks table.
        return Ok(df);
    }
    let mut out = df.take(&nullable_rows(at))?;
    out.replace("block_number", grid(first, last))?;
    Ok(out)
}

/// Row numbers for `take`, `IdxSize::MAX` standing for none (a null row).
fn nullable_rows(rows: Vec<IdxSize>) -> IdxCa {
    let valid = rows.iter().map(|&r| r != IdxSize::MAX).collect();
    IdxCa::from_vec_validity("rows".into(), rows, Some(valid))
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
    swaps: &LazyFrame,
    pool: &PoolInfo,
    label: &str,
    cfg: &FeatureConfig,
) -> PolarsResult<LazyFrame> {
    let (first, last) = (inp.first_block, inp.last_block);
    let address = format!("{:#x}", pool.address);
    let schema = |_: &Schema| -> PolarsResult<SchemaRef> {
        let fields = ["px", "liq", "n", "vol0", "vol1", "net0"]
            .map(|c| Field::new(c.into(), DataType::Float64));
        Ok(Arc::new(Schema::from_iter(fields)))
    };
    let mut f = udf(
        swaps.clone(),
        "per_block",
        move |df| per_block(df, &address, first, last),
        Some(Arc::new(schema)),
    );
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
    let mut sel = vec![];
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

/// How many blocks after its row `t` a label of this pipeline looks, i.e. the last block it reads
/// is `t + lookahead`: the forward return and the forward spread change at horizon `h` look `h`
/// blocks ahead; the arbitrage label looks `latency_blocks` ahead (the spread and gas at inclusion).
/// A model trained on the label needs this many blocks of embargo between its splits, and a
/// backtest of the model must start after the last validation block plus this many. `None` for
/// columns that are not labels of this pipeline under `cfg`. The leakage canary checks the claim.
pub fn label_lookahead(name: &str, cfg: &FeatureConfig) -> Option<u32> {
    let head = name.strip_prefix("label_")?.split("__").next()?;
    if head == "arb_profitable" {
        return Some(cfg.latency_blocks);
    }
    let h: u32 = head
        .strip_prefix("fwd_ret_")
        .or_else(|| head.strip_prefix("fwd_spread_chg_"))?
        .parse()
        .ok()?;
    cfg.label_horizons.contains(&h).then_some(h)
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
    // Read once, shared by every pool's frame.
    let swaps = swap_columns(inp.swaps.clone()).cache();
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
        parts.push(pool_frame(&inp, &swaps, p, &labels[&p.address], cfg)?);
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

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Swaps out of chain order, in two chunks, with nulls, ties in log index, other pools and
    /// blocks off the grid.
    fn swaps() -> DataFrame {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let part = |rng: &mut rand_chacha::ChaCha8Rng, n: usize| {
            let maybe =
                |rng: &mut rand_chacha::ChaCha8Rng, v: f64| rng.random_bool(0.9).then_some(v);
            let mut cols: (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) =
                Default::default();
            for _ in 0..n {
                cols.0.push(rng.random_range(-3i64..60));
                cols.1.push(rng.random_range(0i64..6));
                cols.2.push(["0xa", "0xb", "0xc"][rng.random_range(0..3)]);
                let px = rng.random_range(1.0..2.0);
                cols.3.push(maybe(rng, px));
                let a = rng.random_range(-1e3..1e3) * 10f64.powi(rng.random_range(-9..9));
                cols.4.push(maybe(rng, a));
                cols.5.push(maybe(rng, -a * px));
                let liq = format!("{}", rng.random_range(0..u64::MAX));
                cols.6.push(rng.random_bool(0.95).then_some(liq));
            }
            df!("block_number" => cols.0, "log_index" => cols.1, "pool" => cols.2,
                "price_float" => cols.3, "amount0_float" => cols.4, "amount1_float" => cols.5,
                "liquidity" => cols.6)
            .unwrap()
        };
        let mut df = part(&mut rng, 700);
        df.vstack_mut(&part(&mut rng, 500)).unwrap();
        df
    }

    /// What a filter, a hash group-by and a left join of the block grid compute.
    fn group_by_reference(swaps: &DataFrame, pool: &str, first: i64, last: i64) -> DataFrame {
        let mut args = JoinArgs::new(JoinType::Left);
        args.maintain_order = MaintainOrderJoin::Left;
        let grid = df!("block_number" => (first..=last).collect::<Vec<i64>>()).unwrap();
        let last_swap = |c: &str| col(c).get(col("log_index").arg_max(), false);
        let agg = swaps
            .clone()
            .lazy()
            .filter(col("pool").eq(lit(pool)))
            .with_column(col("liquidity").cast(DataType::Float64))
            .group_by([col("block_number")])
            .agg([
                last_swap("price_float").alias("px"),
                last_swap("liquidity").alias("liq"),
                len().cast(DataType::Float64).alias("n"),
                col("amount0_float").abs().sum().alias("vol0"),
                col("amount1_float").abs().sum().alias("vol1"),
                (lit(0.0) - col("amount0_float")).sum().alias("net0"),
            ]);
        grid.lazy()
            .join(agg, [col("block_number")], [col("block_number")], args)
            .select([
                col("px"),
                col("liq"),
                col("n").fill_null(lit(0.0)),
                col("vol0").fill_null(lit(0.0)),
                col("vol1").fill_null(lit(0.0)),
                col("net0").fill_null(lit(0.0)),
            ])
            .collect()
            .unwrap()
    }

    #[test]
    fn per_block_computes_what_a_group_by_and_join_compute_to_the_bit() {
        let swaps = swaps();
        assert!(swaps.first_col_n_chunks() > 1);
        for pool in ["0xa", "0xb", "0xd"] {
            let ours = per_block(swaps.clone(), pool, 0, 50).unwrap();
            let reference = group_by_reference(&swaps, pool, 0, 50);
            assert_eq!(ours.height(), 51);
            for c in reference.columns() {
                let mine = ours.column(c.name()).unwrap();
                assert!(
                    mine.as_materialized_series()
                        .equals_missing(c.as_materialized_series()),
                    "{pool} {}:\n{mine:?}\n{c:?}",
                    c.name()
                );
            }
        }
    }

    #[test]
    fn onto_grid_is_a_left_join_of_the_block_grid() {
        let df =
            df!("block_number" => [7i64, 2, 40, -1, 5], "x" => [1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let out = onto_grid(df.clone(), 0, 9).unwrap();
        let x: Vec<Option<f64>> = out.column("x").unwrap().f64().unwrap().iter().collect();
        let mut want = vec![None; 10];
        (want[7], want[2], want[5]) = (Some(1.0), Some(2.0), Some(5.0));
        assert_eq!(x, want);
        let blocks: Vec<i64> = out
            .column("block_number")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(blocks, (0..10).collect::<Vec<i64>>());
        let dup = df!("block_number" => [1i64, 1], "x" => [1.0, 2.0]).unwrap();
        assert!(onto_grid(dup, 0, 9).is_err());
    }
}

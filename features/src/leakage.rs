//! The leakage canary: change everything after block `t` (prices, amounts, liquidity, base fees,
//! depth; and drop some swaps) and require every feature at or before `t` to stay identical.
//! Labels (`label_…`) are meant to look ahead, but only as far as they declare: a label at a block
//! at or before `t - lookahead` ([`label_lookahead`]) must stay identical too, since that is the
//! embargo a model trained on it gets.

use polars::prelude::*;

use crate::config::FeatureConfig;
use crate::pipeline::{Inputs, build_lazy, label_lookahead};
use crate::{FeatureError, Result};

fn after(t: i64) -> Expr {
    col("block_number").cast(DataType::Int64).gt(lit(t))
}

fn perturb(c: &str, t: i64, factor: f64) -> Expr {
    when(after(t))
        .then(col(c) * lit(factor))
        .otherwise(col(c))
        .alias(c)
}

/// Inputs with everything after `t` changed.
pub fn perturbed(inp: &Inputs, t: i64, cfg: &FeatureConfig) -> Inputs {
    let swaps = inp
        .swaps
        .clone()
        // Drop a third of the later swaps, then distort the rest.
        .filter(
            after(t)
                .not()
                .or((col("log_index").cast(DataType::Int64) % lit(3i64)).neq(lit(0i64))),
        )
        .with_columns([
            perturb("price_float", t, 1.37),
            perturb("amount0_float", t, -2.5),
            perturb("amount1_float", t, 0.3),
        ])
        .with_column(
            when(after(t))
                .then(lit("1"))
                .otherwise(col("liquidity"))
                .alias("liquidity"),
        );
    let blocks = inp.blocks.clone().with_column(
        when(after(t))
            .then(col("base_fee_per_gas").cast(DataType::Float64) * lit(7.0))
            .otherwise(col("base_fee_per_gas").cast(DataType::Float64))
            .alias("base_fee_per_gas"),
    );
    let depth_cols: Vec<Expr> = cfg
        .depth_bps
        .iter()
        .flat_map(|b| [format!("depth_up_{b}bps"), format!("depth_down_{b}bps")])
        .map(|c| perturb(&c, t, 0.5))
        .collect();
    let depth = inp.depth.clone().with_columns(depth_cols);
    Inputs {
        swaps,
        blocks,
        depth,
        ..inp.clone()
    }
}

/// Cut blocks that give the canary power: for every pool, the block just before one of its swaps
/// near the middle of the data (a leak through a forward-filled column only shows when the next
/// block has activity), plus the middle block.
pub fn cut_points(inp: &Inputs) -> Result<Vec<i64>> {
    let df = inp
        .swaps
        .clone()
        .select([col("pool"), col("block_number").cast(DataType::Int64)])
        .filter(col("block_number").gt(lit((inp.first_block + inp.last_block) / 2)))
        .group_by([col("pool")])
        .agg([col("block_number").min().alias("b")])
        .sort(["pool"], SortMultipleOptions::default())
        .collect()?;
    let mut cuts: Vec<i64> = df
        .column("b")?
        .i64()?
        .iter()
        .flatten()
        .map(|b| b - 1)
        .collect();
    cuts.push((inp.first_block + inp.last_block) / 2);
    cuts.sort_unstable();
    cuts.dedup();
    Ok(cuts)
}

/// Runs [`check_at`] at every cut block.
pub fn check(
    inp: &Inputs,
    cfg: &FeatureConfig,
    cuts: &[i64],
    extra: Option<&dyn Fn(LazyFrame) -> LazyFrame>,
) -> Result<()> {
    for &t in cuts {
        check_at(inp, cfg, t, extra)?;
    }
    Ok(())
}

/// Builds with and without the perturbation and compares every non-label column at blocks ≤ t.
pub fn check_at(
    inp: &Inputs,
    cfg: &FeatureConfig,
    t: i64,
    extra: Option<&dyn Fn(LazyFrame) -> LazyFrame>,
) -> Result<()> {
    let cut = |lf: LazyFrame| lf.filter(col("block_number").lt_eq(lit(t)));
    let a = cut(build_lazy(inp, cfg, extra)?).collect()?;
    let b = cut(build_lazy(&perturbed(inp, t, cfg), cfg, extra)?).collect()?;
    if a.height() != b.height() {
        return Err(FeatureError::Leakage(format!(
            "rows at or before block {t} differ: {} vs {}",
            a.height(),
            b.height()
        )));
    }
    let blocks = a.column("block_number")?.cast(&DataType::Int64)?;
    let blocks = blocks.i64()?;
    let mut leaks = Vec::new();
    let mut far = Vec::new();
    for c in a.columns() {
        let name = c.name().as_str();
        let (x, y) = (
            c.as_materialized_series(),
            b.column(name)?.as_materialized_series(),
        );
        if name.starts_with("label_") {
            // A label of unknown look-ahead (not one of the pipeline's) cannot be checked.
            let Some(l) = label_lookahead(name, cfg) else {
                continue;
            };
            let settled = blocks.lt_eq(t - i64::from(l));
            if !x.filter(&settled)?.equals_missing(&y.filter(&settled)?) {
                far.push(format!("{name} (declared {l})"));
            }
        } else if !x.equals_missing(y) {
            leaks.push(name.to_string());
        }
    }
    let mut problems = Vec::new();
    if !leaks.is_empty() {
        problems.push(format!(
            "features at or before block {t} change when later data changes: {}",
            leaks.join(", ")
        ));
    }
    if !far.is_empty() {
        problems.push(format!(
            "labels look further ahead than their declared look-ahead (in blocks; they change at \
             or before block {t} minus it when data after {t} changes): {}",
            far.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(FeatureError::Leakage(problems.join("; ")))
    }
}

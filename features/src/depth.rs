//! Depth within ±x bps from the exact pool state: how much of the input token moves each pool's
//! price by x bps, computed with dexlab-amm on the replayed state (V3 ticks, V2 reserves).

use std::collections::{BTreeSet, HashMap};

use alloy_primitives::{Address, I256, U256};
use dexlab_data::replay::{PoolState, Replayer};
use dexlab_data::types::{PoolInfo, RawLog};
use polars::prelude::*;

/// (token1 to push the price up x bps, token0 to push it down x bps), human units.
fn depth(state: &PoolState, info: &PoolInfo, bps: u32) -> Option<(f64, f64)> {
    let up = 1.0 + bps as f64 / 1e4;
    let down = 1.0 - bps as f64 / 1e4;
    let scale0 = 10f64.powi(info.token0.decimals as i32);
    let scale1 = 10f64.powi(info.token1.decimals as i32);
    let fee = info.fee as f64 / 1e6;
    match state {
        PoolState::Reserves { reserve0, reserve1 } => {
            let (x, y) = (f64::from(*reserve0), f64::from(*reserve1));
            if x == 0.0 || y == 0.0 {
                return None;
            }
            Some((
                y * (up.sqrt() - 1.0) / (1.0 - fee) / scale1,
                x * (1.0 / down.sqrt() - 1.0) / (1.0 - fee) / scale0,
            ))
        }
        PoolState::V3 { pool, .. } => {
            let sp = f64::from(pool.sqrt_price_x96);
            let target = |f: f64| U256::try_from((sp * f.sqrt()).floor()).ok();
            let big = I256::from_raw(U256::from(1) << 200usize);
            let a1 = pool
                .swap(false, big, target(up))
                .ok()
                .map(|r| f64::from(r.amount1.unsigned_abs()) / scale1);
            let a0 = pool
                .swap(true, big, target(down))
                .ok()
                .map(|r| f64::from(r.amount0.unsigned_abs()) / scale0);
            Some((a1.unwrap_or(0.0), a0.unwrap_or(0.0)))
        }
        PoolState::Unknown => None,
    }
}

/// One row per (block, pool) where the pool's state changed: block_number, pool label, depth columns.
pub fn depth_frame(
    logs: &[RawLog],
    pools: &[PoolInfo],
    snapshots: &[dexlab_data::snapshot::PoolSnapshot],
    labels: &HashMap<Address, String>,
    depth_bps: &[u32],
) -> PolarsResult<DataFrame> {
    let mut rp = Replayer::new(pools);
    for s in snapshots {
        s.seed(&mut rp)
            .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;
    }
    let infos: HashMap<Address, &PoolInfo> = pools.iter().map(|p| (p.address, p)).collect();
    let mut blocks: Vec<i64> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut cols: Vec<Vec<Option<f64>>> = vec![Vec::new(); depth_bps.len() * 2];
    let mut touched: BTreeSet<Address> = BTreeSet::new();
    let mut flush = |block: u64, touched: &mut BTreeSet<Address>, rp: &Replayer| {
        for a in std::mem::take(touched) {
            let (Some(info), Some(state), Some(label)) =
                (infos.get(&a), rp.state(&a), labels.get(&a))
            else {
                continue;
            };
            blocks.push(block as i64);
            names.push(label.clone());
            for (i, &b) in depth_bps.iter().enumerate() {
                let d = depth(state, info, b);
                cols[2 * i].push(d.map(|x| x.0));
                cols[2 * i + 1].push(d.map(|x| x.1));
            }
        }
    };
    let mut current = None;
    for l in logs {
        if current.is_some_and(|c| c != l.block_number) {
            flush(current.unwrap_or_default(), &mut touched, &rp);
        }
        current = Some(l.block_number);
        rp.apply(l);
        if infos.contains_key(&l.address) {
            touched.insert(l.address);
        }
    }
    if let Some(c) = current {
        flush(c, &mut touched, &rp);
    }
    let mut columns = vec![
        Column::new("block_number".into(), blocks),
        Column::new("pool_label".into(), names),
    ];
    for (i, &b) in depth_bps.iter().enumerate() {
        columns.push(Column::new(
            format!("depth_up_{b}bps").into(),
            std::mem::take(&mut cols[2 * i]),
        ));
        columns.push(Column::new(
            format!("depth_down_{b}bps").into(),
            std::mem::take(&mut cols[2 * i + 1]),
        ));
    }
    DataFrame::new_infer_height(columns)
}

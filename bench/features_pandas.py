"""The same features as dexlab's Polars pipeline (dexlab-features, depth excluded), written the
straightforward pandas way, for the side-by-side benchmark in bench/features_vs_pandas.sh.

usage: features_pandas.py DIR OUT.parquet
"""
import math
import sys
import time

import numpy as np
import pandas as pd

POOLS = [  # (address, label, fee pips) as in features/examples/features_bench.rs
    ("0x" + "03" * 20, "uniswap_v3_weth_usdc_500", 500),
    ("0x" + "04" * 20, "uniswap_v3_weth_usdc_3000", 3000),
    ("0x" + "05" * 20, "pancakeswap_v3_weth_usdc_500", 500),
]
RET, VOL, FLOW, LABEL_H = [1, 5, 20], [20, 100], [10, 50], [1, 5, 20]
LATENCY, GAS_UNITS, PRIO, NOTIONAL = 1, 250_000, 1_000_000, 5.0


def main(d, out):
    t0 = time.perf_counter()
    swaps = pd.read_parquet(f"{d}/swaps.parquet")
    blocks = pd.read_parquet(f"{d}/blocks.parquet")
    swaps["liquidity_f"] = swaps["liquidity"].astype(float)
    grid = pd.DataFrame({"block_number": np.arange(blocks.block_number.min(), blocks.block_number.max() + 1)})
    res = grid.merge(blocks.rename(columns={"base_fee_per_gas": "base_fee_wei"}), on="block_number", how="left")
    for addr, label, _fee in POOLS:
        s = swaps[swaps.pool == addr].sort_values(["block_number", "log_index"])
        s = s.assign(neg0=-s.amount0_float, abs0=s.amount0_float.abs(), abs1=s.amount1_float.abs())
        g = s.groupby("block_number").agg(
            px=("price_float", "last"), liq=("liquidity_f", "last"), n=("price_float", "size"),
            vol0=("abs0", "sum"), vol1=("abs1", "sum"), net0=("neg0", "sum"))
        f = grid.merge(g, left_on="block_number", right_index=True, how="left")
        f[["px", "liq"]] = f[["px", "liq"]].ffill()
        f[["n", "vol0", "vol1", "net0"]] = f[["n", "vol0", "vol1", "net0"]].fillna(0.0)
        lp = np.log(f.px)
        cols = {"mid_price": f.px, "active_liquidity": f.liq, "swaps_1": f.n.astype(float), "volume1_1": f.vol1, "ret_1": lp - lp.shift(1)}
        for h in RET:
            if h != 1:
                cols[f"ret_{h}"] = lp - lp.shift(h)
        for w in VOL:
            cols[f"vol_{w}"] = cols["ret_1"].rolling(w, min_periods=w).std()
        for w in FLOW:
            cols[f"swaps_{w}"] = f.n.rolling(w, min_periods=w).sum()
            cols[f"volume1_{w}"] = f.vol1.rolling(w, min_periods=w).sum()
            tot = f.vol0.rolling(w, min_periods=w).sum()
            ofi = f.net0.rolling(w, min_periods=w).sum() / tot
            cols[f"ofi_{w}"] = ofi.where(cols[f"swaps_{w}"] > 0.5, np.where(cols[f"swaps_{w}"].isna(), np.nan, 0.0))
        for k, v in cols.items():
            res[f"{label}__{k}"] = np.asarray(v)
        for h in LABEL_H:
            res[f"label_fwd_ret_{h}__{label}"] = np.asarray(lp.shift(-h) - lp)
    res["gas_cost_bps"] = (res.base_fee_wei + PRIO) * GAS_UNITS / 1e18 / NOTIONAL * 1e4
    for i, (_, la, fa) in enumerate(POOLS):
        for _, lb, fb in POOLS[i + 1:]:
            s = (res[f"{la}__mid_price"] / res[f"{lb}__mid_price"] - 1.0) * 1e4
            res[f"spread_bps__{la}__{lb}"] = s
            for h in LABEL_H:
                res[f"label_fwd_spread_chg_{h}__{la}__{lb}"] = s.shift(-h) - s
            res[f"label_arb_profitable__{la}__{lb}"] = s.shift(-LATENCY).abs() > (fa + fb) / 100.0 + res.gas_cost_bps.shift(-LATENCY)
    secs = time.perf_counter() - t0
    print(f"pandas: {len(res)} rows x {res.shape[1]} columns in {secs:.3f} s")
    res.to_parquet(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

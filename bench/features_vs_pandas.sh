#!/usr/bin/env bash
# The feature pipeline on N swaps (default 5,000,000), Polars (dexlab) and pandas side by side in
# one run, with peak memory, plus a check that both computed the same numbers.
# usage: bench/features_vs_pandas.sh [N_SWAPS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dexlab-target}"
N="${1:-5000000}"
WORK=.dexlab/bench-features
VENV=.dexlab/bench-venv
mkdir -p "$WORK"
if [[ ! -x $VENV/bin/python ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet pandas==2.2.3 pyarrow==18.1.0 numpy==2.1.3
fi
PROFILE="${BENCH_PROFILE:-dev}"
cargo build --quiet --profile "$PROFILE" -p dexlab-features --example features_bench
DIR=debug; [[ $PROFILE == release || $PROFILE == bench ]] && DIR=release
BIN="$CARGO_TARGET_DIR/$DIR/examples/features_bench"
"$BIN" generate "$WORK/data" "$N"
# Each side prints its pipeline time (reading the swaps and blocks through computing every column;
# process start-up and writing the result excluded); /usr/bin/time adds the whole process's wall
# time and peak RSS.
echo "== polars (dexlab-features, profile $PROFILE)"
/usr/bin/time -o "$WORK/polars.time" -f "peak RSS %M KB, wall %e s" \
  "$BIN" run "$WORK/data" "$WORK/polars.parquet" | tee "$WORK/polars.out"
cat "$WORK/polars.time"
echo "== pandas $("$VENV/bin/python" -c 'import pandas; print(pandas.__version__)')"
/usr/bin/time -o "$WORK/pandas.time" -f "peak RSS %M KB, wall %e s" \
  "$VENV/bin/python" bench/features_pandas.py "$WORK/data" "$WORK/pandas.parquet" | tee "$WORK/pandas.out"
cat "$WORK/pandas.time"
secs() { sed -n 's/.* in \([0-9.]*\) s$/\1/p' "$1"; }
wall() { sed -n 's/.*wall \([0-9.]*\) s$/\1/p' "$1"; }
rss() { sed -n 's/^peak RSS \([0-9]*\) KB.*/\1/p' "$1"; }
awk -v a="$(secs "$WORK/polars.out")" -v b="$(secs "$WORK/pandas.out")" \
    -v c="$(wall "$WORK/polars.time")" -v d="$(wall "$WORK/pandas.time")" \
    -v e="$(rss "$WORK/polars.time")" -v f="$(rss "$WORK/pandas.time")" 'BEGIN {
  printf "pipeline (read to last column): polars %.3f s, pandas %.3f s: %.1fx\n", a, b, b / a
  printf "whole process (start-up, read, compute, write): polars %.2f s, pandas %.2f s: %.1fx\n", c, d, d / c
  printf "peak RSS: polars %.2f GB, pandas %.2f GB\n", e / 1e6, f / 1e6
}'
"$VENV/bin/python" - "$WORK/polars.parquet" "$WORK/pandas.parquet" <<'PY'
import sys, numpy as np, pandas as pd
a, b = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
common = [c for c in b.columns if c in a.columns and c not in ("timestamp",)]
missing = sorted(set(b.columns) ^ set(a.columns))
worst, worst_col = 0.0, None
for c in common:
    x, y = a[c].astype(float).to_numpy(), b[c].astype(float).to_numpy()
    both = ~(np.isnan(x) | np.isnan(y))
    # pandas says False where a comparison meets NaN; Polars says null (unknown). Compare the rest.
    if not c.startswith("label_arb"):
        assert (np.isnan(x) == np.isnan(y)).all(), f"null pattern differs in {c}"
    if both.any():
        d = float(np.max(np.abs(x[both] - y[both]) / np.maximum(1e-12, np.abs(y[both]))))
        if d > worst:
            worst, worst_col = d, c
print(f"same results: {len(common)} columns compared, max relative difference {worst:.2e} ({worst_col}); columns only on one side: {missing}")
PY

#!/usr/bin/env bash
# Backtester and optimiser benchmarks (evolve/benches/backtest.rs) on a simulated chain with
# frequent arbitrage: starts `dexlab chain up` (BLOCKS blocks, default 10000), ingests it, runs the
# criterion benches against it, then the GA memory probe. Dev profile, our crates at opt-level 3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dexlab-target}"
BLOCKS="${1:-10000}"
PORT="${DEXLAB_BENCH_PORT:-18645}"
WORK="$(mktemp -d)"
bash scripts/setup.sh >/dev/null
cargo build --quiet --bin dexlab
DEXLAB="$CARGO_TARGET_DIR/debug/dexlab"
"$DEXLAB" chain up --port "$PORT" --seed 2 --blocks "$BLOCKS" --manifest "$WORK/m.json" >/dev/null 2>&1 &
CHAIN=$!
trap 'kill $CHAIN 2>/dev/null || true; rm -rf "$WORK"' EXIT
until [[ -f "$WORK/m.json" ]]; do
  kill -0 $CHAIN 2>/dev/null || { echo "bench: chain up failed" >&2; exit 1; }
  sleep 1
done
"$DEXLAB" data ingest --rpc "http://127.0.0.1:$PORT" --manifest "$WORK/m.json" --out "$WORK/ds" --quiet
kill $CHAIN
DEXLAB_BENCH_DATA="$WORK/ds" cargo bench --profile dev -p dexlab-evolve --bench backtest
echo "GA memory (generation,rss_kib,evaluations,best):"
cargo run --quiet --profile dev -p dexlab-evolve --example ga_memory -- 60 32 | awk -F, 'NR==1 || NR==2 || NR%10==2'

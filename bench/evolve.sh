#!/usr/bin/env bash
# Backtester and optimiser benchmarks (evolve/benches/backtest.rs) on a simulated chain with
# frequent arbitrage: starts `dexlab chain up` (BLOCKS blocks, default 10000), ingests it, runs the
# criterion benches against it, then the GA memory probe. Dev profile, our crates at opt-level 3.
# DEXLAB_BENCH_DATA=DIR uses that ingested dataset instead of mining one. BENCH_BASE=REV also
# runs the same benches of commit REV (a git worktree in .dexlab/) on the same
# dataset first, so a change's before and after come from one run on one machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dexlab-target}"
BLOCKS="${1:-10000}"
PORT="${DEXLAB_BENCH_PORT:-18645}"
WORK="$(mktemp -d)"
bash scripts/setup.sh >/dev/null
cargo build --quiet --bin dexlab
DEXLAB="$CARGO_TARGET_DIR/debug/dexlab"
trap 'rm -rf "$WORK"' EXIT
bash bench/devnet-dataset.sh "$DEXLAB" "$WORK/ds" "$BLOCKS" "$PORT"
if [[ -n "${BENCH_BASE:-}" ]]; then
  BASE_DIR="$PWD/.dexlab/bench-base"
  git worktree remove --force "$BASE_DIR" 2>/dev/null || rm -rf "$BASE_DIR"
  git worktree add --detach "$BASE_DIR" "$BENCH_BASE" >/dev/null
  # The benchmark reads the real sample from ../shared next to its checkout.
  [[ -e .dexlab/shared ]] || ln -s "$(cd .. && pwd)/shared" .dexlab/shared
  echo "== before: $BENCH_BASE =="
  (cd "$BASE_DIR" && DEXLAB_BENCH_DATA="$WORK/ds" cargo bench --profile dev -p dexlab-evolve --bench backtest -- 'replay|strategy')
  git worktree remove --force "$BASE_DIR"
  # Cargo names a path crate's artifacts by its path inside the workspace, so the base build left
  # artifacts under the same names: make ours newer so cargo rebuilds them.
  find amm market data strategy engine evolve -name '*.rs' -exec touch {} +
  echo "== after: $(git rev-parse --short HEAD) =="
fi
DEXLAB_BENCH_DATA="$WORK/ds" cargo bench --profile dev -p dexlab-evolve --bench backtest
echo "GA memory (generation,rss_kib,evaluations,best):"
cargo run --quiet --profile dev -p dexlab-evolve --example ga_memory -- 60 32 | awk -F, 'NR==1 || NR==2 || NR%10==2'

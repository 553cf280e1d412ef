#!/usr/bin/env bash
# Leaves an ingested dataset at OUT for a benchmark: a copy of DEXLAB_BENCH_DATA when it is set,
# else a simulated chain with frequent arbitrage, BLOCKS blocks mined by `dexlab chain up --seed 2`
# on PORT, ingested, and stopped. Arguments: DEXLAB (the binary) OUT BLOCKS PORT.
set -euo pipefail
DEXLAB=$1 OUT=$2 BLOCKS=$3 PORT=$4
if [[ -n "${DEXLAB_BENCH_DATA:-}" ]]; then
  # An ingested dataset given (e.g. scripts/results' devnet): no chain of our own.
  cp -r "$DEXLAB_BENCH_DATA" "$OUT"
  exit 0
fi
MANIFEST="$(mktemp -d)/m.json"
"$DEXLAB" chain up --port "$PORT" --seed 2 --blocks "$BLOCKS" --manifest "$MANIFEST" >/dev/null 2>&1 &
CHAIN=$!
trap 'kill $CHAIN 2>/dev/null; rm -rf "$(dirname "$MANIFEST")"' EXIT
until [[ -f "$MANIFEST" ]]; do
  kill -0 $CHAIN 2>/dev/null || { echo "bench: chain up failed" >&2; exit 1; }
  sleep 1
done
"$DEXLAB" data ingest --rpc "http://127.0.0.1:$PORT" --manifest "$MANIFEST" --out "$OUT" --quiet

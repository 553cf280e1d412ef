#!/usr/bin/env bash
# Fitness on NATS JetStream workers next to the local rayon pool (lab/benches/distributed.rs):
# mines a simulated chain (BLOCKS blocks, default 10000), ingests it, starts a nats-server with
# JetStream of its own, and runs the bench built in the dev profile (our crates at opt-level 3),
# which starts its worker processes itself. DEXLAB_BENCH_DATA=DIR uses that dataset instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dexlab-target}"
BLOCKS="${1:-10000}"
PORT="${DEXLAB_BENCH_PORT:-18646}"
NATS_PORT="${DEXLAB_BENCH_NATS_PORT:-14222}"
WORK="$(mktemp -d)"
bash scripts/setup.sh >/dev/null
# The same build as the tests' (`cargo bench` would unify features apart and rebuild the tree).
BENCH_BIN=$(cargo build --workspace --tests --benches --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "distributed" and m.get("executable"):
        print(m["executable"])')
[[ -x "$BENCH_BIN" ]] || { echo "bench: the distributed bench did not build" >&2; exit 1; }
DEXLAB="$CARGO_TARGET_DIR/debug/dexlab"
NATS=
trap '[[ -n $NATS ]] && kill $NATS 2>/dev/null; rm -rf "$WORK"' EXIT
bash bench/devnet-dataset.sh "$DEXLAB" "$WORK/ds" "$BLOCKS" "$PORT"
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
"$NATS_BIN" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >/dev/null 2>&1 &
NATS=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; do sleep 0.2; done
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; nats-server $("$NATS_BIN" --version | awk '{print $2}')"
DEXLAB_BENCH_DATA="$WORK/ds" DEXLAB_BENCH_NATS="nats://127.0.0.1:$NATS_PORT" "$BENCH_BIN"

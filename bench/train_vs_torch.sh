#!/usr/bin/env bash
# dexlab's MLP and GRU (burn, flex CPU backend) against the same models in PyTorch on the CPU, side
# by side in one run: training samples/s at fixed shapes and one decision's latency, per thread
# count. The parameter counts and the data checksums of both sides must agree, or the script fails.
#
# usage: bench/train_vs_torch.sh [THREADS ...]        (default: 1 2)
#   BENCH_ARGS="--batch 64"  passes flags to both sides (see models-bench --help); for example
#                             BENCH_ARGS="--what train,fit,latency,ops" adds the per-op table
#   BENCH_REPEAT=3            runs each side that many times per thread count, best figure kept
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dexlab-target}"
VENV="${DEXLAB_BENCH_VENV:-$HOME/.cache/dexlab-bench-venv}"
OUT=.dexlab/bench-models
if [[ $# -gt 0 ]]; then THREADS=("$@"); else THREADS=(1 2); fi
read -r -a ARGS <<<"${BENCH_ARGS:-}"
export BENCH_REPEAT="${BENCH_REPEAT:-1}"

# PyPI's default Linux wheel: it also pulls the CUDA libraries (about 5 GB in the venv) but runs
# on the CPU as it is; the bench uses nothing else from it.
if ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet torch==2.15.0 numpy==2.4.6
fi

cargo build --release -p dexlab-models --features bench --bin models-bench
BIN="$CARGO_TARGET_DIR/release/models-bench"
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl
for t in "${THREADS[@]}"; do
  for ((r = 1; r <= BENCH_REPEAT; r++)); do
    echo "== threads $t, run $r: burn (RAYON_NUM_THREADS=$t)" >&2
    RAYON_NUM_THREADS=$t "$BIN" "${ARGS[@]}" >>"$OUT/burn.jsonl"
    echo "== threads $t, run $r: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')" >&2
    OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t "$VENV/bin/python" bench/torch_models.py --threads "$t" "${ARGS[@]}" >>"$OUT/torch.jsonl"
  done
done

"$VENV/bin/python" - "$OUT/burn.jsonl" "$OUT/torch.jsonl" <<'PY'
import json, os, sys

burn = [json.loads(l) for l in open(sys.argv[1])]
torch = [json.loads(l) for l in open(sys.argv[2])]

def best(lines, bench, model, threads, key, higher=True):
    rows = [l for l in lines if l["bench"] == bench and l.get("model") == model and l["threads"] == threads]
    if not rows:
        return None
    return (max if higher else min)(rows, key=lambda l: l[key])

failed = False
threads = sorted({l["threads"] for l in burn if isinstance(l["threads"], int)})
models = [m for m in ("mlp", "gru", "gru-ops", "gru-burn") if any(l.get("model") == m for l in burn)]
shape = next((l for l in burn if l["bench"] == "train"), None)
if shape is None:
    shape = {"features": "-", "hidden": "-", "batch": "-"}
print(f"\nfeatures {shape['features']}, hidden {shape['hidden']}, batch {shape['batch']}, "
      f"GRU window {next((l['window'] for l in burn if l.get('model') == 'gru'), '-')}; "
      f"{torch[0]['torch']}; best of {os.environ['BENCH_REPEAT']} run(s) per figure")
print("\nTraining samples/s (forward + backward + Adam, shuffled batches, loss read every step); "
      "wall clock, and per CPU-second of the process (steadier on a shared machine; with 2 threads "
      "it counts OpenMP's spinning)\n")
print("| model | threads | params | burn flex | torch | burn / torch | per CPU-second: burn / torch | dexlab fit() loop |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for m in models:
    for t in threads:
        # burn's own nn::Gru (--what train-burn-gru) and dexlab's cell in burn's operations
        # (--what train-gru-ops) are compared with the same PyTorch GRU.
        pm = "gru" if m in ("gru-burn", "gru-ops") else m
        b, p = best(burn, "train", m, t, "samples_per_sec"), best(torch, "train", pm, t, "samples_per_sec")
        f = best(burn, "fit", m, t, "samples_per_sec")
        if not b or not p:
            continue
        if b["params"] != p["params"]:
            print(f"!! {m}: parameter counts differ: burn {b['params']}, torch {p['params']}", file=sys.stderr)
            failed = True
        for x, y in zip(b["data_checksum"], p["data_checksum"]):
            if abs(x - y) > 1e-9 * max(abs(x), abs(y)):
                print(f"!! {m}: data differ: checksum burn {b['data_checksum']}, torch {p['data_checksum']}", file=sys.stderr)
                failed = True
        fit = f"{f['samples_per_sec']:,.0f}" if f else "-"
        bc = best(burn, "train", m, t, "samples_per_cpu_sec")
        pc = best(torch, "train", pm, t, "samples_per_cpu_sec")
        cpu = (f"{bc['samples_per_cpu_sec']:,.0f} / {pc['samples_per_cpu_sec']:,.0f} = "
               f"{bc['samples_per_cpu_sec'] / pc['samples_per_cpu_sec']:.2f}×"
               if bc and pc and bc.get("samples_per_cpu_sec") else "-")
        print(f"| {m} | {t} | {b['params']:,} | {b['samples_per_sec']:,.0f} | {p['samples_per_sec']:,.0f} | "
              f"**{b['samples_per_sec'] / p['samples_per_sec']:.2f}×** | {cpu} | {fit} |")
print("\nOne decision, µs (burn: dexlab_models::Predictor; torch: tensor from Python floats, "
      "standardise, forward, .item(); torch forward alone in brackets)\n")
print("| model | threads | burn p50 | burn p99 | burn max | torch p50 | torch p99 | torch max |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for m in models:
    for t in threads:
        b = best(burn, "latency", m, t, "p99_us", higher=False)
        p = best(torch, "latency", m, t, "p99_us", higher=False)
        if not b or not p:
            continue
        if b["params"] != p["params"]:
            print(f"!! {m}: parameter counts differ: burn {b['params']}, torch {p['params']}", file=sys.stderr)
            failed = True
        fo = p["forward_only"]
        print(f"| {m} | {t} | {b['p50_us']:.1f} | {b['p99_us']:.1f} | {b['max_us']:.0f} | "
              f"{p['p50_us']:.1f} ({fo['p50_us']:.1f}) | {p['p99_us']:.1f} ({fo['p99_us']:.1f}) | {p['max_us']:.0f} |")
ops = [l for l in burn if l["bench"] == "op"]
if ops:
    print("\nSingle operations at the GRU step's shapes, µs per call, forward only\n")
    print("| op | threads | burn flex | torch | burn / torch time |")
    print("|---|---:|---:|---:|---:|")
    for name in dict.fromkeys(l["op"] for l in ops):
        for t in threads:
            b = [l["us_per_op"] for l in ops if l["op"] == name and l["threads"] == t]
            p = [l["us_per_op"] for l in torch if l["bench"] == "op" and l["op"] == name and l["threads"] == t]
            if b and p:
                print(f"| {name} | {t} | {min(b):.1f} | {min(p):.1f} | {min(b) / min(p):.2f} |")
print(f"\nparameter counts equal: {'no' if failed else 'yes'}; raw lines in {sys.argv[1]} and {sys.argv[2]}")
sys.exit(1 if failed else 0)
PY

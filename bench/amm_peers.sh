#!/usr/bin/env bash
# dexlab-amm's V3 quotes side by side with amms-rs in one run (bench/amm-peers, a workspace of its
# own so the main tests never compile amms and its dependencies). amms pulls rug, whose GMP build
# needs m4: installed here from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/amm-peers"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dexlab-target}"
if ! command -v m4 >/dev/null; then
  if [[ $(id -u) == 0 ]]; then apt-get update -qq && apt-get install -y -qq m4; else sudo apt-get install -y m4; fi
fi
cargo bench --profile "${BENCH_PROFILE:-dev}" "$@"

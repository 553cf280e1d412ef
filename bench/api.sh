#!/usr/bin/env bash
# The API under load (server/benches/api.rs): list/detail at 1,000 req/s, login latency, and
# live-event delivery to 1,000 WebSocket clients on SQLite and PostgreSQL. Installs oha (the
# HTTP load generator, from crates.io) into .dexlab/tools when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dexlab-target}"
if [[ -z "${OHA:-}" ]]; then
  OHA=$PWD/.dexlab/tools/bin/oha
  [[ -x $OHA ]] || cargo install oha --locked --root .dexlab/tools
fi
export OHA
ulimit -n 65536 2>/dev/null || ulimit -n 4096
# Only the server's dependency tree, in release: not the whole workspace (Polars, burn), which the
# server does not link.
cargo bench -p dexlab-server --bench api

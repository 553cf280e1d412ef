#!/usr/bin/env bash
# Bootstraps dexlab's chain tooling; idempotent and quick when already done:
#   1. npm ci --prefix tools   (skipped while tools/package{,-lock}.json match the stamp in tools/node_modules)
#   2. .dexlab/bin/anvil        -> symlink to the anvil binary of @foundry-rs/anvil-linux-amd64
#   3. node tools/compile.js    -> .dexlab/artifacts/*.json (itself skips solc when nothing changed)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "setup.sh: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found (need Node >= 20)"
command -v npm >/dev/null || die "npm not found"
node_major=$(node -p 'process.versions.node.split(".")[0]')
(( node_major >= 20 )) || die "Node >= 20 required (found $(node --version))"

# 1. npm dependencies. The stamp lives inside node_modules, so deleting node_modules also invalidates it.
stamp=tools/node_modules/.dexlab-npm-ci.sha256
want=$(cat tools/package.json tools/package-lock.json tools/.npmrc | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: tools/node_modules up to date"
else
  echo "setup: npm ci --prefix tools"
  # Drop npm's harmless 'Unknown user config "nodedir"' warning (a key in ~/.npmrc on these machines);
  # everything else on stderr is kept, and npm's exit status is preserved by pipefail.
  { npm ci --prefix tools --no-audit --no-fund 2>&1 1>&3 3>&- \
      | { grep -v 'Unknown user config "nodedir"' || true; } 1>&2; } 3>&1
  echo "$want" >"$stamp"
fi

# 2. anvil
anvil_pkg=tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
[[ -x $anvil_pkg ]] || die "$anvil_pkg missing or not executable"
mkdir -p .dexlab/bin
if [[ "$(readlink .dexlab/bin/anvil 2>/dev/null || true)" != "../../$anvil_pkg" ]]; then
  ln -sfn "../../$anvil_pkg" .dexlab/bin/anvil
fi
anvil_version=$(.dexlab/bin/anvil --version 2>/dev/null | head -n1) || die ".dexlab/bin/anvil --version failed"
echo "setup: .dexlab/bin/anvil -> $anvil_version"

# 3. artifacts
node tools/compile.js
bash scripts/ensure-fonts.sh
# The server's TLS tests make their certificates with the openssl CLI.
bash scripts/ensure-debian.sh openssl=openssl
# `dexlab backup` copies a PostgreSQL store with pg_dump and restores it with pg_restore.
bash scripts/ensure-debian.sh pg_dump=postgresql-client pg_restore=postgresql-client
# The API's property test runs schemathesis from a project-local virtual environment.
bash scripts/ensure-venv.sh
# The notebooks (notebooks/*.ipynb: polars, matplotlib) and the kernel that runs them headless.
bash scripts/ensure-venv.sh .dexlab/notebooks-venv notebooks/requirements.txt
# `dexlab worker` / `--nats` tests start their own JetStream server (Debian puts it in /usr/sbin).
if ! command -v nats-server >/dev/null && [[ ! -x /usr/sbin/nats-server ]]; then
  bash scripts/ensure-debian.sh '!=nats-server'
fi
# The dashboard's browser test drives Debian's headless Chromium through chromedriver.
bash scripts/ensure-debian.sh chromium=chromium chromedriver=chromium-driver

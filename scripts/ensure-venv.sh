#!/usr/bin/env bash
# Makes a project-local Python environment from a pinned requirements file: by default
# .dexlab/venv with tools/requirements-test.txt (the tests' tools); `ensure-venv.sh VENV REQ` for
# another (the notebooks'). Idempotent and instant while the requirements match the stamp inside
# the environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "ensure-venv.sh: $*" >&2; exit 1; }

venv=${1:-.dexlab/venv}
req=${2:-tools/requirements-test.txt}
stamp=$venv/.dexlab-requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: $venv up to date"
  exit 0
fi
command -v python3 >/dev/null || die "python3 not found"
# Debian's python3 lacks venv's pip bootstrap until python3-venv is installed.
python3 -c 'import venv, ensurepip' 2>/dev/null || bash scripts/ensure-debian.sh '!=python3-venv'

echo "setup: $venv (pip install -r $req)"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" >"$stamp"

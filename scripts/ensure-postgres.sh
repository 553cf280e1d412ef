#!/usr/bin/env bash
# Makes sure PostgreSQL answers at 127.0.0.1:5432 for the store's tests (dexlab-store), which
# connect as user `postgres` without a password. Idempotent, and quick when a server already runs:
#   1. a server already answers on 127.0.0.1:5432        -> nothing to do (it is never modified)
#   2. else install `postgresql` with apt-get if missing  (sudo only when not root)
#   3. pick the cluster on port 5432 (create one if none), and only if this script created it or
#      is the one starting it: let `postgres` in over 127.0.0.1/32 with trust (pg_hba.conf)
#   4. start it and wait until it accepts connections
# With DEXLAB_TEST_POSTGRES_URL set the tests use that server instead, and this script does nothing.
set -euo pipefail

host=127.0.0.1
port=5432
marker="# dexlab: scripts/ensure-postgres.sh"

say() { echo "ensure-postgres: $*"; }
die() { echo "ensure-postgres: $*" >&2; exit 1; }

if [[ -n "${DEXLAB_TEST_POSTGRES_URL:-}" ]]; then
  say "DEXLAB_TEST_POSTGRES_URL is set; the tests use that server, nothing to do"
  exit 0
fi

# 0: accepting connections; 1: answering but not (yet) accepting; 2: nothing there.
probe() {
  if command -v pg_isready >/dev/null 2>&1; then
    local rc=0
    pg_isready -q -h "$host" -p "$port" -t 3 || rc=$?
    case $rc in 0) return 0 ;; 1) return 1 ;; *) return 2 ;; esac
  fi
  # No client tools yet: a plain TCP connect.
  if timeout 3 bash -c ": </dev/tcp/$host/$port" 2>/dev/null; then return 0; fi
  return 2
}

wait_ready() {
  local i rc
  for i in $(seq 1 60); do
    rc=0; probe || rc=$?
    [[ $rc == 0 ]] && return 0
    sleep 0.5
  done
  return 1
}

rc=0; probe || rc=$?
if [[ $rc == 0 ]]; then
  say "PostgreSQL answers at $host:$port"
  exit 0
fi
if [[ $rc == 1 ]]; then
  # Something is starting up there; give it time rather than touching it.
  wait_ready && { say "PostgreSQL answers at $host:$port"; exit 0; }
  die "a server at $host:$port answers but does not accept connections; not touching it"
fi

if [[ $(id -u) == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  die "nothing answers at $host:$port, and installing PostgreSQL needs root or sudo"
fi

# 2. install
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  say "installing postgresql with apt-get"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  installed_now=1
else
  installed_now=0
fi

# Installing may already have created and started the default cluster.
rc=0; probe || rc=$?
if [[ $rc == 0 && $installed_now == 0 ]]; then
  say "PostgreSQL answers at $host:$port"
  exit 0
fi

# 3. the cluster on port 5432: `pg_lsclusters` prints "version name port status owner datadir log".
version="" name="" status=""
while read -r v n p s _; do
  if [[ $p == "$port" ]]; then version=$v name=$n status=$s; break; fi
done < <(pg_lsclusters --no-header 2>/dev/null || true)

ours=$installed_now
if [[ -z $name ]]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  [[ -n $version ]] || die "no PostgreSQL server version found under /usr/lib/postgresql"
  name=dexlab
  say "creating cluster $version/$name on port $port"
  "${sudo[@]}" pg_createcluster "$version" "$name" --port "$port" >/dev/null
  status=down
  ours=1
fi
if [[ $status != online* ]]; then
  ours=1 # this script is the one starting it
fi
[[ $ours == 1 ]] || die "cluster $version/$name on port $port runs but does not answer at $host:$port; not touching it"

hba="/etc/postgresql/$version/$name/pg_hba.conf"
[[ -f $hba ]] || die "$hba not found"
if ! "${sudo[@]}" grep -qF "$marker" "$hba"; then
  say "letting user postgres in from $host/32 without a password ($hba)"
  # First matching line wins, so these go on top.
  tmp=$(mktemp)
  { echo "$marker"; echo "host all postgres $host/32 trust"; "${sudo[@]}" cat "$hba"; } >"$tmp"
  "${sudo[@]}" cp "$tmp" "$hba"
  rm -f "$tmp"
fi

# 4. start (or, when installing just started it, reload so that the new pg_hba.conf applies)
if [[ $status == online* ]]; then
  "${sudo[@]}" pg_ctlcluster "$version" "$name" reload
else
  say "starting cluster $version/$name"
  "${sudo[@]}" pg_ctlcluster "$version" "$name" start || "${sudo[@]}" service postgresql start
fi
wait_ready || die "cluster $version/$name did not come up at $host:$port (see /var/log/postgresql/)"
if command -v psql >/dev/null 2>&1; then
  psql -w -h "$host" -p "$port" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null \
    || die "PostgreSQL answers at $host:$port but user postgres cannot log in without a password"
fi
say "PostgreSQL answers at $host:$port"

#!/usr/bin/env bash
# Makes sure commands the tests need exist, installing their Debian packages when missing;
# idempotent and instant when they do. Arguments: COMMAND=PACKAGE pairs, e.g. openssl=openssl;
# `!=PACKAGE` installs PACKAGE unconditionally (for packages without a command of their own).
set -euo pipefail

die() { echo "ensure-debian.sh: $*" >&2; exit 1; }

missing=()
for pair in "$@"; do
  cmd=${pair%%=*}
  pkg=${pair#*=}
  if [[ $cmd == "!" ]] || ! command -v "$cmd" >/dev/null; then missing+=("$pkg"); fi
done
(( ${#missing[@]} == 0 )) && exit 0

command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get; install them"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "missing ${missing[*]}; run as root or install them"
  sudo=(sudo)
fi
echo "setup: apt-get install ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for pair in "$@"; do
  [[ ${pair%%=*} == "!" ]] && continue
  command -v "${pair%%=*}" >/dev/null || die "${pair%%=*} still missing after installing ${pair#*=}"
done

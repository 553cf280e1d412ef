#!/usr/bin/env bash
# Makes sure a TrueType font exists for dexlab-report's chart text; idempotent and instant when one
# does. dexlab-report looks in this order: $DEXLAB_FONT, DejaVu/Liberation/Noto at their usual
# paths, then any *.ttf under /usr/share/fonts. Installs Debian's fonts-dejavu-core otherwise.
set -euo pipefail

die() { echo "ensure-fonts.sh: $*" >&2; exit 1; }

if [[ -n "${DEXLAB_FONT:-}" ]]; then
  [[ -f $DEXLAB_FONT ]] || die "DEXLAB_FONT=$DEXLAB_FONT does not exist"
  echo "setup: font $DEXLAB_FONT (from DEXLAB_FONT)"
  exit 0
fi

find_font() {
  local p
  for p in /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
           /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf \
           /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf; do
    [[ -f $p ]] && { echo "$p"; return 0; }
  done
  [[ -d /usr/share/fonts ]] && find /usr/share/fonts -maxdepth 6 -type f -iname '*.ttf' -print -quit
}

font=$(find_font || true)
if [[ -z $font ]]; then
  command -v apt-get >/dev/null || die "no .ttf font found and no apt-get; install a TrueType font or set DEXLAB_FONT"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "no .ttf font found; run as root or install fonts-dejavu-core"
    sudo=(sudo)
  fi
  # Installed but its files gone (an image cleaner removed them): only --reinstall brings them back.
  reinstall=()
  if dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'install ok installed'; then
    reinstall=(--reinstall)
  fi
  echo "setup: apt-get install ${reinstall[*]} fonts-dejavu-core"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a fresh machine; refresh once if install fails.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${reinstall[@]}" fonts-dejavu-core \
      >/dev/null 2>&1 || {
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${reinstall[@]}" fonts-dejavu-core >/dev/null
  }
  font=$(find_font || true)
  [[ -n $font ]] || die "fonts-dejavu-core installed but no .ttf found under /usr/share/fonts"
fi
echo "setup: font $font"

#!/usr/bin/env bash
# Install everything kubelab needs on a Debian/Ubuntu machine, idempotently:
#  1. the system packages of lab/programs.txt (the manifest of every program the project executes):
#     the `core` group always, `vagrant` with KUBELAB_VAGRANT=1, `cleanroom` with KUBELAB_CLEANROOM=1;
#     only the missing ones, and `apt-get update` only when something is missing;
#  2. .venv with the project and its test extras (re-installed only when pyproject.toml changed);
#  3. kubectl >= 1.27 when none is on PATH (lab/kubectl.sh: the upstream release, pinned);
#  4. the `download` packages' .debs, fetched (never installed) into .cache/debs/: image build inputs
#     (lab/images.py extracts Debian's nginx from them; installing it would start a web server here).
# A second run finds everything in place and returns in about a second.
# Runs on a minimal Debian as root with no sudo and no python3 yet: plain bash reads the manifest.
set -euo pipefail
cd "$(dirname "$0")/.."

MANIFEST=lab/programs.txt
groups=" core "
[ "${KUBELAB_VAGRANT:-0}" = 1 ] && groups+="vagrant "
[ "${KUBELAB_CLEANROOM:-0}" = 1 ] && groups+="cleanroom "

# The packages of the wanted groups, each once, in manifest order.
APT_PACKAGES=()
DOWNLOAD_PACKAGES=()
declare -A seen=()
while read -r program package group flags _; do
  case "$program" in '' | '#'*) continue ;; esac
  [[ $groups == *" $group "* ]] || continue
  flags=${flags%%#*}
  [[ ,$flags, == *,essential,* ]] && continue           # on every Debian; nothing to install
  [[ ,$flags, == *,guest,* ]] && continue               # inside the Vagrant box, not on the host
  # onpath (kubectl): not an apt package here; lab/kubectl.sh checks PATH and installs it when needed.
  [[ ,$flags, == *,onpath,* ]] && continue
  [ -n "${seen[$package]:-}" ] && continue
  seen[$package]=1
  if [[ ,$flags, == *,download,* ]]; then
    DOWNLOAD_PACKAGES+=("$package")
    continue
  fi
  APT_PACKAGES+=("$package")
done < <(sed 's/#.*//' "$MANIFEST")

# `deps.sh --list`: the packages this run would want (the manifest as bash reads it; the unit tests
# compare it with lab/programs.py's reading), nothing installed.
if [ "${1:-}" = --list ]; then
  printf '%s\n' "${APT_PACKAGES[@]}"
  exit 0
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "kubelab deps: missing system packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "kubelab deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.deps-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

./lab/kubectl.sh

# Build inputs: the .deb of each `download` package, once (a newer one replaces it after apt-get update).
if [ ${#DOWNLOAD_PACKAGES[@]} -gt 0 ]; then
  mkdir -p .cache/debs
  fetch=()
  for p in "${DOWNLOAD_PACKAGES[@]}"; do
    have=(.cache/debs/"${p}"_*.deb)
    [ -e "${have[0]}" ] || fetch+=("$p")
  done
  if [ ${#fetch[@]} -gt 0 ]; then
    echo "kubelab deps: downloading ${fetch[*]} (image build inputs) into .cache/debs"
    if ! (cd .cache/debs && apt-get download -qq "${fetch[@]}" 2>/dev/null); then
      [ "$(id -u)" = 0 ] && apt-get update -qq
      if ! (cd .cache/debs && apt-get download -qq "${fetch[@]}"); then
        # Not fatal: the lab still comes up, without the tutorial images these packages build
        # (lab/images.py leaves them out with a warning naming them).
        echo "kubelab deps: warning: could not download ${fetch[*]}; the lab's nginx image will be missing" >&2
      fi
    fi
  fi
fi

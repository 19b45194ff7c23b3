#!/usr/bin/env bash
# Install everything kubelab needs on a Debian/Ubuntu machine, idempotently:
#  1. the system packages (only the missing ones; `apt-get update` only when something is missing),
#  2. .venv with the project and its test extras (re-installed only when pyproject.toml changed).
# A second run finds everything in place and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  runc iptables busybox-static etcd-server containernetworking-plugins docker-registry
  skopeo umoci curl iproute2 conntrack kmod procps psmisc python3-venv ca-certificates
  gcc libc6-dev util-linux
)
# kubectl: any on PATH will do (kubelab is tested with 1.27–1.33); Debian's is the fallback.
command -v kubectl >/dev/null 2>&1 || APT_PACKAGES+=(kubernetes-client)
# The Vagrant lab: `vagrant validate` runs in `make test`; `make test-vagrant` adds libvirt and QEMU.
APT_PACKAGES+=(vagrant vagrant-libvirt)
if [ "${KUBELAB_VAGRANT:-0}" = 1 ]; then
  APT_PACKAGES+=(libvirt-daemon-system libvirt-clients dnsmasq-base qemu-system-x86 qemu-utils debootstrap parted grub-pc-bin e2fsprogs rsync)
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

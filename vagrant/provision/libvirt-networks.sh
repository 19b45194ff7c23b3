#!/usr/bin/env bash
# Start libvirt by hand (no systemd needed) and define the lab's two networks: isolated (no
# <forward>, so no NAT and no routing), DNS off, no router handed out by DHCP — no guest can reach
# anything beyond the lab. `down` removes the networks and stops the daemons this script started
# (by the pids it recorded; a libvirtd that was already running is left alone).
# Usage: libvirt-networks.sh up|down
set -euo pipefail
STATE=$(cd "$(dirname "$0")/.." && pwd)/.prep/libvirt
VIRSH=(virsh -c qemu:///system)
SAFETY_METRIC=4242   # lab/safety.py's METRIC
mkdir -p "$STATE"

define_net() { # name xml
  if ! "${VIRSH[@]}" net-info "$1" >/dev/null 2>&1; then
    echo "$2" > "$STATE/$1.xml"
    "${VIRSH[@]}" net-define "$STATE/$1.xml" >/dev/null
  fi
  # Never a network with forwarding: refuse one that vagrant-libvirt or anyone else defined so.
  # (virsh's output is read into a variable first: with pipefail, `virsh … | grep -q` fails when
  # grep exits at its first match and virsh gets SIGPIPE, which would turn a match into a miss.)
  local xml info
  xml=$("${VIRSH[@]}" net-dumpxml "$1")
  if grep -q '<forward' <<<"$xml"; then
    echo "libvirt network $1 has a <forward> element (NAT/routing): refusing to start it" >&2
    exit 1
  fi
  info=$("${VIRSH[@]}" net-info "$1")
  grep -qE '^Active: +yes' <<<"$info" && return 0
  local subnet=${3:-}
  if [ -n "$subnet" ] && grep -q "metric $SAFETY_METRIC" <<<"$(ip route show type unreachable "$subnet")"; then
    start_under_safety_route "$1" "$subnet"
  else
    "${VIRSH[@]}" net-start "$1" >/dev/null
  fi
}

# libvirt refuses to start a network whose subnet is already routed ("Network is already in use by
# interface *"), and lab/safety.py holds `unreachable 192.168.56.0/24 metric 4242` while a lab or a
# test runs. Without ever leaving the subnet unprotected: two unreachable /25 halves stand in while
# the /24 is taken away, the network starts (its bridge's connected /24 appears), the /24 safety
# route comes back (metric 4242 loses to the connected route), and the halves go.
start_under_safety_route() { # name subnet
  local name=$1 subnet=$2 base=${2%.*}
  local halves=("$base.0/25" "$base.128/25") rc=0
  for h in "${halves[@]}"; do ip route replace unreachable "$h" metric "$SAFETY_METRIC"; done
  ip route del unreachable "$subnet" metric "$SAFETY_METRIC"
  "${VIRSH[@]}" net-start "$name" >/dev/null || rc=$?
  ip route replace unreachable "$subnet" metric "$SAFETY_METRIC"
  for h in "${halves[@]}"; do ip route del unreachable "$h" metric "$SAFETY_METRIC" 2>/dev/null; done
  return $rc
}

# Without udev (a container or a microVM as the host), /dev/kvm keeps the kernel's root-only 0600
# instead of udev's root:kvm 0660 (Debian's 50-udev-default.rules). libvirt then finds KVM in its
# capability probe yet not usable by its QEMU user, so it discards its capabilities cache and probes
# QEMU again at every lookup (virQEMUCapsIsValid: "KVM was enabled when probing …, but it is not
# available now"): ~2 s a probe, ~8 minutes of a 6-VM `vagrant up` spent idle. udev's group and
# mode while our libvirtd runs; `down` puts back what was there. (Whether KVM can run a guest does
# not matter here: the Vagrantfile picks the domain type, and TCG when the CPU shows no VMX/SVM.)
kvm_like_udev() {
  [ -c /dev/kvm ] && getent group kvm >/dev/null || return 0
  local was; was=$(stat -c '%U:%G %a' /dev/kvm)
  [ "$was" = "root:kvm 660" ] || [ "$was" = "root:kvm 666" ] && return 0
  [ -f "$STATE/kvm-mode" ] || echo "$was" > "$STATE/kvm-mode"
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
}

kvm_restore() {
  [ -f "$STATE/kvm-mode" ] || return 0
  local owner mode
  read -r owner mode < "$STATE/kvm-mode"
  if [ -c /dev/kvm ]; then chown "$owner" /dev/kvm && chmod "$mode" /dev/kvm; fi
  rm -f "$STATE/kvm-mode"
}

case "${1:-up}" in
up)
  kvm_like_udev
  # Debian's "default" network NATs to the outside: it must never start with our libvirtd.
  rm -f /etc/libvirt/qemu/networks/autostart/default.xml
  grep -q LIBVIRT_ <<<"$(iptables-save)" || touch "$STATE/iptables-ours"   # libvirtd adds LIBVIRT_* chains
  for d in virtlogd libvirtd; do
    if ! pgrep -x "$d" >/dev/null; then
      rm -f "/run/$d.pid"
      "$d" -d
      for _ in $(seq 50); do [ -s "/run/$d.pid" ] && break; sleep 0.2; done
      cp "/run/$d.pid" "$STATE/$d.pid"
    fi
  done
  for _ in $(seq 100); do "${VIRSH[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
  "${VIRSH[@]}" version >/dev/null
  define_net kubelab-mgmt "<network><name>kubelab-mgmt</name><bridge name='klvirbr1' stp='on' delay='0'/><dns enable='no'/><ip address='192.168.121.1' netmask='255.255.255.0'><dhcp><range start='192.168.121.2' end='192.168.121.254'/></dhcp></ip></network>"
  define_net kubelab-lab "<network><name>kubelab-lab</name><bridge name='klvirbr2' stp='on' delay='0'/><dns enable='no'/><ip address='192.168.56.1' netmask='255.255.255.0'/></network>" 192.168.56.0/24
  if ! "${VIRSH[@]}" pool-info default >/dev/null 2>&1; then
    mkdir -p /var/lib/libvirt/images
    "${VIRSH[@]}" pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
    touch "$STATE/pool-created"
  fi
  "${VIRSH[@]}" pool-start default >/dev/null 2>&1 || true
  ;;
down)
  if "${VIRSH[@]}" version >/dev/null 2>&1; then
    for n in kubelab-lab kubelab-mgmt; do
      "${VIRSH[@]}" net-destroy "$n" >/dev/null 2>&1 || true
      "${VIRSH[@]}" net-undefine "$n" >/dev/null 2>&1 || true
    done
    if [ -f "$STATE/pool-created" ]; then
      "${VIRSH[@]}" pool-destroy default >/dev/null 2>&1 || true
      "${VIRSH[@]}" pool-undefine default >/dev/null 2>&1 || true
      rm -f "$STATE/pool-created"
    fi
  fi
  for d in libvirtd virtlogd; do
    if [ -f "$STATE/$d.pid" ]; then
      pid=$(cat "$STATE/$d.pid")
      if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$d" ]; then
        kill "$pid"
        for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
      fi
      rm -f "$STATE/$d.pid"
    fi
  done
  kvm_restore
  # The LIBVIRT_* chains libvirtd made in the root namespace (the networks' rules went with them
  # at net-destroy; the empty chains and their jumps stay behind), when none were there before us.
  if [ -f "$STATE/iptables-ours" ] && ! pgrep -x libvirtd >/dev/null; then
    for t in filter nat mangle; do
      iptables-save -t "$t" | awk '/^-A [A-Z]+ -j LIBVIRT_/ {sub(/^-A /, ""); print}' | while read -r chain _ target; do
        iptables -t "$t" -D "$chain" -j "$target" 2>/dev/null || true
      done
      for c in $(iptables-save -t "$t" | awk -F'[: ]' '/^:LIBVIRT_/ {print $2}'); do
        iptables -t "$t" -F "$c" 2>/dev/null; iptables -t "$t" -X "$c" 2>/dev/null || true
      done
    done
    rm -f "$STATE/iptables-ours"
  fi
  ;;
esac

#!/usr/bin/env bash
# The Vagrant lab's host side. Plain `sudo vagrant up` in vagrant/ runs it through the Vagrantfile's
# triggers; `sudo make vagrant-up` / `make vagrant-down` run `up` / `down`.
# Usage: vagrant/lab.sh prepare [PROVIDER] | finish MACHINE [LAST] | cleanup | up | box | down [--all]
#
# prepare  (trigger before :up, once per `vagrant up`), idempotent, each step announced:
#          1. the box: KUBELAB_BOX (default local/kubelab-bookworm) is built offline with debootstrap
#             (provision/build-box.sh) and added, unless Vagrant already has it (libvirt only);
#          2. libvirt started by hand, with the two isolated, DNS-less networks (provision/libvirt-networks.sh);
#          3. PKI, kubeconfigs, wheels and noded's binaries on the host (lab.vagrantprep);
#          4. the image registry on 192.168.56.1:5000 with the lab's images (lab.vagrantregistry).
# finish   (trigger after :up, per machine): the registry when it is not answering yet (VirtualBox
#          makes its host-only adapter, 192.168.56.1, only at the first machine's up), the host's
#          route to the service network via kl-node1; after LAST, waits (with a deadline) for Ready.
# cleanup  (trigger after :destroy, after every machine): once no lab VM is left, the route, the registry,
#          the networks and the libvirt daemons prepare started. Keeps the box and vagrant/.prep.
# up:      `vagrant up` (the triggers do the rest): what `make vagrant-up` runs.
# down:    the route, the VMs and their volumes, the registry, the networks, the libvirt daemons this
#          script started (by pid); with --all also the box (Vagrant's copy, the pool volume, the file)
#          and everything the host prepared (vagrant/.prep, vagrant/admin.kubeconfig).
#          Every step runs even when an earlier one fails: down is what cleans up after a failed up.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VDIR=$ROOT/vagrant
PREP=$VDIR/.prep
PY=${PY:-$ROOT/.venv/bin/python}
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export KUBELAB_BOX=${KUBELAB_BOX:-local/kubelab-bookworm}
export KUBELAB_WORKERS=${KUBELAB_WORKERS:-2}
# KUBELAB_CONTROL_PLANES / KUBELAB_ETCD are not defaulted here: unset, the Vagrantfile keeps the
# shape of the lab Vagrant already made (so `down` destroys an HA lab's VMs too).
# Every lab VM's name, in any shape (DESIGN.md §3): kl-cp, or kl-lb, kl-cpN and kl-etcdN with HA; kl-nodeN.
LAB_VM_RE='kl-(cp[0-9]*|lb|etcd[0-9]+|node[0-9]+)'
BOX_DIR=${KUBELAB_BOX_DIR:-/var/tmp/kubelab-box}
SERVICE_NETWORK=10.96.0.0/12
SERVICE_VIA=192.168.56.11             # kl-node1: the host reaches service VIPs through a worker
ROUTE_METRIC=101                      # beside the one-machine lab's (100); beats the safety routes (4242)
READY_TIMEOUT=${KUBELAB_READY_TIMEOUT:-1200}
VIRSH=(virsh -c qemu:///system)

say() { echo "kubelab vagrant: $*"; }
die() { echo "kubelab vagrant: error: $*" >&2; exit 1; }
ts() { date +%s; }

ensure_box() {
  if grep -q "^$KUBELAB_BOX " <<<"$(vagrant box list 2>/dev/null)"; then say "box $KUBELAB_BOX present"; return; fi
  [ "$KUBELAB_BOX" = local/kubelab-bookworm ] || return 0   # a public box: vagrant downloads it
  local t0; t0=$(ts)
  if [ ! -f "$BOX_DIR/kubelab-bookworm.box" ]; then
    say "building the offline Debian 12 box (debootstrap; a few minutes)"
    bash "$VDIR/provision/build-box.sh" "$BOX_DIR" || die "the box build failed"
  fi
  vagrant box add -f --name "$KUBELAB_BOX" "$BOX_DIR/kubelab-bookworm.box" >/dev/null || die "vagrant box add failed"
  say "box $KUBELAB_BOX built and added in $(( $(ts) - t0 )) s"
}

nodes_ready() {
  local out
  out=$(kubectl --kubeconfig "$VDIR/admin.kubeconfig" --request-timeout=10s get nodes --no-headers 2>/dev/null) || return 1
  [ "$(echo "$out" | awk '$2 == "Ready"' | wc -l)" -ge "$KUBELAB_WORKERS" ]
}

need_root() {
  [ "$(id -u)" = 0 ] && return
  die "the host side of the Vagrant lab (libvirt, the lab network 192.168.56.0/24, its route, the registry) needs root: run \`sudo vagrant up\` (or \`sudo make vagrant-up\`)"
}

step() { say "[$1] $2"; }

registry_answers() { curl -s -o /dev/null --max-time 3 http://192.168.56.1:5000/v2/; }

lab_vms() { # the lab's VMs that still exist, on either provider
  if "${VIRSH[@]}" version >/dev/null 2>&1; then
    "${VIRSH[@]}" list --all --name 2>/dev/null | grep -E "_${LAB_VM_RE}\$"
  fi
  if command -v VBoxManage >/dev/null 2>&1; then
    VBoxManage list vms 2>/dev/null | grep -oE "\"kubelab-${LAB_VM_RE}\""
  fi
  return 0
}

prepare() {
  local provider=${1:-libvirt} t0; t0=$(ts)
  need_root
  if ip -br link show kl0 >/dev/null 2>&1; then
    die "the one-machine lab (bridge kl0, 192.168.56.1) is up: the Vagrant lab uses the same addresses; run \`sudo kubelab down\` first"
  fi
  [ -x "$PY" ] || { step 0/4 "the project's dependencies (lab/deps.sh)"; KUBELAB_VAGRANT=1 "$ROOT/lab/deps.sh" || die "lab/deps.sh failed"; }
  if [ "$provider" = libvirt ]; then
    step 1/4 "box $KUBELAB_BOX"
    ensure_box
    step 2/4 "libvirt and the isolated networks kubelab-mgmt (192.168.121.0/24), kubelab-lab (192.168.56.0/24)"
    bash "$VDIR/provision/libvirt-networks.sh" up || die "libvirt could not be started"
  else
    say "[1-2/4] provider $provider: box and network are Vagrant's (the host-only network appears at the first VM's up)"
  fi
  step 3/4 "PKI, kubeconfigs, wheels, noded's binaries (lab/vagrantprep.py)"
  "$PY" -m lab.vagrantprep --workers "$KUBELAB_WORKERS" --control-planes "${KUBELAB_CONTROL_PLANES:-1}" \
    --etcd "${KUBELAB_ETCD:-stacked}" || die "host preparation failed"
  if grep -q ' 192\.168\.56\.1/' <<<"$(ip -4 -o addr show)"; then
    step 4/4 "image registry on 192.168.56.1:5000"
    registry_answers || "$PY" -m lab.vagrantregistry up || die "the registry could not be started"
  else
    say "[4/4] the registry starts once 192.168.56.1 exists (after the first VM is up)"
  fi
  say "host ready in $(( $(ts) - t0 )) s; now the VMs (driver ${LAB_LIBVIRT_DRIVER:-kvm}; software emulation takes minutes)"
}

finish() {
  local machine=${1:-} last=${2:-}
  need_root
  if ! registry_answers; then
    say "image registry on 192.168.56.1:5000"
    "$PY" -m lab.vagrantregistry up || die "the registry could not be started"
  fi
  if ! grep -q "via $SERVICE_VIA " <<<"$(ip route show "$SERVICE_NETWORK")"; then
    say "host route $SERVICE_NETWORK via $SERVICE_VIA (kl-node1) metric $ROUTE_METRIC: service VIPs from the host"
    ip route replace "$SERVICE_NETWORK" via "$SERVICE_VIA" metric "$ROUTE_METRIC" \
      || die "cannot add the host route to $SERVICE_NETWORK"
  fi
  [ -n "$last" ] && [ "$machine" = "$last" ] || return 0
  say "waiting (up to ${READY_TIMEOUT} s) until every node is Ready"
  local deadline=$(( $(ts) + READY_TIMEOUT ))
  until nodes_ready; do
    [ "$(ts)" -lt "$deadline" ] || die "nodes not Ready after ${READY_TIMEOUT}s (vagrant ssh kl-node1 -c 'sudo journalctl -u kubelab-noded')"
    sleep 5
  done
  kubectl --kubeconfig "$VDIR/admin.kubeconfig" get nodes -o wide
  say "the lab is up. From the host: kubectl --kubeconfig vagrant/admin.kubeconfig get pods -A"
  say "inside: cd vagrant && vagrant ssh kl-node1 -c 'sudo iptables -t nat -S KUBE-SERVICES'"
}

cleanup() {
  need_root
  local left; left=$(lab_vms | tr '\n' ' ')
  if [ -n "${left// /}" ]; then
    say "lab VMs still exist ($left): keeping the registry, the route and the networks"
    return 0
  fi
  say "no lab VM left: removing the host route, the registry, the networks"
  ip route del "$SERVICE_NETWORK" via "$SERVICE_VIA" metric "$ROUTE_METRIC" 2>/dev/null
  "$PY" -m lab.vagrantregistry down
  bash "$VDIR/provision/libvirt-networks.sh" down
  return 0
}

up() {
  need_root
  local t0; t0=$(ts)
  (cd "$VDIR" && vagrant up --provider=libvirt) || die "vagrant up failed"
  say "up in $(( $(ts) - t0 )) s"
}

down() {
  local all=${1:-}
  ip route del "$SERVICE_NETWORK" via "$SERVICE_VIA" metric "$ROUTE_METRIC" 2>/dev/null
  if "${VIRSH[@]}" version >/dev/null 2>&1; then
    (cd "$VDIR" && vagrant destroy -f) || say "vagrant destroy reported an error (continuing)"
    # Whatever vagrant left (an interrupted up): our domains and their disks, by name.
    for d in $("${VIRSH[@]}" list --all --name 2>/dev/null | grep -E "^vagrant_${LAB_VM_RE}\$"); do
      "${VIRSH[@]}" destroy "$d" >/dev/null 2>&1
      "${VIRSH[@]}" undefine "$d" --remove-all-storage >/dev/null 2>&1 && say "removed leftover domain $d"
    done
    if [ "$all" = --all ]; then
      for v in $("${VIRSH[@]}" vol-list default 2>/dev/null | awk 'NR > 2 && $1 ~ /kubelab-bookworm/ {print $1}'); do
        "${VIRSH[@]}" vol-delete --pool default "$v" >/dev/null && say "removed pool volume $v"
      done
    fi
  fi
  "$PY" -m lab.vagrantregistry down
  if [ "$all" = --all ]; then
    vagrant box remove -f "$KUBELAB_BOX" >/dev/null 2>&1 && say "removed box $KUBELAB_BOX"
    rm -rf "$BOX_DIR"
    # The box's pool volume when libvirtd is no longer there to delete it (the destroy trigger's
    # cleanup stops the daemons it started): the file itself, by its name.
    rm -f /var/lib/libvirt/images/*kubelab-bookworm*
  fi
  bash "$VDIR/provision/libvirt-networks.sh" down
  rm -rf "$VDIR/.vagrant"
  [ "$all" = --all ] && rm -rf "$PREP" "$VDIR/admin.kubeconfig"
  say "down"
}

case "${1:-}" in
prepare) prepare "${2:-libvirt}" ;;
finish) finish "${2:-}" "${3:-}" ;;
cleanup) cleanup ;;
up) up ;;
box) [ "$(id -u)" = 0 ] || die "run as root"; ensure_box ;;
down) down "${2:-}" ;;
*) die "usage: vagrant/lab.sh prepare [PROVIDER] | finish MACHINE [LAST] | cleanup | up | box | down [--all]" ;;
esac

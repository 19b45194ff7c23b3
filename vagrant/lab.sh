#!/usr/bin/env bash
# The Vagrant lab on libvirt, from a machine with no internet for the guests: `sudo make vagrant-up`
# and `sudo make vagrant-down` run this. Usage: vagrant/lab.sh up | down [--all]
#
# up:   1. the box: KUBELAB_BOX (default local/kubelab-bookworm) is built offline with debootstrap
#          (provision/build-box.sh) and added, unless Vagrant already has it;
#       2. libvirt started by hand, with the two isolated, DNS-less networks (provision/libvirt-networks.sh);
#       3. PKI, kubeconfigs and wheels on the host (lab.vagrantprep), the image registry on
#          192.168.56.1:5000 with the lab's images (lab.vagrantregistry);
#       4. `vagrant up` (QEMU software emulation with a small translation cache when the CPU has no
#          VMX/SVM, as here); 5. the host's lab route to the service network via kl-node1;
#       6. waits (with a deadline) until every node is Ready.
# down: the route, the VMs and their volumes, the registry, the networks, the libvirt daemons this
#       script started (by pid); with --all also the box (Vagrant's copy, the pool volume, the file)
#       and everything the host prepared (vagrant/.prep, vagrant/admin.kubeconfig).
#       Every step runs even when an earlier one fails: down is what cleans up after a failed up.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VDIR=$ROOT/vagrant
PREP=$VDIR/.prep
PY=${PY:-$ROOT/.venv/bin/python}
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export KUBELAB_BOX=${KUBELAB_BOX:-local/kubelab-bookworm}
export KUBELAB_WORKERS=${KUBELAB_WORKERS:-2}
BOX_DIR=${KUBELAB_BOX_DIR:-/var/tmp/kubelab-box}
BRIDGE=klvirbr2                       # the kubelab-lab network's bridge (provision/libvirt-networks.sh)
SERVICE_NETWORK=10.96.0.0/12
SERVICE_VIA=192.168.56.11             # kl-node1: the host reaches service VIPs through a worker
ROUTE_METRIC=101                      # beside the one-machine lab's (100); beats the safety routes (4242)
READY_TIMEOUT=${KUBELAB_READY_TIMEOUT:-1200}
VIRSH=(virsh -c qemu:///system)

say() { echo "kubelab vagrant: $*"; }
die() { echo "kubelab vagrant: error: $*" >&2; exit 1; }
ts() { date +%s; }

choose_driver() {
  if [ -z "${LAB_LIBVIRT_DRIVER:-}" ]; then
    if [ -c /dev/kvm ] && grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; then LAB_LIBVIRT_DRIVER=kvm; else LAB_LIBVIRT_DRIVER=qemu; fi
  fi
  export LAB_LIBVIRT_DRIVER
  if [ "$LAB_LIBVIRT_DRIVER" = qemu ] && [ -z "${LAB_EMULATOR:-}" ]; then
    export LAB_EMULATOR=$VDIR/provision/qemu-tb.sh
  fi
}

ensure_box() {
  if vagrant box list 2>/dev/null | grep -q "^$KUBELAB_BOX "; then say "box $KUBELAB_BOX present"; return; fi
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

up() {
  [ "$(id -u)" = 0 ] || die "run as root (sudo make vagrant-up): libvirt, the lab network and its route need it"
  if ip -br link show kl0 >/dev/null 2>&1; then
    die "the one-machine lab (bridge kl0, 192.168.56.1) is up: the Vagrant lab uses the same addresses; run \`sudo kubelab down\` first"
  fi
  choose_driver
  local t0; t0=$(ts)
  ensure_box
  bash "$VDIR/provision/libvirt-networks.sh" up || die "libvirt could not be started"
  "$PY" -m lab.vagrantprep --workers "$KUBELAB_WORKERS" || die "host preparation failed"
  "$PY" -m lab.vagrantregistry up || die "the registry could not be started"
  say "vagrant up: ${KUBELAB_WORKERS} workers, driver $LAB_LIBVIRT_DRIVER (software emulation is slow: minutes)"
  (cd "$VDIR" && vagrant up --provider=libvirt) || die "vagrant up failed"
  ip route replace "$SERVICE_NETWORK" via "$SERVICE_VIA" dev "$BRIDGE" metric "$ROUTE_METRIC" \
    || die "cannot add the host route to $SERVICE_NETWORK"
  local deadline=$(( $(ts) + READY_TIMEOUT ))
  until nodes_ready; do
    [ "$(ts)" -lt "$deadline" ] || die "nodes not Ready after ${READY_TIMEOUT}s (vagrant ssh kl-node1 -c 'sudo journalctl -u kubelab-noded')"
    sleep 5
  done
  kubectl --kubeconfig "$VDIR/admin.kubeconfig" get nodes -o wide
  say "up in $(( $(ts) - t0 )) s. From the host: kubectl --kubeconfig vagrant/admin.kubeconfig get pods -A"
  say "inside: cd vagrant && vagrant ssh kl-node1 -c 'sudo iptables -t nat -S KUBE-SERVICES'"
}

down() {
  local all=${1:-}
  ip route del "$SERVICE_NETWORK" via "$SERVICE_VIA" dev "$BRIDGE" metric "$ROUTE_METRIC" 2>/dev/null
  if "${VIRSH[@]}" version >/dev/null 2>&1; then
    (cd "$VDIR" && vagrant destroy -f) || say "vagrant destroy reported an error (continuing)"
    # Whatever vagrant left (an interrupted up): our domains and their disks, by name.
    for d in $("${VIRSH[@]}" list --all --name 2>/dev/null | grep -E '^vagrant_kl-(cp|node[0-9]+)$'); do
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
  fi
  bash "$VDIR/provision/libvirt-networks.sh" down
  rm -rf "$VDIR/.vagrant"
  [ "$all" = --all ] && rm -rf "$PREP" "$VDIR/admin.kubeconfig"
  say "down"
}

case "${1:-}" in
up) up ;;
box) [ "$(id -u)" = 0 ] || die "run as root"; ensure_box ;;
down) down "${2:-}" ;;
*) die "usage: vagrant/lab.sh up | box | down [--all]" ;;
esac

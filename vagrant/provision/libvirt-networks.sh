#!/usr/bin/env bash
# Start libvirt by hand (no systemd needed) and define the lab's two networks: isolated, DNS off, no
# forwarding, no router handed out — so no guest can reach anything beyond the lab.
# Usage: libvirt-networks.sh up|down
set -euo pipefail
case "${1:-up}" in
up)
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
  for i in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
  define() { # name xml
    virsh -c qemu:///system net-info "$1" >/dev/null 2>&1 || { echo "$2" > /tmp/kl-net.xml; virsh -c qemu:///system net-define /tmp/kl-net.xml >/dev/null; rm -f /tmp/kl-net.xml; }
    virsh -c qemu:///system net-start "$1" >/dev/null 2>&1 || true
  }
  define kubelab-mgmt "<network><name>kubelab-mgmt</name><bridge name='klvirbr1' stp='on' delay='0'/><dns enable='no'/><ip address='192.168.121.1' netmask='255.255.255.0'><dhcp><range start='192.168.121.2' end='192.168.121.254'/></dhcp></ip></network>"
  define kubelab-lab "<network><name>kubelab-lab</name><bridge name='klvirbr2' stp='on' delay='0'/><dns enable='no'/><ip address='192.168.56.1' netmask='255.255.255.0'/></network>"
  ;;
down)
  for n in kubelab-lab kubelab-mgmt; do
    virsh -c qemu:///system net-destroy "$n" >/dev/null 2>&1 || true
    virsh -c qemu:///system net-undefine "$n" >/dev/null 2>&1 || true
  done
  ;;
esac

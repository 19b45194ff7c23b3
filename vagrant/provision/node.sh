#!/usr/bin/env bash
# Provision one kubelab VM: packages (already in an offline box), the project from wheels synced
# from the host, the iptables variant the proxy expects, PKI files, and the systemd units.
# Usage: node.sh NAME IP ROLE WORKERS [CONTROL_PLANES]   (ROLE = controlplane | worker | lb | etcd)
# With an HA control plane (CONTROL_PLANES 3 or 5) the control planes' and etcd members' units come
# rendered from the host (vagrant/.prep/NAME/units, lab/vagrantprep.py's ha_units); kl-lb runs
# Debian's haproxy unit with the host-rendered config (lab/hatopology.py's haproxy_config).
set -euo pipefail
name=$1 ip=$2 role=$3
src=/opt/kubelab/src
prep=$src/vagrant/.prep
venv=/opt/kubelab/venv
units_dir=$prep/$name/units

# 1. Packages. An offline box has them baked in; a public box with internet installs them here.
case $role in
lb) pkgs=(haproxy iproute2) ;;
etcd) pkgs=(etcd-server etcd-client iproute2) ;;
*) pkgs=(python3 python3-venv runc iptables busybox-static containernetworking-plugins skopeo umoci conntrack iproute2 kmod) ;;
esac
[ -f "$units_dir/kubelab-etcd.service" ] && pkgs+=(etcd-server etcd-client)   # a stacked member
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "kubelab: $name lacks ${missing[*]} and cannot install them (no route out?); an offline box built" \
      "before they were added lacks them: rebuild it with \`sudo vagrant/lab.sh down --all\` then \`vagrant up\`" >&2
    exit 1
  fi
fi
# Debian starts its own etcd (plain HTTP on localhost:2379) and haproxy on install: ours replace them.
systemctl disable --now etcd.service 2>/dev/null || true
[ "$role" = lb ] || systemctl disable --now haproxy.service 2>/dev/null || true

if [ "$role" = lb ]; then
  # The API endpoint: HAProxy on 192.168.56.10:6443 in front of every control plane's API server,
  # verifying their serving certificates with the cluster CA.
  install -m 0644 "$prep/$name/ca.crt" /etc/haproxy/kubelab-ca.crt
  install -m 0644 "$prep/$name/haproxy.cfg" /etc/haproxy/haproxy.cfg
  haproxy -c -q -f /etc/haproxy/haproxy.cfg
  systemctl enable haproxy.service
  systemctl restart haproxy.service
  echo "kubelab: $name ($role, $ip) provisioned: haproxy"
  exit 0
fi
if [ "$role" = etcd ]; then
  install -d -m 0700 /var/lib/kubelab /var/lib/kubelab/pki
  cp -a "$prep/$name/pki/." /var/lib/kubelab/pki/
  cp "$units_dir"/*.service /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable --now kubelab-etcd.service   # Type=simple: returns before its peers answer
  echo "kubelab: $name ($role, $ip) provisioned: kubelab-etcd"
  exit 0
fi

# 2. The project: its dependencies from the wheels the host repacked from its own venv, kubelab
#    itself from the rsynced source tree through a .pth file. Nothing touches the network. The
#    wheels are only unpacked (what pip would do for these: no scripts, no .data), not pip-installed:
#    under software emulation pip and its byte-compilation take minutes.
if [ ! -f $venv/.kubelab-wheels ] || ! cmp -s "$prep/wheels/.stamp" $venv/.kubelab-wheels; then
  rm -rf $venv
  python3 -m venv --without-pip $venv
  site=$($venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  $venv/bin/python -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
    "$site" "$prep"/wheels/*.whl
  cp "$prep/wheels/.stamp" $venv/.kubelab-wheels
fi
echo "$src" > "$($venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/kubelab-src.pth"
printf '#!/bin/sh\nexec %s/bin/python -m lab "$@"\n' $venv > /usr/local/bin/kubelab
chmod 755 /usr/local/bin/kubelab

# 3. kube-proxy's backend: nf_tables iptables, so `iptables -t nat -S` shows the proxy's rules.
#    Pods are routed through the node: forwarding and bridge netfilter on (inside this VM only).
update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null
modprobe br_netfilter 2>/dev/null || true
modprobe overlay 2>/dev/null || true
printf 'br_netfilter\noverlay\n' > /etc/modules-load.d/kubelab.conf
printf 'net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' > /etc/sysctl.d/60-kubelab.conf
sysctl -q -p /etc/sysctl.d/60-kubelab.conf || true

# 4. Credentials and configuration made on the host by `make vagrant-up` (lab/vagrantprep.py).
install -d -m 0755 /etc/kubelab /var/lib/kubelab
if [ "$role" = controlplane ]; then
  install -d -m 0700 /var/lib/kubelab/pki
  cp -a "$prep/$name/pki/." /var/lib/kubelab/pki/
  install -m 0600 "$prep/$name/dns.kubeconfig" /etc/kubelab/dns.kubeconfig
  # HA, kl-cp1: the metrics server's identity, made on the host (its certificate names this VM).
  [ ! -f "$prep/$name/metrics-server.kubeconfig" ] ||
    install -m 0600 "$prep/$name/metrics-server.kubeconfig" /var/lib/kubelab/metrics-server.kubeconfig
else
  cp -a "$prep/$name/." /etc/kubelab/
  chmod 600 /etc/kubelab/*.key
fi

# 5. systemd units: the same components as the one-machine lab, on the private-network NIC.
unit() { # name description command...
  local u=$1 desc=$2; shift 2
  cat > /etc/systemd/system/$u.service <<UNIT
[Unit]
Description=$desc
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$*
Restart=always
RestartSec=2
KillMode=process

[Install]
WantedBy=multi-user.target
UNIT
}
if [ "$role" = controlplane ] && [ -d "$units_dir" ]; then
  # HA: this control plane's units as the host rendered them (etcd member when stacked, the
  # control plane against every member over TLS, DNS; the metrics server on kl-cp1).
  cp "$units_dir"/*.service /etc/systemd/system/
  units=()
  for u in "$units_dir"/*.service; do units+=("$(basename "$u" .service)"); done
elif [ "$role" = controlplane ]; then
  unit kubelab-controlplane "kubelab control plane (API server, scheduler, controllers)" \
    /usr/local/bin/kubelab controlplane --data-dir /var/lib/kubelab --listen 0.0.0.0:6443 \
    --advertise-address "$ip" --store sqlite --cluster-cidr 10.244.0.0/16
  # Cluster DNS: kube-system/kube-dns (10.96.0.10, every pod's nameserver) pointing at this VM's
  # private address, with its own identity (system:kubelab-dns); it retries (Restart=always) until
  # the control plane answers.
  unit kubelab-dns "kubelab cluster DNS (kube-dns, cluster.local)" \
    /usr/local/bin/kubelab dns --kubeconfig /etc/kubelab/dns.kubeconfig --listen "$ip:53"
  # Resource metrics (kubectl top): scrapes every kubelet, registers the APIService v1beta1.metrics.k8s.io.
  unit kubelab-metrics-server "kubelab metrics server (metrics.k8s.io)" \
    /usr/local/bin/kubelab metrics-server --data-dir /var/lib/kubelab --apiserver-url "https://$ip:6443" \
    --bind-address "$ip" --register-apiservice "$ip"
  units=(kubelab-controlplane kubelab-dns kubelab-metrics-server)
else
  mkdir -p /var/lib/kubelab/cni-bin /etc/cni/net.d /var/lib/kubelab/noded/bin
  # noded's shim and pause, compiled on the host (the box has no compiler), with their stamps.
  cp -a "$prep/bin/." /var/lib/kubelab/noded/bin/
  for p in /usr/lib/cni/*; do ln -sf "$p" /var/lib/kubelab/cni-bin/; done
  # kubelab-bridge/-ipam as the fast launchers (the Python one here: the box has no compiler).
  $venv/bin/python -c 'import sys; from netplugin import install; install.install_plugins(sys.argv[1], native=False)' \
    /var/lib/kubelab/cni-bin
  unit kubelab-noded "kubelab node agent" \
    /usr/local/bin/kubelab noded --node-name "$name" --node-ip "$ip" --kubeconfig /etc/kubelab/kubeconfig \
    --root-dir /var/lib/kubelab/noded --cni-bin-dir /var/lib/kubelab/cni-bin --cni-conf-dir /etc/cni/net.d \
    --tls-cert-file /etc/kubelab/kubelet.crt --tls-private-key-file /etc/kubelab/kubelet.key \
    --client-ca-file /etc/kubelab/ca.crt --insecure-registry 192.168.56.1:5000
  # The proxy's /debug/rules (:10253) and the network agent's /debug/network (:9098) serve HTTPS with
  # the node's serving certificate and authenticate callers against the cluster CA (kubelab trace).
  debug_tls="--tls-cert-file /etc/kubelab/kubelet.crt --tls-private-key-file /etc/kubelab/kubelet.key --client-ca-file /etc/kubelab/ca.crt"
  unit kubelab-proxy "kubelab service proxy" \
    /usr/local/bin/kubelab proxy --node-name "$name" --node-ip "$ip" --kubeconfig /etc/kubelab/proxy.kubeconfig \
    --cluster-cidr 10.244.0.0/16 $debug_tls
  unit kubelab-netagent "kubelab node network agent (routes to other nodes' pods)" \
    /usr/local/bin/kubelab netagent --node-name "$name" --kubeconfig /etc/kubelab/netagent.kubeconfig $debug_tls
  # The node itself reaching a service VIP (`curl 10.96.x.y` on the VM): the route lookup happens
  # before the proxy's DNAT, and the guests have no default route, so the service network gets a
  # route on the private NIC (in this VM only; the DNAT then sends it to a pod).
  dev=$(ip -o -4 addr show | awk -v ip="$ip" 'index($4, ip "/") == 1 {print $2}')
  install -d /etc/systemd/system/kubelab-proxy.service.d
  printf '[Service]\nExecStartPre=-/sbin/ip route replace 10.96.0.0/12 dev %s src %s\n' "$dev" "$ip" \
    > /etc/systemd/system/kubelab-proxy.service.d/service-route.conf
  units=(kubelab-noded kubelab-proxy kubelab-netagent)
fi
systemctl daemon-reload
systemctl enable --now "${units[@]}"
echo "kubelab: $name ($role, $ip) provisioned: ${units[*]}"

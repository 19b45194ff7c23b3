#!/usr/bin/env bash
# `make test-clean-room`: the README's first command on a Debian 12 machine that has nothing.
#
# Role: prove on every CI run that a newcomer's `apt-get install -y git make` + `make demo` works on
# a minimal Debian 12 as root without sudo, that the VIP answers, and that `make test` passes there —
# so a program the code runs but `make deps` never installs (issue 18: `nft`) fails here, not for them.
#
# Phases (each timed, on the host unless said):
#   1. base     a pristine `debootstrap --variant=minbase bookworm` root, cached as a tarball under
#               /var/cache/kubelab (only the pristine base: nothing the project installs is cached).
#   2. root     the base unpacked into a fresh directory; the checkout's HEAD cloned into /root/kubelab.
#   3. network  a netns with one veth to the host on 169.254.77.0/30 and no default route; tinyproxy
#               on the host end, allowing only Debian's mirror and PyPI. apt and pip inside are
#               configured (apt.conf.d, /etc/pip.conf) to use it; nothing else reaches out. The
#               proxy is in the machine's config, not in http_proxy, because the lab's own clients
#               (urllib, kubectl, curl) talk to 10.96/12 and 192.168.56/24 and must not be proxied.
#   4. inside   new mount, PID, UTS, IPC and cgroup namespaces in that netns (unshare), a fresh
#               /proc, /sys, /dev, the host's cgroup layout re-mounted inside its own cgroup
#               subtree, /proc/sys read-only except /proc/sys/net, then pivot_root and, with an
#               empty environment, lab/cleanroom-inside.sh: apt-get install -y git make,
#               make demo (checked), make down, make test.
#   5. cleanup  (trap, also on failure or Ctrl-C) kill every process of the clean room (its PID
#               namespace and its cgroups), stop the proxy, delete the netns and veth, remove the
#               cgroups and the root. It then checks that nothing is left and says so. A run killed
#               with SIGKILL (no trap runs) leaves that work to the next run, which does it first.
#
# TLS: the host's network may inspect TLS with its own CA; the room's pip trusts the host's CA
# bundle (as the host's pip does) and nothing else of the host's configuration comes in.
#
# Invariants: nothing runs in the host's network namespace but tinyproxy (bound to the veth's host
# address); no route, rule, namespace, mount or process outlives the run. One clean room at a time
# (flock): the /30 and the names are fixed.
#
# Environment: KUBELAB_CLEANROOM_TESTS=all|tiers|none|tests/… (default all: `make test`; tiers: pytest of
# tests/e2e and tests/privileged only), KUBELAB_CLEANROOM_KEEP_LOGS=DIR (copy the inside logs
# there), KUBELAB_CLEANROOM_REFRESH_BASE=1 (rebuild the cached base), KUBELAB_CLEANROOM_DIR (parent
# of the temporary root, default /var/tmp).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
CACHE_DIR=/var/cache/kubelab
BASE_TAR=$CACHE_DIR/cleanroom-debian-$SUITE-minbase-$ARCH.tar
BASE_MAX_AGE_DAYS=30
NETNS=kubelab-cleanroom
HOST_IF=kl-cr-host
ROOM_IF=eth0
HOST_IP=169.254.77.1
ROOM_IP=169.254.77.2
PROXY_PORT=3128
CGROUP_NAME=kubelab-cleanroom
ALLOWED_HOSTS=(deb.debian.org security.debian.org pypi.org files.pythonhosted.org)

T0=$(date +%s)
# The host's cgroup mounts: "<mount point> <cgroup|cgroup2> <super options without rw>" (mountinfo
# has optional fields before the "-" separator, so find it).
cgroup_mounts() {
  awk '{ for (i = 7; $i != "-"; i++) {}; if ($(i+1) ~ /^cgroup2?$/) { o = $(i+3); sub(/^rw,?/, "", o); print $5, $(i+1), o } }' /proc/self/mountinfo
}
say() { printf '[clean-room %5ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

# --- stage 2: runs as PID 1 of the new PID namespace, still seeing the host's files -------------
stage2() {
  local R=$1
  mount --make-rprivate /
  mount --bind "$R" "$R"
  mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
  # /proc/sys: read-only (kernel.*, vm.* are the host's), but the namespace's own net.* writable.
  mount --bind "$R/proc/sys" "$R/proc/sys"
  mount --bind "$R/proc/sys/net" "$R/proc/sys/net"
  mount -o remount,bind,ro "$R/proc/sys"
  mount -t sysfs -o nosuid,nodev,noexec sysfs "$R/sys"
  # The host's cgroup layout (v1 controllers + unified, or pure v2), each rooted at our subtree by
  # the cgroup namespace: runc inside creates its cgroups under /sys/fs/cgroup/<ctrl>/kubelab/…
  mount -t tmpfs -o nosuid,nodev,noexec,mode=755 tmpfs "$R/sys/fs/cgroup"
  while read -r mnt fstype opts; do
    if [ "$mnt" = /sys/fs/cgroup ] && [ "$fstype" = cgroup2 ]; then
      umount "$R/sys/fs/cgroup"; mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
      # cgroup v2 has no processes in inner nodes that enable controllers: the room's init goes
      # to a leaf, so runc can enable controllers at the room's root. (This CI host is hybrid v1.)
      mkdir -p "$R/sys/fs/cgroup/init"; echo $$ >"$R/sys/fs/cgroup/init/cgroup.procs"
      break
    fi
    mkdir -p "$R$mnt"
    if [ "$fstype" = cgroup2 ]; then mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R$mnt"
    else mount -t cgroup -o "nosuid,nodev,noexec,$opts" cgroup "$R$mnt"; fi
  done < <(cgroup_mounts)
  # The tmpfs that holds the v1 mount points (not a unified cgroup2 there) is read-only, as on hosts.
  if [ "$(stat -f -c %T "$R/sys/fs/cgroup")" = tmpfs ]; then mount -o remount,bind,ro "$R/sys/fs/cgroup"; fi
  # /dev: the usual nodes only (bind-mounted from the host), its own devpts, shm and mqueue.
  mount -t tmpfs -o nosuid,mode=755,size=64m tmpfs "$R/dev"
  for n in null zero full random urandom tty; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
  if [ -e /dev/net/tun ]; then mkdir -p "$R/dev/net"; touch "$R/dev/net/tun"; mount --bind /dev/net/tun "$R/dev/net/tun"; fi
  mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$R/dev/pts"
  ln -s pts/ptmx "$R/dev/ptmx"
  mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$R/dev/shm"
  mount -t mqueue -o nosuid,nodev,noexec mqueue "$R/dev/mqueue"
  ln -s /proc/self/fd "$R/dev/fd"
  ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
  mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs "$R/run"
  # Kernels with modular netfilter/bridge/overlay: the host's modules, read-only.
  if [ -d "/lib/modules/$(uname -r)" ]; then
    mkdir -p "$R/lib/modules/$(uname -r)"
    mount --bind -o ro "/lib/modules/$(uname -r)" "$R/lib/modules/$(uname -r)"
  fi
  hostname kubelab-cleanroom
  cd "$R"
  mkdir -p .oldroot
  pivot_root . .oldroot
  cd /
  umount -l /.oldroot
  rmdir /.oldroot
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM=dumb KUBELAB_CLEANROOM_TESTS="${KUBELAB_CLEANROOM_TESTS:-all}" \
    /bin/bash /cleanroom/inside.sh
}

# --- stage 1: on the host ------------------------------------------------------------------

# Our cgroup in every hierarchy, under the current one (the host's limits still apply): <base>/room
# holds the room (its cgroup namespace is rooted there, so all runc makes inside is under it) and
# <base>/proxy the proxy. Killing every pid under <base> is how cleanup knows nothing is left.
cgroup_bases() {
  local mnt fstype opts key cur
  while read -r mnt fstype opts; do
    if [ "$fstype" = cgroup2 ]; then key=""; else key=$opts; fi
    cur=$(awk -F: -v k="$key" '$2 == k { print $3 }' /proc/self/cgroup | head -n 1)
    echo "$mnt${cur%/}/$CGROUP_NAME"
  done < <(cgroup_mounts)
}

make_cgroups() {
  local d sub
  for d in "${CGROUP_DIRS[@]}"; do
    for sub in "" /room /proxy; do
      mkdir -p "$d$sub"
      if [ -f "$d$sub/cpuset.cpus" ] && [ -z "$(cat "$d$sub/cpuset.cpus")" ]; then
        cat "$(dirname "$d$sub")/cpuset.cpus" >"$d$sub/cpuset.cpus"
        cat "$(dirname "$d$sub")/cpuset.mems" >"$d$sub/cpuset.mems"
      fi
    done
  done
}

join_cgroup() {
  local d
  for d in "${CGROUP_DIRS[@]}"; do echo "$BASHPID" >"$d/$1/cgroup.procs"; done
}

room_pids() {
  local d
  for d in "${CGROUP_DIRS[@]}"; do
    [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# Kill every process in our cgroups, polling until none is left (60 s at most).
kill_room() {
  local deadline pids pid
  deadline=$(( $(date +%s) + 60 ))
  while :; do
    pids=$(room_pids)
    [ -z "$pids" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then say "WARNING: processes left: $pids"; return 1; fi
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.2
  done
}

remove_host_state() {
  local d
  ip link del "$HOST_IF" 2>/dev/null
  ip netns del "$NETNS" 2>/dev/null
  for d in "${CGROUP_DIRS[@]}"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# A run killed with SIGKILL cannot clean up: the next one (holding the lock, so none is running)
# removes what it left — processes in our cgroups, the netns and veth, the cgroups, old roots.
reap_stale() {
  local d found=
  ip netns list 2>/dev/null | grep -q "^$NETNS\b" && found=1
  ip link show "$HOST_IF" >/dev/null 2>&1 && found=1
  for d in "${CGROUP_DIRS[@]}"; do [ -d "$d" ] && found=1; done
  for d in "$PARENT"/kubelab-cleanroom.*; do [ -d "$d" ] && found=1; done
  [ -z "$found" ] && return 0
  say "removing what an earlier, killed run left"
  kill_room
  remove_host_state
  for d in "$PARENT"/kubelab-cleanroom.*; do
    [ -d "$d" ] && ! grep -qF " $d" /proc/self/mountinfo && rm -rf --one-file-system "$d"
  done
  return 0
}
phase() {
  PHASE=$1; PHASE_LOG=${2:-}; PHASE_T=$(date +%s)
  say "▶ $PHASE"
}
phase_done() { say "✓ $PHASE in $(( $(date +%s) - PHASE_T ))s"; PHASE_LOG=; }

tail_log() {
  local f=$1
  [ -n "$f" ] && [ -s "$f" ] || return 0
  # pytest's short summary cuts each reason to the terminal's width: its failure headers and E lines
  # (the assertion and its values) first, so a CI log names what went wrong.
  if grep -q '= FAILURES =' "$f"; then
    echo "----- the failures in $f (headers and E lines) -----" >&2
    grep -E '^([0-9]+ )?(_{3,} .* _{3,}|E  )' "$f" | head -n 80 >&2
  fi
  echo "----- last 60 lines of $f -----" >&2
  tail -n 60 "$f" >&2
  echo "-----" >&2
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if [ "$rc" != 0 ]; then
    case $rc in
      130|143) say "INTERRUPTED in phase '$PHASE' (exit $rc)" >&2 ;;
      *) say "FAILED in phase '$PHASE' (exit $rc)" >&2 ;;
    esac
    tail_log "$PHASE_LOG"
  fi
  say "cleanup: processes, proxy, network, cgroups, root"
  [ -n "$ROOM_PID" ] && kill -KILL "$ROOM_PID" 2>/dev/null
  # PID 1 of the room dies with unshare (--kill-child), and the kernel kills its whole namespace;
  # anything left in our cgroups (the proxy too) is killed by pid until none is left.
  # (stderr: bash's "Killed" notices of our own background jobs are noise here)
  {
    kill_room
    [ -n "$ROOM_PID" ] && wait "$ROOM_PID"
    [ -n "$PROXY_PID" ] && wait "$PROXY_PID"
  } 2>/dev/null
  remove_host_state
  local d
  if [ -d "$ROOT/cleanroom/logs" ] && [ -n "${KUBELAB_CLEANROOM_KEEP_LOGS:-}" ]; then
    mkdir -p "$KUBELAB_CLEANROOM_KEEP_LOGS" && cp -a "$ROOT/cleanroom/logs/." "$KUBELAB_CLEANROOM_KEEP_LOGS/"
    say "logs kept in $KUBELAB_CLEANROOM_KEEP_LOGS"
  fi
  # Mounts were made in the room's private mount namespace; refuse to delete through one anyway.
  if [ -n "$WORK" ] && grep -qF " $WORK/" /proc/self/mountinfo; then
    say "WARNING: mounts under $WORK on the host; unmounting" >&2
    grep -F " $WORK/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  fi
  rm -rf --one-file-system "$WORK"
  # Say what is left, if anything: the lead's "leaves nothing on the host".
  local left=()
  ip netns list 2>/dev/null | grep -q "^$NETNS\b" && left+=("netns $NETNS")
  ip link show "$HOST_IF" >/dev/null 2>&1 && left+=("link $HOST_IF")
  ip route show 2>/dev/null | grep -q "169.254.77.0/30" && left+=("route 169.254.77.0/30")
  for d in "${CGROUP_DIRS[@]}"; do [ -d "$d" ] && left+=("cgroup $d"); done
  [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null && left+=("proxy pid $PROXY_PID")
  [ -e "$WORK" ] && left+=("dir $WORK")
  if [ ${#left[@]} -gt 0 ]; then
    say "WARNING: left on the host: ${left[*]}" >&2
    [ "$rc" = 0 ] && rc=1
  else
    say "cleanup: nothing left on the host"
  fi
  say "total $(( $(date +%s) - T0 ))s — $([ "$rc" = 0 ] && echo PASSED || echo FAILED)"
  exit "$rc"
}

# --- 1. the pristine base --------------------------------------------------------------------
base_phase() {
  phase "base: debootstrap --variant=minbase $SUITE (cache $BASE_TAR)" "$WORK/debootstrap.log"
  if [ -f "$BASE_TAR" ] && [ "${KUBELAB_CLEANROOM_REFRESH_BASE:-0}" != 1 ] \
     && [ -n "$(find "$BASE_TAR" -mtime -"$BASE_MAX_AGE_DAYS")" ]; then
    say "  cached base from $(date -r "$BASE_TAR" +%F)"
  else
    mkdir -p "$CACHE_DIR" "$WORK/base"
    debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$WORK/base" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || die "debootstrap failed"
    tar --numeric-owner -C "$WORK/base" -cpf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf --one-file-system "$WORK/base"
    say "  base cached: $(du -h "$BASE_TAR" | cut -f1)"
  fi
  phase_done
}

# --- 2. the root and the checkout ------------------------------------------------------------
root_phase() {
  phase "root: unpack the base, clone the checkout's HEAD ($(git -C "$REPO" rev-parse --short HEAD))"
  mkdir -p "$ROOT"
  tar --numeric-owner -C "$ROOT" -xpf "$BASE_TAR"
  git clone -q --no-hardlinks "$REPO" "$ROOT/root/kubelab"
  git -C "$ROOT/root/kubelab" checkout -q --detach "$(git -C "$REPO" rev-parse HEAD)"
  git -C "$ROOT/root/kubelab" remote remove origin
  if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]; then
    say "  note: uncommitted changes in $REPO are not in the clean room (it tests HEAD)"
  fi
  mkdir -p "$ROOT/cleanroom/logs"
  cp "$REPO/lab/cleanroom-inside.sh" "$ROOT/cleanroom/inside.sh"
  cp "$REPO/lab/cleanroom_check_demo.py" "$ROOT/cleanroom/check_demo.py"
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  cat >"$ROOT/etc/apt/apt.conf.d/00kubelab-cleanroom-proxy" <<EOF
// The clean room reaches only Debian's mirror and PyPI, through the host's proxy.
Acquire::http::Proxy "http://$HOST_IP:$PROXY_PORT";
Acquire::https::Proxy "http://$HOST_IP:$PROXY_PORT";
EOF
  cat >"$ROOT/etc/pip.conf" <<EOF
# The clean room reaches only Debian's mirror and PyPI, through the host's proxy.
[global]
proxy = http://$HOST_IP:$PROXY_PORT
EOF
  # The host's network may inspect TLS with its own CA (then the host's bundle has it, and the
  # host's pip is told to use that bundle): the room's pip trusts what the host trusts; nothing else
  # of the host's pip configuration (PIP_* variables, find-links) comes in.
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$ROOT/etc/ssl"
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/kubelab-cleanroom-host-ca.crt"
    echo "cert = /etc/ssl/kubelab-cleanroom-host-ca.crt" >>"$ROOT/etc/pip.conf"
  fi
  echo kubelab-cleanroom >"$ROOT/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tkubelab-cleanroom\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
  : >"$ROOT/etc/resolv.conf"
  phase_done
}

# --- 3. network: a netns with a veth to the host, and the proxy -------------------------------
network_phase() {
  phase "network: netns $NETNS, veth $HOST_IF $HOST_IP/30 ↔ $ROOM_IF $ROOM_IP/30, tinyproxy" "$WORK/tinyproxy.log"
  ip netns add "$NETNS"
  ip link add "$HOST_IF" type veth peer name "$ROOM_IF" netns "$NETNS"
  ip addr add "$HOST_IP/30" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr add "$ROOM_IP/30" dev "$ROOM_IF"
  ip -n "$NETNS" link set "$ROOM_IF" up
  {
    for h in "${ALLOWED_HOSTS[@]}"; do printf '^%s$\n' "${h//./\\.}"; done
  } >"$WORK/tinyproxy.filter"
  touch "$WORK/tinyproxy.log"; chown nobody "$WORK/tinyproxy.log"; chmod 755 "$WORK"
  cat >"$WORK/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $PROXY_PORT
Listen $HOST_IP
Timeout 600
LogFile "$WORK/tinyproxy.log"
LogLevel Connect
MaxClients 64
Allow $ROOM_IP
ViaProxyName "kubelab-cleanroom"
Filter "$WORK/tinyproxy.filter"
FilterType ere
FilterURLs Off
FilterDefaultDeny Yes
ConnectPort 443
EOF
  ( join_cgroup proxy; exec tinyproxy -d -c "$WORK/tinyproxy.conf" ) >>"$WORK/tinyproxy.log" 2>&1 9>&- &
  PROXY_PID=$!
  deadline=$(( $(date +%s) + 20 ))
  until ip netns exec "$NETNS" bash -c "exec 3<>/dev/tcp/$HOST_IP/$PROXY_PORT" 2>/dev/null; do
    kill -0 "$PROXY_PID" 2>/dev/null || die "tinyproxy exited"
    [ "$(date +%s)" -lt "$deadline" ] || die "tinyproxy not listening on $HOST_IP:$PROXY_PORT"
    sleep 0.2
  done
  [ -z "$(ip -n "$NETNS" route show default)" ] || die "the clean room has a default route"
  phase_done
}

# --- 4. inside: namespaces, pivot_root, the README's commands ---------------------------------
inside_phase() {
  phase "inside: unshare mount/pid/uts/ipc/cgroup in $NETNS, pivot_root, the README's commands"
  (
    join_cgroup room
    exec nsenter --net="/run/netns/$NETNS" \
      unshare --mount --pid --uts --ipc --cgroup --fork --kill-child --propagation private \
      env KUBELAB_CLEANROOM_TESTS="${KUBELAB_CLEANROOM_TESTS:-all}" bash "$REPO/lab/cleanroom.sh" __stage2 "$ROOT"
  ) </dev/null 9>&- &
  ROOM_PID=$!
  set +e
  wait "$ROOM_PID"
  room_rc=$?
  set -e
  ROOM_PID=
  if [ "$room_rc" != 0 ]; then
    failed=$(cat "$ROOT/cleanroom/logs/FAILED" 2>/dev/null || true)
    [ -n "$failed" ] && PHASE="inside: $failed" && PHASE_LOG="$ROOT/cleanroom/logs/$failed.log"
    exit "$room_rc"
  fi
  phase_done
  if [ -f "$ROOT/cleanroom/logs/timings" ]; then
    say "timings inside: $(tr '\n' ' ' <"$ROOT/cleanroom/logs/timings")"
  fi
}

main() {
  [ "$(id -u)" = 0 ] || die "run as root (it builds a root file system and namespaces)"
  for tool in debootstrap tinyproxy unshare nsenter pivot_root ip git tar flock; do
    command -v "$tool" >/dev/null || die "'$tool' not found: run 'KUBELAB_CLEANROOM=1 ./lab/deps.sh' first"
  done

  exec 9>/run/lock/kubelab-cleanroom.lock
  flock -n 9 || die "another clean room is running (/run/lock/kubelab-cleanroom.lock)"

  PARENT=${KUBELAB_CLEANROOM_DIR:-/var/tmp}
  CGROUP_DIRS=()
  while read -r d; do CGROUP_DIRS+=("$d"); done < <(cgroup_bases)
  reap_stale
  WORK=$(mktemp -d "$PARENT/kubelab-cleanroom.XXXXXX")
  ROOT=$WORK/root
  ROOM_PID=
  PROXY_PID=
  PHASE=setup
  PHASE_LOG=

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  make_cgroups
  base_phase
  root_phase
  network_phase
  inside_phase
}

# Bash reads a script as it runs it; all of it is in functions, so editing this file during a run is safe.
if [ "${1:-}" = __stage2 ]; then stage2 "$2"; else main "$@"; fi; exit

#!/bin/bash
# Inside the clean room (lab/cleanroom.sh copies this to /cleanroom/inside.sh and runs it after
# pivot_root, as root, with an empty environment, no sudo, no default route, apt and pip reaching
# only Debian's mirror and PyPI through the host's proxy).
#
# Runs the README's first command as a newcomer would — `apt-get install -y git make`, then
# `make demo` in the checkout — checks what the demo showed (the VIP answered from this root
# namespace and from a pod on the other node), `make down`, a probe of the kernel features the lab
# needs, then `make test` (KUBELAB_CLEANROOM_TESTS=all, default) or only the e2e and privileged
# tiers (=tiers) or nothing (=none). Each phase logs to /cleanroom/logs/<phase>.log and its
# duration to /cleanroom/logs/timings; a failing phase's name goes to /cleanroom/logs/FAILED so
# the host can print that log's tail.
set -uo pipefail

LOGS=/cleanroom/logs
CHECKOUT=/root/kubelab
T0=$(date +%s)
mkdir -p "$LOGS"

say() { printf '[clean-room inside %5ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# run_phase NAME TIMEOUT_S CMD…: CMD's output to NAME.log (each line time-stamped), a heartbeat
# every 2 minutes with the log's last line, the duration to timings; on failure NAME to FAILED.
run_phase() {
  local name=$1 limit=$2; shift 2
  local log=$LOGS/$name.log start rc beat
  start=$(date +%s)
  say "▶ $name: $*"
  # A shell function of this script runs in a child bash (timeout runs programs only).
  if declare -F "$1" >/dev/null; then export -f "$1"; set -- bash -c "$*"; fi
  (
    while sleep 120; do
      say "  … $name running for $(( $(date +%s) - start ))s: $(tail -n 1 "$log" 2>/dev/null | cut -c1-150)"
    done
  ) &
  beat=$!
  timeout --kill-after=30 "$limit" "$@" </dev/null 2>&1 \
    | while IFS= read -r line; do printf '%(%s)T %s\n' -1 "$line"; done >"$log"
  rc=${PIPESTATUS[0]}
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null
  echo "$name=$(( $(date +%s) - start ))s" >>"$LOGS/timings"
  if [ "$rc" != 0 ]; then
    [ "$rc" = 124 ] && say "✗ $name timed out after ${limit}s" || say "✗ $name failed (exit $rc)"
    echo "$name" >"$LOGS/FAILED"
    exit 1
  fi
  say "✓ $name in $(( $(date +%s) - start ))s"
}

preflight() {
  if command -v sudo; then echo "sudo is on PATH: the clean room must not have it"; return 1; fi
  if awk 'NR > 1 && $2 == "00000000" { found = 1 } END { exit !found }' /proc/net/route; then
    echo "the clean room has a default route"; return 1
  fi
  echo "no sudo, no default route; hostname $(cat /proc/sys/kernel/hostname); PID $$"
  echo "env: $(env | cut -d= -f1 | sort | tr '\n' ' ')"
}

# The kernel features the lab uses, nested in this room: a netns, a veth into it, a bridge,
# iptables nf_tables and legacy (filter and nat), conntrack's proc entry. Left as it was found.
probe() {
  local ns=cr-probe rc=0
  ip netns add "$ns" || return 1
  {
    ip link add cr-probe0 type veth peer name eth0 netns "$ns" &&
    ip link add cr-probe-br type bridge && ip link set cr-probe0 master cr-probe-br &&
    ip link set cr-probe-br up && ip link set cr-probe0 up && ip -n "$ns" link set eth0 up &&
    ip netns exec "$ns" iptables-nft -t nat -N CR-PROBE && ip netns exec "$ns" iptables-nft -t nat -S CR-PROBE &&
    ip netns exec "$ns" iptables-legacy -t nat -N CR-PROBE && ip netns exec "$ns" iptables-legacy -t filter -S &&
    nft list tables && runc --version && echo "probe: netns, veth, bridge, iptables-nft, iptables-legacy, nft, runc OK"
  } || rc=1
  ip link del cr-probe-br 2>/dev/null; ip link del cr-probe0 2>/dev/null
  ip netns del "$ns"
  return "$rc"
}

demo_timings() {
  # make demo = deps (apt packages, then .venv) + lab up + lab demo; split it by time stamps.
  local log=$LOGS/make-demo.log first up apt_end
  first=$(head -n 1 "$log" | cut -d' ' -f1)
  up=$(grep -m1 -- '-m lab up' "$log" | cut -d' ' -f1)
  apt_end=$(grep '^End-Date:' /var/log/apt/history.log 2>/dev/null | tail -n 1 | cut -d' ' -f2-)
  apt_end=$(date -d "$apt_end" +%s 2>/dev/null || echo "")
  if [ -n "$first" ] && [ -n "$up" ] && [ -n "$apt_end" ] && [ "$apt_end" -ge "$first" ]; then
    echo "make-demo.apt-packages=$(( apt_end - first ))s" >>"$LOGS/timings"
    echo "make-demo.venv=$(( up - apt_end ))s" >>"$LOGS/timings"
  fi
  [ -n "$up" ] && echo "make-demo.up-and-demo=$(( $(tail -n 1 "$log" | cut -d' ' -f1) - up ))s" >>"$LOGS/timings"
  return 0
}

# The split of make demo is worth having when it failed too.
trap '[ -s "$LOGS/make-demo.log" ] && ! grep -q "^make-demo\.apt" "$LOGS/timings" && demo_timings' EXIT

cd /root
run_phase preflight 60 preflight
# The README's first command on a fresh Debian 12, as root (lists first: debootstrap leaves none).
run_phase apt-git-make 900 bash -c 'apt-get update && apt-get install -y git make'
cd "$CHECKOUT"
run_phase make-demo 2400 make demo
run_phase check-demo 60 python3 /cleanroom/check_demo.py "$LOGS/make-demo.log"
cut -d' ' -f2- "$LOGS/check-demo.log" | sed 's/^/    /'
run_phase make-down 300 make down
run_phase probe 120 probe
case "${KUBELAB_CLEANROOM_TESTS:-all}" in
  all) run_phase make-test 3600 make test ;;
  tiers) run_phase make-test 3600 .venv/bin/pytest tests/e2e tests/privileged ;;
  none) say "make test skipped (KUBELAB_CLEANROOM_TESTS=none)" ;;
  tests/*) read -ra chosen <<<"$KUBELAB_CLEANROOM_TESTS"  # a few test paths, to chase one failure
    run_phase make-test 3600 .venv/bin/pytest "${chosen[@]}" ;;
  *) say "unknown KUBELAB_CLEANROOM_TESTS=${KUBELAB_CLEANROOM_TESTS}"; exit 2 ;;
esac
if [ -f "$LOGS/make-test.log" ]; then
  say "make test: $(grep -E '(passed|failed|error)' "$LOGS/make-test.log" | tail -n 1 | cut -d' ' -f2-)"
fi
run_phase final-down 300 make down
say "all phases passed"

"""Check what ``make demo`` showed in the clean room (lab/cleanroom.sh): the VIP really answered.

``kubelab demo`` exits 0 even when every request failed (it prints ``error: …`` as the answer), so
the clean room reads its output: the ``curl`` loop from the root namespace must have 10 answers,
all ``Hello from <pod> on <node>``; the ``kubectl exec <pod> -- wget`` of the VIP from a pod must
answer too, and that pod must be on the other node than the one the root namespace reaches the
VIPs through (``kubelab up``'s "10.96.0.0/12 via <node>"); the hello pods must be spread over at
least two nodes; every NodePort must answer.

Input: the demo's log, one line per output line, optionally prefixed with a Unix time stamp (the
clean room's logs are). Pure, stdlib only: it runs with the room's python3 before the .venv is
trusted. Exit 0 when all hold, 1 naming each failed check.
"""

from __future__ import annotations

import re
import sys

STAMP = re.compile(r"^\d{9,11} ")
# `kubelab up`'s last step: "✓ 10.244.N.0/24 via each worker; 10.96.0.0/12 via kl-node1".
VIP_ROUTE = re.compile(r"10\.96\.0\.0/12 via (\S+)")
HELLO = re.compile(r"^Hello from (\S+) on (\S+)$")


def blocks(lines: list[str]) -> dict[str, list[str]]:
    """Split the demo's output into ``$ command`` → the lines it printed (up to a blank line)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith("$ "):
            current = out.setdefault(line[2:].strip(), [])
        elif not line.strip():
            current = None
        elif current is not None:
            current.append(line.strip())
    return out


def check(lines: list[str]) -> list[str]:
    """Return the failed checks (empty: the demo showed the VIP at work)."""
    problems: list[str] = []
    text = [STAMP.sub("", ln.rstrip("\n")) for ln in lines]
    cmds = blocks(text)
    # The root namespace reaches the VIPs through this node; "a pod on the other node" is elsewhere.
    host_via = next((m.group(1) for ln in text if (m := VIP_ROUTE.search(ln))), None)

    pods = next((v for k, v in cmds.items() if k.startswith("kubectl get pods -o wide")), None)
    pod_node: dict[str, str] = {}
    for row in (pods or [])[1:]:
        cols = row.split()
        if len(cols) >= 7:
            pod_node[cols[0]] = cols[6]
    nodes = set(pod_node.values())
    print(f"hello pods: {len(pod_node)} on {', '.join(sorted(nodes)) or 'no node'}")
    if len(nodes) < 2:
        problems.append(f"the hello pods are not spread over two nodes: {pod_node}")

    loop = next((v for k, v in cmds.items() if k.startswith("for i in $(seq")), None)
    if loop is None:
        problems.append("no curl loop of the VIP from the root namespace in the output")
    else:
        total = 0
        answered: set[str] = set()
        for row in loop:
            count, _, answer = row.partition(" ")
            m = HELLO.match(answer.strip())
            if not count.isdigit() or not m:
                problems.append(f"VIP from the root namespace: {row!r}")
                continue
            total += int(count)
            answered.add(m.group(2))
        print(f"VIP from the root namespace: {total} answers from {', '.join(sorted(answered))}")
        if total != 10:
            problems.append(f"VIP from the root namespace: {total} of 10 requests answered")

    execs = {k: v for k, v in cmds.items() if k.startswith("kubectl exec ")}
    if not execs:
        problems.append("no request to the VIP from a pod (kubectl exec … wget) in the output")
    for cmd, out in execs.items():
        client = cmd.split()[2]
        m = HELLO.match(out[0]) if out else None
        if not m:
            problems.append(f"VIP from pod {client}: {out!r}")
        else:
            print(f"VIP from pod {client} on {pod_node.get(client, '?')}: answered by {m.group(1)} on {m.group(2)}")
        if host_via and pod_node.get(client) == host_via:
            problems.append(f"VIP from a pod: {client} is on {host_via}, the node the root namespace goes through")

    ports = {k: v for k, v in cmds.items() if k.startswith("curl http://") and ":30080" in k}
    if not ports:
        problems.append("no NodePort request in the output")
    for cmd, out in ports.items():
        if not out or not HELLO.match(out[0]):
            problems.append(f"{cmd}: {out!r}")
    return problems


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8", errors="replace") as f:
        problems = check(f.readlines())
    for p in problems:
        print(f"FAILED: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The network agent's debug endpoint: a node's network as ``kubelab trace`` needs it, as JSON.

Served by ``kubelab netagent`` on ``--debug-bind-address`` (0.0.0.0:9098, beside its health port
9099; HTTPS on the node's address) behind ``controlplane.client.delegated`` (a client certificate
from the cluster CA or a bearer token, then a SubjectAccessReview for ``get`` on the path):

- ``GET /debug/network``::

    {"node": "kl-node1", "podCIDRs": ["10.244.1.0/24"],
     "addresses": {"eth0": "192.168.56.11", "cni0": "10.244.1.1"},     # ip -4 addr (first per link)
     "routes": [...],                                                  # ip -j route show (main table)
     "bridges": [{"ifname": "cni0", "address": MAC, "operstate": ...}],
     "pods": [{"netns": NAME, "veth": "veth1a2b3c4d", "vethMAC": MAC,  # the host side on the bridge
               "ifname": "eth0", "ip": "10.244.1.5", "mac": MAC}],     # the pod side
     "iptables": {"command": "iptables-save", "text": ...},            # the node's tables, the kernel's view
     "policyChains": {"KUBELAB-FIREWALL": [rules...], ...}}            # the NetworkPolicy chains it programs

  A pod is found from its host veth: a veth enslaved to a bridge whose peer lives in a named network
  namespace (``link_netnsid`` matched against ``ip netns list``), then the peer's address and MAC
  read there (``ip -n NAME addr``). The names are noded's readable pod netns names.
  ``iptables`` is the variant that holds kube-proxy's chains (``iptables-save``, else
  ``iptables-legacy-save``): the whole nat and filter tables a packet walks — kube-proxy's, the
  CNI plugin's masquerade and this agent's policy chains together, as the kernel has them.
- ``GET /debug/network/route?to=IP[&from=IP][&iif=DEV]``: the kernel's answer to
  ``ip -j route get TO [from FROM iif DEV]`` on this node: ``{"query": "ip route get …",
  "routes": [...]}`` or ``{"query", "error"}``. Arguments are checked (IPv4 addresses, an interface
  name) before anything runs; a bad one is a 400.

Read-only: every command lists or looks up, none changes the node. Commands run through ``run``
(the agent's network namespace, or ``nsenter --net=NETNS`` with ``--netns``), so tests use a fake.
Concurrency: called on the HTTP server's threads; no shared state besides the agent's caches.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from controlplane.api import errors
from netplugin.policy.plan import is_owned_chain

#: ``run(argv)`` → (exit code, stdout, stderr).
Runner = Callable[[Sequence[str]], tuple[int, str, str]]
Obj = dict[str, Any]

IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


def subprocess_runner(netns: str | None = None, timeout: float = 10.0) -> Runner:
    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        full = ["nsenter", f"--net={netns}", "--", *argv] if netns else list(argv)
        try:
            res = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, "", str(exc)
        return res.returncode, res.stdout, res.stderr

    return run


def _json(text: str) -> list[Obj]:
    try:
        out = json.loads(text or "[]")
    except ValueError:
        return []
    return out if isinstance(out, list) else []


def first_ipv4(links: list[Obj]) -> dict[str, str]:
    out: dict[str, str] = {}
    for link in links:
        for a in link.get("addr_info", []):
            if a.get("family", "inet") == "inet" and a.get("local"):
                out.setdefault(str(link.get("ifname")), str(a["local"]))
    return out


def pods_from_links(links: list[Obj], netns_ids: list[Obj], peer_addrs: Callable[[str], list[Obj]]) -> list[Obj]:
    """Each veth on a bridge whose peer is in a named netns → the pod's side of it (pure but for ``peer_addrs``)."""
    bridges = {str(lk["ifname"]) for lk in links if (lk.get("linkinfo") or {}).get("info_kind") == "bridge"}
    names = {n["id"]: str(n["name"]) for n in netns_ids if "id" in n}
    out: list[Obj] = []
    for lk in links:
        if "link_netnsid" not in lk or lk.get("link_netnsid") not in names:
            continue
        if bridges and lk.get("master") not in bridges:
            continue
        netns = names[lk["link_netnsid"]]
        pod = {"netns": netns, "veth": lk.get("ifname", ""), "vethMAC": lk.get("address", "")}
        pod["bridge"] = lk.get("master", "")
        peer = next((p for p in peer_addrs(netns) if p.get("ifindex") == lk.get("link_index")), None)
        if peer is not None:
            pod["ifname"] = peer.get("ifname", "")
            pod["mac"] = peer.get("address", "")
            pod["ip"] = first_ipv4([peer]).get(str(peer.get("ifname")), "")
        out.append(pod)
    out.sort(key=lambda p: p["netns"])
    return out


def policy_chains(save: str) -> dict[str, list[str]]:
    """The agent's NetworkPolicy chains in an ``iptables-save`` text: chain → its rules."""
    out: dict[str, list[str]] = {}
    for line in save.splitlines():
        if line.startswith(":") and is_owned_chain(line[1:].split(" ", 1)[0]):
            out.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("-A "):
            chain = line.split(" ", 2)[1]
            if is_owned_chain(chain):
                out.setdefault(chain, []).append(line)
    return out


def route_args(query: dict[str, list[str]]) -> list[str]:
    """``to``, ``from``, ``iif`` → ``ip route get`` arguments; ``errors.BadRequest`` for a bad one."""

    def one(key: str) -> str:
        return (query.get(key) or [""])[0]

    args: list[str] = []
    for key in ("to", "from"):
        value = one(key)
        if not value:
            if key == "to":
                raise errors.BadRequest("to: required (an IPv4 address)")
            continue
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise errors.BadRequest(f"{key}: {value!r} is not an IPv4 address") from None
        args += [value] if key == "to" else ["from", value]
    iif = one("iif")
    if iif:
        if not IFNAME.match(iif):
            raise errors.BadRequest(f"iif: {iif!r} is not an interface name")
        args += ["iif", iif]
    return args


class NodeNetwork:
    """What ``/debug/network`` reports, read from the node with ``run`` when asked."""

    def __init__(self, node_name: str, pod_cidrs: Callable[[], list[str]], run: Runner) -> None:
        self.node_name = node_name
        self.pod_cidrs = pod_cidrs
        self.run = run

    def _out(self, *argv: str) -> str:
        code, out, err = self.run(argv)
        if code != 0:
            raise errors.ApiError(f"`{' '.join(argv)}` failed: {err.strip() or code}")
        return out

    def iptables(self) -> Obj:
        text = self._out("iptables-save")
        command = "iptables-save"
        if "KUBE-SERVICES" not in text:  # the proxy may have used the other variant
            code, legacy, _ = self.run(["iptables-legacy-save"])
            if code == 0 and "KUBE-SERVICES" in legacy:
                text, command = legacy, "iptables-legacy-save"
        return {"command": command, "text": text}

    def state(self) -> Obj:
        links = _json(self._out("ip", "-d", "-j", "link", "show"))
        tables = self.iptables()

        def peer_addrs(netns: str) -> list[Obj]:
            code, out, _ = self.run(["ip", "-n", netns, "-j", "addr", "show"])
            return _json(out) if code == 0 else []

        return {
            "node": self.node_name,
            "podCIDRs": self.pod_cidrs(),
            "addresses": first_ipv4(_json(self._out("ip", "-j", "-4", "addr", "show"))),
            "routes": _json(self._out("ip", "-j", "route", "show")),
            "bridges": [
                {"ifname": lk.get("ifname"), "address": lk.get("address"), "operstate": lk.get("operstate")}
                for lk in links
                if (lk.get("linkinfo") or {}).get("info_kind") == "bridge"
            ],
            "pods": pods_from_links(links, _json(self._out("ip", "-j", "netns", "list")), peer_addrs),
            "iptables": tables,
            "policyChains": policy_chains(tables["text"]),
        }

    def route(self, query: dict[str, list[str]]) -> Obj:
        args = route_args(query)
        shown = "ip route get " + " ".join(args)
        code, out, err = self.run(["ip", "-j", "route", "get", *args])
        if code != 0:
            return {"query": shown, "error": err.strip() or f"exit code {code}"}
        return {"query": shown, "routes": _json(out)}


def debug_route(net: NodeNetwork) -> Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]]:
    """The routes of the authenticated debug server (``controlplane.client.delegated``)."""

    def route(path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if path == "/debug/network":
            return 200, "application/json", json.dumps(net.state()).encode()
        if path == "/debug/network/route":
            return 200, "application/json", json.dumps(net.route(query)).encode()
        raise errors.NotFound("the server could not find the requested resource")

    return route


__all__ = ["NodeNetwork", "debug_route", "pods_from_links", "policy_chains", "route_args", "subprocess_runner"]

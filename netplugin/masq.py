"""``ipMasq``: SNAT for pod traffic leaving the cluster, with iptables rules this plugin owns.

Shape (the reference bridge's, with our own chain prefix so ``iptables -t nat -S | grep KLCNI``
shows exactly ours): per attachment a chain ``KLCNI-<22 hex of sha256(network name + container
ID)>`` (28 characters, iptables' limit) in the ``nat`` table of the namespace the plugin runs in:

    -A POSTROUTING -s <pod IP> -m comment --comment "name: <net> id: <cid>" -j KLCNI-…
    -A KLCNI-… -d <pod subnet> -m comment … -j ACCEPT          (and each ``ipMasqExclude`` CIDR)
    -A KLCNI-… ! -d 224.0.0.0/4 -m comment … -j MASQUERADE

``ipMasqExclude`` (ours) lists more destinations that keep the pod's address: the cluster CIDR, so
pod-to-pod traffic between nodes is never NATed (the reference only exempts the local subnet).
Rules go in with one ``iptables-restore --noflush`` and come out with one more after an
``iptables-save -t nat`` that finds them by chain name, so DEL removes exactly ours, is idempotent
and GC can find the chains of attachments that are gone (by the comment's container ID).

The pure parts (``render_*``) are unit-tested; the runner is injectable.
"""

from __future__ import annotations

from netplugin.fast import procs
from netplugin.fast.ipnet import sha256_hex

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    Runner = Callable[[Sequence[str], bytes], tuple[int, bytes, bytes]]

CHAIN_PREFIX = "KLCNI-"
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}


def chain_name(network: str, container_id: str) -> str:
    return CHAIN_PREFIX + sha256_hex(network + container_id)[:22]


def comment(network: str, container_id: str) -> str:
    return f"name: {network} id: {container_id}"


def render_add(
    network: str, container_id: str, pod_ips: Sequence[tuple[str, str]], exclude: Iterable[str], family: int
) -> str:
    """iptables-restore input installing the chain and its hook for ``pod_ips`` [(ip, subnet)]."""
    chain = chain_name(network, container_id)
    c = f'-m comment --comment "{comment(network, container_id)}"'
    lines = ["*nat", f":{chain} - [0:0]"]  # declaring it in --noflush mode also flushes it
    dsts: list[str] = []
    for _ip, subnet in pod_ips:
        if subnet not in dsts:
            dsts.append(subnet)
    for cidr in exclude:
        if (":" in cidr) == (family == 6) and cidr not in dsts:
            dsts.append(cidr)
    for d in dsts:
        lines.append(f"-A {chain} -d {d} {c} -j ACCEPT")
    lines.append(f"-A {chain} ! -d {MULTICAST[family]} {c} -j MASQUERADE")
    for ip, _subnet in pod_ips:
        plen = 128 if family == 6 else 32
        lines.append(f"-A POSTROUTING -s {ip}/{plen} {c} -j {chain}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_delete(saved: str, chains: Iterable[str]) -> str:
    """iptables-restore input removing ``chains`` and every POSTROUTING jump to them, given
    ``iptables-save -t nat`` output; empty when none of them exists (nothing to do)."""
    wanted = set(chains)
    deletes, present = [], set()
    for line in saved.splitlines():
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if name in wanted:
                present.add(name)
        elif line.startswith("-A POSTROUTING ") and line.rsplit(" -j ", 1)[-1].strip() in wanted:
            deletes.append("-D" + line[2:])
    if not deletes and not present:
        return ""
    out = ["*nat", *deletes]
    for name in sorted(present):
        out += [f"-F {name}", f"-X {name}"]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_delete_known(network: str, container_id: str, pod_ips: Sequence[str], family: int) -> str:
    """iptables-restore input removing exactly what ``render_add`` made for ``pod_ips``, without
    reading the tables first (DEL with a prevResult: one exec instead of two). It fails as a
    whole if any rule is already gone; the caller then takes the ``iptables-save`` path."""
    chain = chain_name(network, container_id)
    c = f'-m comment --comment "{comment(network, container_id)}"'
    plen = 128 if family == 6 else 32
    lines = ["*nat"]
    lines += [f"-D POSTROUTING -s {ip}/{plen} {c} -j {chain}" for ip in pod_ips]
    lines += [f"-F {chain}", f"-X {chain}", "COMMIT"]
    return "\n".join(lines) + "\n"


def owned_chains(saved: str, network: str) -> dict[str, str]:
    """{chain: container ID} of this network's chains, read from the hooks' comments."""
    out = {}
    marker = f'--comment "name: {network} id: '
    for line in saved.splitlines():
        if line.startswith("-A POSTROUTING ") and marker in line:
            cid = line.split(marker, 1)[1].split('"', 1)[0]
            chain = line.rsplit(" -j ", 1)[-1].strip()
            if chain.startswith(CHAIN_PREFIX):
                out[chain] = cid
    return out


def _run(argv: Sequence[str], stdin: bytes) -> tuple[int, bytes, bytes]:
    return procs.run(argv, stdin, capture_stderr=True)


class Masq:
    """Apply/remove/check the rules with ``iptables-restore``/``iptables-save`` (per family)."""

    def __init__(self, runner: Runner | None = None) -> None:
        self.run: Runner = runner or _run

    def _tool(self, family: int, what: str) -> str:
        return ("ip6tables-" if family == 6 else "iptables-") + what

    def save(self, family: int) -> str:
        rc, out, err = self.run([self._tool(family, "save"), "-t", "nat"], b"")
        if rc != 0:
            raise OSError(f"{self._tool(family, 'save')} failed: {err.decode(errors='replace').strip()}")
        return out.decode()

    def restore(self, family: int, text: str) -> None:
        rc, _out, err = self.run([self._tool(family, "restore"), "--noflush", "-w", "5"], text.encode())
        if rc != 0:
            raise OSError(f"{self._tool(family, 'restore')} failed: {err.decode(errors='replace').strip()}\n{text}")

    def setup(self, network: str, cid: str, pod_ips: Sequence[tuple[str, str]], exclude: Sequence[str]) -> None:
        for fam in (4, 6):
            mine = [(ip, sn) for ip, sn in pod_ips if (":" in ip) == (fam == 6)]
            if mine:
                self.restore(fam, render_add(network, cid, mine, exclude, fam))

    def teardown(self, network: str, cid: str, families: Iterable[int] = (4, 6), pod_ips: Sequence[str] = ()) -> None:
        """Remove this attachment's rules; idempotent. With ``pod_ips`` (from prevResult) only
        their families are touched and the rules are deleted blind first (one exec)."""
        chain = chain_name(network, cid)
        if pod_ips:
            families = sorted({6 if ":" in ip else 4 for ip in pod_ips})
        for fam in families:
            mine = [ip for ip in pod_ips if (":" in ip) == (fam == 6)]
            if mine:
                rc, _out, _err = self.run(
                    [self._tool(fam, "restore"), "--noflush", "-w", "5"],
                    render_delete_known(network, cid, mine, fam).encode(),
                )
                if rc == 0:
                    continue  # all gone in one go; otherwise something was missing: look first
            try:
                saved = self.save(fam)
            except OSError:
                if fam == 6:
                    continue  # no ip6tables here: nothing of ours can exist
                raise
            text = render_delete(saved, [chain])
            if text:
                self.restore(fam, text)

    def exists(self, network: str, cid: str, family: int = 4) -> bool:
        return chain_name(network, cid) in owned_chains(self.save(family), network)

    def gc(self, network: str, valid_ids: set[str]) -> list[str]:
        removed = []
        for fam in (4, 6):
            try:
                saved = self.save(fam)
            except OSError:
                continue
            stale = [ch for ch, cid in owned_chains(saved, network).items() if cid not in valid_ids]
            if stale:
                self.restore(fam, render_delete(saved, stale))
                removed += stale
        return removed

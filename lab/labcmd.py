"""``kubelab up | down | status | node stop|start | demo``: the one-machine lab.

Role: bring up a multi-node cluster where every node is a network namespace on this machine
(``lab/topology.py``), its components supervised like systemd units (``lab/supervisor.py``), and
take all of it away again. The steps of ``up`` (each printed as it runs):

 1. check: root, the commands the lab needs, no lab already up, the registry port free;
 2. hold the safety routes (DESIGN.md §3) — before any address exists;
 3. network: kl0, kl-cp, kl-nodeN, their links;
 4. PKI: cluster CA, apiserver serving cert, admin credentials, and one identity per component
    (``identity_plan``: each node's noded as ``system:node:<node>``, its proxy as
    ``system:kube-proxy``, its network agent as ``system:kubelab-netagent``, the DNS server as
    ``system:kubelab-dns``; the scheduler and controller-manager get theirs from the control plane's
    PKI). No component uses the admin credentials;
 5. images: pause, hello, busybox, nginx, python built offline and pushed to a real registry at
    192.168.56.1:5000, under upstream names too (each node's registry hosts dir mirrors docker.io,
    registry.k8s.io and k8s.gcr.io to it: lab/images.py);
 6. control plane (and etcd with ``--store etcd``) in kl-cp, supervised; wait for /readyz;
 7. Node objects with their podCIDRs (worker N owns 10.244.N.0/24), then each worker's noded,
    proxy and network agent, supervised; wait until every node is Ready and every component
    says it is healthy (``lab/health.py`` asks each one's own health endpoint); a component that
    keeps reporting its own error fails ``up`` with that error and its log path;
 8. host routes to the pod network and the service network; print where to look.

Any failure rolls back everything done so far (``down``), except the logs, which stay in
/var/log/kubelab for the error to point at (``kubelab down`` removes them). ``up`` on a running lab reports it and
changes nothing. Concurrency: one lab command at a time (``state.locked``).

Long function kept whole: ``build_components`` (~150 lines) is the lab's table of every process it
supervises (command line, namespace, identity, log), in start order — one place to read it all.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controlplane.api import errors
from lab import clusterapi, health, programs, safety, state, supervisor, topology
from lab.dashboard import setup as dashboard

REGISTRY_ADDR = f"{topology.HOST_IP}:5000"
APISERVER_URL = f"https://{topology.CONTROL_PLANE_IP}:6443"
# Short lab timings so that `kubelab node stop` shows a failover within a minute.
NODE_MONITOR_GRACE = "10s"
POD_EVICTION_TIMEOUT = "15s"


class LabError(Exception):
    pass


def say(msg: str) -> None:
    print(msg, flush=True)


def step(title: str) -> Callable[..., None]:
    say(f"• {title}")

    def done(detail: str = "") -> None:
        say(f"  ✓ {detail}" if detail else "  ✓ done")

    return done


def python_cmd(*args: str) -> list[str]:
    """Run a kubelab subcommand with this interpreter (the lab's venv)."""
    return [sys.executable, "-m", "lab", *args]


# --- checks -----------------------------------------------------------------------------------


def check_prerequisites(store: str) -> None:
    if os.geteuid() != 0:
        raise LabError(
            "kubelab up needs root (it creates network namespaces, bridges and containers): run it with sudo"
        )
    missing = [f"{cmd} (Debian package {pkg})" for cmd, pkg in required_programs() if shutil.which(cmd) is None]
    if missing:
        raise LabError("missing: " + ", ".join(missing) + ". Run `make deps` (as root) to install them.")


def required_programs() -> list[tuple[str, str]]:
    """(program, package) for every non-optional program of the manifest's core group (lab/programs.txt).

    One list: what `make deps` installs is what `kubelab up` checks for, so the two cannot drift
    (the proxy's `nft` was missing from a second, hand-kept list here once).
    """
    return [
        (e.program, e.package)
        for e in programs.load_manifest()
        if e.program and e.group == "core" and not e.flags & {"optional", "guest", "onpath"}
    ]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def node_network_in_use() -> str:
    """A route for 192.168.56.0/24 that is not ours (e.g. the Vagrant lab's libvirt bridge)."""
    out = topology.ip("route", "show", str(topology.NODE_NETWORK), check=False).stdout
    # the safety route (unreachable, lab/safety.py) is ours too: it only says "no lab is up"
    routes = [line for line in out.splitlines() if line.strip() and not line.startswith("unreachable")]
    return "\n".join(r for r in routes if f"dev {topology.BRIDGE} " not in r + " ")


def supervisor_alive() -> bool:
    try:
        return bool(supervisor.request(state.SOCKET, {"cmd": "status"}, timeout=5).get("ok"))
    except OSError:
        return False


# --- the plan -----------------------------------------------------------------------------------


def build_components(lab: topology.LabNet, store: str, cni: str, proxy_backend: str) -> list[dict[str, Any]]:
    logs = state.LOG_DIR
    comps: list[dict[str, Any]] = []
    comps.append(
        {
            "name": "registry",
            "node": "host",
            "netns": False,
            "argv": ["docker-registry", "serve", str(state.STATE_DIR / "registry" / "config.yml")],
            "log": str(logs / "host" / "registry.log"),
        }
    )
    cp = lab.control_plane
    shared = ["--node-monitor-grace-period", NODE_MONITOR_GRACE, "--pod-eviction-timeout", POD_EVICTION_TIMEOUT,
              "--cluster-cidr", topology.POD_NETWORK]  # fmt: skip
    cp_args = ["controlplane", "--data-dir", str(state.STATE_DIR), "--listen", "0.0.0.0:6443",
               "--advertise-address", cp.ip, "--store", store, *shared]  # fmt: skip
    if lab.ha:  # three control planes behind HAProxy on a 3-member etcd (lab/halab.py)
        from lab import halab

        comps += halab.components(lab, shared, python_cmd, APISERVER_URL)
    elif store == "etcd":
        comps.append(
            {
                "name": "etcd",
                "node": cp.name,
                "argv": [
                    "etcd",
                    "--name",
                    cp.name,  # backup.ETCD_MEMBER: the member is named after its node
                    "--data-dir",
                    str(state.STATE_DIR / "etcd"),
                    "--listen-client-urls",
                    "http://127.0.0.1:2379",
                    "--advertise-client-urls",
                    "http://127.0.0.1:2379",
                    "--listen-peer-urls",
                    "http://127.0.0.1:2380",
                ],
                "log": str(logs / cp.name / "etcd.log"),
            }
        )
        cp_args += ["--etcd-endpoints", "http://127.0.0.1:2379"]
    if not lab.ha:
        comps.append(
            {
                "name": "controlplane",
                "node": cp.name,
                "argv": python_cmd(*cp_args),
                "log": str(logs / cp.name / "controlplane.log"),
            }
        )
        # Cluster DNS beside the API server: it answers on the control plane's node IP and keeps
        # kube-system/kube-dns (10.96.0.10, every pod's nameserver) pointing there, so the workers'
        # proxies DNAT pods' queries to it. Until the API server is up it retries (and answers NXDOMAIN).
        dns_argv = python_cmd("dns", "--kubeconfig", str(state.DNS_KUBECONFIG), "--listen", f"{cp.ip}:53")
        comps.append({"name": "dns", "node": cp.name, "argv": dns_argv, "log": str(logs / cp.name / "dns.log")})
        # Resource metrics (issue 13): the metrics server beside the API server, scraping every kubelet each
        # 5 s and registering itself as the APIService v1beta1.metrics.k8s.io (kubectl top). Run as
        # `python -m controlplane.metricsserver` (= `kubelab metrics-server`): ~18 MB less than the CLI.
        ms_args = [sys.executable, "-m", "controlplane.metricsserver", "--data-dir", str(state.STATE_DIR)]
        ms_args += ["--apiserver-url", APISERVER_URL, "--bind-address", cp.ip, "--register-apiservice", cp.ip]
        comps.append({"name": "metrics-server", "node": cp.name, "argv": ms_args,
                      "log": str(logs / cp.name / "metrics-server.log")})  # fmt: skip
    for node in lab.workers:
        nd = state.STATE_DIR / "nodes" / node.name
        kubeconfig = str(nd / "kubeconfig")
        comps.append(
            {
                "name": "noded",
                "node": node.name,
                "wanted": False,
                "argv": python_cmd(
                    "noded",
                    "--node-name",
                    node.name,
                    "--kubeconfig",
                    kubeconfig,
                    "--node-ip",
                    node.ip,
                    "--root-dir",
                    str(nd / "noded"),
                    "--cni-bin-dir",
                    str(state.STATE_DIR / "cni-bin"),
                    "--cni-conf-dir",
                    str(nd / "cni" / "net.d"),
                    "--cni",
                    cni,
                    "--tls-cert-file",
                    str(nd / "pki" / "kubelet.crt"),
                    "--tls-private-key-file",
                    str(nd / "pki" / "kubelet.key"),
                    "--client-ca-file",
                    str(state.STATE_DIR / "pki" / "ca.crt"),
                    "--insecure-registry",
                    REGISTRY_ADDR,
                    "--registry-config-path",
                    str(nd / "certs.d"),
                ),
                "log": str(logs / node.name / "noded.log"),
            }
        )
        # The node's serving certificate also serves the network agent's and the proxy's debug
        # endpoints (:9098, :10253), which kubelab trace reads over the node network.
        debug_tls = ["--tls-cert-file", str(nd / "pki" / "kubelet.crt"), "--tls-private-key-file",
                     str(nd / "pki" / "kubelet.key"), "--client-ca-file", str(state.STATE_DIR / "pki" / "ca.crt")]
        comps.append(
            {
                "name": "netagent",
                "node": node.name,
                "wanted": False,
                "argv": python_cmd(
                    "netagent", "--node-name", node.name, "--kubeconfig", str(nd / "netagent.kubeconfig"), *debug_tls
                ),
                "log": str(logs / node.name / "netagent.log"),
            }
        )
        comps.append(
            {
                "name": "proxy",
                "node": node.name,
                "wanted": False,
                "argv": python_cmd(
                    "proxy",
                    "--node-name",
                    node.name,
                    "--kubeconfig",
                    str(nd / "proxy.kubeconfig"),
                    "--cluster-cidr",
                    topology.POD_NETWORK,
                    "--min-sync-period",
                    "0s",
                    "--backend",
                    proxy_backend,
                    *debug_tls,
                ),
                "log": str(logs / node.name / "proxy.log"),
            }
        )
    return comps


# --- up -----------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    try:
        topology.plan_lab(args.workers, args.control_planes, args.etcd)  # bad arguments first
        if args.store is None:
            args.store = "etcd" if args.control_planes > 1 else "sqlite"
        elif args.store != "etcd" and args.control_planes > 1:
            raise LabError(
                f"--control-planes {args.control_planes} needs --store etcd: the API servers share one "
                "replicated store (SQLite is one file on one machine)"
            )
        check_prerequisites(args.store)
        with state.locked():
            plan = state.read_plan()
            if plan is not None:
                if supervisor_alive():
                    say(
                        f"A lab is already up ({len(plan['workers'])} workers, store {plan['store']}); nothing changed."
                    )
                    say("  `kubelab status` shows it, `kubelab down` removes it.")
                    return 0
                raise LabError("a previous lab was not shut down cleanly: run `sudo kubelab down` first")
            if any(topology.is_lab_netns(n) for n in topology.existing_netns()) or topology.link_exists(
                topology.BRIDGE
            ):
                raise LabError("lab network objects (kl0, kl-*) exist without a running lab: run `sudo kubelab down`")
            taken = node_network_in_use()
            if taken:
                raise LabError(
                    f"the lab's node network {topology.NODE_NETWORK} is already in use ({taken}); "
                    "is the Vagrant lab up? (`make vagrant-down` removes it)"
                )
            if not port_free("0.0.0.0", 5000):
                raise LabError("port 5000 is in use: the lab's registry needs it (find the owner with `ss -ltnp`)")
            started = time.monotonic()
            marker = safety.acquire("kubelab-up")
            try:
                _up(args)
            except BaseException:
                say(f"! something failed: rolling back everything the lab made (logs kept in {state.LOG_DIR})")
                _down(quiet=True, keep_logs=True)
                raise
            finally:
                safety.release(marker)
            say(f"\nThe lab is up in {time.monotonic() - started:.1f}s.")
            print_summary()
            return 0
    except (LabError, state.LabBusy, topology.TopologyError) as exc:
        say(f"kubelab up: {exc}")
        return 1


def _up(args: argparse.Namespace) -> None:
    from controlplane import pki  # the lab may import the control plane's PKI helpers

    lab = topology.plan_lab(args.workers, args.control_planes, args.etcd)
    done = step(
        f"network: bridge {topology.BRIDGE} {topology.HOST_IP}/24, namespaces "
        + ", ".join(f"{n.name} {n.ip}" for n in lab.nodes)
    )
    topology.apply(lab)
    done(f"{len(lab.nodes)} node namespaces on {topology.BRIDGE} (no default route in any of them)")

    done = step("certificates: cluster CA, API server, admin and node credentials")
    state.STATE_DIR.mkdir(parents=True, exist_ok=True)
    from lab import halab

    cluster = pki.ensure_cluster_pki(
        state.STATE_DIR,
        server_ips=halab.server_ips(lab),
        server_names=halab.server_names(lab),
        server_url=APISERVER_URL,
    )
    for kubeconfig, user, groups in identity_plan(lab):
        pki.issue_client(cluster.ca, kubeconfig, APISERVER_URL, user, groups)
    for node in lab.workers:
        nd = state.STATE_DIR / "nodes" / node.name
        (nd / "pki").mkdir(parents=True, exist_ok=True)
        scert, skey = pki.issue_cert(cluster.ca, node.name, [], ips=[node.ip], dns=[node.name], server=True)
        (nd / "pki" / "kubelet.crt").write_bytes(scert)
        (nd / "pki" / "kubelet.key").write_bytes(skey)
        os.chmod(nd / "pki" / "kubelet.key", 0o600)
    # front proxy + metrics server (issue 13); the metrics server listens on the (first) control plane
    pki.ensure_aggregator_pki(state.STATE_DIR, APISERVER_URL, metrics_ips=[lab.control_plane.ip])
    if lab.ha:  # the etcd CA and members' certificates, each control plane's data dir, haproxy.cfg
        halab.prepare_pki(lab)
    write_admin_kubeconfig()
    done(f"admin kubeconfig at {state.ADMIN_KUBECONFIG}")

    done = step("CNI plugins: kubelab-bridge, kubelab-ipam and the reference plugins in one bin dir")
    install_cni_bin(state.STATE_DIR / "cni-bin")
    done()

    done = step(
        f"images: pause, hello, busybox, nginx, python (built offline), pushed to the registry at {REGISTRY_ADDR}"
    )
    write_registry_config(state.STATE_DIR / "registry")
    comps = build_components(lab, args.store, args.cni, args.proxy_backend)
    if args.dashboard:  # the dashboard (lab/dashboard): its credentials from the CA, its process on the host side
        dashboard.prepare(cluster.ca, APISERVER_URL)
        comps.append(dashboard.component())
    plan = {
        "workers": [n.name for n in lab.workers],
        "control_planes": args.control_planes,
        "etcd_topology": args.etcd,
        **({"etcd": halab.etcd_plan(lab)} if lab.ha else {}),
        "store": args.store,
        "cni": args.cni,
        "socket": str(state.SOCKET),
        "components": comps,
    }
    state.write_plan(plan)
    start_supervisor()
    wait_until(lambda: not port_free(topology.HOST_IP, 5000), 20, "the registry to listen")
    from lab import images

    # Built into the checkout's .cache (kept by `down`): only the first `up` pays the build (~9 s).
    refs = images.push_images(REGISTRY_ADDR, out_dir=images.CACHE_DIR)
    for node in lab.workers:  # docker.io, registry.k8s.io, k8s.gcr.io: the lab registry first
        images.write_hosts_dirs(state.STATE_DIR / "nodes" / node.name / "certs.d", REGISTRY_ADDR)
    done(", ".join(sorted(refs.values())))

    if lab.ha:
        where = ", ".join(n.name for n in lab.control_planes) + f" behind HAProxy in {topology.LB_NAME}"
        members = ", ".join(name for name, _ in lab.etcd_members())
        done = step(f"control planes {where}; etcd members {members} (Raft, TLS)")
        for cp in lab.control_planes:  # each API server itself, then the endpoint through the balancer
            server = f"https://{cp.ip}:6443"
            wait_until(functools.partial(clusterapi.ready, server), 90, f"{cp.name}'s API server /readyz")
        wait_until(apiserver_ready, 30, "the API endpoint (HAProxy) /readyz")
        write_admin_kubeconfig()
        done(f"3 API servers ready; endpoint {APISERVER_URL}")
    else:
        done = step(f"control plane in {lab.control_plane.name} (store: {args.store})")
        wait_until(apiserver_ready, 60, "the API server's /readyz")
        write_admin_kubeconfig()  # the server rewrites it with its own view of its address on start
        done(f"API server ready at {APISERVER_URL}")

    done = step("workers: noded, proxy and network agent in " + ", ".join(n.name for n in lab.workers))
    for node in lab.workers:
        ensure_node_object(node)
    for node in lab.workers:
        supervisor.request(state.SOCKET, {"cmd": "start-node", "node": node.name})
    healthy = wait_healthy(120)
    done(f"{len(lab.workers)} nodes Ready; {len(healthy)} components healthy")

    done = step("host routes: pod network and service VIPs through the nodes")
    topology.install_host_routes(lab, {n.name: n.expected_pod_cidr or "" for n in lab.workers}, lab.workers[0].ip)
    done(f"10.244.N.0/24 via each worker; {topology.SERVICE_NETWORK} via {lab.workers[0].name}")


def identity_plan(lab: topology.LabNet) -> list[tuple[Path, str, tuple[str, ...]]]:
    """(kubeconfig path, user, groups) of every lab component that runs outside the control plane
    process: each its own client certificate, with the user names the bootstrap RBAC roles bind."""
    from controlplane import pki

    plan: list[tuple[Path, str, tuple[str, ...]]] = [(state.DNS_KUBECONFIG, pki.DNS_USER, ())]
    for node in lab.workers:
        nd = state.STATE_DIR / "nodes" / node.name
        plan.append((nd / "kubeconfig", pki.node_user(node.name), (pki.NODES_GROUP,)))
        plan.append((nd / "proxy.kubeconfig", pki.PROXY_USER, ()))
        plan.append((nd / "netagent.kubeconfig", pki.NETAGENT_USER, ()))
    return plan


def write_admin_kubeconfig() -> None:
    from controlplane import pki

    d = state.STATE_DIR / "pki"
    pki.write_kubeconfig(
        state.ADMIN_KUBECONFIG,
        APISERVER_URL,
        (d / "ca.crt").read_bytes(),
        (d / "admin.crt").read_bytes(),
        (d / "admin.key").read_bytes(),
        user=pki.ADMIN_USER,
    )


def start_supervisor() -> None:
    log_path = state.LOG_DIR / "host" / "supervisor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "lab.supervisor", "--config", str(state.PLAN_FILE)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    wait_until(supervisor_alive, 10, "the lab supervisor")


def install_cni_bin(bin_dir: Path) -> None:
    """Our plugins as fast launchers (netplugin.install: a native thin client handing requests to
    each node's warm CNI server), and the reference plugins beside them for ``--cni reference``.

    The plugins are installed by their own command (``python -m netplugin.install DIR``): the lab
    runs components' commands, it does not import their internals."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [sys.executable, "-m", "netplugin.install", str(bin_dir)], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise LabError(f"installing the CNI plugins into {bin_dir} failed: {res.stderr.strip()}")
    for ref in Path("/usr/lib/cni").glob("*"):
        dst = bin_dir / ref.name
        dst.unlink(missing_ok=True)
        dst.symlink_to(ref)


def write_registry_config(reg_dir: Path) -> None:
    (reg_dir / "data").mkdir(parents=True, exist_ok=True)
    (reg_dir / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n  filesystem:\n    rootdirectory: " + str(reg_dir / "data") + "\n"
        "  delete:\n    enabled: true\n"
        "http:\n  addr: " + REGISTRY_ADDR + "\n"
    )


def admin_ssl_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(state.STATE_DIR / "pki" / "ca.crt"))
    ctx.load_cert_chain(str(state.STATE_DIR / "pki" / "admin.crt"), str(state.STATE_DIR / "pki" / "admin.key"))
    return ctx


api = clusterapi.api
apiserver_ready = clusterapi.ready


def ensure_node_object(node: topology.NodeNet) -> None:
    """Register the Node with its podCIDR before its noded starts, so worker N owns 10.244.N.0/24."""
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": node.expected_pod_cidr, "podCIDRs": [node.expected_pod_cidr]},
    }
    try:
        api("POST", "/api/v1/nodes", body)
    except errors.AlreadyExists:
        pass
    except errors.ApiError as exc:
        raise LabError(f"cannot register node {node.name}: HTTP {exc.code} {exc.message[:300]}") from exc


def node_ready(node: dict[str, Any]) -> bool:
    for cond in node.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def all_nodes_ready(names: list[str]) -> bool:
    try:
        nodes = {n["metadata"]["name"]: n for n in api("GET", "/api/v1/nodes").get("items", [])}
    except (errors.ApiError, *clusterapi.TRANSPORT_ERRORS):
        return False
    return all(name in nodes and node_ready(nodes[name]) for name in names)


def lab_cluster(plan: dict[str, Any]) -> health.Cluster:
    lab = topology.lab_of(plan)
    return health.Cluster(
        host_ip=topology.HOST_IP,
        control_plane=lab.control_plane.name,
        control_plane_ip=lab.control_plane.ip,
        node_ips={n.name: n.ip for n in lab.nodes},
        api=lambda path: api("GET", path),
        tls=admin_ssl_context(),
        apiserver_url=APISERVER_URL,
        ha=lab.ha,
    )


def component_health() -> list[health.Health]:
    st = supervisor.request(state.SOCKET, {"cmd": "status"}, timeout=5)
    return health.check(st.get("components", []), lab_cluster(state.read_plan() or {"workers": []}))


def wait_healthy(timeout: float) -> list[health.Health]:
    """Every wanted component healthy (nodes Ready included); fail with the components' own errors.

    Fails early when a component has reported an error of its own for ``OWN_ERROR_GRACE``
    seconds (a missing program does not heal by waiting), else at ``timeout``."""
    deadline = time.monotonic() + timeout
    own_since: dict[str, float] = {}
    while True:
        try:
            result = component_health()
        except (OSError, ValueError) as exc:
            result = [health.Health("lab", "health check", False, str(exc))]
        bad = [h for h in result if not h.healthy]
        if not bad:
            return result
        now = time.monotonic()
        own_since = {h.key: own_since.get(h.key, now) for h in bad if h.own}
        stuck = [h for h in bad if h.own and now - own_since[h.key] >= health.OWN_ERROR_GRACE]
        if stuck:
            failing = [h for h in bad if h.own]
            raise LabError(
                f"{len(failing)} component(s) report errors (for {health.OWN_ERROR_GRACE:.0f}s or more):\n"
                + health.report(failing)
            )
        if now >= deadline:
            raise LabError(
                f"timed out after {timeout:.0f}s waiting for every component to be healthy:\n" + health.report(bad)
            )
        time.sleep(1.0)


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what} (logs: {state.LOG_DIR})")


def print_summary() -> None:
    plan = state.read_plan() or {}
    workers = plan.get("workers", [])
    say(f"""
  kubeconfig:  export KUBECONFIG={state.ADMIN_KUBECONFIG}
  nodes:       kubectl get nodes -o wide        ({", ".join(workers)})
  logs:        {state.LOG_DIR}/<node>/<component>.log   (kubelab status lists them)
  look inside: ip netns list                                   # nodes (kl-*) and pods
               ip netns exec {workers[0] if workers else "kl-node1"} ip route            # a node's routes
               ip netns exec {workers[0] if workers else "kl-node1"} iptables -t nat -S KUBE-SERVICES
  try:         kubelab demo
  users:       kubelab user add alice   # prints a kubeconfig of alice's own (practise RBAC with it)""")
    if dashboard.summary(plan):
        say(dashboard.summary(plan))


# --- down ---------------------------------------------------------------------------------------


def cmd_down(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        say("kubelab down: needs root: run it with sudo")
        return 1
    try:
        with state.locked():
            removed = _down(quiet=False)
    except state.LabBusy as exc:
        say(f"kubelab down: {exc}")
        return 1
    if not removed:
        say("No lab is up; nothing to remove.")
    return 0


def _down(quiet: bool, keep_logs: bool = False) -> list[str]:
    removed: list[str] = []
    marker = safety.acquire("kubelab-down")
    try:
        plan = state.read_plan()
        pids: list[int] = []
        if plan is not None:
            try:
                st = supervisor.request(state.SOCKET, {"cmd": "status"}, timeout=5)
                pids = [c["pid"] for c in st.get("components", []) if c.get("pid")]
                supervisor.request(state.SOCKET, {"cmd": "shutdown"}, timeout=120)
                removed.append("lab processes (stopped by pid)")
            except OSError:
                pass
        for pid in pids:  # anything the supervisor could not stop
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if plan is not None:
            for node in plan.get("workers", []):
                cleanup_node(node)
        removed += topology.teardown()
        for path in (state.STATE_DIR, state.LOG_DIR, state.RUN_DIR):
            if path == state.LOG_DIR and keep_logs:
                continue
            if path.exists():
                # keep the lock file of RUN_DIR until we return (we hold it)
                if path == state.RUN_DIR:
                    for p in path.iterdir():
                        if p.name != "lock":
                            shutil.rmtree(p) if p.is_dir() else p.unlink()
                    continue
                shutil.rmtree(path)
                removed.append(f"{path}")
    finally:
        safety.release(marker)
    if not quiet:
        for r in removed:
            say(f"  removed {r}")
    return removed


def cleanup_node(node: str) -> None:
    """Containers, pod namespaces and mounts of one node (noded's own cleanup knows them all)."""
    nd = state.STATE_DIR / "nodes" / node
    if not nd.exists():
        return
    subprocess.run(
        [
            "nsenter",
            f"--net=/var/run/netns/{node}",
            "--",
            *python_cmd("noded", "cleanup", "--root-dir", str(nd / "noded")),
        ],
        capture_output=True,
        check=False,
        timeout=120,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="bring up the one-machine lab (network namespaces as nodes)")
    up.add_argument("--workers", type=int, default=2, help="number of worker nodes (default 2)")
    up.add_argument(
        "--store", choices=["sqlite", "etcd"], default=None, help="the API server's store (default: sqlite; HA: etcd)"
    )
    up.add_argument(
        "--control-planes",
        type=int,
        default=1,
        help="1, or 3 for a highly available control plane: kl-cp1..3 on a 3-member etcd behind HAProxy in kl-lb",
    )
    up.add_argument(
        "--etcd",
        choices=["stacked", "external"],
        default="stacked",
        help="with --control-planes 3: etcd members on the control planes (stacked) or in kl-etcd1..3 (external)",
    )
    up.add_argument(
        "--cni",
        choices=["kubelab", "reference"],
        default="kubelab",
        help="pod networking: our CNI plugins or the reference bridge + host-local",
    )
    up.add_argument("--proxy-backend", choices=["auto", "iptables-restore", "python-iptables"], default="auto")
    up.add_argument("--no-dashboard", dest="dashboard", action="store_false", help="do not start the web dashboard")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop the lab and remove everything it made")
    down.set_defaults(func=cmd_down)

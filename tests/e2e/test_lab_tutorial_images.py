"""Tutorial images in the lab (issue 15): upstream names with no registry prefix work offline.

The lab registry serves library/nginx, library/busybox, library/python and pause under their upstream
names, and each node's registry hosts dir (containerd's hosts.toml model) sends docker.io,
registry.k8s.io and k8s.gcr.io there first. One 1-worker lab (run under ``flock /tmp/kubelab-lab.lock``):
``kubectl run web --image=nginx`` becomes Ready and serves nginx's default page to a curl from the
node's namespace; ``kubectl run --rm -i --restart=Never b --image=busybox -- echo hi`` prints hi;
``kubectl run -it`` busybox ``sh`` answers on a terminal (a pty); a python pod runs a one-line
script; ``registry.k8s.io/pause:3.9`` runs. Traffic stays in the lab's namespaces: nginx is fetched
from its pod IP inside kl-node1.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_lab import KUBECONFIG, kubectl, kubectl_json, lab
from tests.helpers.wait import wait_for


@pytest.fixture(scope="module")
def lab1() -> Iterator[dict[str, str]]:
    yield from lab("--workers", "1")


def pod(name: str) -> dict[str, Any]:
    result: dict[str, Any] = kubectl_json("get", "pod", name)
    return result


def is_ready(p: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def test_kubectl_run_nginx_serves_its_default_page(lab1: dict[str, str]) -> None:
    kubectl("run", "web", "--image=nginx")
    try:
        wait_for(lambda: is_ready(pod("web")), timeout=90, message="pod web Ready")
        p = pod("web")
        ip = p["status"]["podIP"]
        status = p["status"]["containerStatuses"][0]
        assert status["imageID"].startswith("docker.io/library/nginx@sha256:"), status
        page = subprocess.run(
            ["ip", "netns", "exec", "kl-node1", "curl", "-s", "--max-time", "5", f"http://{ip}/"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert "<title>Welcome to nginx!</title>" in page.stdout, page
        # nginx logs to the container's stdout, as the upstream image does
        wait_for(lambda: '"GET / HTTP/1.1" 200' in kubectl("logs", "web"), timeout=10, message="access log line")
    finally:
        kubectl("delete", "pod", "web", "--wait=false")


def test_kubectl_run_rm_busybox_prints_hi(lab1: dict[str, str]) -> None:
    res = subprocess.run(
        ["kubectl", "--kubeconfig", KUBECONFIG, "run", "--rm", "-i", "--restart=Never", "b", "--image=busybox",
         "--", "echo", "hi"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "hi", res.stdout
    wait_for(lambda: "pod/b\n" not in kubectl("get", "pods", "-o", "name"), timeout=60, message="b deleted")


def test_kubectl_run_it_busybox_gives_a_shell(lab1: dict[str, str]) -> None:
    """``kubectl run -it b --image=busybox -- sh`` on a real terminal: a prompt, a command, exit."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        ["kubectl", "--kubeconfig", KUBECONFIG, "run", "-it", "--rm", "--restart=Never", "b-it", "--image=busybox",
         "--", "sh"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} in {seen!r}"
            if select.select([master], [], [], min(left, 1.0))[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the other side closed
                    assert marker in seen, f"no {marker!r} in {seen!r}"

    try:
        read_until(b"# ", 120)  # busybox sh's root prompt, through the attached TTY
        os.write(master, b"echo $((6 * 7))\n")
        read_until(b"42", 30)
        os.write(master, b"exit\n")
        assert proc.wait(timeout=60) == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    wait_for(lambda: "pod/b-it\n" not in kubectl("get", "pods", "-o", "name"), timeout=60, message="b-it deleted")


def test_python_pod_runs_a_one_line_script(lab1: dict[str, str]) -> None:
    kubectl(
        "run", "py", "--image=python", "--restart=Never", "--",
        "python", "-u", "-c", "import json, socket; print(json.dumps({'sum': 6 * 7, 'host': socket.gethostname()}))",
    )  # fmt: skip
    try:
        wait_for(lambda: pod("py")["status"].get("phase") == "Succeeded", timeout=90, message="pod py Succeeded")
        assert kubectl("logs", "py").strip() == '{"sum": 42, "host": "py"}'
    finally:
        kubectl("delete", "pod", "py", "--wait=false")


def test_pause_by_its_registry_k8s_io_name(lab1: dict[str, str]) -> None:
    kubectl("run", "pz", "--image=registry.k8s.io/pause:3.9")
    try:
        wait_for(lambda: is_ready(pod("pz")), timeout=60, message="pod pz Ready")
        assert pod("pz")["status"]["containerStatuses"][0]["imageID"].startswith("registry.k8s.io/pause@sha256:")
    finally:
        kubectl("delete", "pod", "pz", "--wait=false")

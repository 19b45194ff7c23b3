"""The official Python client's own e2e suite, pinned by version, run unmodified against a cluster.

Role: issue 15's acceptance runs ``kubernetes/e2e_test`` and ``kubernetes/aio/e2e_test`` of
kubernetes-client/python against the lab with nothing changed but the kubeconfig. PyPI's wheel and
sdist of the client do not ship those directories, and only PyPI and Debian are reachable from the
machines that run ``make test``, so their files sit beside this module (``pyclient_e2e/``, copied
unmodified from kubernetes-client/python at ``UPSTREAM_COMMIT``, Apache-2.0 as the LICENSE there
says) with a ``SHA256SUMS`` that is checked before every run: a file changed by hand stops the run.

Why 37.0.3 with master's files of 2026-08-17 rather than an exact tag: the newest tag we could read
is v36.0.3, and the 36.0.3 wheel lacks ``kubernetes.aio.utils``/``watch``/``stream``/``dynamic``
(upstream's release script packaged only ``aio.client`` and ``aio.config`` until after that tag),
so its own ``aio/e2e_test/test_api.py`` cannot even be imported against it. 37.0.3 is the first
release that packages them and is what our test extra resolves to; the files are the upstream tree
it was cut from, up to the snapshot we have (two files newer than v36.0.3's: aio
``test_dynamic_client`` and ``test_issue_2387_proxy_ssl_context``).

The client itself comes from PyPI at the same version, into its own virtualenv cached under
``/var/cache/kubelab/pyclient-{VERSION}`` (our .venv may hold a newer client; the test files belong
to this one). The suite's files are installed into that client's package directory, where the
upstream layout puts them (``kubernetes.e2e_test`` is a subpackage, and ``test_utils`` opens its
YAML by the relative path ``kubernetes/e2e_test/test_yaml/``, so pytest runs from site-packages).

Invariants: the only thing pointing the suite at a cluster is ``KUBECONFIG`` (the client's
``KUBE_CONFIG_DEFAULT_LOCATION`` reads it); ``HOME`` is a fresh temporary directory so no
``~/.kube/config`` of the machine leaks in. Results come back from pytest's JUnit XML.

Concurrency: installs into the cache are serialised by an flock beside it; runs may overlap (they
only read the venv; the suite's files are rewritten identically).

Usage by hand: ``python -m tests.helpers.pyclient [KUBECONFIG] [pytest args…]``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

VERSION = "37.0.3"
# kubernetes-client/python master of 2026-08-17, the newest upstream source reachable here (no v37 tag
# in it): see the module docstring for why this and not the v36.0.3 tag.
UPSTREAM_COMMIT = "024658493d124f046fc0a9827a2a3165cf2aee28"
# The suite's own test requirement (test-requirements.txt names pytest, unpinned); pinned here so a
# cached venv is reproducible.
PYTEST = "pytest==8.4.2"
# Bounds one hung test case (a watch that never ends) so the rest of the suite still reports.
PYTEST_TIMEOUT = "pytest-timeout==2.4.0"
HERE = Path(__file__).resolve().parent / "pyclient_e2e"
CACHE = Path(os.environ.get("KUBELAB_PYCLIENT_CACHE", f"/var/cache/kubelab/pyclient-{VERSION}"))
SUITES = ("kubernetes/e2e_test", "kubernetes/aio/e2e_test")


@dataclass
class Outcome:
    """One test case of the suite: ``passed``, ``failed``, ``error`` or ``skipped``, with its message."""

    name: str
    result: str
    seconds: float
    message: str = ""


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    output: str = ""

    def by_result(self, result: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == result]

    def summary(self) -> str:
        counts = {r: len(self.by_result(r)) for r in ("passed", "failed", "error", "skipped")}
        lines = [f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
                 f"{counts['skipped']} skipped in {self.seconds:.1f} s"]  # fmt: skip
        for o in self.outcomes:
            if o.result != "passed":
                lines.append(f"  {o.result.upper()} {o.name}: {o.message.strip().splitlines()[-1:] or ''}")
        return "\n".join(lines)


def verify_pinned_files() -> None:
    """Fail unless every vendored file matches SHA256SUMS (and no listed file is missing)."""
    for line in (HERE / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        actual = hashlib.sha256((HERE / name).read_bytes()).hexdigest()
        if actual != digest:
            raise RuntimeError(f"{name}: sha256 {actual} is not the pinned {digest} (v{VERSION})")


def _clean_env() -> dict[str, str]:
    """Our environment without what would point the suite's interpreter elsewhere (PYTHONPATH into
    this repo, pytest's own variables) or at another cluster (KUBECONFIG)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "KUBE", "PYTHON"))}


def _site_packages(venv: Path) -> Path:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip())


def ensure_client(venv: Path = CACHE) -> Path:
    """The cached venv with kubernetes==VERSION and pytest, and the suite installed in its package;
    returns its site-packages directory. Idempotent; reinstalls when the recorded pins differ."""
    stamp = venv / "kubelab-pins.txt"
    pins = f"kubernetes=={VERSION}\n{PYTEST}\n{PYTEST_TIMEOUT}\n"
    if not (stamp.exists() and stamp.read_text() == pins and (venv / "bin" / "python").exists()):
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_clean_env())
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             f"kubernetes=={VERSION}", PYTEST, PYTEST_TIMEOUT],
            check=True, env=_clean_env(),
        )  # fmt: skip
        stamp.write_text(pins)
    site = _site_packages(venv)
    verify_pinned_files()
    if not _installed_suite_is_pinned(site):  # rewritten only when different: a running suite reads them
        for suite in SUITES:
            target = site / suite
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(HERE / suite, target)
    return site


def _installed_suite_is_pinned(site: Path) -> bool:
    for line in (HERE / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        path = site / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return False
    return True


def _parse_junit(path: Path) -> list[Outcome]:
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name', '')}"
        result, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                result = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or "") + "\n" + (child.text or "")
                break
        outcomes.append(Outcome(name, result, float(case.get("time", "0")), message))
    return outcomes


def run_suite(kubeconfig: str, *pytest_args: str, timeout: float = 900) -> Report:
    """Run both suites once against the cluster of ``kubeconfig``; the report of every test case."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / f".{CACHE.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        site = ensure_client(CACHE)
    with tempfile.TemporaryDirectory(prefix="kubelab-pyclient-") as tmp:
        junit = Path(tmp) / "junit.xml"
        env = _clean_env()
        env.update(KUBECONFIG=kubeconfig, HOME=tmp, PYTHONDONTWRITEBYTECODE="1")
        log = Path(tmp) / "pytest.log"
        start = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [str(CACHE / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--timeout=180",
                 f"--junitxml={junit}", "--rootdir", tmp, *SUITES, *pytest_args],
                cwd=site, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        report = Report(seconds=time.monotonic() - start, output=log.read_text())
        if junit.exists():
            report.outcomes = _parse_junit(junit)
        else:
            report.outcomes = [Outcome("(the whole suite)", "error", report.seconds, "no JUnit report (timeout?)")]
        return report


def main(argv: list[str]) -> int:
    kubeconfig = argv[0] if argv else "/var/lib/kubelab/admin.kubeconfig"
    report = run_suite(kubeconfig, *argv[1:])
    print(report.output)
    print(report.summary())
    return 0 if report.outcomes and all(o.result == "passed" for o in report.outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The official Python client's own e2e suite against a 2-worker lab (issue 15's first acceptance).

``kubernetes/e2e_test`` and ``kubernetes/aio/e2e_test`` of kubernetes-client/python at the pinned
release (tests/helpers/pyclient.py: the client from PyPI in its own cached venv, the suite's files
checked against their pinned sha256), run unmodified with only ``KUBECONFIG`` pointing at the lab's
admin kubeconfig. Every upstream test case must pass: a failure, an error or a skip (the suite skips
e.g. when exec's v5 subprotocol is not negotiated) fails this test, which lists each one.

The lab is brought up with the real ``kubelab up --workers 2`` under ``flock /tmp/kubelab-lab.lock``
by the shared fixture of test_lab.py and torn down with ``kubelab down``, which checks the machine
is as it was; the upstream tests delete what they create (and the lab's teardown removes the rest).

Measured (2 cores shared with other work): 51 test cases, the suite 59–65 s, this test 91–106 s with the
lab's up and down; the first run on a machine adds ~40 s to install the pinned client from PyPI.
The suite's pods use the tutorial images by upstream names (busybox, nginx, python,
k8s.gcr.io/pause), which the lab serves from its own registry through noded's mirrors.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_lab import KUBECONFIG, lab
from tests.helpers.pyclient import VERSION, run_suite


@pytest.fixture(scope="module")
def lab2() -> Iterator[dict[str, str]]:
    yield from lab("--workers", "2")


@pytest.mark.timeout(1200)
def test_the_official_python_clients_e2e_suite_passes_unmodified(lab2: dict[str, str]) -> None:
    report = run_suite(KUBECONFIG)
    for o in report.outcomes:
        print(f"  {o.result:7} {o.seconds:6.1f} s  {o.name}")
    print(f"kubernetes {VERSION} e2e suite: {report.summary()}")
    assert report.outcomes, f"the suite ran no test:\n{report.output[-4000:]}"
    not_passed = [o for o in report.outcomes if o.result != "passed"]
    assert not not_passed, report.summary() + "\n\n" + report.output[-8000:]

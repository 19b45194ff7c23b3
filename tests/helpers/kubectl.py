"""The real kubectl binaries tests run against, by minor version, or a skip that says why.

kubelab is tested against kubectl 1.27–1.33. A developer machine may carry every minor version side by
side (Google Cloud SDK's ``/usr/lib/google-cloud-sdk/bin/kubectl.1.XX``); a fresh Debian 12 has only
the kubectl ``make deps`` puts on PATH (lab/kubectl.sh: any ≥ 1.27, else the upstream 1.33 release).
So a test asks for a version: the versioned binary where it exists, else the kubectl on PATH when it
is that minor version, else the test is skipped with the reason (never a FileNotFoundError).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

VERSIONED_DIR = Path("/usr/lib/google-cloud-sdk/bin")


@functools.cache
def minor_of(binary: str) -> str:
    """``"1.33"`` for a kubectl 1.33.x binary ("" when it does not answer)."""
    try:
        out = subprocess.run(
            [binary, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        v = json.loads(out)["clientVersion"]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return ""
    return f"{v['major']}.{''.join(ch for ch in v['minor'] if ch.isdigit())}"


def kubectl_binary(version: str | None = None) -> str:
    """The kubectl to run: of minor ``version`` ("1.27"), or the one on PATH when ``version`` is None."""
    plain = shutil.which("kubectl")
    if version is None:
        if plain is None:
            pytest.skip("no kubectl on PATH (make deps installs one)")
        return plain
    versioned = VERSIONED_DIR / f"kubectl.{version}"
    if versioned.exists():
        return str(versioned)
    if plain is not None and minor_of(plain) == version:
        return plain
    found = f"kubectl on PATH is {minor_of(plain) or 'unknown'}" if plain else "no kubectl on PATH"
    pytest.skip(f"kubectl {version} is not installed here ({versioned} missing; {found})")

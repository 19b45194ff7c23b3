"""Platform selection in a manifest list / OCI image index (what containerd's platform matcher does).

Role: pure. ``host_platform()`` describes this machine the way image indexes do (``linux``,
``amd64``/``arm64``/..., and a variant for ARM); ``choose_manifest(index, platform)`` returns the
descriptor of the entry to pull, or raises ``NoMatchingPlatform`` listing what the index offers.

Rules (after normalising names: ``x86_64``→``amd64``, ``aarch64``→``arm64``, ``armhf``→``arm``
v7, ``armel``→``arm`` v6, ``i386``/``i686``→``386``; an ARM entry without a variant is v7 for
``arm`` and v8 for ``arm64``; ``amd64`` v1 is plain ``amd64``):
- OS and architecture must be equal;
- the variant must be equal, except that an ARM host runs older ARM variants (a v7 host takes
  v6 and v5), preferring the newest it can run;
- entries with an unknown platform (buildx attestations: ``unknown/unknown``) never match;
- among equally good entries the first in the index wins (the order the publisher chose).
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
}


class NoMatchingPlatform(Exception):
    """The index has no entry this host can run."""


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def normalize(os_: str, arch: str, variant: str = "") -> Platform:
    os_ = (os_ or "").lower()
    arch = (arch or "").lower()
    variant = (variant or "").lower()
    if arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        variant = variant or implied
    if arch == "arm64" and variant in ("", "8"):
        variant = "v8"
    elif arch == "arm" and variant == "":
        variant = "v7"
    elif arch == "arm" and variant.isdigit():
        variant = "v" + variant
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_, arch, variant)


def host_platform() -> Platform:
    """This machine's platform (Linux only, as noded is)."""
    return normalize("linux", _platform.machine())


def _arm_level(variant: str) -> int:
    return int(variant[1:]) if variant.startswith("v") and variant[1:].isdigit() else -1


def _score(want: Platform, have: Platform) -> int | None:
    """How good ``have`` is for a ``want`` host; None when it cannot run there. Higher is better."""
    if have.os != want.os or have.architecture != want.architecture:
        return None
    if have.variant == want.variant:
        return 100
    if want.architecture == "arm":
        level, wanted = _arm_level(have.variant), _arm_level(want.variant)
        if 0 <= level <= wanted:
            return level
    return None


def choose_manifest(index: Mapping[str, Any], want: Platform | None = None) -> dict[str, Any]:
    """The descriptor in ``index["manifests"]`` to pull for ``want`` (default: this host)."""
    want = normalize(want.os, want.architecture, want.variant) if want else host_platform()
    best: tuple[int, dict[str, Any]] | None = None
    offered: list[str] = []
    for desc in index.get("manifests") or []:
        p = desc.get("platform") or {}
        have = normalize(p.get("os", ""), p.get("architecture", ""), p.get("variant", ""))
        offered.append(str(have) or "(no platform)")
        score = _score(want, have)
        if score is not None and (best is None or score > best[0]):
            best = (score, dict(desc))
    if best is None:
        raise NoMatchingPlatform(
            f"no match for platform {want} in manifest list (entries: {', '.join(offered) or 'none'})"
        )
    return best[1]

"""Platform choice in a manifest list / OCI index (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from noded.images.platform import NoMatchingPlatform, Platform, choose_manifest, host_platform, normalize


def index(*platforms: tuple[str, str, str]) -> dict[str, Any]:
    out = []
    for i, (os_, arch, variant) in enumerate(platforms):
        p = {"os": os_, "architecture": arch}
        if variant:
            p["variant"] = variant
        out.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{i}", "platform": p})
    return {"schemaVersion": 2, "manifests": out}


def test_normalize_aliases_and_default_variants() -> None:
    assert normalize("linux", "x86_64") == Platform("linux", "amd64")
    assert normalize("Linux", "aarch64") == Platform("linux", "arm64", "v8")
    assert normalize("linux", "arm64", "8") == Platform("linux", "arm64", "v8")
    assert normalize("linux", "arm") == Platform("linux", "arm", "v7")
    assert normalize("linux", "armhf") == Platform("linux", "arm", "v7")
    assert normalize("linux", "amd64", "v1") == Platform("linux", "amd64")
    assert host_platform().os == "linux" and host_platform().architecture in (
        "amd64",
        "arm64",
        "arm",
        "386",
        "ppc64le",
        "s390x",
        "riscv64",
    )


def test_picks_os_and_arch() -> None:
    idx = index(("linux", "arm64", "v8"), ("linux", "amd64", ""), ("windows", "amd64", ""))
    assert choose_manifest(idx, Platform("linux", "amd64"))["digest"] == "sha256:1"
    assert choose_manifest(idx, Platform("linux", "arm64", "v8"))["digest"] == "sha256:0"
    assert choose_manifest(idx, Platform("windows", "amd64"))["digest"] == "sha256:2"


def test_arm64_without_variant_matches_v8_host() -> None:
    assert choose_manifest(index(("linux", "arm64", "")), normalize("linux", "aarch64"))["digest"] == "sha256:0"


def test_arm_host_prefers_exact_then_newest_older_variant() -> None:
    idx = index(("linux", "arm", "v5"), ("linux", "arm", "v6"), ("linux", "arm", "v8"))
    assert choose_manifest(idx, Platform("linux", "arm", "v7"))["digest"] == "sha256:1"
    idx2 = index(("linux", "arm", "v6"), ("linux", "arm", "v7"))
    assert choose_manifest(idx2, Platform("linux", "arm", "v7"))["digest"] == "sha256:1"


def test_first_of_equals_wins_and_attestations_never_match() -> None:
    idx = index(("unknown", "unknown", ""), ("linux", "amd64", ""), ("linux", "amd64", ""))
    assert choose_manifest(idx, Platform("linux", "amd64"))["digest"] == "sha256:1"


def test_no_match_lists_what_the_index_offers() -> None:
    with pytest.raises(NoMatchingPlatform) as info:
        choose_manifest(index(("linux", "arm64", "v8"), ("linux", "s390x", "")), Platform("linux", "amd64"))
    msg = str(info.value)
    assert "linux/amd64" in msg and "linux/arm64/v8" in msg and "linux/s390x" in msg
    with pytest.raises(NoMatchingPlatform):
        choose_manifest({"manifests": []}, Platform("linux", "amd64"))
    # amd64 v2+ images need a host known to be v2+: not assumed.
    with pytest.raises(NoMatchingPlatform):
        choose_manifest(index(("linux", "amd64", "v3")), Platform("linux", "amd64"))

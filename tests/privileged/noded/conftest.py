"""Fixtures for noded's privileged tests: lab images (built once per session) and a registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.images import build_lab_images
from tests.helpers.registry import Registry, start_registry


@pytest.fixture(scope="session")
def lab_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_lab_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, lab_images: dict[str, Path]) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        for name, layout in lab_images.items():
            reg.push(layout, f"kubelab/{name}:latest")
        yield reg
    finally:
        reg.stop()

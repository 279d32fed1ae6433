"""Sample datasets for the data tests, written once per test session (they are read-only here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sample_data import make_chest_xray, make_cifar10, make_image_folder


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cifar10(tmp_path_factory.mktemp("cifar"), n_train=200, n_test=50, seed=3)


@pytest.fixture(scope="session")
def folder_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("folder"), classes=("cat", "dog", "fox"), per_class=20)


@pytest.fixture(scope="session")
def split_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("splits"), per_class=16, with_splits=True)


@pytest.fixture(scope="session")
def chest_xray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chest_xray(tmp_path_factory.mktemp("xray"), size=48)


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`CNNQ_CACHE_MEMORY=0`: folder sets are decoded by DataLoader workers every epoch, never cached."""
    from cnnq.settings import reload_settings

    monkeypatch.setenv("CNNQ_CACHE_MEMORY", "0")
    reload_settings()
    yield
    monkeypatch.delenv("CNNQ_CACHE_MEMORY")
    reload_settings()

"""`cnnq data fetch|info` through the real CLI (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sample_data import make_chest_xray


def test_fetch_refuses_unknown_names_with_exit_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("imagenet", "xray"):
        result = cli("data", "fetch", name, "--data-root", tmp_path)
        assert result.code == 2
        assert f"cannot fetch '{name}'" in result.stderr and "mnist, cifar10" in result.stderr
        assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_info_reports_splits_counts_and_skipped_files(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chest = make_chest_xray(tmp_path, size=32)
    result = cli("data", "info", "xray", "--data-root", chest, "--image-size", "32", "--json")
    assert result.code == 0, result.stderr
    info = json.loads(result.stdout)
    assert (
        info["classes"] == ["NORMAL", "PNEUMONIA"] and info["in_channels"] == 1 and info["image_size"] == 32
    )
    assert info["splits"] == {"train": 85, "val": 9, "test": 20}
    assert sum(info["class_counts"]) == 85
    assert {Path(s["path"]).name for s in info["skipped"]} == {"broken_truncated.jpeg", "broken_empty.png"}

    table = cli("data", "info", "xray", "--data-root", chest)
    # Without --image-size, the set's own size (its images are 32 px), and a line that says so.
    assert table.code == 0 and "PNEUMONIA" in table.stdout and "from the data" in table.stdout
    assert "32x32" in table.stdout


def test_info_on_a_missing_set_names_the_fetch_command(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("data", "info", "mnist", "--data-root", tmp_path)
    assert result.code == 2
    assert f"cnnq data fetch mnist --data-root {tmp_path}" in result.stderr.replace("\n", "")


def test_fetch_of_a_set_already_there_downloads_nothing(cli, mnist_root: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("data", "fetch", "mnist", "--data-root", mnist_root)
    assert result.code == 0, result.stderr
    assert str(mnist_root / "MNIST" / "raw") in result.stdout.replace("\n", "")

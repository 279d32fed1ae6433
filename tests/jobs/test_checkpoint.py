"""Checkpoint files: atomic writes, weights_only loading, RNG states that round-trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnq.errors import UserError
from cnnq.jobs.checkpoint import (
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.ones(3)})
    save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(3)})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2
    assert torch.equal(loaded["weights"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_states()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_states(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) == expected


def test_a_file_with_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"object": Path("/etc/passwd")}, path)  # an arbitrary class: not allowed by weights_only
    with pytest.raises(UserError, match="not a readable cnnq checkpoint"):
        load_checkpoint(path)


def test_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pt")

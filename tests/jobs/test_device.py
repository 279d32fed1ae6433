"""Device choice, thread pools and the precision plan on this machine."""

from __future__ import annotations

import pytest
import torch

from cnnq.errors import UserError
from cnnq.jobs.device import (
    configure_cpu,
    cpu_has_native_bf16,
    pick_device,
    plan_precision,
    trains_channels_last,
)
from cnnq.settings import usable_cores


def test_auto_picks_what_the_process_has() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_in_one_line() -> None:
    with pytest.raises(UserError, match="--device cuda") as error:
        pick_device("cuda")
    assert "\n" not in str(error.value)


def test_threads_follow_the_usable_cores(use_settings) -> None:  # type: ignore[no-untyped-def]
    use_settings(CNNQ_TORCH_THREADS="0")
    assert configure_cpu() == usable_cores() == torch.get_num_threads()
    use_settings(CNNQ_TORCH_THREADS="1")
    assert configure_cpu() == 1 == torch.get_num_threads()


def test_fp32_is_plain_and_cpu_half_precision_falls_back_without_native_bf16() -> None:
    cpu = torch.device("cpu")
    assert plan_precision("fp32", cpu).dtype is None
    bf16 = plan_precision("bf16", cpu)
    fp16 = plan_precision("fp16", cpu)
    assert not fp16.scaled and fp16.dtype is None and fp16.note
    if cpu_has_native_bf16():
        assert bf16.dtype is torch.bfloat16
    else:
        assert bf16.dtype is None and "running fp32" in (bf16.note or "")


def test_training_layout_is_channels_last_on_a_cpu_for_small_inputs_unless_told() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trains_channels_last(None, cpu, 28) and trains_channels_last(None, cpu, 32)
    assert not trains_channels_last(None, cpu, 64)  # measured slower there (README Measured)
    assert not trains_channels_last(None, cuda, 28)
    assert trains_channels_last(True, cpu, 224) and not trains_channels_last(False, cpu, 28)

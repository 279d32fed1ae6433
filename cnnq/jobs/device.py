"""Where a job runs: the device, torch's thread pools, the allocator, and the mixed-precision plan."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from cnnq.errors import UserError
from cnnq.jobs.allocator import keep_freed_memory
from cnnq.settings import get_settings, usable_cores

_threads_configured = False


def pick_device(requested: str = "auto") -> torch.device:
    """`auto` is CUDA when this process sees a GPU, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda: this worker sees no CUDA GPU; use --device cpu or a GPU worker's queue"
        )
    return torch.device(requested)


def job_threads() -> int:
    """The torch threads a job takes: `CNNQ_TORCH_THREADS`, else the cores this process may run on."""
    return get_settings().torch_threads or usable_cores()


def configure_cpu() -> int:
    """Set torch's thread pools so that one job never oversubscribes its cores, and have the allocator
    keep what a step frees for the next (`cnnq.jobs.allocator`); returns the threads.

    `CNNQ_TORCH_THREADS` wins; else the cores this process may run on (its affinity, not the host's
    count). The inter-op pool can only be sized before torch first uses it, hence the guard.
    """
    global _threads_configured
    threads = job_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if not _threads_configured:
        with contextlib.suppress(RuntimeError):  # already started by an earlier parallel op
            torch.set_num_interop_threads(min(threads, 2))
        _threads_configured = True
    keep_freed_memory()
    return threads


# Training's channels_last default on a CPU: up to this side. With cnnq's allocator, oneDNN ran the
# classic nets' steps 1.18-1.20x faster in channels_last at 28-32 px and 0.82-1.07x (mostly slower) at
# 48-96 px; ResNet-18 1.14x at 128 px, 1.02x at 224 (`benchmarks/cpu_training_step.py --layouts`, a
# 2-core Zen 3 EPYC; README Measured). Other CPUs may differ: `--channels-last` asks for it anywhere.
CHANNELS_LAST_MAX_SIDE = 32


def trains_channels_last(requested: bool | None, device: torch.device, image_size: int) -> bool:
    """The layout a training job uses: as asked, else channels_last on a CPU for small inputs only."""
    if requested is not None:
        return requested
    return device.type == "cpu" and image_size <= CHANNELS_LAST_MAX_SIDE


@dataclass(frozen=True)
class PrecisionPlan:
    """How a job computes: `dtype` None is plain fp32; `scaled` means fp16 with a GradScaler."""

    requested: str
    dtype: torch.dtype | None
    scaled: bool
    note: str | None = None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def cpu_has_native_bf16() -> bool:
    """AMX tiles (Intel since Sapphire Rapids) or AVX-512 BF16 dot products (AMD Zen 4 and later)."""
    if torch.backends.cpu.get_cpu_capability().startswith("AMX"):
        return True
    return _cpu_flag("amx_bf16") or _cpu_flag("avx512_bf16")


def cpu_has_int8_dot() -> bool:
    """VNNI (AVX-512 or AVX) or AMX int8: the instructions that make ONNX Runtime's int8 pay."""
    return any(_cpu_flag(flag) for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def _cpu_flag(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and flag in line.split() for line in cpuinfo)
    except OSError:
        return False


def plan_precision(requested: str, device: torch.device) -> PrecisionPlan:
    """The precision a job can use here; falls back to fp32 (with a note to log) where it would not pay.

    On CUDA: fp16 autocast with a GradScaler, bf16 autocast where the GPU supports it. On a CPU, bf16
    autocast only where the CPU computes bf16 natively (AMX or AVX-512 BF16: faster than fp32 for
    mnist-cnn on a 2-core Zen 5, slower for the tiny LeNet; README Measured); elsewhere bf16 is
    emulated and slower than fp32, and fp16 on a CPU is slower still, so both run as fp32.
    """
    if requested == "fp32":
        return PrecisionPlan(requested, None, False)
    if device.type == "cuda":
        if requested == "fp16":
            return PrecisionPlan(requested, torch.float16, True)
        if torch.cuda.is_bf16_supported():
            return PrecisionPlan(requested, torch.bfloat16, False)
        return PrecisionPlan(requested, None, False, "bf16: this GPU has no bf16 support; running fp32")
    capability = torch.backends.cpu.get_cpu_capability()
    if requested == "bf16" and cpu_has_native_bf16():
        return PrecisionPlan(requested, torch.bfloat16, False)
    why = "no fp16 arithmetic" if requested == "fp16" else "no AMX or AVX-512 BF16"
    return PrecisionPlan(
        requested,
        None,
        False,
        f"{requested}: this CPU ({capability}, {why}) computes it slower than fp32; running fp32",
    )


def autocast(device: torch.device, plan: PrecisionPlan) -> contextlib.AbstractContextManager[None]:
    """A reusable context for the forward pass: torch.autocast for the plan, nothing for fp32."""
    if plan.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=plan.dtype)

"""Which device to train on and which precision it gets: the one home for CPU, CUDA and MPS choices."""

from __future__ import annotations

import re

import torch

VALID_DEVICES = "cpu, cuda, cuda:N (N a GPU index such as 0) or mps"
NO_GPU_HINT = "on Colab choose Runtime ▸ Change runtime type ▸ T4 GPU"
# bf16 runs natively from Ampere (compute capability 8.0) on. Older GPUs such as the T4 (7.5) emulate it:
# torch.cuda.is_bf16_supported() says True there, but it is slow, so they get fp16 with a GradScaler.
BF16_CAPABILITY = (8, 0)
_DEVICE_PATTERN = re.compile(r"(cpu|mps|cuda)(?::(\d+))?")


class DeviceUnavailableError(RuntimeError):
    """A requested device cannot be used; the message says what to do instead."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given and usable, else the CUDA GPU, else an Apple GPU (MPS), else the CPU."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return _checked(device)


def _checked(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, or a DeviceUnavailableError saying why it cannot be used."""
    text = str(device).strip()
    match = _DEVICE_PATTERN.fullmatch(text)
    if match is None or (match[2] is not None and match[1] != "cuda"):
        raise DeviceUnavailableError(f"unknown device {text!r}; use {VALID_DEVICES}, or leave it out to pick one")
    kind, index = match[1], match[2]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {text!r} asked for, but torch sees no GPU; drop --device to use "
                                         f"the CPU, or {NO_GPU_HINT}")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise DeviceUnavailableError(f"device {text!r} asked for, but torch sees only {count} GPU(s) "
                                         f"(cuda:0 to cuda:{count - 1}); use one of those or plain cuda")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device {text!r} asked for, but torch sees no Apple GPU (MPS); drop "
                                     "--device to use the CPU or the GPU torch finds")
    return torch.device(text)


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512 BF16 or AMX).

    Elsewhere (AVX2 only) torch emulates bf16, many times slower than fp32 (docs/results.md measures it).
    """
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for `precision` ("auto", "fp32", "bf16", "fp16") on `device` (None: fp32)."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            native_bf16 = torch.cuda.get_device_capability(device) >= BF16_CAPABILITY
            return torch.bfloat16 if native_bf16 else torch.float16
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        # MPS stays in fp32: its autocast speed and accuracy have not been measured for these networks.
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def describe_precision(dtype: torch.dtype | None) -> str:
    """Words for an autocast dtype: how training will run."""
    if dtype is None:
        return "fp32"
    if dtype == torch.float16:
        return "fp16 autocast with a GradScaler"
    return "bf16 autocast"


def device_report(device: str | torch.device | None = None) -> str:
    """One or two lines for a notebook: which device trains and with which precision ("auto")."""
    device = pick_device(device)
    precision = describe_precision(autocast_dtype("auto", device))
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"GPU: {torch.cuda.get_device_name(device)} (compute capability {major}.{minor}): {precision}"
    if device.type == "mps":
        return f"Apple GPU (MPS): {precision}"
    return (f"No GPU attached: {NO_GPU_HINT}, then re-run from the top.\n"
            f"Training runs on the CPU ({precision}), many times slower.")

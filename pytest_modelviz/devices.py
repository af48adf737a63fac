"""Which device a test trains on, and whether CUDA is there. torch is imported only when asked."""

from __future__ import annotations

import functools

from pytest_modelviz.errors import DeviceUnavailableError


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cuda_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if cuda_available() else 0


def resolve_device(requested: str | None, *, setting: str = "auto", gpu_marker: bool = False) -> str:
    """The device string to train on.

    Precedence: an explicit argument, then the ``gpu`` marker (CUDA), then
    ``--modelviz-device``; ``auto`` means CUDA when available, else CPU. Asking for CUDA where there
    is none is an error, never a silent fall back to the CPU.
    """
    choice = requested or ("cuda" if gpu_marker and setting in ("auto", "cpu") else setting)
    if choice == "auto":
        return "cuda" if cuda_available() else "cpu"
    if choice.startswith("cuda"):
        check_cuda(choice)
    return choice


def check_cuda(device: str) -> None:
    if not cuda_available():
        raise DeviceUnavailableError(
            f"device {device!r} was asked for but CUDA is not available "
            "(torch.cuda.is_available() is False). Use --modelviz-device=cpu, or run on a GPU runner."
        )
    if ":" in device:
        index = int(device.split(":", 1)[1])
        if index >= cuda_count():
            raise DeviceUnavailableError(
                f"device {device!r} was asked for but only {cuda_count()} CUDA device(s) exist"
            )

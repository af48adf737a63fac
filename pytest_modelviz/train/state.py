"""What training must leave as it found (the caller's RNG state) and what it must change (weights).

Weights are remembered as fingerprints, not copies, so a check costs three float64 numbers per
tensor whatever the model's size: the sum, the sum of squares and the sum of absolute values,
reduced in float64 on the tensor's device. A real update moves at least one of them (below about
10^8 values, a float64 sum registers even a one-ulp change of one float32 element); a tensor left
alone keeps all three bit for bit. An update that only permuted a tensor's values would go unseen;
optimizers do not do that.
A complex tensor (a RoPE ``freqs_cis`` buffer) is read as its real and imaginary parts side by side
(``view_as_real``), so a change of either part is seen, and no cast discards one with a warning.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Fingerprint = tuple[float, float, float]


def fingerprints(tensors: Mapping[str, torch.Tensor]) -> dict[str, Fingerprint]:
    import torch

    # A tensor on the meta device has no values to fingerprint; it is left out rather than failing
    # the run at its end (``assert_on_device`` is the check that names it).
    tensors = {name: t for name, t in tensors.items() if not t.is_meta}
    if not tensors:
        return {}
    rows = []
    for t in tensors.values():
        flat = t.detach().reshape(-1)
        if flat.is_complex():
            flat = torch.view_as_real(flat.resolve_conj()).reshape(-1)
        flat = flat.double()
        rows.append(torch.stack([flat.sum(), flat.dot(flat), torch.linalg.vector_norm(flat, 1)]))
    # One copy to the host (rows of a model split over devices are gathered on the first one).
    host = torch.stack([r.to(rows[0].device) for r in rows]).cpu().tolist()
    return {name: (a, b, c) for name, (a, b, c) in zip(tensors, host, strict=True)}  # one row per tensor


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch (CPU and ``device``), ``random`` and numpy; give the caller's RNG states back after."""
    import numpy as np
    import torch

    devices = [device] if device.type == "cuda" else []
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def training_flags(model: torch.nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def restore_training_flags(model: torch.nn.Module, flags: Mapping[str, bool]) -> None:
    for name, m in model.named_modules():
        if name in flags:
            m.training = flags[name]

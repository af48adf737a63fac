"""Histograms of many tensors reduced on their device, with one transfer to the host.

TensorBoard's own ``add_histogram`` copies every tensor to the host and bins it with numpy; for a
model's parameters every few steps that dominates a short training run. Here each tensor becomes
``bins`` counts plus four moments on its device, everything is concatenated, and a single copy brings
the lot back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from pytest_modelviz.sinks.base import Histogram

if TYPE_CHECKING:
    import torch

DEFAULT_BINS = 64
_MOMENTS = 4  # min, max, sum, sum of squares
_CHUNK = 1 << 22  # values binned at a time on the CPU, bounding the temporary bin indices


def device_histograms(tensors: Sequence[torch.Tensor], bins: int = DEFAULT_BINS) -> list[Histogram]:
    """One ``Histogram`` per tensor (empty tensors give an empty histogram). Values must be finite.

    On the CPU the ranges the tensors are binned over are read first (reading them costs nothing
    there) and the values are binned with ``bincount`` (see ``_cpu_counts``); elsewhere ``histc``
    with ``min == max == 0`` bins over the data's own range without a round trip. Where every
    value is equal the range is widened to ``[v - 1, v + 1]``, as ``histc`` does.
    """
    import torch

    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not tensors:
        return []
    flats = [t.detach().reshape(-1).float() for t in tensors]
    moments = [torch.stack([*torch.aminmax(f), f.sum(), f.dot(f)]) if f.numel() else f.new_zeros(_MOMENTS)
               for f in flats]
    # The CPU tensors' ranges in one conversion; elsewhere histc finds the range on the device.
    on_cpu = [i for i, f in enumerate(flats) if f.device.type == "cpu" and f.numel()]
    ranges = dict(zip(on_cpu, torch.stack([moments[i][:2] for i in on_cpu]).tolist())) if on_cpu else {}
    rows = []
    for i, flat in enumerate(flats):
        if flat.numel() == 0:
            counts = flat.new_zeros(bins)
        elif i in ranges:
            lo, hi = ranges[i]
            lo, hi = (lo - 1.0, hi + 1.0) if lo == hi else (lo, hi)
            counts = _cpu_counts(flat, lo, hi, bins)
        else:
            counts = torch.histc(flat, bins=bins)
        rows.append(torch.cat([moments[i], counts]))
    host = _to_host(rows)
    return [_histogram(values, t.numel(), bins) for values, t in zip(host, tensors)]


def _cpu_counts(flat: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """What ``torch.histc(flat, bins, lo, hi)`` counts, several times faster on the CPU: each
    value's bin index ``(v - lo) * bins / (hi - lo)`` truncated, counted by ``bincount``; ``hi``
    itself lands in bin ``bins`` and is folded into the last bin, as ``histc`` and numpy do."""
    import torch

    scale = bins / (hi - lo)
    if scale > 1e30:  # a range too narrow for float32 indices
        return torch.histc(flat, bins=bins, min=lo, max=hi)
    out = torch.zeros(bins + 1, dtype=torch.int64)
    for part in flat.split(_CHUNK):
        out += torch.bincount((part - lo).mul_(scale).to(torch.int32), minlength=bins + 1)
    out[bins - 1] += out[bins]
    return out[:bins].float()


def _to_host(rows: list[torch.Tensor]) -> list[list[float]]:
    import torch

    # Rows may live on several devices (a model split over GPUs): one copy per device.
    by_device: dict[torch.device, list[int]] = {}
    for i, row in enumerate(rows):
        by_device.setdefault(row.device, []).append(i)
    out: list[list[float]] = [[] for _ in rows]
    for indices in by_device.values():
        stacked = torch.stack([rows[i] for i in indices]).cpu().double().tolist()
        for i, values in zip(indices, stacked):
            out[i] = values
    return out


def _histogram(values: list[float], num: int, bins: int) -> Histogram:
    if num == 0:
        return Histogram(edges=[0.0, 0.0], counts=[0.0], min=0.0, max=0.0, num=0, sum=0.0, sum_squares=0.0)
    lo, hi, total, squares = values[:_MOMENTS]
    counts = values[_MOMENTS:]
    left, right = (lo - 1.0, hi + 1.0) if lo == hi else (lo, hi)
    width = (right - left) / bins
    edges = [left + i * width for i in range(bins)] + [right]
    return Histogram(edges=edges, counts=counts, min=lo, max=hi, num=num, sum=total, sum_squares=squares)

"""Histograms of many tensors reduced on their device, with one transfer to the host.

TensorBoard's own ``add_histogram`` copies every tensor to the host and bins it with numpy; for a
model's parameters every few steps that dominates a short training run. Here each tensor becomes
``bins`` counts plus four moments on its device, everything is concatenated, and a single copy brings
the lot back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pytest_modelviz.sink import Histogram

if TYPE_CHECKING:
    import torch

DEFAULT_BINS = 64
_MOMENTS = 4  # min, max, sum, sum of squares
# Values binned at a time on the CPU: small enough that a chunk's scratch copies (4 + 2 bytes a
# value) stay in the last-level cache between the passes over them, large enough that the per-op
# overhead (eight ops a chunk) stays small. Measured on resnet50's parameters on a 2-core EPYC
# (512 KiB L2, 32 MiB L3): 2^16 95 ms, 2^17 75 ms, 2^18 66 ms, 2^19 66 ms, 2^20 68 ms.
_CHUNK = 1 << 18
# CPU tensors up to this many values are binned together, one ``bincount`` for all of them: a
# model's many biases and norm weights would otherwise cost more in per-call overhead than in work.
_BATCHED = 1 << 14
_BATCHED_TABLE = 1 << 20  # at most this many counts in one batched bincount's table
_INT16_MAX = (1 << 15) - 1
_MAX_SCALE = 1e30  # beyond it the range is too narrow for float32 bin indices: ``histc`` bins it


def device_histograms(tensors: Sequence[torch.Tensor], bins: int = DEFAULT_BINS) -> list[Histogram]:
    """One ``Histogram`` per tensor (empty tensors give an empty histogram). Values must be finite.

    On the CPU the ranges the tensors are binned over are read first (reading them costs nothing
    there) and the values are binned with ``bincount`` (see ``_cpu_counts``); elsewhere ``histc``
    with ``min == max == 0`` bins over the data's own range without a round trip. Where every
    value is equal the range is widened to ``[v - 1, v + 1]``, as ``histc`` does.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not tensors:
        return []
    with _one_cpu_thread():
        return _histograms(tensors, bins)


@contextlib.contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """torch's CPU ops on one thread for the duration.

    The CPU work here is many short ops: each parallel one ends at a barrier that waits for every
    intra-op thread, and on a loaded machine one of them is often descheduled, so with 2 threads
    histograms ran several times slower than with one (and slower than tensorboardX's numpy).
    The work is mostly memory-bound and ``bincount`` is serial anyway: one thread is as fast on
    an idle machine and steady on a busy one. The caller's setting is restored after.
    """
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _histograms(tensors: Sequence[torch.Tensor], bins: int) -> list[Histogram]:
    import torch

    flats = [t.detach().reshape(-1).float() for t in tensors]
    # A large CPU tensor's sum and sum of squares are taken chunk by chunk while it is binned,
    # each chunk then read from the cache: two passes over memory fewer.
    fused = {i for i, f in enumerate(flats) if f.device.type == "cpu" and f.numel() > _BATCHED}
    moments = [_moments(f, sums=i not in fused) for i, f in enumerate(flats)]
    # The CPU tensors' ranges in one conversion; elsewhere histc finds the range on the device.
    on_cpu = [i for i, f in enumerate(flats) if f.device.type == "cpu" and f.numel()]
    lo_hi = torch.stack([moments[i][:2] for i in on_cpu]).tolist() if on_cpu else []
    ranges = dict(zip(on_cpu, lo_hi, strict=True))
    ranges = {i: (lo - 1.0, hi + 1.0) if lo == hi else (lo, hi) for i, (lo, hi) in ranges.items()}
    counts, sums = _cpu_histograms(flats, ranges, bins, fused)
    for i in fused:
        moments[i] = torch.cat([moments[i], sums[i]])
    rows = []
    for i, flat in enumerate(flats):
        if flat.numel() == 0:
            row_counts = flat.new_zeros(bins)
        elif i in counts:
            row_counts = counts[i]
        else:
            row_counts = torch.histc(flat, bins=bins)
        rows.append(torch.cat([moments[i], row_counts]))
    host = _to_host(rows)
    return [_histogram(values, t.numel(), bins) for values, t in zip(host, tensors, strict=True)]


def _moments(flat: torch.Tensor, sums: bool) -> torch.Tensor:
    """min, max, and with ``sums`` the sum and sum of squares (zeros for an empty tensor)."""
    import torch

    if not flat.numel():
        return flat.new_zeros(_MOMENTS)
    if not sums:
        return torch.stack(torch.aminmax(flat))
    return torch.stack([*torch.aminmax(flat), flat.sum(), flat.dot(flat)])


def _cpu_histograms(flats: list[torch.Tensor], ranges: dict[int, tuple[float, float]], bins: int,
                    fused: set[int]) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """The float32 counts of the CPU tensors ``ranges`` names, each binned over its range, and
    the sum and sum of squares of those ``fused`` names."""
    import torch

    counts: dict[int, torch.Tensor] = {}
    sums: dict[int, torch.Tensor] = {}
    small: list[int] = []
    large: list[int] = []
    for i, (lo, hi) in ranges.items():
        if bins / (hi - lo) > _MAX_SCALE:
            counts[i] = torch.histc(flats[i], bins=bins, min=lo, max=hi)
            if i in fused:
                sums[i] = _moments(flats[i], sums=True)[2:]
        else:
            (small if flats[i].numel() <= _BATCHED else large).append(i)
    group = max(1, _BATCHED_TABLE // (bins + 1))  # tensors per bincount, bounding its table
    for first in range(0, len(small), group):
        batch = small[first:first + group]
        batch_counts = _batched_counts([flats[i] for i in batch], [ranges[i] for i in batch], bins)
        counts.update(zip(batch, batch_counts, strict=True))
    if large:
        scratch = _Scratch(max(flats[i].numel() for i in large), bins)
        for i in large:
            counts[i], sums[i] = _cpu_counts(flats[i], *ranges[i], bins, scratch)
    return counts, sums


def _bin_indices(values: torch.Tensor, lo: float | torch.Tensor, scale: float | torch.Tensor,
                 out: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Each value's bin ``(v - lo) * scale`` in float32, truncated by the copy into ``out``; the
    top of the range lands in bin ``bins``. Every path bins with exactly this arithmetic."""
    import torch

    return out.copy_(torch.sub(values, lo, out=scratch).mul_(scale))


def _fold(counts: torch.Tensor, bins: int) -> torch.Tensor:
    """``bins + 1`` counts (the last one: values equal to the top of the range) as ``bins`` float
    counts, the top folded into the last bin as ``histc`` and numpy do."""
    counts[..., bins - 1] += counts[..., bins]
    return counts[..., :bins].float()


def _batched_counts(flats: list[torch.Tensor], ranges: list[tuple[float, float]],
                    bins: int) -> list[torch.Tensor]:
    """``_cpu_counts`` of many small tensors at once: each value's bin is offset by its tensor's
    position times ``bins + 1``, so one ``bincount`` counts every tensor's bins side by side."""
    import torch

    width = bins + 1
    values = torch.cat(flats)
    owner = torch.repeat_interleave(torch.tensor([f.numel() for f in flats]), output_size=values.numel())
    # Rounded to float32 exactly as a Python scalar is in ``sub`` and ``mul_``.
    lows = torch.tensor([lo for lo, _ in ranges], dtype=torch.float64).float()[owner]
    scales = torch.tensor([bins / (hi - lo) for lo, hi in ranges], dtype=torch.float64).float()[owner]
    indices = _bin_indices(values, lows, scales, torch.empty(values.numel(), dtype=torch.int64), values)
    indices.add_(owner, alpha=width)
    table = torch.bincount(indices, minlength=len(flats) * width).view(len(flats), width)
    return list(_fold(table, bins).unbind())


class _Scratch:
    """Buffers reused by every chunk of every large tensor: fresh ones would cost page faults."""

    def __init__(self, numel: int, bins: int) -> None:
        import torch

        width = bins + 1  # bin ``bins`` holds the values equal to the top of the range
        self.paired = width * width <= _INT16_MAX
        index_dtype = torch.int16 if width <= _INT16_MAX else torch.int32
        self.chunk = _CHUNK + _CHUNK % 2  # even, so each chunk's pairs follow the previous chunk's
        self.values = torch.empty(min(numel, self.chunk))
        self.indices = torch.empty(min(numel, self.chunk), dtype=index_dtype)
        self.pairs = torch.empty(numel // 2 if self.paired else 0, dtype=index_dtype)


def _cpu_counts(flat: torch.Tensor, lo: float, hi: float, bins: int,
                scratch: _Scratch) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``torch.histc(flat, bins, lo, hi)`` counts, several times faster on the CPU, and the
    values' sum and sum of squares (float32 sums of the chunks, added in float64): each
    value's bin index ``(v - lo) * bins / (hi - lo)`` truncated, counted by ``bincount``; ``hi``
    itself lands in bin ``bins`` and is folded into the last bin, as ``histc`` and numpy do.

    ``bincount`` is a serial loop, so where the indices fit it counts pairs: the indices ``a`` of
    a chunk's first half and ``b`` of its second half become one index ``a * (bins + 1) + b``, half
    as many increments; the counts are the pair table's row sums plus its column sums."""
    import torch

    scale = bins / (hi - lo)
    width = bins + 1
    total = torch.zeros(width, dtype=torch.int64)
    partials = torch.empty(-(-flat.numel() // scratch.chunk), 2)
    for k, start in enumerate(range(0, flat.numel(), scratch.chunk)):
        part = flat[start:start + scratch.chunk]
        n = part.numel()
        torch.sum(part, dim=0, out=partials[k, 0])
        torch.dot(part, part, out=partials[k, 1])
        indices = _bin_indices(part, lo, scale, scratch.indices[:n], scratch.values[:n])
        half = n // 2 if scratch.paired else 0
        if half:
            torch.add(indices[half:2 * half], indices[:half], alpha=width,
                      out=scratch.pairs[start // 2:start // 2 + half])
        if 2 * half < n:
            total += torch.bincount(indices[2 * half:], minlength=width)
    if scratch.paired and flat.numel() > 1:
        table = torch.bincount(scratch.pairs[:flat.numel() // 2], minlength=width * width).view(width, width)
        total += table.sum(0) + table.sum(1)
    return _fold(total, bins), partials.double().sum(0).float()


def _to_host(rows: list[torch.Tensor]) -> list[list[float]]:
    import torch

    # Rows may live on several devices (a model split over GPUs): one copy per device.
    by_device: dict[torch.device, list[int]] = {}
    for i, row in enumerate(rows):
        by_device.setdefault(row.device, []).append(i)
    out: list[list[float]] = [[] for _ in rows]
    for indices in by_device.values():
        stacked = torch.stack([rows[i] for i in indices]).cpu().double().tolist()
        for i, values in zip(indices, stacked, strict=True):
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

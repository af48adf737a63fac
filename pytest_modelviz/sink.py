"""The one interface the training loop logs through, so it never asks which sinks are on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Histogram:
    """A histogram already reduced on the device: ``counts[i]`` values fell in
    ``[edges[i], edges[i+1])``; the moments are those TensorBoard's raw histograms carry."""

    edges: Sequence[float]  # len(counts) + 1
    counts: Sequence[float]
    min: float
    max: float
    num: int
    sum: float
    sum_squares: float


class MetricSink(Protocol):
    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Per-step scalars, tags like ``"train/loss"``, ``"train/lr"``, ``"eval/accuracy"``."""

    def histogram(self, step: int, tag: str, hist: Histogram) -> None:
        """A parameter or gradient histogram, tags like ``"params/fc.weight"``, ``"grads/fc.weight"``."""

    def image_grid(self, step: int, tag: str, grid: torch.Tensor) -> None:
        """A CHW float image grid in [0, 1] (torchvision ``make_grid`` output), on the CPU."""

    def heatmap(self, step: int, tag: str, matrix: torch.Tensor) -> None:
        """A 2-D weight matrix on the CPU (visdom draws it; TensorBoard may ignore it)."""

    def embedding(self, step: int, tag: str, features: torch.Tensor, labels: Sequence[int] | None,
                  images: torch.Tensor | None) -> None:
        """Features of a fixed batch for an embedding projector, tags like ``"embedding/fc.input"``:
        ``features`` a ``(rows, dims)`` float matrix on the CPU; ``labels`` one class id per row or
        None; ``images`` ``(rows, channels, side, side)`` floats in [0, 1] on the CPU, 1 or 3
        channels, or None."""

    def text(self, tag: str, text: str) -> None:
        """A text summary (markdown-ish plain text)."""

    def close(self) -> None:
        """Flush; called once when training ends, also when it failed."""

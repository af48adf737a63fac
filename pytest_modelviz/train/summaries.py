"""What the training loop hands its sinks besides numbers: small pictures of weights and inputs.

Both are reduced on the tensor's device before one copy to the CPU, so a large matrix or a large
batch costs what a small one does. Neither imports torchvision: its import alone takes seconds,
more than a whole short run of a small model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

HEATMAP_MAX = 32  # the weight heatmap has at most this many rows and columns
IMAGE_GRID_MAX = 32  # first input images drawn in the grid
GRID_COLUMNS = 8
GRID_PADDING = 2


def heatmap_cells(weight: torch.Tensor, side: int = HEATMAP_MAX) -> torch.Tensor:
    """A 2-D ``weight`` block-averaged on its device to at most ``side`` x ``side`` cells, as a
    float copy on the CPU: later updates of the weight do not change it."""
    import torch

    cells = weight.detach().float()
    if cells.shape[0] > side or cells.shape[1] > side:
        shape = (min(side, cells.shape[0]), min(side, cells.shape[1]))
        cells = torch.nn.functional.adaptive_avg_pool2d(cells[None, None], shape)[0, 0]
    return cells.to("cpu", copy=True)


def is_image_batch(inputs: object) -> bool:
    """A float ``N x C x H x W`` batch with 1 (grey) or 3 (RGB) channels."""
    import torch

    return (isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and inputs.is_floating_point()
            and inputs.shape[1] in (1, 3))


def image_grid(images: torch.Tensor, limit: int = IMAGE_GRID_MAX, columns: int = GRID_COLUMNS,
               padding: int = GRID_PADDING) -> torch.Tensor:
    """The first ``limit`` images of an ``N x C x H x W`` batch tiled ``columns`` to a row, as a
    ``3 x H' x W'`` float picture on the CPU scaled to [0, 1] over the whole grid (what
    torchvision's ``make_grid(normalize=True)`` draws), grey images repeated to three channels."""

    batch = images[:limit].detach().float()
    count, channels, height, width = batch.shape
    if channels == 1:
        batch = batch.expand(count, 3, height, width)
    low, high = batch.min(), batch.max()
    batch = (batch - low) / (high - low).clamp_min(1e-5)
    rows, cols = math.ceil(count / columns), min(count, columns)
    cell_h, cell_w = height + padding, width + padding
    grid = batch.new_zeros(3, rows * cell_h + padding, cols * cell_w + padding)
    for index in range(count):
        top, left = (index // columns) * cell_h + padding, (index % columns) * cell_w + padding
        grid[:, top:top + height, left:left + width] = batch[index]
    return grid.to("cpu", copy=True)

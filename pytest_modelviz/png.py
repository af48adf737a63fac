"""The PNG a picture tensor is sent as, encoded once for every sink that shows it.

TensorBoard and visdom both want a PNG of the training run's input grid, and each of their
clients encodes its own with zlib's default level: two encodes of the same pixels, each costing
more than the rest of a short run's image logging. Here the grid is encoded once, at zlib level 1
(lossless like any PNG, several times faster, a little larger for smooth pictures and smaller for
noisy ones), and the second sink asking for the same pixels gets the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class Png:
    data: bytes
    height: int
    width: int


_last: tuple[tuple[int, ...], bytes, Png] | None = None  # the shape and pixels last encoded, and their PNG


def grid_png(grid: torch.Tensor) -> Png:
    """``grid``, a ``C x H x W`` picture with 3 (RGB) or 1 (grey) channels, as an 8-bit RGB PNG:
    float values in [0, 1] are scaled by 255 and truncated, as tensorboardX and visdom convert
    them, and values outside are clipped (there they would wrap around); ``uint8`` values are
    taken as they are."""
    global _last
    import torch
    from PIL import Image

    if grid.dim() != 3 or grid.shape[0] not in (1, 3):
        raise ValueError(f"an image grid is C x H x W with 1 or 3 channels, got shape {tuple(grid.shape)}")
    pixels = grid.detach().cpu()
    if pixels.dtype != torch.uint8:
        pixels = pixels.float().mul(255).clamp_(0, 255).to(torch.uint8)
    pixels = pixels.expand(3, -1, -1).permute(1, 2, 0).contiguous()
    shape, raw = tuple(pixels.shape), pixels.numpy().tobytes()
    last = _last
    if last is not None and last[0] == shape and last[1] == raw:  # the same bytes in another shape differ
        return last[2]
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="PNG", compress_level=COMPRESS_LEVEL)
    png = Png(data=buffer.getvalue(), height=shape[0], width=shape[1])
    _last = (shape, raw, png)
    return png

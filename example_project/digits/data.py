"""Handwritten digits that ship with scikit-learn (no download), as 1x28x28 normalized tensors.

Also a folder-of-PNGs dataset whose loader drops unreadable files instead of crashing, and a
sampler that rebalances a skewed label distribution.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, WeightedRandomSampler, default_collate

log = logging.getLogger(__name__)

SIZE = 28
TEST_EVERY = 5  # every 5th sample is held out: a fixed split, the same on every machine


@functools.lru_cache(maxsize=1)
def load_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as (images [N, 1, 28, 28] float32 with mean 0 and std 1, labels [N] int64)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 8x8, values 0..16
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = (images - images.mean()) / images.std()
    return images, torch.tensor(raw.target, dtype=torch.int64)


class Digits(Dataset):
    """The train or test split of the digits, optionally only some of the samples."""

    def __init__(self, split: str = "train", indices: Sequence[int] | None = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        images, labels = load_tensors()
        held_out = torch.arange(len(labels)) % TEST_EVERY == 0
        keep = held_out if split == "test" else ~held_out
        self.images, self.labels = images[keep], labels[keep]
        if indices is not None:
            index = torch.as_tensor(list(indices), dtype=torch.int64)
            self.images, self.labels = self.images[index], self.labels[index]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


# ---------------------------------------------------------------- a folder of PNG files


def export_pngs(folder: Path, count: int) -> list[Path]:
    """Write the first ``count`` digits as ``<folder>/<label>/<n>.png`` (8-bit grayscale 28x28)."""
    from PIL import Image

    images, labels = load_tensors()
    pixels = ((images - images.min()) / (images.max() - images.min()) * 255).round().to(torch.uint8)
    paths = []
    for n in range(count):
        path = Path(folder) / str(int(labels[n])) / f"{n:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[n, 0].numpy(), mode="L").save(path)
        paths.append(path)
    return paths


class PngFolder(Dataset):
    """``<root>/<label>/*.png``; an unreadable file yields ``None`` for ``DropCorrupt`` to drop."""

    def __init__(self, root: Path) -> None:
        self.files = sorted(Path(root).glob("*/*.png"))
        if not self.files:
            raise FileNotFoundError(f"no <label>/*.png files under {root}")
        images, _ = load_tensors()
        # PNGs hold 0..255: map them back onto the value range load_tensors produces.
        self._scale = (float(images.min()), float(images.max()))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        from PIL import Image, UnidentifiedImageError

        path = self.files[i]
        try:
            with Image.open(path) as img:
                pixels = torch.frombuffer(bytearray(img.convert("L").tobytes()), dtype=torch.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            log.warning("skipping unreadable image %s: %s", path, exc)
            return None
        lo, hi = self._scale
        image = pixels.reshape(1, SIZE, SIZE).float() / 255 * (hi - lo) + lo
        return image, torch.tensor(int(path.parent.name))


class DropCorrupt:
    """A ``collate_fn`` that drops samples the dataset could not read and counts them.

    The count lives in this object, so read it in the process that collates: with
    ``num_workers > 0`` each worker has its own copy and ``dropped`` stays 0 here.
    """

    def __init__(self) -> None:
        self.dropped = 0

    def __call__(self, batch: list[Any]) -> Any:
        kept = [sample for sample in batch if sample is not None]
        if len(kept) < len(batch):
            self.dropped += len(batch) - len(kept)
            log.warning("dropped %d unreadable sample(s) (%d so far)", len(batch) - len(kept), self.dropped)
        return default_collate(kept) if kept else None


# ---------------------------------------------------------------- imbalanced labels


def balanced_sampler(labels: torch.Tensor, *, seed: int = 0) -> WeightedRandomSampler:
    """Draw every class about equally often, however skewed ``labels`` is."""
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)


def imbalanced_indices(labels: torch.Tensor, minority: int, keep: int) -> list[int]:
    """Indices of every sample except all but ``keep`` of class ``minority``."""
    seen = 0
    out = []
    for i, label in enumerate(labels.tolist()):
        if label == minority:
            seen += 1
            if seen > keep:
                continue
        out.append(i)
    return out

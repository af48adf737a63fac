"""The data pipeline: real digits, a folder of PNGs with a corrupt file, a rebalancing sampler."""

from __future__ import annotations

import logging
from collections import Counter

import torch
from torch.utils.data import DataLoader

from digits.data import (
    Digits,
    DropCorrupt,
    PngFolder,
    balanced_sampler,
    export_pngs,
    imbalanced_indices,
    load_tensors,
)


def test_digits_are_normalized_28x28():
    images, labels = load_tensors()
    assert images.shape == (1797, 1, 28, 28) and images.dtype == torch.float32
    assert abs(images.mean().item()) < 1e-4 and abs(images.std().item() - 1) < 1e-4
    assert sorted(set(labels.tolist())) == list(range(10))


def test_split_is_fixed_and_complete():
    train, test = Digits("train"), Digits("test")
    assert (len(train), len(test)) == (1437, 360)
    images, _ = load_tensors()
    assert torch.equal(test.images[1], images[5])  # every 5th sample is held out
    assert set(test.labels.tolist()) == set(range(10)) == set(train.labels.tolist())


def test_png_folder_drops_the_corrupt_file(tmp_path, caplog):
    export_pngs(tmp_path, 12)
    (tmp_path / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    dataset = PngFolder(tmp_path)
    assert len(dataset) == 13
    collate = DropCorrupt()
    with caplog.at_level(logging.WARNING, logger="digits.data"):
        batches = list(DataLoader(dataset, batch_size=4, collate_fn=collate))
    assert collate.dropped == 1
    assert sum(len(labels) for _, labels in batches) == 12
    assert "broken.png" in caplog.text and "dropped 1 unreadable sample" in caplog.text
    # The PNGs round-trip to (nearly) the tensors they were written from.
    images, labels = load_tensors()
    first_image, first_label = dataset[0]
    assert first_label == labels[0]
    assert torch.allclose(first_image, images[0], atol=0.05)


def test_weighted_sampler_raises_the_minority_fraction():
    _, labels = load_tensors()
    skewed = labels[imbalanced_indices(labels, minority=0, keep=9)]
    before = (skewed == 0).float().mean().item()
    drawn = Counter(skewed[i].item() for i in balanced_sampler(skewed, seed=0))
    after = drawn[0] / sum(drawn.values())
    assert before < 0.01
    assert 0.06 < after < 0.14, f"class 0 drawn {after:.1%} of the time, expected about 10%"

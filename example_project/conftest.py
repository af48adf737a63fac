"""Fixtures shared by the example project's tests: small, seeded data loaders."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from digits.data import Digits


@pytest.fixture(scope="session")
def train_set() -> Digits:
    return Digits("train")


@pytest.fixture
def train_loader(train_set: Digits) -> DataLoader:
    # A seeded generator: the same batches in the same order on every run, so losses repeat.
    return DataLoader(train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def test_loader() -> DataLoader:
    return DataLoader(Digits("test"), batch_size=360)


@pytest.fixture
def digit_batch(train_set: Digits) -> torch.Tensor:
    """One real digit as the example input for architecture capture."""
    return train_set[0][0].unsqueeze(0)

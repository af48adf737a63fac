"""Models and data for the DistributedDataParallel tests: defined at module level, so each rank
can import them again when it unpickles what short_train sends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

FEATURES, CLASSES, SAMPLES, BATCH = 4, 3, 64, 8


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, FEATURES, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


def sharded_data(rank: int, world_size: int) -> DataLoader:
    """Each rank its own part of the data, as DDP needs."""
    ds = dataset()
    return DataLoader(ds, batch_size=BATCH, sampler=DistributedSampler(ds, world_size, rank, shuffle=True, seed=0))


def same_data() -> DataLoader:
    """A loader without a DistributedSampler: every rank draws the same batches."""
    return DataLoader(dataset(), batch_size=BATCH, shuffle=True)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_net() -> Net:
    return Net()


class SometimesBranch(nn.Module):
    """Its ``extra`` branch takes part in even training steps only."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(FEATURES, CLASSES)
        self.extra = nn.Linear(FEATURES, CLASSES)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.training:
            self.calls += 1
            if self.calls % 2 == 1:
                out = out + self.extra(x)
        return out


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(FEATURES, 16)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.fc(x))))


class LeavesPid(Net):
    """Each rank leaves a file named for its pid in ``folder`` at its first step."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            Path(self.folder, str(os.getpid())).touch()
        return super().forward(x)


class FailsOnRank1(LeavesPid):
    """Rank 1 raises in its forward at step 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if dist.get_rank() == 1 and self.calls == 3:
            raise ValueError("planted failure in the forward of rank 1")
        return out


class ExitsOnRank1(LeavesPid):
    """Rank 1 ends at step 1 without a word, as a rank killed by the OOM killer or a crash would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if dist.get_rank() == 1 and self.calls == 2:
            os._exit(3)
        return out


class HangsOnRank1(Net):
    """Rank 1 stops responding at step 2, as a rank stuck in I/O or a deadlock would."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if dist.get_rank() == 1 and self.calls == 3:
            time.sleep(3600)
        return super().forward(x)


def digits_cnn() -> nn.Module:
    """Two conv layers and two linear ones, as a digits classifier: with Adam, a few of its
    parameters get gradients near zero, where a few ulps change the update."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def sharded_digits(rank: int, world_size: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
    return DataLoader(ds, batch_size=16, sampler=DistributedSampler(ds, world_size, rank, seed=0))

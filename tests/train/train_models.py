"""Tiny models and data for the short_train tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def blobs(n: int = 64, features: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two separable classes: label = whether the first feature is positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, 0] > 0).long()


def batches(n_batches: int = 4, size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = blobs(n_batches * size, seed=seed)
    return [(x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]) for i in range(n_batches)]


def images(n: int = 16, channels: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 random images; label = whether the mean of the top half is larger."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 8, 8, generator=g)
    return x, (x[:, :, :4].mean(dim=(1, 2, 3)) > x[:, :, 4:].mean(dim=(1, 2, 3))).long()


def mlp(features: int = 4, hidden: int = 16, classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def bn_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


class SmallCNN(nn.Module):
    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.head(x.flatten(1))


class WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.spare = nn.Linear(8, 8)  # never called in forward
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, 2)
        self.b = nn.Linear(3, 2)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.a(left) + self.b(right)


def ce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


def sgd(params):  # noqa: ANN001, ANN201 - an optimizer factory as users write one
    return torch.optim.SGD(params, lr=0.1)

"""Small models the architecture tests capture: each one exercises one capture feature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNet(nn.Module):
    """The tiny MNIST-style network the diff tests widen (``channels`` of conv2)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, channels, 3, padding=1)
        self.fc = nn.Sequential(nn.Linear(channels * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class DictModel(nn.Module):
    """Dict input with a keyword argument, dict output, an LSTM and attention."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, batch: dict[str, torch.Tensor], *, scale: float = 1.0) -> dict[str, torch.Tensor]:
        h, (hn, _) = self.lstm(self.emb(batch["tokens"]))
        a, _ = self.attn(h, h, h)
        return {"logits": self.head(a[:, -1]) * scale, "state": hn}


class TiedLM(nn.Module):
    """Input embedding and output projection share one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.proj = nn.Linear(6, 20, bias=False)
        self.proj.weight = self.emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.emb(tokens))


class Repeated(nn.Module):
    """One block applied twice, and a module that exists but never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)
        self.unused_head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(torch.tanh(self.block(x)))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this; eager capture records the path."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Linear(3, 3)
        self.neg = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.pos(x)
        return self.neg(x)


class Exploding(nn.Module):
    """conv2 expects 8 channels but gets 16: forward raises inside ``body.conv2``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential()
        self.body.add_module("conv1", nn.Conv2d(3, 16, 3))
        self.body.add_module("conv2", nn.Conv2d(8, 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FusedLeaf(nn.Module):
    """A leaf module whose forward calls functional ops itself (they belong to the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x * self.weight).softmax(-1) + 1


class WithFusedLeaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fused = FusedLeaf()
        self.scale = nn.Parameter(torch.full((4,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fused(x)
        y = y * self.scale  # a parameter consumed by an op between modules
        y[:, 0] = 0.0
        return y.view(-1, 2, 2)

"""A Hugging Face style ``ModelOutput`` for tests, without transformers: an ordered dict that is
also a dataclass, whose set fields are also its items."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

import torch


@dataclass
class ModelOutputLike(OrderedDict):
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    hidden: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                self[f.name] = value

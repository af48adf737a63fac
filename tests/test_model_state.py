"""kept_model_state: a look at a model (capture, autograd picture, embeddings) leaves no trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_modelviz.model_state import kept_model_state


def test_modes_buffers_and_rng_are_restored_also_when_the_block_raises() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).eval()
    model[1].train()  # a mixed state must come back as it was, module by module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    expected_draw = torch.rand(3)
    torch.manual_seed(1)
    with pytest.raises(RuntimeError, match="boom"), kept_model_state(model):
        model.train()
        model(torch.randn(8, 4) * 10)  # moves the running statistics and draws dropout masks
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [False, False, True, False]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.rand(3), expected_draw), "the caller's random stream did not move"

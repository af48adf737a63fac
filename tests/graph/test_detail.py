"""detail="modules": a snapshot of the layers that does not change with how a block computes
between them (attention through SDPA or through matmul and softmax)."""

from __future__ import annotations

import math

import pytest
import torch
from graph_models import ConvNet
from torch import nn
from torch.nn import functional as F

from pytest_modelviz import capture
from pytest_modelviz.errors import ModelvizUsageError
from pytest_modelviz.graph.detail import MODULES_NOTE, with_detail
from pytest_modelviz.graph.model import ArchitectureGraph


class Attention(nn.Module):
    def __init__(self, dim: int = 8, sdpa: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.sdpa = sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.sdpa:
            mixed = F.scaled_dot_product_attention(q, k, v)
        else:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
            mixed = weights @ v
        return self.o(mixed)


class Block(nn.Module):
    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.attn = Attention(sdpa=sdpa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


X = torch.randn(2, 5, 8)


def test_sdpa_and_eager_attention_differ_in_full_detail_but_not_in_modules_detail() -> None:
    sdpa, eager = capture(Block(sdpa=True), X), capture(Block(sdpa=False), X)
    assert sdpa.to_text() != eager.to_text()
    assert with_detail(sdpa, "modules").to_text() == with_detail(eager, "modules").to_text()


def test_modules_detail_keeps_layers_and_passes_edges_through_the_ops() -> None:
    g = with_detail(capture(Block(sdpa=False), X), "modules")
    assert [n.name for n in g.nodes] == ["input.x", "norm", "attn.q", "attn.k", "attn.v", "attn.o", "output"]
    assert [n.index for n in g.nodes] == list(range(7))
    parents = {n.name: [g.nodes[p].name for p in n.parents] for n in g.nodes}
    assert parents["attn.o"] == ["attn.q", "attn.k", "attn.v"]
    assert parents["output"] == ["input.x", "attn.o"]  # the residual `x + ...`
    assert g.totals.macs == sum(n.macs for n in g.module_nodes)
    assert g.notes[-1] == MODULES_NOTE
    assert ArchitectureGraph.from_text(g.to_text()) == g  # a snapshot of it reads back the same


def test_full_detail_is_the_graph_as_captured() -> None:
    g = capture(ConvNet(), torch.randn(1, 1, 28, 28))
    assert with_detail(g, "full") is g
    with pytest.raises(ModelvizUsageError, match=r"detail must be one of 'full', 'modules', got 'layers'"):
        with_detail(g, "layers")


def test_users_choose_the_detail_of_a_snapshot(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(conftest=_source_of_models())
    test = (
        "import torch\nfrom conftest import Block\n\n\n"
        "def test_block(graph_snapshot):\n"
        "    graph_snapshot(Block(sdpa={sdpa}), torch.randn(2, 5, 8), detail='modules')\n"
    )
    pytester.makepyfile(test_block=test.format(sdpa=True))
    pytester.runpytest("--snapshot-update", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.makepyfile(test_block=test.format(sdpa=False))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    stored = (pytester.path / "__snapshots__/test_block/test_block[Block].architecture").read_text()
    assert f"note: {MODULES_NOTE}" in stored and "scaled_dot_product_attention" not in stored


def _source_of_models() -> str:
    import inspect

    return (
        "import math\n\nimport torch\nfrom torch import nn\nfrom torch.nn import functional as F\n\n\n"
        + inspect.getsource(Attention) + "\n\n" + inspect.getsource(Block)
    )

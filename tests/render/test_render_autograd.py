"""torchviz's autograd graph with stable ids, drawn without disturbing the model."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchviz")

from torch import nn  # noqa: E402

from pytest_modelviz.errors import RenderError, RenderSkipped  # noqa: E402
from pytest_modelviz.render.autograd import autograd_dot, stable_ids  # noqa: E402

SMALL_MODEL = """
import torch
from torch import nn

def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
"""
namespace: dict = {}
exec(SMALL_MODEL, namespace)
small_model = namespace["small_model"]


def _ids(dot: str) -> set[str]:
    """Node ids used in node statements and edges (not the graph/node/edge defaults)."""
    ids = set(re.findall(r"^\t(\S+) \[", dot, re.M)) - {"graph", "node", "edge"}
    for src, dst in re.findall(r"^\t(\S+) -> (\S+)", dot, re.M):
        ids |= {src, dst}
    return ids


def test_ids_are_stable_names_not_addresses() -> None:
    model = small_model()
    dot = autograd_dot(model, (torch.randn(2, 3, 6, 6),))
    assert "0x" not in dot
    assert _ids(dot) == {f"n{i}" for i in range(len(_ids(dot)))}
    assert "ConvolutionBackward0" in dot and "AddmmBackward0" in dot
    assert "0.weight" in dot and "5.bias" in dot  # parameters are labelled with their names


def test_stable_ids_rewrites_only_ids() -> None:
    raw = '\t140001 [label="AddBackward0"]\n\t140002 -> 140001\n\t140002 [label="x\n 140001"]\n'
    assert stable_ids(raw) == '\tn0 [label="AddBackward0"]\n\tn1 -> n0\n\tn1 [label="x\n 140001"]\n'


@pytest.mark.slow  # two fresh interpreters importing torch
def test_identical_across_processes() -> None:
    code = SMALL_MODEL + (
        "\nfrom pytest_modelviz.render.autograd import autograd_dot\n"
        "import sys\n"
        "torch.manual_seed(1)\n"
        "sys.stdout.write(autograd_dot(small_model(), (torch.randn(2, 3, 6, 6),)))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outs.append(out)
    assert outs[0] == outs[1]
    assert b"n0 [" in outs[0]


@pytest.mark.parametrize("training", [True, False])
def test_model_state_and_rng_are_put_back(training: bool) -> None:
    model = small_model().train(training)
    model[3].train(not training)  # a mixed-mode model keeps each module's own mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    x = torch.randn(2, 3, 6, 6) * 5 + 3
    rng = torch.get_rng_state()
    autograd_dot(model, (x,))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)  # dropout did not shift the caller's stream
    assert all(p.grad is None for p in model.parameters())


def test_tuple_and_dict_outputs() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> dict:
            return {"a": self.a(x), "rest": (self.b(x), x.shape[0])}

    dot = autograd_dot(TwoHeads(), (torch.randn(4, 3),))
    assert dot.count("AddmmBackward0") == 2
    assert "a.weight" in dot and "b.weight" in dot


def test_meta_models_are_skipped() -> None:
    with torch.device("meta"):
        model = nn.Linear(3, 2)
    with pytest.raises(RenderSkipped, match="Linear has tensors on the meta device"):
        autograd_dot(model, (torch.randn(1, 3),))


def test_outputs_without_grad_fn_are_skipped() -> None:
    model = nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(RenderSkipped, match="no output of Linear has a grad_fn"):
        autograd_dot(model, (torch.randn(1, 3),))


def test_a_failing_forward_is_an_error_naming_the_model() -> None:
    with pytest.raises(RenderError, match=r"forward of Linear failed .*RuntimeError"):
        autograd_dot(nn.Linear(3, 2), (torch.randn(1, 4),))

"""Names and arguments in the architecture text do not depend on how a torch release implements a layer."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_modelviz import capture
from pytest_modelviz.graph.naming import call_args, module_args, op_name

ZOO_SCRIPT = Path(__file__).parents[2] / "benchmarks" / "compare_capture_versions.py"


def _node_call(model: nn.Module, *args: Any) -> dict[str, str]:
    """``name -> layer text`` of every node, e.g. ``{"pad": "torch.nn.functional.pad((1, 1))"}``."""
    lines = capture(model, *args).to_text().splitlines()
    return {line.split("  ")[1]: line.split("  ")[2] for line in lines if line[:1].isdigit()}


class _Calls(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn
        self.head = nn.Identity()  # one child, so the root's own calls are recorded one by one

    def forward(self, x: torch.Tensor) -> Any:
        return self.head(self.fn(x))


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        # Python wrappers hand every parameter on, filled with defaults: only what differs stays.
        (lambda x: F.max_pool2d(x, 2), "torch.nn.functional.max_pool2d(2)"),
        (lambda x: F.max_pool2d(x, kernel_size=2, stride=1, padding=0), "torch.nn.functional.max_pool2d(2, stride=1)"),
        (lambda x: F.interpolate(x, scale_factor=2.0), "torch.nn.functional.interpolate(scale_factor=2.0)"),
        (lambda x: F.pad(x, (1, 1)), "torch.nn.functional.pad((1, 1))"),
        (lambda x: F.pad(x, (1, 1, 1, 1), mode="replicate"), "torch.nn.functional.pad((1, 1, 1, 1), mode='replicate')"),
        (lambda x: F.log_softmax(x, dim=-1), "torch.nn.functional.log_softmax(dim=-1)"),  # no _stacklevel
        (lambda x: F.relu(x), "torch.nn.functional.relu"),
        (lambda x: torch.split(x, 2, dim=1)[0], "torch.split(2, dim=1)"),
        # C functions torch keeps under prefixed names are named where users call them from.
        (lambda x: torch.linalg.vector_norm(x, ord=2), "torch.linalg.vector_norm(ord=2)"),
        (lambda x: torch.special.erf(x), "torch.special.erf"),
        (lambda x: torch.fft.rfft(x).abs(), "torch.fft.rfft"),
    ],
)
def test_functional_calls_are_spelled_the_same_whichever_way_torch_implements_them(fn: Any, expected: str) -> None:
    calls = _node_call(_Calls(fn), torch.randn(1, 4, 6, 6))
    assert expected in calls.values(), calls


def test_prefixed_c_functions_get_their_public_names() -> None:
    assert op_name(torch.linalg.qr) == "torch.linalg.qr"  # torch._C._linalg.linalg_qr
    assert op_name(torch.fft.fft) == "torch.fft.fft"  # torch._C._fft.fft_fft
    assert op_name(torch.special.expit) == "torch.special.expit"
    assert op_name(F.linear) == "torch.nn.functional.linear"  # torch._C._nn.linear
    assert op_name(torch.cat) == "torch.cat"
    assert op_name(torch.Tensor.add) == "operator.add"


def test_call_args_bind_to_the_signature_and_keep_calls_it_cannot_bind_as_passed() -> None:
    x = torch.zeros(1)
    assert call_args(F.dropout, (x,), {"p": 0.5, "training": True, "inplace": False}) == ()
    assert call_args(F.dropout, (x, 0.2), {}) == (("p", "0.2"),)  # a default-valued slot is named
    # A C function has no signature: its arguments stay as the call passed them.
    assert call_args(torch.cat, ([x, x],), {"dim": 0}) == (("dim", "0"),)
    assert call_args(F.relu, (x,), {"bogus": 1}) == (("bogus", "1"),)  # does not bind: as passed


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (nn.Linear(4, 2), "torch.nn.Linear(4, 2)"),
        (nn.Linear(4, 2, bias=False), "torch.nn.Linear(4, 2, bias=False)"),
        (nn.Conv2d(1, 2, 3), "torch.nn.Conv2d(1, 2, kernel_size=(3, 3))"),
        (
            nn.Conv1d(2, 2, 3, padding="same", dilation=2),
            "torch.nn.Conv1d(2, 2, kernel_size=(3,), padding='same', dilation=(2,))",
        ),
        (nn.MaxPool2d(2), "torch.nn.MaxPool2d(kernel_size=2, stride=2)"),
        (nn.BatchNorm2d(3), "torch.nn.BatchNorm2d(3)"),
        # Without affine weights there is no bias: releases that take ``bias=`` must not add it.
        (nn.BatchNorm2d(3, affine=False), "torch.nn.BatchNorm2d(3, affine=False)"),
        (nn.LayerNorm(4, bias=False), "torch.nn.LayerNorm((4,), bias=False)"),
        (nn.LayerNorm(4, elementwise_affine=False), "torch.nn.LayerNorm((4,), elementwise_affine=False)"),
        (nn.GELU(), "torch.nn.GELU"),
        (nn.GELU(approximate="tanh"), "torch.nn.GELU(approximate='tanh')"),
        (nn.ReLU6(), "torch.nn.ReLU6"),
        (nn.Dropout(0.1), "torch.nn.Dropout(p=0.1)"),
        (nn.MultiheadAttention(8, 2), "torch.nn.MultiheadAttention(8, 2)"),
        (
            nn.MultiheadAttention(8, 2, kdim=4, vdim=4, bias=False),
            "torch.nn.MultiheadAttention(8, 2, bias=False, kdim=4, vdim=4)",
        ),
        (nn.LSTM(4, 3, num_layers=2), "torch.nn.LSTM(4, 3, num_layers=2)"),  # takes *args: read from RNNBase
        (nn.RNN(4, 3, nonlinearity="relu"), "torch.nn.RNN(4, 3, nonlinearity='relu')"),
        (nn.Embedding(10, 3, padding_idx=0), "torch.nn.Embedding(10, 3, padding_idx=0)"),
        (nn.Upsample(scale_factor=2), "torch.nn.Upsample(scale_factor=2.0)"),
        (nn.Identity(), "torch.nn.Identity"),
    ],
)
def test_torch_layers_are_described_from_attributes_and_signature_defaults(layer: nn.Module, expected: str) -> None:
    from pytest_modelviz.graph.text import format_call

    assert format_call(f"torch.nn.{type(layer).__name__}", module_args(layer)) == expected


def test_torch_layer_text_ignores_extra_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release that rewords ``extra_repr`` (adds a field, reorders) leaves the snapshot alone."""
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.GELU())
    before = capture(model, torch.randn(1, 4)).to_text()
    monkeypatch.setattr(nn.Linear, "extra_repr", lambda self: f"out_features={self.out_features}, new_flag=True")
    monkeypatch.setattr(nn.LayerNorm, "extra_repr", lambda self: "eps=1e-05, bias=True")
    monkeypatch.setattr(nn.GELU, "extra_repr", lambda self: "approximate='none'")
    assert capture(model, torch.randn(1, 4)).to_text() == before


def test_user_layers_keep_their_own_extra_repr_and_subclasses_of_torch_layers_their_attributes() -> None:
    class Scale(nn.Module):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = factor

        def extra_repr(self) -> str:
            return f"factor={self.factor}"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.factor

    class MyLinear(nn.Linear):
        def __init__(self) -> None:
            super().__init__(4, 3, bias=False)

    assert module_args(Scale(2.5)) == (("factor", "2.5"),)
    assert module_args(MyLinear()) == (("0", "4"), ("1", "3"), ("bias", "False"))


def _zoo() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("compare_capture_versions", ZOO_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.capture_zoo(), module.FORBIDDEN


def test_zoo_text_is_the_same_on_meta_and_names_no_device_address_path_or_aten_op() -> None:
    texts, forbidden = _zoo()
    assert len(texts) >= 10
    for name, by_mode in texts.items():
        assert by_mode["cpu"].startswith("# modelviz architecture v1"), (name, by_mode["cpu"])
        assert by_mode["meta"] == by_mode["cpu"], name
        for text in by_mode.values():
            hits = [what for what, rx in forbidden.items() if rx.search(text)]
            assert not hits, (name, hits)
            assert not re.search(r"linalg_|fft_|special_|_stacklevel", text), name

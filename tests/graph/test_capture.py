"""capture(): what it records for real models, and what it leaves untouched."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from graph_models import Branchy, ConvNet, DictModel, Exploding, Repeated, TiedLM, WithFusedLeaf
from torch import nn

from pytest_modelviz import capture
from pytest_modelviz.errors import CaptureError
from pytest_modelviz.graph.capture import EAGER_NOTE


def test_convnet_nodes_edges_params_and_macs() -> None:
    g = capture(ConvNet(), torch.randn(1, 1, 28, 28))
    assert [n.name for n in g.nodes] == [
        "input.x", "conv1", "relu", "max_pool2d", "conv2", "relu#2", "max_pool2d#2", "flatten", "fc.0", "output",
    ]
    assert [n.kind for n in g.nodes] == [
        "input", "module", "function", "function", "module", "function", "function", "method", "module", "output",
    ]
    conv2 = g.node("conv2")
    assert conv2.target == "torch.nn.Conv2d"
    assert dict(conv2.args)["0"] == "16" and dict(conv2.args)["1"] == "32"
    assert dict(conv2.args)["kernel_size"] == "(3, 3)"  # geometry is always named
    assert dict(conv2.args)["padding"] == "(1, 1)"
    assert "stride" not in dict(conv2.args)  # at its default
    assert str(conv2.inputs[0]) == "[1, 16, 14, 14] float32"
    assert str(conv2.outputs[0]) == "[1, 32, 14, 14] float32"
    assert conv2.num_params == 16 * 32 * 9 + 32
    assert conv2.macs == 32 * 14 * 14 * 16 * 9  # out elements * in_ch * k
    assert g.node("fc.0").macs == 10 * 32 * 7 * 7  # out elements * in_features
    assert g.node("fc.0").scope == "fc"
    assert g.node("flatten").target == "Tensor.flatten"
    # Data edges follow the tensors: each node consumes its predecessor here.
    assert g.edges == tuple((i, i + 1) for i in range(len(g.nodes) - 1))
    assert g.totals.params == sum(p.numel() for p in ConvNet().parameters())
    assert g.totals.macs == sum(n.macs for n in g.nodes)
    assert g.notes == (EAGER_NOTE,)
    assert g.training  # a fresh module is in train mode, and capture records that


def test_resnet18_totals_residual_edges_and_mode_untouched() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    g = capture(model, torch.randn(1, 3, 64, 64))
    assert not model.training and not g.training
    assert g.totals.params == 11_689_512 == g.totals.trainable
    assert g.totals.buffers == sum(b.numel() for b in model.buffers())
    modules = [m for m in model.modules() if not list(m.children())]
    assert len(g.module_nodes) == len(modules) + 8  # each of the 8 blocks calls its ReLU twice
    residual = g.node("layer1.0.iadd")  # `out += identity` in BasicBlock.forward
    assert residual.target == "operator.iadd"
    assert [g.nodes[p].name for p in residual.parents] == ["layer1.0.bn2", "maxpool"]
    assert g.node("layer1.0.relu#2").scope == "layer1.0"  # one ReLU module called twice per block
    assert g.node("flatten").target == "torch.flatten"
    assert g.nodes[-1].inputs[0].shape == (1, 1000)
    assert g.unused == ()


def test_capture_restores_batchnorm_statistics_rng_and_train_mode() -> None:
    model = torchvision.models.mobilenet_v3_small(weights=None).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    g = capture(model, x)
    assert torch.equal(torch.rand(3), expected)  # dropout ran, but the RNG is back where it was
    assert model.training and g.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert g.node("classifier.2").target == "torch.nn.Dropout"
    assert torch.is_grad_enabled()


class _SeesCollector(nn.Module):
    """Notes whether the garbage collector runs during its forward; raises on request."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.fail = fail
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(gc.isenabled())
        if self.fail:
            raise RuntimeError("boom")
        return self.fc(x)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_for_forward_and_left_as_found(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        model = _SeesCollector()
        capture(model, torch.randn(1, 3))
        assert model.seen == [False]
        assert gc.isenabled() is enabled
        failing = _SeesCollector(fail=True)
        with pytest.raises(CaptureError, match="boom"):
            capture(failing, torch.randn(1, 3))
        assert failing.seen == [False]
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_dict_inputs_keyword_inputs_and_dict_outputs() -> None:
    g = capture(DictModel(), {"tokens": torch.randint(0, 50, (2, 5))}, scale=2.0)
    assert g.nodes[0].name == "input.batch.tokens"
    assert str(g.nodes[0].outputs[0]) == "[2, 5] int64"
    lstm = g.node("lstm")
    assert [str(s) for s in lstm.outputs] == ["[2, 5, 16] float32", "[1, 2, 16] float32", "[1, 2, 16] float32"]
    attn = g.node("attn")  # MultiheadAttention is one node: its out_proj is not a separate layer
    assert attn.num_params == sum(p.numel() for p in nn.MultiheadAttention(16, 2).parameters())
    assert not any(n.name.startswith("attn.") for n in g.nodes)
    assert g.node("getitem").args == (("0", "(:, -1)"),)
    assert g.node("mul").parents == (g.node("head").index,)
    out = g.nodes[-1]
    assert out.args == (("0", "'logits'"), ("1", "'state'"))
    assert [g.nodes[p].name for p in out.parents] == ["mul", "lstm"]


def test_shared_weights_are_counted_once() -> None:
    g = capture(TiedLM(), torch.randint(0, 20, (1, 4)))
    assert g.totals.params == 20 * 6
    proj_weight = g.node("proj").params[0]
    assert proj_weight.name == "proj.weight" and proj_weight.shared_with == "emb.weight"
    assert g.node("emb").params[0].shared_with is None


def test_repeated_calls_and_unused_modules() -> None:
    g = capture(Repeated(), torch.randn(2, 4))
    assert [n.name for n in g.nodes] == ["input.x", "block", "tanh", "block#2", "output"]
    assert g.node("block").num_params == 20 and g.node("block#2").num_params == 0
    assert g.node("block#2").parents == (g.node("tanh").index,)
    assert [u.name for u in g.unused] == ["unused_head"]
    assert g.totals.params == 20 + 10  # unused parameters still exist


def test_data_dependent_branch_records_the_path_taken_and_says_so() -> None:
    pos = capture(Branchy(), torch.ones(1, 3))
    neg = capture(Branchy(), -torch.ones(1, 3))
    assert "pos" in [n.name for n in pos.nodes] and "neg" not in [n.name for n in pos.nodes]
    assert "neg" in [n.name for n in neg.nodes]
    assert any("Tensor.__bool__" in note and "Branchy" in note for note in pos.notes)
    assert {u.name for u in pos.unused} == {"neg"}


def test_ops_inside_a_leaf_belong_to_it_and_ops_between_modules_are_named() -> None:
    g = capture(WithFusedLeaf(), torch.randn(2, 4))
    assert [n.name for n in g.nodes] == ["input.x", "fused", "mul", "setitem", "view", "output"]
    mul = g.node("mul")
    assert mul.target == "operator.mul"
    assert [p.name for p in mul.params] == ["scale"]  # parameter consumed between modules
    setitem = g.node("setitem")
    assert setitem.target == "operator.setitem" and setitem.parents == (mul.index,)
    assert g.node("view").parents == (setitem.index,)  # the write feeds what reads it next
    assert g.node("view").args == (("0", "-1"), ("1", "2"), ("2", "2"))


def test_meta_device_capture_allocates_nothing_and_matches_cpu_text() -> None:
    with torch.device("meta"):
        meta_model = ConvNet()
    g_meta = capture(meta_model, torch.empty(1, 1, 28, 28, device="meta"))
    assert all(p.is_meta for p in meta_model.parameters())
    g_cpu = capture(ConvNet(), torch.randn(1, 1, 28, 28))
    assert g_meta.to_text() == g_cpu.to_text()  # the device never shows


def test_functional_linear_and_matmul_count_macs() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 3))
            self.blocks = nn.ModuleList([nn.Identity()])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.linear(x, self.w)
            return y @ y.transpose(0, 1)

    g = capture(Functional(), torch.randn(4, 3))
    assert g.node("linear").target == "torch.nn.functional.linear"
    assert g.node("linear").macs == 4 * 5 * 3
    assert g.node("matmul").target == "operator.matmul" and g.node("matmul").macs == 4 * 4 * 5
    assert [u.name for u in g.unused] == ["blocks.0"]


# ---------------------------------------------------------------- bad input


def test_forward_error_names_the_module_and_the_shapes_that_reached_it() -> None:
    with pytest.raises(CaptureError) as info:
        capture(Exploding(), torch.randn(1, 3, 8, 8))
    message = str(info.value)
    assert "module 'body.conv2' (Conv2d) of Exploding" in message
    assert "[1, 16, 6, 6] float32" in message
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    ("model", "args", "expected"),
    [
        (ConvNet, (), "needs example inputs"),
        (lambda: ConvNet, (torch.randn(1, 1, 28, 28),), "needs a torch.nn.Module, got type"),
        (ConvNet, (np.zeros((1, 1, 28, 28), dtype=np.float32),), "numpy ndarray; convert it with torch.from_numpy"),
        (ConvNet, ([[0.0, 1.0]],), "no example input of ConvNet is a tensor (got list)"),
    ],
)
def test_bad_arguments_get_clear_messages(model: Callable[[], Any], args: tuple[Any, ...], expected: str) -> None:
    with pytest.raises(CaptureError, match=None) as info:
        capture(model(), *args)
    assert expected in str(info.value)


def test_wrong_input_shape_error_names_the_first_layer() -> None:
    with pytest.raises(CaptureError, match=r"module 'conv1' \(Conv2d\) of ConvNet with inputs \[1, 3, 28, 28\]"):
        capture(ConvNet(), torch.randn(1, 3, 28, 28))


@pytest.mark.gpu
def test_cuda_capture_text_matches_cpu() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    cpu_text = capture(model, x).to_text()
    cuda_text = capture(model.cuda(), x.cuda()).to_text()
    assert cuda_text == cpu_text


def test_iterating_over_a_tensor_keeps_the_edges() -> None:
    class Stepper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(3, 4)

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(seq.shape[1], 4)
            for step in seq:  # time-major loop, as in hand-written RNNs
                h = self.cell(step, h)
            return h

    g = capture(Stepper(), torch.randn(3, 2, 3))
    unbind = g.node("unbind")
    assert unbind.target == "Tensor.unbind" and len(unbind.outputs) == 3
    assert [n.name for n in g.module_nodes] == ["cell", "cell#2", "cell#3"]
    assert g.node("cell#2").parents == (unbind.index, g.node("cell").index)

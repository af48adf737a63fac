"""Renders of real captured models, and what a user sees after ``pytest --modelviz``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from render_graphs import read_graph

from pytest_modelviz.render import graphviz as gv

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

from pytest_modelviz.artifacts import ArtifactDir  # noqa: E402
from pytest_modelviz.graph.capture import capture  # noqa: E402
from pytest_modelviz.render import render_graph_artifacts  # noqa: E402
from pytest_modelviz.render.dot import to_dot  # noqa: E402
from pytest_modelviz.render.pending import draw_pending  # noqa: E402
from pytest_modelviz.tensorboard.graph import tb_names, to_graph_def, write_graph_event  # noqa: E402

PURE = Path(sys.executable).parent / gv.PURE_NAME



@pytest.mark.slow
def test_resnet18_all_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gv.ENV_VAR, str(PURE))
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    graph = capture(model, x)
    assert to_dot(graph) == to_dot(capture(model, x))  # capture + DOT are deterministic end to end
    artifacts = ArtifactDir("t::resnet18", tmp_path / "t", persist=True)
    data = render_graph_artifacts(graph, artifacts, folder=artifacts.unique_dir("graph-resnet18"), name="resnet18",
                                  model=model, example_args=(x,))
    assert data["errors"] == [] and data["tensorboard_graph"]
    assert {"svg", "png", "hiddenlayer_svg", "torchviz_svg"} <= set(data["files"])
    assert draw_pending([artifacts.root]).failed == ()  # drawn when the run ends; here, now
    hl_dot = (artifacts.root / data["files"]["hiddenlayer_dot"]).read_text(encoding="utf-8")
    assert "Conv7x7/s2 &gt; BatchNorm &gt; Relu" in hl_dot  # the stem, folded
    assert hl_dot.count("'6'>Add<") == 8  # one residual add per BasicBlock
    assert hl_dot.count("'6'>Conv1x1/s2 &gt; BatchNorm<") == 3  # the downsample shortcuts
    assert "'6'>Conv3x3<" not in hl_dot  # every conv was folded with its BatchNorm
    svg = (artifacts.root / data["files"]["svg"]).read_text(encoding="utf-8")
    assert "layer4.1.conv2" in svg
    read = read_graph(artifacts.tensorboard_dir)
    names = {n.name: n for n in read.node}
    assert names["ResNet/layer1/0/conv1"].op == "Conv2d"
    assert list(names["ResNet/fc"].input) == ["ResNet/flatten"]


@pytest.mark.slow
def test_vit_b_16_graph_in_tensorboard(tmp_path: Path) -> None:
    """tensorboardX's ``add_graph`` fails on vit_b_16 (jit trace sanity checks); ours does not."""
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None).eval()
    graph = capture(model, torch.randn(1, 3, 224, 224))
    write_graph_event(to_graph_def(graph), tmp_path / "tb")
    read = read_graph(tmp_path / "tb")
    assert [n.name for n in read.node] == tb_names(graph)
    nodes = {n.name: n for n in read.node}
    attn = nodes["VisionTransformer/encoder/layers/encoder_layer_11/self_attention"]
    assert attn.op == "MultiheadAttention"
    assert list(attn.input) == ["VisionTransformer/encoder/layers/encoder_layer_11/ln_1"]
    assert [d.size for d in attn.attr["_output_shapes"].list.shape[0].dim] == [1, 197, 768]
    assert attn.attr["num_params"].i == 768 * 768 * 4 + 768 * 4
    residual = nodes["VisionTransformer/encoder/layers/encoder_layer_0/add"]
    assert sorted(residual.input) == ["VisionTransformer/encoder/dropout",
                                      "VisionTransformer/encoder/layers/encoder_layer_0/dropout"]
    assert nodes["VisionTransformer/heads/head"].attr["num_params"].i == 768 * 1000 + 1000


USER_TEST = """
import torch
from torch import nn

def test_net(graph_snapshot):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    graph_snapshot(model, torch.randn(2, 3, 6, 6))
"""


@pytest.mark.slow
def test_user_run_gets_pictures_and_a_graphs_tab(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("--modelviz", "--snapshot-update", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (test_dir,) = [p for p in (pytester.path / ".modelviz" / "latest").resolve().iterdir() if p.is_dir()]
    records = [json.loads(line) for line in (test_dir / "modelviz.jsonl").read_text().splitlines()]
    (render,) = [r for r in records if r["kind"] == "graph_render"]
    assert render["errors"] == [] and render["renderer"] in ("dot", "graphviz-pure")
    for key in ("dot", "svg", "png", "hiddenlayer_svg", "torchviz_svg"):
        assert (test_dir / render["files"][key]).is_file(), key
    assert render["tensorboard_graph"] is True
    names = [n.name for n in read_graph(test_dir / "tensorboard").node]
    assert "Sequential/0" in names and "Sequential/4" in names

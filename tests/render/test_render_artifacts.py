"""``render_graph_artifacts``: every picture, one record, and failures that cost nothing else."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from render_graphs import conv_net_graph

from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.errors import RenderWarning
from pytest_modelviz.records import RECORD_VERSION
from pytest_modelviz.render import graphviz as gv
from pytest_modelviz.render import render_graph_artifacts
from pytest_modelviz.render.pending import Drawn, draw_pending, read_pictures

if TYPE_CHECKING:
    import torch

PURE = Path(sys.executable).parent / gv.PURE_NAME
ALL_KEYS = {
    "dot", "svg", "png", "hiddenlayer_dot", "hiddenlayer_svg", "hiddenlayer_png", "torchviz_dot", "torchviz_svg",
}


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactDir:
    return ArtifactDir("tests/x.py::test_model", tmp_path / "test-x", persist=True)


def _small_model() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    return model, (torch.randn(2, 3, 6, 6),)


def _render(artifacts: ArtifactDir, **kwargs: Any) -> dict:
    return render_graph_artifacts(conv_net_graph(), artifacts, folder=artifacts.unique_dir("graph-net"), name="net",
                                  **kwargs)


@pytest.mark.parametrize("later", [True, False])
def test_everything_is_written_and_recorded(artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch,
                                            later: bool) -> None:
    monkeypatch.setenv(gv.ENV_VAR, str(PURE))
    model, args = _small_model()
    data = _render(artifacts, model=model, example_args=args, later=later)
    assert set(data["files"]) == ALL_KEYS
    assert data["renderer"] == "graphviz-pure"
    assert data["note"] is None and data["errors"] == []
    assert data["tensorboard_graph"] is True
    if later:  # the test wrote the cheap files and queued the pictures; the run's end draws them
        assert not (artifacts.root / data["files"]["svg"]).exists()
        assert not (artifacts.root / data["files"]["hiddenlayer_dot"]).exists()
        assert [p.state for p in read_pictures(artifacts.root)] == ["pending"] * 6
        assert draw_pending([artifacts.root]) == Drawn()
        assert [p.state for p in read_pictures(artifacts.root)] == ["drawn"] * 6
        assert "rankdir=TB" in (artifacts.root / data["files"]["hiddenlayer_dot"]).read_text()
    for key, rel in data["files"].items():
        path = artifacts.root / rel
        assert path.is_file() and path.stat().st_size > 0, key
        assert rel.startswith("graph-net/")
    assert (artifacts.root / data["files"]["png"]).read_bytes().startswith(gv.PNG_MAGIC)
    assert any(p.name.startswith("events.out.tfevents") for p in artifacts.tensorboard_dir.iterdir())
    (record,) = artifacts.records()
    assert record == json.loads(json.dumps({"kind": "graph_render", "version": RECORD_VERSION, **data}))


def test_without_model_there_is_no_torchviz(artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gv.ENV_VAR, str(PURE))
    data = _render(artifacts)
    assert set(data["files"]) == ALL_KEYS - {"torchviz_dot", "torchviz_svg"}


def test_no_renderer_keeps_the_dot_files_and_says_how_to_get_one(
        artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(gv.ENV_VAR, "")
    model, args = _small_model()
    data = _render(artifacts, model=model, example_args=args)
    assert set(data["files"]) == {"dot", "hiddenlayer_dot", "torchviz_dot"}
    assert data["renderer"] is None
    assert data["note"].startswith(gv.DISABLED_NOTE)
    assert data["errors"] == []
    assert not list((artifacts.root / "graph-net").glob("*.svg"))
    # and with no setting and no binary anywhere: the install hint
    monkeypatch.delenv(gv.ENV_VAR)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python"))
    data = _render(artifacts)
    assert "pip install graphviz-pure" in data["note"] and "apt-get install graphviz" in data["note"]
    assert artifacts.records()[-1]["note"] == data["note"]


def test_a_failing_renderer_is_recorded_warned_and_costs_nothing_else(
        artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = tmp_path / "bin" / "dot"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'Error: out of crayons' >&2\nexit 3\n", encoding="utf-8")
    broken.chmod(0o755)
    monkeypatch.setenv(gv.ENV_VAR, str(broken))
    with pytest.warns(RenderWarning, match="out of crayons") as caught:
        data = _render(artifacts, later=False)
    assert len(caught) == len(data["errors"]) == 4  # graph and hiddenlayer, svg and png each
    assert all("(exit 3)" in e for e in data["errors"])
    assert set(data["files"]) == {"dot", "hiddenlayer_dot"}
    assert data["renderer"] == "dot"
    assert data["tensorboard_graph"] is True
    assert "out of crayons" in data["note"]


def test_pictures_that_fail_at_the_end_of_the_run_are_named_with_the_reason(
        artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        recwarn: pytest.WarningsRecorder) -> None:
    broken = tmp_path / "bin" / "dot"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'Error: out of crayons' >&2\nexit 3\n", encoding="utf-8")
    broken.chmod(0o755)
    monkeypatch.setenv(gv.ENV_VAR, str(broken))
    data = _render(artifacts)
    assert data["errors"] == [] and not [w for w in recwarn if issubclass(w.category, RenderWarning)]
    drawn = draw_pending([artifacts.root])
    failed = sorted(p.output for _, p in drawn.failed)
    assert failed == [
        "graph-net/graph.png", "graph-net/graph.svg", "graph-net/hiddenlayer.png", "graph-net/hiddenlayer.svg",
    ]
    assert all("(exit 3)" in p.message and "out of crayons" in p.message for _, p in drawn.failed)
    states = {p.output: p.state for p in read_pictures(artifacts.root)}  # kept for the report
    assert states["graph-net/hiddenlayer.dot"] == "drawn" and states["graph-net/graph.svg"] == "failed"
    mtimes = {p: p.stat().st_mtime_ns for p in artifacts.root.rglob("*")}
    # Drawn once: nothing is pending any more, nothing is drawn again, the failures are still named.
    assert draw_pending([artifacts.root]) == Drawn(failed=drawn.failed)
    assert {p: p.stat().st_mtime_ns for p in artifacts.root.rglob("*")} == mtimes


def test_a_failing_forward_loses_only_the_torchviz_picture(
        artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv(gv.ENV_VAR, "")
    model, _ = _small_model()
    with pytest.warns(RenderWarning, match=r"torchviz: forward of Sequential failed"):
        data = _render(artifacts, model=model, example_args=(torch.randn(2, 5),))
    assert set(data["files"]) == {"dot", "hiddenlayer_dot"}
    assert data["tensorboard_graph"] is True


def test_skips_are_notes_not_warnings(artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch,
                                      recwarn: pytest.WarningsRecorder) -> None:
    import torch
    from torch import nn

    monkeypatch.setenv(gv.ENV_VAR, str(PURE))
    with torch.device("meta"):
        model = nn.Linear(3, 2)
    data = _render(artifacts, model=model, example_args=(torch.randn(1, 3, device="meta"),))
    assert "torchviz: skipped: Linear has tensors on the meta device" in data["note"]
    assert data["errors"] == []
    assert not [w for w in recwarn if issubclass(w.category, RenderWarning)]


def test_a_bad_renderer_setting_is_an_error_not_a_missing_renderer(
        artifacts: ArtifactDir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(gv.ENV_VAR, str(tmp_path / "no-dot-here"))
    with pytest.warns(RenderWarning, match="not an executable"):
        data = _render(artifacts)
    assert data["errors"] == [f"Graphviz: {gv.ENV_VAR}={str(tmp_path / 'no-dot-here')!r} is not an executable file "
                              "or a command on PATH. Point it at Graphviz's `dot` or at `graphviz-pure`, or set it "
                              "empty to turn rendering off."]
    assert gv.NO_RENDERER_NOTE not in data["note"]
    assert set(data["files"]) == {"dot", "hiddenlayer_dot"}

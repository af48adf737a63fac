"""The graph_snapshot fixture, run the way a user runs it."""

from __future__ import annotations

import json

import pytest
import torch  # noqa: F401 - imported once here, so in-process pytester runs do not re-import it
from modelviz_testing import run_dir_of

MODEL = """
import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = {channels}


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, CHANNELS, 3, padding=1)
        self.fc = nn.Sequential(nn.Linear(CHANNELS * 7 * 7, 10))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))
"""

TEST = """

def test_convnet(graph_snapshot):
    graph = graph_snapshot(ConvNet(), torch.randn(1, 1, 28, 28))
    assert graph.model_name == "ConvNet"
"""

SNAPSHOT = "__snapshots__/test_convnet/test_convnet[ConvNet].architecture"


def _write(pytester: pytest.Pytester, channels: int = 32, test: str = TEST) -> None:
    pytester.makepyfile(test_convnet=MODEL.format(channels=channels) + test)


def test_missing_snapshot_fails_with_the_command_that_creates_it(pytester: pytest.Pytester) -> None:
    _write(pytester)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "E       AssertionError: Snapshot 'test_convnet[ConvNet]' does not exist!" in out
    assert "E       Run `pytest --snapshot-update test_convnet.py::test_convnet` to create it." in out
    assert not (pytester.path / SNAPSHOT).exists()


def test_update_writes_a_readable_file_then_it_matches_and_is_not_unused(pytester: pytest.Pytester) -> None:
    _write(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    text = (pytester.path / SNAPSHOT).read_text(encoding="utf-8")
    assert text.startswith("# modelviz architecture v1\nmodel: ConvNet\n")
    assert "conv2  torch.nn.Conv2d(16, 32" in text
    again = pytester.runpytest()
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["1 snapshot passed."])
    again.stdout.no_fnmatch_line("*snapshot*unused*")


def test_changed_architecture_fails_with_the_semantic_diff_first(pytester: pytest.Pytester) -> None:
    _write(pytester, channels=32)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    _write(pytester, channels=64)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    first_error = next(line for line in out.splitlines() if line.startswith("E "))
    assert "architecture snapshot 'test_convnet[ConvNet]' changed (ConvNet):" in first_error
    assert "conv2: Conv2d(16, 32, kernel_size=(3, 3), padding=(1, 1)) -> Conv2d(16, 64," in out
    assert "params +4,640 (4,640 -> 9,280)" in out
    assert "fc.0: Linear(1568, 10) -> Linear(3136, 10)" in out
    assert "total params 20,490 -> 40,810 (+20,320)" in out
    assert "text diff (- snapshot, + captured):" in out
    assert "Run `pytest --snapshot-update test_convnet.py::test_convnet` to accept the new architecture." in out
    # Accepting the change rewrites the file; then it matches.
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    assert "conv2  torch.nn.Conv2d(16, 64" in (pytester.path / SNAPSHOT).read_text(encoding="utf-8")
    pytester.runpytest().assert_outcomes(passed=1)


def test_raw_diff_is_capped_unless_full_diff_is_asked_for(pytester: pytest.Pytester) -> None:
    wide = MODEL.format(channels=32) + """
class Deep(nn.Module):
    def __init__(self, width=WIDTH):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(120)])

    def forward(self, x):
        return self.layers(x)


def test_deep(graph_snapshot):
    graph_snapshot(Deep(), torch.randn(1, WIDTH))
"""
    pytester.makepyfile(test_deep=wide.replace("WIDTH", "4"))
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    pytester.makepyfile(test_deep=wide.replace("WIDTH", "5"))
    capped = pytester.runpytest()
    capped.assert_outcomes(failed=1)
    capped.stdout.fnmatch_lines(["*more changed layers*", "*more diff lines (--modelviz-full-diff shows all)*"])
    full = pytester.runpytest("--modelviz-full-diff")
    full.assert_outcomes(failed=1)
    full.stdout.no_fnmatch_line("*more diff lines*")
    full.stdout.fnmatch_lines(["*layers.119: Linear(4, 4) -> Linear(5, 5)*"])


def test_corrupt_snapshot_names_the_file_and_line(pytester: pytest.Pytester) -> None:
    _write(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    path = pytester.path / SNAPSHOT
    path.write_text(path.read_text(encoding="utf-8").replace("<- 3", "<- three"), encoding="utf-8")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "SnapshotFormatError: " in out
    assert "test_convnet[ConvNet].architecture: line 14: expected a number, got 'three'" in out
    assert "re-create it with `pytest --snapshot-update`" in out
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(passed=1)


def test_several_snapshots_in_one_test_are_named(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        test="""

def test_many(graph_snapshot):
    graph_snapshot(ConvNet(), torch.randn(1, 1, 28, 28))
    graph_snapshot(ConvNet(), torch.randn(2, 1, 28, 28))
    graph_snapshot(nn.Linear(3, 2), torch.randn(1, 3), name="head")


def test_same_name_twice(graph_snapshot):
    graph_snapshot(nn.Linear(3, 2), torch.randn(1, 3), name="head")
    graph_snapshot(nn.Linear(3, 4), torch.randn(1, 3), name="head")
""",
    )
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ModelvizUsageError: graph_snapshot name 'head' is used twice in this test*"])
    names = sorted(p.name for p in (pytester.path / "__snapshots__" / "test_convnet").iterdir())
    assert names == [
        "test_many[ConvNet-2].architecture",
        "test_many[ConvNet].architecture",
        "test_many[head].architecture",
        "test_same_name_twice[head].architecture",
    ]
    stored = pytester.path / "__snapshots__/test_convnet/test_many[ConvNet-2].architecture"
    assert "[2, 1, 28, 28]" in stored.read_text()


def test_capture_error_is_reported_with_the_module_at_fault(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        test="""

def test_bad_input(graph_snapshot):
    graph_snapshot(ConvNet(), torch.randn(1, 3, 28, 28))
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["E   *CaptureError: capturing ConvNet failed: forward raised RuntimeError in module 'conv1' (Conv2d)*"]
    )


def test_with_modelviz_the_text_and_record_are_kept_even_when_it_fails(pytester: pytest.Pytester) -> None:
    _write(pytester, channels=32)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    _write(pytester, channels=64)
    pytester.runpytest("--modelviz", "-p", "no:randomly").assert_outcomes(failed=1)
    run = run_dir_of(pytester)
    [test_dir] = [p for p in run.iterdir() if p.is_dir() and p.name.startswith("test_convnet")]
    records = [json.loads(line) for line in (test_dir / "modelviz.jsonl").read_text().splitlines()]
    [arch] = [r for r in records if r["kind"] == "architecture"]
    assert arch["name"] == "ConvNet" and arch["model"] == "ConvNet" and arch["training"] is True
    assert arch["snapshot"] == "changed"
    assert "conv2: Conv2d(16, 32" in arch["diff"]
    assert arch["totals"]["params"] == 40_810
    conv2 = {"name": "conv2", "type": "Conv2d", "output_shape": [1, 64, 14, 14], "params": 9280, "macs": 1806336}
    assert conv2 in arch["rows"]
    assert arch["text"] == "graph-ConvNet/architecture.txt"
    assert (test_dir / arch["text"]).read_text().startswith("# modelviz architecture v1")
    outcomes = json.loads((run / "outcomes.json").read_text())
    assert outcomes["snapshot_changes"] == 1
    [render] = [r for r in records if r["kind"] == "graph_render"]
    assert render["name"] == "ConvNet" and render["files"]  # rendered even though the snapshot failed


def test_a_render_failure_is_recorded_and_warned_but_the_snapshot_result_stands(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
import pytest_modelviz.render


@pytest.fixture(autouse=True)
def broken_renderer(monkeypatch):
    def render_graph_artifacts(*args, **kwargs):
        raise RuntimeError("no pictures today")

    monkeypatch.setattr(pytest_modelviz.render, "render_graph_artifacts", render_graph_artifacts)
"""
    )
    _write(pytester)
    result = pytester.runpytest("--modelviz", "--snapshot-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*graph 'ConvNet' rendering failed: RuntimeError: no pictures today*"])
    run = run_dir_of(pytester)
    [records_file] = run.glob("*/modelviz.jsonl")
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["architecture", "graph_render"]
    assert records[0]["snapshot"] == "created"
    assert records[1]["note"] == "rendering failed: RuntimeError: no pictures today"


def test_without_modelviz_a_mismatch_still_fails_and_nothing_is_kept(pytester: pytest.Pytester) -> None:
    _write(pytester, channels=32)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    _write(pytester, channels=16)
    pytester.runpytest().assert_outcomes(failed=1)
    assert not (pytester.path / ".modelviz").exists()


def test_parameters_delegates_to_the_parameter_statistics_snapshot(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        test="""

def test_stats(graph_snapshot):
    torch.manual_seed(0)
    graph_snapshot.parameters(ConvNet(), name="convnet")
""",
    )
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    [stored] = (pytester.path / "__snapshots__" / "test_convnet").iterdir()
    assert stored.name == "test_stats[convnet].params"
    assert "conv2.weight" in stored.read_text(encoding="utf-8")
    pytester.runpytest().assert_outcomes(passed=1)


def test_module_names_with_spaces_and_line_breaks_match_on_the_next_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_heads="""
        import torch
        from torch import nn

        class Heads(nn.Module):
            def __init__(self):
                super().__init__()
                self.heads = nn.ModuleDict(
                    {"head 1": nn.Linear(3, 3), "cr\\rname": nn.Linear(3, 3), "tab\\tx": nn.Linear(3, 2)}
                )

            def forward(self, x):
                return self.heads["tab\\tx"](self.heads["cr\\rname"](self.heads["head 1"](x)))

        def test_heads(graph_snapshot):
            graph_snapshot(Heads(), torch.zeros(1, 3))
        """
    )
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    for args in ((), ("--snapshot-update",)):
        result = pytester.runpytest(*args)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["1 snapshot passed."])
    stored = (pytester.path / "__snapshots__/test_heads/test_heads[Heads].architecture").read_bytes()
    assert b'  "heads.head 1"  ' in stored and b'"heads.cr\\rname"' in stored and b"\r" not in stored

"""Parameter-statistics snapshots as a user runs them: create, pass, fail on change, tolerate, accept."""

from __future__ import annotations

import json
import re
from pathlib import Path

# In-process pytester runs drop modules first imported during the run; torch's and matplotlib's
# (which hiddenlayer imports) C extensions cannot be imported twice, so they are loaded here, once.
import matplotlib.figure  # noqa: F401
import pytest
import torch  # noqa: F401
from modelviz_testing import run_dir_of

import pytest_modelviz.snapshot.params  # noqa: F401

CONFTEST = """
import pytest
import torch
from torch import nn

from pytest_modelviz.session import get_session
from pytest_modelviz.snapshot.params import assert_param_snapshot


class Net(nn.Module):
    def __init__(self, zero_fc=False, scale=1.0):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(64, 10)
        if zero_fc:
            nn.init.zeros_(self.fc.weight)
        with torch.no_grad():
            self.fc.weight.mul_(scale)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


@pytest.fixture
def param_snapshot(request, snapshot, modelviz_artifacts):
    def check(model, **kwargs):
        return assert_param_snapshot(
            snapshot, modelviz_artifacts, get_session(request.config), model, **kwargs
        )
    return check
"""

@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``-n``, syrupy sees PYTEST_XDIST_WORKER in the inner in-process run and keeps its
    report for a controller that does not exist; the inner run is a plain single process."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


SNAPSHOT = Path("__snapshots__/test_params/test_net[Net].params")


def _project(pytester: pytest.Pytester, body: str = "param_snapshot(Net())") -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_params=f"""
        from conftest import Net

        def test_net(param_snapshot):
            {body}
        """
    )


def test_create_then_pass_without_rewriting(pytester: pytest.Pytester) -> None:
    _project(pytester)
    created = pytester.runpytest("--snapshot-update")
    created.assert_outcomes(passed=1)
    created.stdout.fnmatch_lines(["*1 snapshot generated*"])
    path = pytester.path / SNAPSHOT
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# pytest-modelviz parameter statistics")
    assert "param fc.weight\n  shape: [10, 64]\n" in text
    before = path.stat().st_mtime_ns

    again = pytester.runpytest()
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*1 snapshot passed*"])
    # --snapshot-update with equal values must neither rewrite nor call the file unused.
    updated = pytester.runpytest("--snapshot-update")
    updated.assert_outcomes(passed=1)
    assert "unused" not in updated.stdout.str()
    assert path.read_text(encoding="utf-8") == text
    assert path.stat().st_mtime_ns == before


def test_missing_snapshot_fails_with_the_command(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*parameter-statistics snapshot 'Net' of Net does not exist*",
            "*Create it with: pytest --snapshot-update test_params.py::test_net*",
        ]
    )
    assert not (pytester.path / SNAPSHOT).exists()


def test_changed_init_fails_naming_parameter_and_values(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    stored = (pytester.path / SNAPSHOT).read_text(encoding="utf-8")

    _project(pytester, "param_snapshot(Net(zero_fc=True))")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "parameter statistics of Net ('Net') differ from the snapshot " in out
    assert re.search(r"fc\.weight std: stored [0-9.e-]+, actual 0 \(\|diff\| [0-9.e-]+ > ", out)
    assert "fc.weight hist:" in out
    assert "conv.weight" not in out  # unchanged tensors are not listed
    assert "accept it with: pytest --snapshot-update test_params.py::test_net" in out
    assert (pytester.path / SNAPSHOT).read_text(encoding="utf-8") == stored

    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    assert "  std: 0\n" in (pytester.path / SNAPSHOT).read_text(encoding="utf-8")
    pytester.runpytest().assert_outcomes(passed=1)


def test_added_and_removed_parameters_are_listed(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    _project(pytester, "m = Net(); m.head = __import__('torch').nn.Linear(10, 2); del m.conv; param_snapshot(m)")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "conv.weight: removed (param [4, 1, 3, 3] float32)" in out
    assert "head.weight: added (param [2, 10] float32)" in out
    assert "fc.weight" not in out


def test_loose_tolerance_from_ini_accepts_small_drift(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    _project(pytester, "param_snapshot(Net(scale=1.001))")
    pytester.runpytest().assert_outcomes(failed=1)  # default 1e-4 / 1e-6 catches 0.1 % drift
    pytester.makeini("[pytest]\nmodelviz_param_rtol = 0.01\nmodelviz_param_atol = 0.001\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_per_call_tolerance_overrides_ini_and_by_pattern(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    stored = (pytester.path / SNAPSHOT).read_bytes()
    pytester.makeini("[pytest]\nmodelviz_param_rtol = 0.5\nmodelviz_param_atol = 0.5\n")
    _project(pytester, "param_snapshot(Net(scale=1.001), rtol=1e-5, atol=0)")
    pytester.runpytest().assert_outcomes(failed=1)  # the tight per-call value wins over the ini

    pytester.makeini("[pytest]\n")
    _project(pytester, "param_snapshot(Net(scale=1.001), rtol={'fc.*': 0.01}, atol={'fc.*': 1e-3})")
    pytester.runpytest().assert_outcomes(passed=1)
    _project(pytester, "param_snapshot(Net(scale=1.001), rtol={'conv.*': 0.01}, atol={'conv.*': 1e-3})")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fc.weight std: stored*atol 1e-06 + rtol 0.0001*"])
    assert (pytester.path / SNAPSHOT).read_bytes() == stored  # within tolerance: never rewritten


def test_corrupt_snapshot_names_the_line(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    path = pytester.path / SNAPSHOT
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = next(i for i, line in enumerate(lines) if line.startswith("  mean:"))
    lines[bad] = "  mean: banana"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"SnapshotFormatError: {SNAPSHOT.as_posix()}, line {bad + 1}: 'banana' is not a number" in out
    assert "To rewrite it from the model: pytest --snapshot-update test_params.py::test_net" in out
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    assert "banana" not in path.read_text(encoding="utf-8")
    pytester.runpytest().assert_outcomes(passed=1)


def test_names_counters_and_a_second_txt_extension_coexist(pytester: pytest.Pytester) -> None:
    """Two models alike get ``Net`` and ``Net-2``; a generic ``.txt`` extension in the same folder
    neither claims our files nor has its own claimed, so an update deletes nothing."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_params="""
        from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
        from conftest import Net

        class Text(SingleFileSnapshotExtension):
            file_extension = "txt"
            _write_mode = WriteMode.TEXT

        def test_net(param_snapshot, snapshot):
            param_snapshot(Net())
            param_snapshot(Net(scale=2.0))
            param_snapshot(Net(), name="conv net")
            assert snapshot(extension_class=Text, name="arch") == "some architecture text"
        """
    )
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    folder = pytester.path / "__snapshots__" / "test_params"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "test_net[Net-2].params",
        "test_net[Net].params",
        "test_net[arch].txt",
        "test_net[conv net].params",
    ]
    for args in (("--snapshot-update",), ()):
        result = pytester.runpytest(*args)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*4 snapshots passed*"])
        assert "unused" not in result.stdout.str()
        assert sorted(p.name for p in folder.iterdir()) == names


def test_artifacts_and_record_with_modelviz(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    _project(pytester, "param_snapshot(Net(zero_fc=True), name='zeroed')\n            param_snapshot(Net())")
    pytester.runpytest("--modelviz", "--snapshot-update").assert_outcomes(passed=1)
    _project(pytester, "param_snapshot(Net(zero_fc=True))")
    pytester.runpytest("--modelviz").assert_outcomes(failed=1)

    test_dir = next(p for p in run_dir_of(pytester).iterdir() if p.name.startswith("test_params.py--test_net"))
    records = [json.loads(line) for line in (test_dir / "modelviz.jsonl").read_text().splitlines()]
    params = [r for r in records if r["kind"] == "params"]
    assert [(r["name"], r["snapshot"]) for r in params] == [("Net", "changed")]
    record = params[0]
    assert record["model"] == "Net"
    assert any(m.startswith("fc.weight std: stored") for m in record["mismatches"])
    assert record["stats"] == "params-Net/stats.json"
    assert record["plot"] == "params-Net/histograms.svg"
    stats = json.loads((test_dir / record["stats"]).read_text())
    assert stats["snapshot"] == "changed"
    assert [t["name"] for t in stats["actual"]["tensors"]] == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert stats["stored"]["tensors"][2]["std"] > 0 == stats["actual"]["tensors"][2]["std"]
    svg = (test_dir / record["plot"]).read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "fc.weight" in svg
    outcomes = json.loads((run_dir_of(pytester) / "outcomes.json").read_text())
    assert outcomes["snapshot_changes"] == 1


def test_histogram_plot_is_byte_reproducible(tmp_path: Path) -> None:
    from pytest_modelviz.params.stats import compute_stats
    from pytest_modelviz.snapshot.params import _plot_histograms

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    stored = compute_stats(model)
    torch.nn.init.zeros_(model[1].weight)
    actual = compute_stats(model)
    first = _plot_histograms(actual, stored, tmp_path / "a.svg")
    second = _plot_histograms(actual, stored, tmp_path / "b.svg")
    assert first is not None and second is not None
    data = first.read_bytes()
    assert data == second.read_bytes()
    assert b"<dc:date>" not in data and b"outline: stored" in data


def test_histogram_picture_is_one_panel_per_tensor_with_every_name_escaped(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from pytest_modelviz.params.stats import compute_stats
    from pytest_modelviz.snapshot.params import PLOT_LIMIT, _plot_histograms

    torch.manual_seed(0)
    named = type('Odd<&>"Net', (torch.nn.Module,), {})()  # class names reach the title as they are
    named.add_module("a<b&c", torch.nn.Linear(4, 8))
    stored = compute_stats(named)
    with torch.no_grad():
        named.get_submodule("a<b&c").weight.mul_(3)
    actual = compute_stats(named)
    root = ET.parse(_plot_histograms(actual, stored, tmp_path / "h.svg")).getroot()  # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert texts[0] == 'Odd<&>"Net: parameter histograms over [min, max]; bars: actual, outline: stored'
    assert "a<b&c.weight [8, 4]" in texts and "a<b&c.bias [8]" in texts
    panels = [g for g in root.iter(f"{ns}g") if g.get("transform", "").startswith("translate")]
    assert len(panels) == 2
    for panel, t in zip(panels, actual.tensors, strict=True):
        bars = panel.findall(f"{ns}rect")
        assert len(bars) == sum(1 for c in t.hist if c > 0) > 0
        assert len(panel.findall(f"{ns}polyline")) == 1  # the stored histogram, outlined
    # Many tensors: the first PLOT_LIMIT are drawn and the title says so.
    big = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(PLOT_LIMIT)])
    stats = compute_stats(big)
    root = ET.parse(_plot_histograms(stats, None, tmp_path / "big.svg")).getroot()
    panels = [g for g in root.iter(f"{ns}g") if g.get("transform", "").startswith("translate")]
    assert len(panels) == PLOT_LIMIT and not list(root.iter(f"{ns}polyline"))
    assert f"(first {PLOT_LIMIT} of {2 * PLOT_LIMIT} tensors)" in next(root.iter(f"{ns}text")).text


def test_without_modelviz_nothing_is_written_but_checks_run(pytester: pytest.Pytester) -> None:
    _project(pytester, "param_snapshot(Net())")
    pytester.runpytest().assert_outcomes(failed=1)  # missing: fails, never silently passes
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    assert not (pytester.path / ".modelviz").exists()


def test_bad_arguments_are_usage_errors(pytester: pytest.Pytester) -> None:
    _project(pytester, "param_snapshot(Net(), name='  ')")
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ModelvizUsageError: parameter snapshot name must be a non-empty string*"])
    _project(pytester, "param_snapshot(Net(), rtol='loose')")
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*rtol must be a finite number >= 0*got 'loose'*"])
    assert not (pytester.path / "__snapshots__").exists()


def test_through_graph_snapshot_beside_the_architecture_snapshot(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_params="""
        import torch
        from conftest import Net

        def test_net(graph_snapshot):
            model = Net()
            graph_snapshot(model, torch.zeros(1, 1, 6, 6))
            stats = graph_snapshot.parameters(model, bins=8)
            assert [t.name for t in stats.tensors] == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
        """
    )
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
    folder = pytester.path / "__snapshots__" / "test_params"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["test_net[Net].architecture", "test_net[Net].params"]
    assert "  hist: " in (folder / "test_net[Net].params").read_text(encoding="utf-8")
    for args in (("--snapshot-update",), ()):
        result = pytester.runpytest(*args)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*2 snapshots passed*"])
        assert "unused" not in result.stdout.str()
    assert sorted(p.name for p in folder.iterdir()) == names

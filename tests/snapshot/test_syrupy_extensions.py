"""Our snapshot kinds as plain syrupy extensions: ``assert ... == snapshot(extension_class=...)``.

syrupy explains a failed assertion with the ``diff_lines`` of the snapshot's default extension, so
the layer-by-layer message needs ``snapshot.use_extension``/``with_defaults``; a per-call
``extension_class=`` compares the same way and shows syrupy's line diff.
"""

from __future__ import annotations

import pytest
import torch  # noqa: F401 - imported once here, so in-process pytester runs do not re-import it

import pytest_modelviz.graph.capture  # noqa: F401 - the classes the inner runs compare must be these
import pytest_modelviz.snapshot.params  # noqa: F401

MODEL = """
import torch
from torch import nn

from pytest_modelviz import capture
from pytest_modelviz.snapshot import ArchitectureExtension, ParamStatsExtension, compute_stats

WIDTH = {width}
SCALE = {scale}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, WIDTH)
        with torch.no_grad():
            self.fc.weight.mul_(SCALE)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class Loose(ParamStatsExtension):
    rtol = 1e-2
    atol = 1e-3

"""
TESTS = """
def test_arch(snapshot):
    assert capture(Net(), torch.zeros(1, 1, 6, 6)) == snapshot(extension_class=ArchitectureExtension)


def test_named_with_defaults(snapshot):
    arch = snapshot.with_defaults(extension_class=ArchitectureExtension)
    assert capture(Net(), torch.zeros(1, 1, 6, 6)) == arch(name="net")
    assert capture(Net().fc, torch.zeros(2, 64)) == arch(name="head")


def test_stats(snapshot):
    assert compute_stats(Net()) == snapshot(extension_class=ParamStatsExtension, name="init")


def test_stats_by_default(snapshot):
    stats = snapshot.use_extension(ParamStatsExtension)
    assert compute_stats(Net()) == stats(name="init")


def test_loose_stats(snapshot):
    assert compute_stats(Net()) == snapshot(extension_class=Loose, name="init")


def test_same_file_as_the_fixture(graph_snapshot):
    graph_snapshot(Net(), torch.zeros(1, 1, 6, 6), name="fixture")
"""
FOLDER = "__snapshots__/test_syrupy"


def _write(pytester: pytest.Pytester, width: int = 10, scale: float = 1.0) -> None:
    pytester.makepyfile(test_syrupy=MODEL.format(width=width, scale=scale) + TESTS)


def _stored(pytester: pytest.Pytester) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((pytester.path / FOLDER).iterdir())}


def test_missing_then_created_then_matched(pytester: pytest.Pytester) -> None:
    _write(pytester)
    missing = pytester.runpytest()
    missing.assert_outcomes(failed=6)
    missing.stdout.fnmatch_lines(
        ["*Snapshot 'test_arch' does not exist!*", "*Run `pytest --snapshot-update` to create it.*"]
    )

    pytester.runpytest("--snapshot-update").assert_outcomes(passed=6)
    stored = _stored(pytester)
    assert sorted(stored) == [
        "test_arch.architecture",
        "test_loose_stats[init].params",
        "test_named_with_defaults[head].architecture",
        "test_named_with_defaults[net].architecture",
        "test_same_file_as_the_fixture[fixture].architecture",
        "test_stats[init].params",
        "test_stats_by_default[init].params",
    ]
    # One format, whichever way it was asserted.
    assert stored["test_arch.architecture"] == stored["test_same_file_as_the_fixture[fixture].architecture"]
    assert stored["test_arch.architecture"].startswith(b"# modelviz architecture v1\nmodel: Net\n")
    assert b"param fc.weight\n  shape: [10, 64]\n" in stored["test_stats[init].params"]

    for args in ((), ("--snapshot-update",)):
        again = pytester.runpytest(*args)
        again.assert_outcomes(passed=6)
        again.stdout.fnmatch_lines(["*7 snapshots passed.*"])
        assert "unused" not in again.stdout.str()
    assert _stored(pytester) == stored


def test_a_changed_architecture_fails_with_the_semantic_diff(pytester: pytest.Pytester) -> None:
    _write(pytester, width=10)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=6)
    _write(pytester, width=12)
    result = pytester.runpytest("-vv", "-k", "test_named")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(
        [
            "E       *assert [[]+ received] == [[]- snapshot]",
            "E         architecture snapshot 'test_named_with_defaults[[]net]' changed (Net):",
            "E           fc: Linear(64, 10) -> Linear(64, 12); output [[]1, 10] float32 -> [[]1, 12] float32; "
            "params +130 (650 -> 780)",
            "E         text diff (- snapshot, + captured):",
            "E         Run `pytest --snapshot-update` to accept the new architecture.",
        ]
    )
    per_call = pytester.runpytest("-k", "test_arch")
    per_call.assert_outcomes(failed=1, deselected=5)
    per_call.stdout.fnmatch_lines(["E       *assert [[]+ received] == [[]- snapshot]", "*+ totals: params=820 *"])
    pytester.runpytest("--snapshot-update", "-k", "test_arch or test_named").assert_outcomes(passed=2, deselected=4)
    assert b"torch.nn.Linear(64, 12)" in _stored(pytester)["test_arch.architecture"]
    pytester.runpytest("-k", "test_arch or test_named").assert_outcomes(passed=2, deselected=4)


def test_parameter_statistics_match_within_tolerance_and_are_never_rewritten(pytester: pytest.Pytester) -> None:
    _write(pytester, scale=1.0)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=6)
    stored = _stored(pytester)

    _write(pytester, scale=1.00000001)  # last-digit noise: within the default tolerance
    for args in ((), ("--snapshot-update",)):
        pytester.runpytest(*args, "-k", "stats").assert_outcomes(passed=3, deselected=3)
    assert _stored(pytester) == stored

    _write(pytester, scale=1.001)  # 0.1 %: beyond the default 1e-4, within Loose's 1e-2
    result = pytester.runpytest("-vv", "-k", "stats")
    result.assert_outcomes(passed=1, failed=2, deselected=3)
    summary = result.stdout.str().split("short test summary")[1]
    assert "test_stats " in summary and "test_stats_by_default " in summary and "test_loose_stats" not in summary
    result.stdout.fnmatch_lines(
        [
            "E         parameter statistics of Net ('test_stats_by_default[[]init]') differ from the snapshot "
            "__snapshots__/test_syrupy/test_stats_by_default[[]init].params:",
            "E           fc.weight std: stored 0.0733363744, actual 0.0734097141 "
            "(|diff| 7.33397e-05 > 8.33363744e-06 = atol 1e-06 + rtol 0.0001 * |stored|)",
            "E         If the change is intended, accept it with `pytest --snapshot-update` (or loosen rtol/atol).",
        ]
    )
    assert "conv.weight" not in result.stdout.str()
    assert _stored(pytester) == stored

    pytester.runpytest("--snapshot-update", "-k", "stats").assert_outcomes(passed=3, deselected=3)
    after = _stored(pytester)
    assert after["test_stats[init].params"] != stored["test_stats[init].params"]
    assert after["test_loose_stats[init].params"] == stored["test_loose_stats[init].params"]


def test_something_else_than_a_graph_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_wrong="""
        import torch
        from pytest_modelviz.snapshot import ArchitectureExtension

        def test_wrong(snapshot):
            assert torch.nn.Linear(2, 2) == snapshot(extension_class=ArchitectureExtension)
        """
    )
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*ModelvizUsageError: ArchitectureExtension snapshots an ArchitectureGraph, got Linear*"]
    )
    assert not (pytester.path / "__snapshots__" / "test_wrong").exists()

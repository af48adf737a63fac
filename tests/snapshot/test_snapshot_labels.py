"""One naming rule for every kind of snapshot: a name given twice in a test is refused, naming the
test and the name; names the plugin chooses are numbered in call order."""

from __future__ import annotations

# In-process pytester runs drop modules first imported during the run; torch's and matplotlib's
# C extensions cannot be imported twice, so they are loaded here, once, before any run.
import matplotlib.figure  # noqa: F401
import pytest
import torch  # noqa: F401

import pytest_modelviz.snapshot.params  # noqa: F401

TESTS = """
import torch
from torch import nn


def model():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def test_params_same_name(graph_snapshot):
    graph_snapshot.parameters(model(), name="head")
    graph_snapshot.parameters(model(), name=" head ")


def test_graph_same_name(graph_snapshot):
    graph_snapshot(model(), torch.randn(1, 3), name="head")
    graph_snapshot(model(), torch.randn(1, 3), name="head")


def test_defaults_skip_given_names(graph_snapshot):
    graph_snapshot.parameters(model(), name="Linear-2")
    graph_snapshot.parameters(model())
    graph_snapshot.parameters(model())
    graph_snapshot(model(), torch.randn(1, 3))  # its own kind: Linear again
"""


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def test_a_name_given_twice_is_refused_for_both_kinds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_names=TESTS)
    result = pytester.runpytest("--snapshot-update", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*ModelvizUsageError: parameter snapshot name 'head' is used twice in this test "
        "(test_names.py::test_params_same_name); give each snapshot its own name=*",
    ])
    result.stdout.fnmatch_lines([
        "*ModelvizUsageError: graph_snapshot name 'head' is used twice in this test "
        "(test_names.py::test_graph_same_name)*",
    ])
    names = sorted(p.name for p in (pytester.path / "__snapshots__" / "test_names").iterdir())
    assert names == [
        "test_defaults_skip_given_names[Linear-2].params",
        "test_defaults_skip_given_names[Linear-3].params",
        "test_defaults_skip_given_names[Linear].architecture",
        "test_defaults_skip_given_names[Linear].params",
        "test_graph_same_name[head].architecture",
        "test_params_same_name[head].params",
    ]


def test_a_new_run_of_the_same_test_item_starts_from_no_labels(request: pytest.FixtureRequest) -> None:
    """A rerun plugin runs the same item again with a new ``snapshot`` fixture: its snapshots keep
    their names (``Net``, not ``Net-2``, and no "used twice" for a given name)."""
    from pytest_modelviz.errors import ModelvizUsageError
    from pytest_modelviz.snapshot.labels import snapshot_label

    class Run:  # stands in for the syrupy ``snapshot`` fixture value of one run
        pass

    first, second = Run(), Run()
    assert [snapshot_label(request.node, first, "kind", None, "Net") for _ in range(2)] == ["Net", "Net-2"]
    assert snapshot_label(request.node, first, "kind", "head", "Net") == "head"
    with pytest.raises(ModelvizUsageError, match="kind name 'head' is used twice in this test"):
        snapshot_label(request.node, first, "kind", "head", "Net")
    assert snapshot_label(request.node, second, "kind", None, "Net") == "Net"
    assert snapshot_label(request.node, second, "kind", "head", "Net") == "head"

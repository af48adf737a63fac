"""A missing snapshot is named by one path, relative to the rootdir, whatever its kind."""

from __future__ import annotations

# In-process pytester runs drop modules first imported during the run; torch's and matplotlib's
# C extensions cannot be imported twice, so they are loaded here, once, before any run.
import matplotlib.figure  # noqa: F401
import pytest
import torch  # noqa: F401

import pytest_modelviz.snapshot.params  # noqa: F401


def test_both_kinds_name_the_missing_file_relative_to_the_rootdir(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makeini("[pytest]\n")
    tests = pytester.mkdir("tests")
    (tests / "models").mkdir()
    (tests / "models" / "test_net.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "def test_arch(graph_snapshot):\n    graph_snapshot(nn.Linear(3, 2), torch.randn(1, 3))\n\n\n"
        "def test_params(graph_snapshot):\n    graph_snapshot.parameters(nn.Linear(3, 2))\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert ("Snapshot 'test_arch[Linear]' does not exist! "
            "(tests/models/__snapshots__/test_net/test_arch[Linear].architecture)") in out
    assert ("parameter-statistics snapshot 'Linear' of Linear does not exist "
            "(tests/models/__snapshots__/test_net/test_params[Linear].params).") in out

"""``--snapshot-update`` in one shard of a suite never deletes the snapshots of tests another shard runs.

syrupy judges a ``-k`` expression against snapshot names, not against the tests that own them, so a
shard selected by a marker keyword (``-k "not slow"``) or a module name (``-k "not test_models"``)
deleted the snapshots of every test it did not run. Each shard here is a real pytest process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sharded_runs import run_pytest

TESTS = """
import pytest
import torch
from torch import nn


def test_a(graph_snapshot):
    graph_snapshot(nn.Linear(3, 1), torch.zeros(1, 3))


def test_b(graph_snapshot):
    torch.manual_seed(0)
    graph_snapshot(nn.Linear(3, 2), torch.zeros(1, 3))
    graph_snapshot.parameters(nn.Linear(3, 2), name="init")


@pytest.mark.slow
def test_c(graph_snapshot):
    graph_snapshot(nn.Linear(3, 3), torch.zeros(1, 3))
"""
OTHER = """
import torch
from torch import nn


def test_big(graph_snapshot):
    graph_snapshot(nn.Linear(3, 5), torch.zeros(1, 3))
"""
# What pytest-split does: drop the items of the other groups and say so through pytest_deselected.
SPLITTER = """
def pytest_collection_modifyitems(config, items):
    keep = [item for item in items if item.name in ("test_a", "test_big")]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep
"""
KEPT = "pytest-modelviz: --snapshot-update deleted no unused snapshot, because the run selected part of the suite"


def _snapshots(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("__snapshots__/**/*"))
            if p.is_file()}


def _pytest(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The module-scoped project is set up before the autouse fixtures that clear the outer run's
    # xdist and CI variables, so the shard processes get a cleaned environment here.
    return run_pytest(root, *args)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sharded")
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow tests\n", encoding="utf-8")
    (root / "test_models.py").write_text(TESTS, encoding="utf-8")
    (root / "test_other.py").write_text(OTHER, encoding="utf-8")
    (root / "splitter.py").write_text(SPLITTER, encoding="utf-8")
    done = _pytest(root, "--snapshot-update")
    assert "5 snapshots generated" in done.stdout, done.stdout
    return root


@pytest.mark.parametrize("shard", [
    ["-k", "not slow"],  # a marker: syrupy saw "not slow" true of test_c's snapshot name
    ["-k", "not test_models"],  # a module: true of every snapshot name in it
    ["-m", "not slow"],
    ["-p", "splitter"],  # pytest-split's way of taking a group
], ids=["k-marker", "k-module", "m-marker", "pytest-split"])
def test_a_shard_update_deletes_no_snapshot_of_another_shard(project: Path, shard: list[str]) -> None:
    stored = _snapshots(project)
    assert len(stored) == 5
    done = _pytest(project, "--snapshot-update", *shard)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "deselected" in done.stdout and "Deleted" not in done.stdout, done.stdout
        assert KEPT in done.stdout
        assert _snapshots(project) == stored
    finally:
        for rel, data in stored.items():  # the next shard starts from the committed snapshots
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_bytes(data)


def test_the_whole_suite_still_deletes_a_snapshot_no_test_uses(project: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(project, root)
    (root / "test_other.py").write_text(OTHER.replace("def test_big(", "def _not_a_test_big("), encoding="utf-8")
    done = _pytest(root, "--snapshot-update")
    assert done.returncode == 0 and "1 unused snapshot deleted" in done.stdout and KEPT not in done.stdout
    assert "__snapshots__/test_other/test_big[Linear].architecture" not in _snapshots(root)

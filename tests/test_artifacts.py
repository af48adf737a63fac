"""Per-test artifact folders: safe names, no collisions, nothing lost, xdist."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from modelviz_testing import run_dir_of

from pytest_modelviz.artifacts import ArtifactDir, safe_dirname

AWKWARD_IDS = [
    "tests/test_a.py::test_x",
    "tests/test_a.py::test_x[a/b]",
    "tests/test_a.py::test_x[a_b]",
    "tests/test_a.py::TestC::test_x[\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9-\u6f22\u5b57]",
    "tests/test_a.py::test_x[" + "long" * 200 + "]",
    "tests/test_a.py::test_x[" + "long" * 200 + "2]",
    "tests/test_a.py::test_x[..]",
    "tests/test_a.py::test_x[con:aux|<>*?\"]",
    "tests/test_a.py::test_x[   ]",
]


def test_safe_dirname_is_portable_bounded_and_unique() -> None:
    names = [safe_dirname(n) for n in AWKWARD_IDS]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= 100
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name), name
        assert not name.startswith(".")
    assert safe_dirname(AWKWARD_IDS[0]) == safe_dirname(AWKWARD_IDS[0])  # stable


def test_artifact_paths_stay_inside_the_test_folder(tmp_path: Path) -> None:
    art = ArtifactDir("t::x", tmp_path / "t", persist=True)
    assert art.path("a", "b.txt") == tmp_path / "t" / "a" / "b.txt"
    assert (tmp_path / "t" / "a").is_dir()
    for bad in ("../escape.txt", "/etc/passwd"):
        with pytest.raises(ValueError, match="inside the test folder"):
            art.path(bad)
    assert art.unique_dir("graph-Net").name == "graph-Net"
    assert art.unique_dir("graph-Net").name == "graph-Net-2"
    art.record("note", value=1)
    art.record("note", value=2)
    assert [r["value"] for r in art.records()] == [1, 2]


def test_awkward_node_ids_get_distinct_folders(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        IDS = ["a/b", "a_b", "\u00fc::x[1]", "L" * 300, "L" * 300 + "2", "..", "con:aux|<>*?"]
        @pytest.mark.parametrize("p", IDS)
        def test_x(modelviz_artifacts, p):
            modelviz_artifacts.path("id.txt").write_text(modelviz_artifacts.nodeid, encoding="utf-8")
        """
    )
    before = {p for p in pytester.path.rglob("*") if ".modelviz" not in p.parts}
    pytester.runpytest("--modelviz", "-p", "no:cacheprovider").assert_outcomes(passed=7)
    after = {p for p in pytester.path.rglob("*")
             if ".modelviz" not in p.parts and "__pycache__" not in p.parts}
    assert after == before, "hostile ids wrote nothing outside the run folder"
    run = run_dir_of(pytester)
    written = sorted(p.read_text(encoding="utf-8") for p in run.glob("*/id.txt"))
    assert len(written) == 7 and len(set(written)) == 7
    assert len({p.parent for p in run.glob("*/id.txt")}) == 7


def test_artifacts_written_before_a_failure_or_error_are_kept_and_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        def test_fails(modelviz_artifacts):
            modelviz_artifacts.path("before-failure.txt").write_text("kept")
            assert False, "boom"

        @pytest.fixture
        def broken(modelviz_artifacts):
            modelviz_artifacts.path("before-error.txt").write_text("kept")
            raise RuntimeError("setup broke")

        def test_errors(broken):
            pass
        """
    )
    result = pytester.runpytest("--modelviz")
    result.assert_outcomes(failed=1, errors=1)
    run = run_dir_of(pytester)
    assert [p.read_text() for p in run.rglob("before-failure.txt")] == ["kept"]
    assert [p.read_text() for p in run.rglob("before-error.txt")] == ["kept"]
    tests = json.loads((run / "outcomes.json").read_text())["tests"]
    outcomes = {t["nodeid"].split("::")[-1]: t for t in tests}
    assert outcomes["test_fails"]["outcome"] == "failed"
    assert "boom" in outcomes["test_fails"]["message"]
    assert outcomes["test_errors"]["outcome"] == "error"


@pytest.mark.slow
def test_xdist_workers_share_one_run_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, pytest
        @pytest.mark.parametrize("i", range(8))
        def test_w(modelviz_artifacts, i):
            modelviz_artifacts.path("who.txt").write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))
            modelviz_artifacts.record("note", i=i)
        """
    )
    result = pytester.runpytest_subprocess("--modelviz", "-n", "2", "--junitxml=junit.xml")
    result.assert_outcomes(passed=8)
    runs = [p for p in (pytester.path / ".modelviz").iterdir() if p.name.startswith("run-")]
    assert len(runs) == 1, "workers must not create run folders of their own"
    run = runs[0]
    workers = {p.read_text() for p in run.glob("*/who.txt")}
    assert len(list(run.glob("*/who.txt"))) == 8
    assert workers <= {"gw0", "gw1"} and workers, workers
    outcomes = json.loads((run / "outcomes.json").read_text())["tests"]
    assert len(outcomes) == 8 and {t["outcome"] for t in outcomes} == {"passed"}
    # The controller saw every worker's artifacts: one attachment line per test in the JUnit XML.
    xml = (pytester.path / "junit.xml").read_text()
    assert xml.count("[[ATTACHMENT|") == 8
    assert os.path.isfile(xml.split("[[ATTACHMENT|")[1].split("]]")[0])


@pytest.mark.slow
def test_snapshot_changes_are_counted_from_every_workers_records(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.parametrize("status", ["changed", "updated", "matched", "created"])
        def test_s(modelviz_artifacts, status):
            modelviz_artifacts.record("architecture", name="Net", snapshot=status)
            modelviz_artifacts.record("params", name="Net", snapshot=status)
        """
    )
    pytester.runpytest_subprocess("--modelviz", "-n", "2").assert_outcomes(passed=4)
    outcomes = json.loads((run_dir_of(pytester) / "outcomes.json").read_text())
    assert outcomes["snapshot_changes"] == 4  # changed and updated, architecture and params


def test_records_reader_skips_a_line_cut_short(tmp_path: Path) -> None:
    from pytest_modelviz.artifacts import RECORDS_FILE, read_records, walk_run
    from pytest_modelviz.records import UnreadableRecord, snapshot_changes

    test_dir = tmp_path / "t"
    test_dir.mkdir()
    (test_dir / RECORDS_FILE).write_text(
        '{"kind": "architecture", "snapshot": "changed"}\n{"kind": "params", "snap\n[1]\n', encoding="utf-8"
    )
    assert read_records(test_dir) == [{"kind": "architecture", "snapshot": "changed"}]
    (folder,) = walk_run(tmp_path)
    kinds = [type(r).__name__ for r in folder.records]
    assert kinds == ["ArchitectureRecord", "UnreadableRecord", "UnreadableRecord"]
    assert all(isinstance(r, UnreadableRecord) for r in folder.records[1:])
    assert snapshot_changes(folder.records) == 1


def test_a_record_that_cannot_be_written_goes_to_the_handler(tmp_path: Path) -> None:
    """A record that cannot be written is handed to the session (which warns once), not raised."""
    from pytest_modelviz.artifacts import RECORDS_FILE

    failures: list[str] = []
    art = ArtifactDir("t::x", tmp_path / "t", persist=True,
                      on_write_error=lambda p, e: failures.append(p.name))
    assert art.record("note", value=1)
    (tmp_path / "t" / RECORDS_FILE).chmod(0o444)
    if os.access(tmp_path / "t" / RECORDS_FILE, os.W_OK):  # root ignores file modes
        pytest.skip("this user can write a read-only file; the full-disk test covers this as root")
    assert not art.record("note", value=2)
    assert failures == [RECORDS_FILE]


def test_bookkeeping_files_are_not_listed_as_artifacts(tmp_path: Path) -> None:
    from pytest_modelviz.records import PICTURES_FILE, RECORDS_FILE

    art = ArtifactDir("t::x", tmp_path / "t", persist=True)
    picture = art.write(art.path("graph/model.dot"), "digraph {}")
    for name in (RECORDS_FILE, PICTURES_FILE):
        art.write(art.path(name), "{}\n")
    assert art.files() == [picture]

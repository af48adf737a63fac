"""Snapshot files as a user meets them: names, old names, merge conflicts, undecodable bytes."""

from __future__ import annotations

import pytest
import torch  # noqa: F401 - imported once here, so in-process pytester runs do not re-import it

import pytest_modelviz.snapshot.params  # noqa: F401

PROJECT = """
import pytest
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, width)

    def forward(self, x):
        return self.fc(x).relu()


def test_arch(graph_snapshot):
    graph_snapshot(Net(), torch.zeros(1, 3))


def test_params(graph_snapshot):
    graph_snapshot.parameters(Net(), name="init")
"""
FOLDER = "__snapshots__/test_model"
ARCH = f"{FOLDER}/test_arch[Net].architecture"
PARAMS = f"{FOLDER}/test_params[init].params"
CONFLICT = "<<<<<<< HEAD\n{ours}=======\n{theirs}>>>>>>> other-branch\n"


def _created(pytester: pytest.Pytester) -> dict[str, bytes]:
    pytester.makepyfile(test_model=PROJECT)
    assert pytester.runpytest("--snapshot-update").ret == 0
    return {name: (pytester.path / name).read_bytes() for name in (ARCH, PARAMS)}


def _files(pytester: pytest.Pytester) -> list[str]:
    return sorted(p.name for p in (pytester.path / FOLDER).iterdir())


def _conflicted(text: str, needle: str) -> str:
    """``text`` with a git merge conflict around the first line containing ``needle``."""
    lines = text.splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if needle in line)
    theirs = lines[i].replace("3", "5")
    return "".join(lines[:i]) + CONFLICT.format(ours=lines[i], theirs=theirs) + "".join(lines[i + 1 :])


def test_snapshot_names_match_no_default_collection_glob(pytester: pytest.Pytester) -> None:
    _created(pytester)
    assert _files(pytester) == ["test_arch[Net].architecture", "test_params[init].params"]
    # Even asked to collect every text file as a doctest, pytest leaves snapshots alone.
    result = pytester.runpytest("--doctest-glob=*", "--collect-only", "-q")
    assert "architecture" not in result.stdout.str() and ".params" not in result.stdout.str()


def test_a_merge_conflict_in_a_snapshot_names_the_file_and_breaks_nothing_else(pytester: pytest.Pytester) -> None:
    stored = _created(pytester)
    arch = pytester.path / ARCH
    arch.write_text(_conflicted(stored[ARCH].decode(), "  fc  "), encoding="utf-8")
    params = pytester.path / PARAMS
    params.write_text(_conflicted(stored[PARAMS].decode(), "  count:"), encoding="utf-8")

    result = pytester.runpytest()
    result.assert_outcomes(failed=2)  # no collection error: the tests ran and said what is wrong
    out = result.stdout.str()
    assert "lacks blank after >>>" not in out and "error" not in out.splitlines()[-1]
    assert f"SnapshotFormatError: {arch}: unresolved merge conflict (line 9: '<<<<<<< HEAD')" in out
    assert f"{PARAMS}: unresolved merge conflict (line " in out
    assert "Resolve it: keep one side and delete the conflict markers" in out

    # The update rewrites both from the models, deletes nothing, and then everything passes.
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=2)
    assert _files(pytester) == ["test_arch[Net].architecture", "test_params[init].params"]
    assert arch.read_bytes() == stored[ARCH] and params.read_bytes() == stored[PARAMS]
    pytester.runpytest().assert_outcomes(passed=2)


OTHER = """
import torch
from torch import nn


def test_other(graph_snapshot):
    graph_snapshot(nn.Linear(3, 3), torch.zeros(1, 3), name="Old")
"""


@pytest.mark.parametrize("update", [False, True], ids=["plain run", "update run"])
def test_snapshots_under_their_old_txt_names_are_renamed_on_first_use(pytester: pytest.Pytester, update: bool) -> None:
    pytester.makepyfile(test_other=OTHER)
    stored = _created(pytester)
    folder = pytester.path / FOLDER
    (folder / "test_arch[Net].architecture").rename(folder / "test_arch[Net].txt")
    (folder / "test_params[init].params").rename(folder / "test_params[init].params.txt")
    # An old name matches pytest's doctest glob; with a merge conflict ('>>>') in it, it must not
    # break collection: the test that owns it says what is wrong.
    other = pytester.path / "__snapshots__/test_other/test_other[Old].architecture"
    legacy = other.with_name("test_other[Old].txt")
    legacy.write_text(_conflicted(other.read_text(encoding="utf-8"), "  Linear  "), encoding="utf-8")
    other.unlink()

    result = pytester.runpytest(*(["--snapshot-update"] if update else []))
    out = result.stdout.str()
    if update:
        result.assert_outcomes(passed=3)
        assert (folder.parent / "test_other" / "test_other[Old].architecture").is_file()
    else:
        result.assert_outcomes(passed=2, failed=1)
        assert "test_other[Old].architecture: unresolved merge conflict" in out
    assert "doctest" not in out.split("warnings summary")[0] and "deleted" not in out
    for old, new in [
        ("test_model/test_arch[Net].txt", "test_arch[Net].architecture"),
        ("test_model/test_params[init].params.txt", "test_params[init].params"),
        ("test_other/test_other[Old].txt", "test_other[Old].architecture"),
    ]:
        assert (
            f"SnapshotRenamedWarning: pytest-modelviz renamed the snapshot __snapshots__/{old} to {new}: snapshot "
            "files no longer end in .txt, which pytest collects as doctests. Commit the rename." in out
        )
    assert _files(pytester) == ["test_arch[Net].architecture", "test_params[init].params"]
    assert (folder / "test_arch[Net].architecture").read_bytes() == stored[ARCH]
    assert (folder / "test_params[init].params").read_bytes() == stored[PARAMS]
    assert not legacy.exists()
    again = pytester.runpytest("test_model.py")
    again.assert_outcomes(passed=2)
    assert "SnapshotRenamedWarning" not in again.stdout.str()


def test_names_that_clean_to_the_same_file_name_get_files_of_their_own(pytester: pytest.Pytester) -> None:
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    pytester.makepyfile(
        test_names=f"""
import pytest
import torch
from torch import nn


def test_names(graph_snapshot):
    graph_snapshot(nn.Linear(3, 1), torch.zeros(1, 3), name="enc/1")
    graph_snapshot(nn.Linear(3, 2), torch.zeros(1, 3), name="enc1")
    graph_snapshot(nn.Linear(3, 3), torch.zeros(1, 3), name="{long_a}")
    graph_snapshot(nn.Linear(3, 4), torch.zeros(1, 3), name="{long_b}")
    graph_snapshot(nn.Linear(3, 5), torch.zeros(1, 3), name="é" * 200)
    graph_snapshot(nn.Linear(3, 6), torch.zeros(1, 3), name="tab\\there")
    graph_snapshot(nn.Linear(3, 7), torch.zeros(1, 3), name="tabthere")


@pytest.mark.parametrize("width", [pytest.param(8, id="a<b"), pytest.param(9, id="ab")])
def test_ids(graph_snapshot, width):
    graph_snapshot(nn.Linear(3, width), torch.zeros(1, 3))
"""
    )
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=3)
    files = sorted((pytester.path / "__snapshots__" / "test_names").iterdir())
    assert len(files) == 9
    names = [p.name for p in files]
    # Names that need no cleaning keep the names syrupy gives them; the others get a hash.
    assert "test_names[enc1].architecture" in names and "test_names[tabthere].architecture" in names
    assert "test_ids[ab][Linear].architecture" in names
    hashed = [n for n in names if "~" in n]
    assert len(hashed) == 6 and all(len(n.encode()) <= 255 for n in names)
    widths = sorted(p.read_text(encoding="utf-8").split("torch.nn.Linear(3, ")[1].split(")")[0] for p in files)
    assert widths == [str(w) for w in range(1, 10)]  # every model kept its own snapshot
    again = pytester.runpytest()
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(["*9 snapshots passed*"])


@pytest.mark.parametrize("which", [ARCH, PARAMS], ids=["architecture", "params"])
def test_a_snapshot_that_is_not_utf8_is_named_and_rewritten_by_an_update(pytester: pytest.Pytester, which: str) -> None:
    stored = _created(pytester)
    path = pytester.path / which
    path.write_bytes(stored[which][:40] + b"\xff\xfe\x00garbage" + stored[which][40:])

    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert f"SnapshotFormatError: {pytester.path / which if which == ARCH else which}: not UTF-8 text (" in out
    assert "at byte 40); the file is corrupt, regenerate it with `pytest --snapshot-update`" in out
    assert "UnicodeDecodeError" not in out

    updated = pytester.runpytest("--snapshot-update")
    updated.assert_outcomes(passed=2)
    assert "UnicodeDecodeError" not in updated.stdout.str()
    assert path.read_bytes() == stored[which]
    pytester.runpytest().assert_outcomes(passed=2)


def test_an_unreadable_snapshot_is_never_left_half_written(pytester: pytest.Pytester) -> None:
    """Writes go through a temporary file that is renamed into place: no stray files remain."""
    stored = _created(pytester)
    pytester.makepyfile(test_model=PROJECT.replace("width=4", "width=6"))
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=2)
    assert _files(pytester) == ["test_arch[Net].architecture", "test_params[init].params"]
    assert (pytester.path / ARCH).read_bytes() != stored[ARCH]
    assert not [p for p in (pytester.path / FOLDER).iterdir() if p.name.startswith(".")]

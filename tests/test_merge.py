"""``python -m pytest_modelviz merge``: the run folders of a sharded CI pipeline as one run folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sharded_runs import GPU_JOB, NODEIDS, SHARDS, make_project, run_jobs, run_pytest

from pytest_modelviz.errors import MergeError
from pytest_modelviz.merge import merge_runs
from pytest_modelviz.records import read_outcomes, read_record_file
from pytest_modelviz.settings import job_name


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return run_jobs(make_project(tmp_path_factory.mktemp("ci")))


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_modelviz", *map(str, args)], capture_output=True,
                          text=True, timeout=300, check=False)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_test_is_merged_once_per_job_with_its_artifacts(jobs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged"
    done = _cli("merge", *jobs.values(), "-o", out)
    assert done.returncode == 0, done.stderr
    assert "10 test result(s) of 4 job(s) (cpu-1, cpu-2, cpu-3, gpu)" in done.stdout
    outcomes = read_outcomes(out / "outcomes.json")
    assert outcomes is not None and not outcomes.problems
    pairs = Counter((t.job, t.nodeid) for t in outcomes.tests)
    assert set(pairs.values()) == {1}, "every test once per job"
    assert {n for j, n in pairs if j == GPU_JOB} == set(NODEIDS)
    cpu = [n for j, n in pairs if j in SHARDS]
    assert sorted(cpu) == sorted(NODEIDS), "the CPU shards together ran every test once"
    assert outcomes.jobs == ("cpu-1", "cpu-2", "cpu-3", "gpu")
    assert Counter(t.outcome for t in outcomes.tests) == {"passed": 8, "failed": 2}
    # Each test folder came along whole, and every path its records name resolves inside it.
    for t in outcomes.tests:
        if not t.dirname:
            continue
        folder = out / t.dirname
        assert t.dirname.startswith(f"{t.job}--") and folder.is_dir()
        for record in read_record_file(folder / "modelviz.jsonl"):
            for key in ("text", "curves", "plot", "stats"):
                rel = getattr(record, key, None)
                if isinstance(rel, str) and rel:
                    assert (folder / rel).is_file(), f"{t.dirname}: {key} {rel} did not come along"
    source_files = sum(1 for base in jobs.values() for p in base.glob("run-*/*/**/*") if p.is_file())
    merged_files = sum(1 for p in out.glob("*/**/*") if p.is_file())
    assert merged_files == source_files, "no artifact lost, none made up"


def test_tensorboard_reads_every_job_under_one_logdir(jobs: dict[str, Path], tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    out = tmp_path / "merged"
    merge_runs(list(jobs.values()), out)
    mux = EventMultiplexer().AddRunsFromDirectory(str(out))
    mux.Reload()
    tb_runs = {run for run in mux.Runs() if "test_tb" in run}
    assert {run.split("--")[0] for run in tb_runs} == {"cpu-2", GPU_JOB}
    for run in tb_runs:
        assert [e.value for e in mux.Scalars(run, "x")] == [1.0]


def test_merging_again_or_into_itself_gives_the_same_folder(jobs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged"
    merge_runs(list(jobs.values()), out)
    first = _tree(out)
    merge_runs(list(jobs.values()), out)
    assert _tree(out) == first, "merging the same inputs again"
    result = merge_runs([out], out)
    assert _tree(out) == first, "merging the output into itself"
    result = merge_runs([out, jobs["cpu-2"], jobs[GPU_JOB]], out)
    assert _tree(out) == first, "merging the output with inputs it already holds"
    assert len(result.info) == 2 + 5 and not result.warnings
    assert not list(tmp_path.glob(".merged.*")), "no staging folder left behind"


def test_a_missing_or_half_written_shard_is_named_and_merged_as_far_as_it_goes(
    jobs: dict[str, Path], tmp_path: Path
) -> None:
    killed = tmp_path / "cpu-2-killed" / ".modelviz"
    shutil.copytree(jobs["cpu-2"], killed, symlinks=True)
    run = next(killed.glob("run-*"))
    (run / "outcomes.json").unlink()
    cut = tmp_path / "cpu-1-cut" / ".modelviz"
    shutil.copytree(jobs["cpu-1"], cut, symlinks=True)
    cut_outcomes = next(cut.glob("run-*")) / "outcomes.json"
    cut_outcomes.write_text(cut_outcomes.read_text(encoding="utf-8")[:200], encoding="utf-8")
    out = tmp_path / "merged"
    done = _cli("merge", cut, killed, jobs["cpu-3"], tmp_path / "cpu-4-never-uploaded", "-o", out)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert f"{killed}: outcomes.json is missing" in err
    assert f"{cut}: outcomes.json could not be read whole" in err
    assert f"{tmp_path / 'cpu-4-never-uploaded'}: not found" in err
    outcomes = read_outcomes(out / "outcomes.json")
    assert outcomes is not None
    unknown = {(t.job, t.outcome) for t in outcomes.tests if t.outcome == "unknown"}
    # Without outcomes the jobs are named after the folders their runs were uploaded in.
    assert unknown == {("cpu-2-killed", "unknown"), ("cpu-1-cut", "unknown")}
    assert len([t for t in outcomes.tests if t.job == "cpu-2-killed"]) == 2, "test_train and test_tb kept"
    assert any("not found" in n for n in outcomes.notes), "the report names the missing shard too"
    assert "cpu-4-never-uploaded" in (out / "report.html").read_text(encoding="utf-8")


def test_the_same_test_with_different_results_in_one_job_keeps_both(jobs: dict[str, Path], tmp_path: Path) -> None:
    rerun = tmp_path / "rerun" / ".modelviz"
    shutil.copytree(jobs["cpu-3"], rerun, symlinks=True)
    path = next(rerun.glob("run-*")) / "outcomes.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["tests"][0]["message"] = "a different failure"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = merge_runs([jobs["cpu-3"], rerun], tmp_path / "merged")
    assert any("in two inputs with different results" in w and "cpu-3-2" in w for w in result.warnings)
    outcomes = read_outcomes(tmp_path / "merged" / "outcomes.json")
    assert outcomes is not None
    assert sorted((t.job, "boom" in t.message) for t in outcomes.tests) == [("cpu-3", True), ("cpu-3-2", False)]


@pytest.mark.parametrize("case", ["not a run", "a file", "output inside input", "input inside output",
                                  "output holds other files", "nothing exists"])
def test_bad_input_is_refused_with_a_clear_error(jobs: dict[str, Path], tmp_path: Path, case: str) -> None:
    stray = tmp_path / "notes"
    stray.mkdir()
    (stray / "todo.txt").write_text("mine", encoding="utf-8")
    args: list[str | Path] = {
        "not a run": [stray, "-o", tmp_path / "out"],
        "a file": [stray / "todo.txt", "-o", tmp_path / "out"],
        "output inside input": [jobs["cpu-1"], "-o", jobs["cpu-1"] / "merged"],
        "input inside output": [jobs["cpu-1"], "-o", jobs["cpu-1"].parent.parent],
        "output holds other files": [jobs["cpu-1"], "-o", stray],
        "nothing exists": [tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out"],
    }[case]
    expected = {
        "not a run": "is not a pytest-modelviz run folder",
        "a file": "is not a folder",
        "output inside input": "is inside the input",
        "input inside output": "is inside the output",
        "output holds other files": "is a folder with other files in it",
        "nothing exists": "nothing to merge",
    }[case]
    done = _cli("merge", *args)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert (stray / "todo.txt").read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "out").exists() and not (jobs["cpu-1"] / "merged").exists()
    with pytest.raises(MergeError, match=expected):
        merge_runs([Path(a) for a in args[:-2]], Path(args[-1]))


def test_job_names_come_from_the_option_then_the_ci_variables() -> None:
    assert job_name("gpu a100", {"GITHUB_JOB": "test"}) == "gpu_a100"
    assert job_name("", {"MODELVIZ_JOB": "nightly", "GITHUB_JOB": "test"}) == "nightly"
    matrix = json.dumps({"shard": 2, "python": "3.11", "include": {"x": 1}})
    assert job_name("", {"GITHUB_JOB": "test", "MODELVIZ_MATRIX": matrix}) == "test-3.11-2"
    assert job_name("", {"GITHUB_JOB": "test", "MODELVIZ_MATRIX": "cuda"}) == "test-cuda"
    assert job_name("", {}) == ""


def test_a_run_records_its_job_from_github_variables(tmp_path: Path) -> None:
    project = tmp_path
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "test_one.py").write_text("def test_one(modelviz_artifacts):\n    pass\n", encoding="utf-8")
    env = {"GITHUB_JOB": "cpu", "MODELVIZ_MATRIX": json.dumps({"shard": 3})}
    assert run_pytest(project, "--modelviz", env=env).returncode == 0
    outcomes = read_outcomes(project / ".modelviz" / "latest" / "outcomes.json")
    assert outcomes is not None and outcomes.job == "cpu-3"
    # Without any name the merge names the job after the folder its run was uploaded in.
    (project / "job-7").mkdir()
    assert run_pytest(project, "--modelviz", "--modelviz-dir", "job-7/.modelviz").returncode == 0
    result = merge_runs([project / "job-7" / ".modelviz", project / ".modelviz"], tmp_path / "out")
    assert result.jobs == ("cpu-3", "job-7")


def test_the_command_is_cheap_to_import() -> None:
    code = ("import sys, pytest_modelviz.__main__\n"
            "print(sorted(m for m in ('torch', 'tensorboardX', 'visdom', 'matplotlib', 'torchvision')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    helped = _cli("merge", "--help")
    assert helped.returncode == 0 and "RUN_DIR" in helped.stdout


def test_a_hostile_job_name_cannot_write_outside_the_output(jobs: dict[str, Path], tmp_path: Path) -> None:
    hostile = tmp_path / "hostile" / ".modelviz"
    shutil.copytree(jobs["cpu-1"], hostile, symlinks=True)
    path = next(hostile.glob("run-*")) / "outcomes.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["job"] = "../../escaped"
    data["tests"][0]["job"] = "/abs/<script>alert(7)"
    path.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "deep" / "merged"
    merge_runs([hostile], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "hostile"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["merged"]
    assert sorted(p.name.split("--")[0] for p in out.iterdir() if p.is_dir()) == ["abs_script_alert_7", "escaped"]
    assert "alert(7)" not in (out / "report.html").read_text(encoding="utf-8")

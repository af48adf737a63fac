"""Options and ini keys, as a user passes them."""

from __future__ import annotations

import pytest

from modelviz_testing import run_dir_of

PASSING = "def test_ok(modelviz_artifacts):\n    modelviz_artifacts.path('a.txt').write_text('x')\n"


def test_without_modelviz_nothing_is_persisted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        PASSING
        + "def test_where(modelviz_artifacts):\n    assert not modelviz_artifacts.persist\n"
        + "    assert '.modelviz' not in modelviz_artifacts.root.parts\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert not (pytester.path / ".modelviz").exists()
    result.stdout.no_fnmatch_line("*modelviz: run folder*")


def test_modelviz_creates_a_run_folder_and_latest_pointer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PASSING)
    first = pytester.runpytest("--modelviz")
    first.assert_outcomes(passed=1)
    run1 = run_dir_of(pytester)
    second = pytester.runpytest("--modelviz")
    second.assert_outcomes(passed=1)
    run2 = run_dir_of(pytester)
    assert run1 != run2 and run1.is_dir() and run2.is_dir()
    assert [p.name for p in run2.rglob("a.txt")] == ["a.txt"]
    second.stdout.fnmatch_lines([f"modelviz: run folder {run2}*", f"*tensorboard --logdir {run2}*"])


def test_modelviz_dir_option_and_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PASSING)
    pytester.runpytest("--modelviz", "--modelviz-dir", "out/runs").assert_outcomes(passed=1)
    assert run_dir_of(pytester, "out/runs").is_dir()
    pytester.makeini("[pytest]\nmodelviz = true\nmodelviz_dir = from_ini\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert run_dir_of(pytester, "from_ini").is_dir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--modelviz-device", "gpu0"], "*--modelviz-device must be auto, cpu, cuda or cuda:N*'gpu0'*"),
        (["--modelviz-visdom", "sometimes"], "*--modelviz-visdom must be 'offline', 'server' or a URL*"),
    ],
)
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(PASSING)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_number_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmodelviz_log_every = often\n")
    pytester.makepyfile(PASSING)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*modelviz_log_every must be a int*'often'*"])


def test_cpu_device_is_resolved(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_dev(modelviz_device):\n    assert modelviz_device == 'cpu'\n")
    pytester.runpytest("--modelviz-device", "cpu").assert_outcomes(passed=1)

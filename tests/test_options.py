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
    result.stderr.fnmatch_lines(["*modelviz_log_every must be an integer*'often'*"])


def test_cpu_device_is_resolved(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_dev(modelviz_device):\n    assert modelviz_device == 'cpu'\n")
    pytester.runpytest("--modelviz-device", "cpu").assert_outcomes(passed=1)


# Reads back what the plugin resolved, as a test in the inner run sees it.
SHOW_SETTINGS = """
from pytest_modelviz.session import get_session

def test_settings(request):
    s = get_session(request.config).settings
    print("SETTINGS", s.enabled, s.log_every, s.keep_runs, s.param_rtol, s.param_atol, s.device, s.gpu_marker)
"""
TYPED_VALUES = """
modelviz = false
modelviz_log_every = 5
modelviz_keep_runs = 2
modelviz_param_rtol = 0.001
modelviz_param_atol = 0
modelviz_device = "cpu"
modelviz_gpu_marker = "cuda"
"""
NATIVE_TOML = pytest.mark.skipif(pytest.version_tuple < (9, 0),
                                 reason="[tool.pytest] is read from pytest 9 on")
INI_OPTIONS = "tool.pytest.ini_options"


@pytest.mark.parametrize(
    "table",
    ["tool.pytest.ini_options", pytest.param("tool.pytest", marks=NATIVE_TOML)],
)
def test_typed_toml_values_are_read(pytester: pytest.Pytester, table: str) -> None:
    pytester.makepyprojecttoml(f"[{table}]\n{TYPED_VALUES}")
    pytester.makepyfile(SHOW_SETTINGS)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SETTINGS False 5 2 0.001 0.0 cpu cuda*"])


def test_ini_file_strings_are_read_as_numbers(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmodelviz_log_every = 7\nmodelviz_param_rtol = 1e-3\nmodelviz_keep_runs = 0\n")
    pytester.makepyfile(SHOW_SETTINGS)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SETTINGS False 7 0 0.001 1e-06 auto None*"])


@pytest.mark.parametrize(
    "table, line, message",
    [
        (INI_OPTIONS, "modelviz_log_every = 0", "*modelviz_log_every must be >= 1, got 0*"),
        (INI_OPTIONS, "modelviz_param_rtol = -1.0", "*modelviz_param_rtol must be a finite number >= 0*"),
        (INI_OPTIONS, 'modelviz_param_atol = "nan"', "*modelviz_param_atol must be a finite number >= 0*"),
        (INI_OPTIONS, "modelviz_keep_runs = 2.5", "*modelviz_keep_runs must be an integer*2.5*"),
        (INI_OPTIONS, 'modelviz_gpu_marker = "not"', "*modelviz_gpu_marker must be a marker name*'not'*"),
        (INI_OPTIONS, 'modelviz_gpu_marker = "skip"', "*modelviz_gpu_marker must be a marker name*'skip'*"),
        pytest.param("tool.pytest", 'modelviz_log_every = "often"', "*modelviz_log_every*often*",
                     marks=NATIVE_TOML),
        pytest.param("tool.pytest", "modelviz_log_every = true", "*modelviz_log_every*True*",
                     marks=NATIVE_TOML),
        pytest.param("tool.pytest", "modelviz_param_rtol = -1",
                     "*modelviz_param_rtol must be a finite number >= 0*", marks=NATIVE_TOML),
        pytest.param("tool.pytest", "modelviz_gpu_marker = 3", "*modelviz_gpu_marker*", marks=NATIVE_TOML),
    ],
)
def test_bad_typed_values_are_usage_errors_naming_the_option(
    pytester: pytest.Pytester, table: str, line: str, message: str
) -> None:
    pytester.makepyprojecttoml(f"[{table}]\n{line}\n")
    pytester.makepyfile(PASSING)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    result.stderr.no_fnmatch_line("*Traceback*")


def test_override_on_the_command_line_is_checked_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PASSING)
    result = pytester.runpytest("-o", "modelviz_log_every=often")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*modelviz_log_every must be an integer*often*"])

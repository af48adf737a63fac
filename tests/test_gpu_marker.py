"""The gpu marker: runs on CUDA, skips with a reason without it, a run whose -m selects only such
tests never goes green empty, and a project's own marker of that name keeps its meaning."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = pytest.mark.skipif(HAS_CUDA, reason="checks the behaviour on a machine without CUDA")

GPU_TESTS = """
import pytest

@pytest.mark.gpu
def test_on_gpu(modelviz_device):
    import torch
    assert modelviz_device.startswith("cuda")
    assert torch.ones(1, device=modelviz_device).is_cuda

@pytest.mark.slow
def test_slow_cpu():
    pass

def test_plain():
    pass
"""
INI = "[pytest]\nmarkers =\n    slow: slow tests\n"


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gpu: runs on CUDA*"])


@NO_CUDA
def test_gpu_test_is_skipped_with_a_reason_without_cuda(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-rs", "--strict-markers")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*gpu test: CUDA is not available*"])


@NO_CUDA
@pytest.mark.parametrize("expr", ["gpu", "gpu and not slow", "(gpu)", "not slow and not plain_only"])
def test_a_selection_of_only_gpu_tests_fails_at_start_without_cuda(
    pytester: pytest.Pytester, expr: str
) -> None:
    pytester.makeini(INI + "    plain_only: x\n")
    pytester.makepyfile(GPU_TESTS.replace("def test_plain", "@pytest.mark.plain_only\ndef test_plain"))
    result = pytester.runpytest("-m", expr)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*-m {expr!r} selects only tests marked gpu (1), but CUDA is not available*"])
    result.stdout.no_fnmatch_line("*passed*")


@NO_CUDA
@pytest.mark.parametrize(
    "expr, passed, skipped",
    [("gpu or slow", 1, 1), ("gpu or not gpu", 2, 1), ("not gpu", 2, 0), ("slow", 1, 0)],
)
def test_a_selection_with_cpu_tests_runs_them_without_cuda(
    pytester: pytest.Pytester, expr: str, passed: int, skipped: int
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-m", expr, "-rs")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=passed, skipped=skipped, deselected=3 - passed - skipped)


@NO_CUDA
def test_collect_only_lists_gpu_tests_without_cuda(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("--collect-only", "-q", "-m", "gpu")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*::test_on_gpu"])


@NO_CUDA
@pytest.mark.slow
def test_under_xdist_a_gpu_only_selection_fails_without_cuda(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-m", "gpu", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    result.stdout.fnmatch_lines(["*-m 'gpu' selects only tests marked gpu (1), but CUDA is not available*"])
    result.stdout.no_fnmatch_line("*passed*")
    mixed = pytester.runpytest_subprocess("-n", "2", "-m", "gpu or slow", "-p", "no:cacheprovider")
    assert mixed.ret == pytest.ExitCode.OK
    mixed.assert_outcomes(passed=1, skipped=1)


@NO_CUDA
def test_cuda_device_option_without_cuda_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("--modelviz-device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--modelviz-device*CUDA is not available*"])


@pytest.mark.gpu
def test_gpu_tests_run_on_cuda(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-m", "gpu")
    result.assert_outcomes(passed=1, deselected=2)


def test_a_malformed_marker_expression_is_left_to_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-m", "gpu and (")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*Wrong expression passed to '-m': gpu and (*"])
    result.stderr.no_fnmatch_line("*INTERNALERROR*")


# ---------------------------------------------------------------- the marker's name

CUDA_TESTS = """
import pytest, torch

@pytest.mark.cuda
def test_on_cuda(modelviz_device):
    assert modelviz_device.startswith("cuda")
    assert torch.ones(1, device=modelviz_device).is_cuda

@pytest.mark.gpu
def test_project_gpu(modelviz_device):
    # The project's own gpu marker: pytest-modelviz gives it no meaning.
    assert modelviz_device == ("cuda" if torch.cuda.is_available() else "cpu")

def test_plain():
    pass
"""


def test_a_configured_marker_name_takes_the_role(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmodelviz_gpu_marker = cuda\nmarkers =\n    gpu: the project's own\n")
    pytester.makepyfile(CUDA_TESTS)
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.gpu: the project's own"])
    markers.stdout.fnmatch_lines(["@pytest.mark.cuda: runs on CUDA*"])
    markers.stdout.no_fnmatch_line("@pytest.mark.gpu: runs on CUDA*")
    result = pytester.runpytest("-rs", "--strict-markers", "-W", "error::pytest.PytestConfigWarning")
    if HAS_CUDA:
        result.assert_outcomes(passed=3)
    else:
        result.assert_outcomes(passed=2, skipped=1)
        result.stdout.fnmatch_lines(["*cuda test: CUDA is not available*"])
        only = pytester.runpytest("-m", "cuda")
        assert only.ret == pytest.ExitCode.USAGE_ERROR
        only.stderr.fnmatch_lines(["*-m 'cuda' selects only tests marked cuda (1)*"])
        assert pytester.runpytest("-m", "gpu").ret == pytest.ExitCode.OK


@pytest.mark.parametrize("how", ["ini", "conftest"])
def test_a_project_gpu_marker_keeps_its_meaning_and_says_so(pytester: pytest.Pytester, how: str) -> None:
    if how == "ini":
        pytester.makeini("[pytest]\nmarkers =\n    gpu: may use a GPU when there is one\n")
    else:
        pytester.makeconftest(
            "def pytest_configure(config):\n"
            "    config.addinivalue_line('markers', 'gpu: may use a GPU when there is one')\n"
        )
    pytester.makepyfile(CUDA_TESTS.replace("@pytest.mark.cuda\n", ""))
    result = pytester.runpytest("-m", "gpu", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, "the project's gpu test runs, on the CPU when there is no CUDA"
    result.assert_outcomes(passed=1, deselected=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*PytestConfigWarning: pytest-modelviz: a 'gpu' marker is registered already*"
        "set the ini option modelviz_gpu_marker = gpu*",
    ])
    markers = pytester.runpytest("--markers", "-p", "no:cacheprovider")
    markers.stdout.fnmatch_lines(["@pytest.mark.gpu: may use a GPU when there is one"])
    markers.stdout.no_fnmatch_line("*runs on CUDA (pytest-modelviz)*")


@NO_CUDA
def test_a_project_may_give_its_gpu_marker_our_meaning(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmodelviz_gpu_marker = gpu\nmarkers =\n    gpu: needs CUDA\n")
    pytester.makepyfile(GPU_TESTS.replace("@pytest.mark.slow\n", ""))
    result = pytester.runpytest("-rs", "-W", "error::pytest.PytestConfigWarning")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*gpu test: CUDA is not available*"])
    assert pytester.runpytest("-m", "gpu").ret == pytest.ExitCode.USAGE_ERROR

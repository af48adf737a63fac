"""The gpu marker: runs on CUDA, skips with a reason without it, and `-m gpu` never goes green empty."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

GPU_TESTS = """
import pytest

@pytest.mark.gpu
def test_on_gpu(modelviz_device):
    import torch
    assert modelviz_device.startswith("cuda")
    assert torch.ones(1, device=modelviz_device).is_cuda

def test_plain():
    pass
"""


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gpu: runs on CUDA*"])


@pytest.mark.skipif(HAS_CUDA, reason="checks the behaviour on a machine without CUDA")
def test_gpu_test_is_skipped_with_a_reason_without_cuda(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*gpu test: CUDA is not available*"])


@pytest.mark.skipif(HAS_CUDA, reason="checks the behaviour on a machine without CUDA")
@pytest.mark.parametrize("expr", ["gpu", "gpu and not slow", "(gpu)"])
def test_selecting_gpu_without_cuda_fails_the_session(pytester: pytest.Pytester, expr: str) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-m", expr)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*-m selects gpu tests but CUDA is not available*"])


@pytest.mark.parametrize("expr", ["not gpu", "gpu or not gpu", "slow"])
def test_other_selections_do_not_fail(pytester: pytest.Pytester, expr: str) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-m", expr)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)


@pytest.mark.skipif(HAS_CUDA, reason="checks the behaviour on a machine without CUDA")
def test_cuda_device_option_without_cuda_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("--modelviz-device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--modelviz-device*CUDA is not available*"])


@pytest.mark.gpu
def test_gpu_tests_run_on_cuda(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-m", "gpu")
    result.assert_outcomes(passed=1, deselected=1)


def test_a_malformed_marker_expression_is_left_to_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest("-m", "gpu and (")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*Wrong expression passed to '-m': gpu and (*"])
    result.stderr.no_fnmatch_line("*INTERNALERROR*")

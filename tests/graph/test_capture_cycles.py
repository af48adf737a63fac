"""A module that contains itself (``m.me = m``): capture and graph_snapshot name it instead of
recursing until ``RecursionError``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_modelviz import capture
from pytest_modelviz.errors import CaptureError
from pytest_modelviz.module_tree import ModuleCycle, module_cycle


def _contains_itself() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 2))
    model.me = model
    return model


def _contains_its_parent() -> nn.Module:
    model = nn.Sequential()
    model.enc = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model.enc.add_module("back", model.enc)
    return model


def test_capture_names_the_attribute_that_closes_the_loop() -> None:
    with pytest.raises(CaptureError, match=r"^cannot capture Sequential: its submodule 'me' is the model "
                                           r"Sequential itself, so the module tree never ends\. Keep back-references"):
        capture(_contains_itself(), torch.zeros(1, 4))


def test_module_cycle_finds_loops_at_any_depth_and_only_loops() -> None:
    assert module_cycle(_contains_itself()) == ModuleCycle(path="me", ancestor="")
    assert module_cycle(_contains_its_parent()) == ModuleCycle(path="enc.back", ancestor="enc")
    shared = nn.Linear(4, 4)
    tied = nn.Sequential(nn.Sequential(shared), nn.Sequential(shared))  # one module, two parents: no loop
    assert module_cycle(tied) is None
    deep = nn.Sequential()
    for _ in range(3000):  # deeper than the recursion limit
        deep = nn.Sequential(deep)
    assert module_cycle(deep) is None


USER_TEST = """
import torch
from torch import nn


def test_architecture(graph_snapshot):
    model = nn.Sequential(nn.Linear(4, 2))
    model.me = model
    graph_snapshot(model, torch.zeros(1, 4))
"""


def test_graph_snapshot_of_a_module_that_contains_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["E*CaptureError: cannot capture Sequential: its submodule 'me' is the model Sequential itself*"]
    )
    result.stdout.no_fnmatch_line("E*RecursionError*")
    assert not (pytester.path / "__snapshots__").exists() or not any((pytester.path / "__snapshots__").rglob("*.*"))

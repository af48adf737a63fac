"""Parameter statistics: computing, the text format and its parser, and the tolerant comparison."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError
from pytest_modelviz.params import stats as stats_mod
from pytest_modelviz.params.stats import (
    QUANTILES,
    ParamStats,
    Tolerance,
    compare_stats,
    compute_stats,
    parse_stats,
    tensor_stats,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def test_values_match_numpy_and_torch_references() -> None:
    torch.manual_seed(1)
    x = torch.randn(4001)
    t = tensor_stats("w", "param", x, bins=10)
    ref = x.double().numpy()
    assert t.count == 4001 and t.nonfinite == 0 and t.shape == (4001,) and t.dtype == "float32"
    assert t.mean == pytest.approx(ref.mean(), rel=1e-8)
    assert t.std == pytest.approx(ref.std(), rel=1e-8)  # population std
    assert (t.min, t.max) == (pytest.approx(ref.min()), pytest.approx(ref.max()))
    expected_q = torch.quantile(x.double(), torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
    assert t.quantiles == pytest.approx(expected_q, rel=1e-8)
    counts, _ = np.histogram(ref, bins=10, range=(ref.min(), ref.max()))
    assert t.hist == pytest.approx(counts / 4001, abs=2e-9)
    assert math.fsum(t.hist) == pytest.approx(1.0)


def test_large_tensor_path_selects_the_same_quantiles(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.linspace(-3, 5, 1001) ** 3
    sorted_path = tensor_stats("w", "param", x, bins=4)
    monkeypatch.setattr(stats_mod, "_SORT_LIMIT", 10)  # force kthvalue selection
    assert tensor_stats("w", "param", x, bins=4) == sorted_path


def test_constant_empty_and_nonfinite_tensors() -> None:
    const = tensor_stats("b", "param", torch.full((5,), 2.5), bins=4)
    assert (const.mean, const.std, const.min, const.max) == (2.5, 0.0, 2.5, 2.5)
    assert const.hist == (1.0, 0.0, 0.0, 0.0)

    empty = tensor_stats("e", "buffer", torch.zeros(0, 3), bins=3)
    assert empty.count == 0 and empty.shape == (0, 3) and math.isnan(empty.mean)
    assert empty.hist == (0.0, 0.0, 0.0)

    bad = tensor_stats("n", "param", torch.tensor([1.0, float("nan"), 3.0, float("inf")]), bins=2)
    assert bad.nonfinite == 2 and bad.mean == 2.0 and bad.hist == (0.5, 0.5)


def test_negative_zero_is_stored_as_zero() -> None:
    t = tensor_stats("z", "param", torch.tensor([-0.0, -0.0]), bins=2)
    assert all(math.copysign(1.0, v) == 1.0 for v in (t.mean, t.min, t.max, *t.quantiles))


def test_model_order_tied_weights_and_buffers() -> None:
    model = _net()
    model[3].weight = nn.Parameter(torch.randn(3, 16))
    model.add_module("tied", nn.Linear(16, 3, bias=False))
    model.tied.weight = model[3].weight
    model[0].weight.requires_grad_(False)
    s = compute_stats(model, bins=8)
    assert [t.name for t in s.tensors] == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert s.tensors[0].trainable is False and s.tensors[1].trainable is True
    assert s.model == "Sequential" and s.bins == 8
    with_buffers = compute_stats(model, bins=8, buffers=True)
    buffers = [t for t in with_buffers.tensors if t.kind == "buffer"]
    assert [t.name for t in buffers] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert buffers[2].dtype == "int64" and buffers[2].shape == ()


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ({"w": torch.ones(2)}, {}, "need a torch.nn.Module, got dict"),
        (nn.ReLU(), {}, "ReLU has no parameters"),
        (nn.Linear(2, 2), {"bins": 0}, "bins must be a positive int"),
        (nn.Linear(2, 2, device="meta"), {}, "'weight' is on the meta device"),
        (nn.Linear(2, 2, dtype=torch.complex64), {}, "'weight' is complex"),
    ],
)
def test_bad_input_is_a_clear_usage_error(model: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ModelvizUsageError, match=message):
        compute_stats(model, **kwargs)


def test_text_round_trips_exactly() -> None:
    s = compute_stats(_net(), bins=5, buffers=True)
    text = s.to_text()
    assert text.endswith("\n") and "\r" not in text
    assert ParamStats.from_text(text) == s
    assert parse_stats(text).to_text() == text
    block = text.split("\n\n")[1]
    assert block.splitlines()[:6] == [
        "param 0.weight",
        "  shape: [16, 8]",
        "  dtype: float32",
        "  trainable: true",
        "  count: 128",
        "  nonfinite: 0",
    ]


def test_text_is_identical_across_processes_and_hash_seeds() -> None:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.ModuleDict({"b": nn.Linear(4, 4), "a": nn.Conv2d(2, 3, 3), "c": nn.LayerNorm(4)})

    code = (
        "import sys, torch; from torch import nn; from pytest_modelviz.params.stats import compute_stats;"
        "torch.manual_seed(0);"
        "m = nn.ModuleDict({'b': nn.Linear(4, 4), 'a': nn.Conv2d(2, 3, 3), 'c': nn.LayerNorm(4)});"
        "sys.stdout.write(compute_stats(m).to_text())"
    )
    # This process runs under a random hash seed; the child under a fixed one.
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "987"},
    ).stdout  # fmt: skip
    assert other == compute_stats(build()).to_text().encode() and b"param b.weight" in other


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ["# something else", *ls[1:]], r"snap, line 1: expected the header"),
        (lambda ls: ls[:2] + ["bins: many"] + ls[3:], r"line 3: 'many' is not a whole number"),
        (lambda ls: [line.replace("  std:", "  sd:") for line in ls], r"line 13: expected '  std: \.\.\.', got 'sd: "),
        (
            lambda ls: [line.replace("  count: 128", "  count: -1") for line in ls],
            r"line 10: '-1' must not be negative",
        ),
        (lambda ls: [line.replace("param 0.bias", "param 0.weight") for line in ls], r"'0.weight' appears twice"),
        (
            lambda ls: [line.replace("param 0.bias", "weight 0.bias") for line in ls],
            r"expected 'param NAME' or 'buffer NAME'",
        ),
        (
            lambda ls: [line + " 0.5" if line.startswith("  hist:") else line for line in ls],
            r"hist has 6 values but .* bins: 5",
        ),
        (lambda ls: [line.replace("[16, 8]", "16x8") for line in ls], r"shape must look like \[2, 3\]"),
        (lambda ls: ls[:12], r"line 13: unexpected end of file, expected '  std: \.\.\.'"),
        (lambda ls: [], r"unexpected end of file, expected the format header"),
    ],
)
def test_corrupt_text_names_the_line(edit: Callable[[list[str]], list[str]], message: str) -> None:
    lines = compute_stats(_net(), bins=5).to_text().splitlines()
    with pytest.raises(SnapshotFormatError, match=message) as info:
        parse_stats("\n".join(edit(lines)) + "\n", source="snap")
    assert "--snapshot-update" in str(info.value)


def _scaled(s: ParamStats, name: str, **changes: object) -> ParamStats:
    tensors = tuple(dataclasses.replace(t, **changes) if t.name == name else t for t in s.tensors)
    return dataclasses.replace(s, tensors=tensors)


def test_compare_within_and_beyond_tolerance() -> None:
    stored = compute_stats(_net(), bins=5)
    w = stored.get("0.weight")
    assert w is not None
    assert compare_stats(stored, stored, Tolerance(0.0, 0.0)) == []
    close = _scaled(stored, "0.weight", mean=w.mean * (1 + 1e-5))
    assert compare_stats(stored, close, Tolerance(1e-4, 0.0)) == []
    [line] = compare_stats(stored, close, Tolerance(1e-6, 0.0))
    assert line.startswith(f"0.weight mean: stored {w.mean:.9g}, actual ")
    assert "> " in line and "= atol 0 + rtol 1e-06 * |stored|" in line
    # atol carries values near zero where rtol alone would be hopeless
    zero = _scaled(stored, "0.weight", mean=0.0)
    shifted = _scaled(stored, "0.weight", mean=1e-7)
    assert compare_stats(zero, shifted, Tolerance(0.5, 1e-6)) == []
    assert compare_stats(zero, shifted, Tolerance(0.5, 1e-8)) != []


def test_compare_exact_fields_added_removed_and_histogram_summary() -> None:
    stored = compute_stats(_net(), bins=5)
    w = stored.get("3.weight")
    assert w is not None
    hist = list(w.hist)
    hist[0], hist[4] = hist[0] + 0.25, hist[4] - 0.25
    changed = _scaled(stored, "3.weight", count=51, trainable=False, hist=tuple(hist))
    changed = dataclasses.replace(changed, tensors=changed.tensors[1:] + (dataclasses.replace(w, name="head.weight"),))
    lines = compare_stats(stored, changed, Tolerance(0.0, 0.01))
    assert lines[:2] == ["0.weight: removed (param [16, 8] float32)", "head.weight: added (param [3, 16] float32)"]
    assert "3.weight count: stored 48, actual 51" in lines
    assert "3.weight trainable: stored True, actual False" in lines
    [hist_line] = [line for line in lines if "hist" in line]
    assert hist_line.startswith("3.weight hist: 2 of 5 bins differ, most in bin ")
    assert compare_stats(stored, compute_stats(_net(), bins=6), Tolerance(1, 1))[0].startswith(
        "layout: stored bins=5"
    )


def test_a_new_shape_is_one_line_per_tensor_not_every_statistic() -> None:
    stored = compute_stats(_net())
    actual = compute_stats(nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)))
    lines = compare_stats(stored, actual, Tolerance(1e-4, 1e-6))
    reshaped = [line for line in lines if line.startswith("3.")]
    assert reshaped == ["3.weight: shape [3, 16] -> [4, 16]", "3.bias: shape [3] -> [4]"]


def test_histogram_tolerance_is_against_the_unit_scale() -> None:
    stored = compute_stats(_net(), bins=5)
    w = stored.get("0.weight")
    assert w is not None
    moved = _scaled(stored, "0.weight", hist=(w.hist[0] + 0.02, w.hist[1] - 0.02, *w.hist[2:]))
    assert compare_stats(stored, moved, Tolerance(0.03, 0.0)) == []
    assert len(compare_stats(stored, moved, Tolerance(0.01, 0.0))) == 1


def test_nan_equals_nan_and_infinities_compare_exactly() -> None:
    stored = compute_stats(_net(), bins=5)
    nan = _scaled(stored, "0.bias", mean=float("nan"))
    assert compare_stats(nan, nan, Tolerance(0, 0)) == []
    assert compare_stats(stored, nan, Tolerance(1, 1)) != []
    inf = _scaled(stored, "0.bias", max=float("inf"))
    assert compare_stats(inf, inf, Tolerance(0, 0)) == []
    assert parse_stats(inf.to_text()).get("0.bias").max == float("inf")


def test_tolerance_resolution_and_glob_overrides() -> None:
    tol = Tolerance.resolve({"fc.*": 1e-2, "*.bias": 0.5}, 1e-3, default_rtol=1e-4, default_atol=1e-6)
    assert tol.for_tensor("fc.weight") == (1e-2, 1e-3)
    assert tol.for_tensor("fc.bias") == (1e-2, 1e-3)  # first matching pattern wins
    assert tol.for_tensor("conv.bias") == (0.5, 1e-3)
    assert tol.for_tensor("conv.weight") == (1e-4, 1e-3)
    assert Tolerance.resolve(None, None, 1e-4, 1e-6) == Tolerance(1e-4, 1e-6)
    for bad in (-1, float("nan"), "0.1", True, {"fc.*": -2}):
        with pytest.raises(ModelvizUsageError, match="must be a finite number >= 0"):
            Tolerance.resolve(bad, None, 1e-4, 1e-6)


@pytest.mark.gpu
def test_cuda_agrees_with_cpu_to_the_stored_precision() -> None:
    model = _net()
    torch.manual_seed(3)
    model[1].running_mean.normal_()
    cpu = compute_stats(model, bins=16, buffers=True)
    cuda = compute_stats(model.cuda(), bins=16, buffers=True)
    # Reductions may round differently in the last of 9 digits; bin assignment may not differ at all.
    assert compare_stats(cpu, cuda, Tolerance(5e-8, 1e-15)) == []
    assert [t.hist for t in cpu.tensors] == [t.hist for t in cuda.tensors]
    assert [t.name for t in cpu.tensors] == [t.name for t in cuda.tensors]


def test_to_dict_reads_back_through_json_nonfinite_values_included() -> None:
    import json

    model = _net()
    with torch.no_grad():
        model[3].bias.fill_(float("nan"))  # an all-NaN tensor: its moments are NaN
    stats = compute_stats(model, bins=8)
    bias = stats.get("3.bias")
    assert bias is not None and math.isnan(bias.mean)
    # stats.json writes NaN and infinities as strings: JSON has no literal for them
    text = json.dumps(stats.to_dict()).replace("NaN", '"nan"').replace("Infinity", '"inf"')
    read = ParamStats.from_dict(json.loads(text))
    assert read.to_text() == stats.to_text()
    assert read.to_dict().keys() == stats.to_dict().keys() and read.model == stats.model

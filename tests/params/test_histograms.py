"""On-device histograms agree with numpy's binning and moments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_modelviz.params.histograms import device_histograms


def test_counts_edges_and_moments_match_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(50, 7, generator=g), torch.rand(300, generator=g) * 5 - 1, torch.arange(10.0)]
    for t, hist in zip(tensors, device_histograms(tensors, bins=16), strict=True):
        values = t.numpy().ravel().astype(np.float64)
        counts, edges = np.histogram(values, bins=16, range=(values.min(), values.max()))
        assert hist.edges == pytest.approx(edges.tolist())
        assert hist.counts == counts.tolist()
        assert (hist.min, hist.max) == (pytest.approx(values.min()), pytest.approx(values.max()))
        assert hist.num == values.size
        assert hist.sum == pytest.approx(values.sum(), rel=1e-5)
        assert hist.sum_squares == pytest.approx((values**2).sum(), rel=1e-5)


def test_constant_and_empty_tensors() -> None:
    constant, empty = device_histograms([torch.full((4, 4), 2.0), torch.zeros(0)], bins=4)
    assert (constant.edges[0], constant.edges[-1]) == (1.0, 3.0)  # widened like torch.histc
    assert sum(constant.counts) == 16 and constant.min == constant.max == 2.0
    assert empty.num == 0


def test_integer_and_half_tensors_are_binned_as_float() -> None:
    [ints, halves] = device_histograms([torch.arange(8), torch.ones(3, dtype=torch.bfloat16)], bins=2)
    assert ints.counts == [4.0, 4.0]
    assert halves.num == 3 and halves.sum == 3.0


def test_bad_bins() -> None:
    with pytest.raises(ValueError, match="bins must be >= 1"):
        device_histograms([torch.zeros(2)], bins=0)


@pytest.mark.parametrize("bins", [32, 200])  # 200: too many bins to count pairs of int16 indices
@pytest.mark.parametrize("batched", [0, 1 << 20], ids=["chunked", "batched"])
def test_cpu_binning_counts_what_histc_counts(
    monkeypatch: pytest.MonkeyPatch, batched: int, bins: int
) -> None:
    from pytest_modelviz.params import histograms

    g = torch.Generator().manual_seed(1)
    # Across chunks (the last one odd), with the maximum in the last bin and values on bin edges.
    values = torch.cat([torch.randn(3 * 1000 + 6, generator=g), torch.arange(-4.0, 4.25, 0.25)])
    others = [torch.rand(17, generator=g), torch.full((3,), 2.0), torch.randn(1, generator=g)]
    monkeypatch.setattr(histograms, "_CHUNK", 999)  # odd: chunks are rounded up to even
    monkeypatch.setattr(histograms, "_BATCHED", batched)
    monkeypatch.setattr(histograms, "_BATCHED_TABLE", 2 * (bins + 1))  # two tensors a bincount
    for t, hist in zip([values, *others], device_histograms([values, *others], bins=bins), strict=True):
        lo, hi = t.min().item(), t.max().item()
        lo, hi = (lo - 1, hi + 1) if lo == hi else (lo, hi)
        assert hist.counts == torch.histc(t, bins=bins, min=lo, max=hi).tolist()
        assert sum(hist.counts) == t.numel()


@pytest.mark.parametrize("batched", [0, 1 << 20], ids=["chunked", "batched"])
def test_moments_of_binned_chunks_match_numpy(monkeypatch: pytest.MonkeyPatch, batched: int) -> None:
    """Chunked tensors take their sums chunk by chunk as they are binned; the numbers are the same."""
    from pytest_modelviz.params import histograms

    g = torch.Generator().manual_seed(2)
    tensors = [torch.randn(10_001, generator=g) * 3 + 1, torch.rand(5, generator=g),
               torch.full((2_000,), 0.5)]
    monkeypatch.setattr(histograms, "_CHUNK", 1000)
    monkeypatch.setattr(histograms, "_BATCHED", batched)
    for t, hist in zip(tensors, device_histograms(tensors, bins=8), strict=True):
        values = t.numpy().astype(np.float64)
        assert (hist.min, hist.max, hist.num) == (values.min(), values.max(), values.size)
        assert hist.sum == pytest.approx(values.sum(), rel=1e-6)
        assert hist.sum_squares == pytest.approx((values**2).sum(), rel=1e-6)


def test_the_callers_thread_count_is_kept() -> None:
    """Histograms bin on one CPU thread (steady under load) and leave torch's setting as it was."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []

        class Probe(torch.Tensor):  # records the thread count while the histogram reads it
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
                seen.append(torch.get_num_threads())
                return super().__torch_function__(func, types, args, kwargs or {})

        [hist] = device_histograms([torch.arange(6.0).as_subclass(Probe)], bins=3)
        assert hist.counts == [2.0, 2.0, 2.0]
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_range_too_narrow_for_float32_indices_still_bins() -> None:
    values = torch.tensor([1e-38, 1.5e-38, 2e-38])
    [hist] = device_histograms([values], bins=4)
    assert sum(hist.counts) == 3 and hist.counts[0] == 1 and hist.counts[-1] == 1

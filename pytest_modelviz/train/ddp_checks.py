"""``DistributedResult``: a ``short_train(world_size=N)`` run, and the checks only DDP needs.

It is a ``TrainResult`` (rank 0's, with the loss averaged over the ranks: the loss of the global
batch), so every single-process check reads it as usual, plus what each rank recorded
(``ranks``). The checks name the parameter or buffer, the rank and the step:

- ``assert_ranks_agree``: every parameter and buffer identical on every rank after every step;
- ``assert_distinct_data``: no two ranks trained on the same batch at the same step;
- ``assert_parity``: the loss curve and the final parameters match a single-process run on the
  same global batches (the ranks' batches side by side), within a tolerance per backend;
- ``assert_distributed``: all three.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import capped
from pytest_modelviz.train.result import TrainResult, _check, hide_for_failures, listed_names

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.train.ddp_worker import RankReport
    from pytest_modelviz.train.options import TrainOptions

# Default parity tolerances per backend (relative, absolute): gradients averaged by an all-reduce
# are summed in another order than one backward over the global batch, so parameters agree to a
# few float32 ulps per step; NCCL reduces in a tree and cuDNN may pick other kernels per batch size.
PARITY_TOLERANCE: dict[str, tuple[float, float]] = {"gloo": (1e-4, 1e-6), "nccl": (1e-3, 1e-5)}
_SHOWN = 5  # findings listed in a message before "... and N more"


@dataclass(frozen=True)
class ParitySource:
    """What the single-process run needs: the model as sent to the ranks, and the options."""

    job_model: bytes  # the pickled model or model factory, as each rank got it
    model_is_factory: bool
    options: TrainOptions  # world_size=1, no sinks, no callbacks
    device: str


@dataclass(repr=False)
class DistributedResult(TrainResult):
    """A ``TrainResult`` of ``short_train(world_size=N)``; ``ranks`` holds what each rank recorded."""

    world_size: int = 1
    backend: str = ""
    ranks: tuple[RankReport, ...] = field(default=(), repr=False)
    parity_source: ParitySource | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return super().__repr__().replace("TrainResult(", f"DistributedResult(world_size={self.world_size}, ", 1)

    def rank_losses(self, rank: int) -> list[float]:
        """The loss rank ``rank`` computed on its own batch at each step."""
        result = self.ranks[rank].result
        return [] if result is None else list(result.losses)

    @_check
    def assert_distributed(self, rtol: float | None = None, atol: float | None = None) -> None:
        """``assert_ranks_agree``, ``assert_distinct_data`` and ``assert_parity``, in that order."""
        __tracebackhide__ = hide_for_failures
        self.assert_ranks_agree()
        self.assert_distinct_data()
        self.assert_parity(rtol=rtol, atol=atol)

    @_check
    def assert_ranks_agree(self) -> None:
        """Every parameter and buffer is identical on every rank after every optimizer step."""
        __tracebackhide__ = hide_for_failures
        found = rank_drift(self.ranks)
        if found:
            lines = capped([self._drift_line(*f) for f in found], _SHOWN)
            raise AssertionError(
                f"{self.name}: the ranks disagree (under DistributedDataParallel every parameter and "
                "buffer must be identical on every rank after each step):\n  " + "\n  ".join(lines)
            )

    def _drift_line(self, key: str, rank: int, step: int) -> str:
        kind, _, name = key.partition(":")
        where = f"{kind} {name} on rank {rank} differs from rank 0 after step {step}"
        module = self._module_of(name)
        if module is not None and "BatchNorm" in type(module).__name__:
            return (f"{where}: {type(module).__name__} {name.rpartition('.')[0]!r} normalises with each rank's "
                    "own batch statistics; convert it with torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) "
                    "(CUDA), or keep it in eval mode")
        if kind == "buffer":
            return f"{where}: each rank updates it on its own; keep buffers identical (broadcast or recompute them)"
        return f"{where}: something changes it outside the averaged gradient (an in-place edit, a per-rank seed)"

    def _module_of(self, name: str) -> Any:
        owner = name.rpartition(".")[0]
        try:
            return self.model.get_submodule(owner)
        except AttributeError:
            return None

    @_check
    def assert_distinct_data(self) -> None:
        """No two ranks trained on the same batch at the same step (each rank needs its own shard)."""
        __tracebackhide__ = hide_for_failures
        found = duplicate_batches(self.ranks, self.steps_run)
        if found:
            step, ranks = found[0]
            same = " and ".join(f"rank {r}" for r in ranks)
            more = f" (and at {len(found) - 1} more step(s))" if len(found) > 1 else ""
            raise AssertionError(
                f"{self.name}: {same} trained on the same batch at step {step}{more}: each rank must see its "
                "own part of the data. Use a DistributedSampler: pass data as a module-level factory "
                "`def data(rank, world_size): return DataLoader(ds, batch_size=..., "
                "sampler=DistributedSampler(ds, num_replicas=world_size, rank=rank))`"
            )

    @_check
    def assert_parity(self, rtol: float | None = None, atol: float | None = None) -> None:
        """The loss curve (averaged over the ranks) and the final parameters match a single-process
        run on the same global batches, within ``rtol``/``atol`` (defaults: ``PARITY_TOLERANCE``
        of the backend)."""
        __tracebackhide__ = hide_for_failures
        default_rtol, default_atol = PARITY_TOLERANCE.get(self.backend, PARITY_TOLERANCE["gloo"])
        rtol = default_rtol if rtol is None else rtol
        atol = default_atol if atol is None else atol
        single = self._single_process_run()
        problems = compare_losses(self.losses, single.losses, rtol, atol)
        problems += compare_params(self.model, single.model, rtol, atol)
        if problems:
            raise AssertionError(
                f"{self.name}: the {self.world_size}-rank run differs from a single-process run on the same "
                f"global batches (rtol {rtol:g}, atol {atol:g}):\n  " + "\n  ".join(capped(problems, _SHOWN))
                + "\n(dropout, a per-rank seed, BatchNorm statistics and a sum-reduced loss all break parity)"
            )

    def _single_process_run(self) -> TrainResult:
        import dataclasses

        import torch

        from pytest_modelviz.train.loop import train
        from pytest_modelviz.train.state import seeded

        source = self.parity_source
        if source is None:
            raise AssertionError(f"{self.name}: this result has no record of what the ranks were sent")
        batches = global_batches(self.ranks)
        if batches is None:
            raise AssertionError(
                f"{self.name}: cannot check parity: the ranks drew more data than is kept for the single-process run"
            )
        device = torch.device(source.device)
        sent = pickle.loads(source.job_model)
        if source.model_is_factory:
            with seeded(source.options.seed, device):
                model = sent()
        else:
            model = sent
        options = dataclasses.replace(source.options, device=device, name=f"{self.name} (single process)")
        return train(model, batches, options)


def rank_drift(ranks: Sequence[RankReport]) -> list[tuple[str, int, int]]:
    """``(key, rank, step)``: the first step each parameter/buffer differs from rank 0 on a rank."""
    out: list[tuple[str, int, int]] = []
    if not ranks:
        return out
    keys = ranks[0].watched
    for report in ranks[1:]:
        seen: set[str] = set()
        # strict=False: a rank may have stopped early
        for step, (here, there) in enumerate(zip(ranks[0].states, report.states, strict=False)):
            for key, a, b in zip(keys, here, there, strict=True):
                if key not in seen and a != b and not (math.isnan(a) and math.isnan(b)):
                    seen.add(key)
                    out.append((key, report.rank, step))
    return sorted(out, key=lambda f: (f[2], f[1], f[0]))


def duplicate_batches(ranks: Sequence[RankReport], steps: int) -> list[tuple[int, tuple[int, ...]]]:
    """``(step, ranks)`` for each step at which two or more ranks drew the same batch."""
    per_rank = []
    for report in ranks:
        by_step: dict[int, set[str]] = {}
        for step, digest in report.pulls:
            for s in (range(steps) if step < 0 else [step]):
                by_step.setdefault(s, set()).add(digest)
        per_rank.append(by_step)
    out = []
    for step in range(steps):
        owners: dict[str, list[int]] = {}
        for rank, by_step in enumerate(per_rank):
            for digest in by_step.get(step, ()):
                owners.setdefault(digest, []).append(rank)
        shared = sorted({tuple(r) for r in owners.values() if len(r) > 1})
        if shared:
            out.append((step, shared[0]))
    return out


def global_batches(ranks: Sequence[RankReport]) -> Any:
    """The batches of a single process that sees what all ranks saw: the ranks' batches of each
    draw concatenated along the first dimension (one batch when each rank had one batch)."""
    import torch

    from pytest_modelviz.nested import map_tensors, tensors

    if any(r.batches is None for r in ranks):
        return None
    drawn = [[r.batch(i) for i in range(len(r.batches or []))] for r in ranks]

    def joined(parts: list[Any]) -> Any:
        columns = iter(zip(*(tensors(p) for p in parts), strict=True))
        return map_tensors(parts[0], lambda _: torch.cat(next(columns)))

    combined = [joined(list(parts)) for parts in zip(*drawn, strict=False)]  # draws every rank made
    return combined[0] if ranks[0].single_batch else combined


def compare_losses(dist: Sequence[float], single: Sequence[float], rtol: float, atol: float) -> list[str]:
    if len(dist) != len(single):
        return [f"the runs took {len(dist)} and {len(single)} steps"]
    for step, (a, b) in enumerate(zip(dist, single, strict=True)):
        if not math.isclose(a, b, rel_tol=rtol, abs_tol=atol):
            return [f"loss at step {step}: {a:.8g} (mean over the ranks) vs {b:.8g} (single process)"]
    return []


def compare_params(dist_model: torch.nn.Module, single_model: torch.nn.Module, rtol: float,
                   atol: float) -> list[str]:
    """Each parameter as a whole: ``||p - q|| <= atol * sqrt(n) + rtol * ||q||`` (L2 norms). Not
    element by element: where a gradient is near zero, Adam's update ``m / sqrt(v)`` turns a few
    ulps of difference into an update of another size, in a healthy run."""
    import math as math_

    single = dict(single_model.named_parameters())
    out = []
    for name, p in dist_model.named_parameters():
        q = single[name].detach().to(p.device).double()
        diff = float((p.detach().double() - q).norm())
        scale = float(q.norm())
        if diff > atol * math_.sqrt(q.numel()) + rtol * scale:
            relative = diff / scale if scale else math.inf
            out.append(f"final parameter {name}: relative difference {relative:.3g} (L2 norm of the difference "
                       "over the single-process parameter's)")
    return out


__all__ = ["PARITY_TOLERANCE", "DistributedResult", "ParitySource", "listed_names"]

"""``TrainResult``: what a ``short_train`` run recorded, and the checks that read it.

Each check raises ``AssertionError`` naming the step, parameter or module at fault. Parameters are
remembered as fingerprints (see ``state.py``), never as copies, so a result stays small whatever
the model's size; the trained model and optimizer are kept for ``assert_resume_equivalent``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_modelviz.train.options import CheckReporter
from pytest_modelviz.train.state import Fingerprint

if TYPE_CHECKING:
    import pytest
    import torch

    from pytest_modelviz.train.data import BatchStream
    from pytest_modelviz.train.step import LossSpec

_F = TypeVar("_F", bound=Callable[..., Any])
_SHOWN = 12  # names listed in a message before "... and N more"


@dataclass(frozen=True)
class NonFinite:
    """The first step where the loss, the output or a gradient was NaN/Inf."""

    step: int
    what: str
    loss: float
    parameters: tuple[str, ...]  # every parameter whose gradient was non-finite at that step

    @property
    def message(self) -> str:
        grads = ""
        if self.parameters:
            grads = f"; non-finite gradients at that step: {listed_names(self.parameters)}"
        return f"step {self.step}: {self.what} (loss {self.loss}){grads}"


@dataclass
class ResumeSetup:
    """What it takes to run one more step exactly as the loop would (used by the resume check)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss: LossSpec
    stream: BatchStream
    device: torch.device
    autocast: Callable[[], AbstractContextManager[Any]]
    scaler: Any  # a torch.amp.GradScaler under float16 autocast, else None
    grad_clip: float | None
    seed: int
    accumulate: int


def hide_for_failures(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    """``__tracebackhide__`` for the frames a check fails through: its message says all there is,
    so pytest shows the user's line, not the plugin's source (as a snapshot failure does). Any
    other exception (bad input, a bug) keeps every frame."""
    return excinfo.errisinstance(AssertionError)


def _check(fn: _F) -> _F:
    """Report every outcome of a check (pass or fail) to the run report when one listens."""

    @functools.wraps(fn)
    def wrapper(self: TrainResult, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = hide_for_failures
        try:
            out = fn(self, *args, **kwargs)
        except AssertionError as exc:
            self._report(fn.__name__, False, str(exc))
            raise
        self._report(fn.__name__, True, "")
        return out

    return wrapper  # type: ignore[return-value]


@dataclass(repr=False)
class TrainResult:
    name: str
    model: torch.nn.Module
    device: str
    seed: int
    steps: int  # asked for; ``steps_run`` is fewer when training stopped at a non-finite value
    losses: list[float]
    lrs: list[float]
    grad_norms: list[float]  # global L2 norm before clipping
    param_grad_norms: dict[str, list[float]]  # trainable parameter -> per-step L2 norm (0 if no grad)
    step_times: list[float]  # seconds
    eval: dict[str, list[tuple[int, float]]]
    nonfinite: NonFinite | None
    trainable: tuple[str, ...]  # requires_grad=True when training started
    frozen: tuple[str, ...]  # requires_grad=False when training started
    not_in_optimizer: tuple[str, ...]
    frozen_in_optimizer: tuple[str, ...]
    static_buffers: tuple[str, ...]  # buffers that must not change (see ``assert_params_updated``)
    initial: dict[str, Fingerprint]  # "param:<name>" / "buffer:<name>" -> fingerprint
    final: dict[str, Fingerprint]
    torch_version: str
    error: str | None = None  # why training stopped part way (then ``on_end`` gets it, not a caller)
    setup: ResumeSetup | None = field(default=None, repr=False)
    reporter: CheckReporter | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        # Short: pytest prints it beside a failing line, and the full record is thousands of numbers.
        last = f", final_loss={self.losses[-1]:.6g}" if self.losses else ""
        stopped = f", nonfinite=step {self.nonfinite.step}" if self.nonfinite else ""
        error = f", error={self.error!r}" if self.error else ""
        return (f"TrainResult(name={self.name!r}, device={self.device!r}, steps_run={self.steps_run} of "
                f"{self.steps}{last}{stopped}{error})")

    @property
    def steps_run(self) -> int:
        return len(self.losses)

    @property
    def updates(self) -> int:
        """Optimizer steps applied: a step stopped at a non-finite value applied none."""
        stopped = self.nonfinite is not None and self.nonfinite.step == self.steps_run - 1
        return self.steps_run - 1 if stopped else self.steps_run

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return None if self.setup is None else self.setup.optimizer

    def _report(self, check: str, passed: bool, message: str) -> None:
        if self.reporter is not None:
            self.reporter(check, passed, message)

    def _changed(self, key: str) -> bool:
        return self.initial.get(key) != self.final.get(key)

    # ------------------------------------------------------------------ checks

    @_check
    def assert_finite(self) -> None:
        """Every loss, model output and gradient was finite (NaN/Inf names the first step and parameter)."""
        __tracebackhide__ = hide_for_failures
        if self.nonfinite is not None:
            raise AssertionError(
                f"{self.name}: training went non-finite at {self.nonfinite.message}. "
                "Lower the learning rate, clip gradients (grad_clip=...), or look for a log/div of zero."
            )

    @_check
    def assert_loss_decreased(self, window: int | None = None, factor: float = 0.9) -> None:
        """The mean loss of the last ``window`` steps is at most ``factor`` times that of the first.

        ``window`` defaults to a fifth of the steps run (at least 1). For a loss that can be
        negative the test is simply last mean < first mean.
        """
        __tracebackhide__ = hide_for_failures
        n = len(self.losses)
        if n < 2:
            raise AssertionError(f"{self.name}: assert_loss_decreased needs at least 2 steps, {n} ran")
        w = window if window is not None else max(1, n // 5)
        if w < 1 or 2 * w > n:
            raise AssertionError(f"{self.name}: window={w} needs at least {2 * w} steps, {n} ran")
        first = sum(self.losses[:w]) / w
        last = sum(self.losses[-w:]) / w
        limit = first * factor if first > 0 else first
        ok = math.isfinite(last) and (last <= limit if first > 0 else last < first)
        if not ok:
            stopped = f" Training stopped early at {self.nonfinite.message}." if self.nonfinite else ""
            raise AssertionError(
                f"{self.name}: the loss did not decrease: mean of steps 0-{w - 1} = {first:.6g}, "
                f"mean of steps {n - w}-{n - 1} = {last:.6g}, expected <= {limit:.6g} "
                f"(factor {factor}).{stopped} Losses: {_shorten(self.losses)}. Try more steps or a "
                "higher learning rate, and check that the optimizer holds the parameters."
            )

    @_check
    def assert_all_params_receive_grad(self, allow_frozen_in_optimizer: bool = False) -> None:
        """Every trainable parameter got a non-zero gradient at least once and is in the optimizer.

        Frozen parameters (``requires_grad=False``) handed to the optimizer fail too unless
        ``allow_frozen_in_optimizer``: they are usually a layer meant to train that someone froze.
        """
        __tracebackhide__ = hide_for_failures
        problems = []
        never = [n for n in self.trainable if not any(v > 0 for v in self.param_grad_norms.get(n, []))]
        if never:
            problems.append(
                f"{len(never)} trainable parameter(s) never received a non-zero gradient in "
                f"{self.steps_run} step(s): {listed_names(never)} (module(s) {listed_names(_modules(never))}): "
                "does the forward use them, or is their output detached / multiplied by zero?"
            )
        if self.not_in_optimizer:
            problems.append(
                f"{len(self.not_in_optimizer)} trainable parameter(s) are not in the optimizer, so "
                f"they never update: {listed_names(self.not_in_optimizer)}. Build the optimizer over all "
                "trainable parameters, or freeze them (requires_grad_(False))."
            )
        if self.frozen_in_optimizer and not allow_frozen_in_optimizer:
            problems.append(
                f"{len(self.frozen_in_optimizer)} frozen parameter(s) (requires_grad=False) are in "
                f"the optimizer: {listed_names(self.frozen_in_optimizer)}. Pass only trainable parameters "
                "(`[p for p in model.parameters() if p.requires_grad]`), or pass "
                "allow_frozen_in_optimizer=True if that is intended."
            )
        if problems:
            raise AssertionError(f"{self.name}: " + "\n".join(problems))

    @_check
    def assert_params_updated(self) -> None:
        """Trainable parameters changed; frozen ones and static buffers did not.

        Trainable: ``requires_grad=True`` when training started. Static buffers: the buffers of
        modules in eval mode when training started, and of modules whose own parameters are all
        frozen (a frozen BatchNorm left in train mode still moves its running statistics). Buffers
        of other modules in train mode (BatchNorm running stats) may change and are not checked.
        """
        __tracebackhide__ = hide_for_failures
        problems = []
        if self.updates == 0:
            why = self.nonfinite.message if self.nonfinite else "no steps ran"
            raise AssertionError(f"{self.name}: no optimizer step was taken ({why})")
        stale = [n for n in self.trainable if not self._changed(f"param:{n}")]
        if stale:
            problems.append(
                f"{len(stale)} trainable parameter(s) did not change: {listed_names(stale)} (module(s) "
                f"{listed_names(_modules(stale))}). Are they in the optimizer, do they get gradients, is the "
                "learning rate 0?"
            )
        moved = [n for n in self.frozen if self._changed(f"param:{n}")]
        if moved:
            problems.append(
                f"{len(moved)} frozen parameter(s) (requires_grad=False) changed: {listed_names(moved)}. "
                "Something writes to them in place (the forward, a hook, or an optimizer given them)."
            )
        drifted = [n for n in self.static_buffers if self._changed(f"buffer:{n}")]
        if drifted:
            problems.append(
                f"{len(drifted)} buffer(s) of frozen or eval-mode module(s) changed: {listed_names(drifted)}. "
                "A frozen BatchNorm must also be in eval mode (module.eval()) to keep its running stats."
            )
        if problems:
            raise AssertionError(f"{self.name}: " + "\n".join(problems))

    @_check
    def assert_resume_equivalent(
        self,
        fresh_model: Callable[[], torch.nn.Module] | None = None,
        *,
        path: str | Path | None = None,
        rtol: float = 1e-6,
        atol: float = 1e-7,
    ) -> None:
        """Checkpoint, reload and resume: the next step matches uninterrupted training.

        The model's and optimizer's ``state_dict``s are saved to ``path`` (default: a temporary
        file), loaded with ``torch.load(weights_only=True, map_location="cpu")`` into a fresh model
        (``fresh_model()``, or a copy of the trained one) and a fresh optimizer of the same class.
        Then one more step runs on both the reloaded copy and an in-memory copy of the trained
        state, on the same batch and seed. Names the parameter, buffer or optimizer state that
        differs after loading, or the loss and parameters that differ after the step.
        """
        __tracebackhide__ = hide_for_failures
        from pytest_modelviz.train.resume import check_resume

        if self.setup is None:
            raise AssertionError(f"{self.name}: this result has no training setup to resume from")
        if self.nonfinite is not None:
            raise AssertionError(
                f"{self.name}: cannot check resuming: training went non-finite at {self.nonfinite.message}"
            )
        check_resume(self.name, self.model, self.setup, self.steps_run, fresh_model, path, rtol, atol)


def listed_names(names: Any) -> str:
    names = list(names)
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _modules(params: list[str]) -> list[str]:
    out: list[str] = []
    for name in params:
        module = name.rpartition(".")[0] or "<root>"
        if module not in out:
            out.append(module)
    return out


def _shorten(values: list[float], keep: int = 5) -> str:
    fmt = [f"{v:.4g}" for v in values]
    if len(fmt) <= 2 * keep:
        return "[" + ", ".join(fmt) + "]"
    return "[" + ", ".join(fmt[:keep]) + ", ..., " + ", ".join(fmt[-keep:]) + "]"

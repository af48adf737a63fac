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

from pytest_modelviz.errors import capped
from pytest_modelviz.train import diagnosis
from pytest_modelviz.train.diagnosis import HealthLog
from pytest_modelviz.train.options import CheckReporter
from pytest_modelviz.train.state import Fingerprint

if TYPE_CHECKING:
    import pytest
    import torch

    from pytest_modelviz.train.data import BatchStream
    from pytest_modelviz.train.determinism import RerunSetup
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
        self._report(fn.__name__, True, out.message if isinstance(out, LossReached) else "")
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
    health: HealthLog | None = field(default=None, repr=False)  # per-layer measurements (``health.py``)
    setup: ResumeSetup | None = field(default=None, repr=False)
    reporter: CheckReporter | None = field(default=None, repr=False)
    rerun: RerunSetup | None = field(default=None, repr=False)  # for assert_deterministic

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

    @_check
    def assert_deterministic(self) -> None:
        """A second run from the same initial state, seed and batches repeats this one bit for bit.

        Trains a copy of the model again (it costs a second run; see ``train/determinism.py``) and
        compares every step's loss, per-parameter gradient norms, learning rate and eval metrics,
        and every parameter and buffer after training. Names the first step and value that differ,
        the first step whose loss differs and the parameters that differ after training.
        """
        __tracebackhide__ = hide_for_failures
        from pytest_modelviz.train.determinism import check_deterministic

        check_deterministic(self)


    # ------------------------------------------------------------------ per-layer health

    def _health(self, check: str) -> HealthLog:
        __tracebackhide__ = hide_for_failures
        if self.health is None:
            raise AssertionError(
                f"{self.name}: {check} needs the run's health measurements, and this result has none "
                "(short_train(..., health=False) takes none)")
        return self.health

    def _fail(self, findings: list[diagnosis.Finding], what: str, hint: str) -> None:
        __tracebackhide__ = hide_for_failures
        if findings:
            lines = "\n".join(f"  {line}" for line in capped([f.message for f in findings], _SHOWN))
            raise AssertionError(f"{self.name}: {what}:\n{lines}\n{hint}")

    @_check
    def assert_gradients_healthy(
        self,
        *,
        min_ratio: float = diagnosis.MIN_GRAD_RATIO,
        min_vs_largest: float = diagnosis.MIN_VS_LARGEST,
        max_ratio: float = diagnosis.MAX_GRAD_RATIO,
        max_growth: float | None = diagnosis.MAX_GROWTH,
        min_norm: float | None = None,
        max_norm: float | None = None,
    ) -> None:
        """Gradients flow to every layer without vanishing or exploding.

        Per layer (a module owning parameters), from the gradient norms of every step: vanishing
        when its norm stays below ``min_ratio`` times its parameter norm, or below
        ``min_vs_largest`` times the largest layer's, at every step; exploding when it is
        non-finite or above ``max_ratio`` times its parameter norm at some step. The global norm
        (before clipping) exploding when its median over the last fifth of the steps is more than
        ``max_growth`` times that over the first fifth (None: not checked); ``min_norm`` and
        ``max_norm`` bound it at every step. Layers that never got a gradient are
        ``assert_all_params_receive_grad``'s to name.
        """
        __tracebackhide__ = hide_for_failures
        findings = diagnosis.gradient_findings(
            self.param_grad_norms, self.grad_norms, self.health, min_ratio=min_ratio,
            min_vs_largest=min_vs_largest, max_ratio=max_ratio, max_growth=max_growth,
            min_norm=min_norm, max_norm=max_norm,
        )
        if not self.grad_norms:
            raise AssertionError(f"{self.name}: assert_gradients_healthy needs at least 1 step, none ran")
        self._fail(findings, "unhealthy gradients", (
            "Vanishing: use ReLU-family activations, normalization or residual connections, or a better "
            "initialization. Exploding: lower the learning rate or clip (grad_clip=...)."))

    @_check
    def assert_no_dead_units(self, max_fraction: float = diagnosis.MAX_DEAD) -> None:
        """No ReLU-family module has more than ``max_fraction`` of its units dead (zero, or at a
        limit, on every sample of the run), and no Sigmoid/Tanh module that many saturated."""
        __tracebackhide__ = hide_for_failures
        log = self._health("assert_no_dead_units")
        if log.watched:
            raise AssertionError(f"{self.name}: cannot check dead units: activations are not watched in {log.watched}")
        if not log.activations:
            # Passing here would claim a check that looked at nothing.
            raise AssertionError(
                f"{self.name}: cannot check dead units: the model has no ReLU, ReLU6, Hardtanh, Hardsigmoid, "
                "Sigmoid or Tanh module to watch. Activations called as functions (F.relu, torch.sigmoid, "
                "TransformerEncoderLayer(activation=\"relu\")) are not seen: use the module form "
                "(nn.ReLU(), activation=nn.ReLU()) to have them checked."
            )
        self._fail(diagnosis.dead_findings(log, max_fraction=max_fraction), "dead or saturated units", (
            "A dead ReLU outputs zero for every input, so it gets no gradient: look for a large negative "
            "bias, too high a learning rate, or inputs that are not normalized."))

    @_check
    def assert_update_ratio(
        self, low: float = diagnosis.MIN_UPDATE_RATIO, high: float = diagnosis.MAX_UPDATE_RATIO, *,
        allow_frozen_in_optimizer: bool = False,
    ) -> None:
        """Every layer's update norm / parameter norm, at the sampled steps, stays within
        [``low``, ``high``] (healthy training sits near 1e-3): below ``low`` at every sampled step,
        the layer does not learn; above ``high`` at one, it jumps. A frozen layer left in the optimizer
        (it never updates) fails too unless ``allow_frozen_in_optimizer``."""
        __tracebackhide__ = hide_for_failures
        log = self._health("assert_update_ratio")
        if not log.samples:
            raise AssertionError(f"{self.name}: assert_update_ratio needs at least one optimizer step, none was taken")
        findings = diagnosis.update_findings(log, low=low, high=high,
                                             allow_frozen_in_optimizer=allow_frozen_in_optimizer)
        self._fail(findings, "update-to-parameter ratios out of range",
                   "The ratio is the norm of one optimizer step's change over the layer's parameter norm.")

    @_check
    def assert_on_device(self) -> None:
        """Every parameter, buffer and optimizer state tensor, the model's inputs and every tensor
        made during the first step's forward and loss were on the run's device."""
        __tracebackhide__ = hide_for_failures
        log = self._health("assert_on_device")
        self._fail(diagnosis.device_findings(log), f"tensors not on the run's device {self.device}", (
            "Create tensors in forward with device=x.device (or register them as buffers so .to() moves "
            "them), and build the optimizer after moving the model."))

    @_check
    def assert_loss_below(self, target: float, *, within: int | None = None) -> LossReached:
        """Some step's loss (of the first ``within`` steps, default all) fell below ``target``:
        with ``overfit_batch=True``, proof that the model can learn at all. Returns the step and loss."""
        __tracebackhide__ = hide_for_failures
        losses = self.losses[:within] if within is not None else self.losses
        reached = next((k for k, v in enumerate(losses) if v < target), None)
        if reached is not None:
            return LossReached(step=reached, loss=losses[reached], target=target)
        if not losses:
            raise AssertionError(f"{self.name}: assert_loss_below needs at least 1 step, none ran")
        finite = [(v, k) for k, v in enumerate(losses) if math.isfinite(v)]
        lowest = f"{min(finite)[0]:.4g} (lowest, at step {min(finite)[1]})" if finite else "a non-finite value"
        stopped = f" Training stopped early at {self.nonfinite.message}." if self.nonfinite else ""
        raise AssertionError(
            f"{self.name}: the loss stalled at {lowest} and never fell below {target:g} in {len(losses)} "
            f"step(s); last loss {losses[-1]:.4g}.{stopped} Losses: {_shorten(losses)}. With overfit_batch=True "
            "a model that can learn drives one batch's loss towards zero: more steps, a higher learning rate, "
            "or look for a detached output or a wrong target."
        )


@dataclass(frozen=True)
class LossReached:
    """What ``assert_loss_below`` returns: the first step whose loss was below the target."""

    step: int
    loss: float
    target: float

    @property
    def message(self) -> str:
        return f"reached loss {self.loss:.4g} at step {self.step} (target {self.target:g})"


def listed_names(names: Any) -> str:
    return ", ".join(capped([str(n) for n in names], _SHOWN))


def _modules(params: list[str]) -> list[str]:
    return list(diagnosis.by_layer(params))


def _shorten(values: list[float], keep: int = 5) -> str:
    fmt = [f"{v:.4g}" for v in values]
    if len(fmt) <= 2 * keep:
        return "[" + ", ".join(fmt) + "]"
    return "[" + ", ".join(fmt[:keep]) + ", ..., " + ", ".join(fmt[-keep:]) + "]"

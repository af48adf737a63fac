"""Building the optimizer (and scheduler) the caller described, and auditing what it holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import TrainingError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class OptimizerAudit:
    not_in_optimizer: tuple[str, ...]  # trainable, but the optimizer never updates them
    frozen_in_optimizer: tuple[str, ...]  # requires_grad=False, yet handed to the optimizer


def build_optimizer(
    optimizer: Any, model: torch.nn.Module, optimizer_kwargs: dict[str, Any] | None
) -> torch.optim.Optimizer:
    """An instance as given; a class gets the trainable parameters and ``optimizer_kwargs``; any other
    callable is a factory called with the trainable parameters."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if isinstance(optimizer, torch.optim.Optimizer):
        if optimizer_kwargs:
            raise TrainingError("optimizer_kwargs apply to an optimizer class, not to an optimizer instance")
        opt = optimizer
    elif isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        opt = optimizer(trainable, **(optimizer_kwargs or {}))
    elif callable(optimizer):
        opt = optimizer(trainable)
    else:
        raise TrainingError(
            f"optimizer must be a torch.optim.Optimizer, an optimizer class or a factory "
            f"like `lambda params: torch.optim.SGD(params, lr=0.1)`, got {type(optimizer).__name__}"
        )
    if not isinstance(opt, torch.optim.Optimizer):
        raise TrainingError(f"the optimizer factory returned {type(opt).__name__}, not a torch.optim.Optimizer")
    _check_foreign(opt, model)
    return opt


def _check_foreign(opt: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    own = {id(p) for p in model.parameters()}
    foreign = [
        f"group {g}, index {i}: shape {list(p.shape)}"
        for g, group in enumerate(opt.param_groups)
        for i, p in enumerate(group["params"])
        if id(p) not in own
    ]
    if foreign:
        raise TrainingError(
            f"the optimizer holds {len(foreign)} parameter(s) that are not in the model "
            f"{type(model).__name__}: {'; '.join(foreign[:10])}. Build the optimizer over "
            "this model's parameters (e.g. a factory `lambda params: ...`), not another model's."
        )


def audit(opt: torch.optim.Optimizer, model: torch.nn.Module) -> OptimizerAudit:
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    missing, frozen = [], []
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in held:
            missing.append(name)
        elif not p.requires_grad and id(p) in held:
            frozen.append(name)
    return OptimizerAudit(tuple(missing), tuple(frozen))


def build_scheduler(scheduler: Callable[[Any], Any] | None, opt: torch.optim.Optimizer,
                    metric: str | None = None) -> Any:
    """The scheduler the factory makes; ``metric`` (an eval metric's name) only for ReduceLROnPlateau."""
    if scheduler is None:
        if metric is not None:
            raise TrainingError(
                f"scheduler_metric={metric!r} needs a scheduler=lambda opt: ReduceLROnPlateau(opt)"
            )
        return None
    if not callable(scheduler):
        raise TrainingError(
            "scheduler must be a factory like `lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10)`"
        )
    sched = scheduler(opt)
    if metric is not None and not steps_on_metric(sched):
        raise TrainingError(
            f"scheduler_metric={metric!r} applies to ReduceLROnPlateau, which steps on a metric; "
            f"{type(sched).__name__} steps without one: leave scheduler_metric out"
        )
    return sched


def steps_on_metric(sched: Any) -> bool:
    """ReduceLROnPlateau's ``step`` takes the metric it watches (the loop gives it the training
    loss, or an eval metric named by ``scheduler_metric``)."""
    import torch

    return isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)


def step_scheduler(
    sched: Any, step: int, loss: float, metric: str | None, evaluated: dict[str, float] | None
) -> None:
    """Step ``sched`` after an optimizer step: a plain scheduler every step; ReduceLROnPlateau with
    the step's loss, or with the eval metric ``metric`` at the steps where eval ran."""
    if sched is None:
        return
    if not steps_on_metric(sched):
        sched.step()
    elif metric is None:
        sched.step(loss)
    elif evaluated is not None:
        if metric not in evaluated:
            raise TrainingError(
                f"step {step}: scheduler_metric={metric!r} is not among the metrics eval_fn returned "
                f"({', '.join(map(repr, evaluated)) or 'none'})"
            )
        sched.step(evaluated[metric])


def optimizer_like(
    opt: torch.optim.Optimizer, model: torch.nn.Module, source: torch.nn.Module
) -> torch.optim.Optimizer:
    """An optimizer of ``opt``'s class and groups over ``model``'s parameters instead of ``source``'s.

    Copied rather than constructed, so an optimizer whose ``__init__`` takes arguments of its own
    works too; the caller's ``load_state_dict`` then replaces the copied state.
    """
    import copy

    own = dict(model.named_parameters())
    memo = {id(p): own[name] for name, p in source.named_parameters()}
    return copy.deepcopy(opt, memo)


def current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])

"""The resume check: a checkpoint written and read back must continue training exactly.

Two copies take one more step on the same batch and seed: an in-memory copy of the trained state
("uninterrupted") and a model and optimizer rebuilt from the checkpoint file ("resumed").
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_modelviz.train.optim import optimizer_like
from pytest_modelviz.train.result import hide_for_failures
from pytest_modelviz.train.state import restore_training_flags, seeded, training_flags
from pytest_modelviz.train.step import accumulated_backward

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.train.result import ResumeSetup


def check_resume(
    name: str,
    model: torch.nn.Module,
    setup: ResumeSetup,
    step: int,
    fresh_model: Callable[[], torch.nn.Module] | None,
    path: str | Path | None,
    rtol: float,
    atol: float,
) -> None:
    __tracebackhide__ = hide_for_failures
    opt, sched = setup.optimizer, setup.scheduler
    ref_model, ref_opt, ref_sched, ref_scaler = copy.deepcopy((model, opt, sched, setup.scaler))
    if path is not None:
        new_model, new_opt, new_sched, new_scaler = _reload(model, setup, Path(path), fresh_model, name)
    else:
        with tempfile.TemporaryDirectory(prefix="modelviz-resume-") as tmp:
            file = Path(tmp) / "checkpoint.pt"
            new_model, new_opt, new_sched, new_scaler = _reload(model, setup, file, fresh_model, name)
    diffs = (
        _state_diffs(model, ref_model, new_model)
        + _optimizer_diffs(ref_model, ref_opt, new_model, new_opt)
        + _stateful_diffs("scheduler", ref_sched, new_sched)
        + _stateful_diffs("GradScaler", ref_scaler, new_scaler)
    )
    if diffs:
        raise AssertionError(
            f"{name}: after saving and loading the checkpoint, the resumed state differs from the "
            "trained one:\n  " + "\n  ".join(diffs[:12])
        )
    batches = [setup.stream.next(step) for _ in range(setup.accumulate)]
    ref_loss = _one_step(ref_model, ref_opt, ref_scaler, batches, setup, step)
    new_loss = _one_step(new_model, new_opt, new_scaler, batches, setup, step)
    params = _param_diffs(ref_model, new_model, rtol, atol)
    if not _close(ref_loss, new_loss, rtol, atol) or params:
        raise AssertionError(
            f"{name}: resuming from the checkpoint does not continue training: step {step} loss "
            f"uninterrupted {ref_loss!r} vs resumed {new_loss!r}"
            + ("; parameters that differ after the step: " + ", ".join(params[:12]) if params else "")
            + ". Something the step depends on is not in the model's or optimizer's state_dict."
        )


def _reload(
    model: torch.nn.Module,
    setup: ResumeSetup,
    file: Path,
    fresh_model: Callable[[], torch.nn.Module] | None,
    name: str,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any, Any]:
    import torch

    opt, sched, scaler, device = setup.optimizer, setup.scheduler, setup.scaler, setup.device
    state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    if sched is not None:
        state["scheduler"] = sched.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, file)
    try:
        loaded = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise AssertionError(
            f"{name}: the checkpoint cannot be loaded with torch.load(weights_only=True): {exc}. "
            "Keep only tensors and plain Python values in state_dicts."
        ) from exc
    new_model = fresh_model() if fresh_model is not None else copy.deepcopy(model)
    new_model.to(device)
    restore_training_flags(new_model, training_flags(model))
    result = new_model.load_state_dict(loaded["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise AssertionError(
            f"{name}: the fresh model does not match the checkpoint: missing keys "
            f"{list(result.missing_keys)[:12]}, unexpected keys {list(result.unexpected_keys)[:12]}"
        )
    new_opt = optimizer_like(opt, new_model, model)
    new_opt.load_state_dict(loaded["optimizer"])
    new_sched = None
    if sched is not None:
        new_sched = copy.deepcopy(sched, memo={id(opt): new_opt})
        new_sched.load_state_dict(loaded["scheduler"])
    new_scaler = None
    if scaler is not None:
        new_scaler = torch.amp.GradScaler(device.type)
        new_scaler.load_state_dict(loaded["scaler"])
    return new_model, new_opt, new_sched, new_scaler


def _state_diffs(trained: torch.nn.Module, ref: torch.nn.Module, new: torch.nn.Module) -> list[str]:
    import torch

    saved = set(trained.state_dict())
    out = []
    new_params = dict(new.named_parameters())
    for pname, p in ref.named_parameters():
        q: torch.Tensor | None = new_params.get(pname)
        if q is None or not torch.equal(p.detach(), q.detach()):
            out.append(f"parameter {pname}")
    new_buffers = dict(new.named_buffers())
    for bname, b in ref.named_buffers():
        q = new_buffers.get(bname)
        if q is None or q.shape != b.shape or not torch.equal(b, q):
            hint = "" if bname in saved else " (not in state_dict: registered with persistent=False)"
            out.append(f"buffer {bname}{hint}")
    return out


def _optimizer_diffs(ref_model: torch.nn.Module, ref_opt: torch.optim.Optimizer,
                     new_model: torch.nn.Module, new_opt: torch.optim.Optimizer) -> list[str]:
    import torch

    out = []
    # Both copy the trained optimizer's groups (``optimizer_like``; ``load_state_dict`` refuses another count).
    for g, (a, b) in enumerate(zip(ref_opt.param_groups, new_opt.param_groups, strict=True)):
        for key in sorted(set(a) - {"params"}):
            if not _same(a.get(key), b.get(key)):
                out.append(f"optimizer param_group {g} {key!r}: {a.get(key)!r} vs {b.get(key)!r}")
    new_params = dict(new_model.named_parameters())
    for pname, p in ref_model.named_parameters():
        sa, sb = ref_opt.state.get(p, {}), new_opt.state.get(new_params[pname], {})
        for key in sorted(set(sa) | set(sb)):
            va, vb = sa.get(key), sb.get(key)
            if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor):
                same = va.shape == vb.shape and torch.equal(va.cpu(), vb.cpu())
            else:
                same = _same(va, vb)
            if not same:
                out.append(f"optimizer state {key!r} of {pname}")
    return out


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a.cpu(), b.cpu())
    return bool(a == b)


def _stateful_diffs(what: str, ref: Any, new: Any) -> list[str]:
    """The ``state_dict`` entries of a scheduler or GradScaler that differ after loading."""
    if ref is None or new is None:
        return []
    a, b = ref.state_dict(), new.state_dict()
    return [f"{what} state {key!r}: {a.get(key)!r} vs {b.get(key)!r}" for key in sorted(set(a) | set(b))
            if not _same(a.get(key), b.get(key))]


def _one_step(model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: Any, batches: list[Any],
              setup: ResumeSetup, step: int) -> float:
    """The step both copies take. The scheduler is not stepped after it: the step's learning
    rate is already in the optimizer's param groups (compared above, with the scheduler's state),
    and stepping it once more than training did would overrun a schedule sized to the run
    (``OneCycleLR(total_steps=steps)``)."""
    import torch

    with seeded(setup.seed + step, setup.device):
        opt.zero_grad(set_to_none=True)
        loss, _, _ = accumulated_backward(
            model, batches, setup.loss, setup.device, setup.autocast, scaler, step
        )
        if scaler is not None:
            scaler.unscale_(opt)
        if setup.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), setup.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    return float(loss.detach())


def _param_diffs(ref: torch.nn.Module, new: torch.nn.Module, rtol: float, atol: float) -> list[str]:
    import torch

    new_params = dict(new.named_parameters())
    out = []
    for pname, p in ref.named_parameters():
        q = new_params[pname]
        if not torch.allclose(p.detach(), q.detach(), rtol=rtol, atol=atol):
            worst = (p.detach() - q.detach()).abs().max().item()
            out.append(f"{pname} (max abs diff {worst:.3g})")
    return out


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= atol + rtol * abs(b)

"""``short_train``: a short, seeded training run that records what the checks need.

The hot path asks the host for one small tensor per step (loss, global and per-parameter gradient
norms, whether the output was finite), so training runs at the speed of a hand-written loop; the
sinks are called through ``MetricSink`` and never asked what they are.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from pytest_modelviz.errors import TrainingError, add_note
from pytest_modelviz.module_tree import FIX_HINT, module_cycle
from pytest_modelviz.train import optim as optim_
from pytest_modelviz.train.data import BatchStream
from pytest_modelviz.train.embedding import EmbeddingProbe, embedding_spec
from pytest_modelviz.train.interrupt import StepCheck, interrupts_kept
from pytest_modelviz.train.result import NonFinite, ResumeSetup, TrainResult, listed_names
from pytest_modelviz.train.state import Fingerprint, fingerprints, restore_training_flags, seeded, training_flags
from pytest_modelviz.train.step import autocast_context, forward_loss, output_tensors

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.sink import MetricSink

DEFAULT_STEPS = 20
DEFAULT_LOG_EVERY = 10
IMAGE_GRID_MAX = 32  # first input images drawn in the grid
HEATMAP_MAX = 32  # the weight heatmap has at most this many rows and columns


def short_train(
    model: torch.nn.Module,
    data: Any,
    *,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    optimizer: Any,
    steps: int = DEFAULT_STEPS,
    device: str | torch.device | None = None,
    seed: int = 0,
    optimizer_kwargs: dict[str, Any] | None = None,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    autocast: bool | torch.dtype = False,
    grad_clip: float | None = None,
    eval_fn: Callable[[torch.nn.Module, int], Mapping[str, float]] | None = None,
    eval_every: int = 10,
    overfit_batch: bool = False,
    log_every: int = DEFAULT_LOG_EVERY,
    sinks: Sequence[MetricSink] = (),
    writer: Any = None,
    name: str | None = None,
    stop_on_nonfinite: bool = True,
    raise_on_nonfinite: bool = True,
    histogram_bins: int = 64,
    embedding: bool | str = False,
    embedding_every: int | None = None,
    on_end: Callable[[TrainResult], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``steps`` optimizer steps on ``data`` and return a ``TrainResult``.

    See ``pytest_modelviz/docs/short_train.md`` for every argument; in short: ``data`` is a DataLoader, any iterable
    of ``(inputs, targets, ...)`` batches (cycled) or one ``(inputs, targets)`` batch; ``optimizer``
    is a factory ``lambda params: ...``, an optimizer class (with ``optimizer_kwargs``) or an
    instance. The run is seeded with ``seed`` and the caller's RNG states are restored afterwards.
    With ``stop_on_nonfinite`` (default) training stops at the first non-finite loss, output or
    gradient, before that step's update, and with ``raise_on_nonfinite`` (default) ``short_train``
    then fails right there with ``TrainResult.assert_finite``'s message naming the step and
    parameter; with ``raise_on_nonfinite=False`` it returns and the test decides which checks run. ``embedding=True`` (or a module name, or ``embedding_every=N``) logs the features of
    the first batch to the sinks' embedding projector after the last step (and every N steps).
    ``on_end`` is called with the result before any check runs, and also when training fails part
    way, with what ran before the failure (its ``error`` says why) just before the error propagates.
    """
    import torch

    from pytest_modelviz.devices import resolve_device

    _check_arguments(model, steps, log_every, eval_every, grad_clip)
    dev = torch.device(resolve_device(None if device is None else str(device)))
    sinks = list(sinks)
    if writer is not None:
        from pytest_modelviz.tensorboard.sink import TensorBoardSink

        sinks.append(TensorBoardSink(writer))
    autocast_ctx = autocast_context(autocast, dev)
    stream = BatchStream(data, overfit=overfit_batch)
    label = name or type(model).__name__
    projector = embedding_spec(model, embedding, embedding_every)

    with seeded(seed, dev):
        model.to(dev)
        opt = optim_.build_optimizer(optimizer, model, optimizer_kwargs)
        _move_optimizer_state(opt, dev)
        sched = optim_.build_scheduler(scheduler, opt)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        start = _Start(
            label=label, seed=seed, audit=optim_.audit(opt, model),
            frozen=tuple(n for n, p in model.named_parameters() if not p.requires_grad),
            static=_static_buffers(model),  # decided by the modules' modes before training
            before=fingerprints(_watched_tensors(model)),
        )
        run = _Run(
            model=model, stream=stream, opt=opt, sched=sched, loss_fn=loss_fn, device=dev,
            autocast=autocast_ctx, grad_clip=grad_clip, named=named, sinks=sinks,
            log_every=log_every, bins=histogram_bins, eval_fn=eval_fn, eval_every=eval_every,
            steps=steps, stop_on_nonfinite=stop_on_nonfinite,
            probe=EmbeddingProbe(projector, model, dev, autocast_ctx, steps) if projector and sinks else None,
        )
        try:
            for sink in sinks:
                sink.text("train/config", _config_text(label, opt, steps, seed, dev, overfit_batch))
            with interrupts_kept() as interrupted:
                run.train(interrupted)
        except BaseException as exc:
            # What ran before the failure is kept (sinks flushed, the result handed to on_end)
            # and the failure itself propagates unchanged.
            _close_after_failure(sinks, exc)
            if on_end is not None:
                _end_after_failure(on_end, run.result(start, final={}, error=exc), exc)
            raise
        for sink in sinks:
            sink.close()
        result = run.result(start, final=fingerprints(_watched_tensors(model)))

    if on_end is not None:
        on_end(result)
    if raise_on_nonfinite and result.nonfinite is not None:
        # A NaN at step k fails at step k: no test passes because it forgot to call assert_finite.
        result.assert_finite()
    return result


@dataclass(frozen=True)
class _Start:
    """What is known when training starts, for the result."""

    label: str
    seed: int
    audit: optim_.OptimizerAudit
    frozen: tuple[str, ...]
    static: tuple[str, ...]
    before: dict[str, Fingerprint]


def _close_after_failure(sinks: Sequence[MetricSink], failure: BaseException) -> None:
    """Flush every sink; a sink that cannot close is told alongside the failure, never instead."""
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - attached to the failure that propagates
            add_note(failure, f"modelviz: closing {type(sink).__name__} failed too: {type(exc).__name__}: {exc}")


def _end_after_failure(on_end: Callable[[TrainResult], None], partial: TrainResult, failure: BaseException) -> None:
    try:
        on_end(partial)
    except Exception as exc:  # noqa: BLE001 - attached to the failure that propagates
        add_note(
            failure, f"modelviz: keeping what ran before the failure failed too: {type(exc).__name__}: {exc}"
        )


class _Run:
    """The loop's state; ``train`` fills the per-step lists."""

    def __init__(self, *, model: torch.nn.Module, stream: BatchStream, opt: torch.optim.Optimizer,
                 sched: Any, loss_fn: Callable[[Any, Any], torch.Tensor], device: torch.device,
                 autocast: Callable[[], Any], grad_clip: float | None,
                 named: list[tuple[str, torch.nn.Parameter]], sinks: list[MetricSink], log_every: int,
                 bins: int, eval_fn: Callable[[torch.nn.Module, int], Mapping[str, float]] | None,
                 eval_every: int, steps: int, stop_on_nonfinite: bool, probe: EmbeddingProbe | None) -> None:
        self.model, self.stream, self.opt, self.sched = model, stream, opt, sched
        self.loss_fn, self.device, self.autocast, self.grad_clip = loss_fn, device, autocast, grad_clip
        self.named, self.sinks, self.log_every, self.bins = named, sinks, log_every, bins
        self.eval_fn, self.eval_every, self.steps = eval_fn, eval_every, steps
        self.stop_on_nonfinite, self.probe = stop_on_nonfinite, probe
        self.params = [p for _, p in named]
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.grad_norms: list[float] = []
        self.param_norms: list[list[float]] = []
        self.times: list[float] = []
        self.eval: dict[str, list[tuple[int, float]]] = {}
        self.nonfinite: NonFinite | None = None

    def train(self, interrupted: StepCheck) -> None:
        for step in range(self.steps):
            interrupted(step)
            if not self._step(step):
                break
        interrupted(len(self.losses))

    def result(self, start: _Start, *, final: dict[str, Fingerprint], error: BaseException | None = None) -> TrainResult:
        """What ran, as a ``TrainResult``; with ``error``, what ran before training failed (the
        steps whose values were all recorded: a Ctrl-C can land between two appends)."""
        import torch

        done = min(len(self.losses), len(self.lrs), len(self.grad_norms), len(self.param_norms))
        return TrainResult(
            name=start.label,
            model=self.model,
            device=str(self.device),
            seed=start.seed,
            steps=self.steps,
            losses=self.losses[:done],
            lrs=self.lrs[:done],
            grad_norms=self.grad_norms[:done],
            param_grad_norms={n: [row[i] for row in self.param_norms[:done]] for i, (n, _) in enumerate(self.named)},
            step_times=self.times,
            eval={k: list(v) for k, v in self.eval.items()},
            nonfinite=self.nonfinite,
            trainable=tuple(n for n, _ in self.named),
            frozen=start.frozen,
            not_in_optimizer=start.audit.not_in_optimizer,
            frozen_in_optimizer=start.audit.frozen_in_optimizer,
            static_buffers=start.static,
            initial=start.before,
            final=final,
            torch_version=torch.__version__,
            error=None if error is None else _error_text(error),
            setup=ResumeSetup(
                optimizer=self.opt, scheduler=self.sched, loss_fn=self.loss_fn, stream=self.stream,
                device=self.device, autocast=self.autocast, grad_clip=self.grad_clip, seed=start.seed,
            ),
        )

    def _step(self, step: int) -> bool:
        """One optimizer step; False when training must stop (a non-finite value)."""
        import torch

        start = time.perf_counter()
        batch = self.stream.next(step)
        if step == 0 and self.sinks:
            self._log_images(batch.inputs)
            if self.probe is not None:
                self.probe.keep(batch)
        self.opt.zero_grad(set_to_none=True)
        loss, output = forward_loss(self.model, batch, self.loss_fn, self.device, self.autocast, step)
        loss.backward()
        present = [i for i, p in enumerate(self.params) if p.grad is not None]
        grads = [self.params[i].grad for i in present]
        norms = torch.stack(torch._foreach_norm(grads)).float() if grads else loss.new_zeros(0, dtype=torch.float32)
        total = torch.linalg.vector_norm(norms)
        if self.grad_clip is not None and grads:
            # What clip_grad_norm_ does, reusing the norms already computed.
            torch._foreach_mul_(grads, (self.grad_clip / (total + 1e-6)).clamp(max=1.0))
        outs = output_tensors(output)
        out_ok = torch.stack([torch.isfinite(t).all() for t in outs]).all() if outs else loss.new_ones((), dtype=torch.bool)
        # The one host transfer of the step.
        host = torch.cat([loss.detach().float().reshape(1), total.reshape(1), out_ok.float().reshape(1), norms]).tolist()
        loss_v, total_v, out_v, per = host[0], host[1], host[2], host[3:]
        row = [0.0] * len(self.params)
        for i, v in zip(present, per):
            row[i] = v
        lr = optim_.current_lr(self.opt)
        self.losses.append(loss_v)
        self.lrs.append(lr)
        self.grad_norms.append(total_v)
        self.param_norms.append(row)
        for sink in self.sinks:
            sink.scalars(step, {"train/loss": loss_v, "train/lr": lr, "train/grad_norm": total_v})
        finite = math.isfinite(loss_v) and math.isfinite(total_v) and out_v == 1.0
        if not finite and self.nonfinite is None:
            self.nonfinite = _nonfinite(step, loss_v, out_v == 1.0, row, [n for n, _ in self.named])
        if not finite and self.stop_on_nonfinite:
            self.times.append(time.perf_counter() - start)
            return False
        if finite and self.sinks and step % self.log_every == 0:
            self._log_weights(step, present)
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        if self.eval_fn is not None and ((step + 1) % self.eval_every == 0 or step == self.steps - 1):
            self._evaluate(step)
        if self.probe is not None and self.probe.due(step):
            self.probe.log(step, self.sinks)
        self.times.append(time.perf_counter() - start)
        return True

    def _log_weights(self, step: int, present: list[int]) -> None:
        from pytest_modelviz.params.histograms import device_histograms

        names = [n for n, _ in self.named]
        tensors = [p.detach() for p in self.params] + [self.params[i].grad for i in present]
        tags = [f"params/{n}" for n in names] + [f"grads/{names[i]}" for i in present]
        for tag, hist in zip(tags, device_histograms(tensors, bins=self.bins)):
            for sink in self.sinks:
                sink.histogram(step, tag, hist)
        matrix = next(((n, p) for n, p in self.named if p.dim() == 2), None)
        if matrix is not None:
            cells = heatmap_cells(matrix[1])
            for sink in self.sinks:
                sink.heatmap(step, f"weights/{matrix[0]}", cells)

    def _log_images(self, inputs: Any) -> None:
        import torch

        if not (isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and inputs.is_floating_point()
                and inputs.shape[1] in (1, 3)):
            return
        from torchvision.utils import make_grid

        grid = make_grid(inputs[:IMAGE_GRID_MAX].detach().float().cpu(), normalize=True)
        for sink in self.sinks:
            sink.image_grid(0, "inputs/first_batch", grid)

    def _evaluate(self, step: int) -> None:
        import torch

        flags = training_flags(self.model)
        try:
            with torch.no_grad():
                metrics = self.eval_fn(self.model, step)  # type: ignore[misc]
        finally:
            restore_training_flags(self.model, flags)  # an eval_fn calling model.eval() must not leak
        if not isinstance(metrics, Mapping):
            raise TrainingError(f"step {step}: eval_fn must return a dict of metric name -> float, got {type(metrics).__name__}")
        values = {}
        for key, value in metrics.items():
            try:
                values[str(key)] = float(value)
            except (TypeError, ValueError):
                raise TrainingError(f"step {step}: eval_fn returned {key!r} = {value!r}, which is not a number") from None
        for key, value in values.items():
            self.eval.setdefault(key, []).append((step, value))
        for sink in self.sinks:
            sink.scalars(step, {f"eval/{k}": v for k, v in values.items()})


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def heatmap_cells(weight: torch.Tensor, side: int = HEATMAP_MAX) -> torch.Tensor:
    """A 2-D ``weight`` block-averaged on its device to at most ``side`` x ``side`` cells, as a
    float copy on the CPU: the picture of a large matrix costs what a small one does, and later
    updates of the weight do not change it."""
    import torch

    cells = weight.detach().float()
    if cells.shape[0] > side or cells.shape[1] > side:
        shape = (min(side, cells.shape[0]), min(side, cells.shape[1]))
        cells = torch.nn.functional.adaptive_avg_pool2d(cells[None, None], shape)[0, 0]
    return cells.to("cpu", copy=True)


def _nonfinite(step: int, loss: float, output_ok: bool, norms: list[float], names: list[str]) -> NonFinite:
    bad = [n for n, v in zip(names, norms) if not math.isfinite(v)]
    if not output_ok:
        what = "the model's output has NaN/Inf values"
    elif not math.isfinite(loss):
        what = f"the loss is {loss}"
    else:
        what = f"the gradient of {bad[0]} is non-finite"
    return NonFinite(step=step, what=what, loss=loss, parameters=tuple(bad))


def _config_text(label: str, opt: torch.optim.Optimizer, steps: int, seed: int, dev: torch.device,
                 overfit: bool) -> str:
    return (
        f"model: {label}  \noptimizer: {type(opt).__name__} (lr {optim_.current_lr(opt):g})  \n"
        f"steps: {steps}  \nseed: {seed}  \ndevice: {dev}" + ("  \noverfit_batch: True" if overfit else "")
    )


def _watched_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = {f"param:{n}": p for n, p in model.named_parameters()}
    tensors.update({f"buffer:{n}": b for n, b in model.named_buffers()})
    return tensors


def _static_buffers(model: torch.nn.Module) -> tuple[str, ...]:
    """Buffers that must not change: those of a module in eval mode, or of a module whose own
    parameters are all frozen (a frozen BatchNorm left in train mode still updates its running
    statistics, a classic fine-tuning bug)."""
    out = []
    for mod_name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        frozen_module = bool(own) and not any(p.requires_grad for p in own)
        if module.training and not frozen_module:
            continue
        for buf_name, _ in module.named_buffers(recurse=False):
            out.append(f"{mod_name}.{buf_name}" if mod_name else buf_name)
    return tuple(out)


def _move_optimizer_state(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """An optimizer instance made before the model moved keeps its state on the old device."""
    import torch

    for state in opt.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


def _check_arguments(model: Any, steps: int, log_every: int, eval_every: int, grad_clip: float | None) -> None:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TrainingError(f"short_train needs a torch.nn.Module, got {type(model).__name__}")
    _check_model(model)
    for arg, value in (("steps", steps), ("log_every", log_every), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 1:
            raise TrainingError(f"{arg} must be a positive int, got {value!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise TrainingError(f"grad_clip must be > 0, got {grad_clip!r}")


def _check_model(model: torch.nn.Module) -> None:
    """A model that cannot train at all is refused before anything moves, naming why."""
    name = type(model).__name__
    cycle = module_cycle(model)
    if cycle is not None:
        raise TrainingError(f"short_train cannot train {name}: {cycle.describe(name)}. {FIX_HINT}.")
    params = list(model.named_parameters())
    if not params:
        raise TrainingError(
            f"short_train cannot train {name}: it has no parameters, so there is nothing to train. "
            "Pass the model whose layers have weights (or test this one with graph_snapshot)."
        )
    meta = [n for n, t in [*params, *model.named_buffers()] if t.is_meta]
    if meta:
        raise TrainingError(
            f"short_train cannot train {name}: {listed_names(meta)} are on the meta device, which "
            "holds shapes but no values. Materialize it first: `model.to_empty(device=...)` and "
            "initialise or load the weights (e.g. `load_state_dict(state, assign=True)`)."
        )
    if not any(p.requires_grad for _, p in params):
        raise TrainingError(
            f"short_train cannot train {name}: every parameter is frozen (requires_grad=False: "
            f"{listed_names([n for n, _ in params])}), so nothing can train. Unfreeze what should "
            "learn, e.g. `model.fc.requires_grad_(True)`."
        )

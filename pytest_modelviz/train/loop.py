"""``short_train``: a short, seeded training run that records what the checks need.

The hot path asks the host for one small tensor per step (loss, global and per-parameter gradient
norms, whether the output was finite), so training runs at the speed of a hand-written loop; the
sinks are called through ``MetricSink`` and never asked what they are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import TrainingError, add_note
from pytest_modelviz.module_tree import FIX_HINT, module_cycle
from pytest_modelviz.train import optim as optim_
from pytest_modelviz.train.data import BatchSpec, BatchStream
from pytest_modelviz.train.determinism import InitialState, RerunSetup, keep_initial
from pytest_modelviz.train.embedding import EmbeddingProbe, embedding_spec
from pytest_modelviz.train.health import HealthMonitor
from pytest_modelviz.train.interrupt import StepCheck, interrupts_kept
from pytest_modelviz.train.options import TrainOptions, build_options, utf8_encodable
from pytest_modelviz.train.result import NonFinite, ResumeSetup, TrainResult, hide_for_failures, listed_names
from pytest_modelviz.train.state import (
    Fingerprint,
    fingerprints,
    restore_training_flags,
    seeded,
    training_flags,
)
from pytest_modelviz.train.step import (
    LossSpec,
    accumulated_backward,
    autocast_context,
    grad_scaler,
    nonfinite_output,
)
from pytest_modelviz.train.summaries import heatmap_cells, image_grid, is_image_batch
from pytest_modelviz.unwrap import unwrap_model

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.sink import MetricSink



def short_train(
    model: torch.nn.Module, data: Any, options: TrainOptions | None = None, **overrides: Any
) -> TrainResult:
    """Train ``model`` for ``steps`` optimizer steps on ``data`` and return a ``TrainResult``.

    ``short_train(model, data, loss_fn=..., optimizer=..., steps=...)``: the keywords are the fields
    of ``TrainOptions``; ``short_train(model, data, options)`` takes a ``TrainOptions`` as it is,
    and keywords beside it replace its fields. See ``pytest_modelviz/docs/short_train.md``; in short:
    ``data`` is a DataLoader, any iterable of batches (cycled) or one batch; a batch is a tuple
    ``(inputs, targets, ...)``, a mapping, a dataclass or a named tuple (``inputs=``, ``target=``
    or ``batch_fn=`` say which part is which); ``optimizer`` is a factory ``lambda params: ...``,
    an optimizer class (with ``optimizer_kwargs``) or an instance; ``loss_fn(output, target)``,
    ``loss_fn(output, batch)`` with ``loss_takes_batch=True``, or none when the model's output
    carries its loss. The run is seeded with ``seed`` and the caller's RNG states are restored
    afterwards. With ``stop_on_nonfinite`` (default) training stops at the first non-finite loss,
    output or gradient, before that step's update, and with ``raise_on_nonfinite`` (default)
    ``short_train`` then fails right there with ``TrainResult.assert_finite``'s message. ``on_end``
    is called with the result before any check runs, and also when training fails part way, with
    what ran before the failure (its ``error`` says why) just before the error propagates.
    """
    __tracebackhide__ = hide_for_failures
    return train(model, data, build_options(options, overrides))


def train(
    model: torch.nn.Module, data: Any, options: TrainOptions, *, stream: BatchStream | None = None
) -> TrainResult:
    """``short_train`` with its options built; ``stream`` replaces ``data`` (a replay of another run's batches)."""
    __tracebackhide__ = hide_for_failures
    if options.world_size > 1:
        from pytest_modelviz.train.distributed import train_distributed

        return train_distributed(model, data, options)
    import torch

    from pytest_modelviz.devices import resolve_device

    _check_model(model)
    # A compiled or DataParallel model runs as given, while parameters, buffers, names and the
    # resume check are the bare model's, so results read the same as for the model itself.
    bare = unwrap_model(model)
    dev = torch.device(resolve_device(None if options.device is None else str(options.device)))
    sinks = list(options.sinks)
    autocast_ctx = autocast_context(options.autocast, dev)
    spec = BatchSpec(inputs=options.inputs, target=options.target, batch_fn=options.batch_fn)
    if stream is None:
        stream = BatchStream(data, overfit=options.overfit_batch, spec=spec)
    label = options.name or type(bare).__name__
    projector = embedding_spec(bare, options.embedding, options.embedding_every)

    with seeded(options.seed, dev):
        model.to(dev)
        opt = optim_.build_optimizer(options.optimizer, bare, dict(options.optimizer_kwargs or {}) or None)
        _move_optimizer_state(opt, dev)
        # Kept before a scheduler sets the learning rates, as the second run builds its own.
        initial = keep_initial(bare, opt, stream.source) if options.keep_initial_state else None
        sched = optim_.build_scheduler(options.scheduler, opt, options.scheduler_metric)
        named = [(n, p) for n, p in bare.named_parameters() if p.requires_grad]
        start = _Start(
            label=label, seed=options.seed, audit=optim_.audit(opt, bare),
            frozen=tuple(n for n, p in bare.named_parameters() if not p.requires_grad),
            static=_static_buffers(bare),  # decided by the modules' modes before training
            before=fingerprints(_watched_tensors(bare)),
            initial=initial,
        )
        probe = None
        if projector and sinks:
            probe = EmbeddingProbe(projector, bare, dev, autocast_ctx, options.steps)
        run = _Run(
            model=model, bare=bare, stream=stream, opt=opt, sched=sched, options=options, device=dev,
            autocast=autocast_ctx, scaler=grad_scaler(options.autocast, dev), named=named, sinks=sinks,
            probe=probe,
        )
        try:
            for sink in sinks:
                sink.text("train/config", _config_text(label, opt, options, dev))
            with interrupts_kept() as interrupted:
                run.train(interrupted)
        except BaseException as exc:
            # What ran before the failure is kept (sinks flushed, the result handed to on_end)
            # and the failure itself propagates unchanged.
            _close_after_failure(sinks, exc)
            if options.on_end is not None:
                _end_after_failure(options.on_end, run.result(start, final={}, error=exc), exc)
            raise
        for sink in sinks:
            sink.close()
        result = run.result(start, final=fingerprints(_watched_tensors(bare)))

    if options.on_end is not None:
        options.on_end(result)
    if options.raise_on_nonfinite and result.nonfinite is not None:
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
    initial: InitialState | None = None  # for assert_deterministic's second run


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

    def __init__(self, *, model: torch.nn.Module, bare: torch.nn.Module, stream: BatchStream,
                 opt: torch.optim.Optimizer, sched: Any, options: TrainOptions, device: torch.device,
                 autocast: Callable[[], Any], scaler: Any, named: list[tuple[str, torch.nn.Parameter]],
                 sinks: list[MetricSink], probe: EmbeddingProbe | None) -> None:
        self.model, self.bare, self.stream, self.opt, self.sched = model, bare, stream, opt, sched
        self.options = options
        self.device, self.autocast, self.scaler = device, autocast, scaler
        self.loss = LossSpec(options.loss_fn, options.loss_takes_batch)
        self.named, self.sinks, self.probe = named, sinks, probe
        self.params = [p for _, p in named]
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.grad_norms: list[float] = []
        self.param_norms: list[list[float]] = []
        self.times: list[float] = []
        self.eval: dict[str, list[tuple[int, float]]] = {}
        self.nonfinite: NonFinite | None = None
        self.health = HealthMonitor(model, bare, named, opt, device, options.every, options.steps,
                                    enabled=options.health)

    def train(self, interrupted: StepCheck) -> None:
        with self.health.watching():
            for step in range(self.options.steps):
                interrupted(step)
                if not self._step(step):
                    break
        interrupted(len(self.losses))
        self.health.log(self.sinks, self.param_norms)  # per-layer scalars, before the sinks close

    def result(
        self, start: _Start, *, final: dict[str, Fingerprint], error: BaseException | None = None
    ) -> TrainResult:
        """What ran, as a ``TrainResult``; with ``error``, what ran before training failed (the
        steps whose values were all recorded: a Ctrl-C can land between two appends)."""
        import torch

        done = min(len(self.losses), len(self.lrs), len(self.grad_norms), len(self.param_norms))
        return TrainResult(
            name=start.label,
            model=self.bare,
            device=str(self.device),
            seed=start.seed,
            steps=self.options.steps,
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
            health=self.health.log() if error is None else self.health.log_after(error),
            setup=ResumeSetup(
                optimizer=self.opt, scheduler=self.sched, loss=self.loss, stream=self.stream,
                device=self.device, autocast=self.autocast, scaler=self.scaler,
                grad_clip=self.options.grad_clip, seed=start.seed, accumulate=self.options.accumulate,
            ),
            reporter=self.options.on_check,
            rerun=None if start.initial is None else RerunSetup(
                model=self.model, options=self.options, stream=self.stream, initial=start.initial
            ),
        )

    def _step(self, step: int) -> bool:
        """One optimizer step over ``accumulate`` batches; False when training must stop (a
        non-finite value)."""
        import torch

        options = self.options
        start = time.perf_counter()
        batches = [self.stream.next(step) for _ in range(options.accumulate)]
        if step == 0 and self.sinks:
            self._log_images(batches[0].inputs)
            if self.probe is not None:
                self.probe.keep(batches[0])
        self.opt.zero_grad(set_to_none=True)
        with self.health.forward(step):
            loss, output, extremes = accumulated_backward(
                self.model, batches, self.loss, self.device, self.autocast, self.scaler, step
            )
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)  # the norms, the clipping and the record see true gradients
        present = [i for i, p in enumerate(self.params) if p.grad is not None]
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = list(torch._foreach_norm(grads)) if grads else []
        if options.grad_clip is not None and grads:
            # What clip_grad_norm_ does, reusing the norms already computed.
            total = torch.linalg.vector_norm(torch.stack(norms).float())
            torch._foreach_mul_(grads, (options.grad_clip / (total + 1e-6)).clamp(max=1.0))
        # The one host transfer of the step: one stack of 0-d tensors, as few device ops as can be.
        host = torch.stack([loss, *extremes, *norms]).tolist()
        loss_v, per = host[0], host[1 + len(extremes):]
        output_ok = all(math.isfinite(v) for v in host[1 : 1 + len(extremes)])
        total_v = math.hypot(*per)  # the global norm, in double precision: it cannot overflow
        row = [0.0] * len(self.params)
        for i, v in zip(present, per, strict=True):  # one norm per gradient present
            row[i] = v
        lr = optim_.current_lr(self.opt)
        self.losses.append(loss_v)
        self.lrs.append(lr)
        self.grad_norms.append(total_v)
        self.param_norms.append(row)
        for sink in self.sinks:
            sink.scalars(step, {"train/loss": loss_v, "train/lr": lr, "train/grad_norm": total_v})
        # Under float16 a non-finite gradient is the GradScaler's to handle: it skips that update
        # and lowers its scale, which is how loss scaling finds its scale.
        grads_ok = math.isfinite(total_v) or self.scaler is not None
        finite = math.isfinite(loss_v) and grads_ok and output_ok
        if not finite and self.nonfinite is None:
            bad_output = None if output_ok else nonfinite_output(output)
            names = [n for n, _ in self.named]
            self.nonfinite = _nonfinite(step, loss_v, output_ok, row, names, bad_output)
        if not finite and options.stop_on_nonfinite:
            self.times.append(time.perf_counter() - start)
            return False
        if finite and math.isfinite(total_v) and self.sinks and step % options.every == 0:
            self._log_weights(step, present, grads)  # not for a step the GradScaler skips: inf has no histogram
        self.health.before_update(step)
        stepped = self._optimizer_step()
        self.health.after_update(step)
        evaluated = None
        last = step == options.steps - 1
        if options.eval_fn is not None and ((step + 1) % options.eval_every == 0 or last):
            evaluated = self._evaluate(step)
        if stepped:
            optim_.step_scheduler(self.sched, step, loss_v, options.scheduler_metric, evaluated)
        if self.probe is not None and self.probe.due(step):
            self.probe.log(step, self.sinks)
        self.times.append(time.perf_counter() - start)
        return True

    def _optimizer_step(self) -> bool:
        """The update; False when the GradScaler skipped it (inf/NaN gradients under float16),
        so the scheduler does not step past an update that was not taken."""
        if self.scaler is None:
            self.opt.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(self.opt)
        self.scaler.update()
        return bool(self.scaler.get_scale() >= scale)

    def _log_weights(self, step: int, present: list[int], grads: list[torch.Tensor]) -> None:
        """Histograms of every parameter, and of the gradients ``grads`` of ``self.params[i]`` for
        ``i`` in ``present``."""
        from pytest_modelviz.params.histograms import device_histograms

        names = [n for n, _ in self.named]
        tensors = [p.detach() for p in self.params] + grads
        tags = [f"params/{n}" for n in names] + [f"grads/{names[i]}" for i in present]
        for tag, hist in zip(tags, device_histograms(tensors, bins=self.options.histogram_bins), strict=True):
            for sink in self.sinks:
                sink.histogram(step, tag, hist)
        matrix = next(((n, p) for n, p in self.named if p.dim() == 2), None)
        if matrix is not None:
            cells = heatmap_cells(matrix[1])
            for sink in self.sinks:
                sink.heatmap(step, f"weights/{matrix[0]}", cells)

    def _log_images(self, inputs: Any) -> None:
        if not is_image_batch(inputs):
            return
        grid = image_grid(inputs)
        for sink in self.sinks:
            sink.image_grid(0, "inputs/first_batch", grid)

    def _evaluate(self, step: int) -> dict[str, float]:
        import torch

        flags = training_flags(self.model)
        try:
            with torch.no_grad():
                metrics = self.options.eval_fn(self.model, step)  # type: ignore[misc]
        finally:
            restore_training_flags(self.model, flags)  # an eval_fn calling model.eval() must not leak
        if not isinstance(metrics, Mapping):
            raise TrainingError(
                f"step {step}: eval_fn must return a dict of metric name -> float, got {type(metrics).__name__}"
            )
        values = {}
        for key, value in metrics.items():
            try:
                values[str(key)] = float(value)
            except (TypeError, ValueError):
                raise TrainingError(
                    f"step {step}: eval_fn returned {key!r} = {value!r}, which is not a number"
                ) from None
            if not utf8_encodable(str(key)):
                raise TrainingError(
                    f"step {step}: eval_fn returned the metric name {str(key)!r}, which holds a lone surrogate "
                    "that UTF-8 cannot encode: TensorBoard, visdom and the report store metric names as UTF-8"
                )
        for key, value in values.items():
            self.eval.setdefault(key, []).append((step, value))
        for sink in self.sinks:
            sink.scalars(step, {f"eval/{k}": v for k, v in values.items()})
        return values


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _nonfinite(step: int, loss: float, output_ok: bool, norms: list[float], names: list[str],
               bad_output: str | None = None) -> NonFinite:
    bad = [n for n, v in zip(names, norms, strict=True) if not math.isfinite(v)]  # one norm per parameter
    if not output_ok:
        where = f" {bad_output!r}" if bad_output else ""
        what = f"the model's output{where} has NaN/Inf values"
    elif not math.isfinite(loss):
        what = f"the loss is {loss}"
    else:
        what = f"the gradient of {bad[0]} is non-finite"
    return NonFinite(step=step, what=what, loss=loss, parameters=tuple(bad))


def _config_text(label: str, opt: torch.optim.Optimizer, options: TrainOptions, dev: torch.device) -> str:
    lines = [
        f"model: {label}", f"optimizer: {type(opt).__name__} (lr {optim_.current_lr(opt):g})",
        f"steps: {options.steps}", f"seed: {options.seed}", f"device: {dev}",
    ]
    if options.accumulate > 1:
        lines.append(f"accumulate: {options.accumulate}")
    if options.overfit_batch:
        lines.append("overfit_batch: True")
    return "  \n".join(lines)


def _watched_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {f"param:{n}": p for n, p in model.named_parameters()}
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


def _check_model(model: Any) -> None:
    """A model that cannot train at all is refused before anything moves, naming why."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TrainingError(f"short_train needs a torch.nn.Module, got {type(model).__name__}")
    model = unwrap_model(model)
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

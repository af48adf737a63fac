"""What ``short_train`` measures for its health assertions while it trains, on the device.

Nothing here asks the host for a value during the run: the loop's one transfer per step stays
the only one, and everything below is copied to the host once, when training ends.

- Activations: at the sampled steps (every ``log_every`` steps from 0, and the last), a forward
  hook on every ReLU, ReLU6, Sigmoid, Tanh, Hardsigmoid and Hardtanh module keeps, per unit,
  whether it was in its working range (ReLU: output > 0; ReLU6 and Hardtanh: strictly between
  their limits; Sigmoid: in [0.001, 0.999]; Tanh: |output| <= 0.999) on any sample of that step's
  batches: one reduction of the output (``amax``/``amin`` over the batch), or-ed into a mask of
  one value per unit. Watching every step doubled the cost of every activation (a reduction as
  dear as the activation itself), for the same verdict: a dead unit is dead on every batch. The
  hooks are not installed on the other steps, so those run at the model's own speed. LeakyReLU,
  ELU, GELU, SiLU are not watched: their gradient is never zero, so their units cannot die.
- Parameter and update norms: at sampled steps (every ``log_every`` steps from 0, and the last)
  the parameters are copied before the optimizer step and the norm of the difference taken after
  it. A copy of the parameters every step would cost more than the goal allows; the sampled
  ratios are what the ~1e-3 heuristic is read from anyway.
- Devices: parameters and buffers at the start and the end, optimizer state at the end; the
  model's inputs and every tensor a torch function returns during the first step's forward and
  loss (a ``TorchFunctionMode``, that step only), attributed to the innermost module running.

Hooks are not installed on a ``torch.compile``d model (they would be traced into its graph) or a
``DataParallel`` one (its replicas run on other devices): then only norms and devices are taken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import add_note
from pytest_modelviz.nested import iter_tensors
from pytest_modelviz.train.diagnosis import ActivationLog, HealthLog, Misplaced

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.sink import MetricSink

_EPS = 1e-3  # Sigmoid/Tanh: outputs within this of their limits are saturated (gradient < ~1e-3)
_MAX_MISPLACED = 50  # findings kept: the first few name the fault


class HealthMonitor:
    """Collects during one run; ``log()`` returns what it found as a ``HealthLog``."""

    def __init__(self, model: torch.nn.Module, bare: torch.nn.Module, named: Sequence[tuple[str, Any]],
                 opt: torch.optim.Optimizer, device: torch.device, every: int, steps: int,
                 enabled: bool = True) -> None:
        self.enabled = enabled
        held = {id(p) for group in opt.param_groups for p in group["params"]}
        frozen = [(n, p) for n, p in bare.named_parameters() if not p.requires_grad and id(p) in held]
        self.bare, self.opt, self.device, self.every, self.steps = bare, opt, device, every, steps
        self.named = [*named, *frozen]
        self.frozen_in_optimizer = tuple(n for n, _ in frozen)
        self.not_in_optimizer = tuple(n for n, p in named if id(p) not in held)
        self.params = [p for _, p in self.named]
        self.watch = _unwatchable(model, bare)
        self.samples: list[int] = []
        self.norms: list[torch.Tensor] = []  # per sample: [param norms..., update norms...]
        watched = bare.named_modules() if enabled else ()
        self.acts = [_Activation(name, m, device) for name, m in watched if _kind(m) is not None]
        self.dead: list[torch.Tensor] = []  # per sample: inactive fraction of each watched module's window
        self.misplaced: list[Misplaced] = []
        self._before: list[torch.Tensor] | None = None
        self._handles: list[Any] = []
        self._first = 0
        self._log: HealthLog | None = None

    # ------------------------------------------------------------ during the run

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Around the whole run: the devices of parameters and buffers at the start; any hook a
        failed step left installed is removed whatever happens."""
        if self.enabled:
            self._place_static(None)
        try:
            yield
        finally:
            self._unhook()

    @contextlib.contextmanager
    def forward(self, step: int) -> Iterator[None]:
        """Around one step's forward, loss and backward: at a sampled step, the activation hooks;
        at step 0, the devices of the model's inputs and of every tensor made in forward and loss."""
        if not self.enabled or self.watch:
            yield
            return
        if self.acts and self._sampled(step):
            self._handles = [a.module.register_forward_hook(a.hook) for a in self.acts]
        try:
            if step == 0:
                with _TensorWatch(self.bare, self.device, step, self.misplaced):
                    yield
            else:
                yield
        finally:
            self._unhook()

    def _unhook(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def before_update(self, step: int) -> None:
        if not self.enabled or not self._sampled(step):
            return
        import torch

        self._before = list(torch._foreach_mul([p.detach() for p in self.params], 1.0)) if self.params else []

    def after_update(self, step: int) -> None:
        if self._before is None:
            return
        import torch

        before, self._before = self._before, None
        if self.params:
            now = [p.detach() for p in self.params]
            norms = torch._foreach_norm(before) + torch._foreach_norm(torch._foreach_sub(now, before))
            self.norms.append(torch.stack([n.float().to(self.device) for n in norms]))
        if self.acts:
            self.dead.append(torch.stack([a.close_window() for a in self.acts]))
        self.samples.append(step)

    def _sampled(self, step: int) -> bool:
        return step % self.every == 0 or step == self.steps - 1

    # ------------------------------------------------------------ at the end

    def log(self, sinks: Sequence[MetricSink] = (), grad_rows: Sequence[Sequence[float]] = ()) -> HealthLog | None:
        """What was measured, copied to the host (once); with ``sinks``, also logged to them.
        None when the measurements are off (``health=False``)."""
        if not self.enabled:
            return None
        if self._log is None:
            self._place_static(self.samples[-1] if self.samples else None, optimizer=True)
            self._log = self._build()
            if sinks:
                _to_sinks(self._log, sinks, grad_rows, [n for n, _ in self.named])
        return self._log

    def log_after(self, failure: BaseException) -> HealthLog | None:
        """``log()`` for a run that failed part way: a failure to copy (a CUDA error) is told
        alongside the original failure, never instead of it."""
        try:
            return self.log()
        except Exception as exc:  # noqa: BLE001 - attached to the failure that propagates
            add_note(failure, f"modelviz: the health measurements were lost: {type(exc).__name__}: {exc}")
            return None

    def _build(self) -> HealthLog:
        import torch

        names = [n for n, _ in self.named]
        count = len(self.samples)
        rows = torch.stack(self.norms).cpu().tolist() if self.norms else []
        dead = torch.stack(self.dead).cpu().tolist() if self.dead else []
        overall = torch.stack([a.overall() for a in self.acts]).cpu().tolist() if self.acts else []
        acts = tuple(
            ActivationLog(module=a.name, kind=a.kind, units=a.units, inactive=int(overall[i]),
                          first_step=0, last_step=self.samples[-1] if count else 0,
                          windows=tuple(row[i] for row in dead))
            for i, a in enumerate(self.acts) if a.units
        )
        n = len(names)
        return HealthLog(
            device=str(self.device), samples=tuple(self.samples[:len(rows)]),
            param_norms={name: tuple(r[i] for r in rows) for i, name in enumerate(names)},
            update_norms={name: tuple(r[n + i] for r in rows) for i, name in enumerate(names)},
            frozen_in_optimizer=self.frozen_in_optimizer, not_in_optimizer=self.not_in_optimizer,
            activations=acts,
            misplaced=tuple(self.misplaced[:_MAX_MISPLACED]),
            order=tuple(name for name, _ in self.bare.named_modules() if name),
            watched=self.watch,
        )

    def _place_static(self, step: int | None, *, optimizer: bool = False) -> None:
        seen = {(m.what, m.name) for m in self.misplaced}

        def note(what: str, name: str, t: torch.Tensor) -> None:
            if not on_device(t, self.device) and (what, name) not in seen:
                seen.add((what, name))
                self.misplaced.append(Misplaced(what, name, str(t.device), step))

        for name, p in self.bare.named_parameters():
            note("parameter", name, p)
        for name, b in self.bare.named_buffers():
            note("buffer", name, b)
        if optimizer:
            names = {id(p): n for n, p in self.bare.named_parameters()}
            for param, state in self.opt.state.items():
                for key, value in state.items():
                    # Adam's 'step' counter lives on the CPU unless capturable/fused, by design.
                    if key != "step" and hasattr(value, "device"):
                        note("optimizer state", f"{key!r} of {names.get(id(param), '?')}", value)


def on_device(t: torch.Tensor, device: torch.device) -> bool:
    """``cuda`` (no index) accepts any CUDA device, ``cuda:1`` only that one."""
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


def _unwatchable(model: Any, bare: Any) -> str:
    import sys

    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    parallel = sys.modules.get("torch.nn.parallel")
    wrapper = model
    while wrapper is not bare:
        if dynamo is not None and isinstance(wrapper, dynamo.OptimizedModule):
            return "a torch.compile'd model: hooks would be traced into its graph"
        if parallel is not None and isinstance(wrapper, parallel.DataParallel):
            return "a DataParallel model: its replicas run on other devices"
        wrapper = getattr(wrapper, "_orig_mod", None) or getattr(wrapper, "module", bare)
    return ""


def _kind(module: Any) -> str | None:
    from torch import nn

    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.Hardsigmoid, nn.Hardtanh)):
        return type(module).__name__ if type(module).__name__ in _KINDS else _base_kind(module)
    return None


_KINDS = ("ReLU", "ReLU6", "Sigmoid", "Tanh", "Hardsigmoid", "Hardtanh")


def _base_kind(module: Any) -> str:
    return next(c.__name__ for c in type(module).__mro__ if c.__name__ in _KINDS)


class _Activation:
    """One watched module's per-unit "ever active" mask: over the current window and the run."""

    def __init__(self, name: str, module: Any, device: torch.device) -> None:
        self.name, self.module, self.device = name, module, device
        self.kind = _kind(module) or ""
        self.units = 0
        self.window: torch.Tensor | None = None
        self.ever: torch.Tensor | None = None
        self.lost = False  # outputs of another unit count came along (shared module, new shapes)

    def hook(self, module: Any, args: Any, output: Any) -> None:
        import torch

        if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor) or output.dim() < 2 or self.lost:
            return  # eval_fn, the embedding probe and no_grad passes are not training
        active = _active(self.kind, self.module, output.detach())
        if self.window is None or self.window.shape != active.shape:
            if self.window is not None:
                self.lost = True  # a module called on outputs of different widths: no units to speak of
                self.units = 0
                return
            self.window = active
            self.units = active.numel()
        else:
            self.window |= active

    def close_window(self) -> torch.Tensor:
        """The inactive fraction of the window (a device scalar) and a new window."""
        import torch

        if self.window is None:
            return torch.zeros((), device=self.device)
        window, self.window = self.window, None
        self.ever = window if self.ever is None else self.ever | window
        return (~window).float().mean()

    def overall(self) -> torch.Tensor:
        """Units never active over the run (a device scalar)."""
        import torch

        ever = self.ever if self.window is None else (self.window if self.ever is None else self.ever | self.window)
        if ever is None or self.lost:
            return torch.zeros((), device=self.device)
        return (~ever).sum().float().to(self.device)


def _active(kind: str, module: Any, out: torch.Tensor) -> torch.Tensor:
    """Per unit, whether any sample of this batch was in the unit's working range (one pass)."""
    dims = _batch_dims(out)
    if kind == "ReLU":
        return out.amax(dim=dims) > 0
    if kind in ("ReLU6", "Hardtanh", "Hardsigmoid"):
        low, high = {"ReLU6": (0.0, 6.0), "Hardsigmoid": (0.0, 1.0)}.get(
            kind, (getattr(module, "min_val", -1.0), getattr(module, "max_val", 1.0)))
        inside: torch.Tensor = ((out > low) & (out < high)).any(dim=dims)
        return inside
    if kind == "Sigmoid":
        return (out - 0.5).abs().amin(dim=dims) <= 0.5 - _EPS
    return out.abs().amin(dim=dims) <= 1 - _EPS  # Tanh


def _batch_dims(out: torch.Tensor) -> tuple[int, ...]:
    """The dims reduced away: all but the unit dim, which is the last one for (batch, features) and
    (batch, sequence, features) outputs and dim 1 (channels) for convolution maps."""
    if out.dim() <= 3:
        return tuple(range(out.dim() - 1))
    return (0, *range(2, out.dim()))


class _TensorWatch:
    """For one forward and loss: every tensor a torch function returns that is not on the run's
    device, attributed to the innermost module running; and the model's inputs."""

    def __init__(self, bare: Any, device: torch.device, step: int, found: list[Misplaced]) -> None:
        self.bare, self.device, self.step, self.found = bare, device, step, found
        self.stack: list[str] = []
        self.handles: list[Any] = []
        self.mode: Any = None

    def __enter__(self) -> _TensorWatch:
        from torch.overrides import TorchFunctionMode

        watch = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                watch.seen(func, out)
                return out

        for name, module in self.bare.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._enter(name or "<root>")))
            self.handles.append(module.register_forward_hook(self._leave, always_call=True))
        self.handles.append(self.bare.register_forward_pre_hook(self._inputs, with_kwargs=True))
        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode.__exit__(*exc)
        for handle in self.handles:
            handle.remove()

    def _enter(self, name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            self.stack.append(name)

        return hook

    def _leave(self, module: Any, args: Any, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    def _inputs(self, module: Any, args: Any, kwargs: Any) -> None:
        for path, t in iter_tensors((args, kwargs)):
            if not on_device(t, self.device):
                self._note("model input", path, t)

    def seen(self, func: Any, out: Any) -> None:
        import torch

        if isinstance(out, torch.Tensor):
            # A 0-dim CPU tensor beside accelerator tensors is a scalar argument to torch, by design.
            scalar = out.dim() == 0 and out.device.type == "cpu"
            if not on_device(out, self.device) and not (scalar and self.device.type != "cpu"):
                where = f" in module {self.stack[-1]}" if self.stack else " outside the model's forward"
                self._note("tensor made in forward", f"by {_func_name(func)}{where}", out)
        elif isinstance(out, (tuple, list)):
            for item in out:
                if isinstance(item, torch.Tensor) and not on_device(item, self.device):
                    self.seen(func, item)

    def _note(self, what: str, name: str, t: torch.Tensor) -> None:
        if len(self.found) < _MAX_MISPLACED and not any(m.what == what and m.name == name for m in self.found):
            self.found.append(Misplaced(what, name, str(t.device), self.step))


def _func_name(func: Any) -> str:
    """``torch.zeros``, ``Tensor.cpu``, ``F.linear``: how the user wrote the call."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    owner, _, short = name.rpartition(".")
    if owner in ("_VariableFunctionsClass", "_VariableFunctions"):
        return f"torch.{short}"
    if owner in ("_TensorBase", "TensorBase", "Tensor"):
        return f"Tensor.{short}"
    module = getattr(func, "__module__", "") or ""
    if module.startswith("torch.nn.functional") or module == "torch._C._nn":
        return f"F.{name}"
    return f"torch.{name}" if module in ("torch", "torch.functional") else name


def _to_sinks(log: HealthLog, sinks: Sequence[MetricSink], grad_rows: Sequence[Sequence[float]],
              names: Sequence[str]) -> None:
    """Per-layer scalars at the sampled steps: ``health/grad_norm/<layer>``,
    ``health/update_ratio/<layer>``, ``health/dead_fraction/<module>``."""
    from pytest_modelviz.train.diagnosis import layer_norms, layer_update_ratios

    trainable = [n for n in names if n not in log.frozen_in_optimizer]
    ratios = layer_update_ratios(log)
    for i, step in enumerate(log.samples):
        values: dict[str, float] = {}
        if step < len(grad_rows):
            row = grad_rows[step]
            per = {n: (row[j],) for j, n in enumerate(trainable) if j < len(row)}
            for layer, (v,) in layer_norms(per).items():
                values[f"health/grad_norm/{layer}"] = v
        for layer, per_sample in ratios.items():
            if per_sample[i] is not None:
                values[f"health/update_ratio/{layer}"] = per_sample[i]  # type: ignore[assignment]
        for act in log.activations:
            if i < len(act.windows):
                values[f"health/dead_fraction/{act.module}"] = act.windows[i]
        for sink in sinks:
            sink.scalars(step, values)

"""The determinism check: a second run from the same initial state must repeat the first bit for bit.

``short_train`` keeps a CPU copy of the state training starts from (``keep_initial``): every
parameter and buffer, the optimizer's ``state_dict``, which modules were in training mode and
which parameters required gradients. That costs host memory of the model's size (plus any state
an optimizer instance already held), once per run; ``short_train(..., keep_initial_state=False)``
skips it for a model too big to copy, and ``assert_deterministic`` then says so.

``check_deterministic`` copies the trained model, puts the initial state back into the copy and
trains it again through the same loop with the same options and seed, on the same batches in the
same order (``BatchStream.replay``; a DataLoader's own ``generator=`` is put back where training
found it, as building the loader anew in a fresh run of the test would). The sinks of the first
run get a stand-in that drops what it is given, so the second run takes the same code paths
without logging twice. The two runs are then compared exactly: per step the loss, every
parameter's gradient norm, the learning rate and the eval metrics; after training the
fingerprint of every parameter and buffer.

State outside parameters and buffers (a tensor kept as a plain attribute, a ``torch.Generator``
the model owns) is copied as training left it: randomness the seed does not reach is exactly what
the check exists to find.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import TrainingError, add_note
from pytest_modelviz.train.result import hide_for_failures, listed_names
from pytest_modelviz.train.state import restore_training_flags, seeded, training_flags
from pytest_modelviz.unwrap import unwrap_model

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.train.data import BatchStream
    from pytest_modelviz.train.options import TrainOptions
    from pytest_modelviz.train.result import TrainResult

_SHOWN_STEPS = 3  # steps probed for a data order that does not replay, past the first difference


@dataclass(frozen=True)
class InitialState:
    """What training started from, on the CPU."""

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    requires_grad: dict[str, bool]
    training: dict[str, bool]  # module name -> training mode
    optimizer: dict[str, Any]  # the optimizer's state_dict, tensors on the CPU
    data_rng: tuple[tuple[torch.Generator, torch.Tensor], ...] = ()  # the data's own generators and their states


@dataclass(frozen=True)
class RerunSetup:
    """What it takes to train again from the start: the model as it was run (a wrapper too),
    the options, the batches and the initial state."""

    model: torch.nn.Module
    options: TrainOptions
    stream: BatchStream
    initial: InitialState


def keep_initial(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Any) -> InitialState:
    """A CPU copy of the state ``model`` (the bare model) and ``optimizer`` start training from, and
    the state of the generators ``data`` shuffles with."""
    import torch

    def cpu(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to("cpu", copy=True)

    def cpu_tree(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return cpu(value)
        if isinstance(value, dict):
            return {k: cpu_tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cpu_tree(v) for v in value]
        return copy.deepcopy(value)

    return InitialState(
        params={n: cpu(p) for n, p in model.named_parameters()},
        buffers={n: cpu(b) for n, b in model.named_buffers()},
        requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
        training=training_flags(model),
        optimizer=cpu_tree(optimizer.state_dict()),
        data_rng=tuple((g, g.get_state()) for g in data_generators(data)),
    )


def data_generators(data: Any) -> list[torch.Generator]:
    """The ``torch.Generator``s a DataLoader (or anything shaped like one) draws its order from:
    its own ``generator=``, its sampler's, its batch sampler's sampler's."""
    import torch

    holders = [data, getattr(data, "sampler", None), getattr(getattr(data, "batch_sampler", None), "sampler", None)]
    found: list[torch.Generator] = []
    for holder in holders:
        g = getattr(holder, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


@contextlib.contextmanager
def data_rng_at_start(initial: InitialState) -> Iterator[None]:
    """The data's generators as training found them, as a fresh run of the test would build
    them; the states they had are given back after."""
    now = [(g, g.get_state()) for g, _ in initial.data_rng]
    for g, state in initial.data_rng:
        g.set_state(state)
    try:
        yield
    finally:
        for g, state in now:
            g.set_state(state)


def check_deterministic(result: TrainResult) -> None:
    """Train again from ``result``'s initial state and fail naming the first difference."""
    __tracebackhide__ = hide_for_failures
    setup = result.rerun
    if setup is None:
        raise TrainingError(
            f"{result.name}: assert_deterministic needs the state training started from, which this run did "
            "not keep (short_train(..., keep_initial_state=False)). Leave keep_initial_state at its default "
            "(True) to check determinism."
        )
    if result.error is not None:
        raise TrainingError(
            f"{result.name}: training failed part way ({result.error}), so there is no complete run to repeat"
        )
    processes = getattr(setup.options, "world_size", 1)
    if processes > 1:
        raise TrainingError(
            f"{result.name}: assert_deterministic repeats a single-process run; this run trained on {processes} "
            "processes"
        )
    second = _train_again(result, setup)
    problems = _differences(result, second)
    if problems is None:
        return
    hint = _cause_hint(result, setup)
    raise AssertionError(f"{result.name}: two runs from the same initial state with seed {result.seed} are not "
                         f"bit-identical (first run vs second run):\n  " + "\n  ".join(problems) + f"\n{hint}")


def _train_again(result: TrainResult, setup: RerunSetup) -> TrainResult:
    from pytest_modelviz.train.loop import train

    model = _fresh_copy(result.name, setup)
    options = dataclasses.replace(
        setup.options,
        optimizer=_optimizer_factory(result, setup, model),
        optimizer_kwargs=None,
        device=result.device,
        sinks=tuple(_Dropped() for _ in setup.options.sinks),
        on_end=None,
        on_check=None,
        raise_on_nonfinite=False,
        keep_initial_state=False,
    )
    try:
        with data_rng_at_start(setup.initial):
            return train(model, None, options, stream=setup.stream.replay())
    except Exception as exc:
        add_note(exc, f"modelviz: this failure is from the second run of {result.name} (assert_deterministic)")
        raise


def _fresh_copy(name: str, setup: RerunSetup) -> torch.nn.Module:
    """The trained model copied, with the initial state put back."""
    import torch

    try:
        model = copy.deepcopy(setup.model)
    except Exception as exc:
        raise TrainingError(
            f"{name}: assert_deterministic cannot copy the model for a second run: {type(exc).__name__}: {exc}"
        ) from exc
    bare = unwrap_model(model)
    initial = setup.initial
    with torch.no_grad():
        for pname, p in bare.named_parameters():
            p.grad = None
            if pname in initial.params:  # else created during training: kept as training left it
                p.copy_(initial.params[pname])
                p.requires_grad_(initial.requires_grad[pname])
        for bname, b in bare.named_buffers():
            saved = initial.buffers.get(bname)
            if saved is None:
                continue  # created during training: the copy keeps it as training left it
            if b.shape == saved.shape and b.dtype == saved.dtype:
                b.copy_(saved)
            else:  # reassigned with another shape during training
                module_name, _, leaf = bname.rpartition(".")
                setattr(bare.get_submodule(module_name), leaf, saved.to(b.device))  # a buffer stays a buffer
    restore_training_flags(bare, initial.training)
    return model


def _optimizer_factory(result: TrainResult, setup: RerunSetup, model: torch.nn.Module) -> Any:
    """The optimizer of the second run, in the state the first one started from."""
    import torch

    from pytest_modelviz.train.optim import build_optimizer, optimizer_like

    given = setup.options.optimizer
    bare = unwrap_model(model)

    def make(_params: Any) -> torch.optim.Optimizer:
        if isinstance(given, torch.optim.Optimizer):
            # An instance is bound to the first run's parameters: rebuilt over the copy's.
            opt = optimizer_like(given, bare, result.model)
        else:
            opt = build_optimizer(given, bare, dict(setup.options.optimizer_kwargs or {}) or None)
        opt.load_state_dict(setup.initial.optimizer)
        return opt

    return make


class _Dropped:
    """A sink that takes everything and keeps nothing: the second run logs nowhere."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        return None

    def histogram(self, step: int, tag: str, hist: Any) -> None:
        return None

    def image_grid(self, step: int, tag: str, grid: Any) -> None:
        return None

    def heatmap(self, step: int, tag: str, matrix: Any) -> None:
        return None

    def embedding(self, step: int, tag: str, features: Any, labels: Sequence[int] | None, images: Any) -> None:
        return None

    def text(self, tag: str, text: str) -> None:
        return None

    def close(self) -> None:
        return None


# ---------------------------------------------------------------- comparing


def _same(a: float, b: float) -> bool:
    """Bit-identical as floats; a NaN equals a NaN."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _differences(first: TrainResult, second: TrainResult) -> list[str] | None:
    """What differs between the runs, the first difference first; None when nothing does."""
    lines = []
    steps = range(min(first.steps_run, second.steps_run))
    loss_step = next((i for i in steps if not _same(first.losses[i], second.losses[i])), None)
    if loss_step is not None:
        lines.append(f"first step whose loss differs: {loss_step} "
                     f"({first.losses[loss_step]!r} vs {second.losses[loss_step]!r})")
    grad = next(((i, n, a, b) for i in steps for n, a, b in _grad_norms(first, second, i) if not _same(a, b)), None)
    if grad is not None:
        lines.append(f"first parameter whose gradient differs: {grad[1]} at step {grad[0]} "
                     f"(norm {grad[2]!r} vs {grad[3]!r})")
    other = next(((i, w, a, b) for i in steps for w, a, b in _step_values(first, second, i) if not _same(a, b)), None)
    if other is not None and (loss_step is None or other[0] < loss_step) and (grad is None or other[0] < grad[0]):
        lines.append(f"first difference at step {other[0]}: {other[1]} {other[2]!r} vs {other[3]!r}")
    if first.steps_run != second.steps_run:
        lines.append(f"steps run: {first.steps_run} vs {second.steps_run}")
    moved = [key for key in first.final if first.final.get(key) != second.final.get(key)]
    if moved:
        names = [key.partition(":")[2] + (" (buffer)" if key.startswith("buffer:") else "") for key in moved]
        lines.append(f"first parameter that differs after training: {names[0]}; all that differ "
                     f"({len(names)}): {listed_names(names)}")
    elif lines:
        lines.append("every parameter and buffer agrees after training")
    return lines or None


def _grad_norms(first: TrainResult, second: TrainResult, step: int) -> Iterator[tuple[str, float, float]]:
    """Each parameter's gradient norm at ``step`` in both runs, in the model's order."""
    for name in first.trainable:
        a, b = first.param_grad_norms.get(name, []), second.param_grad_norms.get(name, [])
        if step < len(a) and step < len(b):
            yield name, a[step], b[step]


def _step_values(first: TrainResult, second: TrainResult, step: int) -> Iterator[tuple[str, float, float]]:
    """What both runs measured at ``step``, in the order a difference is best explained: the loss,
    each parameter's gradient norm (in the model's order), the learning rate, the eval metrics."""
    yield "loss", first.losses[step], second.losses[step]
    for name, a, b in _grad_norms(first, second, step):
        yield f"gradient norm of {name}", a, b
    yield "learning rate", first.lrs[step], second.lrs[step]
    for metric in sorted(first.eval):
        a_at = dict(first.eval[metric]).get(step)
        b_at = dict(second.eval.get(metric, [])).get(step)
        if a_at is not None:
            yield f"eval metric {metric!r}", a_at, math.nan if b_at is None else b_at


def _cause_hint(result: TrainResult, setup: RerunSetup) -> str:
    """Where randomness the seed does not reach usually comes from, most specific first."""
    data = _data_does_not_replay(setup)
    lines = []
    if data is not None:
        lines.append(data)
    lines.append(
        "Look for randomness short_train's seed does not reset: a torch.Generator the model, dataset or "
        "sampler owns (torch.rand(..., generator=g), DataLoader(generator=g)), a random module-level "
        "state reseeded nowhere, or state kept outside parameters and buffers."
    )
    if result.device.startswith("cuda"):
        lines.append(
            "On CUDA some kernels are nondeterministic (atomic adds in backward, cuDNN algorithm choice): "
            "call torch.use_deterministic_algorithms(True), set CUBLAS_WORKSPACE_CONFIG=:4096:8 and "
            "torch.backends.cudnn.benchmark = False (see torch's reproducibility notes)."
        )
    return "\n".join(lines)


def _data_does_not_replay(setup: RerunSetup) -> str | None:
    """A sentence when two passes over the data from the start give different batches."""
    import torch

    from pytest_modelviz.nested import tensors

    steps = min(setup.options.steps, _SHOWN_STEPS + 1) * setup.options.accumulate
    passes = []
    for _ in range(2):
        stream = setup.stream.replay()
        with data_rng_at_start(setup.initial), seeded(setup.options.seed, torch.device("cpu")):
            passes.append([tensors(stream.next(i // setup.options.accumulate).raw) for i in range(steps)])
    for i, (a, b) in enumerate(zip(*passes, strict=True)):
        same = len(a) == len(b) and all(
            x.shape == y.shape and x.dtype == y.dtype and torch.equal(x.cpu(), y.cpu())
            for x, y in zip(a, b, strict=True)
        )
        if not same:
            return (
                f"The data does not replay: two passes over it from the start give different batches at step "
                f"{i // setup.options.accumulate}. short_train seeds torch's, numpy's and Python's global RNGs "
                "and puts a DataLoader's own generator= back where it started; a dataset, sampler or "
                "transform drawing from an RNG of its own is reset by neither. Draw from the global RNGs, "
                "or seed that RNG in the dataset's __iter__ / the sampler's __iter__."
            )
    return None

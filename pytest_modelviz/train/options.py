"""``TrainOptions``: everything ``short_train`` is told besides the model and the data, in one
frozen object built once, checked once, and passed through unchanged.

``short_train(model, data, loss_fn=..., optimizer=..., steps=...)`` builds one from its keywords;
``short_train(model, data, TrainOptions(...))`` takes one as it is (keywords beside it replace
fields, as ``dataclasses.replace`` does). The fixture adds what it knows about the test (device,
log interval, sinks, name) with ``replace`` too, so nothing is popped, re-raised or attached later.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import InitVar, dataclass
from typing import TYPE_CHECKING, Any, Protocol, Union

from pytest_modelviz.errors import TrainingError

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.sink import MetricSink
    from pytest_modelviz.train.result import TrainResult

DEFAULT_STEPS = 20
DEFAULT_LOG_EVERY = 10

CheckReporter = Callable[[str, bool, str], None]  # (check name, passed, message)
BatchKey = Union[int, str]  # noqa: UP007 - a runtime alias: a position in a tuple batch, or a key / field name
BatchPart = Union[BatchKey, Sequence[str], None]  # noqa: UP007


@dataclass(frozen=True)
class TrainOptions:
    """How ``short_train`` trains; see ``pytest_modelviz/docs/short_train.md`` for each field.

    ``writer=`` is a shorthand for ``sinks=[TensorBoardSink(writer)]``: it is added to ``sinks``
    when the options are built, so ``sinks`` is the one field that says where metrics go.
    """

    optimizer: Any
    loss_fn: Callable[..., torch.Tensor] | None = None  # None: the model's output carries its loss
    steps: int = DEFAULT_STEPS  # optimizer steps; each takes ``accumulate`` batches
    device: str | torch.device | None = None
    seed: int = 0
    optimizer_kwargs: Mapping[str, Any] | None = None
    scheduler: Callable[[Any], Any] | None = None
    scheduler_metric: str | None = None  # ReduceLROnPlateau: an eval metric instead of the loss
    autocast: bool | torch.dtype = False
    grad_clip: float | None = None
    accumulate: int = 1  # batches (micro-batches) per optimizer step
    inputs: BatchPart = None  # which part of a batch the model takes (see ``data.BatchSpec``)
    target: BatchKey | None = None  # which part of a batch ``loss_fn`` compares the output with
    batch_fn: Callable[[Any], Any] | None = None  # raw batch -> (inputs, target)
    loss_takes_batch: bool = False  # loss_fn(output, batch) instead of loss_fn(output, target)
    eval_fn: Callable[[torch.nn.Module, int], Mapping[str, float]] | None = None
    eval_every: int = 10
    overfit_batch: bool = False
    log_every: int | None = None  # None: DEFAULT_LOG_EVERY, or the fixture's ini setting
    sinks: Sequence[MetricSink] = ()
    name: str | None = None
    stop_on_nonfinite: bool = True
    raise_on_nonfinite: bool = True
    histogram_bins: int = 64
    embedding: bool | str = False
    embedding_every: int | None = None
    on_end: Callable[[TrainResult], None] | None = None
    on_check: CheckReporter | None = None
    health: bool = True  # per-layer health measurements (train/health.py); False: none, health checks fail
    keep_initial_state: bool = True  # a CPU copy of the starting state, for assert_deterministic
    world_size: int = 1  # > 1: DistributedDataParallel in that many processes (see docs/distributed.md)
    find_unused_parameters: bool = False  # passed to DistributedDataParallel
    ddp_timeout: float = 120.0  # seconds without progress on any rank before the run counts as hung
    writer: InitVar[Any] = None

    def __post_init__(self, writer: Any) -> None:
        sinks = tuple(self.sinks)
        if writer is not None:
            from pytest_modelviz.tensorboard.sink import TensorBoardSink

            sinks += (TensorBoardSink(writer),)
        object.__setattr__(self, "sinks", sinks)
        for problem in _problems(self):
            raise TrainingError(problem)

    @property
    def every(self) -> int:
        """The histogram interval in effect."""
        return DEFAULT_LOG_EVERY if self.log_every is None else self.log_every


class ShortTrain(Protocol):
    """The type of ``short_train`` and of the ``short_train`` fixture (``short_train: ShortTrain``)."""

    def __call__(self, model: torch.nn.Module, data: Any, options: TrainOptions | None = None,
                 **overrides: Any) -> TrainResult: ...


def build_options(
    options: TrainOptions | None, overrides: Mapping[str, Any], caller: str = "short_train"
) -> TrainOptions:
    """``options`` with ``overrides`` applied, or options made from ``overrides`` alone.

    A keyword that is no option raises ``TypeError`` as a misspelt argument always has, naming the
    closest option.
    """
    names = [f.name for f in dataclasses.fields(TrainOptions)] + ["writer"]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}{hint}")
    if options is not None and not isinstance(options, TrainOptions):
        raise TypeError(f"{caller}(): options must be a TrainOptions, got {type(options).__name__}")
    if options is None:
        if "optimizer" not in overrides:
            raise TypeError(f"{caller}() missing required keyword argument: 'optimizer'")
        return TrainOptions(**overrides)
    return dataclasses.replace(options, **overrides) if overrides else options


def _problems(options: TrainOptions) -> list[str]:
    """What is wrong with the options, each naming the option and what it accepts."""
    out = []
    for arg in ("steps", "eval_every", "accumulate", "histogram_bins"):
        value = getattr(options, arg)
        if not _positive_int(value):
            out.append(f"{arg} must be a positive int, got {value!r}")
    if options.log_every is not None and not _positive_int(options.log_every):
        out.append(f"log_every must be a positive int, got {options.log_every!r}")
    if options.grad_clip is not None and not options.grad_clip > 0:
        out.append(f"grad_clip must be > 0, got {options.grad_clip!r}")
    if options.loss_fn is not None and not callable(options.loss_fn):
        got = type(options.loss_fn).__name__
        out.append(f"loss_fn must be a callable like `loss_fn(output, target)`, got {got}")
    if options.loss_takes_batch and options.loss_fn is None:
        out.append("loss_takes_batch=True needs a loss_fn(output, batch)")
    if options.batch_fn is not None and not callable(options.batch_fn):
        got = type(options.batch_fn).__name__
        out.append(f"batch_fn must be a callable `batch_fn(batch) -> (inputs, target)`, got {got}")
    if options.batch_fn is not None and (options.inputs is not None or options.target is not None):
        out.append("batch_fn replaces inputs= and target=: pass one or the other")
    if not _batch_part(options.inputs, sequence_ok=True):
        out.append(
            f"inputs must be a position, a key or field name, or a list of names, got {options.inputs!r}"
        )
    if not _batch_part(options.target, sequence_ok=False):
        out.append(f"target must be a position, a key or a field name, got {options.target!r}")
    if options.scheduler_metric is not None and options.eval_fn is None:
        out.append(
            f"scheduler_metric={options.scheduler_metric!r} names an eval metric, but there is no eval_fn "
            "to compute it: pass eval_fn=..., or leave scheduler_metric out to step with the training loss"
        )
    if not _positive_int(options.world_size):
        out.append(f"world_size must be a positive int (the number of DDP processes), got {options.world_size!r}")
    if isinstance(options.ddp_timeout, bool) or not isinstance(options.ddp_timeout, (int, float)) \
            or not options.ddp_timeout > 0:
        out.append(f"ddp_timeout must be a number of seconds > 0, got {options.ddp_timeout!r}")
    if isinstance(options.name, str) and not utf8_encodable(options.name):
        out.append(
            f"name {options.name!r} holds a lone surrogate, which UTF-8 cannot encode: TensorBoard, visdom "
            "and the report store run names as UTF-8 text"
        )
    return out


def utf8_encodable(text: str) -> bool:
    """False for text with a lone surrogate (``"\\ud800"``, as ``os.fsdecode`` makes of bad bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _batch_part(value: Any, *, sequence_ok: bool) -> bool:
    if value is None or isinstance(value, (int, str)) and not isinstance(value, bool):
        return True
    names = isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) for v in value)
    return sequence_ok and names


"""What each rank of ``short_train(world_size=N)`` runs: the plain ``short_train`` loop on a
``DistributedDataParallel`` model, with three look-only hooks that record what the checks need.

- After each backward (checked before the next forward and before the optimizer step): a
  trainable parameter that got no gradient stops the rank with a message naming it (DDP itself
  would fail at the next forward, or wait forever for its gradient).
- After each step: a fingerprint of every parameter and buffer (``state.fingerprints``), which
  the parent compares across ranks.
- Every batch the rank draws: a digest (compared across ranks for duplicate data) and, up to a
  byte budget, the batch itself (the single-process parity run trains on the ranks' batches).

The rank reports through one queue: a ``RankReport`` when training ends, a ``RankFailure`` when
it fails. Both travel as pickled bytes, so no tensor is shared through memory that dies with the
rank. Rank 0 also records what training logs to sinks (``RecordingSink``): the parent replays it
into the test's TensorBoard and visdom sinks, which cannot cross a process boundary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import TrainingError
from pytest_modelviz.nested import iter_tensors

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.sink import Histogram
    from pytest_modelviz.train.result import TrainResult

# Progress codes each rank writes into its two slots of the shared progress array.
# LAUNCHED: not yet ready to train (loading what it was sent, joining the process group, wrapping
# the model); STARTING: DDP built, training about to start.
LAUNCHED, STARTING, IN_STEP, STEP_DONE, FINISHED = -1, 0, 1, 2, 3
BATCH_BYTES_KEPT = 256 * 2**20  # per rank: beyond it the parity run is refused, saying why


@dataclass(frozen=True)
class RankJob:
    """Everything a rank is sent (pickled once in the parent, unpickled in each rank)."""

    model: Any  # an nn.Module, or a factory ``model()`` called under the run's seed
    data: Any  # batches as ``short_train`` takes them, or a factory ``data(rank, world_size)``
    options: Any  # TrainOptions with world_size=1 and no sinks or callbacks
    world_size: int
    backend: str
    device_type: str  # "cpu" or "cuda" (rank r uses cuda:r)
    store_port: int
    timeout_s: float
    record_sinks: bool  # rank 0 records sink calls for the parent to replay
    model_is_factory: bool
    data_is_factory: bool
    environ: dict[str, str] = field(default_factory=dict)  # the parent's, as when the ranks start
    parent_pid: int = 0  # the test's process: a rank never outlives it


@dataclass(frozen=True)
class SinkCall:
    method: str
    args: tuple[Any, ...]


@dataclass
class RankReport:
    """What one rank measured; the parent's checks read these."""

    rank: int
    pid: int
    result: TrainResult | None  # the rank's own result, without model, optimizer or callbacks
    watched: list[str]  # "param:<name>" / "buffer:<name>", in the order of each row of ``states``
    states: list[list[float]]  # after each optimizer step: one ``signature`` value per watched tensor
    pulls: list[tuple[int, str]]  # (step, digest) of each batch drawn; step -1: one batch for every step
    batches: list[Any] | None  # the batches drawn, in order (see ``Leaves``); None when over BATCH_BYTES_KEPT
    single_batch: bool
    final_state: dict[str, torch.Tensor] | None = None  # rank 0: the trained model's state_dict, on the CPU
    sink_calls: list[SinkCall] = field(default_factory=list)
    batch_template: Any = None  # the first batch drawn: the shape of each ``Leaves``

    def batch(self, index: int) -> Any:
        """The ``index``-th batch drawn, as the rank's data gave it."""
        import torch

        from pytest_modelviz.nested import map_tensors

        kept = (self.batches or [])[index]
        if not isinstance(kept, Leaves):
            return kept
        arrays = iter(kept.arrays)
        return map_tensors(self.batch_template, lambda _: torch.as_tensor(next(arrays)))


@dataclass(frozen=True)
class Leaves:
    """A batch shaped like the rank's first one, kept as its tensors' values only: numpy arrays
    pickle for a fraction of what as many tensors cost (each goes through ``torch.save``)."""

    arrays: list[Any]  # numpy arrays; a tensor where numpy has no such dtype (bfloat16)


@dataclass(frozen=True)
class RankFailure:
    rank: int
    pid: int
    step: int
    error_type: str
    message: str
    traceback: str
    is_assertion: bool
    report: RankReport | None  # what ran before the failure


def run_rank(rank: int, job_bytes: bytes, progress: Any, queue: Any) -> None:
    """The entry point of a rank process (``torch.multiprocessing.start_processes`` passes ``rank``)."""
    _die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group: the parent decides and stops the ranks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch = _Watch(rank, progress)
    try:
        job = _load_job(job_bytes)
        _exit_with(job.parent_pid)
        report = _train_rank(rank, job, watch)
        watch.mark(FINISHED)
        queue.put(pickle.dumps(report))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put(pickle.dumps(_failure(rank, exc, watch)))
    finally:
        _leave_group()


def _die_with_parent() -> None:
    """A parent killed outright (SIGKILL, a crash) takes its ranks with it (Linux)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return  # not glibc: the parent's own clean-up still stops the ranks
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _exit_with(parent_pid: int) -> None:
    """End this rank when the test's process ends, however it ends.

    Under the forkserver the rank's parent is the fork server, and the server lives as long as any
    process it forked holds its "alive" pipe, as each rank does: so ``PR_SET_PDEATHSIG`` alone
    would keep a rank alive after a SIGKILL of pytest. A thread waits on a pidfd of the test's
    process (Linux 5.3+), else polls it, and exits the rank when it is gone.
    """
    import threading

    if parent_pid <= 0:
        return

    def wait() -> None:
        try:
            fd = os.pidfd_open(parent_pid)
        except (AttributeError, OSError):  # no pidfd on this platform or kernel: poll
            while _alive(parent_pid):
                time.sleep(0.5)
        else:
            select.select([fd], [], [])
        os._exit(1)

    threading.Thread(target=wait, name="modelviz-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load_job(job_bytes: bytes) -> RankJob:
    try:
        job = pickle.loads(job_bytes)
    except Exception as exc:
        raise TrainingError(
            f"a rank could not load what short_train sent it: {type(exc).__name__}: {exc}. Classes and "
            "functions are pickled by reference, so each rank imports them again: define the model, "
            "the data and the functions passed to short_train in a module each rank can import (under "
            "--import-mode=importlib test files are not importable: move them to a helper module)"
        ) from exc
    if not isinstance(job, RankJob):
        raise TrainingError(f"a rank was sent {type(job).__name__}, not a RankJob")
    return job


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Watch:
    """The rank's step counter and its progress slots, which the parent reads to name a hang."""

    def __init__(self, rank: int, progress: Any) -> None:
        self.rank, self.progress, self.step = rank, progress, 0

    def mark(self, code: int) -> None:
        self.progress[2 * self.rank] = self.step
        self.progress[2 * self.rank + 1] = code


def _train_rank(rank: int, job: RankJob, watch: _Watch) -> RankReport:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from pytest_modelviz.train.loop import train
    from pytest_modelviz.train.state import seeded

    # A forked rank inherits the environment of the fork server, which may predate the test's own.
    os.environ.clear()
    os.environ.update(job.environ)
    if "OMP_NUM_THREADS" not in os.environ:
        # As torchrun does: N ranks each using every core would only fight over them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.world_size))
    device = torch.device(f"cuda:{rank}" if job.device_type == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before NCCL starts: one GPU per rank
    _join_group(rank, job)
    if job.model_is_factory:
        with seeded(job.options.seed, device):
            model = job.model()
    else:
        model = job.model
    if not isinstance(model, torch.nn.Module):
        raise TrainingError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
    model.to(device)
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=job.options.find_unused_parameters,
    )
    data = job.data(rank, job.world_size) if job.data_is_factory else job.data
    recorder = _BatchRecorder(data, watch)
    sink = RecordingSink() if job.record_sinks and rank == 0 else None
    kept: list[TrainResult] = []
    options = dataclasses.replace(
        job.options, world_size=1, device=device, sinks=() if sink is None else (sink,),
        on_end=kept.append, on_check=None,
    )
    states: list[list[float]] = []
    watched, hooks = _install_hooks(model, ddp, job, watch, states)
    watch.mark(STARTING)
    report = RankReport(rank=rank, pid=os.getpid(), result=None, watched=watched, states=states, pulls=recorder.pulls,
                        batches=recorder.batches, single_batch=recorder.single,
                        batch_template=recorder.template,
                        sink_calls=[] if sink is None else sink.calls)
    try:
        train(ddp, recorder.data, options)
    except BaseException as exc:
        report.result = _portable(kept[-1]) if kept else None
        exc.rank_report = report  # type: ignore[attr-defined]
        raise
    finally:
        for hook in hooks:
            hook.remove()
    report.result = _portable(kept[-1])
    report.batches, report.batch_template = recorder.batches, recorder.template
    if rank == 0:
        report.final_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    dist.barrier()  # no rank leaves the group while another still reduces
    return report


def _join_group(rank: int, job: RankJob) -> None:
    import datetime

    import torch.distributed as dist

    # Loopback only: gloo and NCCL would otherwise pick an interface from the host name.
    loopback = _loopback_interface()
    if loopback is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", loopback)
    # The parent notices a hang first (its timeout is the shorter); this one frees a stuck collective.
    timeout = datetime.timedelta(seconds=job.timeout_s + 30)
    store = dist.TCPStore(  # type: ignore[attr-defined]  # exported, though not in __all__
        "127.0.0.1", job.store_port, job.world_size, is_master=False, timeout=timeout
    )
    dist.init_process_group(job.backend, store=store, rank=rank, world_size=job.world_size, timeout=timeout)


def _loopback_interface() -> str | None:
    import socket

    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in ("lo", "lo0") if n in names), None)


def _install_hooks(model: torch.nn.Module, ddp: torch.nn.Module, job: RankJob, watch: _Watch,
                   states: list[list[float]]) -> tuple[list[str], list[Any]]:
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    watched: dict[str, torch.Tensor] = {f"param:{n}": p for n, p in model.named_parameters()}
    watched.update({f"buffer:{n}": b for n, b in model.named_buffers()})
    tensors = list(watched.values())
    check_unused = not job.options.find_unused_parameters
    graded = _GradWatch(trainable, watch) if check_unused else None

    def before_step(opt: Any, args: Any, kwargs: Any) -> None:
        if graded is not None:
            graded.check()

    def after_step(opt: Any, args: Any, kwargs: Any) -> None:
        states.append(signature(tensors))
        watch.mark(STEP_DONE)
        watch.step += 1

    def on_forward(module: Any, args: Any) -> None:
        if not torch.is_grad_enabled():  # an eval_fn's forward
            return
        watch.mark(IN_STEP)
        if graded is not None:
            # Before DDP's own check in the forward this hook precedes, which fails without naming
            # the parameter (a micro-batch of accumulate > 1, or a step after a check that passed).
            graded.check()
            graded.start()

    hooks = [
        register_optimizer_step_pre_hook(before_step),
        register_optimizer_step_post_hook(after_step),
        ddp.register_forward_pre_hook(on_forward),
    ]
    return list(watched), hooks + ([] if graded is None else graded.hooks)


class _GradWatch:
    """Which trainable parameters got a gradient in the last backward (a tensor hook on each):
    with accumulation, ``p.grad`` from an earlier micro-batch would hide one that got none."""

    def __init__(self, trainable: Sequence[tuple[str, Any]], watch: _Watch) -> None:
        self.names = [n for n, _ in trainable]
        self.watch = watch
        self.got: set[int] = set()
        self.pending = False  # a training forward ran whose backward has not been checked
        self.hooks = [p.register_hook(self._marker(i)) for i, (_, p) in enumerate(trainable)]

    def _marker(self, index: int) -> Callable[[Any], None]:
        def hook(grad: Any) -> None:
            self.got.add(index)

        return hook

    def start(self) -> None:
        self.got.clear()
        self.pending = True

    def check(self) -> None:
        if not self.pending:
            return
        self.pending = False
        if len(self.got) < len(self.names):
            missing = [n for i, n in enumerate(self.names) if i not in self.got]
            raise TrainingError(unused_message(missing, self.watch.rank, self.watch.step))


def signature(tensors: Sequence[torch.Tensor]) -> list[float]:
    """One number per tensor, bit for bit the same on ranks whose tensors are: the L2 norm, in one
    fused kernel for the floating tensors (the per-step cost must stay small beside a DDP step; the
    final state is compared in full by ``state.fingerprints``). Equal norms of different tensors
    (a permutation, a sign flip) would go unseen; drift between ranks does not look like that."""
    import torch

    floating = [i for i, t in enumerate(tensors) if t.is_floating_point()]
    out = [0.0] * len(tensors)
    if floating:
        norms = torch._foreach_norm([tensors[i].detach() for i in floating])
        for i, v in zip(floating, torch.stack([n.float() for n in norms]).tolist(), strict=True):
            out[i] = v
    for i, t in enumerate(tensors):
        if not t.is_floating_point():  # integer counters (num_batches_tracked), complex buffers
            out[i] = float(torch.view_as_real(t).norm()) if t.is_complex() else float(t.double().norm())
    return out


def unused_message(missing: Sequence[str], rank: int, step: int) -> str:
    from pytest_modelviz.train.result import listed_names

    what = f"parameter {missing[0]}" if len(missing) == 1 else f"parameters {listed_names(missing)}"
    verb = "got" if len(missing) == 1 else "each got"
    return (
        f"{what} {verb} no gradient on rank {rank} at step {step}: pass find_unused_parameters=True or "
        "use it (DistributedDataParallel waits for every parameter's gradient, and fails at the next "
        "step or waits forever when one never comes)"
    )


class _BatchRecorder:
    """The rank's data, with every batch it yields digested and (within a budget) kept."""

    def __init__(self, data: Any, watch: _Watch) -> None:
        from pytest_modelviz.train.data import is_single_batch

        self.watch = watch
        self.pulls: list[tuple[int, str]] = []
        self.batches: list[Any] | None = []
        self.template: Any = None
        self.bytes = 0
        self.single = is_single_batch(data)
        if self.single:
            self._keep(-1, data)
            self.data = data
        elif iter(data) is data:  # a one-shot iterator stays one: BatchStream caches it as it goes
            self.data = self._through(data)
        else:
            self.data = _Reiterable(data, self._through)

    def _through(self, batches: Iterable[Any]) -> Iterator[Any]:
        for batch in batches:
            self._keep(self.watch.step, batch)
            yield batch

    def _keep(self, step: int, batch: Any) -> None:
        digest = hashlib.blake2b(digest_size=16)
        size = 0
        arrays = []
        for path, t in iter_tensors(batch):
            host = t.detach().cpu().contiguous()
            digest.update(f"{path}:{list(host.shape)}:{host.dtype}".encode())
            digest.update(host.view(-1).view(_byte_dtype()).numpy().tobytes())
            size += host.numel() * host.element_size()
            arrays.append(_array(host))
        self.pulls.append((step, digest.hexdigest()))
        self.bytes += size
        if self.batches is not None and self.bytes > BATCH_BYTES_KEPT:
            self.batches = None
        elif self.batches is not None:
            if self.template is None:
                self.template = batch
            same_shape = len(arrays) == sum(1 for _ in iter_tensors(self.template))
            self.batches.append(Leaves(arrays) if same_shape else batch)


def _array(host: torch.Tensor) -> Any:
    try:
        return host.numpy().copy()  # a copy: a loader may reuse its buffers
    except TypeError:  # a dtype numpy lacks
        return host.clone()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


class _Reiterable:
    """A re-iterable (a DataLoader, a list) seen through ``through`` each time it is iterated."""

    def __init__(self, data: Iterable[Any], through: Callable[[Iterable[Any]], Iterator[Any]]) -> None:
        self._data, self._through = data, through

    def __iter__(self) -> Iterator[Any]:
        return self._through(self._data)


class RecordingSink:
    """A ``MetricSink`` that keeps each call, with tensors copied to the CPU, for the parent."""

    def __init__(self) -> None:
        self.calls: list[SinkCall] = []

    def _keep(self, method: str, *args: Any) -> None:
        self.calls.append(SinkCall(method, tuple(_cpu(a) for a in args)))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        self._keep("scalars", step, dict(values))

    def histogram(self, step: int, tag: str, hist: Histogram) -> None:
        self._keep("histogram", step, tag, hist)

    def image_grid(self, step: int, tag: str, grid: torch.Tensor) -> None:
        self._keep("image_grid", step, tag, grid)

    def heatmap(self, step: int, tag: str, matrix: torch.Tensor) -> None:
        self._keep("heatmap", step, tag, matrix)

    def embedding(self, step: int, tag: str, features: torch.Tensor, labels: Sequence[int] | None,
                  images: torch.Tensor | None) -> None:
        self._keep("embedding", step, tag, features, None if labels is None else list(labels), images)

    def text(self, tag: str, text: str) -> None:
        self._keep("text", tag, text)

    def close(self) -> None:
        """The parent closes the real sinks."""


def _cpu(value: Any) -> Any:
    import torch

    return value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value


def _portable(result: TrainResult) -> TrainResult:
    """The rank's result without what stays in the rank: the model, the optimizer, callbacks, and
    any optional part that holds them (those cannot be pickled, or mean nothing in another process)."""
    gone: dict[str, Any] = {"model": None, "setup": None, "reporter": None}
    for f in dataclasses.fields(result):
        if f.name in gone or f.default is not None or getattr(result, f.name) is None:
            continue
        try:
            pickle.dumps(getattr(result, f.name))
        except Exception:  # noqa: BLE001 - an optional part tied to this process: left out by design
            gone[f.name] = None
    return dataclasses.replace(result, **gone)


def _failure(rank: int, exc: BaseException, watch: _Watch) -> RankFailure:
    report = getattr(exc, "rank_report", None)
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if report is not None:
        try:
            pickle.dumps(report)
        except Exception as lost:  # noqa: BLE001 - said in the failure, which must reach the parent
            report = None
            trace += f"\n(what ran before the failure could not be sent: {type(lost).__name__}: {lost})"
    return RankFailure(
        rank=rank, pid=os.getpid(), step=watch.step, error_type=type(exc).__name__, message=str(exc),
        traceback=trace,
        is_assertion=isinstance(exc, AssertionError), report=report,
    )

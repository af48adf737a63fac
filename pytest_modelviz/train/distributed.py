"""``short_train(world_size=N)``: the same short training in N processes under
``DistributedDataParallel``, started, watched and always stopped by the test that asked for it.

- Processes: ``torch.multiprocessing.start_processes`` (forkserver, else spawn), one per rank; ``gloo`` on the CPU,
  ``nccl`` on CUDA with one GPU per rank (NCCL refuses two ranks on one GPU: the test is skipped
  and says so).
- Rendezvous: a ``TCPStore`` this process serves on 127.0.0.1, port 0, so the OS picks a free
  port and holds it from the start: no port is probed and released, so tests running at once
  (pytest-xdist) never race for one, and each run has its own store, hence its own process group.
- Supervision: the ranks report through a queue and mark their step in a shared array. The first
  failure stops every rank and is raised naming its rank; no progress for ``ddp_timeout`` seconds
  is a hang, raised with each rank's last step; the ranks are stopped in a ``finally``, so an
  error, a timeout or a Ctrl-C leaves none behind (a parent killed outright takes them along
  through ``PR_SET_PDEATHSIG``).
- Artifacts: rank 0 records what it logs; it is replayed into this test's sinks, with per-rank
  scalars where the ranks differ.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import pickle
import queue as queue_
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import DistributedError, DistributedTimeoutError, add_note
from pytest_modelviz.train.ddp_worker import (
    FINISHED,
    IN_STEP,
    LAUNCHED,
    STARTING,
    STEP_DONE,
    RankFailure,
    RankJob,
    RankReport,
    run_rank,
)
from pytest_modelviz.train.result import hide_for_failures

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.sink import MetricSink
    from pytest_modelviz.train.ddp_checks import DistributedResult
    from pytest_modelviz.train.options import TrainOptions

_POLL_S = 0.05
_GATHER_S = 1.0  # after a first failure: how long the other ranks' own failures are waited for
_STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL
# Until every rank is ready to train (a cold start imports torch, a busy machine is slow), a hang
# is called after this long at the least.
_STARTUP_S = 300.0


@dataclass(frozen=True)
class Launch:
    """Where and how the ranks run."""

    world_size: int
    backend: str
    device_type: str
    device: str  # of this process, for the single-process parity run


def train_distributed(model: Any, data: Any, options: TrainOptions) -> DistributedResult:
    """``short_train`` with ``options.world_size`` > 1 (see the module docstring)."""
    __tracebackhide__ = hide_for_failures
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("short_train(world_size=...) needs torch.distributed, which this torch build lacks")
    launch = plan_launch(options)
    model_is_factory, data_is_factory = _is_model_factory(model), _is_data_factory(data)
    rank_options = dataclasses.replace(
        options, world_size=1, sinks=(), on_end=None, on_check=None, device=None
    )
    sent_model = pickled("the model", model, launch.world_size)
    job = RankJob(
        model=model, data=data, options=rank_options, world_size=launch.world_size,
        backend=launch.backend, device_type=launch.device_type, store_port=0,
        timeout_s=options.ddp_timeout, record_sinks=bool(options.sinks),
        model_is_factory=model_is_factory, data_is_factory=data_is_factory,
    )
    reports = run_ranks(job, launch, options)
    return _result(model, reports, launch, options, sent_model, model_is_factory)


def plan_launch(options: TrainOptions) -> Launch:
    """gloo on the CPU; nccl with one GPU per rank on CUDA (else the test is skipped, saying why)."""
    import pytest
    import torch.distributed as dist

    from pytest_modelviz.devices import cuda_count, resolve_device

    device = resolve_device(None if options.device is None else str(options.device))
    n = options.world_size
    if not device.startswith("cuda"):
        if not dist.is_gloo_available():
            raise DistributedError(
                "short_train(world_size=...) on the CPU needs the gloo backend, which this torch build lacks"
            )
        return Launch(world_size=n, backend="gloo", device_type="cpu", device="cpu")
    if not dist.is_nccl_available():
        pytest.skip(f"short_train(world_size={n}) on CUDA needs NCCL, which this torch build lacks")
    if cuda_count() < n:
        pytest.skip(
            f"short_train(world_size={n}) on CUDA runs one rank per GPU (NCCL refuses two ranks on one GPU); "
            f"this machine has {cuda_count()} GPU(s)"
        )
    return Launch(world_size=n, backend="nccl", device_type="cuda", device="cuda:0")


def _is_model_factory(model: Any) -> bool:
    import torch

    return callable(model) and not isinstance(model, torch.nn.Module)


def _is_data_factory(data: Any) -> bool:
    from collections.abc import Iterable, Mapping

    return callable(data) and not isinstance(data, (Iterable, Mapping)) and not dataclasses.is_dataclass(data)


def pickled(what: str, value: Any, world_size: int) -> bytes:
    try:
        return pickle.dumps(value)
    except Exception as exc:
        raise DistributedError(_pickle_message(what, value, exc, world_size)) from exc


def pickled_job(job: RankJob) -> bytes:
    """Each rank gets the job pickled; when it cannot be, name the part at fault and the fix."""
    try:
        return pickle.dumps(job)
    except Exception as exc:
        parts: list[tuple[str, Any]] = [("the model", job.model), ("the data", job.data)]
        parts += [(f"{f.name}=", getattr(job.options, f.name)) for f in dataclasses.fields(job.options)]
        for what, value in parts:
            pickled(what, value, job.world_size)
        raise DistributedError(_pickle_message("what short_train sends", job, exc, job.world_size)) from exc


def _pickle_message(what: str, value: Any, exc: Exception, world_size: int) -> str:
    shown = what if not what.endswith("=") else f"the {what[:-1]} option"
    fixes = {
        "the model": "pass a model whose class is defined at module level, or a module-level factory "
                     "`def make_model(): return Net()`",
        "the data": "pass a DataLoader over a module-level dataset, or a module-level factory "
                    "`def make_data(rank, world_size): return DataLoader(...)`",
        "optimizer=": "pass the class with its arguments (optimizer=torch.optim.SGD, "
                      "optimizer_kwargs={'lr': 0.1}), or a module-level function or functools.partial",
    }
    fix = fixes.get(what, "define it at module level (a function or class), or use functools.partial")
    return (
        f"short_train(world_size={world_size}) sends the model, the data and the options to each rank by "
        f"pickling, and {shown} ({type(value).__name__}) cannot be pickled: {type(exc).__name__}: {exc}. "
        f"Lambdas and functions or classes defined inside a test cannot be pickled: {fix}"
    )


def run_ranks(job: RankJob, launch: Launch, options: TrainOptions) -> list[RankReport]:
    """Start the ranks, wait for their reports, and stop every one of them whatever happens."""
    __tracebackhide__ = hide_for_failures
    import datetime

    import torch.distributed as dist
    from torch.multiprocessing.spawn import start_processes

    store = dist.TCPStore(  # type: ignore[attr-defined]  # exported, though not in __all__
        "127.0.0.1", 0, None, is_master=True, wait_for_workers=False,
        timeout=datetime.timedelta(seconds=options.ddp_timeout + 30),
    )
    job_bytes = pickled_job(
        dataclasses.replace(job, store_port=store.port, environ=dict(os.environ), parent_pid=os.getpid())
    )
    method = start_method()
    ctx = multiprocessing.get_context(method)
    progress = ctx.Array("q", [0, LAUNCHED] * launch.world_size, lock=False)
    reports_q = ctx.Queue()
    procs = start_processes(  # type: ignore[no-untyped-call]
        run_rank, args=(job_bytes, progress, reports_q), nprocs=launch.world_size, join=False,
        start_method=method,
    )
    supervisor = _Supervisor(procs.processes, reports_q, progress, options.ddp_timeout)
    exit_s = 0.0
    try:
        reports = supervisor.wait()
        exit_s = _STOP_GRACE_S  # every rank reported: let each leave its process group and exit
        return reports
    except BaseException as exc:
        _keep_partial(job, supervisor.failures, options, exc)
        raise
    finally:
        stop_processes(procs.processes, exit_s)
        reports_q.close()
        reports_q.join_thread()
        del store


def _keep_partial(job: RankJob, failures: Sequence[RankFailure], options: TrainOptions,
                  failure: BaseException) -> None:
    """What rank 0 ran before the failure still reaches the sinks and ``on_end`` (the run record)."""
    from pytest_modelviz.train.loop import _close_after_failure, _end_after_failure

    report = next((f.report for f in failures if f.rank == 0 and f.report is not None), None)
    if report is not None and options.sinks:
        try:
            replay([report], options.sinks)
        except Exception as exc:  # noqa: BLE001 - attached to the failure that propagates
            add_note(failure, f"modelviz: replaying rank 0's logs failed too: {type(exc).__name__}: {exc}")
    _close_after_failure(options.sinks, failure)
    if options.on_end is not None and report is not None and report.result is not None:
        model: Any = job.model
        if job.model_is_factory:
            try:
                model = _parent_model(job.model, True, options.seed)
            except Exception as exc:  # noqa: BLE001 - attached to the failure that propagates
                model = None
                add_note(failure, f"modelviz: building the model for the run record failed: {exc!r}")
        partial = dataclasses.replace(report.result, model=model, error=f"{type(failure).__name__}: {failure}")
        _end_after_failure(options.on_end, partial, failure)


def start_method() -> str:
    """``forkserver`` where there is one: its server imports torch once, then forks each rank from a
    process with no threads, so a run costs no torch import per rank (seconds on a busy machine).
    The server lives as long as this process and exits with it. Elsewhere ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
    return "forkserver"


# DistributedDataParallel imports torch._dynamo (and with it torch.onnx) when first built: seconds
# per rank unless the server has them already. The server skips a name it cannot import.
_PRELOAD = ["torch", "torch.distributed", "torch.nn.parallel", "torch._dynamo", "torch.onnx",
            "pytest_modelviz.train.ddp_worker", "pytest_modelviz.train.loop"]


def stop_processes(processes: Sequence[Any], exit_s: float = 0.0) -> None:
    """Wait up to ``exit_s`` for the ranks to exit on their own, SIGTERM every live one, SIGKILL
    what is left after a grace period; reap them all."""
    deadline = time.monotonic() + exit_s
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join()


class _Supervisor:
    def __init__(self, processes: Sequence[Any], reports: Any, progress: Any, timeout_s: float) -> None:
        self.processes, self.queue, self.progress, self.timeout_s = processes, reports, progress, timeout_s
        self.reports: dict[int, RankReport] = {}
        self.failures: list[RankFailure] = []

    def wait(self) -> list[RankReport]:
        __tracebackhide__ = hide_for_failures
        n = len(self.processes)
        seen, changed = list(self.progress), time.monotonic()
        while len(self.reports) < n:
            self._receive(_POLL_S)
            if self.failures:
                self._gather()
                # A rank that died without a word comes first: the others' errors (a peer that
                # reset the connection) are what its death caused.
                raise self._silent_error() if self._silent() else rank_failure(self.failures, n)
            if self._lost():
                raise self._silent_error() if self._silent() else rank_failure(self.failures, n)
            now = list(self.progress)
            starting = LAUNCHED in now[1::2]
            limit = max(self.timeout_s, _STARTUP_S) if starting else self.timeout_s
            if now != seen:
                seen, changed = now, time.monotonic()
            elif time.monotonic() - changed > limit:
                what = "no rank made progress" if not starting else "the ranks did not get ready to train"
                raise DistributedTimeoutError(
                    f"short_train(world_size={n}): {what} for {limit:g} s (ddp_timeout {self.timeout_s:g} s); "
                    f"the ranks were stopped. Last steps: {last_steps(now)}"
                )
        return [self.reports[r] for r in range(n)]

    def _receive(self, timeout: float) -> bool:
        try:
            raw = self.queue.get(timeout=timeout)
        except queue_.Empty:
            return False
        message = pickle.loads(raw)
        if isinstance(message, RankReport):
            self.reports[message.rank] = message
        elif isinstance(message, RankFailure):
            self.failures.append(message)
        return True

    def _gather(self) -> None:
        """Other ranks failing at the same moment (the same fault) are told too."""
        deadline = time.monotonic() + _GATHER_S
        while time.monotonic() < deadline and any(p.is_alive() for p in self.processes):
            self._receive(_POLL_S)

    def _lost(self) -> bool:
        """A rank exited without a word (killed, crashed); its report may still be in the queue."""
        silent = [r for r, p in enumerate(self.processes)
                  if p.exitcode is not None and r not in self.reports]
        if not silent:
            return False
        deadline = time.monotonic() + _GATHER_S
        while time.monotonic() < deadline and not self.failures:
            if self._receive(_POLL_S) and all(r in self.reports for r in silent):
                return False
        return True

    def _silent(self) -> list[int]:
        """Ranks that exited with neither a report nor a failure."""
        told = set(self.reports) | {f.rank for f in self.failures}
        return [r for r, p in enumerate(self.processes) if p.exitcode is not None and r not in told]

    def _silent_error(self) -> BaseException:
        n = len(self.processes)
        rank = self._silent()[0]
        p = self.processes[rank]
        how = f"exit code {p.exitcode}" if p.exitcode >= 0 else f"signal {_signal_name(-p.exitcode)}"
        exc = DistributedError(
            f"short_train(world_size={n}): rank {rank} (pid {p.pid}) ended with {how} without a report; "
            f"last steps: {last_steps(list(self.progress))}; the other ranks were stopped"
        )
        for other in self.failures:
            add_note(exc, f"rank {other.rank} failed after it, at step {other.step}: "
                          f"{other.error_type}: {other.message}")
        return exc


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def last_steps(progress: Sequence[int]) -> str:
    """Each rank's last known place, from its two progress slots."""
    words = {
        LAUNCHED: "getting ready (loading what it was sent, joining the process group, building DDP)",
        STARTING: "ready to train, before step {step}",
        IN_STEP: "in step {step} (forward, backward or a collective)",
        STEP_DONE: "done with step {step}",
        FINISHED: "finished training",
    }
    out = []
    for rank in range(len(progress) // 2):
        step, code = progress[2 * rank], progress[2 * rank + 1]
        text = words.get(code, "in an unknown state").format(step=step)
        out.append(f"rank {rank} {text}")
    return "; ".join(out)


def rank_failure(failures: Sequence[RankFailure], world_size: int) -> BaseException:
    """The first rank's failure, as its own kind: a check's AssertionError stays one."""
    first = failures[0]
    others = [f for f in failures[1:] if f.rank != first.rank]
    text = first.message if first.error_type in ("TrainingError", "AssertionError") else (
        f"{first.error_type}: {first.message}" if first.message else first.error_type
    )
    text = text.removeprefix(f"step {first.step}: ")  # the loop's own messages name the step too
    message = f"short_train(world_size={world_size}): rank {first.rank} failed at step {first.step}: {text}"
    exc: BaseException = AssertionError(message) if first.is_assertion else DistributedError(message)
    add_note(exc, f"rank {first.rank} (pid {first.pid}) traceback:\n{first.traceback.rstrip()}")
    for other in others:
        add_note(exc, f"rank {other.rank} failed too, at step {other.step}: {other.error_type}: {other.message}")
    add_note(exc, "every rank was stopped")
    return exc


# ---------------------------------------------------------------- the result


def _result(model: Any, reports: list[RankReport], launch: Launch, options: TrainOptions,
            sent_model: bytes, model_is_factory: bool) -> DistributedResult:
    __tracebackhide__ = hide_for_failures
    from pytest_modelviz.train.ddp_checks import DistributedResult, ParitySource
    from pytest_modelviz.train.result import TrainResult

    first = reports[0].result
    if first is None or reports[0].final_state is None:
        raise DistributedError("rank 0 finished without its result")
    trained = _parent_model(model, model_is_factory, options.seed)
    trained.load_state_dict(reports[0].final_state)
    losses = mean_losses(reports)
    fields = {f.name: getattr(first, f.name) for f in dataclasses.fields(TrainResult) if f.init}
    fields.update(
        model=trained, losses=losses, device=f"{launch.device_type}, {launch.world_size} ranks ({launch.backend})",
        name=options.name or first.name, reporter=options.on_check,
    )
    result = DistributedResult(
        **fields, world_size=launch.world_size, backend=launch.backend, ranks=tuple(reports),
        parity_source=ParitySource(
            job_model=sent_model, model_is_factory=model_is_factory,
            options=dataclasses.replace(options, world_size=1, sinks=(), on_end=None, on_check=None),
            device=launch.device,
        ),
    )
    try:
        replay(reports, options.sinks)
    except BaseException as exc:
        from pytest_modelviz.train.loop import _close_after_failure

        _close_after_failure(options.sinks, exc)
        raise
    for sink in options.sinks:
        sink.close()
    if options.on_end is not None:
        options.on_end(result)
    return result


def _parent_model(model: Any, model_is_factory: bool, seed: int) -> torch.nn.Module:
    import torch

    from pytest_modelviz.train.state import seeded

    if not model_is_factory:
        return model  # type: ignore[no-any-return]
    with seeded(seed, torch.device("cpu")):
        built = model()
    return built  # type: ignore[no-any-return]


def mean_losses(reports: Sequence[RankReport]) -> list[float]:
    """The loss of the global batch at each step: the mean of the ranks' losses."""
    series = [[] if r.result is None else list(r.result.losses) for r in reports]
    steps = min(len(s) for s in series)
    return [math.fsum(s[i] for s in series) / len(series) for i in range(steps)]


_SERIES: dict[str, str] = {"train/loss": "losses", "train/lr": "lrs", "train/grad_norm": "grad_norms"}


def replay(reports: Sequence[RankReport], sinks: Sequence[MetricSink]) -> None:
    """Rank 0's sink calls into ``sinks``; a scalar that differs between the ranks becomes the mean
    over the ranks under its own tag, plus one ``<tag>/rank<r>`` per rank."""
    if not sinks:
        return
    for call in reports[0].sink_calls:
        args: tuple[Any, ...] = call.args
        if call.method == "scalars":
            args = (args[0], per_rank_scalars(reports, args[0], args[1]))
        for sink in sinks:
            getattr(sink, call.method)(*args)


def per_rank_scalars(reports: Sequence[RankReport], step: int, values: dict[str, float]) -> dict[str, float]:
    out = dict(values)
    for tag in values:
        per_rank = [_rank_value(r, tag, step) for r in reports]
        known = [v for v in per_rank if v is not None]
        if len(known) == len(per_rank) and len(set(known)) > 1:
            out[tag] = math.fsum(known) / len(known)
            out.update({f"{tag}/rank{r.rank}": v for r, v in zip(reports, known, strict=True)})
    return out


def _rank_value(report: RankReport, tag: str, step: int) -> float | None:
    result = report.result
    if result is None:
        return None
    if tag in _SERIES:
        series = getattr(result, _SERIES[tag])
        return float(series[step]) if step < len(series) else None
    if tag.startswith("eval/"):
        points = dict(result.eval.get(tag[len("eval/"):], []))
        return points.get(step)
    return None


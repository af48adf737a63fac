"""short_train(world_size=2) under real DistributedDataParallel: gloo on the CPU, two processes.

Each test plants one fault a DDP run meets (a parameter unused in some steps, BatchNorm statistics
that drift between ranks, a loader without a DistributedSampler, a rank that raises or hangs, a
Ctrl-C) and checks it is named, that nothing hangs, and that no rank outlives the test (read from
the process table).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ddp_models import (
    ExitsOnRank1,
    FailsOnRank1,
    HangsOnRank1,
    Net,
    SometimesBranch,
    WithBatchNorm,
    digits_cnn,
    make_net,
    same_data,
    sharded_data,
    sharded_digits,
)
from modelviz_testing import run_dir_of
from tensorboard.backend.event_processing import event_accumulator as ea
from torch import nn
from user_runs import folder_of, read_records

from pytest_modelviz.errors import DistributedError, DistributedTimeoutError, TrainingError
from pytest_modelviz.train.ddp_checks import PARITY_TOLERANCE, DistributedResult
from pytest_modelviz.train.loop import short_train

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not sys.platform.startswith("linux"),
    reason="needs torch.distributed with gloo, and Linux's /proc to read the process table",
)

SGD = {"optimizer": torch.optim.SGD, "optimizer_kwargs": {"lr": 0.2}}
START_DEADLINE_S = 180.0  # imports and collection on a slow, shared machine
STOP_DEADLINE_S = 60.0


def ddp_train(model: object, data: object, **kwargs: object) -> DistributedResult:
    options = {"loss_fn": nn.CrossEntropyLoss(), "steps": 6, "device": "cpu", "world_size": 2, **SGD, **kwargs}
    result = short_train(model, data, **options)  # type: ignore[arg-type]
    assert isinstance(result, DistributedResult)
    return result


def alive(pid: int) -> bool:
    """In the process table and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def pids_in(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir())


def test_a_healthy_model_passes_every_check_and_matches_one_process() -> None:
    checks: list[tuple[str, bool]] = []
    result = ddp_train(make_net, sharded_data, steps=8, on_check=lambda n, ok, msg: checks.append((n, ok)))
    assert result.world_size == 2 and result.backend == "gloo" and result.device == "cpu, 2 ranks (gloo)"
    # Each rank trained on its own shard, so their losses differ; the result's loss is their mean.
    first, second = result.rank_losses(0), result.rank_losses(1)
    assert len(first) == len(second) == 8 and first != second
    assert result.losses[0] == pytest.approx((first[0] + second[0]) / 2)
    result.assert_distributed()  # ranks agree, distinct data, parity with one process
    result.assert_loss_decreased()
    result.assert_all_params_receive_grad()
    assert ("assert_parity", True) in checks and ("assert_ranks_agree", True) in checks
    # The trained model comes back: the factory's model with rank 0's final weights.
    assert isinstance(result.model, Net)
    assert result.final["param:body.0.weight"][0] == pytest.approx(result.model.body[0].weight.double().sum().item())
    assert PARITY_TOLERANCE["gloo"] == (1e-4, 1e-6)


def test_adam_on_a_cnn_keeps_parity_without_a_false_alarm() -> None:
    """Where a gradient is near zero Adam turns a few ulps into a visible update difference in
    single elements (here in 7.weight); each parameter as a whole still agrees."""
    result = ddp_train(digits_cnn, sharded_digits, steps=20, optimizer=torch.optim.Adam,
                       optimizer_kwargs={"lr": 1e-2})
    result.assert_parity()


def test_a_parity_failure_names_the_step() -> None:
    """The parity check can fail: a tolerance tighter than float32 rounding allows does."""
    result = ddp_train(make_net, sharded_data, steps=3)
    shown = r"differs from a single-process run .*\n  (loss at step \d|final parameter)"
    with pytest.raises(AssertionError, match=shown):
        result.assert_parity(rtol=0.0, atol=0.0)


def test_a_branch_unused_in_odd_steps_is_named_instead_of_a_hang() -> None:
    with pytest.raises(DistributedError) as info:
        ddp_train(SometimesBranch(), sharded_data)
    message = str(info.value)
    assert re.search(
        r"parameters extra\.weight, extra\.bias each got no gradient on rank [01] at step 1: "
        r"pass find_unused_parameters=True or use it", message), message
    # Between two micro-batches of one step too, where DDP's own check would come first.
    with pytest.raises(DistributedError, match=r"extra\.bias each got no gradient on rank [01] at step 0: pass find"):
        ddp_train(SometimesBranch(), sharded_data, accumulate=2)
    # Told how to fix it, the same model trains.
    result = ddp_train(SometimesBranch(), sharded_data, find_unused_parameters=True)
    assert result.steps_run == 6
    result.assert_ranks_agree()


def test_batchnorm_statistics_drifting_between_ranks_are_named() -> None:
    result = ddp_train(WithBatchNorm(), sharded_data, steps=3)
    with pytest.raises(AssertionError) as info:
        result.assert_ranks_agree()
    message = str(info.value)
    assert "buffer bn.running_mean on rank 1 differs from rank 0 after step 0" in message, message
    assert "BatchNorm1d 'bn'" in message and "SyncBatchNorm" in message
    assert "param:" not in message and "parameter" not in message.split("\n", 1)[1]  # weights stay in sync


def test_a_loader_without_a_distributed_sampler_is_named() -> None:
    result = ddp_train(make_net, same_data(), steps=3)
    result.assert_ranks_agree()  # the weights agree: the fault is the data alone
    with pytest.raises(AssertionError, match=(
            r"rank 0 and rank 1 trained on the same batch at step 0 \(and at 2 more step\(s\)\).*"
            r"DistributedSampler")):
        result.assert_distinct_data()


def test_a_rank_that_raises_is_shown_and_every_rank_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(DistributedError) as info:
        ddp_train(FailsOnRank1(str(tmp_path)), sharded_data, steps=50)
    message = str(info.value)
    assert message.startswith("short_train(world_size=2): rank 1 failed at step 2: model FailsOnRank1"), message
    assert message.endswith("raised ValueError: planted failure in the forward of rank 1"), message
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "rank 1 (pid" in notes and "in forward" in notes and "every rank was stopped" in notes
    pids = pids_in(tmp_path)
    assert len(pids) == 2
    assert not [p for p in pids if alive(p)], "a rank outlived the failed run"


def test_a_rank_that_dies_without_a_word_is_named(tmp_path: Path) -> None:
    with pytest.raises(DistributedError, match=(
            r"rank 1 \(pid \d+\) ended with exit code 3 without a report; last steps: .*rank 1 in step 1.*"
            r"the other ranks were stopped")):
        ddp_train(ExitsOnRank1(str(tmp_path)), sharded_data, steps=50)
    pids = pids_in(tmp_path)
    assert len(pids) == 2 and not [p for p in pids if alive(p)]


def test_a_hung_rank_becomes_a_timeout_naming_the_ranks_steps() -> None:
    started = time.monotonic()
    with pytest.raises(DistributedTimeoutError) as info:
        ddp_train(HangsOnRank1(), sharded_data, steps=50, ddp_timeout=3)
    message = str(info.value)
    assert "no rank made progress for 3 s (ddp_timeout 3 s)" in message
    assert "rank 1 in step 2" in message, message
    assert time.monotonic() - started < 60


def test_what_cannot_be_pickled_is_named() -> None:
    with pytest.raises(DistributedError, match=(
            r"the optimizer option \(function\) cannot be pickled: .*local object.*"
            r"optimizer=torch.optim.SGD")):
        short_train(make_net, sharded_data, loss_fn=nn.CrossEntropyLoss(), world_size=2, device="cpu",
                    optimizer=lambda params: torch.optim.SGD(params, lr=0.1))

    class LocalNet(Net):
        pass

    with pytest.raises(DistributedError, match=r"the model \(LocalNet\) cannot be pickled"):
        ddp_train(LocalNet(), sharded_data)


@pytest.mark.parametrize("bad", [{"world_size": 0}, {"world_size": 1.5}, {"ddp_timeout": 0}])
def test_bad_distributed_options_are_refused(bad: dict[str, object]) -> None:
    key = next(iter(bad))
    with pytest.raises(TrainingError, match=f"{key} must be"):
        short_train(make_net(), sharded_data(0, 1), optimizer=torch.optim.SGD, optimizer_kwargs={"lr": 0.1},
                    **bad)  # type: ignore[arg-type]


LONG_DDP_RUN = """
import os
import torch
from torch import nn
from ddp_models import LeavesPid, sharded_data


def test_long_ddp_run(short_train):
    short_train(LeavesPid(os.environ["RANK_PIDS"]), sharded_data, loss_fn=nn.CrossEntropyLoss(),
                optimizer=torch.optim.SGD, optimizer_kwargs={"lr": 0.1}, steps=10**7, world_size=2)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_stopping_pytest_mid_ddp_leaves_no_rank_behind(pytester: pytest.Pytester, tmp_path: Path,
                                                       sig: signal.Signals) -> None:
    """Ctrl-C stops the run at once; pytest killed outright takes its ranks along too."""
    pytester.makepyfile(test_user=LONG_DDP_RUN)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    here = str(Path(__file__).parent)
    env = {**os.environ, "RANK_PIDS": str(pids_dir),
           "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--modelviz-device=cpu", "test_user.py"],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + START_DEADLINE_S
    while len(list(pids_dir.iterdir())) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the ranks did not start within {START_DEADLINE_S} s:\n{proc.communicate()[0]}")
        time.sleep(0.05)
    pids = pids_in(pids_dir)
    assert all(alive(p) for p in pids)
    proc.send_signal(sig)
    try:
        output = proc.communicate(timeout=STOP_DEADLINE_S)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{sig.name} did not stop the DDP run within {STOP_DEADLINE_S} s:\n{proc.communicate()[0]}")
    if sig == signal.SIGINT:
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
        assert "KeyboardInterrupt" in output
        assert not [p for p in pids if alive(p)], f"ranks {pids} outlived pytest:\n{output}"
        return
    # Nothing in pytest ran after SIGKILL: the ranks see their test's process gone and exit.
    deadline = time.monotonic() + STOP_DEADLINE_S
    while [p for p in pids if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], f"ranks {pids} outlived a killed pytest by {STOP_DEADLINE_S} s"


FIXTURE_RUN = """
import torch
from torch import nn
from ddp_models import WithBatchNorm, make_net, sharded_data


def test_healthy(short_train):
    result = short_train(make_net, sharded_data, loss_fn=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD,
                         optimizer_kwargs={"lr": 0.2}, steps=4, world_size=2)
    result.assert_distributed()


def test_batchnorm(short_train):
    result = short_train(WithBatchNorm(), sharded_data, loss_fn=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD,
                         optimizer_kwargs={"lr": 0.2}, steps=3, world_size=2, name="bn")
    result.assert_ranks_agree()
"""


def test_the_fixture_records_world_size_findings_and_per_rank_scalars(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=FIXTURE_RUN)
    pytester.syspathinsert(Path(__file__).parent)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*buffer bn.running_mean on rank 1 differs from rank 0 after step 0*"])
    run_dir = run_dir_of(pytester)

    healthy = folder_of(run_dir, "test_healthy")
    records = read_records(healthy)
    [train] = [r for r in records if r["kind"] == "train"]
    assert train["name"] == "make_net" and train["device"] == "cpu, 2 ranks (gloo)" and train["steps"] == 4
    checks = {r["name"]: r["passed"] for r in records if r["kind"] == "check"}
    assert checks == {"assert_ranks_agree": True, "assert_distinct_data": True, "assert_parity": True,
                      "assert_distributed": True}
    # Rank 0's TensorBoard run: the loss of the global batch, and each rank's own where they differ.
    acc = ea.EventAccumulator(str(healthy / "tensorboard"), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss/rank0", "train/loss/rank1"} <= tags
    assert "train/lr/rank1" not in tags  # the same on every rank: logged once
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(train["losses"])
    assert acc.Scalars("train/loss/rank0")[0].value != acc.Scalars("train/loss/rank1")[0].value
    assert "grads/body.0.weight" in acc.Tags()["histograms"]

    [failed] = [r for r in read_records(folder_of(run_dir, "test_batchnorm")) if r["kind"] == "check"]
    assert failed["name"] == "assert_ranks_agree" and not failed["passed"] and failed["train"] == "bn"
    assert "on rank 1 differs from rank 0 after step 0" in failed["message"]
    assert "report.html" in {p.name for p in run_dir.iterdir()}


@pytest.mark.gpu
def test_nccl_one_gpu_per_rank() -> None:
    """On a GPU runner the same run uses nccl, rank r on cuda:r; with fewer GPUs than ranks it is
    skipped, saying why (NCCL refuses two ranks on one GPU)."""
    result = ddp_train(make_net, sharded_data, steps=4, device="cuda")
    assert result.backend == "nccl" and result.device == "cuda, 2 ranks (nccl)"
    result.assert_distributed()


def test_too_few_gpus_skip_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_modelviz.train import distributed
    from pytest_modelviz.train.options import TrainOptions

    monkeypatch.setattr("pytest_modelviz.devices.cuda_available", lambda: True)
    monkeypatch.setattr("pytest_modelviz.devices.cuda_count", lambda: 1)
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    options = TrainOptions(optimizer=torch.optim.SGD, world_size=2, device="cuda")
    with pytest.raises(pytest.skip.Exception, match=r"one rank per GPU .*this machine has 1 GPU\(s\)"):
        distributed.plan_launch(options)


XDIST_RUN = """
import pytest
import torch
from torch import nn
from ddp_models import make_net, sharded_data


@pytest.mark.parametrize("seed", range(2))
def test_at_once(short_train, seed):
    result = short_train(make_net, sharded_data, loss_fn=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD,
                         optimizer_kwargs={"lr": 0.2}, steps=4, world_size=2, seed=seed)
    result.assert_ranks_agree()
    result.assert_distinct_data()
"""


def test_ddp_tests_under_xdist_do_not_collide(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers running a DDP test each at the same time: each run has its own store, port and
    process group."""
    pytester.makepyfile(test_user=XDIST_RUN)
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--modelviz-device=cpu",
                                           timeout=STOP_DEADLINE_S * 3)
    result.assert_outcomes(passed=2)

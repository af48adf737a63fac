"""The short_train fixture as users run it (pytester): with and without --modelviz."""

from __future__ import annotations

import json

import pytest
from modelviz_testing import run_dir_of
from tensorboard.backend.event_processing import event_accumulator as ea
from user_runs import USER_PRELUDE, folder_of, read_records

USER_TESTS = "\nimport pytest\n" + USER_PRELUDE + """

def test_trains(short_train, modelviz_device):
    result = short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=12)
    assert result.device == modelviz_device == "cpu"
    result.assert_finite()
    result.assert_loss_decreased()
    result.assert_params_updated()


class WithSpare(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = make_model()
        self.spare = nn.Linear(2, 2)  # never called

    def forward(self, x):
        return self.body(x)


def test_unused_layer(short_train):
    model = WithSpare()
    result = short_train(model, make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2, name="with-spare")
    result.assert_all_params_receive_grad()


def test_own_writer(short_train, tb_writer, modelviz_artifacts):
    tb_writer.add_scalar("mine", 1.0, 0)
    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, writer=tb_writer)
    tb_writer.flush()
    acc = __import__("tensorboard.backend.event_processing.event_accumulator", fromlist=["x"]).EventAccumulator(
        str(modelviz_artifacts.tensorboard_dir))
    acc.Reload()
    assert {"mine", "train/loss"} <= set(acc.Tags()["scalars"])
"""


def test_with_modelviz_logs_records_and_draws(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*with-spare: 2 trainable parameter(s) never received a non-zero gradient*spare.weight, spare.bias*"]
    )
    run_dir = run_dir_of(pytester)

    trains = folder_of(run_dir, "test_trains")
    records = read_records(trains)
    [train] = [r for r in records if r["kind"] == "train"]
    assert train["name"] == "Sequential" and train["model"] == "Sequential" and train["steps"] == 12
    assert len(train["losses"]) == len(train["lrs"]) == len(train["grad_norms"]) == 12
    assert train["device"] == "cpu" and train["torch_version"]
    assert (trains / train["curves"]).read_text().startswith('<?xml version="1.0" encoding="utf-8"?>\n<svg ')
    checks = [(r["name"], r["passed"]) for r in records if r["kind"] == "check"]
    assert checks == [("assert_finite", True), ("assert_loss_decreased", True), ("assert_params_updated", True)]
    acc = ea.EventAccumulator(str(trains / "tensorboard"), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(12))
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(train["losses"])
    assert [e.step for e in acc.Histograms("grads/0.weight")] == [0, 10]  # modelviz_log_every = 10
    assert any(r["kind"] == "visdom" for r in records)  # the visdom sink logged into the test's env
    visdom_log = trains / next(r for r in records if r["kind"] == "visdom")["log"]
    assert "train/loss" in visdom_log.read_text()

    spare = read_records(folder_of(run_dir, "test_unused_layer"))
    [failed] = [r for r in spare if r["kind"] == "check"]
    assert failed["passed"] is False and "spare.weight" in failed["message"] and failed["train"] == "with-spare"


def test_without_modelviz_checks_run_and_nothing_is_kept(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: with-spare: 2 trainable parameter(s) never received*"])
    assert not (pytester.path / ".modelviz").exists()


def test_log_every_ini_and_explicit_device(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmodelviz_log_every = 2\n")
    pytester.makepyfile(test_user="""
import torch
from torch import nn
from torch.nn import functional as F

def test_it(short_train, tb_writer, modelviz_artifacts):
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    short_train(nn.Linear(4, 2), (x, (x[:, 0] > 0).long()), loss_fn=F.cross_entropy,
                optimizer=lambda p: torch.optim.SGD(p, lr=0.1), steps=5, device="cpu", writer=tb_writer)
    tb_writer.flush()
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(modelviz_artifacts.tensorboard_dir), size_guidance={ea.HISTOGRAMS: 0})
    acc.Reload()
    assert [e.step for e in acc.Histograms("params/weight")] == [0, 2, 4]
""")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_embedding_lands_in_the_tests_tensorboard_projector_and_visdom_env(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="""
import torch
from torch import nn
from torch.nn import functional as F

def test_it(short_train):
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    short_train(model, (x, (x[:, 0] > 0).long()), loss_fn=F.cross_entropy,
                optimizer=lambda p: torch.optim.SGD(p, lr=0.1), steps=3, embedding=True)
""")
    pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    test_dir = folder_of(run_dir_of(pytester), "test_it")
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = text_format.Parse((test_dir / "tensorboard" / "projector_config.pbtxt").read_text(), ProjectorConfig())
    [projected] = config.embeddings
    assert projected.tensor_name == "embedding/2.input:00002"  # the input of the last layer, after the last step
    rows = (test_dir / "tensorboard" / projected.tensor_path).read_text().splitlines()
    assert len(rows) == 8 and all(len(row.split("\t")) == 6 for row in rows)
    records = read_records(test_dir)
    visdom_log = test_dir / next(r for r in records if r["kind"] == "visdom")["log"]
    assert "embedding/2.input (step 2)" in visdom_log.read_text()


NAN_TEST = USER_TESTS.split("class WithSpare")[0] + """

def test_nan_without_any_check(short_train):
    x, y = make_data()
    bad = x.clone()
    bad[0, 0] = float("nan")
    data = [(x, y), (x, y), (bad, y)]
    result = short_train(make_model(), data, loss_fn=F.cross_entropy, optimizer=sgd, steps=20, name="nan-run")
    # never reached: the NaN at step 2 fails the test there, whether or not checks are called
    result.assert_params_updated()
"""


def test_a_nan_fails_the_test_even_without_checks_and_keeps_the_record(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=NAN_TEST)
    result = pytester.runpytest("--modelviz", "-k", "nan")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*AssertionError: nan-run: training went non-finite at step 2*"])
    records = [
        json.loads(line) for p in run_dir_of(pytester).glob("*/modelviz.jsonl") for line in p.read_text().splitlines()
    ]
    [train] = [r for r in records if r["kind"] == "train"]
    assert train["steps"] == 3 and len(train["losses"]) == 3
    assert [(r["name"], r["passed"]) for r in records if r["kind"] == "check"] == [("assert_finite", False)]

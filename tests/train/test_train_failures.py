"""short_train when training fails part way or cannot start, as users run it (pytester).

A failed run keeps everything it measured up to the failure (record, TensorBoard events, curves)
and the test still fails with the original error; a model that cannot train is refused up front
with a ``TrainingError`` naming why.
"""

from __future__ import annotations

import pytest
import torch
from modelviz_testing import run_dir_of
from tensorboard.backend.event_processing import event_accumulator as ea
from torch import nn
from train_models import blobs, ce, mlp, sgd
from user_runs import USER_PRELUDE, folder_of, train_record

from pytest_modelviz import short_train
from pytest_modelviz.errors import TrainingError

FAILING_RUNS = USER_PRELUDE + """

def test_bad_batch_at_step_2(short_train):
    x, y = make_data()
    data = [(x, y), (x, y), (torch.randn(32, 5), y)]  # the third batch has one feature too many
    short_train(make_model(), data, loss_fn=F.cross_entropy, optimizer=sgd, steps=10, name="broken",
                eval_fn=lambda model, step: {"acc": 0.5 + step}, eval_every=1)


def test_eval_fn_raises_at_step_3(short_train):
    def eval_fn(model, step):
        if step == 3:
            raise ZeroDivisionError("validation set is empty")
        return {"acc": 1.0}

    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=10, name="eval-broken",
                eval_fn=eval_fn, eval_every=1)
"""


def test_a_failed_run_keeps_every_step_before_the_failure_and_still_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=FAILING_RUNS)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*TrainingError: step 2: model Sequential could not take the batch (inputs Tensor?32, 5? float32*",
        "*ZeroDivisionError: validation set is empty*",
    ])
    run_dir = run_dir_of(pytester)

    broken = folder_of(run_dir, "test_bad_batch_at_step_2")
    train = train_record(broken)
    assert train["name"] == "broken" and train["steps"] == 2
    assert len(train["losses"]) == len(train["lrs"]) == len(train["grad_norms"]) == 2
    assert train["eval"] == {"acc": [[0, 0.5], [1, 1.5]]}
    assert train["error"].startswith("TrainingError: step 2: model Sequential could not take the batch")
    assert train["note"].startswith("training stopped after 2 step(s): TrainingError: step 2:")
    assert (broken / train["curves"]).read_text().startswith('<?xml version="1.0" encoding="utf-8"?>\n<svg ')
    # The TensorBoard run was flushed: TensorBoard's own reader sees both steps and the hparams.
    acc = ea.EventAccumulator(str(broken / train["tensorboard"]), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [0, 1]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(train["losses"])
    assert [e.value for e in acc.Scalars("eval/acc")] == [0.5, 1.5]
    assert (broken / train["tensorboard"] / "hparams").is_dir()

    eval_broken = train_record(folder_of(run_dir, "test_eval_fn_raises_at_step_3"))
    assert eval_broken["steps"] == 4 and eval_broken["eval"] == {"acc": [[0, 1.0], [1, 1.0], [2, 1.0]]}
    assert eval_broken["error"] == "ZeroDivisionError: validation set is empty"


def test_without_modelviz_the_same_failure_is_raised_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=FAILING_RUNS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "bad_batch")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*TrainingError: step 2: model Sequential could not take the batch*"])
    result.stdout.no_fnmatch_line("*keeping what ran before the failure failed too*")


def test_on_end_gets_what_ran_before_the_failure() -> None:
    seen = []
    x, y = blobs(16)
    data = [(x, y), (x, y), (torch.randn(16, 5), y)]
    with pytest.raises(TrainingError, match=r"^step 2: model Sequential could not take the batch"):
        short_train(mlp(), data, loss_fn=ce, optimizer=sgd, steps=5, device="cpu", on_end=seen.append)
    [partial] = seen
    assert partial.steps_run == 2 and partial.error.startswith("TrainingError: step 2:")


def test_an_on_end_that_fails_after_a_failure_is_told_with_it_not_instead() -> None:
    def broken_on_end(result: object) -> None:
        raise OSError(28, "No space left on device")

    x, y = blobs(16)
    with pytest.raises(TrainingError, match=r"^step 1: model Sequential could not take the batch") as info:
        short_train(mlp(), [(x, y), (torch.randn(16, 5), y)], loss_fn=ce, optimizer=sgd, steps=5, device="cpu",
                    on_end=broken_on_end)
    assert info.value.__notes__ == [
        "modelviz: keeping what ran before the failure failed too: OSError: [Errno 28] No space left on device"
    ]


# ------------------------------------------------------------- models that cannot train


def _meta() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(4, 2))


def _frozen() -> nn.Module:
    return mlp().requires_grad_(False)


def _no_parameters() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.ReLU())


def _contains_itself() -> nn.Module:
    model = mlp()
    model.me = model
    return model


def _contains_its_parent() -> nn.Module:
    model = nn.Sequential()
    model.enc = nn.Sequential(nn.Linear(4, 2))
    model.enc.back = model.enc
    return model


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_meta, r"cannot train Sequential: 0\.weight, 0\.bias are on the meta device, which holds shapes but no "
                r"values\. Materialize it first: `model\.to_empty\(device=\.\.\.\)`"),
        (_frozen, r"cannot train Sequential: every parameter is frozen \(requires_grad=False: 0\.weight, 0\.bias, "
                  r"2\.weight, 2\.bias\), so nothing can train"),
        (_no_parameters, r"cannot train Sequential: it has no parameters, so there is nothing to train"),
        (_contains_itself, r"cannot train Sequential: its submodule 'me' is the model Sequential itself, so the "
                           r"module tree never ends\. Keep back-references out of the module tree"),
        (_contains_its_parent, r"cannot train Sequential: its submodule 'enc\.back' is its own parent 'enc'"),
    ],
    ids=["meta", "frozen", "no-parameters", "contains-itself", "contains-its-parent"],
)
def test_a_model_that_cannot_train_is_refused_naming_why(make, message) -> None:  # noqa: ANN001
    with pytest.raises(TrainingError, match=message):
        short_train(make(), blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu")


CANNOT_TRAIN = USER_PRELUDE + """

def test_meta(short_train):
    with torch.device("meta"):
        model = make_model()
    short_train(model, make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2)


def test_frozen(short_train):
    short_train(make_model().requires_grad_(False), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2)


def test_no_parameters(short_train):
    short_train(nn.Sequential(nn.ReLU()), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2)


def test_contains_itself(short_train):
    model = make_model()
    model.me = model
    short_train(model, make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2)
"""


def test_users_see_why_a_model_cannot_train(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=CANNOT_TRAIN)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "E*TrainingError: short_train cannot train Sequential: "
        "0.weight, 0.bias, 2.weight, 2.bias are on the meta device*",
        "E*TrainingError: short_train cannot train Sequential: every parameter is frozen*",
        "E*TrainingError: short_train cannot train Sequential: it has no parameters*",
        "E*TrainingError: short_train cannot train Sequential: its submodule 'me' is the model Sequential itself*",
    ])
    result.stdout.no_fnmatch_line("E*RecursionError*")

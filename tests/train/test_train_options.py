"""``TrainOptions``: one options object, built once by the function and the fixture alike; and how
a failed check reads in a user's terminal."""

from __future__ import annotations

import dataclasses

import pytest
from train_models import blobs, ce, mlp, sgd
from user_runs import USER_PRELUDE

from pytest_modelviz import TensorBoardSink, TrainingError, TrainOptions, TrainResult, short_train


def test_an_options_object_trains_like_the_keywords() -> None:
    options = TrainOptions(loss_fn=ce, optimizer=sgd, steps=4, device="cpu")
    by_object = short_train(mlp(), blobs(), options)
    by_keywords = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=4, device="cpu")
    assert by_object.losses == by_keywords.losses
    longer = short_train(mlp(), blobs(), options, steps=6)  # keywords beside it replace fields
    assert longer.losses[:4] == by_object.losses and longer.steps_run == 6
    assert options.steps == 4  # frozen: the caller's object is never changed


def test_options_are_checked_when_built_naming_the_option() -> None:
    with pytest.raises(TrainingError, match=r"steps must be a positive int, got 0"):
        TrainOptions(optimizer=sgd, steps=0)
    with pytest.raises(TrainingError, match=r"log_every must be a positive int, got -1"):
        dataclasses.replace(TrainOptions(optimizer=sgd), log_every=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainOptions(optimizer=sgd).steps = 3  # type: ignore[misc]


def test_a_misspelt_keyword_is_a_type_error_naming_the_closest_option() -> None:
    misspelt = r"short_train\(\) got an unexpected keyword argument 'stpes' \(did you mean 'steps'\?\)"
    with pytest.raises(TypeError, match=misspelt):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, stpes=3)
    with pytest.raises(TypeError, match=r"short_train\(\) missing required keyword argument: 'optimizer'"):
        short_train(mlp(), blobs(), loss_fn=ce, steps=3)


def test_writer_is_a_shorthand_for_a_tensorboard_sink(tmp_path) -> None:  # noqa: ANN001
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    try:
        options = TrainOptions(optimizer=sgd, writer=writer)
        assert [type(s) for s in options.sinks] == [TensorBoardSink]
        assert options.sinks[0].writer is writer
        assert dataclasses.replace(options, steps=2).sinks == options.sinks  # not added twice
    finally:
        writer.close()


def test_on_check_hears_every_check() -> None:
    heard = []
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=4, device="cpu",
                         on_check=lambda check, passed, message: heard.append((check, passed)))
    result.assert_finite()
    with pytest.raises(AssertionError):
        result.assert_loss_decreased(factor=0.0)
    assert heard == [("assert_finite", True), ("assert_loss_decreased", False)]


def test_a_result_has_a_short_repr() -> None:
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    text = repr(result)
    assert text.startswith("TrainResult(name='Sequential', device='cpu', steps_run=3 of 3, final_loss=")
    assert len(text) < 200 and isinstance(result, TrainResult)


USER_TESTS = "\nimport pytest\nfrom pytest_modelviz import ShortTrain, TrainOptions\n" + USER_PRELUDE + """

OPTIONS = TrainOptions(loss_fn=F.cross_entropy, optimizer=sgd, steps=3, name="shared")


def test_options_through_the_fixture(short_train: ShortTrain, modelviz_device):
    heard = []
    result = short_train(make_model(), make_data(), OPTIONS, on_check=lambda *a: heard.append(a[:2]))
    assert result.device == modelviz_device and result.name == "shared" and result.steps_run == 3
    result.assert_finite()
    assert heard == [("assert_finite", True)]


def test_a_failing_check(short_train):
    result = short_train(make_model(), make_data(), OPTIONS)
    result.assert_loss_decreased(factor=0.0)


def test_a_nan(short_train):
    short_train(make_model(), make_data(), OPTIONS, loss_fn=lambda out, y: out.sum() * float("nan"))
"""


def test_fixture_takes_options_and_failures_show_the_users_line_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("--modelviz", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        ">       result.assert_loss_decreased(factor=0.0)",
        "E       AssertionError: shared: the loss did not decrease*",
        ">       short_train(make_model(), make_data(), OPTIONS, loss_fn=lambda out, y: out.sum() * float(*",
        "E       AssertionError: shared: training went non-finite at step 0: the loss is nan*",
    ])
    # The plugin's own source and the whole result are not shown: the message says it all.
    assert "pytest_modelviz/train/" not in out and "pytest_modelviz/train\\" not in out
    assert "param_grad_norms" not in out and "def assert_loss_decreased" not in out

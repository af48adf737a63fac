"""Training-dynamics snapshots as a user runs them: create, pass, fail on change, accept, and
leave every other snapshot alone."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch  # noqa: F401 - imported once here, so in-process pytester runs do not re-import it

import pytest_modelviz.snapshot.training  # noqa: F401

PRELUDE = """
import pytest
import torch
from torch import nn

LR = {lr}
INIT_SEED = {init_seed}
STEPS = {steps}


def make_model():
    torch.manual_seed(INIT_SEED)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16,
                                       shuffle=True)


def accuracy(model, step):
    return {{"accuracy": 0.5 + step / 1000}}


def train(short_train, **kwargs):
    return short_train(make_model(), make_data(), loss_fn=nn.CrossEntropyLoss(),
                       optimizer=lambda p: torch.optim.SGD(p, lr=LR), steps=STEPS, eval_fn=accuracy, eval_every=5,
                       **kwargs)


def test_architecture(graph_snapshot):
    graph_snapshot(make_model(), torch.zeros(1, 4))


def test_init(graph_snapshot):
    graph_snapshot.parameters(make_model())
"""

TRAINING_TEST = """

def test_training(graph_snapshot, short_train):
    graph_snapshot.training(train(short_train){args})
"""

FOLDER = Path("__snapshots__/test_dyn")
SNAPSHOT = FOLDER / "test_training[Sequential].training"


def _project(pytester: pytest.Pytester, *, lr: float = 0.1, init_seed: int = 0, steps: int = 20,
             args: str = "", test: str = TRAINING_TEST) -> None:
    body = PRELUDE.format(lr=lr, init_seed=init_seed, steps=steps) + test.format(args=args)
    pytester.makepyfile(test_dyn=body)


def _others(pytester: pytest.Pytester) -> dict[str, bytes]:
    """The bytes of every snapshot that is not a training snapshot."""
    return {p.name: p.read_bytes() for p in (pytester.path / FOLDER).iterdir() if p.suffix != ".training"}


def test_create_pass_change_accept_and_leave_other_snapshots_alone(pytester: pytest.Pytester) -> None:
    _project(pytester)
    created = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update")
    created.assert_outcomes(passed=3)
    created.stdout.fnmatch_lines(["*3 snapshots generated*"])
    path = pytester.path / SNAPSHOT
    text = path.read_text(encoding="utf-8")
    assert text.startswith('# pytest-modelviz training dynamics v1\nmodel: "Sequential"\nseed: 0\nsteps: 20\n')
    for curve in ('curve "loss"', 'curve "grad_norm"', 'curve "lr"', 'curve "eval/accuracy"'):
        assert f"\n{curve}\n" in text
    assert "\n  19 0.1\n" in text  # the lr of the last step
    assert "\n  4 0.504\n" in text  # the eval metric at the steps it ran
    assert str(pytester.path) not in text and torch.__version__ not in text  # no path, no version
    others = _others(pytester)
    assert sorted(others) == ["test_architecture[Sequential].architecture", "test_init[Sequential].params"]
    stamp = path.stat().st_mtime_ns

    again = pytester.runpytest("-p", "no:cacheprovider")
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(["*3 snapshots passed*"])
    # Equal within tolerance: --snapshot-update neither rewrites the file nor calls it unused.
    same = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update")
    same.assert_outcomes(passed=3)
    assert "unused" not in same.stdout.str() and "deleted" not in same.stdout.str()
    assert path.stat().st_mtime_ns == stamp

    _project(pytester, lr=0.3)  # an optimizer default changed
    changed = pytester.runpytest("-p", "no:cacheprovider")
    changed.assert_outcomes(passed=2, failed=1)
    out = changed.stdout.str()
    assert "training of Sequential ('Sequential') differs from the snapshot __snapshots__/test_dyn/" in out
    assert re.search(r"loss at step 2: [0-9.]+ -> [0-9.]+, outside 1% \+ 1e-06", out)  # step 1 within 1%
    assert re.search(r"lr at step 0: 0\.1 -> 0\.3, outside 1% \+ 1e-06", out)
    assert re.search(r"lr: \.\.\. and 15 more steps outside", out)
    assert "eval/accuracy" not in out  # unchanged curves are not listed
    assert "accept it with: pytest --snapshot-update test_dyn.py::test_training" in out
    assert path.read_text(encoding="utf-8") == text  # a failing run writes nothing

    accepted = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update")
    accepted.assert_outcomes(passed=3)
    accepted.stdout.fnmatch_lines(["*1 snapshot updated*"])
    assert "\n  0 0.3\n" in path.read_text(encoding="utf-8")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    assert _others(pytester) == others


def test_changed_initialisation_fails_and_a_wide_band_per_metric_tolerates_it(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update").assert_outcomes(passed=3)
    stored = (pytester.path / SNAPSHOT).read_bytes()

    _project(pytester, init_seed=1, test=TRAINING_TEST.replace("def test_init", "def _unused"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "training")
    result.assert_outcomes(failed=1, deselected=2)
    out = result.stdout.str()
    assert re.search(r"loss at step 0: [0-9.]+ -> [0-9.]+, outside 1% \+ 1e-06", out)
    assert "grad_norm at step 0:" in out
    assert "\n  lr" not in out and "lr at step" not in out  # the learning rate did not change

    wide = ', rtol={"loss": 10.0, "grad_norm": 10.0}'
    _project(pytester, init_seed=1, args=wide)
    pytester.runpytest("-p", "no:cacheprovider", "-k", "training").assert_outcomes(passed=1, deselected=2)
    assert (pytester.path / SNAPSHOT).read_bytes() == stored


def test_bytes_are_the_same_in_a_fresh_process_with_another_hash_seed(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training").assert_outcomes(
        passed=1, deselected=2)
    path = pytester.path / SNAPSHOT
    first = path.read_bytes()
    path.unlink()
    old = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = "4321" if old != "4321" else "99"
    try:
        fresh = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snapshot-update", "-k", "training")
    finally:
        if old is None:
            del os.environ["PYTHONHASHSEED"]
        else:
            os.environ["PYTHONHASHSEED"] = old
    fresh.assert_outcomes(passed=1, deselected=2)
    assert path.read_bytes() == first
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "training").assert_outcomes(
        passed=1, deselected=2)


def test_missing_snapshot_fails_and_says_how_to_create_it(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "training")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines([
        "*training snapshot 'Sequential' of Sequential does not exist (__snapshots__/test_dyn/"
        "test_training[[]Sequential[]].training)*",
        "*Create it with: pytest --snapshot-update test_dyn.py::test_training*",
    ])
    assert not (pytester.path / SNAPSHOT).exists()


def test_changed_steps_are_named(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training").assert_outcomes(
        passed=1, deselected=2)
    _project(pytester, steps=12)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "training")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*steps: 20 -> 12 (the curves are compared at the steps both have)*"])
    assert "loss at step" not in result.stdout.str()  # the first 12 steps agree
    assert "eval/accuracy: recorded at steps" not in result.stdout.str()


def test_runs_that_did_not_finish_and_repeated_names_are_refused(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update").assert_outcomes(passed=3)
    before = {p.name: p.read_bytes() for p in (pytester.path / FOLDER).iterdir()}
    _project(pytester, test="""

def test_nonfinite(graph_snapshot, short_train):
    result = short_train(make_model(), make_data(), loss_fn=lambda out, y: out.sum() / 0.0,
                         optimizer=lambda p: torch.optim.SGD(p, lr=LR), steps=5, raise_on_nonfinite=False)
    graph_snapshot.training(result)


def test_partial(graph_snapshot, short_train):
    from pytest_modelviz.errors import TrainingError

    kept = []
    with pytest.raises(TrainingError, match="ZeroDivisionError"):
        train(short_train, on_end=kept.append, batch_fn=lambda batch: 1 / 0)
    graph_snapshot.training(kept[0])


def test_twice(graph_snapshot, short_train):
    graph_snapshot.training(train(short_train), name="run")
    graph_snapshot.training(train(short_train), name="run")
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update")
    result.assert_outcomes(passed=2, failed=3)
    out = result.stdout.str()
    assert re.search(r"Sequential: cannot snapshot the training: it ran 1 of 5 steps and went non-finite at "
                     r"step 0: the loss is -?inf", out)
    assert re.search(r"ModelvizUsageError: Sequential: training failed part way \(.*batch_fn raised "
                     r"ZeroDivisionError.*a partial run cannot be a training snapshot", out)
    assert "training snapshot name 'run' is used twice in this test (test_dyn.py::test_twice)" in out
    after = {p.name: p.read_bytes() for p in (pytester.path / FOLDER).iterdir()}
    assert sorted(after) == sorted([*before, "test_twice[run].training"])  # the first "run" was good
    # The failed run deleted nothing (test_training is gone from the module, so its snapshot is
    # unused, but a run whose tests failed cannot tell) and changed nothing.
    assert {name: data for name, data in after.items() if name in before} == before
    assert "test_training[Sequential].training" in after


def test_unreadable_snapshot_names_the_line_and_is_rewritten_by_update(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training").assert_outcomes(
        passed=1, deselected=2)
    path = pytester.path / SNAPSHOT
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("\n  3 ", "\n  3 x", 1), encoding="utf-8")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "training")
    result.assert_outcomes(failed=1, deselected=2)
    out = result.stdout.str()
    assert re.search(r"test_training\[Sequential\]\.training, line 10 \('  3 x[0-9.]+'\): "
                     r"'x[0-9.]+' is not a number", out)
    assert "To rewrite it from the run: pytest --snapshot-update test_dyn.py::test_training" in out
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training").assert_outcomes(
        passed=1, deselected=2)
    assert path.read_text(encoding="utf-8") == good


def test_unknown_metric_names_the_ones_the_run_has(pytester: pytest.Pytester) -> None:
    _project(pytester, args=', metrics=["loss", "eval/acc"]')
    result = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*no metric 'eval/acc' in this run; it has loss, grad_norm, lr, eval/accuracy*"])
    _project(pytester, args=', metrics=["loss", "eval/accuracy"]')
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training").assert_outcomes(
        passed=1, deselected=2)
    text = (pytester.path / SNAPSHOT).read_text(encoding="utf-8")
    assert 'curve "loss"' in text and 'curve "eval/accuracy"' in text and 'curve "lr"' not in text


def test_ini_tolerance_is_the_default_band_and_a_bad_value_is_named(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training").assert_outcomes(
        passed=1, deselected=2)
    _project(pytester, lr=0.11)
    pytester.runpytest("-p", "no:cacheprovider", "-k", "training").assert_outcomes(failed=1, deselected=2)
    pytester.makeini("[pytest]\nmodelviz_train_rtol = 0.5\n")
    pytester.runpytest("-p", "no:cacheprovider", "-k", "training").assert_outcomes(passed=1, deselected=2)
    pytester.makeini("[pytest]\nmodelviz_train_atol = lots\n")
    bad = pytester.runpytest("-p", "no:cacheprovider", "-k", "training")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "modelviz_train_atol" in bad.stderr.str()


PLAIN_TEST = """

from pytest_modelviz import TrainingDynamicsExtension, training_dynamics


def test_training(snapshot, short_train):
    # use_extension, not snapshot(extension_class=...): syrupy resets a per-call extension before
    # it explains a failure, so that route shows a plain text diff.
    assert training_dynamics(train(short_train)) == snapshot.use_extension(TrainingDynamicsExtension)
"""


def test_plain_syrupy_with_the_extension(pytester: pytest.Pytester) -> None:
    _project(pytester, test=PLAIN_TEST)
    pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", "-k", "training").assert_outcomes(
        passed=1, deselected=2)
    [path] = (pytester.path / FOLDER).glob("*.training")
    assert path.name == "test_training.training"
    pytester.runpytest("-p", "no:cacheprovider", "-k", "training").assert_outcomes(passed=1, deselected=2)
    _project(pytester, lr=0.3, test=PLAIN_TEST)
    failed = pytester.runpytest("-p", "no:cacheprovider", "-vv", "-k", "training")
    failed.assert_outcomes(failed=1, deselected=2)
    failed.stdout.fnmatch_lines([
        "E       *assert [[]+ received] == [[]- snapshot]",
        "E         training of Sequential ('test_training') differs from the snapshot "
        "__snapshots__/test_dyn/test_training.training:",
        "E           lr at step 0: 0.1 -> 0.3, outside 1% + 1e-06",
    ])

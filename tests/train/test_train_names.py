"""Run and metric names reach TensorBoard, visdom and the report as UTF-8: a name that cannot be
encoded is refused where it is given, naming it, instead of failing inside a sink."""

from __future__ import annotations

import pytest
from user_runs import USER_PRELUDE

USER_TESTS = "\nimport pytest\n" + USER_PRELUDE + '''

def test_run_name(short_train):
    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2,
                name="run\\udc80")


def test_metric_name(short_train):
    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2,
                eval_fn=lambda model, step: {"acc\\ud800": 1.0}, eval_every=1)


def test_plain_names_still_work(short_train):
    result = short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=2,
                         name="r\\u00e9sum\\u00e9 \\u2603", eval_fn=lambda model, step: {"acc \\u00b5": 1.0})
    assert result.eval["acc \\u00b5"] == [(1, 1.0)]
'''


def test_names_utf8_cannot_encode_are_refused_by_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_names=USER_TESTS)
    result = pytester.runpytest("--modelviz", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "TrainingError: name 'run\\udc80' holds a lone surrogate" in out
    assert "TrainingError: step 0: eval_fn returned the metric name 'acc\\ud800'" in out
    assert "UnicodeEncodeError" not in out  # refused where given, not inside a sink
    assert "modelviz: report" in out  # and the run's report is still written

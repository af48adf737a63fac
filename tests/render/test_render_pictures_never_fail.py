"""Pictures never change a test's outcome, as users run them (pytester).

User text is drawn as written (``$\\notacommand$`` in a run, metric or layer name is text, not
mathtext), values matplotlib's axes cannot span are drawn clamped, and a picture that still cannot
be made is a note in the record and a ``RenderWarning``, written in that order.
"""

from __future__ import annotations

import html
import textwrap

import pytest

from modelviz_testing import run_dir_of
from user_runs import PNG_MAGIC, USER_PRELUDE, folder_of, read_records, train_record

NOT_A_COMMAND = r"$\notacommand$"

USER_TEXT = USER_PRELUDE + r'''

class Named(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleDict({"$\\notacommand$": nn.Linear(4, 8), "$x^2$": nn.Linear(8, 2)})

    def forward(self, x):
        return self.blocks["$x^2$"](torch.relu(self.blocks["$\\notacommand$"](x)))


def test_run_name(short_train):
    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, name="$\\notacommand$ run")


def test_run_name_under_the_users_tex_settings(short_train):
    import matplotlib

    with matplotlib.rc_context({"text.usetex": True, "axes.formatter.use_mathtext": True}):
        short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, name="$\\notacommand$ tex")


def test_metric_names_and_values(short_train):
    values = [1e308, -1e308, 5e-324]
    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, eval_every=1,
                eval_fn=lambda model, step: {"$\\notacommand$": values[step], "$x$": [0.3, 0.1 + 0.2, 0.3][step]})


def test_layer_names_train(short_train):
    short_train(Named(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3)


def test_layer_names_parameters(graph_snapshot):
    graph_snapshot.parameters(Named())


def test_layer_names_graph(graph_snapshot):
    graph_snapshot(Named(), torch.zeros(1, 4))
'''


def test_mathtext_and_huge_values_are_drawn_and_every_test_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEXT)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "--snapshot-update", "-p", "no:cacheprovider",
                                "-W", "error::pytest_modelviz.errors.RenderWarning")
    result.assert_outcomes(passed=6)
    run_dir = run_dir_of(pytester)

    for test in ("test_run_name", "test_run_name_under_the_users_tex_settings", "test_metric_names_and_values",
                 "test_layer_names_train"):
        folder = folder_of(run_dir, test)
        train = train_record(folder)
        assert (folder / train["curves"]).read_bytes()[:8] == PNG_MAGIC, test
    assert train_record(folder_of(run_dir, "test_run_name"))["name"] == f"{NOT_A_COMMAND} run"
    metrics = train_record(folder_of(run_dir, "test_metric_names_and_values"))
    assert metrics["eval"][NOT_A_COMMAND] == [[0, 1e308], [1, -1e308], [2, 5e-324]]  # kept as they are
    assert metrics["note"] == f"training curves: {NOT_A_COMMAND} has values beyond ±1e+300, drawn at ±1e+300 (the record keeps them as they are)"

    params_folder = folder_of(run_dir, "test_layer_names_parameters")
    [params] = [r for r in read_records(params_folder) if r["kind"] == "params"]
    svg = (params_folder / params["plot"]).read_text()
    assert f"<!-- blocks.{NOT_A_COMMAND}.weight [8, 4] -->" in svg  # the title, drawn as written

    [graph] = [r for r in read_records(folder_of(run_dir, "test_layer_names_graph")) if r["kind"] == "graph_render"]
    assert graph["errors"] == []


CANNOT_DRAW = USER_PRELUDE + """
import matplotlib


def test_curves_cannot_be_drawn(short_train):
    with matplotlib.rc_context({"savefig.dpi": 1_000_000}):  # no PNG can be that large
        result = short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, name="big")
    result.assert_loss_decreased()
"""


def test_a_picture_that_cannot_be_made_is_a_note_and_a_warning_not_a_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=CANNOT_DRAW)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([
        "*RenderWarning: modelviz: a picture of the training run 'big' could not be made: training curves: "
        "ValueError: Image size of * pixels is too large*",
    ])
    folder = folder_of(run_dir_of(pytester), "test_curves_cannot_be_drawn")
    train = train_record(folder)
    assert train["curves"] is None and train["steps"] == 3
    assert train["note"].startswith("training curves: ValueError: Image size of ")
    assert [(r["name"], r["passed"]) for r in read_records(folder) if r["kind"] == "check"] == [
        ("assert_loss_decreased", True)
    ]


def test_with_warnings_as_errors_the_record_is_written_before_the_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=CANNOT_DRAW)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(failed=1)  # the user asked for warnings to fail tests
    result.stdout.fnmatch_lines(["*RenderWarning: modelviz: a picture of the training run 'big' could not be made*"])
    train = train_record(folder_of(run_dir_of(pytester), "test_curves_cannot_be_drawn"))
    assert train["steps"] == 3 and train["note"].startswith("training curves: ValueError: Image size of ")


# The project's conftest makes matplotlib uninstalled for the run, before anything imports it.
WITHOUT_MATPLOTLIB = textwrap.dedent("""
    import importlib.abc
    import sys

    assert "matplotlib" not in sys.modules


    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "matplotlib":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, NotInstalled())
""")

TRAINS = USER_PRELUDE + """

def test_trains(short_train):
    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, name="plain")
"""


def test_without_matplotlib_the_report_says_why_there_are_no_curves(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WITHOUT_MATPLOTLIB)
    pytester.makepyfile(test_user=TRAINS)
    result = pytester.runpytest_subprocess("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    run_dir = run_dir_of(pytester)
    train = train_record(folder_of(run_dir, "test_trains"))
    assert train["curves"] is None
    assert train["note"].startswith("training curves: skipped: matplotlib is not installed")
    assert "pip install 'pytest-modelviz[render]'" in train["note"]
    assert html.escape(train["note"]) in (run_dir / "report.html").read_text()  # the report says why

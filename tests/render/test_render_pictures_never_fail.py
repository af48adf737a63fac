"""Pictures never change a test's outcome, as users run them (pytester).

User text is drawn as written (``$\\notacommand$`` in a run, metric or layer name is text, not
mathtext; in SVG, escaped), values near the float limits are drawn, and a picture that still cannot
be made in the test is a note in the record and a ``RenderWarning``, written in that order. One
drawn at the end of the run that cannot be made is named, with the reason, in the report and after
the summary.
"""

from __future__ import annotations

import html
import textwrap
import xml.etree.ElementTree as ET

import pytest
from modelviz_testing import run_dir_of
from user_runs import USER_PRELUDE, folder_of, read_records, train_record

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
        short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3,
                    name="$\\notacommand$ tex")


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
        svg = ET.parse(folder / train["curves"]).getroot()  # well-formed: no name broke out of its element
        assert svg.tag == "{http://www.w3.org/2000/svg}svg", test
    assert train_record(folder_of(run_dir, "test_run_name"))["name"] == f"{NOT_A_COMMAND} run"
    folder = folder_of(run_dir, "test_metric_names_and_values")
    metrics = train_record(folder)
    assert metrics["eval"][NOT_A_COMMAND] == [[0, 1e308], [1, -1e308], [2, 5e-324]]  # kept as they are
    assert metrics["note"] == ""
    texts = [t.text for t in ET.parse(folder / metrics["curves"]).getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert NOT_A_COMMAND in texts and "$x$" in texts and "1e+308" in texts and "-1e+308" in texts

    params_folder = folder_of(run_dir, "test_layer_names_parameters")
    [params] = [r for r in read_records(params_folder) if r["kind"] == "params"]
    svg = ET.parse(params_folder / params["plot"]).getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert f"blocks.{NOT_A_COMMAND}.weight [8, 4]" in texts  # the panel's title, drawn as written

    [graph] = [r for r in read_records(folder_of(run_dir, "test_layer_names_graph")) if r["kind"] == "graph_render"]
    assert graph["errors"] == []


CANNOT_DRAW = USER_PRELUDE + """

def test_curves_cannot_be_drawn(short_train):
    result = short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, name="big")
    result.assert_loss_decreased()
"""

# The curves are drawn by a few lines of pure Python that no user input makes fail, so the failure
# is injected: what is tested is what happens to the record and the test when a picture fails.
BROKEN_CURVES = """
import importlib

import pytest


@pytest.fixture(autouse=True)
def curves_that_fail(monkeypatch):
    def curves_svg(result):
        raise ValueError("Image size of 1000000x1000000 pixels is too large")

    # The module as the plugin imports it (sys.modules), not a package attribute an earlier
    # in-process run may have left pointing at an older copy.
    monkeypatch.setattr(importlib.import_module("pytest_modelviz.train.curves"), "curves_svg", curves_svg)
"""


def test_a_picture_that_cannot_be_made_is_a_note_and_a_warning_not_a_failure(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(BROKEN_CURVES)
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
    pytester.makeconftest(BROKEN_CURVES)
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


def test_parameters(graph_snapshot):
    graph_snapshot.parameters(make_model())
"""


def test_without_matplotlib_the_curves_and_histograms_are_still_drawn(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WITHOUT_MATPLOTLIB)
    pytester.makepyfile(test_user=TRAINS)
    result = pytester.runpytest_subprocess("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider",
                                           "--snapshot-update", "-W", "error::pytest_modelviz.errors.RenderWarning")
    result.assert_outcomes(passed=2)
    assert "could not be drawn" not in result.stdout.str()
    run_dir = run_dir_of(pytester)
    params_folder = folder_of(run_dir, "test_parameters")
    [params] = [r for r in read_records(params_folder) if r["kind"] == "params"]
    assert ET.parse(params_folder / params["plot"]).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    folder = folder_of(run_dir, "test_trains")
    train = train_record(folder)
    assert train["curves"] == "train-plain/curves.svg" and train["note"] == ""
    assert ET.parse(folder / train["curves"]).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert 'src="' + folder.name + '/train-plain/curves.svg"' in (run_dir / "report.html").read_text()


BROKEN_DOT = """#!/bin/sh
echo "Error: out of crayons" >&2
exit 3
"""

GRAPH_AND_HISTOGRAMS = USER_PRELUDE + """

def test_graph(graph_snapshot):
    graph_snapshot(make_model(), torch.zeros(1, 4))


def test_histograms(graph_snapshot, modelviz_artifacts):
    graph_snapshot.parameters(make_model())
    # A folder where the picture is to be written: matplotlib cannot write it when the run ends.
    [folder] = modelviz_artifacts.root.glob("params-*")
    (folder / "histograms.svg").mkdir()
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_pictures_drawn_at_the_end_of_the_run_that_fail_are_named_and_cost_no_test(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]) -> None:
    broken = pytester.path / "bin" / "dot"
    broken.parent.mkdir()
    broken.write_text(BROKEN_DOT, encoding="utf-8")
    broken.chmod(0o755)
    monkeypatch.setenv("MODELVIZ_GRAPHVIZ", str(broken))
    pytester.makepyfile(test_user=GRAPH_AND_HISTOGRAMS)
    result = pytester.runpytest_subprocess("--modelviz", "--snapshot-update", "-p", "no:cacheprovider",
                                           "-W", "error::pytest_modelviz.errors.RenderWarning", *workers)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "modelviz: 6 picture(s) could not be drawn (the report says which and why; test results are not affected): *",
    ])
    assert "out of crayons" in result.stdout.str() and "IsADirectoryError" in result.stdout.str()
    run_dir = run_dir_of(pytester)
    page = (run_dir / "report.html").read_text()
    graph = folder_of(run_dir, "test_graph")
    [render] = [r for r in read_records(graph) if r["kind"] == "graph_render"]
    assert render["errors"] == [] and (graph / render["files"]["hiddenlayer_dot"]).is_file()
    for key in ("svg", "png", "hiddenlayer_svg", "hiddenlayer_png", "torchviz_svg"):
        assert not (graph / render["files"][key]).exists()
        message = f"picture {render['files'][key]} (graph 'Sequential') could not be drawn: dot failed to draw"
        assert html.escape(message) in page, key
    assert "out of crayons" in page
    assert html.escape("picture params-Sequential/histograms.svg (parameter histograms 'Sequential') "
                       "could not be drawn: IsADirectoryError") in page

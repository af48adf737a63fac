"""The public API: every name in ``pytest_modelviz.__all__`` resolves lazily, the fixtures are
typed with public names, and the guides import only public names."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest_modelviz
from pytest_modelviz import plugin

DOCS = [*sorted((Path(pytest_modelviz.__file__).parent / "docs").glob("*.md")),
        Path(pytest_modelviz.__file__).parent.parent / "README.md"]
IMPORT = re.compile(r"^\s*(?:from\s+(pytest_modelviz[\w.]*)\s+import|import\s+(pytest_modelviz[\w.]*))", re.M)


def test_every_public_name_resolves_and_import_stays_light() -> None:
    code = (
        "import sys, pytest_modelviz as m\n"
        "assert 'torch' not in sys.modules, 'importing pytest_modelviz imported torch'\n"
        "missing = [n for n in m.__all__ if getattr(m, n, None) is None]\n"
        "assert not missing, missing\n"
        "print(len(m.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(pytest_modelviz.__all__) >= 20
    wanted = {"short_train", "ShortTrain", "TrainOptions", "TrainResult", "GraphSnapshot", "MetricSink",
              "VisdomSink", "TensorBoardSink", "TrainingError", "VisdomFallbackWarning"}
    assert wanted <= set(pytest_modelviz.__all__)


def test_fixtures_are_typed_with_public_names() -> None:
    wanted = {"short_train": "ShortTrain", "graph_snapshot": "GraphSnapshot"}
    # The fixtures' annotations name types imported only for type checkers: resolve them from the
    # public names.
    names = {**vars(plugin), **{n: getattr(pytest_modelviz, n) for n in wanted.values()}}
    for fixture, type_name in wanted.items():
        source = (pytest_modelviz.__file__, fixture)
        annotation = _fixture_return(getattr(plugin, fixture), names)
        assert annotation is getattr(pytest_modelviz, type_name), source


def _fixture_return(fixture: object, names: dict) -> object:
    function = getattr(fixture, "__wrapped__", None)
    if function is None:  # pytest 8.4+ wraps a fixture function in a FixtureFunctionDefinition
        function = fixture._get_wrapped_function()  # type: ignore[attr-defined]
    return typing.get_type_hints(function, globalns=names)["return"]


def test_the_guides_import_only_public_names() -> None:
    private = []
    for doc in DOCS:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S):
            for match in IMPORT.finditer(block):
                module = match.group(1) or match.group(2)
                if module != "pytest_modelviz":
                    private.append(f"{doc.name}: {match.group(0).strip()}")
    assert not private, "guides import non-public modules:\n" + "\n".join(private)


def test_the_snapshot_package_and_the_top_level_share_one_lazy_helper() -> None:
    import pytest_modelviz.snapshot as snapshot

    assert snapshot.__getattr__.__module__ == pytest_modelviz.__getattr__.__module__ == "pytest_modelviz.lazy"
    assert snapshot.ArchitectureExtension is pytest_modelviz.ArchitectureExtension


def test_all_lists_exactly_the_lazy_names() -> None:
    import pytest_modelviz.snapshot as snapshot

    assert pytest_modelviz.__all__ == ["__version__", *pytest_modelviz._PUBLIC]
    assert snapshot.__all__ == list(snapshot._LAZY)

"""Drawing DOT with the real graphviz-pure binary; finding (or not finding) a renderer."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from render_graphs import AWKWARD_NAMES, awkward_graph, conv_net_graph

from pytest_modelviz.errors import RenderError
from pytest_modelviz.render import graphviz as gv
from pytest_modelviz.render.dot import to_dot

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def pure() -> gv.Renderer:
    """graphviz-pure as installed next to this Python (the one renderer every test machine has)."""
    path = Path(sys.executable).parent / gv.PURE_NAME
    assert path.is_file(), f"graphviz-pure is a test dependency; expected it at {path}"
    return gv.Renderer(path, "graphviz-pure")


def _svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG_NS}svg"
    return ["".join(el.itertext()) for el in root.iter(f"{SVG_NS}text")]


def test_svg_and_png_of_a_captured_graph(tmp_path: Path, pure: gv.Renderer) -> None:
    dot = tmp_path / "graph.dot"
    dot.write_text(to_dot(conv_net_graph()), encoding="utf-8")
    svg = gv.render_file(pure, dot, "svg")
    png = gv.render_file(pure, dot, "png")
    assert svg == tmp_path / "graph.svg" and png == tmp_path / "graph.png"
    texts = _svg_texts(svg)
    for expected in ("features.0", "Conv2d", "[2, 8, 8, 8] float32", "224 params", "features", "output"):
        assert expected in texts
    assert png.read_bytes().startswith(gv.PNG_MAGIC)
    assert png.stat().st_size > 1000


def test_awkward_names_come_out_as_text_in_well_formed_svg(tmp_path: Path, pure: gv.Renderer) -> None:
    dot = tmp_path / "odd.dot"
    dot.write_text(to_dot(awkward_graph()), encoding="utf-8")
    texts = _svg_texts(gv.render_file(pure, dot, "svg"))
    for name in AWKWARD_NAMES:
        for line in name.split("\n"):
            assert line in texts, (line, texts)


def test_renderer_failure_names_the_file_and_the_message(tmp_path: Path, pure: gv.Renderer) -> None:
    dot = tmp_path / "broken.dot"
    dot.write_text("digraph { a -> ; }", encoding="utf-8")
    with pytest.raises(RenderError, match=r"graphviz-pure failed to draw broken\.dot as svg \(exit \d+\)"):
        gv.render_file(pure, dot, "svg")
    assert not (tmp_path / "broken.svg").exists()


def test_output_checks_reject_what_is_not_svg_or_png(tmp_path: Path) -> None:
    bad_svg = tmp_path / "a.svg"
    bad_svg.write_text("<svg><g></svg>", encoding="utf-8")
    with pytest.raises(RenderError, match="not well-formed XML"):
        gv.check_output(bad_svg, "svg")
    html = tmp_path / "b.svg"
    html.write_text("<html/>", encoding="utf-8")
    with pytest.raises(RenderError, match="not <svg>"):
        gv.check_output(html, "svg")
    bad_png = tmp_path / "c.png"
    bad_png.write_bytes(b"GIF89a....")
    with pytest.raises(RenderError, match="PNG signature"):
        gv.check_output(bad_png, "png")
    with pytest.raises(RenderError, match="wrote no png"):
        gv.check_output(tmp_path / "missing.png", "png")


def _fake_dot(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "dot"
    fake.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    fake.chmod(0o755)
    return fake


def test_dot_on_path_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gv.ENV_VAR, raising=False)
    fake = _fake_dot(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(fake.parent))
    assert gv.find_renderer() == gv.Renderer(fake, "dot")


def test_graphviz_pure_next_to_python_when_path_has_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         pure: gv.Renderer) -> None:
    monkeypatch.delenv(gv.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gv.find_renderer() == pure


def test_env_var_overrides_and_empty_turns_rendering_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         pure: gv.Renderer) -> None:
    fake = _fake_dot(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.setenv(gv.ENV_VAR, str(pure.path))
    assert gv.find_renderer() == pure
    monkeypatch.setenv(gv.ENV_VAR, "")
    assert gv.find_renderer() is None
    assert gv.missing_renderer_note() == gv.DISABLED_NOTE
    monkeypatch.delenv(gv.ENV_VAR)
    assert "pip install graphviz-pure" in gv.missing_renderer_note()
    assert "apt-get install graphviz" in gv.missing_renderer_note()


def test_env_var_naming_nothing_runnable_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gv.ENV_VAR, str(tmp_path / "no-such-dot"))
    with pytest.raises(RenderError, match=f"{gv.ENV_VAR}=.*no-such-dot.*not an executable"):
        gv.find_renderer()

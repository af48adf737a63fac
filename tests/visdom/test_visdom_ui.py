"""visdom's web UI served offline: the files ``pytest_modelviz.visdom.assets`` installs from npm,
a real server answering for every one of them, and a real Chromium drawing the windows."""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from visdom_testing import *  # noqa: F403 - the fixtures
from visdom_testing import open_in_chromium, require_ui

from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.errors import SinkError
from pytest_modelviz.visdom import assets
from pytest_modelviz.visdom.server import VisdomServer, start_server

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- install / check, no network


def test_check_lists_every_missing_file_of_an_empty_static_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert assets.main(["check", "--static-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for asset in assets.assets_for(assets.visdom_version()):
        assert f"  {asset.target} (missing)" in out
    for name in assets.page_files():
        assert f"  {name} (missing, a copy of visdom's own)" in out
    assert f"version.built (missing, visdom is {assets.visdom_version()})" in out
    assert f"fix: {assets.INSTALL_COMMAND} --static-dir {tmp_path}" in out


def test_check_names_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "jquery.min.js").write_text("<!DOCTYPE html><title>502 Bad Gateway</title>")
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "glyphicons-halflings-regular.woff2").write_bytes(b"wOFF" + bytes(100))
    assert assets.main(["check", "--static-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "js/jquery.min.js (an HTML page, not the script or style sheet)" in out
    assert "fonts/glyphicons-halflings-regular.woff2 (not a .woff2 font)" in out


def test_every_index_html_reference_is_in_the_table() -> None:
    """The page the installed visdom ships asks for exactly files its table installs (or visdom ships)."""
    index = assets.visdom_static_dir() / "index.html"
    wanted = set(re.findall(r"static_url\(['\"]([^'\"]+)['\"]\)", index.read_text(encoding="utf-8")))
    shipped = {*assets.page_files(), "../user/style.css"}
    installed = {asset.target for asset in assets.assets_for(assets.visdom_version())}
    assert wanted - shipped and wanted - shipped <= installed, sorted(wanted - shipped - installed)


@pytest.mark.parametrize("version, mathjax", [("0.2.4", "js/mathjax/2.7.5/MathJax.js"),
                                              ("0.3.0", "js/mathjax/3.2.2/es5/tex-mml-svg.js")])
def test_each_visdom_release_gets_the_files_its_page_loads(version: str, mathjax: str) -> None:
    targets = {asset.target for asset in assets.assets_for(version)}
    assert mathjax in targets and "js/jquery.min.js" in targets
    assert all(asset.spec in assets.INTEGRITY for asset in assets.assets_for(version))


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def test_extract_writes_the_named_files_under_their_targets(tmp_path: Path) -> None:
    tgz = _tarball(tmp_path / "x.tgz", {"dist/x.min.js": b"var x=1;", "dist/other.js": b"var y;"})
    row = assets.Asset("x", "1.0.0", "dist/x.min.js", "js/x-renamed.min.js")
    written = assets.extract(tgz, [row], tmp_path / "static")
    assert written == [tmp_path / "static" / "js" / "x-renamed.min.js"]
    assert written[0].read_bytes() == b"var x=1;"
    assert sorted(p.name for p in (tmp_path / "static" / "js").iterdir()) == ["x-renamed.min.js"]


def test_extract_names_the_package_and_file_it_lacks_or_rejects(tmp_path: Path) -> None:
    tgz = _tarball(tmp_path / "x.tgz", {"fonts/f.woff": b"not a font"})
    with pytest.raises(SinkError, match=r"x@1\.0\.0 has no file dist/x\.js"):
        assets.extract(tgz, [assets.Asset("x", "1.0.0", "dist/x.js", "js/x.js")], tmp_path)
    with pytest.raises(SinkError, match=r"fonts/f\.woff in x@1\.0\.0 is not a \.woff font"):
        assets.extract(tgz, [assets.Asset("x", "1.0.0", "fonts/f.woff", "fonts/f.woff")], tmp_path)


def test_install_without_npm_names_the_package_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "jquery-3.1.1.tgz").write_bytes(b"a truncated download")  # fails the pinned sha512
    with pytest.raises(SinkError, match=r"npm is needed to fetch jquery@3\.1\.1.*assets install"):
        assets.install(tmp_path / "static", cache)
    assert not (tmp_path / "static" / "version.built").exists(), "an incomplete install is not stamped"


def test_ui_note_says_how_to_install(tmp_path: Path) -> None:
    note = assets.ui_note(tmp_path)
    assert note is not None and "js/jquery.min.js (missing)" in note
    assert note.endswith(f"`{assets.INSTALL_COMMAND}` (needs npm).")


# ---------------------------------------------------------------- a real server, a real browser


def _local_refs(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']?(/static/[^"' >]+)""", page)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VisdomServer]:
    """The plugin's own server, which serves the page from the UI folder (visdom's own CLI
    serves visdom's package folder, where nothing is installed)."""
    server = start_server(tmp_path_factory.mktemp("ui-server-env"))
    try:
        yield server
    finally:
        server.stop()


def test_index_and_every_static_file_it_references_answer_200(ui_server: VisdomServer) -> None:
    import requests

    require_ui()
    page = requests.get(f"{ui_server.url}/", timeout=10)
    assert page.status_code == 200, f"GET / answered {page.status_code}"
    refs = _local_refs(page.text)
    assert len(refs) >= 18, f"index.html references fewer static files than expected: {refs}"
    failed = {}
    for ref in refs:
        reply = requests.get(urljoin(f"{ui_server.url}/", ref), timeout=10)
        if reply.status_code != 200 or (ref.startswith("/static/js/") and not reply.content):
            failed[ref] = reply.status_code
    assert not failed, f"static files that do not load: {failed}"


def test_started_server_says_the_ui_is_there(tmp_path: Path) -> None:
    import requests

    require_ui()
    server = start_server(tmp_path / "env")
    try:
        assert server.ui_note is None
        assert requests.get(f"{server.url}/", timeout=10).status_code == 200
    finally:
        server.stop()
    assert f"web UI: {server.url}/" in server.log_path.read_text(encoding="utf-8")


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_install_writes_only_its_own_folder_and_the_server_serves_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    import requests

    require_ui()  # the set-up installed it: its npm tarballs are cached, so no network is needed
    package = assets.visdom_static_dir().parent
    before = _tree(package)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(assets.UI_DIR_ENV, raising=False)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_modelviz.visdom.assets", "install",
         "--cache-dir", str(assets.default_cache_dir())],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "cache" / "pytest-modelviz" / "visdom-ui" / assets.visdom_version()
    assert f"into {folder}" in done.stdout
    assert assets.ui_problems(folder) == []
    assert _tree(package) == before, "install changed files of the visdom package"

    # The server serves /static/ from that folder: a file changed there is what a browser gets.
    jquery = folder / "js" / "jquery.min.js"
    jquery.write_bytes(b"/* served from the UI folder */\n" + jquery.read_bytes())
    server = start_server(tmp_path / "env")
    try:
        assert server.ui_note is None
        reply = requests.get(f"{server.url}/static/js/jquery.min.js", timeout=10)
        assert reply.status_code == 200 and reply.content.startswith(b"/* served from the UI folder */")
        # visdom's own, copied
        assert requests.get(f"{server.url}/static/js/main.js", timeout=10).status_code == 200
    finally:
        server.stop()
    assert _tree(package) == before


def _distinct_colours(png: Path) -> int:
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(png)
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


@pytest.mark.slow
def test_chromium_shows_a_line_plot_and_a_text_window(
    ui_server: VisdomServer,
    client_for: Callable[..., Any],
    env: str,
    tmp_path: Path,
    modelviz_artifacts: ArtifactDir,
) -> None:
    import numpy as np

    require_ui()
    env_client = client_for(ui_server.url, env)
    env_client.line(X=np.arange(5), Y=np.array([3.0, 2.0, 1.5, 1.2, 1.0]), win="loss",
                    opts={"title": "ui-test loss curve"})
    env_client.text("ui-test text body", win="note", opts={"title": "ui-test notes"})
    page = f"{ui_server.url}/env/{env}"

    dom = open_in_chromium(page, tmp_path / "profile", "--dump-dom").stdout
    assert dom.count('class="window"') == 2, "both windows are on the page"
    for text in ("ui-test loss curve", "ui-test notes", "ui-test text body"):
        assert text in dom, f"{text!r} is not on the page"
    assert 'class="main-svg"' in dom, "plotly did not draw the line plot"

    png = modelviz_artifacts.path("visdom-ui.png")
    open_in_chromium(page, tmp_path / "profile-shot", f"--screenshot={png}", "--window-size=1280,900")
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert _distinct_colours(png) > 50, "the screenshot is (nearly) blank"


def test_missing_ui_files_fail_with_the_install_command(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.syspathinsert(Path(__file__).parent)
    pytester.makepyfile(
        "from pathlib import Path\n"
        "from visdom_testing import require_ui\n"
        "def test_it(tmp_path):\n"
        "    require_ui(tmp_path)\n"
    )
    monkeypatch.delenv("MODELVIZ_SKIP_BROWSER", raising=False)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*python -m pytest_modelviz.visdom.assets install*MODELVIZ_SKIP_BROWSER=1*"])
    monkeypatch.setenv("MODELVIZ_SKIP_BROWSER", "1")
    pytester.runpytest_inprocess().assert_outcomes(skipped=1)


def test_session_server_without_ui_files_warns_once_how_to_install(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import pytest\n"
        "@pytest.fixture(autouse=True)\n"
        "def _no_ui(monkeypatch):\n"
        "    monkeypatch.setattr('pytest_modelviz.visdom.server.ui_note',\n"
        "                        lambda: 'UI FILES MISSING: install them')\n"
    )
    pytester.makepyfile(
        "def test_a(visdom_client):\n    visdom_client.text('a')\n"
        "def test_b(visdom_client):\n    visdom_client.text('b')\n"
    )
    result = pytester.runpytest_inprocess("--modelviz-visdom=server", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*VisdomUIWarning: http://127.0.0.1:*: UI FILES MISSING: install them*"])
    assert result.stdout.str().count("UI FILES MISSING") == 1, "one warning per server, not per test"

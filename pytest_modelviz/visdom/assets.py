"""visdom's web UI without a CDN, in a folder of pytest-modelviz's own: visdom's page files, plus
the third-party JS, CSS and fonts it loads, taken from npm packages.

    python -m pytest_modelviz.visdom.assets install   # fetch (once, cached) and write them
    python -m pytest_modelviz.visdom.assets check     # list what is missing; exit 1 if anything is

visdom ships only its own ``index.html``, ``main.js`` and style sheets; ``python -m visdom.server``
downloads the rest from CDNs into the installed package (``visdom.server.build.download_scripts``)
and, offline, serves a blank page. Every one of those files is also in an npm package, and the npm
registry is reachable where CDNs are not, so ``install`` takes them from ``npm pack`` tarballs and
writes them, under the names ``download_scripts`` uses, next to a copy of visdom's own page files in
``ui_dir()`` (one folder per visdom version, outside every installed package). The server this
plugin starts (``pytest_modelviz.visdom.server``) serves its static files from there. Nothing is
ever written into visdom's package: it may be read-only, and pip keeps a record of its files.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_modelviz.errors import SinkError, install_hint

INSTALL_COMMAND = "python -m pytest_modelviz.visdom.assets install"
BUILT_FILE = "version.built"  # written last by install: the folder is complete for this visdom
UI_DIR_ENV = "MODELVIZ_VISDOM_UI_DIR"  # where the per-version UI folders go (default: the user cache)


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    source: str  # path inside the tarball's ``package/`` folder
    target: str  # path under the UI folder, as ``download_scripts`` names it under visdom's static/

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


_BS = ("bootstrap", "3.3.7")
_GLYPHS = "glyphicons-halflings-regular"

# What every visdom release's page loads (download_scripts of 0.2.4 and 0.3.0 agree on these).
_COMMON: tuple[Asset, ...] = (
    Asset("jquery", "3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
    Asset(*_BS, "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    Asset("react", "16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
    Asset("react-dom", "16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
    Asset("react-modal", "3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
    Asset("plotly.js-dist-min", "2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
    Asset("sjcl", "1.0.7", "sjcl.js", "js/sjcl.js"),
    Asset("layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
    Asset("layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    Asset("d3", "3.5.17", "d3.min.js", "js/d3.v3.min.js"),
    Asset("d3-selection-multi", "1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
    Asset("save-svg-as-png", "1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    Asset(*_BS, "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    Asset("classnames", "2.2.5", "index.js", "fonts/classnames"),
    Asset(*_BS, f"dist/fonts/{_GLYPHS}.eot", f"fonts/{_GLYPHS}.eot"),
    Asset(*_BS, f"dist/fonts/{_GLYPHS}.woff2", f"fonts/{_GLYPHS}.woff2"),
    Asset(*_BS, f"dist/fonts/{_GLYPHS}.woff", f"fonts/{_GLYPHS}.woff"),
    Asset(*_BS, f"dist/fonts/{_GLYPHS}.ttf", f"fonts/{_GLYPHS}.ttf"),
    # download_scripts keeps the URL fragment in the file name; browsers ask for the plain name.
    Asset(*_BS, f"dist/fonts/{_GLYPHS}.svg", f"fonts/{_GLYPHS}.svg#glyphicons_halflingsregular"),
    Asset(*_BS, f"dist/fonts/{_GLYPHS}.svg", f"fonts/{_GLYPHS}.svg"),
)

_VISDOM_0_2: tuple[Asset, ...] = (
    *_COMMON,
    Asset("react-resizable", "1.4.6", "css/styles.css", "css/react-resizable-styles.css"),
    Asset("react-grid-layout", "0.16.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    *(
        Asset("mathjax", "2.7.5", path, f"js/mathjax/2.7.5/{path}")
        for path in (
            "MathJax.js",
            "config/Safe.js",
            "config/TeX-AMS-MML_HTMLorMML.js",
            "extensions/Safe.js",
            "jax/output/SVG/config.js",
            "jax/output/SVG/jax.js",
            "jax/output/SVG/fonts/TeX/fontdata.js",
            "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js",
        )
    ),
)

# visdom 0.3 moved to newer grid/resize style sheets and MathJax 3 (one combined file).
_VISDOM_0_3: tuple[Asset, ...] = (
    *_COMMON,
    Asset("react-resizable", "3.1.3", "css/styles.css", "css/react-resizable-styles.css"),
    Asset("react-grid-layout", "2.2.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    Asset("mathjax", "3.2.2", "es5/tex-mml-svg.js", "js/mathjax/3.2.2/es5/tex-mml-svg.js"),
)


def assets_for(version: str) -> tuple[Asset, ...]:
    """The files the page of visdom ``version`` loads: 0.2.x, or 0.3 and later (which ``check``
    verifies against that release's own ``index.html``)."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]]
    return _VISDOM_0_3 if len(parts) == 2 and tuple(parts) >= (0, 3) else _VISDOM_0_2


# The registry's sha512 of each tarball (``npm view <spec> dist.integrity``): npm checks a
# download against it, and this checks the cached copy, which is reused without npm.
INTEGRITY: dict[str, str] = {
    "bootstrap@3.3.7":
        "qcFaisBrcBhTFkz1IUnGDYnX6ZWfFzH8zOixUDtHW9Ip+r+7MfMFav2rzy7cIHc7rgIg7xjhWBoo1mS/U26j4g==",
    "classnames@2.2.5":
        "DTt3GhOUDKhh4ONwIJW4lmhyotQmV2LjNlGK/J2hkwUcqcbKkCLAdJPtxQnxnlc7SR3f1CEXCyMmc7WLUsWbNA==",
    "d3@3.5.17":
        "yFk/2idb8OHPKkbAL8QaOaqENNoMhIaSHZerk3oQsECwkObkCpJyjYwCe+OHiq6UEdhe1m8ZGARRRO3ljFjlKg==",
    "d3-selection-multi@1.0.1":
        "mEnRkJ6A+Otd1LuRPV3az+s/RLDmIEhuz/MnT21O2nPcWNH7wZotdIlRjMA4Wpr+n7AESQ5fD8v1J3nL2Mnw9g==",
    "jquery@3.1.1":
        "zuiWRmx65Kd1oFGdWLvAjbsumdOBFvs3r1vuqCyKFF79R7exBHNbiNEJ8LR+xkzgfxqBznMD/4Cv6PHXS6mvEw==",
    "layout-bin-packer@1.4.0":
        "dQOZnajbOBGIcS9YlzKrkRtMCGa2oEpyf1zGRn93suphSvPclJe54Sbgtb053GJ21DUk84IBzaeQvjn+Gb10fA==",
    "mathjax@2.7.5":
        "OzsJNitEHAJB3y4IIlPCAvS0yoXwYjlo2Y4kmm9KQzyIBZt2d8yKRalby3uTRNN4fZQiGL2iMXjpdP1u2Rq2DQ==",
    "plotly.js-dist-min@2.11.1":
        "F9WWNht0D3yBLZGHbLoJNfvplXvy+GUPSsA/lCbMuYd/UwzSu6Vmyprxlps9Einw1LDS1hYBrJeioK0lE3ieXA==",
    "react@16.2.0":
        "ZmIomM7EE1DvPEnSFAHZn9Vs9zJl5A9H7el0EGTE6ZbW9FKe/14IYAlPbC8iH25YarEQxZL+E8VW7Mi7kfQrDQ==",
    "react-dom@16.2.0":
        "zpGAdwHVn9K0091d+hr+R0qrjoJ84cIBFL2uU60KvWBPfZ7LPSrfqviTxGHWN0sjPZb2hxWzMexwrvJdKePvjg==",
    "mathjax@3.2.2":
        "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
    "react-grid-layout@0.16.3":
        "ytP92EqUjqcFhGzvdeKrK610dQ04GdFwRCWtD6PoeL5wR3liETcFISO7k8RBqnosV86JtXf/DwIfrL0COLs0gg==",
    "react-grid-layout@2.2.3":
        "OAEJHBxmfuxQfVtZwRzmsokijGlBgzYIJ7MUlLk/VSa43SaGzu15w5D0P2RDrfX5EvP9POMbL6bFrai/huDzbQ==",
    "react-modal@3.1.10":
        "7b77AGWCkdg0YOf/qcYIGCpuwbxRwOA8P3UrUovk4grUNv+idOmHovJAx/Dcd3fuwHtgixxVjpcjVG60985MSA==",
    "react-resizable@1.4.6":
        "4zLORO51u0/mlDsrVCAA4p266d+3mb2ZMNdiWOotAh/PdnfrRzZhgePmKE08PSQatXVIfMjmyD+Sapay8tmxdQ==",
    "react-resizable@3.1.3":
        "liJBNayhX7qA4tBJiBD321FDhJxgGTJ07uzH5zSORXoE8h7PyEZ8mLqmosST7ppf6C4zUsbd2gzDMmBCfFp9Lw==",
    "save-svg-as-png@1.4.17":
        "7QDaqJsVhdFPwviCxkgHiGm9omeaMBe1VKbHySWU6oFB2LtnGCcYS13eVoslUgq6VZC6Tjq/HddBd1K6p2PGpA==",
    "sjcl@1.0.7":
        "xQbiwKfiAj6vyk44ANJ5RRymALRdRZOuRoKNYkWUU404p/RFXmMaay1Z5vRn30GJjkD+psox4Jd38jZojSuNYA==",
}

# What each kind of font file starts with (EOT keeps its magic number at byte 34).
_FONT_MAGIC: dict[str, tuple[int, bytes]] = {
    ".woff2": (0, b"wOF2"),
    ".woff": (0, b"wOFF"),
    ".ttf": (0, b"\x00\x01\x00\x00"),
    ".eot": (34, b"LP"),
}


# ---------------------------------------------------------------- where things are


def visdom_static_dir() -> Path:
    """The ``static`` folder of the installed visdom package (found without importing it); only
    ever read: its page files are copied into the UI folder."""
    spec = importlib.util.find_spec("visdom")
    if spec is None or not spec.submodule_search_locations:
        raise SinkError(f"visdom is not installed: {install_hint('visdom')}")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def visdom_version() -> str:
    """What ``visdom.__version__`` is: the installed package's VERSION file, read as visdom does."""
    try:
        return (visdom_static_dir().parent / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        return "no_version_file"


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pytest-modelviz"


def default_cache_dir() -> Path:
    return _user_cache() / "npm"


def ui_dir(version: str | None = None) -> Path:
    """The folder the web UI of visdom ``version`` (default: the installed one) is served from:
    ``$MODELVIZ_VISDOM_UI_DIR/<version>``, else ``~/.cache/pytest-modelviz/visdom-ui/<version>``."""
    base = os.environ.get(UI_DIR_ENV)
    root = Path(base) if base else _user_cache() / "visdom-ui"
    return root / (version or visdom_version())


# ---------------------------------------------------------------- checking


def problem_with(data: bytes, target: str) -> str | None:
    """Why ``data`` cannot be the file ``target``, or None when it looks right."""
    if not data:
        return "empty"
    suffix = Path(target.split("#", 1)[0]).suffix
    if suffix in _FONT_MAGIC:
        offset, magic = _FONT_MAGIC[suffix]
        return None if data[offset:offset + len(magic)] == magic else f"not a {suffix} font"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    head = text.lstrip()[:200].lower()
    if suffix == ".svg":
        return None if "<svg" in text[:2000] else "not an SVG"
    if head.startswith(("<!doctype html", "<html")):
        return "an HTML page, not the script or style sheet"  # what a failed CDN download saves
    if suffix == ".map":
        try:
            json.loads(text)
        except json.JSONDecodeError:
            return "not a JSON source map"
    return None


def page_files() -> list[str]:
    """visdom's own page files (``index.html``, ``js/main.js``, ...), relative to its static folder:
    what pip installed there (its record of visdom's files), not files others wrote into it."""
    from importlib.metadata import PackageNotFoundError, files

    static = visdom_static_dir()
    try:
        recorded = files("visdom")
    except PackageNotFoundError:
        recorded = None
    if recorded:
        prefix = "visdom/static/"
        names = [f.as_posix()[len(prefix):] for f in recorded if f.as_posix().startswith(prefix)]
    else:  # an install without a record of its files: take what is there
        names = [p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file()]
    # version.built is download_scripts' stamp (older set-ups wrote one there), not a page file.
    return sorted(n for n in names if Path(n).name != BUILT_FILE and (static / n).is_file())


def missing(folder: Path, version: str | None = None) -> list[str]:
    """Each file of visdom ``version``'s page that is absent or broken in the UI ``folder``, as
    ``name (why)``; [] when complete."""
    version = version or visdom_version()
    found = []
    for asset in assets_for(version):
        path = folder / asset.target
        try:
            why = problem_with(path.read_bytes(), asset.target)
        except FileNotFoundError:
            why = "missing"
        except OSError as exc:
            why = f"unreadable: {exc.strerror}"
        if why is not None:
            found.append(f"{asset.target} ({why})")
    found.extend(f"{name} (missing, a copy of visdom's own)" for name in page_files()
                 if not (folder / name).is_file())
    return found


def ui_problems(folder: Path | None = None) -> list[str]:
    """Everything that keeps visdom's page from working when served from the UI ``folder``
    (default ``ui_dir()``): missing files, a stamp of another visdom version and a tornado that
    refuses the page. [] when the web UI will load."""
    version = visdom_version()
    folder = folder or ui_dir(version)
    problems = missing(folder, version)
    try:
        built = (folder / BUILT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        built = None
    if built != version:
        says = "missing" if built is None else f"says {built!r}"
        problems.append(f"{BUILT_FILE} ({says}, visdom is {version})")
    problems.extend(_tornado_problems())
    return problems


def _tornado_problems() -> list[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - always there on Python >= 3.8
        return []
    try:
        found = version("tornado")
    except PackageNotFoundError:
        return ["tornado (not installed; pip install 'tornado<6.6')"]
    major_minor = tuple(int(p) for p in found.split(".")[:2] if p.isdigit())
    if major_minor >= (6, 6):
        return [f"tornado {found} (answers 403 on visdom's page; pip install 'tornado<6.6')"]
    return []


def ui_note(folder: Path | None = None) -> str | None:
    """One line saying why the web UI will not load and how to fix it; None when it will."""
    try:
        problems = ui_problems(folder)
    except SinkError as exc:
        return str(exc)
    if not problems:
        return None
    shown = ", ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
    return (f"visdom's web UI will not load (the data API works): {shown}. "
            f"Install the UI files with `{INSTALL_COMMAND}` (needs npm).")


# ---------------------------------------------------------------- installing


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode("ascii")


def _tarball_name(spec: str) -> str:
    name, version = spec.rsplit("@", 1)
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch(spec: str, cache_dir: Path, npm: str | None = None) -> Path:
    """The npm tarball of ``spec`` in ``cache_dir``, downloaded with ``npm pack`` unless a copy
    with the pinned integrity is already there."""
    tarball = cache_dir / _tarball_name(spec)
    if tarball.is_file() and _sha512(tarball) == INTEGRITY[spec]:
        return tarball
    npm = npm or shutil.which("npm")
    if npm is None:
        raise SinkError(
            f"npm is needed to fetch {spec} for visdom's web UI and was not found on PATH. "
            "Install Node.js/npm (Debian/Ubuntu: apt-get install -y npm) and rerun "
            f"`{INSTALL_COMMAND}`; the visdom data API works without it."
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pack-") as tmp:
        result = subprocess.run(
            [npm, "pack", spec, "--pack-destination", tmp, "--silent"],
            capture_output=True, text=True, check=False, timeout=600, stdin=subprocess.DEVNULL,
        )
        packed = Path(tmp) / _tarball_name(spec)
        if result.returncode != 0 or not packed.is_file():
            raise SinkError(
                f"npm could not fetch {spec} (exit {result.returncode}): "
                f"{result.stderr.strip()[-1500:] or '(no output)'}. Check that the npm registry is "
                f"reachable (npm ping) and rerun `{INSTALL_COMMAND}`."
            )
        got = _sha512(packed)
        if got != INTEGRITY[spec]:
            raise SinkError(f"the tarball npm fetched for {spec} has sha512 {got}, not the pinned "
                            f"{INTEGRITY[spec]}; the registry or a proxy served something else")
        os.replace(packed, tarball)
    return tarball


def extract(tarball: Path, assets: Sequence[Asset], folder: Path) -> list[Path]:
    """Write each asset's file from ``tarball`` into ``folder``; return the paths written."""
    wanted = {f"package/{asset.source}" for asset in assets}
    found: dict[str, bytes] = {}
    # One pass over the stream: looking members up by name would decompress it again per file.
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            if member.name in wanted and member.isfile():
                fh = tar.extractfile(member)
                if fh is not None:
                    found[member.name] = fh.read()
    written = []
    for asset in assets:
        name = f"package/{asset.source}"
        if name not in found:
            raise SinkError(f"{asset.spec} has no file {asset.source} (tarball {tarball})")
        why = problem_with(found[name], asset.target)
        if why is not None:
            raise SinkError(f"{asset.source} in {asset.spec} is {why}; cannot use it as {asset.target}")
        written.append(_write_atomic(folder / asset.target, found[name]))
    return written


def _write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a server reading it never sees half a file
    return path


def install(folder: Path | None = None, cache_dir: Path | None = None, npm: str | None = None) -> list[Path]:
    """Copy visdom's page files and every npm asset its page loads into the UI ``folder``
    (default ``ui_dir()``), fetching what is not cached, and stamp it with visdom's version last,
    so an interrupted install is never taken for a complete one. Returns the files written."""
    version = visdom_version()
    folder = folder or ui_dir(version)
    cache_dir = cache_dir or default_cache_dir()
    (folder / BUILT_FILE).unlink(missing_ok=True)
    static = visdom_static_dir()
    written = [_write_atomic(folder / name, (static / name).read_bytes()) for name in page_files()]
    by_spec: dict[str, list[Asset]] = {}
    for asset in assets_for(version):
        by_spec.setdefault(asset.spec, []).append(asset)
    for spec, assets in by_spec.items():
        written.extend(extract(fetch(spec, cache_dir, npm), assets, folder))
    written.append(_write_atomic(folder / BUILT_FILE, version.encode("utf-8")))
    return written


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_modelviz.visdom.assets",
        description="Install or check visdom's web UI files (JS, CSS, fonts) in pytest-modelviz's own "
        "folder.",
    )
    parser.add_argument("action", choices=("install", "check"))
    parser.add_argument("--static-dir", type=Path, default=None,
                        help=f"the UI folder (default ${UI_DIR_ENV}/<visdom version>, else "
                        "~/.cache/pytest-modelviz/visdom-ui/<visdom version>)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"where npm tarballs are kept between runs (default {default_cache_dir()})")
    args = parser.parse_args(argv)
    try:
        folder = args.static_dir or ui_dir()
        if args.action == "install":
            written = install(folder, args.cache_dir)
            print(f"installed {len(written)} files for visdom's web UI into {folder}")
        problems = ui_problems(folder)
    except SinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if problems:
        print(f"visdom's web UI is incomplete in {folder}:")
        for problem in problems:
            print(f"  {problem}")
        print(f"fix: {INSTALL_COMMAND}" + (f" --static-dir {args.static_dir}" if args.static_dir else ""))
        return 1
    if args.action == "check":
        print(f"visdom's web UI is complete in {folder} (visdom {visdom_version()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

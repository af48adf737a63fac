"""Names a package exports without importing them: resolved on first access (PEP 562).

The package ``__init__`` files are imported by every pytest run (the entry point imports the
package), so they must not import torch, syrupy or tensorboardX; each exported name is imported
from its home module the first time it is used, then kept in the package's namespace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_exports(
    package: str, homes: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``homes`` maps each exported name to
    ``"module"`` (the same name there) or ``"module:attribute"`` (another name there)."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = home.partition(":")
        value = getattr(importlib.import_module(module_name), attribute or name)
        namespace[name] = value
        return value

    return __getattr__

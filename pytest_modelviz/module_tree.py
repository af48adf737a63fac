"""A model's module tree, checked before anything walks it.

torch walks submodules recursively (``.to()``, ``named_parameters(remove_duplicate=False)``,
``apply``), so a module that holds itself or one of its parents (``self.me = self``) makes every
walk recurse until ``RecursionError``. Finding that first lets capture and training name the
attribute instead. torch imports nothing here: the model brings it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModuleCycle:
    """``path`` (like ``"enc.back"``) is a submodule that is its own ancestor ``ancestor``."""

    path: str
    ancestor: str  # "" for the root module

    def describe(self, model_name: str) -> str:
        again = f"the model {model_name} itself" if not self.ancestor else f"its own parent {self.ancestor!r}"
        return f"its submodule {self.path!r} is {again}, so the module tree never ends"


FIX_HINT = (
    "Keep back-references out of the module tree: store them with "
    "`object.__setattr__(self, name, module)` or in a plain list, not as a module attribute"
)


def module_cycle(model: nn.Module) -> ModuleCycle | None:
    """The first submodule that contains the module it hangs under, or None for a proper tree.

    Iterative, so a deep model never meets the recursion limit; a module shared by two parents
    (tied encoders) is a DAG, not a cycle, and is walked once.
    """
    on_path: dict[int, str] = {id(model): ""}
    done: set[int] = set()
    stack: list[tuple[int, str, Iterator[tuple[str, nn.Module]]]] = [(id(model), "", model.named_children())]
    while stack:
        key, path, children = stack[-1]
        for name, child in children:
            child_path = f"{path}.{name}" if path else name
            if id(child) in on_path:
                return ModuleCycle(path=child_path, ancestor=on_path[id(child)])
            if id(child) not in done:
                on_path[id(child)] = child_path
                stack.append((id(child), child_path, child.named_children()))
                break
        else:
            stack.pop()
            del on_path[key]
            done.add(key)
    return None

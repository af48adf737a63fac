"""The autograd graph of one forward pass, drawn by torchviz, with ids that do not change per run.

``torchviz.make_dot`` names every node by ``id()`` of a Python object, i.e. a memory address, so
two runs of the same model give different files. The ids are renumbered here in order of first
appearance, which depends only on the graph's structure.

The forward runs on the model as it is (same train/eval mode, so the picture matches what
training differentiates); ``kept_model_state`` puts the RNG streams (dropout), the buffers
(BatchNorm running statistics) and the modes back afterwards.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import RenderError, RenderSkipped
from pytest_modelviz.model_state import kept_model_state
from pytest_modelviz.nested import tensors as nested_tensors

if TYPE_CHECKING:
    import torch

# torchviz writes node statements as "\t<id> [..." and edges as "\t<id> -> <id>".
_ID_LINE = re.compile(r"^(\t)(\d+)((?: -> )(\d+))?(?=[ \n\[]|$)")


def autograd_dot(model: torch.nn.Module, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> str:
    """DOT source of the autograd graph of ``model(*args, **kwargs)``'s tensor outputs.

    Raises ``RenderSkipped`` when there is nothing to draw (meta tensors, no output requiring
    grad) and ``RenderError`` when the forward itself fails.
    """
    import torch
    from torchviz import make_dot

    kwargs = dict(kwargs or {})
    name = type(model).__name__
    if _has_meta(model, args, kwargs):
        raise RenderSkipped(
            f"{name} has tensors on the meta device, which hold no values to run autograd on; "
            "the torchviz graph needs a model and example inputs with real storage"
        )
    with kept_model_state(model), torch.enable_grad():
        try:
            output = model(*args, **kwargs)
        except Exception as exc:  # the model's own error, reported with its type and message
            raise RenderError(f"forward of {name} failed while drawing its autograd graph: {exc!r}") from exc
        tensors = tuple(t for t in nested_tensors(output) if t.grad_fn is not None)
        if not tensors:
            raise RenderSkipped(
                f"no output of {name} has a grad_fn (nothing requires grad, or the forward "
                "detaches), so there is no autograd graph to draw"
            )
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        with warnings.catch_warnings():
            # torchviz compares torch versions with distutils' LooseVersion on every call.
            warnings.filterwarnings("ignore", "distutils Version classes are deprecated", DeprecationWarning)
            source = make_dot(tensors if len(tensors) > 1 else tensors[0], params=params).source
    return stable_ids(source)


def stable_ids(source: str) -> str:
    """Replace torchviz's memory-address node ids by ``n0``, ``n1``... in order of first use."""
    ids: dict[str, str] = {}

    def new_id(old: str) -> str:
        return ids.setdefault(old, f"n{len(ids)}")

    def fix(match: re.Match[str]) -> str:
        head = f"{match.group(1)}{new_id(match.group(2))}"
        if match.group(4) is not None:
            head += f" -> {new_id(match.group(4))}"
        return head

    return "\n".join(_ID_LINE.sub(fix, line) for line in source.split("\n"))


def _has_meta(model: torch.nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    tensors = [*model.parameters(), *model.buffers(), *nested_tensors((args, kwargs))]
    return any(t.is_meta for t in tensors)

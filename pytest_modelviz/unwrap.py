"""See through the wrappers that run a model without being it, so it is snapshotted as itself.

``torch.compile(model)`` is an ``OptimizedModule`` holding the model as ``_orig_mod``;
``nn.DataParallel`` and ``DistributedDataParallel`` hold it as ``module``. Their parameter names
gain a prefix (``_orig_mod.fc.weight``, ``module.fc.weight``) and their class name replaces the
model's, so a wrapped model would snapshot differently from the bare one although it is the same
model. ``unwrap_model`` returns the model inside, through any number of such wrappers; capture,
parameter statistics and training name parameters from it.

Forms that are not the eager model any more are refused by ``refuse_transformed``, naming what to
pass instead: a TorchScript module and a ``torch.export`` ``ExportedProgram`` run no forward
hooks; FSDP (``FullyShardedDataParallel``, ``fully_shard``) shards the parameters across ranks, so
each rank would snapshot its own shard, and FSDP1 flattens them into one tensor.
"""

from __future__ import annotations

import sys
from typing import Any

from pytest_modelviz.errors import ModelvizUsageError


def unwrap_model(model: Any) -> Any:
    """The model inside ``torch.compile``, ``DataParallel`` and ``DistributedDataParallel``
    wrappers (nested ones too); anything else is returned as it is."""
    while True:
        inner = _wrapped(model)
        if inner is None:
            return model
        model = inner


def _wrapped(model: Any) -> Any:
    # Looked up in sys.modules: a model can only be an instance of a class whose module is loaded,
    # and importing torch._dynamo just to ask would cost seconds.
    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    if dynamo is not None and isinstance(model, dynamo.OptimizedModule):
        return model._orig_mod
    parallel = sys.modules.get("torch.nn.parallel")
    if parallel is not None and isinstance(model, (parallel.DataParallel, parallel.DistributedDataParallel)):
        return model.module
    return None


def refuse_transformed(model: Any, what: str) -> None:
    """A ``ModelvizUsageError`` for a TorchScript module, an ExportedProgram or an FSDP-sharded
    model, naming the module to pass instead; ``what`` is what needs it (``capture``)."""
    jit = sys.modules.get("torch.jit")
    if jit is not None and isinstance(model, jit.ScriptModule):
        original = getattr(model, "original_name", None) or "?"
        raise ModelvizUsageError(
            f"{what} takes the eager nn.Module, not a TorchScript module ({type(model).__name__} of "
            f"{original}): TorchScript runs no forward hooks and renames the model's class. Pass the "
            "module you gave torch.jit.script or torch.jit.trace."
        )
    export = sys.modules.get("torch.export")
    exported = getattr(export, "ExportedProgram", None) if export is not None else None
    if exported is not None and isinstance(model, exported):
        raise ModelvizUsageError(
            f"{what} takes the eager nn.Module, not a torch.export ExportedProgram (a traced graph, "
            "without the model's modules). Pass the module you gave torch.export.export."
        )
    fsdp = sys.modules.get("torch.distributed.fsdp")
    sharded = tuple(
        cls for cls in (getattr(fsdp, "FullyShardedDataParallel", None), getattr(fsdp, "FSDPModule", None))
        if isinstance(cls, type)
    )
    if sharded and isinstance(model, sharded):
        raise ModelvizUsageError(
            f"{what} takes the model as it is before FSDP, not an FSDP-sharded {type(model).__name__}: "
            "FSDP splits the parameters across ranks (and FullyShardedDataParallel flattens them), so "
            "no rank holds the model's layers and weights as they are. Snapshot the module before "
            "wrapping it in FullyShardedDataParallel or calling fully_shard on it."
        )

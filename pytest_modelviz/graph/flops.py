"""Mult-add counts (torchinfo-style) for the common layers and functional ops.

Counts are computed from shapes and module attributes only, so they are the same on CPU, CUDA and
the meta device. Layers not listed count 0: activations, pooling and element-wise ops are not
multiply-accumulate work.
"""

from __future__ import annotations

from math import prod
from typing import Any

from pytest_modelviz.graph.model import TensorSpec


def _numel(spec: TensorSpec) -> int:
    return prod(spec.shape)


def module_macs(module: Any, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> int:
    """Mult-adds of one leaf-module call, from its type, attributes and the shapes seen."""
    import torch.nn as nn

    if not outputs:
        return 0
    out = _numel(outputs[0])
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        if not inputs:
            return 0
        return _numel(inputs[0]) * (module.out_channels // module.groups) * prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return out * (module.in_channels // module.groups) * prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out * module.in_features
    if isinstance(module, nn.Bilinear):
        return out * module.in1_features * module.in2_features
    if isinstance(module, nn.RNNBase):
        # Every weight matrix is applied once per token (per layer and direction).
        if not inputs or not inputs[0].shape:
            return 0
        tokens = _numel(inputs[0]) // inputs[0].shape[-1]
        weights = sum(p.numel() for n, p in module.named_parameters() if n.startswith("weight"))
        return weights * tokens
    if isinstance(module, nn.MultiheadAttention):
        return _attention_macs(module, inputs, out)
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return out if module.affine else 0
    if isinstance(module, nn.LayerNorm) or type(module).__name__ == "RMSNorm":
        return out if getattr(module, "weight", None) is not None else 0
    return 0


def _attention_macs(module: Any, inputs: tuple[TensorSpec, ...], out: int) -> int:
    """Input/output projections plus ``q @ k^T`` and ``attn @ v`` (all heads together)."""
    if len(inputs) < 3 or not inputs[0].shape or not inputs[1].shape:
        return 0
    query, key = inputs[0], inputs[1]
    embed: int = module.embed_dim
    kdim: int = module.kdim
    vdim: int = module.vdim
    q_tokens = _numel(query) // query.shape[-1]
    kv_tokens = _numel(key) // key.shape[-1]
    batched_first = module.batch_first and len(key.shape) == 3
    seq_k = key.shape[1] if batched_first else key.shape[0]
    projections = q_tokens * embed * embed + kv_tokens * (kdim + vdim) * embed
    scores = 2 * q_tokens * seq_k * embed
    return projections + scores + q_tokens * embed * embed


def function_macs(target: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> int:
    """Mult-adds of one functional op between modules (``F.linear``, ``matmul``, ``@``, ``conv``)."""
    if not outputs or not inputs:
        return 0
    out = _numel(outputs[0])
    short = target.rsplit(".", 1)[-1]
    if short in ("linear",) and len(inputs) >= 2 and inputs[1].shape:
        return out * inputs[1].shape[-1]
    if short in ("matmul", "mm", "bmm", "baddbmm", "addmm", "einsum_matmul") and inputs[0].shape:
        a = inputs[-2] if short in ("addmm", "baddbmm") and len(inputs) >= 3 else inputs[0]
        return out * a.shape[-1] if a.shape else 0
    if short.startswith("conv") and not short.startswith("conv_transpose") and len(inputs) >= 2:
        weight = inputs[1].shape
        return out * prod(weight[1:]) if len(weight) >= 2 else 0
    if short == "scaled_dot_product_attention" and len(inputs) >= 3:
        q, k = inputs[0].shape, inputs[1].shape
        if len(q) >= 2 and len(k) >= 2:
            return 2 * prod(q[:-1]) * k[-2] * q[-1]
    return 0

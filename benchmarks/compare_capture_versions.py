"""Is the architecture text the same under two Pythons (two torch releases, or two hash seeds)?

    python benchmarks/compare_capture_versions.py PYTHON_A PYTHON_B

Each interpreter must be able to import torch and pytest_modelviz (``pip install --no-deps -e .``
into the second environment is enough). The script runs itself under each one with a different
``PYTHONHASHSEED`` and captures a zoo of plain-torch models (defined below; no torchvision, so any
torch 2.x build works), once on CPU and once on the meta device. It prints:

- a unified diff of ``to_text()`` for every model whose text differs between the two Pythons;
- every model whose meta-device text differs from its CPU text (per Python);
- every text that contains an address (``0x``), a file path, an ATen name or a device;
- a one-line summary, and exits 1 when anything differed.

Run it with the same interpreter twice to check hash-seed and process independence alone.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# Things the text must never contain: memory addresses, file paths, ATen op names, devices.
FORBIDDEN = {
    "address": re.compile(r"0x[0-9a-fA-F]"),
    "path": re.compile(r"(^|[\s(='\"])/\w|\w:\\|\.py\b"),
    "aten name": re.compile(r"aten::|aten\.|_ops\b|OpOverload"),
    "device": re.compile(r"\b(cpu|cuda|meta)\b"),
}


# ---------------------------------------------------------------- the zoo (runs in the child)


def zoo() -> dict[str, tuple[Callable[[], Any], Callable[[str], tuple[tuple[Any, ...], dict[str, Any]]]]]:
    """name -> (build the model, make (args, kwargs) on a device). Plain torch only."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvBN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1, bias=False),
                nn.BatchNorm2d(8),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1, groups=2),
                nn.BatchNorm2d(16, momentum=0.2),
                nn.ReLU6(),
                nn.AvgPool2d(2, stride=1),
                nn.Dropout2d(0.1),
                nn.AdaptiveAvgPool2d((1, 1)),
            )
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x)
            x = F.max_pool2d(x, 1)
            x = F.avg_pool2d(x, kernel_size=1, stride=1)
            x = F.adaptive_max_pool2d(x, 1)
            return F.log_softmax(self.head(x), dim=-1)

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(30, 8, padding_idx=0)
            self.lstm = nn.LSTM(8, 12, num_layers=2, batch_first=True, bidirectional=True)
            self.gru = nn.GRU(24, 6, batch_first=True)
            self.rnn = nn.RNN(6, 4, nonlinearity="relu", batch_first=True)
            self.cell = nn.LSTMCell(4, 4)
            self.gcell = nn.GRUCell(4, 4)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            h, _ = self.lstm(self.emb(tokens))
            h, _ = self.gru(h)
            h, _ = self.rnn(h)
            hx, cx = self.cell(h[:, -1])
            return self.gcell(hx, cx)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(40, 16)
            layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(16, eps=1e-6)
            self.attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=8, batch_first=True)
            self.kv = nn.Linear(16, 8)

        def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = self.encoder(self.emb(tokens), src_key_padding_mask=mask)
            kv = self.kv(h)
            out, weights = self.attn(h, kv, kv, need_weights=True)
            return self.norm(out + h) * weights.mean()

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = nn.Transformer(
                d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16,
                dropout=0.0, batch_first=True,
            )

        def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
            # tgt_is_causal spares the mask check that reads values (impossible on meta).
            return self.transformer(src, tgt, tgt_mask=mask, tgt_is_causal=True)

    class Activations(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.acts = nn.Sequential(
                nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.Mish(), nn.Hardswish(),
                nn.LeakyReLU(0.2), nn.ELU(), nn.Softplus(beta=2.0), nn.Tanh(), nn.Sigmoid(),
                nn.Softmax(dim=-1), nn.LogSoftmax(dim=1), nn.PReLU(), nn.Identity(), nn.Hardtanh(-2.0, 2.0),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.acts(self.fc(x))
            x = F.gelu(x) + F.gelu(x, approximate="tanh")
            x = F.silu(x) * torch.sigmoid(x) - torch.tanh(x)
            x = F.softmax(x, dim=-1) + F.log_softmax(x, -1) + x.softmax(1)
            x = F.leaky_relu(x, 0.1) + F.elu(x) + F.hardtanh(x) + torch.relu(x) + x.relu()
            x = F.dropout(x, p=0.2, training=self.training) + F.normalize(x, dim=-1)
            x = torch.clamp(x, min=-1.0, max=1.0) + x.clamp(0.0) + x.abs() + x.exp().log1p()
            return F.layer_norm(x, (8,)) + x.pow(2).sqrt() + x**2 + 1.0 / (x.abs() + 1.0)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(16, 48)
            self.out = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            q, k, v = (y.reshape(b, t, 2, 8).transpose(1, 2) for y in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            y2 = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, scale=0.5)
            scores = torch.einsum("bhtd,bhsd->bhts", q, k) / 8**0.5
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            y3 = torch.einsum("bhts,bhsd->bhtd", scores.softmax(-1), v)
            y = (y + y2 + y3).permute(0, 2, 1, 3).contiguous().view(b, t, 16)
            return self.out(y) @ self.out.weight.T

    class Shapes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 12)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            a, b = x.split(6, dim=-1)
            c, d, e = torch.split(x, [4, 4, 4], dim=1)
            parts = torch.chunk(x, 2, 1)
            y = torch.cat([a, b], dim=-1) + torch.stack([c, d, e], 0).sum(0).repeat(1, 3) + torch.cat(parts, 1)
            y = y.unsqueeze(0).squeeze(0).flatten().reshape(2, 12).permute(1, 0).transpose(0, 1)
            y = y[:, 1:] .narrow(1, 0, 10)[..., None].expand(2, 10, 3).reshape(2, -1)[:, :12]
            y = torch.where(y > 0, y, torch.zeros_like(y)) + torch.where(y < 0, y, 0.5)
            y = y.masked_fill(y > 0.9, 0.0)
            z = y.clone()
            z[:, 0] = 1.0
            z += 1
            z.mul_(2).add_(y, alpha=0.5).relu_()
            z = z.mean(dim=1, keepdim=True) + z.amax(-1, keepdim=True) + z.max(dim=1, keepdim=True).values
            z = z.expand_as(y) + y.t().t() + y.T.T
            return self.fc(z), torch.topk(z, 2, dim=-1).indices, z.argmax(-1), torch.flip(z, [1])

    class ImageOps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.up_bi = nn.Upsample(size=(16, 16), mode="bilinear", align_corners=False)
            self.deconv = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)
            self.gn = nn.GroupNorm(2, 4)
            self.inorm = nn.InstanceNorm2d(4, affine=True)
            self.shuffle = nn.PixelShuffle(2)
            self.unshuffle = nn.PixelUnshuffle(2)
            self.conv = nn.Conv2d(4, 16, 1)
            self.pad = nn.ZeroPad2d((1, 1, 2, 0))
            self.reflect = nn.ReflectionPad2d(1)
            self.conv1d = nn.Conv1d(4, 4, 3, padding="same", dilation=2)
            self.bn1d = nn.BatchNorm1d(4, affine=False, track_running_stats=False)
            self.ident = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.gn(self.deconv(x))
            y = y + self.up(x) + F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
            y = y + F.interpolate(x, size=(16, 16)) + self.up_bi(x)
            y = self.inorm(y)
            y = self.shuffle(self.conv(y))
            y = self.unshuffle(y)[:, :4]
            y = self.reflect(self.pad(y))
            y = F.pad(y, (1, 1)) + F.pad(y, [1, 1, 0, 0], mode="constant", value=0.5)
            y = F.pad(y, (0, 0, 1, 1), mode="replicate")
            s = self.bn1d(self.conv1d(y.flatten(2)))
            return self.ident(F.avg_pool1d(s, 2))

    class EmbedNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(50, 16, max_norm=None)
            self.pos = nn.Parameter(torch.zeros(1, 8, 16))
            self.norm = nn.LayerNorm(16)
            self.norm_nobias = nn.LayerNorm(16, elementwise_affine=True, bias=False)
            self.bag = nn.EmbeddingBag(50, 4, mode="mean")
            self.rms = nn.RMSNorm(16) if hasattr(nn, "RMSNorm") else nn.Identity()
            self.register_buffer("scale", torch.ones(16))

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            h = self.tok(tokens) + self.pos[:, : tokens.shape[1]]
            h = self.norm_nobias(self.norm(h)) * self.scale
            h = self.rms(h)
            bag = self.bag(tokens)
            return torch.cat([h.mean(1), bag], dim=-1)

    class Pools(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv3d = nn.Conv3d(2, 2, (1, 3, 3), padding=(0, 1, 1))
            self.bn3d = nn.BatchNorm3d(2)
            self.pool3d = nn.MaxPool3d((1, 2, 2))
            self.pool1d = nn.MaxPool1d(2, stride=2, return_indices=False)
            self.unfold = nn.Unfold(kernel_size=2, stride=2)
            self.fold = nn.Fold(output_size=(4, 4), kernel_size=2, stride=2)
            self.bilinear = nn.Bilinear(4, 4, 3)
            self.cos = nn.CosineSimilarity(dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.pool3d(self.bn3d(self.conv3d(x)))  # [1, 2, 2, 4, 4]
            flat = y.reshape(1, 4, 16)
            z = self.pool1d(flat)  # [1, 4, 8]
            img = y.reshape(1, 4, 4, 4)
            patches = self.unfold(img)
            img = self.fold(patches)
            v = img.mean((2, 3))
            w = self.bilinear(v, v)
            return self.cos(w, w).unsqueeze(-1) + z.sum() + F.max_pool2d(img, 2, 2).sum()

    class Functional(nn.Module):
        """Layers written as functional calls on the module's own parameters."""

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(8, 4, 3, 3))
            self.b = nn.Parameter(torch.zeros(8))
            self.lin = nn.Parameter(torch.zeros(5, 8))
            self.scale = nn.Linear(1, 1)  # one child, so the functional calls are seen one by one

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.conv2d(x, self.w, self.b, padding=1)
            y = F.batch_norm(y, None, None, training=True)
            y = F.max_pool2d(y, 2)
            y = F.max_pool2d(y, kernel_size=2, stride=2, padding=0)
            y = F.adaptive_avg_pool2d(y, 1).flatten(1)
            y = F.linear(y, self.lin)
            y = torch.matmul(y, y.transpose(0, 1)) + torch.bmm(y[None], y.T[None])[0] + torch.mm(y, y.T)
            return self.scale(y[..., :1])

    class Numerics(nn.Module):
        """Ops torch keeps in C modules under prefixed names (``linalg_qr``, ``fft_rfft``)."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.fc(x)
            q, r = torch.linalg.qr(a @ a.T + torch.eye(4, device=x.device))
            n = torch.linalg.norm(a, dim=-1, keepdim=True) + torch.linalg.vector_norm(a, ord=2)
            s = torch.special.erf(a) + torch.special.expit(a) + torch.special.logsumexp(a, 1, keepdim=True)
            f = torch.fft.rfft(a, dim=-1).abs()[..., :2] + torch.fft.fft(a).real[..., :2]
            return torch.cat([q @ r + n + s, f, a.norm(dim=1, keepdim=True), torch.cumsum(a, 1)], dim=1)

    def ids(shape: tuple[int, ...], high: int) -> Callable[[str], Any]:
        return lambda device: torch.randint(1, high, shape, device=device)

    def rand(*shape: int) -> Callable[[str], Any]:
        return lambda device: torch.randn(*shape, device=device)

    def positional(*makers: Callable[[str], Any]) -> Callable[[str], tuple[tuple[Any, ...], dict[str, Any]]]:
        return lambda device: (tuple(m(device) for m in makers), {})

    def encoder_inputs(device: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        mask = torch.zeros(2, 6, dtype=torch.bool, device=device)
        return (torch.randint(1, 40, (2, 6), device=device), mask), {}

    return {
        "ConvBN": (ConvBN, positional(rand(2, 3, 16, 16))),
        "Recurrent": (Recurrent, positional(ids((2, 5), 30))),
        "Encoder": (Encoder, encoder_inputs),
        "Decoder": (Decoder, positional(rand(2, 5, 8), rand(2, 4, 8))),
        "Activations": (Activations, positional(rand(3, 8))),
        "Attention": (Attention, positional(rand(2, 5, 16))),
        "Shapes": (Shapes, positional(rand(2, 12))),
        "ImageOps": (ImageOps, positional(rand(1, 4, 8, 8))),
        "EmbedNorm": (EmbedNorm, positional(ids((2, 8), 50))),
        "Pools": (Pools, positional(rand(1, 2, 2, 8, 8))),
        "Functional": (Functional, positional(rand(2, 4, 8, 8))),
        "Numerics": (Numerics, positional(rand(4, 4))),
    }


def capture_zoo() -> dict[str, dict[str, str]]:
    """name -> {"cpu": text, "cpu-train": text, "meta": text} (or the error that stopped it)."""
    import torch

    from pytest_modelviz import capture

    out: dict[str, dict[str, str]] = {}
    for name, (build, inputs) in zoo().items():
        torch.manual_seed(0)
        texts: dict[str, str] = {}
        for mode in ("cpu", "cpu-train", "meta"):
            device = "meta" if mode == "meta" else "cpu"
            try:
                with torch.device(device):
                    model = build()
                model.train(mode == "cpu-train")
                args, kwargs = inputs(device)
                texts[mode] = capture(model, *args, **kwargs).to_text()
            except Exception as exc:  # noqa: BLE001 - reported as a difference, never hidden
                texts[mode] = f"ERROR {type(exc).__name__}: {exc}\n"
        out[name] = texts
    return out


def child() -> None:
    import torch

    if os.environ.get("MODELVIZ_DUMP"):
        for name, texts in capture_zoo().items():
            print(f"##### {name}\n{texts['cpu']}")
        return
    json.dump({"torch": torch.__version__, "texts": capture_zoo()}, sys.stdout)


# ---------------------------------------------------------------- the comparison (runs in the parent)


def run(python: str, hashseed: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    proc = subprocess.run([python, str(HERE), "--child"], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{python} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def forbidden(text: str) -> list[str]:
    return [f"{what}: {m.group(0)!r}" for what, rx in FORBIDDEN.items() for m in [rx.search(text)] if m]


def compare(a: dict[str, Any], b: dict[str, Any], label_a: str, label_b: str) -> int:
    problems = 0
    for name in a["texts"]:
        for mode in a["texts"][name]:
            ta, tb = a["texts"][name][mode], b["texts"][name].get(mode, "")
            if ta != tb:
                problems += 1
                print(f"=== {name} ({mode}): {label_a} vs {label_b}")
                sys.stdout.writelines(difflib.unified_diff(ta.splitlines(True), tb.splitlines(True), label_a, label_b))
    for label, result in ((label_a, a), (label_b, b)):
        for name, texts in result["texts"].items():
            if texts["meta"] != texts["cpu"]:
                problems += 1
                print(f"=== {name}: meta vs cpu under {label}")
                cpu, meta = texts["cpu"].splitlines(True), texts["meta"].splitlines(True)
                sys.stdout.writelines(difflib.unified_diff(cpu, meta, "cpu", "meta"))
            for mode, text in texts.items():
                for hit in forbidden(text):
                    problems += 1
                    print(f"=== {name} ({mode}) under {label} contains a {hit}")
    return problems


def main(argv: list[str]) -> int:
    if argv[1:] == ["--child"]:
        child()
        return 0
    if len(argv) != 3:
        print(__doc__)
        return 2
    a, b = run(argv[1], "0"), run(argv[2], "4242")
    label_a, label_b = f"torch {a['torch']} (A)", f"torch {b['torch']} (B)"
    problems = compare(a, b, label_a, label_b)
    models = len(a["texts"])
    print(f"{models} models x {len(next(iter(a['texts'].values())))} captures: {label_a} vs {label_b}: "
          f"{'identical' if not problems else f'{problems} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

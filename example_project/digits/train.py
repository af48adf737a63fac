"""Train a digit classifier and save its weights.

    python -m digits.train --epochs 1 --device cpu --out ckpt.pt

Run it from ``example_project/`` (or with ``example_project`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from digits.data import Digits
from digits.models import MODELS, build


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {requested}: CUDA is not available here; use --device cpu")
    return torch.device(requested)


def loaders(batch_size: int, *, seed: int = 0, limit: int | None = None) -> tuple[DataLoader, DataLoader]:
    """Train (shuffled with a seeded generator, so the order repeats) and test loaders."""
    train = Digits("train", indices=range(limit) if limit else None)
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator),
        DataLoader(Digits("test"), batch_size=256),
    )


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                device: torch.device) -> float:
    """One pass over ``loader``; the mean loss."""
    model.train()
    total, seen = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        seen += len(labels)
    return total / max(seen, 1)


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Fraction of ``loader`` classified correctly, on whatever device the model is on."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, labels in loader:
        predicted = model(images.to(device)).argmax(dim=1).cpu()
        correct += int((predicted == labels).sum())
        total += len(labels)
    model.train(was_training)
    return correct / max(total, 1)


def accuracy_every(loader: DataLoader) -> Callable[[nn.Module, int], dict[str, float]]:
    """An ``eval_fn(model, step)`` for ``short_train``: test accuracy."""
    return lambda model, step: {"accuracy": accuracy(model, loader)}


def save_checkpoint(model: nn.Module, path: Path) -> None:
    # A state_dict, never the pickled module: it loads with weights_only=True, so no code runs.
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)


def load_checkpoint(model: nn.Module, path: Path, device: str | torch.device = "cpu") -> nn.Module:
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device)


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(prog="python -m digits.train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="convnet")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="train on only the first N samples")
    parser.add_argument("--out", type=Path, default=Path("ckpt.pt"))
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    model = build(args.model, seed=args.seed).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    train_loader, test_loader = loaders(args.batch_size, seed=args.seed, limit=args.limit)
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, train_loader, optimizer, device)
        print(f"epoch {epoch}: loss {loss:.4f}  test accuracy {accuracy(model, test_loader):.3f}")
    save_checkpoint(model, args.out)
    restored = load_checkpoint(build(args.model), args.out, device)
    final = accuracy(restored, test_loader)
    print(f"saved {args.out} (reloaded: test accuracy {final:.3f})")
    return final


if __name__ == "__main__":
    main()

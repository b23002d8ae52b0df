"""Train the shipped Fashion-MNIST CNN (``cv.load_model("fashion_cnn")``) on the CPU.

    .venv/bin/python scripts/train_fashion_cnn.py        # 5 epochs: 12 minutes on 1 busy core

Writes ``cnnvis_widget/zoo/fashion_cnn.pt`` (a plain state dict of float32 tensors) and
``cnnvis_widget/zoo/fashion_cnn.json`` (test accuracy, seed, command, epochs, SHA-256 of the
weights file), and prints the test accuracy. The data comes from
``cnnvis_widget.datasets.fashion_mnist`` (Debian's ``dataset-fashion-mnist``; ``make data``).

Recipe: SGD with Nesterov momentum 0.9, weight decay 5e-4, batch 128, one-cycle learning
rate (peak 0.1), label smoothing 0.1, 5 epochs, no augmentation (``--augment`` adds a random
crop from the image padded by 2 pixels and a horizontal flip: worth it for longer runs
only). Python, numpy and torch are seeded, deterministic algorithms are on, and batches
are cut straight from the ``.data`` / ``.targets`` tensors (no PIL in the loop).

One thread by default: on 2 cores that something else keeps busy (a test suite), 2 intra-op
threads made a step 4x slower (each waits for the other at every op); ``--threads 2`` on an
idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnvis_widget.datasets import fashion_mnist  # noqa: E402
from cnnvis_widget.zoo.fashion_cnn import INFO, MEAN, STD, WEIGHTS, FashionCNN  # noqa: E402

COMMAND = ".venv/bin/python scripts/train_fashion_cnn.py"


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # Filling every new tensor with NaN (the deterministic mode's default) costs ~20% here
    # and changes no result: every kernel used writes its whole output.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    return torch.Generator().manual_seed(seed)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalized float (N, 1, 28, 28)."""
    return (pixels.unsqueeze(1).float() / 255.0 - MEAN[0]) / STD[0]


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random crop of the image padded with ``pad`` background pixels, and a random
    horizontal flip, per sample of a normalized batch (N, 1, H, W)."""
    n, _, h, w = x.shape
    background = (0.0 - MEAN[0]) / STD[0]
    padded = F.pad(x, (pad, pad, pad, pad), value=background)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (N, 1, W)
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


@torch.no_grad()
def accuracy(model: FashionCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), 1000):
        logits = model(normalize(images[start : start + 1000]))
        correct += int((logits.argmax(1) == labels[start : start + 1000]).sum())
    return correct / len(labels)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--augment", action="store_true", help="random crop and flip")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="weights file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    generator = seed_everything(args.seed)
    train, test = fashion_mnist("train"), fashion_mnist("test")
    model = FashionCNN()
    steps_per_epoch = (len(train) + args.batch_size - 1) // args.batch_size
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), args.batch_size):
            index = order[start : start + args.batch_size]
            x = normalize(train.data[index])
            if args.augment:
                x = augment(x, generator)
            loss = F.cross_entropy(model(x), train.targets[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(index)
        test_acc = accuracy(model, test.data, test.targets)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total_loss / len(order):.4f}, "
            f"test accuracy {test_acc:.4f}, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    seconds = time.perf_counter() - started
    test_acc = accuracy(model, test.data, test.targets)

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    command = COMMAND
    defaults = {"epochs": 5, "batch_size": 128, "lr": 0.1, "seed": 0, "threads": 1}
    for key, default in defaults.items():
        if getattr(args, key) != default:
            command += f" --{key.replace('_', '-')} {getattr(args, key)}"
    if args.augment:
        command += " --augment"
    info = {
        "model": "fashion_cnn",
        "test_accuracy": round(test_acc, 4),
        "test_images": len(test),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "peak_lr": args.lr,
        "augment": args.augment,
        "command": command,
        "training_seconds": round(seconds),
        "threads": args.threads,
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights": args.out.name,
        "sha256": sha256(args.out),
    }
    sidecar = args.out.with_suffix(".json") if args.out != WEIGHTS else INFO
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    print(f"test accuracy {test_acc:.4f} ({len(test)} images), trained in {seconds:.0f} s")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {sidecar}")


if __name__ == "__main__":
    main()

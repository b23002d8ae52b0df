"""Train the shipped an8Flower CNN (``cv.load_model("flower_cnn")``) on the CPU.

    .venv/bin/python scripts/train_flower_cnn.py                    # see flower_cnn.json
    .venv/bin/python scripts/train_flower_cnn.py --variant double   # flower_cnn_double.json

Writes ``cnnvis_widget/zoo/flower_cnn.pt`` (a plain state dict of float32 tensors) and
``cnnvis_widget/zoo/flower_cnn.json`` (held-out accuracy, seed, command, epochs, SHA-256 of
the weights file), and prints the held-out accuracy. The data is drawn by
``cnnvis_widget.datasets.an8flower.an8flower`` (variant "single", 112 x 112): the train
split to learn from, the test split (a separate random stream) to measure.

``--variant double`` trains the same architecture with 12 outputs on the double variant (the
class is the colour pair of center and leaves) and writes ``flower_cnn_double.pt`` /
``flower_cnn_double.json`` (``cv.load_model("flower_cnn_double")``); its defaults (epochs,
images a class) are in ``VARIANT_DEFAULTS``.

Recipe: Adam, weight decay 1e-4, batch 32, one-cycle learning rate (peak 1e-2), plain
cross-entropy, no augmentation (every image is a new draw of position, scale, tilt and
colours already). Python, numpy and torch are seeded and deterministic algorithms are on;
the images are drawn once into a uint8 tensor (no PIL in the loop).

One thread by default (2 shared cores: see scripts/train_fashion_cnn.py); ``--threads 2``
on an idle machine.
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

from cnnvis_widget.datasets.an8flower import An8Flower, an8flower  # noqa: E402
from cnnvis_widget.zoo import flower_cnn, flower_cnn_double  # noqa: E402
from cnnvis_widget.zoo.flower_cnn import MEAN, SIZE, STD, FlowerCNN  # noqa: E402

# variant -> (model name, weights file, sidecar)
MODELS = {
    "single": ("flower_cnn", flower_cnn.WEIGHTS, flower_cnn.INFO),
    "double": ("flower_cnn_double", flower_cnn_double.WEIGHTS, flower_cnn_double.INFO),
}

COMMAND = ".venv/bin/python scripts/train_flower_cnn.py"
DEFAULTS = {
    "epochs": 6,
    "train_per_class": 500,
    "test_per_class": 100,
    "batch_size": 32,
    "lr": 1e-2,
    "seed": 0,
    "threads": 1,
}
# what differs from DEFAULTS for each variant
VARIANT_DEFAULTS: dict[str, dict[str, float]] = {
    "single": {},
    "double": {"epochs": 7, "train_per_class": 250, "test_per_class": 50},
}


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    return torch.Generator().manual_seed(seed)


def pixels(dataset: An8Flower) -> tuple[torch.Tensor, torch.Tensor]:
    """All images as uint8 (N, 3, H, W) and labels int64 (N,)."""
    images = np.stack([dataset.render(i)[0] for i in range(len(dataset))])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(dataset.targets)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> the normalized model input."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


@torch.no_grad()
def accuracy(model: FlowerCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), 200):
        logits = model(normalize(images[start : start + 200]))
        correct += int((logits.argmax(1) == labels[start : start + 200]).sum())
    return correct / len(labels)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(MODELS), default="single")
    parser.add_argument("--epochs", type=int, help="default: see DEFAULTS, VARIANT_DEFAULTS")
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--test-per-class", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="weights file (default: the shipped one)")
    args = parser.parse_args()
    defaults = {**DEFAULTS, **VARIANT_DEFAULTS[args.variant]}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, type(DEFAULTS[key])(value))
    name, weights, info_path = MODELS[args.variant]
    if args.out is None:
        args.out = weights
    variant = args.variant

    torch.set_num_threads(args.threads)
    generator = seed_everything(args.seed)
    started = time.perf_counter()
    train = an8flower("train", variant, args.train_per_class, SIZE, args.seed)
    test = an8flower("test", variant, args.test_per_class, SIZE, args.seed)
    train_x, train_y = pixels(train)
    test_x, test_y = pixels(test)
    print(f"drew {len(train)} + {len(test)} images in {time.perf_counter() - started:.0f} s")

    model = FlowerCNN(len(train.classes))
    steps_per_epoch = (len(train) + args.batch_size - 1) // args.batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), args.batch_size):
            index = order[start : start + args.batch_size]
            loss = F.cross_entropy(model(normalize(train_x[index])), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(index)
        test_acc = accuracy(model, test_x, test_y)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total_loss / len(order):.4f}, "
            f"held-out accuracy {test_acc:.4f}, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    seconds = time.perf_counter() - started
    test_acc = accuracy(model, test_x, test_y)

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    command = COMMAND + ("" if variant == "single" else f" --variant {variant}")
    for key, default in defaults.items():
        if getattr(args, key) != default:
            command += f" --{key.replace('_', '-')} {getattr(args, key)}"
    info = {
        "model": name,
        "dataset": f"an8flower(variant={variant!r}, size={SIZE}, seed={args.seed})",
        "test_accuracy": round(test_acc, 4),
        "test_images": len(test),
        "train_images": len(train),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "peak_lr": args.lr,
        "command": command,
        "training_seconds": round(seconds),
        "threads": args.threads,
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights": args.out.name,
        "sha256": sha256(args.out),
    }
    sidecar = args.out.with_suffix(".json") if args.out != weights else info_path
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    print(f"held-out accuracy {test_acc:.4f} ({len(test)} images), trained in {seconds:.0f} s")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {sidecar}")


if __name__ == "__main__":
    main()

"""Train the MNIST classifier behind dcganlib's offline FID and write dcganlib/assets/mnist_classifier.pt.

mnist-5k (default, offline): trained on the 4,000-image train split, accuracy reported on the 1,000 held out
(`dcganlib.metrics.mnist_5k_split`: index % 5 == 4, 100 per digit). `--dataset mnist` (needs the download,
e.g. on Colab): trained on the 60,000 MNIST training images, accuracy reported on the 10,000 test images.

    python benchmarks/train_classifier.py            # ~1-2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision import datasets

from dcganlib.metrics import SHIPPED_CLASSIFIER, SPLIT_DESCRIPTION, MnistClassifier, mnist_5k_split

INPUT_CONVENTION = "float images in [-1, 1], 1 x 28 x 28 (uint8 0-255 also accepted by dcganlib.metrics)"


def to_float(images: Tensor) -> Tensor:
    return images.float().div(127.5).sub(1)


def load_splits(dataset: str, root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor, str]:
    """uint8 train images, labels, held-out images, labels and a description of the split."""
    if dataset == "mnist-5k":
        return *mnist_5k_split("train"), *mnist_5k_split("heldout"), SPLIT_DESCRIPTION
    train = datasets.MNIST(str(root), train=True, download=True)
    test = datasets.MNIST(str(root), train=False, download=True)
    return (train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets,
            "MNIST: 60,000 train / 10,000 test")


def augment(x: Tensor, generator: torch.Generator, max_shift: float = 2.0, max_degrees: float = 8.0) -> Tensor:
    """Random shifts (up to `max_shift` px) and small rotations; background stays at -1."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * max_shift * 2 / x.shape[-1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin()
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), angle.cos()
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    # Sample x + 1 (background 0) so the zero padding matches the background, then shift back.
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@torch.no_grad()
def accuracy(model: MnistClassifier, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(to_float(images[i : i + batch_size])).argmax(1) == labels[i : i + batch_size]).sum())
                  for i in range(0, images.shape[0], batch_size))
    return correct / images.shape[0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist-5k", "mnist"], default="mnist-5k")
    parser.add_argument("--root", type=Path, default=Path("data"), help="download folder for --dataset mnist")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=SHIPPED_CLASSIFIER)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    # Convolutions this small gain little from a second thread, and on a shared CPU they lose a lot.
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def train(model: MnistClassifier, train_x: Tensor, train_y: Tensor, held_x: Tensor, held_y: Tensor,
          generator: torch.Generator, args: argparse.Namespace) -> float:
    """AdamW with a one-cycle schedule over `args.epochs` epochs of augmented digits; returns the seconds taken."""
    steps = args.epochs * math.ceil(train_x.shape[0] / args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    # One-cycle: reaches high accuracy in few epochs, which keeps CPU training under two minutes.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(train_x.shape[0], generator=generator)
        for i in range(0, len(order), args.batch_size):
            index = order[i : i + args.batch_size].to(args.device)
            loss = F.cross_entropy(model(augment(to_float(train_x[index]), generator)), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{args.epochs}  loss {loss.item():.4f}  held-out acc "
              f"{accuracy(model, held_x, held_y):.2%}  ({time.perf_counter() - start:.0f} s)", flush=True)
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train_x, train_y, held_x, held_y, split = (
        t.to(args.device) if isinstance(t, Tensor) else t for t in load_splits(args.dataset, args.root))
    model = MnistClassifier().to(args.device)
    seconds = train(model, train_x, train_y, held_x, held_y, generator, args)
    acc = accuracy(model, held_x, held_y)
    held_name = "held-out" if args.dataset == "mnist-5k" else "test"
    metadata = {
        "description": f"{args.dataset} classifier ({held_name} acc {acc:.1%})",
        "dataset": args.dataset,
        "split": split,
        "heldout_accuracy": acc,
        "n_train": int(train_x.shape[0]),
        "n_heldout": int(held_x.shape[0]),
        "input": INPUT_CONVENTION,
        "feature_dim": model.head[1].in_features,
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "torch_version": str(torch.__version__),  # TorchVersion would not load with weights_only
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.cpu().state_dict(), "metadata": metadata}, args.out)
    size_kb = args.out.stat().st_size / 1024
    print(f"{held_name} accuracy {acc:.2%} on {held_x.shape[0]} images; trained in {seconds:.0f} s; "
          f"wrote {args.out} ({size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()

"""Cartoon faces as JPEGs the size of CelebA's (178 x 218, about 7 KB each), for what must run without a download:
the 64 px data benchmark, notebook 07 in the tests and on the docs site, and the Colab journey.

Each face is a skin-coloured ellipse with two eyes, a mouth and hair on a blurred background, at a random place,
size and colour, with a little sensor noise: enough structure for a DCGAN to learn something face-like in a few
epochs, and enough texture that its JPEGs weigh about what CelebA's do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 178, 218  # CelebA's aligned crops
SKIN = np.array([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36]])


def face(rng: np.random.Generator) -> Image.Image:
    """One cartoon face on a blurred background."""
    background = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    image = Image.fromarray(background).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    cx, cy = WIDTH * rng.uniform(0.42, 0.58), HEIGHT * rng.uniform(0.45, 0.6)
    rx, ry = WIDTH * rng.uniform(0.22, 0.3), HEIGHT * rng.uniform(0.24, 0.32)
    hair = tuple(int(v) for v in rng.integers(0, 120, 3))
    draw.ellipse((cx - rx * 1.1, cy - ry * 1.15, cx + rx * 1.1, cy + ry * 0.6), fill=hair)
    skin = tuple(int(v) for v in SKIN[rng.integers(len(SKIN))] + rng.integers(-15, 16, 3))
    draw.ellipse((cx - rx, cy - ry * 0.9, cx + rx, cy + ry), fill=skin)
    for side in (-1, 1):
        ex, ey = cx + side * rx * 0.4, cy - ry * 0.15
        draw.ellipse((ex - rx * 0.15, ey - ry * 0.08, ex + rx * 0.15, ey + ry * 0.08), fill=(250, 250, 250))
        draw.ellipse((ex - rx * 0.07, ey - ry * 0.07, ex + rx * 0.07, ey + ry * 0.07), fill=(40, 30, 20))
    smile = rng.uniform(-0.15, 0.35) * ry
    draw.arc((cx - rx * 0.4, cy + ry * 0.3 - abs(smile), cx + rx * 0.4, cy + ry * 0.5 + abs(smile)),
             start=0 if smile > 0 else 180, end=180 if smile > 0 else 360, fill=(150, 40, 50), width=3)
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 5, (HEIGHT, WIDTH, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def write_faces(folder: str | Path, count: int, seed: int = 0, quality: int = 85) -> Path:
    """`count` cartoon faces as JPEGs 000001.jpg ... in `folder` (made if needed); the same faces for a seed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(1, count + 1):
        face(rng).save(folder / f"{index:06d}.jpg", quality=quality)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_faces(args.folder, args.count, args.seed))


if __name__ == "__main__":
    main()

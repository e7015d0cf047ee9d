"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist``: arrays, or a folder per label.

    python -m bench.fashion_mnist --out DIR [--n 10000] [--split train]

writes DIR/<label name>/<index>.png, the layout ``bench.quality --images`` reads.
"""

from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
LABEL_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str = "train", root: Path = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images N×28×28 uint8, labels N uint8) of the 'train' (60k) or 't10k' (10k) split."""
    if not (root / f"{split}-images-idx3-ubyte.gz").exists():
        raise SystemExit(f"Fashion-MNIST not found in {root}: apt-get install dataset-fashion-mnist")
    return _read_idx(root / f"{split}-images-idx3-ubyte.gz"), _read_idx(root / f"{split}-labels-idx1-ubyte.gz")


def export(out: Path, n: int, split: str = "train") -> int:
    from PIL import Image

    images, labels = load(split)
    for i in range(min(n, len(images))):
        folder = out / LABEL_NAMES[labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], mode="L").save(folder / f"{split}-{i:05d}.png")
    return min(n, len(images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--split", default="train", choices=["train", "t10k"])
    args = parser.parse_args()
    print(f"wrote {export(args.out, args.n, args.split)} images under {args.out}")


if __name__ == "__main__":
    main()

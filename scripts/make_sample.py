"""Make the embedded Fashion-MNIST sample, reproducibly, from the full IDX files.

    python scripts/make_sample.py [--path DIR] [--out refimpl/datasets/fashion_mnist_sample.npz]

Draws 2,000 training and 500 test images stratified by class (200 / 50 per class) with
seed 0 (``refimpl.data.stratified_indices``) and stores them as uint8, with the labels and
the indices into the full files. The output bytes depend only on the input files and the
arguments (fixed zip timestamps), so re-running it reproduces the shipped file exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from refimpl.checkpoint import save_npz
from refimpl.data import _load_full, stratified_indices

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "refimpl" / "datasets" / "fashion_mnist_sample.npz"


def make_sample(path=None, n_train: int = 2000, n_test: int = 500, seed: int = 0) -> dict:
    """The sample's arrays: ``x_*`` uint8 (N, 28, 28), ``y_*`` uint8, ``idx_*`` int64."""
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = _load_full(split, path)
        keep = stratified_indices(labels, n, seed=seed)
        arrays[f"x_{split}"] = images[keep].astype(np.uint8)
        arrays[f"y_{split}"] = labels[keep].astype(np.uint8)
        arrays[f"idx_{split}"] = keep.astype(np.int64)
    return arrays


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", help="directory with the IDX files (default: searched)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz")
    parser.add_argument("--train", type=int, default=2000, help="training images (2000)")
    parser.add_argument("--test", type=int, default=500, help="test images (500)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    args = parser.parse_args(argv)
    arrays = make_sample(args.path, args.train, args.test, args.seed)
    save_npz(args.out, arrays, compress=True)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()

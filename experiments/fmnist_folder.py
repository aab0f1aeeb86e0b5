"""Export part of Fashion-MNIST as a `train/` + `val/` tree of PNG files: a small image folder of one's own, to try
`data=imagefolder` budgets on.

    python -m experiments.fmnist_folder OUT [--train 3000] [--test 1000]

Takes the first N images of the official train and test sets, 28x28 grey saved as-is, one folder per class.
"""

import argparse
import sys
from pathlib import Path

from roadmap import compose
from roadmap.training.data import SOURCES, check_available


def export(out: Path, n_train: int, n_test: int, overrides: tuple[str, ...] = ()) -> None:
    """The first `n_train` / `n_test` images of Fashion-MNIST (found as `run.py` finds it, `overrides` applied)."""
    data_cfg = compose(list(overrides)).data
    check_available(data_cfg)
    train, test = SOURCES[data_cfg.name](data_cfg)
    for split, dataset, n in [("train", train, n_train), ("val", test, n_test)]:
        for i in range(min(n, len(dataset))):
            image, label = dataset[i]
            folder = out / split / dataset.classes[label].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:05d}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.fmnist_folder", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=3000, help="images from the official train set")
    parser.add_argument("--test", type=int, default=1000, help="images from the official test set (the tree's val/)")
    args = parser.parse_args(argv)
    export(args.out, args.train, args.test)
    print(f"wrote {args.out}/train and {args.out}/val")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seconds to hold the proxy's splits in memory, image by image (each image through the whole transform, as before
c5720d7) against `roadmap.training.data.stacked` (the transforms from ToImage on once on the whole stack), one thread; and
whether the two give the same tensors bit for bit. Run from the repository root: `python docs/speed/eighth/stacking.py`."""

import time

import torch

from roadmap import compose
from roadmap.training import recipe
from roadmap.training.data import build_splits, stacked, without_flip


def image_by_image(split):
    images, labels = zip(*(split[i] for i in range(len(split))))
    return torch.stack(images), torch.tensor(labels)


def timed(make):
    torch.manual_seed(0)
    start = time.perf_counter()
    images, labels = make()
    return images, labels, time.perf_counter() - start


torch.set_num_threads(1)
cfg = compose(["data=fashion_mnist", "budget=fmnist_eighth_20ep", "+step=sep_downsample"])
splits = build_splits(cfg.data, cfg.budget, recipe.as_trained(cfg.recipe, cfg.budget))
totals = [0.0, 0.0]
for name, split in [("train", without_flip(splits.train)), ("val", splits.val), ("test", splits.test)]:
    before, after = timed(lambda: image_by_image(split)), timed(lambda: stacked(split))
    same = torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    totals = [totals[0] + before[2], totals[1] + after[2]]
    print(f"{name}: {len(split)} images, image by image {before[2]:.2f} s, whole stack {after[2]:.2f} s, "
          f"equal bit for bit: {same}")
print(f"all three splits: image by image {totals[0]:.2f} s, whole stack {totals[1]:.2f} s")

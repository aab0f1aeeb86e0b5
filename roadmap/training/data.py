"""The data of a run: torchvision datasets split into train / val / test, with the recipe's transforms.

- train: the official train set minus a held-out val slice (optionally only its first `train_subset` images),
- val: that slice, `val_size` images of a fixed permutation (seed 0) of the official train set: per-epoch metrics,
- test: the official test set (an image folder's `val/`, as ImageNet reports): the run's final accuracy.
"""

import gzip
import importlib.util
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from roadmap.errors import ConfigError
from roadmap.files import write_atomically
from roadmap.training import shards
from roadmap.training.augment import randaugment

FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")


class DataError(ConfigError):
    """Data that cannot be read or split as configured; the message is one line saying what to do."""


class TransformedSubset(Dataset):
    """`indices` of a dataset returning (PIL image, label), each image through `transform`."""

    def __init__(self, dataset: Dataset, indices, transform):
        self.dataset, self.indices, self.transform = dataset, list(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.dataset[self.indices[i]]
        return self.transform(image), label


class Timed(Dataset):
    """A dataset's (image, label) items with the seconds spent reading and transforming each: how fast the
    loader itself runs, apart from how fast training takes its batches."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        start = time.perf_counter()
        image, label = self.dataset[i]
        return image, label, time.perf_counter() - start


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    description: dict  # per split: number of images and where they come from, for the run's record


def train_transform(data_cfg, budget_cfg, recipe_cfg) -> v2.Compose:
    interpolation = v2.InterpolationMode(recipe_cfg.interpolation)
    # On the PIL image: RandAugment's geometric ops take bicubic interpolation on PIL images only.
    steps = [
        v2.RandomResizedCrop(data_cfg.image_size, scale=tuple(budget_cfg.crop_scale), interpolation=interpolation,
                             antialias=True),
        v2.RandomHorizontalFlip(recipe_cfg.hflip),
    ]
    if recipe_cfg.randaugment:
        steps.append(randaugment(recipe_cfg, data_cfg))
    return v2.Compose([*steps, v2.ToImage()])  # uint8: the rest runs on the device (roadmap.training.augment.OnDevice)


def eval_transform(data_cfg, recipe_cfg) -> v2.Compose:
    size = data_cfg.image_size
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(round(size / data_cfg.eval_crop_ratio), interpolation=v2.InterpolationMode(recipe_cfg.interpolation),
                  antialias=True),
        v2.CenterCrop(size),
    ])


def _root(data_cfg) -> Path:
    root = Path(os.path.expanduser(str(data_cfg.root)))
    if root.exists() and not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"data.root={root}: not readable; fix its permissions or point data.root elsewhere")
    return root


def _unpack_packaged_fashion_mnist(packaged_dir: Path, raw_dir: Path) -> bool:
    """Decompress Debian's Fashion-MNIST (`*.gz`) into the layout torchvision reads; False if it is not installed."""
    if not all((packaged_dir / f"{name}.gz").is_file() for name in FASHION_MNIST_FILES):
        return False
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        target = raw_dir / name
        if target.is_file():
            continue
        with gzip.open(packaged_dir / f"{name}.gz") as src:
            write_atomically(target, lambda partial: partial.write_bytes(src.read()))
    return True


def _find_fashion_mnist(data_cfg) -> Path:
    """The root holding FashionMNIST/raw, filled from Debian's package when needed; DataError if it cannot be."""
    root = _root(data_cfg)
    raw_dir = root / "FashionMNIST" / "raw"
    if all((raw_dir / name).is_file() for name in FASHION_MNIST_FILES):
        return root
    try:
        found = _unpack_packaged_fashion_mnist(Path(data_cfg.packaged_dir), raw_dir)
    except OSError as e:
        raise DataError(f"data.root={root}: cannot write the decompressed Fashion-MNIST there ({e.strerror}); "
                        "set data.root to a writable folder") from None
    if not found and not data_cfg.download:
        raise DataError(f"Fashion-MNIST not found in {raw_dir} nor {data_cfg.packaged_dir}: install the Debian "
                        "package dataset-fashion-mnist, set data.root to a folder holding FashionMNIST/raw, "
                        "or set data.download=true")
    return root


def _fashion_mnist(data_cfg) -> tuple[Dataset, Dataset]:
    """From data.root, else Debian's package, else downloaded by torchvision (data.download, the default)."""
    root = _find_fashion_mnist(data_cfg)
    try:
        return (datasets.FashionMNIST(root, train=True, download=data_cfg.download),
                datasets.FashionMNIST(root, train=False, download=data_cfg.download))
    except (RuntimeError, OSError) as e:  # torchvision's "Error downloading ...", a URLError, a full disk
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"Fashion-MNIST is not in {root / 'FashionMNIST' / 'raw'} nor {data_cfg.packaged_dir}, and "
                        f"torchvision could not download or read it ({reason.rstrip(':')}): install the Debian package "
                        "dataset-fashion-mnist, or copy its four files into that raw folder") from None


def _cifar_class(data_cfg) -> type[datasets.CIFAR10]:
    return datasets.CIFAR10 if data_cfg.name == "cifar10" else datasets.CIFAR100


def _cifar(data_cfg) -> tuple[Dataset, Dataset]:
    root, cls = _root(data_cfg), _cifar_class(data_cfg)
    try:
        return (cls(root, train=True, download=data_cfg.download),
                cls(root, train=False, download=data_cfg.download))
    except RuntimeError:
        raise DataError(f"{data_cfg.name} not found or corrupted in {root / cls.base_folder}: set data.root to the "
                        "folder holding it, or data.download=true") from None


@lru_cache(maxsize=1)
def _list_image_folder(root: Path) -> tuple[datasets.ImageFolder, datasets.ImageFolder]:
    """The image files of `root`'s train/ and val/, listed once per process: run.py's pre-launch check and the
    run it launches share the listing, minutes long for ImageNet on a network filesystem."""
    return datasets.ImageFolder(root / "train"), datasets.ImageFolder(root / "val")


def _image_folder(data_cfg) -> tuple[Dataset, Dataset]:
    check_available(data_cfg)
    root = _root(data_cfg)
    try:
        train, test = _list_image_folder(root)
    except (FileNotFoundError, PermissionError) as e:
        raise DataError(f"data.root={root}: {e}") from None
    if train.classes != test.classes:
        raise DataError(f"data.root={root}: train/ and val/ hold different class folders")
    if len(train.classes) != data_cfg.num_classes:
        raise DataError(f"data.num_classes={data_cfg.num_classes}: {root / 'train'} holds {len(train.classes)} class "
                        f"folders; set data.num_classes={len(train.classes)}")
    return train, test


def _require(package: str, data_cfg) -> None:
    if importlib.util.find_spec(package) is None:
        raise DataError(f"data={data_cfg.name} reads with the {package} package, which is not installed: "
                        "pip install 'convnext-roadmap[formats]' (or pip install -e '.[formats]' in a clone)")


def _hub_copy(data_cfg) -> tuple[Dataset, Dataset]:
    _require("datasets", data_cfg)
    from roadmap.training import huggingface  # imports `datasets`, seconds long: only for data=huggingface

    return huggingface.load_splits(data_cfg)


def _shard_index(data_cfg) -> dict:
    """The shards' index, checked against the data config; DataError (a ShardError) if they do not agree."""
    _require("webdataset", data_cfg)
    root = _root(data_cfg)
    index = shards.read_index(root)
    if len(index["classes"]) != data_cfg.num_classes:
        raise DataError(f"data.num_classes={data_cfg.num_classes}: the shards in {root} hold "
                        f"{len(index['classes'])} classes; set data.num_classes={len(index['classes'])}")
    if index["val_size"] != data_cfg.val_size:
        raise DataError(f"data.val_size={data_cfg.val_size}: the shards in {root} hold out {index['val_size']} "
                        f"images; set data.val_size={index['val_size']} or write the shards with --val-size")
    return index


def check_available(data_cfg) -> None:
    """Raise DataError, before anything is loaded, when the data is neither on disk nor to be downloaded."""
    if data_cfg.name == "fashion_mnist":
        _find_fashion_mnist(data_cfg)
        return
    if data_cfg.name == "webdataset":
        _shard_index(data_cfg)
        return
    if data_cfg.name == "huggingface":
        _hub_copy(data_cfg)
        return
    root = _root(data_cfg)
    if data_cfg.name == "imagefolder":
        if not (root / "train").is_dir() or not (root / "val").is_dir():
            raise DataError(f"data.root={root}: expected train/ and val/ folders of class folders (ImageNet layout)")
    elif not data_cfg.download and not (root / _cifar_class(data_cfg).base_folder).is_dir():
        raise DataError(f"{data_cfg.name} not found in {root / _cifar_class(data_cfg).base_folder}: set data.root to "
                        "the folder holding it, or data.download=true")


SOURCES = {"fashion_mnist": _fashion_mnist, "cifar10": _cifar, "cifar100": _cifar, "imagefolder": _image_folder,
           "huggingface": _hub_copy}
TEST_SOURCE = {"imagefolder": "the folder's val/ (ImageNet's validation set)",
               "webdataset": "the test shards (the image folder's val/)"}


def _shard_splits(data_cfg, budget_cfg, train_tf, eval_tf) -> Splits:
    """The splits `python -m roadmap.training.shards` wrote, the val slice and the train subset taken there."""
    root, index = _root(data_cfg), _shard_index(data_cfg)
    train = shards.ShardSplit(root, index["splits"]["train"], train_tf, limit=budget_cfg.train_subset)
    val = shards.ShardSplit(root, index["splits"]["heldout"], eval_tf)
    test = shards.ShardSplit(root, index["splits"]["test"], eval_tf)
    subset = f", first {len(train)}" if budget_cfg.train_subset is not None else ""
    return Splits(train=train, val=val, test=test, description={
        "train": {"images": len(train), "source": f"train shards: the folder's train/ minus the val slice{subset} "
                                                  "(fixed permutation, seed 0)"},
        "val": {"images": len(val), "source": "held-out shards: the slice of train/ (seed 0)"},
        "test": {"images": len(test), "source": TEST_SOURCE["webdataset"]},
    })


def build_splits(data_cfg, budget_cfg, recipe_cfg) -> Splits:
    """Train, val and test datasets of (CHW uint8 image tensor, class index), augmented but for what
    `roadmap.training.augment.OnDevice` does a batch at a time; DataError if the data is unreadable or the train set
    cannot hold the val slice."""
    train_tf, eval_tf = train_transform(data_cfg, budget_cfg, recipe_cfg), eval_transform(data_cfg, recipe_cfg)
    if data_cfg.name == "webdataset":
        return _shard_splits(data_cfg, budget_cfg, train_tf, eval_tf)
    official_train, official_test = SOURCES[data_cfg.name](data_cfg)
    order = torch.randperm(len(official_train), generator=torch.Generator().manual_seed(0)).tolist()
    if data_cfg.val_size >= len(order):
        raise DataError(f"data.val_size={data_cfg.val_size}: must be less than the {len(order)} images of the "
                        f"{data_cfg.name} train set")
    val_indices, train_indices = order[:data_cfg.val_size], order[data_cfg.val_size:]
    if budget_cfg.train_subset is not None:
        train_indices = train_indices[:budget_cfg.train_subset]
    subset = f", first {len(train_indices)}" if budget_cfg.train_subset is not None else ""
    description = {
        "train": {"images": len(train_indices),
                  "source": f"official train minus the val slice{subset} (fixed permutation, seed 0)"},
        "val": {"images": len(val_indices), "source": "slice held out of the official train set (seed 0)"},
        "test": {"images": len(official_test), "source": TEST_SOURCE.get(data_cfg.name, "official test set")},
    }
    return Splits(
        train=TransformedSubset(official_train, train_indices, train_tf),
        val=TransformedSubset(official_train, val_indices, eval_tf),
        test=TransformedSubset(official_test, range(len(official_test)), eval_tf),
        description=description,
    )


IN_MEMORY_DATA = ("fashion_mnist", "cifar10", "cifar100")  # splits of at most a few hundred MB as float tensors


def in_memory_obstacle(data_cfg, budget_cfg, recipe_cfg) -> str | None:
    """Why the training split cannot be held as one tensor of transformed images and flipped per batch (the
    in-memory loader), or None when it can: the data must be small and every random transform but the flip off.
    `recipe_cfg`: the recipe as trained (regularisers scaled by the budget)."""
    if data_cfg.name not in IN_MEMORY_DATA:
        return f"data={data_cfg.name} is read from files, image by image"
    if list(budget_cfg.crop_scale) != [1.0, 1.0]:
        return f"budget.crop_scale={list(budget_cfg.crop_scale)} crops each image at random"
    if recipe_cfg.randaugment or recipe_cfg.random_erasing > 0:
        return "the recipe's RandAugment or random erasing transforms each image at random"
    return None


def without_flip(split: TransformedSubset) -> TransformedSubset:
    """A training split whose transform, once the flip is taken out, is deterministic (no in_memory_obstacle):
    with crop_scale [1, 1] RandomResizedCrop always falls back to the whole image."""
    transform = v2.Compose([t for t in split.transform.transforms if not isinstance(t, v2.RandomHorizontalFlip)])
    return TransformedSubset(split.dataset, split.indices, transform)


def stacked(split: TransformedSubset | Subset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image tensor, label) of a split, or of a process's shard of one, as one (N, C, H, W) tensor and a
    tensor of labels: the images of the per-image transform. Its transforms before ToImage run image by image (on
    PIL images, drawing from the global RNG as a loader would); those from ToImage on are deterministic
    (in_memory_obstacle) and elementwise or alike for every image, so they run once on the whole stack."""
    if isinstance(split, Subset):
        split = TransformedSubset(split.dataset.dataset, [split.dataset.indices[i] for i in split.indices],
                                  split.dataset.transform)
    transforms = split.transform.transforms
    cut = next((i for i, t in enumerate(transforms) if isinstance(t, v2.ToImage)), len(transforms))
    images, labels = zip(*(split.dataset[i] for i in split.indices))
    images = torch.stack([v2.functional.to_image(_applied(transforms[:cut], image)) for image in images])
    return _applied(transforms[cut:], images).as_subclass(torch.Tensor), torch.tensor(labels)


def _applied(transforms: list, image):
    for transform in transforms:
        image = transform(image)
    return image


class InMemoryBatches:
    """Batches of images already transformed, held as one tensor: each image flipped with probability `hflip`
    by `generator`, a batch at a time, in the order of `sampler` (None: in order, the last batch possibly short).

    For a split that fits in memory and whose only random transform is the flip, it yields what a DataLoader of
    the per-image transform yields, without a worker process or a transform per image. Items are (images, labels),
    with `timed` (images, labels, seconds spent making the batch), as the training DataLoader's.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, sampler=None, hflip: float = 0.0,
                 generator: torch.Generator | None = None, timed: bool = False):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.sampler, self.hflip, self.generator, self.timed = sampler, hflip, generator, timed

    def __len__(self) -> int:
        if self.sampler is None:
            return -(-len(self.images) // self.batch_size)
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        order = torch.tensor(list(self.sampler)) if self.sampler is not None else torch.arange(len(self.images))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            began = time.perf_counter()
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.hflip > 0:
                flip = torch.rand(len(index), generator=self.generator) < self.hflip
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            batch = images, self.labels[index]
            yield (*batch, torch.tensor([time.perf_counter() - began])) if self.timed else batch


def unreadable_images(splits: Splits) -> int:
    """How many times this process met an image it could not decode and stood another in for it, over every split
    (data=webdataset and data=huggingface count them; the other sources stop at one)."""
    counters = {id(c): c for c in (getattr(getattr(split, "dataset", split), "unreadable", None)
                                   for split in (splits.train, splits.val, splits.test)) if c is not None}
    return sum(counter.count for counter in counters.values())


def check_batch_fits(splits: Splits, data_cfg, budget_cfg) -> None:
    """DataError unless the training split holds one global batch: an epoch's optimizer steps drop the remainder."""
    if budget_cfg.batch > len(splits.train):
        subset = f", first budget.train_subset={budget_cfg.train_subset}" if budget_cfg.train_subset else ""
        raise DataError(f"budget.batch={budget_cfg.batch}: must be at most the {len(splits.train)} training images "
                        f"(the train set less data.val_size={data_cfg.val_size}{subset})")

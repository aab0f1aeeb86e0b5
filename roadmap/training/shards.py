"""WebDataset tar shards of an image folder (`data=webdataset`), read shard by shard rather than file by file.

`python -m roadmap.training.shards FOLDER OUT` writes FOLDER's train/ and val/ (ImageFolder layout) as shards of
the three splits a run reads, with `index.json` listing each shard's images, written last:
- `train-*.tar`: train/ less the held-out slice, in the fixed permutation (seed 0) that `data=imagefolder` draws
  its slice from, so that the shards are shuffled and `budget.train_subset` takes the same first images,
- `heldout-*.tar`: that slice (`--val-size`, data.val_size's default: 10000), the per-epoch val set,
- `test-*.tar`: val/, in order.
Each sample holds the image file's bytes as they are (`jpg`, `png`, ... by its suffix) and its class (`cls`).
"""

import argparse
import io
import json
import math
import random
import sys
import tarfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from roadmap.errors import ConfigError
from roadmap.files import write_atomically
from roadmap.training.unreadable import UnreadableImages

INDEX_NAME = "index.json"
SPLITS = ("train", "heldout", "test")


class ShardError(ConfigError):
    """Shards that cannot be read or written as asked; the message is one line naming the path."""


def write_shards(folder: Path, out: Path, val_size: int, images_per_shard: int = 1000) -> dict:
    """FOLDER's train/ and val/ as shards in OUT (which must be empty or absent); returns the index."""
    import webdataset
    from torchvision.datasets import ImageFolder

    if not (folder / "train").is_dir() or not (folder / "val").is_dir():
        raise ShardError(f"{folder}: expected train/ and val/ folders of class folders (ImageNet layout)")
    if out.exists() and any(out.iterdir()):
        raise ShardError(f"{out}: not empty; shards are written into an empty or new folder")
    train, test = ImageFolder(folder / "train"), ImageFolder(folder / "val")
    if train.classes != test.classes:
        raise ShardError(f"{folder}: train/ and val/ hold different class folders")
    if not 0 < val_size < len(train):
        raise ShardError(f"--val-size={val_size}: must be in 1..{len(train) - 1} (train/ holds {len(train)} images)")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    plan = {"train": (train, order[val_size:]), "heldout": (train, order[:val_size]),
            "test": (test, range(len(test)))}
    out.mkdir(parents=True, exist_ok=True)
    index = {"classes": train.classes, "val_size": val_size, "permutation_seed": 0, "splits": {}}
    for split, (dataset, indices) in plan.items():
        chunks = [indices[i:i + images_per_shard] for i in range(0, len(indices), images_per_shard)]
        index["splits"][split] = [[f"{split}-{n:06d}.tar", len(chunk)] for n, chunk in enumerate(chunks)]
        for (name, _), chunk in zip(index["splits"][split], chunks):
            with webdataset.TarWriter(str(out / name)) as sink:
                for i in chunk:
                    path, label = dataset.samples[i]
                    # The key: the image's index in its folder's sorted listing, as data=imagefolder numbers it.
                    sink.write({"__key__": f"{i:08d}", Path(path).suffix.lower().lstrip("."): Path(path).read_bytes(),
                                "cls": label})
    write_atomically(out / INDEX_NAME, lambda partial: partial.write_text(json.dumps(index, indent=1)))
    return index


def read_index(root: Path) -> dict:
    """The shards' index; ShardError if it is missing, unreadable or names a shard that is not there."""
    path = root / INDEX_NAME
    if not path.is_file():
        raise ShardError(f"data.root={root}: no {INDEX_NAME}; write shards with "
                         "python -m roadmap.training.shards IMAGE_FOLDER OUT")
    try:
        index = json.loads(path.read_text())
        splits = {split: [(name, int(count)) for name, count in index["splits"][split]] for split in SPLITS}
    except (ValueError, KeyError, TypeError) as e:
        raise ShardError(f"{path}: not an index written by roadmap.training.shards ({e})") from None
    for split, shards in splits.items():
        if not shards or sum(count for _, count in shards) == 0:
            raise ShardError(f"data.root={root}: the {split} split holds no images")
        for name, count in shards:
            if not (root / name).is_file():
                raise ShardError(f"{root / name}: listed in {INDEX_NAME} but missing")
            if count == 0 or (root / name).stat().st_size == 0:
                raise ShardError(f"{root / name}: an empty shard; write the shards again")
    return index | {"splits": splits}


class ShardSplit:
    """The images of one split's shards (the first `limit` of them, in index order), with the transform each gets.
    `batches(...)` is what a loader iterates."""

    def __init__(self, root: Path, shards: list[tuple[str, int]], transform, limit: int | None = None):
        self.root, self.transform = root, transform
        self.shards = _first_images(shards, limit)
        self.unreadable = UnreadableImages()

    def __len__(self) -> int:
        return sum(count for _, count in self.shards)

    def batches(self, batch_size: int, rank: int, world_size: int, *, train: bool, seed: int = 0,
                shuffle_buffer: int = 0) -> "ShardBatches":
        return ShardBatches(self, batch_size, rank, world_size, train=train, seed=seed, shuffle_buffer=shuffle_buffer)


def _first_images(shards: list[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    if limit is None:
        return list(shards)
    kept, left = [], limit
    for name, count in shards:
        if left == 0:
            break
        kept.append((name, min(count, left)))
        left -= kept[-1][1]
    return kept


class ShardBatches(IterableDataset):
    """This process's batches of a ShardSplit, for a DataLoader with `batch_size=None`.

    An epoch's stream is the split's shards one after another, in an order drawn from (seed, epoch) in training and
    in index order otherwise. Process `rank` takes a contiguous `world_size`-th of the stream, each loader worker a
    contiguous run of whole batches of that, so every image is read once per epoch, by one worker, a shard at a time.
    Training: every process takes the same number of full batches (the stream's remainder is dropped, as
    DistributedSampler(drop_last=True) drops it), each worker shuffles its images through a buffer of
    `shuffle_buffer`, and batches are (images, labels, seconds spent making the batch). Evaluation: every image
    once, the last batch possibly short, batches (images, labels).
    An image that cannot be decoded is replaced by the worker's previous one (counted in `ShardSplit.unreadable`, and
    reported): nothing else is lost and every process still takes its number of batches.
    """

    def __init__(self, split: ShardSplit, batch_size: int, rank: int, world_size: int, *, train: bool, seed: int,
                 shuffle_buffer: int):
        self.split, self.batch_size, self.rank, self.world_size = split, batch_size, rank, world_size
        self.train, self.seed, self.shuffle_buffer, self.epoch = train, seed, shuffle_buffer, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shard order the next iteration reads (workers must be started after this: not persistent)."""
        self.epoch = epoch

    def _share(self) -> tuple[int, int]:
        """This process's [start, stop) of the epoch's stream of images."""
        total = len(self.split)
        if self.train:
            per_process = total // self.world_size // self.batch_size * self.batch_size
            return self.rank * per_process, (self.rank + 1) * per_process
        return self.rank * total // self.world_size, (self.rank + 1) * total // self.world_size

    def __len__(self) -> int:
        start, stop = self._share()
        return (stop - start) // self.batch_size if self.train else math.ceil((stop - start) / self.batch_size)

    def _shard_order(self) -> list[tuple[str, int]]:
        shards = list(self.split.shards)
        if self.train:
            random.Random(self.seed * 100_003 + self.epoch).shuffle(shards)
        return shards

    def _worker_share(self) -> tuple[int, int, int]:
        """[start, stop) of the epoch's stream that this loader worker reads, and its worker id."""
        start, stop = self._share()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batches = len(self)
        first, last = worker * batches // workers, (worker + 1) * batches // workers
        return start + first * self.batch_size, min(start + last * self.batch_size, stop), worker

    def _samples(self, start: int, stop: int):
        """(shard name, key, image bytes, label) of the stream's images [start, stop), read shard by shard."""
        from webdataset.tariterators import group_by_keys, tar_file_expander

        offset = 0
        for name, count in self._shard_order():
            if offset + count > start and offset < stop:
                skip, take = max(start - offset, 0), min(stop, offset + count) - max(start, offset)
                with open(self.split.root / name, "rb") as stream:
                    try:
                        samples = group_by_keys(tar_file_expander([{"stream": stream, "url": name}]))
                        read = 0
                        for position, sample in enumerate(samples):
                            if position >= skip + take:
                                break
                            if position >= skip:
                                image = next(v for k, v in sample.items() if k not in ("__key__", "__url__", "cls"))
                                yield name, sample["__key__"], image, int(sample["cls"])
                                read += 1
                    except (tarfile.TarError, OSError, StopIteration, ValueError) as e:
                        raise ShardError(f"{self.split.root / name}: unreadable shard ({e})") from None
                    if read < take:
                        raise ShardError(f"{self.split.root / name}: holds fewer images than the {count} that "
                                         f"{INDEX_NAME} lists; write the shards again")
            offset += count

    def _shuffled(self, samples, worker: int):
        if not self.train or self.shuffle_buffer <= 1:
            yield from samples
            return
        draw, buffer = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}"), []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                i = draw.randrange(len(buffer))
                buffer[i], buffer[-1] = buffer[-1], buffer[i]
                yield buffer.pop()
        draw.shuffle(buffer)
        yield from buffer

    def _decoded(self, samples):
        previous, waiting = None, 0  # waiting: undecodable images before the first that decodes, to stand in for
        for name, key, data, label in samples:
            began = time.perf_counter()
            try:
                item = self.split.transform(Image.open(io.BytesIO(data)).convert("RGB")), label
            except (OSError, SyntaxError, ValueError) as e:  # what PIL raises for a truncated or foreign file
                self.split.unreadable.report(f"{self.split.root / name}: image {key}", e)
                if previous is None:
                    waiting += 1
                    continue
                item = previous
            previous = item
            for _ in range(waiting + 1):
                yield *item, time.perf_counter() - began
            waiting = 0
        if waiting:
            raise ShardError(f"{self.split.root}: none of the {waiting} images of a loader worker's share decodes")

    def __iter__(self):
        start, stop, worker = self._worker_share()
        batch = []
        for item in self._decoded(self._shuffled(self._samples(start, stop), worker)):
            batch.append(item)
            if len(batch) == self.batch_size:
                yield self._collated(batch)
                batch = []
        if batch and not self.train:
            yield self._collated(batch)

    def _collated(self, batch):
        images, labels, seconds = zip(*batch)
        collated = torch.stack(images).as_subclass(torch.Tensor), torch.tensor(labels)
        return (*collated, torch.tensor([sum(seconds)])) if self.train else collated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roadmap.training.shards", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="an image folder with train/ and val/ of class folders")
    parser.add_argument("out", type=Path, help="an empty or new folder for the shards and index.json")
    parser.add_argument("--val-size", type=int, default=10000, help="images held out of train/ (data.val_size)")
    parser.add_argument("--images-per-shard", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        index = write_shards(args.folder, args.out, args.val_size, args.images_per_shard)
    except ShardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, shards in index["splits"].items():
        print(f"{split}: {sum(count for _, count in shards)} images in {len(shards)} shards")
    return 0


if __name__ == "__main__":
    sys.exit(main())

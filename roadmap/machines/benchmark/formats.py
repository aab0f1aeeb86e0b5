"""Our loaders by data format (`--image-folder --formats`): the benchmark's JPEG folder read as files
(`data=imagefolder`), as WebDataset shards (`data=webdataset`) and as a local Hugging Face copy
(`data=huggingface`, `save_to_disk`), each through the loader a run builds, to the last batch on the device.
The copies hold the folder's JPEG bytes as they are, and are written beside it on first use. The same images and
transforms: the figures differ by how the bytes are read and handed to the workers.
"""

import os
import shutil
import statistics
from pathlib import Path

from roadmap.machines.benchmark.folder import RECIPES, SPLITS, Case, benchmark_folder, worker_counts
from roadmap.machines.benchmark.settings import Settings
from roadmap.training import shards

FORMATS = ("imagefolder", "webdataset", "huggingface")
IMAGES_PER_SHARD = 64


def _written_once(target: Path, marker: str, write) -> Path:
    """`target`, written by `write(folder)` into a partial folder and renamed when complete (`marker` inside)."""
    if not (target / marker).exists():
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        write(partial)
        try:
            partial.rename(target)
        except OSError:  # another process wrote it first
            shutil.rmtree(partial)
    return target


def _hub_copy(folder: Path, out: Path) -> None:
    import datasets
    from torchvision.datasets import ImageFolder

    tables = {}
    for split, name in (("train", "train"), ("val", "validation")):
        listing = ImageFolder(folder / split)
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=listing.classes)})
        tables[name] = datasets.Dataset.from_dict(
            {"image": [{"bytes": Path(p).read_bytes(), "path": None} for p, _ in listing.samples],
             "label": [label for _, label in listing.samples]}, features=features)
    datasets.DatasetDict(tables).save_to_disk(str(out))


def cached_copies(root: Path) -> dict[str, list[str]]:
    """Per format, the data overrides that read the benchmark's folder `root` that way."""
    stored = _written_once(root.with_name(f"{root.name}_shards"), shards.INDEX_NAME,
                           lambda out: shards.write_shards(root, out, val_size=1, images_per_shard=IMAGES_PER_SHARD))
    hub = _written_once(root.with_name(f"{root.name}_hub"), "dataset_dict.json", lambda out: _hub_copy(root, out))
    return {"imagefolder": ["data=imagefolder", f"data.root={root}"],
            "webdataset": ["data=webdataset", f"data.root={stored}", "data.shuffle_buffer=64"],
            "huggingface": ["data=huggingface", f"data.root={hub}"]}


def format_speed(settings: Settings) -> list[dict]:
    """Each format's training and evaluation loader, modern recipe, at 1 and `worker_counts` workers: img/s of wall
    time, per core, and the ratio to the image folder's (medians of alternating rounds, the first discarded)."""
    root, _ = benchmark_folder(settings)
    copies = cached_copies(root)
    name = RECIPES[-1]
    cases = [(form, Case(root, name, split, workers, "ours", settings, data=copies[form]))
             for split in SPLITS for workers in worker_counts(settings) for form in FORMATS]
    for r in range(settings.folder_rounds + 1):
        for _, case in cases if r % 2 == 0 else cases[::-1]:
            rate = case.measure()
            if r > 0:
                case.rates.append(rate)
    rows = [{"format": form, "recipe": name, "split": case.split, "stage": case.stage, "workers": case.workers,
             "imgs_per_s": statistics.median(case.rates), "per_core": statistics.median(case.rates) / case.workers}
            for form, case in cases]
    for row in rows:
        folder_row = next(r for r in rows if r["format"] == "imagefolder" and r["split"] == row["split"]
                          and r["workers"] == row["workers"])
        row["vs_imagefolder"] = row["imgs_per_s"] / folder_row["imgs_per_s"]
    return rows


def print_formats(rows: list[dict], settings: Settings) -> None:
    print(f"\n## Our loaders by data format, {rows[0]['recipe']} recipe at {settings.folder_size} px: the same "
          f"{settings.folder_images} + {settings.folder_images} JPEGs as files, as WebDataset shards of "
          f"{IMAGES_PER_SHARD} images and as a Hugging Face save_to_disk copy; img/s of wall time from the loader's "
          "start to the last batch on the device (decode, transform, collate, the copy to the device, float, "
          "normalise and, training, erasing), per core = / workers; the files are in the page cache, as on a "
          "local disk read before\n")
    print("| format | pipeline | stage | img/s | per core | vs imagefolder |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['split']} | {r['stage']} | {r['imgs_per_s']:.1f} | {r['per_core']:.1f} | "
              f"{r['vs_imagefolder']:.2f} |")

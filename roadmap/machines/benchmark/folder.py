"""The input pipeline at ImageNet's sizes, ours against timm's (`--data-pipeline --image-folder`).

On a folder of photo-like JPEGs of ImageNet's sizes (`pipeline.write_jpeg_folder`, written once and cached under the
data root), each recipe's training and evaluation pipeline at `--folder-size` px, measured in two stages:

- **transform, 1 thread**: `dataset[i]` over every image in this process at one torch thread, as a loader worker
  runs: decode and the per-image transform to a uint8 tensor (ours `roadmap.training.data`'s, timm's
  `create_transform` as its prefetcher takes it); images per CPU second of this process, so that what else the
  machine runs does not count (what one core gives).
- **loader, W workers**: the DataLoader a run builds, from start (workers started) to the last batch on the device:
  ours the one `roadmap.training.train.Trainer` builds, each batch through `Trainer.to_device` as training takes it
  (to the device, then float, normalise and erase there); timm's `timm.data.create_loader` with its prefetcher
  (the same steps on the device).
  Images per second of wall time, and per core: / W (the training process's own share is not counted as a core).

timm's pipeline takes the recipe's settings: crop scale, flip, interpolation, RandAugment (the paper's policy),
erasing (`const`, zeros as ours), the data's mean and std and eval crop ratio; no colour jitter, as ours. Its
RandAugment's posterize is made to work under Pillow 13 as ours (`roadmap.training.augment`). Ours and timm's are
measured in turn, in alternating rounds, the first discarded; medians.
"""

import copy
import functools
import gc
import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

import roadmap
from roadmap.machines.benchmark.machine import device_name, load_average, sync
from roadmap.machines.benchmark.pipeline import write_jpeg_folder
from roadmap.machines.benchmark.settings import Settings
from roadmap.training import recipe as recipes
from roadmap.training.augment import paper_policy, posterize_under_any_pillow
from roadmap.training.data import build_splits
from roadmap.training.train import Trainer

RECIPES = ("original", "modern")
SPLITS = ("train", "eval")
IMPLEMENTATIONS = ("ours", "timm")
# The trainer that builds our loader needs a model; the pipeline does not depend on it.
TINY_MODEL = ["model.depths=[1,1,1,1]", "model.widths=[8,16,32,64]"]
TRANSFORM = "transform, 1 thread"


def includes(recipe_cfg, split: str, stage: str) -> dict[str, str]:
    """What a row's figure includes, ours and timm's."""
    if split == "train":
        work = ["decode", "random resized crop", "flip"] + (["RandAugment"] if recipe_cfg.randaugment else [])
        erase = ["erasing"] if recipe_cfg.random_erasing > 0 else []
    else:
        work, erase = ["decode", "resize", "centre crop"], []
    if stage == TRANSFORM:
        both = ", ".join(work + ["to uint8 tensor"])
        return {"ours": both, "timm": both}
    after = ["float", "normalise"] + erase
    return {"ours": ", ".join(work + ["to uint8 tensor", "collate", "to the trainer", "to the device (channels_last)",
                                      *after]),
            "timm": ", ".join(work + ["to uint8 tensor", "collate", "to the trainer", "to the device", *after])}


def cached_folder(images: int, cache: Path) -> tuple[Path, dict]:
    """The benchmark's JPEG folder of `images` training and as many evaluation images under `cache`, written on
    first use (atomically: a folder is complete or absent); and its mean image size."""
    root = cache / f"benchmark_jpegs_{images}"
    if not (root / "stats.json").is_file():
        partial = cache / f"{root.name}.partial-{os.getpid()}"
        stats = write_jpeg_folder(partial, images, val_images=images)
        (partial / "stats.json").write_text(json.dumps(stats))
        try:
            partial.rename(root)
        except OSError:  # another process wrote it first
            shutil.rmtree(partial)
    return root, json.loads((root / "stats.json").read_text())


def run_config(root: Path, name: str, settings: Settings, workers: int, data: list[str] | None = None):
    """The run whose pipeline is measured: `data` (default: `data=imagefolder` on the folder), recipe `name` as
    trained."""
    return copy.deepcopy(_run_config(root, name, settings, workers,
                                     tuple(data or ["data=imagefolder", f"data.root={root}"])))


@functools.lru_cache(maxsize=None)  # a benchmark measures each config at several stages and for both implementations
def _run_config(root: Path, name: str, settings: Settings, workers: int, data: tuple[str, ...]):
    batch = settings.folder_batch
    cfg = roadmap.compose([*data, "data.num_classes=2", "data.val_size=1",
                           f"data.image_size={settings.folder_size}", f"recipe={name}", f"budget.batch={batch}",
                           f"runtime.batch_per_device={batch}", f"runtime.workers={workers}",
                           f"runtime.device={settings.device.type}", "runtime.progress=false", *TINY_MODEL,
                           *settings.data_override])
    return OmegaConf.merge(cfg, {"recipe": recipes.as_trained(cfg.recipe, cfg.budget)})


def timm_arguments(cfg, split: str) -> dict:
    """timm's create_transform / create_loader arguments for the run's recipe and data."""
    r, d = cfg.recipe, cfg.data
    arguments = {"interpolation": r.interpolation, "mean": tuple(d.mean), "std": tuple(d.std)}
    if split == "eval":
        return arguments | {"crop_pct": d.eval_crop_ratio}
    return arguments | {"scale": tuple(cfg.budget.crop_scale), "hflip": r.hflip, "color_jitter": None,
                        "auto_augment": paper_policy(r.randaugment_magnitude) if r.randaugment else None,
                        "re_prob": r.random_erasing, "re_mode": "const"}


def _posterize_fixed(transform):
    from timm.data.auto_augment import RandAugment

    for t in transform.transforms:
        if isinstance(t, RandAugment):
            posterize_under_any_pillow(t)
    return transform


def timm_dataset(root: Path, cfg, split: str, transform: bool):
    from timm.data import ImageDataset, create_transform

    folder = root / ("train" if split == "train" else "val")
    tf = None
    if transform:
        tf = _posterize_fixed(create_transform(cfg.data.image_size, is_training=split == "train",
                                               use_prefetcher=True, **timm_arguments(cfg, split)))
    return ImageDataset(str(folder), transform=tf)


def timm_loader(root: Path, cfg, split: str, workers: int, device: torch.device):
    from timm.data import create_loader

    size = cfg.data.image_size
    loader = create_loader(timm_dataset(root, cfg, split, transform=False), input_size=(3, size, size),
                           batch_size=cfg.budget.batch if split == "train" else 2 * cfg.runtime.batch_per_device,
                           is_training=split == "train", use_prefetcher=True, num_workers=workers, device=device,
                           pin_memory=device.type == "cuda", persistent_workers=False, **timm_arguments(cfg, split))
    _posterize_fixed(loader.dataset.transform)
    return loader


def per_cpu_second(dataset) -> float:
    start = time.process_time()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.process_time() - start)


def loader_imgs_per_s(batches, to_device, device: torch.device) -> float:
    start, images = time.perf_counter(), 0
    for batch in batches:
        images += len(to_device(batch))
    sync(device)
    return images / (time.perf_counter() - start)


class Case:
    """One figure to measure: an implementation's pipeline of a recipe and split at a stage."""

    def __init__(self, root: Path, name: str, split: str, workers: int | None, implementation: str,
                 settings: Settings, data: list[str] | None = None):
        self.root, self.recipe, self.split, self.workers = root, name, split, workers
        self.implementation, self.device = implementation, settings.device
        self.stage = TRANSFORM if workers is None else f"loader, {workers} worker{'s' * (workers > 1)}"
        self.cfg = run_config(root, name, settings, workers or 0, data)
        self.rates: list[float] = []

    def measure(self) -> float:
        if self.workers is None:
            if self.implementation == "timm":
                dataset = timm_dataset(self.root, self.cfg, self.split, transform=True)
            else:
                splits = build_splits(self.cfg.data, self.cfg.budget, self.cfg.recipe)
                dataset = splits.train if self.split == "train" else splits.test
            return per_cpu_second(dataset)
        if self.implementation == "timm":
            loader = timm_loader(self.root, self.cfg, self.split, self.workers, self.device)
            return loader_imgs_per_s(loader, lambda batch: batch[0], self.device)
        cfg = self.cfg
        trainer = Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), roadmap.build_model(cfg.model))
        loader = trainer.train_loader if self.split == "train" else trainer.test_loader
        train = self.split == "train"
        rate = loader_imgs_per_s(loader, lambda batch: trainer.to_device(*batch[:2], train=train)[0], self.device)
        del trainer, loader  # its persistent workers stop here, not in the next loader's forked workers
        gc.collect()
        return rate


@dataclass(frozen=True)
class FolderSpeed:
    """The pipelines' img/s, ours and timm's, and the cores that feed each training img/s."""

    rows: list[dict]  # recipe, split, stage, ours/timm img/s and per core, ratio, what each includes
    folder: dict  # root, images, mean_pixels, mean_kb
    loads: tuple[str, str]  # load average before and after
    feeds: list[dict]  # what, train_imgs_per_s, recipe, cores


def worker_counts(settings: Settings) -> list[int]:
    """1 (the cores-per-GPU figure's), and `--folder-workers` (default: 2 and every core this process may use)."""
    return sorted({1, *(settings.folder_workers or (2, len(os.sched_getaffinity(0))))})


def benchmark_folder(settings: Settings) -> tuple[Path, dict]:
    """The cached JPEG folder of `--folder-images` (under `--folder-cache`, default the data root) and its sizes."""
    cache = Path(settings.folder_cache or os.path.expanduser(str(roadmap.compose([]).data.root)))
    return cached_folder(settings.folder_images, cache)


def measure(settings: Settings) -> tuple[list[dict], dict]:
    root, folder = benchmark_folder(settings)
    cases = [Case(root, name, split, workers, implementation, settings)
             for name in RECIPES for split in SPLITS for workers in [None, *worker_counts(settings)]
             for implementation in IMPLEMENTATIONS]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for r in range(settings.folder_rounds + 1):
            for case in cases if r % 2 == 0 else cases[::-1]:
                rate = case.measure()
                if r > 0:  # the first round warms the file cache and each pipeline's first calls
                    case.rates.append(rate)
    finally:
        torch.set_num_threads(threads)
    rows = []
    for i in range(0, len(cases), len(IMPLEMENTATIONS)):
        ours, theirs = cases[i:i + 2]
        cores = ours.workers or 1
        ips = {c.implementation: statistics.median(c.rates) for c in (ours, theirs)}
        rows.append({"recipe": ours.recipe, "split": ours.split, "stage": ours.stage, "workers": ours.workers or 0,
                     "ours_imgs_per_s": ips["ours"], "timm_imgs_per_s": ips["timm"],
                     "ours_per_core": ips["ours"] / cores, "timm_per_core": ips["timm"] / cores,
                     "ratio": ips["ours"] / ips["timm"], "includes": includes(ours.cfg.recipe, ours.split, ours.stage)})
    return rows, folder | {"root": str(root), "images": settings.folder_images}


def gpu_check_figures(folder: str) -> list[tuple[str, float, str]]:
    """Our models' training img/s measured by a GPU check (`python -m analysis.gpu_check --out FOLDER`, speed.csv):
    (what, img/s, step), eager only."""
    import csv

    path = Path(folder) / "speed.csv"
    if not path.is_file():
        raise SystemExit(f"error: --gpu-check {folder}: no speed.csv there (written by python -m analysis.gpu_check)")
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "ours" and r["compile"] in ("False", "false", "")]
    return [(f"{r['model']} (GPU check: {r.get('device_name') or r['device']}, batch {r['batch']}, "
             f"{r['input_size']}px, {r['dtype']})", float(r["train_imgs_per_s"]), r["step"]) for r in rows]


def folder_speed(settings: Settings, model_rows: list[dict]) -> FolderSpeed:
    """Ours against timm's at each stage, both recipes, and the cores per training process that feed each of our
    models timed here (`model_rows`), each GPU check figure (`--gpu-check`) and each `--train-imgs-per-s`: its
    training img/s over one core's img/s of its recipe's training loader (1 worker: decode, transform, collate and
    the copy to the device included)."""
    before = load_average()
    rows, folder = measure(settings)
    loads = (before, load_average())
    one_core = {r["recipe"]: r["ours_per_core"] for r in rows if r["split"] == "train" and r["workers"] == 1}
    figures = [(f"{r['model']} ({r['device']}, batch {r['batch']}, {r['input_size']}px)", r["train_imgs_per_s"],
                r["step"]) for r in model_rows if r["source"] == "ours"]
    if settings.gpu_check:
        figures += gpu_check_figures(settings.gpu_check)
    feeds = [(what, ips, roadmap.compose([f"+step={step}"]).recipe.name) for what, ips, step in figures]
    feeds += [("--train-imgs-per-s", ips, name) for ips in settings.train_imgs_per_s for name in RECIPES]
    return FolderSpeed(rows, folder, loads, [{"what": what, "train_imgs_per_s": ips, "recipe": name,
                                              "cores": ips / one_core[name]} for what, ips, name in feeds])


def print_folder(speed: FolderSpeed, settings: Settings) -> None:
    f = speed.folder
    print(f"\n## Input pipeline at {settings.folder_size} px, ours against timm's: {f['images']} training and "
          f"{f['images']} evaluation JPEGs of ImageNet's sizes (photo-like, mean {f['mean_pixels'] / 1e3:.0f}k "
          f"pixels, {f['mean_kb']:.0f} KB at quality 90; ImageNet's train JPEGs: ~110 KB), cached in {f['root']}; "
          f"device {settings.device.type} ({device_name(settings.device)}); training batch {settings.folder_batch}, "
          f"evaluation batch {2 * settings.folder_batch}; torch {torch.__version__}; median of "
          f"{settings.folder_rounds} rounds after one discarded; load average before {speed.loads[0]}, after "
          f"{speed.loads[1]}\n")
    print("transform, 1 thread: img/s per CPU second of this process (one core's worth, whatever the load); "
          "loader, W workers: img/s of wall time from the loader's start to the last batch on the device, per "
          "core = / W. ours/timm > 1: ours faster.\n")
    print("| recipe | pipeline | stage | ours img/s | timm img/s | ours per core | timm per core | ours/timm |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in speed.rows:
        print(f"| {r['recipe']} | {r['split']} | {r['stage']} | {r['ours_imgs_per_s']:.1f} | "
              f"{r['timm_imgs_per_s']:.1f} | {r['ours_per_core']:.1f} | {r['timm_per_core']:.1f} | {r['ratio']:.2f} |")
    print("\nWhat each row includes:\n")
    seen = set()
    for r in speed.rows:
        key = (r["recipe"], r["split"], r["stage"] == TRANSFORM)
        if key not in seen:
            seen.add(key)
            stage = TRANSFORM if r["stage"] == TRANSFORM else "loader"
            print(f"- {r['recipe']} {r['split']}, {stage}: ours {r['includes']['ours']}; "
                  f"timm {r['includes']['timm']}")
    if speed.feeds:
        print("\nCores per training process (per GPU) that keep it fed: its train img/s over one core's img/s of "
              "its recipe's training loader (1 worker: decode, transform, collate, the copy to the device)\n\n"
              "| training | train img/s | recipe | cores |\n|---|---|---|---|")
        for r in speed.feeds:
            print(f"| {r['what']} | {r['train_imgs_per_s']:.1f} | {r['recipe']} | {r['cores']:.1f} |")

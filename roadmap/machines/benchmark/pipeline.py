"""Data loading, apart from the models: the default run's training DataLoader (built by roadmap.training.train.Trainer exactly
as run.py builds it) alone and feeding the default model's training steps, against the same steps on a batch already
in memory; or, with --image-folder, ImageNet's loading cost without ImageNet: a temporary folder of photo-like JPEGs
(ImageNet's sizes, around 500x375) decoded and augmented by each recipe's training transforms in one thread, and the
cores per training process that feed a training img/s.
"""

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFilter

import roadmap
from roadmap.machines.benchmark.machine import load_average, sync
from roadmap.machines.benchmark.settings import Settings
from roadmap.training.data import build_splits
from roadmap.training.train import Trainer


@dataclass(frozen=True)
class LoaderSpeed:
    """The default run's DataLoader alone and feeding training, against training on a batch in memory."""

    cfg: DictConfig  # the run measured
    batch: int
    workers: int  # as the trainer resolved runtime.workers
    amp: str
    first_batch_s: float  # worker start-up included
    batches: int  # timed for the loader alone
    steps: int  # per training measurement
    loader_imgs_per_s: float
    in_memory_imgs_per_s: float  # mean of before and after the fed steps
    fed_imgs_per_s: float


def loader_speed(settings: Settings) -> LoaderSpeed:
    """The default run's training DataLoader, alone and feeding the default model, against in-memory batches."""
    cfg = roadmap.compose([f"runtime.device={settings.device.type}", *settings.data_override])
    splits = build_splits(cfg.data, cfg.budget, cfg.recipe)
    trainer = Trainer(cfg, splits, roadmap.build_model(cfg.model))  # the loader, model format, optimizer of run.py
    loader = trainer.train_loader
    batch = loader.batch_size
    n = min(settings.data_batches, len(loader) - 1)

    # 1. The loader alone: first batch (worker start-up) apart, then n batches.
    it = iter(loader)
    start = time.perf_counter()
    next(it)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n):
        next(it)
    loader_ips = n * batch / (time.perf_counter() - start)
    del it

    # 2. Training steps fed by the loader, and the same steps on one batch already in memory (A B A).
    trainer.model.train()

    def step(images, labels):
        trainer.optimizer.zero_grad(set_to_none=True)
        with trainer.autocast():
            loss = trainer.loss_fn(trainer.forward_model(images), labels)
        loss.backward()
        trainer.optimizer.step()

    images, labels = trainer.to_device(*next(iter(loader))[:2])  # the loader's items end with their load time
    steps = min(settings.data_steps, len(loader) - 1)

    def in_memory() -> float:
        step(images, labels)  # warm
        sync(settings.device)
        start = time.perf_counter()
        for _ in range(steps):
            step(images, labels)
        sync(settings.device)
        return steps * batch / (time.perf_counter() - start)

    def fed() -> float:
        it = iter(loader)
        step(*trainer.to_device(*next(it)[:2]))  # warm, and the workers started
        sync(settings.device)
        start = time.perf_counter()
        for _ in range(steps):
            step(*trainer.to_device(*next(it)[:2]))
        sync(settings.device)
        return steps * batch / (time.perf_counter() - start)

    a1, b, a2 = in_memory(), fed(), in_memory()
    return LoaderSpeed(cfg, batch, trainer.workers, str(trainer.amp_dtype or "off (fp32)"), first, n, steps,
                       loader_ips, (a1 + a2) / 2, b)


# Shapes of ImageNet photos (most are 500 pixels on the long side).
PHOTO_SIZES = [(500, 375), (500, 333), (375, 500), (500, 400), (333, 500), (500, 500), (400, 300)]
RECIPES = ("original", "modern")


def photo_like(rng: np.random.Generator) -> Image.Image:
    """An RGB image a JPEG codec treats like a photo: smooth colour fields, soft shapes, texture and a little grain
    (noise alone would cost far more to decode, flat colour far less)."""
    width, height = PHOTO_SIZES[rng.integers(len(PHOTO_SIZES))]
    coarse = rng.integers(0, 256, (rng.integers(3, 7), rng.integers(3, 7), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(4, 10)):
        x, y, rx, ry = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 170), rng.integers(10, 130)
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    image = image.filter(ImageFilter.GaussianBlur(3))
    texture = Image.fromarray(rng.normal(0, 1, (height // 2, width // 2)).astype(np.float32))
    pixels = (np.asarray(image, dtype=np.float32) + 40 * np.asarray(texture.resize((width, height)))[..., None]
              + rng.normal(0, 5, (height, width, 3)))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_jpeg_folder(root: Path, images: int, seed: int = 0) -> dict:
    """`train/` and `val/` trees of two classes of photo-like JPEGs (quality 90) under `root`; their mean size."""
    rng = np.random.default_rng(seed)
    sizes = []
    for split, count in (("train", images), ("val", 2)):
        for i in range(count):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            image = photo_like(rng)
            image.save(folder / f"{i}.JPEG", quality=90)
            sizes.append((image.width * image.height, (folder / f"{i}.JPEG").stat().st_size))
    pixels, size = (sum(v) / len(sizes) for v in zip(*sizes))
    return {"mean_pixels": pixels, "mean_kb": size / 1024}


def decode_augment_per_core(settings: Settings) -> tuple[dict[str, float], dict]:
    """Images per second one core decodes and augments with each recipe's training transforms (built by
    roadmap.training.data as a run builds them, from `data=imagefolder`), on a temporary folder of photo-like JPEGs, in one
    thread as a DataLoader worker runs, per second of this process's CPU time: alternating rounds, the first
    discarded (file cache), medians; and the folder's mean image size."""
    with tempfile.TemporaryDirectory() as root:
        folder = write_jpeg_folder(Path(root), settings.folder_images)
        datasets = {}
        for name in RECIPES:
            cfg = roadmap.compose(["data=imagefolder", f"data.root={root}", "data.num_classes=2", "data.val_size=1",
                                   f"recipe={name}", *settings.data_override])
            datasets[name] = build_splits(cfg.data, cfg.budget, cfg.recipe).train
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        rates = {name: [] for name in RECIPES}
        for r in range(settings.folder_rounds + 1):
            for name in RECIPES if r % 2 == 0 else RECIPES[::-1]:
                dataset = datasets[name]
                start = time.process_time()  # CPU seconds: what a core gives, however busy the machine
                for i in range(len(dataset)):
                    dataset[i]
                if r > 0:
                    rates[name].append(len(dataset) / (time.process_time() - start))
        torch.set_num_threads(threads)
    return {name: statistics.median(v) for name, v in rates.items()}, folder


@dataclass(frozen=True)
class FolderSpeed:
    """Decode + augment img/s per core of each recipe, and the cores that feed each training img/s."""

    per_core: dict[str, float]  # recipe: img/s per core
    folder: dict  # mean_pixels, mean_kb of the generated JPEGs
    loads: tuple[str, str]  # load average before and after
    feeds: list[dict]  # what, train_imgs_per_s, recipe, cores

    @property
    def rows(self) -> list[dict]:
        return [{"recipe": name, "imgs_per_s_per_core": rate} for name, rate in self.per_core.items()] + self.feeds


def folder_speed(settings: Settings, model_rows: list[dict]) -> FolderSpeed:
    """Decode + augment img/s per core for both recipes, and the cores that feed a training img/s: each of our
    models timed (`model_rows`, with its step's recipe) and `--train-imgs-per-s`."""
    before = load_average()
    per_core, folder = decode_augment_per_core(settings)
    loads = (before, load_average())
    feeds = [(f"{r['model']} ({r['device']}, batch {r['batch']}, {r['input_size']}px)", r["train_imgs_per_s"],
              roadmap.compose([f"+step={r['step']}"]).recipe.name) for r in model_rows if r["source"] == "ours"]
    feeds += [("--train-imgs-per-s", figure, name) for figure in settings.train_imgs_per_s for name in per_core]
    return FolderSpeed(per_core, folder, loads, [{"what": what, "train_imgs_per_s": ips, "recipe": name,
                                                  "cores": ips / per_core[name]} for what, ips, name in feeds])

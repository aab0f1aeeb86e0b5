"""Data loading, apart from the models: the default run's training DataLoader (built by roadmap.training.train.Trainer exactly
as run.py builds it) alone and feeding the default model's training steps, against the same steps on a batch already
in memory; and the photo-like JPEGs of ImageNet's sizes (around 500x375) that --image-folder (`folder.py`) and the GPU
check read.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFilter

import roadmap
from roadmap.machines.benchmark.machine import sync
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

    images, labels = trainer.to_device(*next(iter(loader))[:2], train=True)  # items end with their load time
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
        step(*trainer.to_device(*next(it)[:2], train=True))  # warm, and the workers started
        sync(settings.device)
        start = time.perf_counter()
        for _ in range(steps):
            step(*trainer.to_device(*next(it)[:2], train=True))
        sync(settings.device)
        return steps * batch / (time.perf_counter() - start)

    a1, b, a2 = in_memory(), fed(), in_memory()
    return LoaderSpeed(cfg, batch, trainer.workers, str(trainer.amp_dtype or "off (fp32)"), first, n, steps,
                       loader_ips, (a1 + a2) / 2, b)


# Shapes of ImageNet photos (most are 500 pixels on the long side).
PHOTO_SIZES = [(500, 375), (500, 333), (375, 500), (500, 400), (333, 500), (500, 500), (400, 300)]


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


def write_jpeg_folder(root: Path, images: int, seed: int = 0, val_images: int = 2) -> dict:
    """`train/` (`images`) and `val/` (`val_images`) trees of two classes of photo-like JPEGs (quality 90) under
    `root`; their mean size."""
    rng = np.random.default_rng(seed)
    sizes = []
    for split, count in (("train", images), ("val", val_images)):
        for i in range(count):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            image = photo_like(rng)
            image.save(folder / f"{i}.JPEG", quality=90)
            sizes.append((image.width * image.height, (folder / f"{i}.JPEG").stat().st_size))
    pixels, size = (sum(v) / len(sizes) for v in zip(*sizes))
    return {"mean_pixels": pixels, "mean_kb": size / 1024}

"""Train and evaluate one roadmap variant: the whole run from a config to its record.

One iteration (an optimizer step; "step" is a roadmap step) consumes `budget.batch` images whatever the hardware:
each process takes its share of the global batch in `accumulation` micro-batches of at most
`runtime.batch_per_device`. Checkpoints are written at the end of every epoch; an interrupted run resumes from the
last one.
"""

import math
import multiprocessing
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from roadmap.config import build_model
from roadmap.errors import ConfigError
from roadmap.network.flops import count_cost
from roadmap.records import checkpoint, tracking
from roadmap.records.fingerprint import trained_config
from roadmap.records.record import RunRecord, learning_warning
from roadmap.training import distributed, recipe
from roadmap.training.augment import OnDevice
from roadmap.training.data import (InMemoryBatches, Timed, build_splits, check_batch_fits, in_memory_obstacle,
                                   stacked, unreadable_images, without_flip)
from roadmap.training.shards import ShardBatches, ShardSplit

# Loader workers start the platform's usual way, not the way of the process this job runs in: a joblib (loky)
# sweep worker's default start method cannot start them.
_WORKER_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def resolve_device(setting: str) -> torch.device:
    """The device `runtime.device` names for this process; ConfigError if this machine has none such."""
    name = setting
    if setting == "auto":
        name = f"cuda:{distributed.local_rank()}" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"runtime.device={setting!r}: must be auto, cpu, cuda or cuda:<index>") from None
    if device.type != "cpu":
        accelerator = torch.accelerator.current_accelerator()
        count = torch.accelerator.device_count() if accelerator and accelerator.type == device.type else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"runtime.device={setting}: this machine has no {name} ({count} {device.type} "
                              "device(s)); use runtime.device=auto or cpu")
    return device


def loader_workers(setting: int | str) -> int:
    """The DataLoader workers `runtime.workers` asks for; `auto`: the cores this process may run on (its affinity),
    shared with the training processes of this machine that may run on them too, less one for the trainer."""
    if setting != "auto":
        return setting
    cpus = os.sched_getaffinity(0)
    return max(len(cpus) // distributed.processes_sharing(cpus) - 1, 0)


def uses_memory(setting: str, cfg: DictConfig) -> bool:
    """Whether the run's splits are held in memory as tensors and augmented a batch at a time (`runtime.loader`):
    `auto` where nothing but the flip is random and the data is small; ConfigError when `memory` is asked for and
    cannot be given. `cfg.recipe`: the recipe as trained."""
    obstacle = in_memory_obstacle(cfg.data, cfg.budget, cfg.recipe)
    if setting == "memory" and obstacle:
        raise ConfigError(f"runtime.loader=memory: {obstacle}; use runtime.loader=auto or workers")
    return setting != "workers" and obstacle is None


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the device runs it fast, fp16 on older GPUs; `auto` keeps float32 on CPU, where bf16 autocast
    trains these networks slower than float32."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def micro_batches_per_iteration(global_batch: int, batch_per_device: int, world_size: int) -> int:
    """Micro-batches per iteration: the fewest that split each process's share into batches that fit."""
    per_process = global_batch // world_size
    return next(a for a in range(math.ceil(per_process / batch_per_device), per_process + 1) if per_process % a == 0)


class Trainer:
    """The model, its optimizer, schedule, EMA and loaders for one run, and the loops over them."""

    def __init__(self, cfg: DictConfig, splits, model: nn.Module):
        self.cfg, rt = cfg, cfg.runtime
        self.device = resolve_device(rt.device)
        self.world_size, self.rank = distributed.world_size(), distributed.rank()
        self.amp_dtype = autocast_dtype(rt.amp, self.device)
        self.memory_format = torch.channels_last if rt.channels_last else torch.contiguous_format

        self.model = model.to(self.device, memory_format=self.memory_format)
        if rt.sync_batchnorm and self.world_size > 1:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.recipe.ema_decay), use_buffers=True)
                    if cfg.recipe.ema else None)
        self.forward_model = distributed.wrap(self.model, self.device)
        self.grads_to_none = not distributed.keeps_grads(self.forward_model)
        # Same initial weights everywhere (seeded before the model was built), then a random stream per process.
        torch.manual_seed(cfg.seed + self.rank)
        # The paper's RandAugment (timm's) draws from Python's and numpy's generators (loader workers seed their own).
        random.seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed + self.rank)
        if rt.compile:
            self.forward_model = torch.compile(self.forward_model)

        if cfg.budget.batch % self.world_size:
            raise ConfigError(f"budget.batch={cfg.budget.batch}: must be a multiple of the {self.world_size} processes")
        check_batch_fits(splits, cfg.data, cfg.budget)  # then every epoch has at least one iteration
        self.loader_generator = torch.Generator()
        self.on_device = OnDevice(cfg.data.mean, cfg.data.std, cfg.recipe.random_erasing)
        self.in_memory = uses_memory(rt.loader, cfg)
        self.workers = 0 if self.in_memory else loader_workers(rt.workers)
        self.accumulation = micro_batches_per_iteration(cfg.budget.batch, rt.batch_per_device, self.world_size)
        micro_batch = cfg.budget.batch // self.world_size // self.accumulation
        eval_batch = rt.batch_per_device * 2
        if isinstance(splits.train, ShardSplit):
            # Each process and loader worker reads its own run of the epoch's shards (roadmap.training.shards).
            self.sampler = splits.train.batches(micro_batch, self.rank, self.world_size, train=True, seed=cfg.seed,
                                                shuffle_buffer=cfg.data.shuffle_buffer)
            self.train_loader = self._shard_loader(self.sampler)
            self.val_loader, self.test_loader = (
                self._shard_loader(split.batches(eval_batch, self.rank, self.world_size, train=False))
                for split in (splits.val, splits.test))
        else:
            # Each process takes every world_size-th image of one permutation per epoch: whatever the number of
            # processes, an iteration sees the same global batch. drop_last (here and in the loader): every
            # iteration sees a full one, and MixUp/CutMix an even one.
            self.sampler = DistributedSampler(splits.train, num_replicas=self.world_size, rank=self.rank,
                                              shuffle=True, seed=cfg.seed, drop_last=True)
            self._build_loaders(splits, micro_batch, eval_batch)
        self.iterations_per_epoch = len(self.train_loader) // self.accumulation
        self.optimizer = recipe.build_optimizer(self.model, cfg.recipe, cfg.budget)
        self.scheduler = recipe.build_scheduler(self.optimizer, cfg.recipe, cfg.budget.epochs,
                                                self.iterations_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.loss_fn = recipe.build_loss(cfg.recipe)
        self.mixer = recipe.build_mixer(cfg.recipe, cfg.data.num_classes)

    def _build_loaders(self, splits, micro_batch: int, eval_batch: int) -> None:
        """Loaders of map-style splits: held in memory where they can be (`uses_memory`), else a DataLoader each."""
        if self.in_memory:
            self.train_loader = InMemoryBatches(*stacked(without_flip(splits.train)), micro_batch, self.sampler,
                                                self.cfg.recipe.hflip, self.loader_generator, timed=True)
            self.val_loader = InMemoryBatches(*stacked(self._shard(splits.val)), eval_batch)
            self.test_loader = InMemoryBatches(*stacked(self._shard(splits.test)), eval_batch)
        else:
            self.train_loader = self._loader(Timed(splits.train), micro_batch, sampler=self.sampler,
                                             persistent=not self.cfg.runtime.deterministic)
            self.val_loader = self._loader(self._shard(splits.val), eval_batch, persistent=True)
            self.test_loader = self._loader(self._shard(splits.test), eval_batch)

    def _shard(self, dataset):
        """This process's share of an evaluation set: every image exactly once across processes, none padded."""
        return dataset if self.world_size == 1 else Subset(dataset, range(self.rank, len(dataset), self.world_size))

    def _loader(self, dataset, batch_size: int, sampler: DistributedSampler | None = None,
                persistent: bool = False) -> DataLoader:
        """Training (with `sampler`): drop the last incomplete batch, draw worker seeds from the epoch's generator.
        `persistent`: workers live from one epoch to the next. Not for training under `runtime.deterministic`: they
        would go on with their random streams, which a resumed run, reseeding them, cannot reproduce."""
        training, workers = sampler is not None, self.workers
        # At least 4 batches in flight, 2 per worker with several: a slow batch (RandAugment's costlier ops) does not
        # stall training.
        extra = {"persistent_workers": persistent, "prefetch_factor": max(2, 4 // workers),
                 "multiprocessing_context": _WORKER_START_METHOD} if workers else {}
        generator = self.loader_generator if training else self._eval_generator()
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=training, num_workers=workers,
                          pin_memory=self.device.type == "cuda", generator=generator, **extra)

    def _shard_loader(self, batches: ShardBatches) -> DataLoader:
        """Whole batches from the workers. Never persistent: a worker reads the epoch (`set_epoch`) it starts in."""
        extra = {"prefetch_factor": max(2, 4 // self.workers),
                 "multiprocessing_context": _WORKER_START_METHOD} if self.workers else {}
        generator = self.loader_generator if batches.train else self._eval_generator()
        return DataLoader(batches, batch_size=None, num_workers=self.workers, pin_memory=self.device.type == "cuda",
                          generator=generator, **extra)

    @staticmethod
    def _eval_generator() -> torch.Generator:
        # Without a generator of its own, an evaluation loader draws its workers' seed from the global RNG when it
        # first starts them: a resumed run, whose val loader starts again, would draw once more than an
        # uninterrupted one and train on with another random stream.
        return torch.Generator().manual_seed(0)

    def autocast(self) -> torch.autocast:
        """The run's mixed-precision context (`runtime.amp`); a no-op when amp is off."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def to_device(self, images: torch.Tensor, labels: torch.Tensor, train: bool = False):
        """A batch of uint8 images on the run's device, in the model's memory format (channels_last or not), through
        the end of the transforms there (`OnDevice`; random erasing in `train`ing)."""
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return self.on_device(images, train), labels.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.scaler.load_state_dict(state["scaler"])

    def train_one_epoch(self, epoch: int,
                        log_iterations: Callable[[list[tuple[int, dict]]], None] | None = None) -> dict:
        """One pass over the training split; raises Diverged on a non-finite loss.

        The losses stay on the device until they are read, every `runtime.sync_every` iterations and at the end of
        the epoch (one host sync, and under torchrun one all-reduce, each time): then the divergence check, the
        progress bar and `log_iterations` see every iteration, as (iteration of the run, {train/loss, train/lr}),
        the last one read with `train/imgs_per_s` over those read.
        """
        self.model.train()
        self.sampler.set_epoch(epoch)
        # Loader workers draw their seeds from this generator: reseeding it per epoch makes an epoch's
        # augmentations independent of how many epochs this process ran before (resume).
        self.loader_generator.manual_seed(self.cfg.seed * 100_003 + epoch)
        micro_batches = self.iterations_per_epoch * self.accumulation
        read_every = self.cfg.runtime.sync_every * self.accumulation
        bar = tqdm(total=micro_batches, desc=f"epoch {epoch + 1}/{self.cfg.budget.epochs}", leave=False,
                   disable=not self.cfg.runtime.progress or self.rank != 0, dynamic_ncols=True)
        pending, lrs, iteration_losses = [], [], []  # unread micro-batch losses, their iterations' lr, every loss
        seen, load_seconds, waited = 0, 0.0, 0.0
        start = window_start = time.perf_counter()
        batches = iter(self.train_loader)
        for i in range(micro_batches):
            before = time.perf_counter()
            images, labels, seconds = next(batches)
            waited += time.perf_counter() - before
            load_seconds += seconds.sum().item()  # a CPU tensor: no device sync
            images, labels = self.to_device(images, labels, train=True)
            if self.mixer is not None:
                images, labels = self.mixer(images, labels)
            ends_iteration = (i + 1) % self.accumulation == 0
            with distributed.no_sync_unless(self.forward_model, ends_iteration), self.autocast():
                loss = self.loss_fn(self.forward_model(images), labels)
            self.scaler.scale(loss / self.accumulation).backward()
            pending.append(loss.detach())
            seen += len(images)
            if ends_iteration:
                lrs.append(self.scheduler.get_last_lr()[0])
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=self.grads_to_none)
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
            if len(pending) == read_every or i + 1 == micro_batches:
                losses = self._read_losses(pending, lrs, epoch, done=len(iteration_losses))
                now = time.perf_counter()
                if log_iterations is not None:
                    first = epoch * self.iterations_per_epoch + len(iteration_losses) + 1
                    logged = [(first + k, {"train/loss": value, "train/lr": lr}) for k, (value, lr) in
                              enumerate(zip(losses, lrs))]
                    logged[-1][1]["train/imgs_per_s"] = len(losses) * self.cfg.budget.batch / (now - window_start)
                    log_iterations(logged)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lrs[-1]:.2e}")
                iteration_losses += losses
                pending, lrs, window_start = [], [], now
            bar.update()
        bar.close()
        seconds = time.perf_counter() - start
        seen, load_seconds, waited = distributed.all_sum([seen, load_seconds, waited])
        return {"train_loss": sum(iteration_losses) / len(iteration_losses), "train_imgs_per_s": seen / seconds,
                # decode + augment, each worker on a core of its own: what the loader could deliver
                "loader_imgs_per_s": seen * max(self.workers, 1) / load_seconds,
                "loader_wait_fraction": waited / (seconds * self.world_size)}

    def _read_losses(self, pending: list[torch.Tensor], lrs: list[float], epoch: int, done: int) -> list[float]:
        """Each iteration's loss, from its micro-batch losses in `pending`, averaged over the processes;
        Diverged at the first one that is not finite, on every process alike."""
        per_iteration = torch.stack(pending).view(-1, self.accumulation).mean(1).tolist()
        losses = [value / self.world_size for value in distributed.all_sum(per_iteration)]
        for k, (value, lr) in enumerate(zip(losses, lrs)):
            if not math.isfinite(value):
                raise Diverged(f"training loss became {value} at epoch {epoch + 1}, iteration {done + k + 1} "
                               f"(lr {lr:.3g})")
        return losses

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, desc: str) -> dict:
        """Loss (plain cross-entropy), top-1 and top-5 accuracy in % over every image of the loader's split."""
        model.eval()
        loss, correct1, correct5, count = 0.0, 0, 0, 0
        for images, labels in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                                   disable=not self.cfg.runtime.progress or self.rank != 0):
            images, labels = self.to_device(images, labels)
            with self.autocast():
                logits = model(images).float()
            loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top5 == labels[:, None]
            correct1 += hits[:, 0].sum().item()
            correct5 += hits.any(dim=1).sum().item()
            count += len(labels)
        loss, correct1, correct5, count = distributed.all_sum([loss, correct1, correct5, count])
        return {"loss": loss / count, "acc1": 100 * correct1 / count, "acc5": 100 * correct5 / count}


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max resident set"


def configure_torch(cfg: DictConfig) -> None:
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    torch.manual_seed(cfg.seed)
    if cfg.runtime.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for deterministic matmuls
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    """Train and test the configured variant, recording into `run_dir`; the record of a completed run is
    returned untouched. Returns the result (`status`: completed, diverged or failed). RecordMismatch, before
    anything is written, when `run_dir` holds a run of another trained config."""
    record = RunRecord(run_dir, is_writer=distributed.rank() == 0)
    config = trained_config(cfg)
    record.check_config(config)
    completed = record.completed_result()
    if completed is not None:
        return completed
    started = time.perf_counter()
    configure_torch(cfg)
    cfg = OmegaConf.merge(cfg, {"recipe": recipe.as_trained(cfg.recipe, cfg.budget)})
    splits = build_splits(cfg.data, cfg.budget, cfg.recipe)  # a DataError here leaves every file as it was
    model = build_model(cfg.model)
    cost = count_cost(model, cfg.data.channels, cfg.data.image_size)

    trainer = Trainer(cfg, splits, model)
    if record.is_writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    result = record.base_result(cfg, overrides, config) | cost | {
        "input_size": cfg.data.image_size, "device": str(trainer.device),
        "world_size": trainer.world_size, "torch_threads": torch.get_num_threads(),
        "global_batch": cfg.budget.batch, "accumulation": trainer.accumulation, "workers": trainer.workers,
        "loader": "in memory" if trainer.in_memory else "DataLoader",
        "lr": recipe.scaled_lr(cfg.recipe, cfg.budget), "lr_rule": recipe.lr_rule(cfg.recipe, cfg.budget),
        "recipe_as_trained": {key: cfg.recipe[key] for key in (*recipe.REGULARIZERS, "randaugment")},
        "splits": splits.description,
    }
    state = checkpoint.RunState.load(record.checkpoint_path, trainer, config, started)
    if state.epochs:
        print(f"resuming {run_dir} after epoch {state.epochs}", file=sys.stderr)
    trackers = tracking.Trackers(cfg, run_dir, state.epochs * trainer.iterations_per_epoch + 1, record.is_writer)
    loader_epochs = []  # the loader's speed in the epochs of this attempt

    try:
        for epoch in range(state.epochs, cfg.budget.epochs):
            epoch_start = time.perf_counter()
            lr = trainer.scheduler.get_last_lr()[0]
            train_metrics = trainer.train_one_epoch(epoch, trackers.log_iterations)
            loader_epochs.append(train_metrics)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_metrics["train_loss"]}
            val = trainer.evaluate(trainer.model, trainer.val_loader, "val")
            row |= {"val_loss": val["loss"], "val_acc1": val["acc1"], "val_acc5": val["acc5"]}
            if trainer.ema is not None:
                ema_val = trainer.evaluate(trainer.ema.module, trainer.val_loader, "val (EMA)")
                row |= {f"ema_val_{k}": v for k, v in ema_val.items()}
            row |= {"epoch_seconds": time.perf_counter() - epoch_start,
                    "train_imgs_per_s": train_metrics["train_imgs_per_s"]}
            state.metrics.append(row)
            rng = distributed.gather_states(checkpoint.rng_states())  # every process takes part
            if record.is_writer:
                state.save(record.checkpoint_path, trainer, rng)
            record.write_metrics(state.metrics)
            trackers.log_epoch((epoch + 1) * trainer.iterations_per_epoch, row)
            print(f"epoch {epoch + 1}/{cfg.budget.epochs}: train loss {row['train_loss']:.4f}, "
                  f"val acc1 {row['val_acc1']:.2f}%, {row['train_imgs_per_s']:.0f} img/s", file=sys.stderr)
            distributed.barrier()
    except Diverged as e:
        status, fields = "diverged", {"error": str(e)}
    except BaseException:
        trackers.close("failed")  # resumed, the run logs on into the same MLflow run
        raise
    else:
        test = trainer.evaluate(trainer.model, trainer.test_loader, "test")
        status, fields = "completed", {f"test_{k}": v for k, v in test.items()}
        if trainer.ema is not None:
            ema_test = trainer.evaluate(trainer.ema.module, trainer.test_loader, "test (EMA)")
            fields |= {f"ema_test_{k}": v for k, v in ema_test.items()}
        fields["warning"] = learning_warning(state.metrics, test["acc1"], cfg.data.num_classes, len(splits.test))

    unreadable = int(distributed.all_sum([unreadable_images(splits)])[0])
    if unreadable:
        fields["unreadable_images"] = unreadable  # each stood in for by another image, and named on stderr
    peak_mb, peak_kind = _peak_memory_mb(trainer.device)
    result |= fields | {"status": status} | state.summary() | {"peak_mem_mb": peak_mb, "peak_mem_kind": peak_kind}
    if loader_epochs:
        result |= {key: sum(e[key] for e in loader_epochs) / len(loader_epochs)
                   for key in ("loader_imgs_per_s", "loader_wait_fraction")}
    trackers.close(status)
    record.write_result(result)
    if status == "completed" and record.is_writer:
        checkpoint.keep_after_completion(run_dir, trainer, config, cfg.runtime.keep)
    return result

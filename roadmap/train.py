"""Train and evaluate one roadmap variant: the whole run from a config to its record.

One optimizer step consumes `recipe.batch` images whatever the hardware: each process takes its share of the
global batch in `accumulation` micro-batches of at most `runtime.batch_per_device`. Checkpoints are written at
the end of every epoch; an interrupted run resumes from the last one.
"""

import math
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from roadmap import build_model, checkpoint, distributed, recipe
from roadmap.config import ConfigError
from roadmap.data import build_splits
from roadmap.flops import count_cost
from roadmap.record import RunRecord

# Loader workers start the platform's usual way, not the way of the process this job runs in: a joblib (loky)
# sweep worker's default start method cannot start them.
_WORKER_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{distributed.local_rank()}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the device runs it fast, fp16 on older GPUs; `auto` keeps float32 on CPU, where bf16 autocast
    trains these networks slower than float32."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def accumulation_steps(global_batch: int, batch_per_device: int, world_size: int) -> int:
    """Micro-batches per optimizer step: the fewest that split each process's share into batches that fit."""
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
        # Same initial weights everywhere (seeded before the model was built), then a random stream per process.
        torch.manual_seed(cfg.seed + self.rank)
        if rt.compile:
            self.forward_model = torch.compile(self.forward_model)

        if cfg.recipe.batch % self.world_size:
            raise ConfigError(f"recipe.batch={cfg.recipe.batch}: must be a multiple of the {self.world_size} processes")
        self.loader_generator = torch.Generator()
        self.accumulation = accumulation_steps(cfg.recipe.batch, rt.batch_per_device, self.world_size)
        micro_batch = cfg.recipe.batch // self.world_size // self.accumulation
        # Each process takes every world_size-th image of one permutation per epoch: whatever the number of
        # processes, an optimizer step sees the same global batch. drop_last (here and in the loader): every step
        # sees a full one, and MixUp/CutMix an even one.
        self.sampler = DistributedSampler(splits.train, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.train_loader = self._loader(splits.train, micro_batch, sampler=self.sampler)
        self.steps_per_epoch = len(self.train_loader) // self.accumulation
        if self.steps_per_epoch == 0:
            raise ValueError(f"recipe.batch={cfg.recipe.batch}: larger than the {len(splits.train)} training images")
        eval_batch = rt.batch_per_device * 2
        self.val_loader = self._loader(self._shard(splits.val), eval_batch)
        self.test_loader = self._loader(self._shard(splits.test), eval_batch)

        self.optimizer = recipe.build_optimizer(self.model, cfg.recipe)
        self.scheduler = recipe.build_scheduler(self.optimizer, cfg.recipe, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.loss_fn = recipe.build_loss(cfg.recipe)
        self.mixer = recipe.build_mixer(cfg.recipe, cfg.data.num_classes)

    def _shard(self, dataset):
        """This process's share of an evaluation set: every image exactly once across processes, none padded."""
        return dataset if self.world_size == 1 else Subset(dataset, range(self.rank, len(dataset), self.world_size))

    def _loader(self, dataset, batch_size: int, sampler: DistributedSampler | None = None) -> DataLoader:
        """Training (with `sampler`): drop the last incomplete batch, draw worker seeds from the epoch's generator."""
        training, workers = sampler is not None, self.cfg.runtime.workers
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=training, num_workers=workers,
                          pin_memory=self.device.type == "cuda", generator=self.loader_generator if training else None,
                          multiprocessing_context=_WORKER_START_METHOD if workers else None)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor):
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return images, labels.to(self.device, non_blocking=True)

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

    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over the training split; raises Diverged on a non-finite loss."""
        self.model.train()
        self.sampler.set_epoch(epoch)
        # Loader workers draw their seeds from this generator: reseeding it per epoch makes an epoch's
        # augmentations independent of how many epochs this process ran before (resume).
        self.loader_generator.manual_seed(self.cfg.seed * 100_003 + epoch)
        total_loss, seen, start = torch.zeros((), device=self.device), 0, time.perf_counter()
        micro_batches = self.steps_per_epoch * self.accumulation
        bar = tqdm(self.train_loader, total=micro_batches, desc=f"epoch {epoch + 1}/{self.cfg.recipe.epochs}",
                   disable=not self.cfg.runtime.progress or self.rank != 0, leave=False, dynamic_ncols=True)
        for i, (images, labels) in enumerate(bar):
            if i == micro_batches:
                break
            images, labels = self._to_device(images, labels)
            if self.mixer is not None:
                images, labels = self.mixer(images, labels)
            last_of_step = (i + 1) % self.accumulation == 0
            with distributed.no_sync_unless(self.forward_model, last_of_step), self._autocast():
                loss = self.loss_fn(self.forward_model(images), labels)
            # Every process stops together, whichever one met the non-finite loss.
            if distributed.any_true(not torch.isfinite(loss)):
                raise Diverged(f"training loss became {loss.item()} at epoch {epoch + 1}, "
                               f"step {i // self.accumulation + 1} (lr {self.scheduler.get_last_lr()[0]:.3g})")
            self.scaler.scale(loss / self.accumulation).backward()
            if last_of_step:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
            total_loss += loss.detach() * len(images)
            seen += len(images)
            if i % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
        seconds = time.perf_counter() - start
        total_loss, seen = distributed.all_sum([total_loss.item(), seen])
        return {"train_loss": total_loss / seen, "train_imgs_per_s": seen / seconds}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, desc: str) -> dict:
        """Loss (plain cross-entropy), top-1 and top-5 accuracy in % over every image of the loader's split."""
        model.eval()
        loss, correct1, correct5, count = 0.0, 0, 0, 0
        for images, labels in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                                   disable=not self.cfg.runtime.progress or self.rank != 0):
            images, labels = self._to_device(images, labels)
            with self._autocast():
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
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    """Train and test the configured variant, recording into `run_dir`; the record of a completed run is
    returned untouched. Returns the result (`status`: completed, diverged or failed)."""
    record = RunRecord(run_dir, is_writer=distributed.rank() == 0)
    previous = record.read_result()
    if previous is not None and previous.get("status") == "completed":
        return previous
    configure_torch(cfg)
    splits = build_splits(cfg.data, cfg.recipe)  # a DataError here leaves every file as it was
    model = build_model(cfg.model)
    cost = count_cost(model, cfg.data.channels, cfg.data.image_size)

    trainer = Trainer(cfg, splits, model)
    if record.is_writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    result = record.base_result(cfg, overrides) | cost | {
        "input_size": cfg.data.image_size, "device": str(trainer.device),
        "world_size": trainer.world_size, "torch_threads": torch.get_num_threads(),
        "global_batch": cfg.recipe.batch, "accumulation": trainer.accumulation,
        "lr": recipe.scaled_lr(cfg.recipe), "splits": splits.description,
    }
    state = checkpoint.load(record.checkpoint_path)
    rows, wall_before = [], 0.0
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        # Each process continues its own random stream (rank 0's when the number of processes changed).
        rng = state["rng"]
        checkpoint.set_rng_states(rng[trainer.rank] if len(rng) == trainer.world_size else rng[0])
        rows, wall_before = state["metrics"], state["wall_seconds"]
        print(f"resuming {run_dir} after epoch {len(rows)}", file=sys.stderr)
    start = time.perf_counter()

    def finish(status: str, **fields) -> dict:
        peak_mb, peak_kind = _peak_memory_mb(trainer.device)
        fields |= {"status": status, "epochs": len(rows), "wall_seconds": wall_before + time.perf_counter() - start,
                   "peak_mem_mb": peak_mb, "peak_mem_kind": peak_kind}
        if rows:
            best = max(rows, key=lambda r: r["val_acc1"])
            fields |= {"best_acc1": best["val_acc1"], "best_epoch": best["epoch"],
                       "train_imgs_per_s": sum(r["train_imgs_per_s"] for r in rows) / len(rows)}
        record.write_result(result | fields)
        return result | fields

    try:
        for epoch in range(len(rows), cfg.recipe.epochs):
            epoch_start = time.perf_counter()
            lr = trainer.scheduler.get_last_lr()[0]
            train_metrics = trainer.train_one_epoch(epoch)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_metrics["train_loss"]}
            val = trainer.evaluate(trainer.model, trainer.val_loader, "val")
            row |= {"val_loss": val["loss"], "val_acc1": val["acc1"], "val_acc5": val["acc5"]}
            if trainer.ema is not None:
                ema_val = trainer.evaluate(trainer.ema.module, trainer.val_loader, "val (EMA)")
                row |= {f"ema_val_{k}": v for k, v in ema_val.items()}
            row |= {"epoch_seconds": time.perf_counter() - epoch_start,
                    "train_imgs_per_s": train_metrics["train_imgs_per_s"]}
            rows.append(row)
            rng = distributed.gather_states(checkpoint.rng_states())
            if record.is_writer:
                checkpoint.save(record.checkpoint_path, {
                    "trainer": trainer.state_dict(), "rng": rng, "metrics": rows,
                    "wall_seconds": wall_before + time.perf_counter() - start,
                })
            record.write_metrics(rows)
            print(f"epoch {epoch + 1}/{cfg.recipe.epochs}: train loss {row['train_loss']:.4f}, "
                  f"val acc1 {row['val_acc1']:.2f}%, {row['train_imgs_per_s']:.0f} img/s", file=sys.stderr)
            distributed.barrier()
    except Diverged as e:
        return finish("diverged", error=str(e))

    test = trainer.evaluate(trainer.model, trainer.test_loader, "test")
    fields = {"acc1": test["acc1"], "acc5": test["acc5"], "test_loss": test["loss"]}
    if trainer.ema is not None:
        ema_test = trainer.evaluate(trainer.ema.module, trainer.test_loader, "test (EMA)")
        fields |= {"ema_acc1": ema_test["acc1"], "ema_acc5": ema_test["acc5"], "ema_test_loss": ema_test["loss"]}
    return finish("completed", **fields)

"""Part 1: every step of the tiny path trains one step in bf16 and channels_last with a finite loss and finite
gradients, and in eval its fast path (roadmap.network.fast: kernel cropping, BatchNorm folding) computes what the plain
network computes, within bf16's own error.

The tolerance. bf16 keeps 8 significant bits: each rounding is off by up to 2^-8 relative. The fast path rounds in
other places than the plain network (a folded weight once instead of weight and norm output apart; a cropped
kernel sums fewer zero products), so in bf16 it is another evaluation of the same function, neither more nor less
exact. Both are measured against the plain network in float32 (TF32 off), as max |logits - float32 logits| / std
of the float32 logits:
    bf16_error = that of the plain network in bf16, fast_error = that of the fast path in bf16,
and the fast path passes when fast_error <= 2 x bf16_error. A wrong tap or a wrong fold errs in one direction at
every layer and lands far outside (tests/test_gpu_check.py: 3% off per conv gives about 7x bf16_error); the factor
2 absorbs the noise of a maximum over one batch of logits (fast_error / bf16_error was 0.76-1.02 for ResNet-50
at 32 px on a CPU, over three batches of 8).
Top-1 agreement with float32 is reported for both, not required: random weights give logits of tiny top-2
margins, so which images flip says more about the margins than about the path.
"""

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

import roadmap
from roadmap.machines.benchmark.machine import autocast, sync
from roadmap.config import input_overrides
from roadmap.machines.gpu_check.errors import error_line
from roadmap.machines.gpu_check.plan import Plan
from roadmap.network import fast
from roadmap.training import recipe
from roadmap.network.model import Block

TOLERANCE_FACTOR = 2  # see the module's docstring

TRAIN_FIELDS = ["step", "input_size", "batch", "dtype", "channels_last", "loss", "loss_finite", "grads_finite",
                "nonfinite_grads", "grad_norm", "params_finite", "seconds", "passed", "error"]
FAST_FIELDS = ["step", "input_size", "batch", "dtype", "channels_last", "cropped_convs", "fast_error", "bf16_error",
               "tolerance", "fast_vs_plain", "fast_top1_agreement", "bf16_top1_agreement", "passed"]


def step_config(step: str, plan: Plan, size: int):
    """The step's network at `size`, 3 channels, 1000 classes, at the paper's budget (its init, no proxy choices)."""
    return roadmap.compose([f"+step={step}", "budget=paper", *input_overrides(3, 1000, size), *plan.model_overrides])


def random_batch(plan: Plan, size: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(plan.step_batch, 3, size, size, generator=generator)
    y = torch.randint(0, 1000, (plan.step_batch,), generator=generator)
    return x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)


def train_one_step(step: str, model: nn.Module, cfg, plan: Plan, device: torch.device) -> dict:
    """One step of the step's own optimizer and loss under bf16 autocast; is everything finite?"""
    optimizer = recipe.build_optimizer(model, cfg.recipe, cfg.budget)
    loss_fn = recipe.build_loss(cfg.recipe)
    x, y = random_batch(plan, plan.step_size, device, seed=0)
    model.train()
    start = time.perf_counter()
    with autocast(device, plan.dtype):
        loss = loss_fn(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    nonfinite = sum(not torch.isfinite(g).all() for g in grads)
    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    optimizer.step()
    params_finite = all(torch.isfinite(p).all() for p in model.parameters())
    sync(device)
    row = {"step": step, "input_size": plan.step_size, "batch": plan.step_batch, "dtype": plan.dtype,
           "channels_last": True, "loss": loss.item(), "loss_finite": math.isfinite(loss.item()),
           "grads_finite": nonfinite == 0, "nonfinite_grads": int(nonfinite), "grad_norm": grad_norm.item(),
           "params_finite": bool(params_finite), "seconds": time.perf_counter() - start}
    row["passed"] = row["loss_finite"] and row["grads_finite"] and row["params_finite"]
    return row


@contextmanager
def counting_cropped_convs(model: nn.Module) -> Iterator[list[bool]]:
    """Inside the block, each forward call of one of the fast path's convs appends whether it skipped kernel taps:
    whether its map is smaller than its padding's reach (roadmap.network.fast._conv)."""
    cropped = []

    def check(conv, args):
        (ph, pw), (h, w) = conv.padding, args[0].shape[-2:]
        cropped.append(min(ph, h - 1) < ph or min(pw, w - 1) < pw)

    hooks = [m.register_forward_pre_hook(check) for m in model.modules() if isinstance(m, fast.CroppedConv2d)]
    try:
        yield cropped
    finally:
        for hook in hooks:
            hook.remove()


def compare_fast_path(step: str, model: nn.Module, plan: Plan, size: int, device: torch.device) -> dict:
    """The fast path's error in bf16 against the plain network's, both measured from the plain network in float32."""
    x, _ = random_batch(plan, size, device, seed=1)
    model.eval()
    with torch.no_grad():
        with autocast(device, plan.dtype):
            with counting_cropped_convs(model) as cropped:
                fast_logits = model(x).float()
            with fast.plain(model):
                plain_logits = model(x).float()
        with fast.plain(model), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            exact = model(x).float()
    scale = exact.std().item()

    def error(logits: torch.Tensor, reference: torch.Tensor) -> float:
        return (logits - reference).abs().max().item() / scale

    def top1_agreement(logits: torch.Tensor) -> float:
        return (logits.argmax(1) == exact.argmax(1)).float().mean().item()

    fast_error, bf16_error = error(fast_logits, exact), error(plain_logits, exact)
    tolerance = TOLERANCE_FACTOR * bf16_error
    return {"step": step, "input_size": size, "batch": plan.step_batch, "dtype": plan.dtype, "channels_last": True,
            "cropped_convs": sum(cropped), "fast_error": fast_error, "bf16_error": bf16_error, "tolerance": tolerance,
            "fast_vs_plain": error(fast_logits, plain_logits), "fast_top1_agreement": top1_agreement(fast_logits),
            "bf16_top1_agreement": top1_agreement(plain_logits), "passed": fast_error <= tolerance}


def check_step(step: str, plan: Plan, device: torch.device) -> tuple[dict, list[dict]]:
    """The training row and the fast-path rows (step_size, crop_size) of one step."""
    cfg = step_config(step, plan, plan.step_size)
    torch.manual_seed(0)
    model = roadmap.build_model(cfg.model).to(device, memory_format=torch.channels_last)
    train_row = train_one_step(step, model, cfg, plan, device)
    # Layer scale starts at 1e-6 (sep_downsample): at 1 the residual branches, where the fast path acts, reach
    # the logits.
    for block in model.modules():
        if isinstance(block, Block) and block.layer_scale is not None:
            block.layer_scale.data.fill_(1.0)
    sizes = dict.fromkeys((plan.step_size, plan.crop_size))  # one size where both are the same (--smoke)
    return train_row, [compare_fast_path(step, model, plan, size, device) for size in sizes]


def check_steps(plan: Plan, device: torch.device, deadline: float) -> tuple[list[dict], list[dict], list[str]]:
    """Every step of the tiny path in roadmap order until `deadline` (time.monotonic); the steps left unchecked."""
    train_rows, fast_rows, left = [], [], []
    for step in roadmap.STEP_NAMES:
        if time.monotonic() > deadline:
            left.append(step)
            continue
        try:
            train_row, rows = check_step(step, plan, device)
        except Exception as e:  # one step's failure (a kernel missing for bf16, ...) does not hide the others'
            train_row, rows = {"step": step, "passed": False,
                               "error": error_line(e)}, []
        train_rows.append(train_row)
        fast_rows += rows
    return train_rows, fast_rows, left


def verdict(train_rows: list[dict], fast_rows: list[dict], left: list[str]) -> tuple[str, str]:
    """(status, note) of the part."""
    failed = [r["step"] + (f" ({r['error']})" if r.get("error") else "") for r in train_rows if not r["passed"]]
    failed += [f"{r['step']} fast path at {r['input_size']} px" for r in fast_rows if not r["passed"]]
    if failed:
        return "failed", "failed: " + ", ".join(failed)
    if left:
        return "capped", f"{len(left)} steps not checked"
    return "passed", f"{len(train_rows)} steps"

"""How fast each roadmap step trains and infers, beside the reference implementations, in one run.

    python -m analysis.benchmark [--steps resnet sep_downsample ...] [--reference] [--batch 128] [--size 32]
                                 [--device cpu|cuda] [--dtype fp32|bf16] [--channels-last | --no-channels-last]
                                 [--compile] [--csv FILE] [--data-pipeline [--image-folder] [--train-imgs-per-s N]]

For every model: training throughput (forward + loss + backward + optimizer step, img/s), inference throughput
(eval mode, no autograd, img/s), peak memory of one training step, and MFU: achieved model FLOP/s over this
device's matmul peak, measured here with a large matmul in the same dtype.

How it measures (the 2 CPU cores of a shared machine are noisy, so everything is paired and repeated):
- all models are built first, then timed in rounds: each round runs one training step of every model, in
  alternating order (A B C D, D C B A, ...), so our model and a reference always run within seconds of each other;
  then the same for inference. The first `--warmup` rounds are discarded; throughput is batch / median step time.
- our/theirs ratio = median over rounds of (reference step time / our step time) within the same round, against
  the faster reference (the one with the lower median time among torchvision's, in default memory format and
  channels_last, and timm's when importable). > 1 means ours is faster. The ratio of medians is printed beside it.
- identical settings: the same batch, input, optimizer (SGD momentum 0.9, weight decay 1e-4 unless --optimizer
  adamw), loss, dtype, threads and compile setting; references run in train mode with their own stochastic depth
  (torchvision convnext_tiny: 0.1, as ours; timm's is set to 0.1 too).
- channels_last: our models run the way run.py runs them (`runtime.channels_last: true`: model and batch
  converted with `memory_format=torch.channels_last`); `--no-channels-last` keeps NCHW. References always run
  both ways.
- FLOPs: fvcore multiply-accumulates (roadmap.flops.count_cost: batch 1, eval mode, the benchmark's input size).
  MFU = 2 x gflops_conv_linear x img/s / matmul peak FLOP/s, training counted as 3 x forward (backward = 2 x
  forward), inference as 1 x forward. Norms, activations and pooling are left out of the numerator, as the
  matmul units do not run them.
- peak memory: CUDA: torch.cuda.max_memory_allocated growth during one training step plus what the model keeps
  between steps (parameters, gradients, optimizer state, the batch). CPU: the same with the growth read as the
  process's peak resident set (VmHWM, reset through /proc/self/clear_refs) above its size before the step.
- `--data-pipeline`: the default run's training DataLoader (built by roadmap.train.Trainer exactly as run.py
  builds it) alone, and the default model's training steps fed by it against the same steps on a batch already
  in memory. With `--image-folder`, ImageNet's loading cost without ImageNet instead: a temporary folder of
  photo-like JPEGs (ImageNet's sizes, around 500x375), decoded and augmented by each recipe's training transforms
  in one thread, and the cores per training process that feed the training img/s of the models timed above or
  of `--train-imgs-per-s`.

The CSV shares its field names with run records (result.json): step, roadmap, device, dtype, batch, input_size,
channels_last, compile, train_imgs_per_s, infer_imgs_per_s, peak_mem_mb, gflops, gflops_conv_linear, params, mfu.
Reference rows have an empty `step` and name themselves in `model`.
"""

import argparse
import copy
import csv
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

import roadmap
from analysis.flops import input_overrides
from roadmap.flops import count_cost

# Our roadmap endpoints and the reference architecture each one equals.
REFERENCE_OF_STEP = {"resnet": "resnet50", "sep_downsample": "convnext_tiny"}
CSV_FIELDS = ["model", "source", "step", "roadmap", "reference_of", "device", "device_name", "dtype", "batch",
              "input_size", "in_chans", "num_classes", "channels_last", "compile", "threads", "optimizer",
              "train_imgs_per_s", "infer_imgs_per_s", "train_s_median", "infer_s_median", "train_s_spread",
              "infer_s_spread", "peak_mem_mb", "peak_mem_kind", "gflops", "gflops_conv_linear", "params", "mfu",
              "infer_mfu", "peak_tflops", "train_ratio", "infer_ratio", "train_ratio_of_medians",
              "infer_ratio_of_medians", "ratio_against", "compile_train_gain", "compile_infer_gain", "reps",
              "warmup", "torch_version"]


@dataclass
class Case:
    """One model under one setting, and its measured step times."""

    label: str
    source: str  # ours | torchvision | timm
    step: str  # our step name; "" for a reference
    arch: str | None  # the reference architecture this model is (references) or equals (our endpoints)
    channels_last: bool
    compiled: bool
    model: nn.Module
    forward: nn.Module  # the model, or its torch.compile'd wrapper
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    cost: dict
    train_s: list = field(default_factory=list)
    infer_s: list = field(default_factory=list)
    peak_mem_mb: float = float("nan")


# ---------------------------------------------------------------------------------------------------- settings


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
        model = found[1].strip() if found else model
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def autocast(device: torch.device, dtype: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: torch.device, dtype: str, n: int | None = None, reps: int = 5) -> float:
    """This device's dense matmul FLOP/s in `dtype`: the best of `reps` n x n x n products (2 n^3 FLOPs each),
    run both as torch.mm and, on CPU, as the same GEMM through a 1x1 convolution: fp32 torch.mm goes to MKL, whose
    kernels on AMD CPUs reach well below what oneDNN (which runs the models' convolutions) gets from the cores."""
    n = n or (8192 if device.type == "cuda" else 2048)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    products = [lambda: torch.mm(a, b)]
    if device.type == "cpu":  # a (n x n) @ (n x n) GEMM as a 1x1 conv: n pixels (1 x n map), n -> n channels
        x = a.t().reshape(1, n, 1, n).contiguous(memory_format=torch.channels_last)
        w = b.reshape(n, n, 1, 1)
        products.append(lambda: F.conv2d(x, w))
    best = float("inf")
    with torch.inference_mode():
        for product in products:
            for i in range(reps + 2):
                sync(device)
                start = time.perf_counter()
                product()
                sync(device)
                if i >= 2:
                    best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# ------------------------------------------------------------------------------------------------------ models


def our_model(step: str, path: str, in_chans: int, num_classes: int, size: int, overrides: list[str]) -> nn.Module:
    cfg = roadmap.compose([f"roadmap={path}", f"+step={step}", *input_overrides(in_chans, num_classes, size),
                           *overrides])
    return roadmap.build_model(cfg.model)


def reference_model(source: str, arch: str, in_chans: int, num_classes: int) -> nn.Module:
    """torchvision's or timm's `arch`, with `in_chans` input channels and `num_classes` outputs."""
    if source == "timm":
        import timm

        extra = {"drop_path_rate": 0.1} if arch == "convnext_tiny" else {}  # torchvision's and ours
        return timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=num_classes, **extra)
    import torchvision

    model = getattr(torchvision.models, arch)(num_classes=num_classes)
    if in_chans != 3:  # the stem conv for other input channels, as our builder makes it
        if arch == "resnet50":
            model.conv1 = nn.Conv2d(in_chans, 64, 7, 2, padding=3, bias=False)
        else:
            model.features[0][0] = nn.Conv2d(in_chans, 96, 4, 4)
    return model


def timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def make_optimizer(model: nn.Module, name: str) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)


def make_case(label: str, source: str, step: str, arch: str | None, model: nn.Module, cost: dict, args,
              device: torch.device, channels_last: bool, compiled: bool) -> Case:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.in_chans, args.size, args.size, generator=generator)
    y = torch.randint(0, args.num_classes, (args.batch,), generator=generator)
    # As run.py's Trainer does: the batch in the model's memory format.
    x = x.to(device).contiguous(memory_format=memory_format)
    forward = torch.compile(model) if compiled else model
    if compiled:
        label += " +compile"
    return Case(label, source, step, arch, channels_last, compiled, model, forward,
                make_optimizer(model, args.optimizer), x, y.to(device), cost)


def build_cases(args, device: torch.device) -> list[Case]:
    """Our steps (in the requested memory format) and, with --reference, each reference in both formats."""
    specs = []  # (label, source, step, arch, model, channels_last)
    for step in args.steps:
        arch = REFERENCE_OF_STEP.get(step) if args.roadmap == "tiny" else None
        model = our_model(step, args.roadmap, args.in_chans, args.num_classes, args.size, args.override)
        specs.append((step, "ours", step, arch, model, args.channels_last))
    if args.reference:
        archs = sorted({a for a in (REFERENCE_OF_STEP.get(s) for s in args.steps) if a} or REFERENCE_OF_STEP.values(),
                       key=list(REFERENCE_OF_STEP.values()).index)
        sources = ["torchvision"] + (["timm"] if args.timm else [])
        for arch in archs:
            for source in sources:
                for cl in (False, True):
                    model = reference_model(source, arch, args.in_chans, args.num_classes)
                    specs.append((f"{source}.{arch}", source, "", arch, model, cl))
    cases, costs = [], {}
    for label, source, step, arch, model, cl in specs:
        key = (source, step, arch)
        if key not in costs:
            costs[key] = count_cost(model, args.in_chans, args.size, activations=False)
        for compiled in ([False, True] if args.compile else [False]):
            variant = copy.deepcopy(model) if compiled else model  # its own weights and optimizer
            cases.append(make_case(label, source, step, arch, variant, costs[key], args, device, cl, compiled))
    return cases


# ------------------------------------------------------------------------------------------------------ timing


def train_step(case: Case, device: torch.device, dtype: str) -> None:
    case.optimizer.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        loss = F.cross_entropy(case.forward(case.x), case.y)
    loss.backward()
    case.optimizer.step()


def infer_step(case: Case, device: torch.device, dtype: str) -> None:
    with torch.inference_mode(), autocast(device, dtype):
        case.forward(case.x)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def run_rounds(cases: list[Case], args, device: torch.device) -> None:
    """Interleaved rounds, alternating direction, each a training then an inference step of every model (so a
    change in the machine's load hits both alike); the first `warmup` rounds are discarded."""
    for r in range(args.warmup + args.reps):
        order = cases if r % 2 == 0 else cases[::-1]
        for case in order:
            case.model.train()
            train_s = timed(lambda: train_step(case, device, args.dtype), device)
            case.model.eval()
            infer_s = timed(lambda: infer_step(case, device, args.dtype), device)
            if r >= args.warmup:
                case.train_s.append(train_s)
                case.infer_s.append(infer_s)
        if args.verbose:
            print(f"  round {r + 1}/{args.warmup + args.reps} done", file=sys.stderr)


def _resident_mb(case: Case) -> float:
    """What the model keeps between steps: parameters, gradients, optimizer state, buffers, the batch."""
    tensors = [p for p in case.model.parameters()] + [p.grad for p in case.model.parameters() if p.grad is not None]
    tensors += [v for state in case.optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    tensors += [case.x, case.y] + list(case.model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _profiled_peak_mb(fn) -> float:
    """Peak bytes of live tensors while `fn` runs (tensors alive before it included), from the profiler's memory
    timeline: exact for every tensor PyTorch allocates, blind to the C allocator's caching."""
    import warnings

    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                     with_stack=True) as prof:
            fn()
        timeline = prof._memory_profile().timeline
    live = peak = 0
    for _, action, _, size in timeline:
        if action in (Action.PREEXISTING, Action.CREATE):
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak / 2**20


def measure_peak_memory(case: Case, args, device: torch.device) -> tuple[float, str]:
    """Peak memory of one training step, model, gradients and optimizer state included."""
    case.model.train()
    train_step(case, device, args.dtype)  # gradients and optimizer state exist, as between real steps
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step(case, device, args.dtype)
        sync(device)
        growth = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        return growth + _resident_mb(case), "cuda max allocated over a train step (this model's tensors)"
    try:
        return (_profiled_peak_mb(lambda: train_step(case, device, args.dtype)),
                "peak of live tensors over a train step (torch.profiler memory timeline)")
    except Exception as e:  # a private profiler API: degrade to no number rather than no benchmark
        return float("nan"), f"unavailable ({type(e).__name__})"


# ----------------------------------------------------------------------------------------------------- results


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over rounds of theirs / ours step time (> 1: ours faster)."""
    return statistics.median(t / o for o, t in zip(ours, theirs)) if ours and theirs else float("nan")


def spread(values: list[float]) -> float:
    """(max - min) / median of the step times: how noisy the measurement was."""
    return (max(values) - min(values)) / statistics.median(values) if values else float("nan")


def results(cases: list[Case], args, device: torch.device, peak: float) -> list[dict]:
    rows = []
    for case in cases:
        train_med, infer_med = median_or_nan(case.train_s), median_or_nan(case.infer_s)
        train_ips, infer_ips = args.batch / train_med, args.batch / infer_med
        gfl = case.cost["gflops_conv_linear"]
        row = {
            "model": case.label, "source": case.source, "step": case.step,
            "roadmap": args.roadmap if case.source == "ours" else "", "reference_of": case.arch or "",
            "device": device.type, "device_name": device_name(device), "dtype": args.dtype, "batch": args.batch,
            "input_size": args.size, "in_chans": args.in_chans, "num_classes": args.num_classes,
            "channels_last": case.channels_last, "compile": case.compiled, "threads": torch.get_num_threads(),
            "optimizer": args.optimizer, "train_imgs_per_s": train_ips, "infer_imgs_per_s": infer_ips,
            "train_s_median": train_med, "infer_s_median": infer_med, "train_s_spread": spread(case.train_s),
            "infer_s_spread": spread(case.infer_s), "peak_mem_mb": case.peak_mem_mb,
            "peak_mem_kind": args.peak_mem_kind, "gflops": case.cost["gflops"], "gflops_conv_linear": gfl,
            "params": case.cost["params"], "mfu": 2 * gfl * 1e9 * 3 * train_ips / peak,
            "infer_mfu": 2 * gfl * 1e9 * infer_ips / peak, "peak_tflops": peak / 1e12, "reps": args.reps,
            "warmup": args.warmup, "torch_version": torch.__version__,
        }
        row.update({k: "" for k in ("train_ratio", "infer_ratio", "train_ratio_of_medians",
                                    "infer_ratio_of_medians", "ratio_against", "compile_train_gain",
                                    "compile_infer_gain")})
        rows.append(row)
    by_case = dict(zip((id(c) for c in cases), rows))
    for case in cases:
        row = by_case[id(case)]
        if case.compiled:  # the gain over the same model run eagerly
            eager = next(c for c in cases if c.label == case.label.removesuffix(" +compile") and not c.compiled
                         and c.source == case.source and c.channels_last == case.channels_last)
            row["compile_train_gain"] = paired_ratio(case.train_s, eager.train_s)
            row["compile_infer_gain"] = paired_ratio(case.infer_s, eager.infer_s)
        if case.source != "ours" or case.arch is None:
            continue
        refs = [c for c in cases if c.source != "ours" and c.arch == case.arch and c.compiled == case.compiled]
        if not refs:
            continue
        ratio_against = []
        for mode in ("train", "infer"):
            times = (lambda c: c.train_s) if mode == "train" else (lambda c: c.infer_s)
            fastest = min(refs, key=lambda c: median_or_nan(times(c)))
            row[f"{mode}_ratio"] = paired_ratio(times(case), times(fastest))
            row[f"{mode}_ratio_of_medians"] = median_or_nan(times(fastest)) / median_or_nan(times(case))
            ratio_against.append(f"{mode}: {fastest.label}{' CL' if fastest.channels_last else ' NCHW'}")
            for ref in refs:  # each reference row: ours / that reference
                by_case[id(ref)][f"{mode}_ratio"] = paired_ratio(times(case), times(ref))
                by_case[id(ref)][f"{mode}_ratio_of_medians"] = median_or_nan(times(ref)) / median_or_nan(times(case))
        row["ratio_against"] = "; ".join(ratio_against)
        for ref in refs:
            by_case[id(ref)]["ratio_against"] = f"ours: {case.label}"
    return rows


def fmt(value, spec: str) -> str:
    if value == "" or value is None:
        return ""
    if isinstance(value, float) and value != value:
        return "n/a"
    return format(value, spec)


def print_table(rows: list[dict], args, device: torch.device, peak: float, loads: tuple[str, str]) -> None:
    print(f"\n## Benchmark: device {device.type} ({device_name(device)}), dtype {args.dtype}, batch {args.batch}, "
          f"input {args.in_chans}x{args.size}x{args.size}, {args.num_classes} classes, channels_last "
          f"{'ours ' + str(args.channels_last) + (', references both' if args.reference else '')}, "
          f"compile {'False and True' if args.compile else 'False'}")
    print(f"torch {torch.__version__}; optimizer {args.optimizer}; {args.reps} timed rounds after {args.warmup} "
          f"warm-up, interleaved, medians; matmul peak {peak / 1e12:.3f} TFLOP/s ({args.dtype}); "
          f"load average before {loads[0]}, after {loads[1]}")
    print("MFU = 2 x conv+linear GMACs x img/s (x3 for training) / matmul peak (fvcore counts kernel taps over zero"
          " padding that oneDNN skips: on small inputs such as 32x32 MFU can exceed 1). ratio = reference step time / ours,"
          " paired within rounds, median (> 1: ours faster); ours against the faster reference; a reference row:"
          " ours against it. peak MB: " + args.peak_mem_kind + ".\n")
    head = ["model", "CL", "compile", "train img/s", "infer img/s", "spread t/i", "peak MB", "GFLOPs", "c+l GFLOPs",
            "params M", "MFU train", "MFU infer", "train ratio", "infer ratio"]
    if args.compile:
        head += ["compile gain t/i"]
    lines = []
    for r in rows:
        line = [r["model"], "y" if r["channels_last"] else "n", "y" if r["compile"] else "n",
                fmt(r["train_imgs_per_s"], ".1f"), fmt(r["infer_imgs_per_s"], ".1f"),
                f"{fmt(r['train_s_spread'], '.2f')}/{fmt(r['infer_s_spread'], '.2f')}",
                fmt(r["peak_mem_mb"], ".0f"), fmt(r["gflops"], ".3f"), fmt(r["gflops_conv_linear"], ".3f"),
                fmt(r["params"] / 1e6, ".2f"), fmt(r["mfu"], ".3f"), fmt(r["infer_mfu"], ".3f"),
                fmt(r["train_ratio"], ".2f"), fmt(r["infer_ratio"], ".2f")]
        if args.compile:
            line.append(f"{fmt(r['compile_train_gain'], '.2f')}/{fmt(r['compile_infer_gain'], '.2f')}"
                        if r["compile"] else "")
        lines.append(line)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                                enumerate(zip(line, widths))) + " |")
    ours = [r for r in rows if r["source"] == "ours" and r["train_ratio"] != ""]
    if ours:
        print("\nour/theirs (ours against the faster reference; > 1: ours faster):")
        for r in ours:
            same = all(r["params"] == o["params"] for o in rows if o["source"] != "ours"
                       and o["reference_of"] == r["reference_of"])
            print(f"  {r['model']:<16} {'CL' if r['channels_last'] else 'NCHW'}{' +compile' if r['compile'] else ''}"
                  f" vs {r['reference_of']}: train {r['train_ratio']:.2f} (ratio of medians "
                  f"{r['train_ratio_of_medians']:.2f}), infer {r['infer_ratio']:.2f} (ratio of medians "
                  f"{r['infer_ratio_of_medians']:.2f}) [{r['ratio_against']}]"
                  f"{'' if same else '  (parameter counts differ: not the same network)'}")


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


# ----------------------------------------------------------------------------------------------- data pipeline


def data_pipeline(args, device: torch.device) -> list[dict]:
    """The default run's training DataLoader, alone and feeding the default model, against in-memory batches."""
    from roadmap.data import build_splits
    from roadmap.train import Trainer

    cfg = roadmap.compose([f"runtime.device={device.type}", *args.data_override])
    splits = build_splits(cfg.data, cfg.budget, cfg.recipe)
    model = roadmap.build_model(cfg.model)
    trainer = Trainer(cfg, splits, model)  # builds the loader, model format, optimizer as run.py does
    loader = trainer.train_loader
    batch = loader.batch_size
    n = min(args.data_batches, len(loader) - 1)

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
    model, optimizer, loss_fn = trainer.model, trainer.optimizer, trainer.loss_fn
    model.train()
    amp = trainer._autocast

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        with amp():
            loss = loss_fn(trainer.forward_model(images), labels)
        loss.backward()
        optimizer.step()

    images, labels = trainer._to_device(*next(iter(loader))[:2])  # the loader's items end with their load time
    steps = min(args.data_steps, len(loader) - 1)

    def in_memory() -> float:
        step(images, labels)  # warm
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(images, labels)
        sync(device)
        return steps * batch / (time.perf_counter() - start)

    def fed() -> float:
        it = iter(loader)
        step(*trainer._to_device(*next(it)[:2]))  # warm, and the workers started
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(*trainer._to_device(*next(it)[:2]))
        sync(device)
        return steps * batch / (time.perf_counter() - start)

    a1, b, a2 = in_memory(), fed(), in_memory()
    synthetic = (a1 + a2) / 2
    rows = [{"what": "DataLoader alone", "imgs_per_s": loader_ips},
            {"what": "train steps, batch in memory (mean of before/after)", "imgs_per_s": synthetic},
            {"what": "train steps fed by the DataLoader", "imgs_per_s": b}]
    print(f"\n## Data pipeline of the default run ({' '.join(args.data_override) or 'no overrides'}): "
          f"{cfg.data.name}, step {cfg.step}, recipe {cfg.recipe.name}, batch {batch}, "
          f"{trainer.workers} worker(s) (runtime.workers={cfg.runtime.workers}), input {cfg.data.channels}x{cfg.data.image_size}x{cfg.data.image_size}, "
          f"device {device.type} ({device_name(device)}), channels_last {cfg.runtime.channels_last}, "
          f"amp {trainer.amp_dtype or 'off (fp32)'}, compile {cfg.runtime.compile}")
    print(f"first batch (worker start-up) {first:.2f} s; {n} batches timed for the loader, {steps} steps per "
          f"training measurement; load average {load_average()}\n")
    print("| what | img/s |\n|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['imgs_per_s']:.1f} |")
    print(f"\nloader / model training throughput: {loader_ips / synthetic:.2f} (> 1: the loader alone outpaces "
          f"training); fed / in-memory training: {b / synthetic:.2f} (1.00: not limited by the data pipeline)")
    return rows


# ------------------------------------------------------------------------------------- ImageNet-like JPEG folder

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


def decode_augment_per_core(args) -> tuple[dict[str, float], dict]:
    """Images per second one core decodes and augments with each recipe's training transforms (built by
    roadmap.data as a run builds them, from `data=imagefolder`), on a temporary folder of photo-like JPEGs, in one
    thread as a DataLoader worker runs, per second of this process's CPU time: alternating rounds, the first
    discarded (file cache), medians."""
    from roadmap.data import build_splits

    recipes = ("original", "modern")
    with tempfile.TemporaryDirectory() as root:
        folder = write_jpeg_folder(Path(root), args.folder_images)
        datasets = {}
        for name in recipes:
            cfg = roadmap.compose(["data=imagefolder", f"data.root={root}", "data.num_classes=2", "data.val_size=1",
                                   f"recipe={name}", *args.data_override])
            datasets[name] = build_splits(cfg.data, cfg.budget, cfg.recipe).train
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        rates = {name: [] for name in recipes}
        for r in range(args.folder_rounds + 1):
            for name in recipes if r % 2 == 0 else recipes[::-1]:
                dataset = datasets[name]
                start = time.process_time()  # CPU seconds: what a core gives, however busy the machine
                for i in range(len(dataset)):
                    dataset[i]
                if r > 0:
                    rates[name].append(len(dataset) / (time.process_time() - start))
        torch.set_num_threads(threads)
    return {name: statistics.median(v) for name, v in rates.items()}, folder


def image_folder(args, model_rows: list[dict]) -> list[dict]:
    """Decode + augment img/s per core for both recipes, and the cores that feed a training img/s: each of our
    models timed above (with its step's recipe) and `--train-imgs-per-s`."""
    loads = [load_average()]
    per_core, folder = decode_augment_per_core(args)
    loads.append(load_average())
    print(f"\n## Decode + augment per core: {args.folder_images} photo-like JPEGs in a temporary image folder (mean "
          f"{folder['mean_pixels'] / 1e3:.0f}k pixels, {folder['mean_kb']:.0f} KB, quality 90; ImageNet's train "
          f"JPEGs: ~110 KB), one process, 1 thread as in a DataLoader worker, per CPU second, median of "
          f"{args.folder_rounds} rounds; "
          f"load average before {loads[0]}, after {loads[1]}\n")
    print("| recipe | img/s per core |\n|---|---|")
    for name, rate in per_core.items():
        print(f"| {name} | {rate:.1f} |")
    feeds = [(f"{r['model']} ({r['device']}, batch {r['batch']}, {r['input_size']}px)", r["train_imgs_per_s"],
              roadmap.compose([f"+step={r['step']}"]).recipe.name) for r in model_rows if r["source"] == "ours"]
    feeds += [("--train-imgs-per-s", figure, name) for figure in args.train_imgs_per_s for name in per_core]
    rows = [{"what": what, "train_imgs_per_s": ips, "recipe": name, "cores": ips / per_core[name]}
            for what, ips, name in feeds]
    if rows:
        print("\nCores per training process (per GPU) that keep it fed: train img/s / img/s per core (collation and "
              "the copy to the trainer not counted)\n\n| training | train img/s | recipe | cores |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['what']} | {r['train_imgs_per_s']:.1f} | {r['recipe']} | {r['cores']:.1f} |")
    return [{"recipe": name, "imgs_per_s_per_core": rate} for name, rate in per_core.items()] + rows


# ------------------------------------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m analysis.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", nargs="+", default=None, metavar="STEP",
                   help=f"roadmap steps to time (default: all, {' '.join(roadmap.STEP_NAMES)})")
    p.add_argument("--roadmap", default="tiny", help="roadmap path (tiny: ResNet-50 -> ConvNeXt-T; base)")
    p.add_argument("--reference", action="store_true",
                   help="also time torchvision's resnet50/convnext_tiny (and timm's) in both memory formats")
    p.add_argument("--timm", action=argparse.BooleanOptionalAction, default=None,
                   help="with --reference, time timm's models too (default: when timm is importable)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32, help="input height and width")
    p.add_argument("--in-chans", type=int, default=3,
                   help="input channels (3 and 1000 classes: the references' own networks; the default run has 1, 10)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast, as run.py's amp")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="our models in channels_last (run.py's default) or NCHW; references run both")
    p.add_argument("--compile", action="store_true", help="also time every model under torch.compile")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--reps", type=int, default=5, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=2, help="discarded rounds")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's, every core)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="Hydra overrides for our models, e.g. model.depths=[1,1,1,1]")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="measure each model's peak memory (one profiled training step; seconds per model on CPU)")
    p.add_argument("--csv", default=None, help="write one row per model to this CSV")
    p.add_argument("--data-pipeline", action="store_true", help="measure the default run's DataLoader")
    p.add_argument("--data-override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the run whose data pipeline is measured (default: the default run)")
    p.add_argument("--data-batches", type=int, default=20)
    p.add_argument("--data-steps", type=int, default=8)
    p.add_argument("--image-folder", action="store_true",
                   help="with --data-pipeline: decode + augment img/s per core on ImageNet-like JPEGs, both recipes, "
                        "instead of the default run's loader")
    p.add_argument("--folder-images", type=int, default=64, help="JPEGs generated for --image-folder")
    p.add_argument("--folder-rounds", type=int, default=3)
    p.add_argument("--train-imgs-per-s", type=float, nargs="*", default=[], metavar="IMGS_PER_S",
                   help="with --image-folder: training speeds (e.g. a GPU's) to give the cores that feed them")
    p.add_argument("--no-models", action="store_true", help="skip the model table (e.g. with --data-pipeline)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    args.steps = args.steps or list(roadmap.STEP_NAMES)
    unknown = [s for s in args.steps if s not in roadmap.STEP_NAMES]
    if unknown:
        p.error(f"unknown step {unknown[0]}; choose from {' '.join(roadmap.STEP_NAMES)}")
    if args.timm is None:
        args.timm = timm_available()
    if args.reps < 1 or args.warmup < 0 or args.batch < 1:
        p.error("--reps and --batch must be positive, --warmup non-negative")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    if not args.no_models:
        loads = [load_average()]
        peak = matmul_peak_flops(device, args.dtype)
        cases = build_cases(args, device)
        run_rounds(cases, args, device)
        args.peak_mem_kind = "not measured (--no-memory)"
        if args.memory:
            for case in cases:
                case.peak_mem_mb, args.peak_mem_kind = measure_peak_memory(case, args, device)
        peak = max(peak, matmul_peak_flops(device, args.dtype))  # before and after: the less disturbed one
        loads.append(load_average())
        rows = results(cases, args, device, peak)
        print_table(rows, args, device, peak, tuple(loads))
        if args.csv:
            write_csv(rows, args.csv)
            print(f"\nwrote {args.csv}")
    if args.data_pipeline and args.image_folder:
        return rows + image_folder(args, rows)
    if args.data_pipeline:
        data_pipeline(args, device)
    return rows


if __name__ == "__main__":
    main()

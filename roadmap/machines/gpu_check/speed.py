"""Part 2: resnet and sep_downsample against torchvision's (and timm's) networks they equal, eager and compiled:
train and inference img/s, MFU against the measured matmul peak, and what compiling costs.

analysis.benchmark does the measuring: its cases, interleaved rounds, medians, paired ratios and MFU. What this
part adds is a time cap: the eager cases as the benchmark builds them (ours in channels_last, each reference in
both memory formats), then a compiled copy of each channels_last case, compiled in order of importance (ours and
torchvision's ResNet-50 first) while the cap leaves room for the timed rounds; a case whose compilation would not
fit is left out and named. With --smoke the references are their own classes at tiny widths.
"""

import copy
import time
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.models.convnext import CNBlockConfig
from torchvision.models.resnet import Bottleneck

from roadmap.machines.benchmark.machine import matmul_peak_flops
from roadmap.machines.benchmark.models import Case, build_cases, make_case, reference_model
from roadmap.machines.benchmark.report import model_rows
from roadmap.machines.benchmark.settings import Settings, parse_settings
from roadmap.machines.benchmark.timing import infer_step, run_rounds, timed, train_step
from roadmap.machines.gpu_check.errors import error_line
from roadmap.machines.gpu_check.plan import Plan
from roadmap.network.flops import count_cost

COMPILE_FIELDS = ["compile_train_s", "compile_infer_s"]
SOURCE_ORDER = ("ours", "torchvision", "timm")
ARCH_ORDER = ("resnet50", "convnext_tiny")


def speed_settings(plan: Plan, device: torch.device, timm: bool) -> Settings:
    """analysis.benchmark's settings for our two endpoints; the references are built here (`reference_cases`)."""
    return parse_settings([
        "--steps", "resnet", "sep_downsample", "--timm" if timm else "--no-timm", "--batch", str(plan.speed_batch),
        "--size", str(plan.speed_size), "--num-classes", str(plan.speed_classes), "--device", device.type,
        "--dtype", plan.dtype, "--channels-last", "--reps", str(plan.speed_reps), "--warmup", str(plan.speed_warmup),
        "--no-memory", "--override", *plan.model_overrides])


def tiny_reference(source: str, arch: str, num_classes: int) -> nn.Module:
    """--smoke: the reference's own class, one block per stage at widths near our smoke networks' (the full
    networks take seconds per step on a CPU)."""
    if source == "timm":
        import timm

        kwargs = {"layers": (1, 1, 1, 1), "base_width": 8} if arch == "resnet50" else {
            "depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128), "drop_path_rate": 0.1}
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    if arch == "resnet50":
        return torchvision.models.ResNet(Bottleneck, [1, 1, 1, 1], num_classes=num_classes, width_per_group=8)
    stages = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, 128, 1),
              CNBlockConfig(128, None, 1)]
    return torchvision.models.ConvNeXt(stages, stochastic_depth_prob=0.1, num_classes=num_classes)


def reference_cases(settings: Settings, tiny: bool) -> list[Case]:
    """torchvision's (and, with settings.timm, timm's) resnet50 and convnext_tiny in both memory formats, as
    analysis.benchmark builds them (`tiny`: `tiny_reference`)."""
    sources = ["torchvision"] + (["timm"] if settings.timm else [])
    cases = []
    for arch in ARCH_ORDER:
        for source in sources:
            cost = None
            for channels_last in (False, True):
                model = (tiny_reference(source, arch, settings.num_classes) if tiny else
                         reference_model(source, arch, settings.in_chans, settings.num_classes))
                cost = cost or count_cost(model, settings.in_chans, settings.size, activations=False)
                cases.append(make_case(f"{source}.{arch}", source, "", arch, model, cost, settings, channels_last))
    return cases


def compile_priority(case: Case) -> tuple:
    """timm last; within each group ResNet-50 before ConvNeXt-T, ours before the reference."""
    return case.source == "timm", ARCH_ORDER.index(case.arch), SOURCE_ORDER.index(case.source)


def compiled_copies(cases: list[Case], settings: Settings, backend: str) -> list[Case]:
    """A compiled copy of every channels_last case, in compile priority."""
    compiled = []
    for case in sorted((c for c in cases if c.channels_last), key=compile_priority):
        copy_case = make_case(case.label, case.source, case.step, case.arch, copy.deepcopy(case.model), case.cost,
                              settings, True, eager=case)
        copy_case.forward = torch.compile(copy_case.model, backend=backend)
        compiled.append(copy_case)
    return compiled


def link(cases: list[Case]) -> None:
    """Our endpoints against the references of their architecture among `cases` (all eager or all compiled), as
    analysis.benchmark links them: the report's ratios follow these links."""
    for case in cases:
        case.references, case.ours = [], None
    for ours in (c for c in cases if c.source == "ours"):
        ours.references = [c for c in cases if c.source != "ours" and c.arch == ours.arch]
        for reference in ours.references:
            reference.ours = ours


@dataclass(frozen=True)
class Speed:
    rows: list[dict]  # one per case: analysis.benchmark's fields plus compile seconds
    left_out: list[str]  # compiled cases not measured: their compilation would not fit the cap
    compile_errors: dict[str, str]  # compiled cases whose compilation raised: the error's first line
    peak_flops: float  # the matmul peak the MFU figures are relative to
    settings: Settings


def measure_speed(plan: Plan, device: torch.device, timm: bool, peak_before: float, deadline: float) -> Speed:
    """Every case timed within `deadline` (time.monotonic); MFU against the higher of the matmul peak measured
    before (`peak_before`) and after the timing, the less disturbed one, as analysis.benchmark takes it."""
    settings = speed_settings(plan, device, timm)
    torch.backends.cudnn.benchmark = True  # as run.py trains (roadmap.training.train.configure_torch)
    eager = build_cases(settings) + reference_cases(settings, plan.smoke)
    link(eager)
    one_round = 0.0  # a training and an inference step of every eager case, also their warm-up
    for case in eager:
        case.model.train()
        one_round += timed(lambda: train_step(case, settings), device)
        case.model.eval()
        one_round += timed(lambda: infer_step(case, settings), device)
    # What the rounds will take: every eager case and its compiled copy (about as fast), with a margin of 2.
    rounds_s = (settings.warmup + settings.reps) * 2 * one_round * 2

    compiled, compile_s, left_out, errors = compiled_copies(eager, settings, plan.compile_backend), {}, [], {}
    last_compile = 0.0
    for case in compiled:
        if time.monotonic() + last_compile + rounds_s > deadline:
            left_out.append(case.label)
            continue
        started = time.monotonic()
        try:
            case.model.train()
            train_s = timed(lambda: train_step(case, settings), device)  # compiles forward and backward
            case.model.eval()
            infer_s = timed(lambda: infer_step(case, settings), device)  # recompiles: eval mode, no autograd
        except Exception as e:  # e.g. no C compiler for Triton's launcher: the eager figures still count
            errors[case.label] = error_line(e)
        else:
            compile_s[case] = {"compile_train_s": train_s, "compile_infer_s": infer_s}
        last_compile = time.monotonic() - started
    compiled = [c for c in compiled if c in compile_s]
    link(compiled)

    cases = eager + compiled
    run_rounds(cases, settings)
    peak = max(peak_before, matmul_peak_flops(device, plan.dtype, n=plan.peak_matmul_n))
    rows = model_rows(cases, settings, peak, "not measured")
    for row, case in zip(rows, cases):
        row |= compile_s.get(case, dict.fromkeys(COMPILE_FIELDS, ""))
    return Speed(rows, left_out, errors, peak, settings)

"""What is timed: our roadmap steps and, with --reference, torchvision's (and timm's) networks they equal, each a
Case with its own batch and optimizer, linked to the cases its figures are relative to.

Identical settings for all: the same batch, input, optimizer (SGD momentum 0.9, weight decay 1e-4 unless --optimizer
adamw), loss, dtype, threads and compile setting; references run in train mode with their own stochastic depth
(torchvision convnext_tiny: 0.1, as ours; timm's is set to 0.1 too). Our models run in the memory format run.py
uses (`runtime.channels_last`, --no-channels-last: NCHW); references run both ways.
"""

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

import roadmap
from roadmap.machines.benchmark.settings import Settings
from roadmap.config import input_overrides
from roadmap.network.flops import count_cost

# Our roadmap endpoints and the reference architecture each one equals.
REFERENCE_OF_STEP = {"resnet": "resnet50", "sep_downsample": "convnext_tiny"}


@dataclass(eq=False)
class Case:
    """One model under one setting, the cases it is compared with, and its measured step times."""

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
    eager: "Case | None" = field(default=None, repr=False)  # compiled: the same model run eagerly
    # Our endpoint: every reference of its architecture with its compile setting; a reference: that endpoint.
    references: list["Case"] = field(default_factory=list, repr=False)
    ours: "Case | None" = field(default=None, repr=False)
    train_s: list[float] = field(default_factory=list)
    infer_s: list[float] = field(default_factory=list)
    peak_mem_mb: float = float("nan")


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


def make_optimizer(model: nn.Module, name: str) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)


def make_case(label: str, source: str, step: str, arch: str | None, model: nn.Module, cost: dict,
              settings: Settings, channels_last: bool, eager: Case | None = None) -> Case:
    """`model` on the benchmark's device with a fixed batch; compiled when `eager` (its uncompiled case) is given."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(settings.device, memory_format=memory_format)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(settings.batch, settings.in_chans, settings.size, settings.size, generator=generator)
    y = torch.randint(0, settings.num_classes, (settings.batch,), generator=generator)
    # As run.py's Trainer does: the batch in the model's memory format.
    x = x.to(settings.device).contiguous(memory_format=memory_format)
    compiled = eager is not None
    return Case(label + (" +compile" if compiled else ""), source, step, arch, channels_last, compiled, model,
                torch.compile(model) if compiled else model, make_optimizer(model, settings.optimizer), x,
                y.to(settings.device), cost, eager=eager)


def build_cases(settings: Settings) -> list[Case]:
    """Our steps (in the requested memory format) and, with --reference, each reference in both formats; with
    --compile, each also compiled. Our endpoints and their references are linked both ways."""
    specs = []  # (label, source, step, arch, model, channels_last)
    for step in settings.steps:
        arch = REFERENCE_OF_STEP.get(step) if settings.roadmap == "tiny" else None
        model = our_model(step, settings.roadmap, settings.in_chans, settings.num_classes, settings.size,
                          settings.override)
        specs.append((step, "ours", step, arch, model, settings.channels_last))
    if settings.reference:
        archs = sorted({REFERENCE_OF_STEP[s] for s in settings.steps if s in REFERENCE_OF_STEP}
                       or REFERENCE_OF_STEP.values(), key=list(REFERENCE_OF_STEP.values()).index)
        sources = ["torchvision"] + (["timm"] if settings.timm else [])
        for arch in archs:
            for source in sources:
                for cl in (False, True):
                    model = reference_model(source, arch, settings.in_chans, settings.num_classes)
                    specs.append((f"{source}.{arch}", source, "", arch, model, cl))
    cases, costs = [], {}
    for label, source, step, arch, model, cl in specs:
        key = (source, step, arch)
        if key not in costs:
            costs[key] = count_cost(model, settings.in_chans, settings.size, activations=False)
        eager = make_case(label, source, step, arch, model, costs[key], settings, cl)
        cases.append(eager)
        if settings.compile:  # a copy: its own weights and optimizer
            cases.append(make_case(label, source, step, arch, copy.deepcopy(model), costs[key], settings, cl, eager))
    for case in cases:
        if case.source == "ours" and case.arch is not None:
            case.references = [c for c in cases if c.source != "ours" and c.arch == case.arch
                               and c.compiled == case.compiled]
            for reference in case.references:
                reference.ours = case
    return cases

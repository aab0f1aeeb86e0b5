"""Throughput and peak memory of each case.

The cores of a shared machine are noisy, so everything is paired and repeated: all models are built first, then
timed in rounds, each running one training step (forward + loss + backward + optimizer step) and one inference step
(eval mode, no autograd) of every model, in alternating order (A B C D, D C B A, ...), so our model and a reference
always run within seconds of each other. The first `--warmup` rounds are discarded.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from roadmap.machines.benchmark.machine import autocast, sync
from roadmap.machines.benchmark.models import Case
from roadmap.machines.benchmark.settings import Settings

MEASURED = "analysis.benchmark measured step"  # the profiler range whose memory events are read


def train_step(case: Case, settings: Settings) -> None:
    case.optimizer.zero_grad(set_to_none=True)
    with autocast(settings.device, settings.dtype):
        loss = F.cross_entropy(case.forward(case.x), case.y)
    loss.backward()
    case.optimizer.step()


def infer_step(case: Case, settings: Settings) -> None:
    with torch.inference_mode(), autocast(settings.device, settings.dtype):
        case.forward(case.x)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def run_rounds(cases: list[Case], settings: Settings) -> None:
    """Interleaved rounds, alternating direction, each a training then an inference step of every model (so a
    change in the machine's load hits both alike), into each case's `train_s` and `infer_s`."""
    rounds = settings.warmup + settings.reps
    for r in range(rounds):
        for case in cases if r % 2 == 0 else cases[::-1]:
            case.model.train()
            train_s = timed(lambda: train_step(case, settings), settings.device)
            case.model.eval()
            infer_s = timed(lambda: infer_step(case, settings), settings.device)
            if r >= settings.warmup:
                case.train_s.append(train_s)
                case.infer_s.append(infer_s)
        if settings.verbose:
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr)


def resident_mb(case: Case) -> float:
    """What the model keeps between steps: parameters, gradients, optimizer state, buffers, the batch."""
    tensors = [p for p in case.model.parameters()] + [p.grad for p in case.model.parameters() if p.grad is not None]
    tensors += [v for state in case.optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    tensors += [case.x, case.y] + list(case.model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def cuda_growth_mb(fn, device: torch.device) -> float:
    """How far the CUDA caching allocator's allocated bytes rise above their level before `fn` while it runs."""
    sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def cpu_growth_mb(fn) -> float:
    """How far the bytes of live CPU tensors rise above their level before `fn` while it runs: every allocation and
    free PyTorch makes, replayed in order from the profiler's memory events; blind to the C allocator's caching.
    `fn` runs twice under the profiler and the second run is read: the profiler reports freeing only what was
    allocated while it ran, and the first run allocates what the second one frees (the gradients zero_grad drops)."""
    with tempfile.TemporaryDirectory() as folder:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
            with record_function(MEASURED):
                fn()
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    span = next(e for e in events if e.get("name") == MEASURED)
    start, end = span["ts"], span["ts"] + span["dur"]
    memory = [e for e in events if e.get("name") == "[memory]" and start <= e["ts"] <= end]
    live = peak = 0
    for event in sorted(memory, key=lambda e: e["ts"]):
        live += event["args"]["Bytes"]
        peak = max(peak, live)
    return peak / 2**20


def peak_memory_kind(device: torch.device) -> str:
    """What `measure_peak_memory` counts on `device`."""
    if device.type == "cuda":
        return "cuda max allocated over a train step (this model's tensors)"
    return "peak of live tensors over a train step (torch.profiler memory timeline)"


def measure_peak_memory(case: Case, settings: Settings) -> float:
    """Peak MB of one training step: what the model keeps between steps (parameters, gradients, optimizer state,
    the batch) plus the step's growth above it."""
    case.model.train()
    step = lambda: train_step(case, settings)  # noqa: E731
    if settings.device.type == "cuda":
        step()  # gradients and optimizer state exist, as between real steps
        growth = cuda_growth_mb(step, settings.device)
    else:
        growth = cpu_growth_mb(step)  # its first run does what the step before does on CUDA
    return resident_mb(case) + growth

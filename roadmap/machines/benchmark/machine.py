"""The machine under test: its name and load, its matmul peak, and the device calls every measurement shares."""

import os
import platform
import re
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F


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

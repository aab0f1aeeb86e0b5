"""The machine the check ran on, as the report names it: device, torch and its CUDA stack, Python, cores, timm."""

import os
import platform
import shutil
import subprocess

import torch

from roadmap.machines.benchmark.machine import device_name
from roadmap.records.record import git_commit


def timm_version() -> str | None:
    try:
        import timm
    except ImportError:
        return None
    return timm.__version__


def driver_version() -> str | None:
    """The NVIDIA driver's version from nvidia-smi, where it is on the PATH."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def describe(device: torch.device) -> dict:
    """Name, versions and sizes of the machine, one entry per line of the report's header."""
    info = {"device": device_name(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device"] += (f" ({device}, compute capability {props.major}.{props.minor}, "
                           f"{props.total_memory / 2**30:.1f} GiB)")
        info["CUDA"] = torch.version.cuda
        info["cuDNN"] = str(torch.backends.cudnn.version())
        info["NCCL"] = ".".join(map(str, torch.cuda.nccl.version()))
        info["driver"] = driver_version() or "n/a (no nvidia-smi)"
    else:
        info["CUDA"] = "none (CPU)"
    info["torch"] = torch.__version__
    info["Python"] = platform.python_version()
    info["CPU cores this process may run on"] = str(len(os.sched_getaffinity(0)))
    info["timm"] = timm_version() or "not installed: the timm comparison is skipped"
    info["git commit"] = git_commit() or "n/a"
    return info

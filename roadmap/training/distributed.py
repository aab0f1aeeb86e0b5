"""Data parallelism through torchrun: process group set-up, the DDP wrapper and the reductions of the metrics.

Outside torchrun every function here is the single-process identity, so the training loop has one code path.
"""

import io
import os
import socket
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def is_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def rank_from_env() -> int:
    """This process's rank as torchrun announces it, before the process group exists."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def _export_slurm_tasks() -> None:
    """Under submitit with several SLURM tasks (one per GPU), set the variables torchrun would have set."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and int(os.environ.get("SLURM_NTASKS", 1)) > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init() -> None:
    """Join the process group torchrun (or submitit on SLURM) describes in the environment: nccl on GPUs, gloo on
    CPU."""
    if dist.is_initialized():
        return
    _export_slurm_tasks()
    if not is_torchrun():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()))
    else:
        dist.init_process_group("gloo")


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP whose gradients are views into its all-reduce buckets, so that backward accumulates straight into them:
    no copy, and no stride mismatch on weights whose strides are ambiguous (1x1 and depthwise kernels, whose
    gradients some kernels lay out differently in the dimensions of size 1). DDP makes the gradients that exist
    when it is built bucket views; they must then be zeroed in place, never set to None (`keeps_grads`)."""
    if world_size() == 1:
        return model
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   gradient_as_bucket_view=True)


def keeps_grads(model: nn.Module) -> bool:
    """Whether the optimizer must zero the gradients in place rather than free them (see `wrap`)."""
    return isinstance(model, DistributedDataParallel)


def no_sync_unless(model: nn.Module, sync: bool):
    """Skip the gradient all-reduce on the micro-batches before the last one of an optimizer step."""
    if sync or not isinstance(model, DistributedDataParallel):
        return nullcontext()
    return model.no_sync()


def all_sum(values: list[float]) -> list[float]:
    """Each value summed over the processes."""
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64,
                          device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()


def processes_sharing(cpus: set[int]) -> int:
    """How many training processes on this machine, this one included, may run on some of `cpus`: all of torchrun's
    (they share the machine), only this one where SLURM binds each task to its own cores."""
    if world_size() == 1:
        return 1
    everyone = [None] * world_size()
    dist.all_gather_object(everyone, (socket.gethostname(), cpus))
    return sum(host == socket.gethostname() and bool(theirs & cpus) for host, theirs in everyone)


def gather_states(state: dict) -> list[dict]:
    """Every process's `state` (tensors and plain values), in rank order, on every process."""
    if world_size() == 1:
        return [state]
    # Sent as torch.save bytes: all_gather_object cannot rebuild the CPU tensors it pickles directly.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, buffer.getvalue())
    return [torch.load(io.BytesIO(data), weights_only=True) for data in gathered]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()

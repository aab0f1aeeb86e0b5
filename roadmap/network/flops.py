"""Model cost as the paper counts it: fvcore multiply-accumulates at one input size, batch 1, eval mode."""

import torch
from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
from torch import nn

from roadmap.network import fast


def count_cost(model: nn.Module, in_chans: int, size: int, activations: bool = True) -> dict:
    """params; gflops (fvcore total: conv, linear, norms, pooling); gflops_conv_linear (the paper's GFLOPs);
    activations_m (fvcore activation count, millions; a second trace, skipped with `activations=False`).
    The network is counted as built, without roadmap.network.fast's shortcuts."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, size, size, device=next(model.parameters()).device)
    with torch.no_grad(), fast.plain(model):
        flops = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = flops.by_operator()
        cost = {
            "params": sum(p.numel() for p in model.parameters()),
            "gflops": flops.total() / 1e9,
            "gflops_conv_linear": (by_op.get("conv", 0) + by_op.get("linear", 0)) / 1e9,
        }
        if activations:
            counter = ActivationCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            cost["activations_m"] = counter.total() / 1e6
    model.train(was_training)
    return cost

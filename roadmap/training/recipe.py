"""A training recipe as PyTorch objects: optimizer, per-iteration schedule, loss and batch mixing."""

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim import lr_scheduler
from torchvision.transforms import v2


LR_SCALING = {"linear": lambda ratio: ratio, "sqrt": math.sqrt, "constant": lambda ratio: 1.0}


def scaled_lr(recipe_cfg, budget_cfg) -> float:
    """The recipe's learning rate, given at its base batch, at the budget's global batch: scaled by the budget's
    rule for the recipe's optimizer (linear: x batch / base_batch; sqrt: x its square root; constant: x 1)."""
    rule = LR_SCALING[budget_cfg.lr_scaling[recipe_cfg.optimizer]]
    return recipe_cfg.lr * rule(budget_cfg.batch / recipe_cfg.base_batch)


def lr_rule(recipe_cfg, budget_cfg) -> str:
    """How `scaled_lr` got its value, for the run's record: `0.1 x 128/256 (linear, fmnist budget)`."""
    rule = budget_cfg.lr_scaling[recipe_cfg.optimizer]
    ratio = f"{budget_cfg.batch}/{recipe_cfg.base_batch}"
    factor = {"linear": f" x {ratio}", "sqrt": f" x sqrt({ratio})", "constant": ""}[rule]
    return f"{recipe_cfg.lr:g}{factor} ({rule}, {budget_cfg.name} budget)"


REGULARIZERS = ("mixup_alpha", "cutmix_alpha", "randaugment_magnitude", "random_erasing", "label_smoothing")


def as_trained(recipe_cfg, budget_cfg):
    """The recipe as the budget trains it: each regulariser's strength times `budget.regularization` (1: the
    recipe's own, 0: none)."""
    trained, scale = recipe_cfg.copy(), budget_cfg.regularization
    for key in REGULARIZERS:
        value = recipe_cfg[key] * scale
        trained[key] = round(value) if key == "randaugment_magnitude" else value
    trained.randaugment = recipe_cfg.randaugment and trained.randaugment_magnitude > 0
    return trained


def _is_vector(param: torch.Tensor) -> bool:
    # Biases, norm weights and layer scale (stored as C x 1 x 1 to broadcast over NCHW) hold one value per channel.
    return param.numel() == max(param.shape, default=1)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the weight matrices and kernels only, none on biases and other 1-D parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if not _is_vector(p)], "weight_decay": weight_decay},
        {"params": [p for p in params if _is_vector(p)], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, recipe_cfg, budget_cfg) -> torch.optim.Optimizer:
    groups, lr = param_groups(model, recipe_cfg.weight_decay), scaled_lr(recipe_cfg, budget_cfg)
    if recipe_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=recipe_cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(recipe_cfg.betas))


def schedule_iterations(recipe_cfg, epochs: int, iterations_per_epoch: int) -> dict:
    """Warmup length, milestones and total length in iterations (optimizer steps), the recipe's proportions kept
    at `epochs`."""
    scale = epochs / recipe_cfg.reference_epochs * iterations_per_epoch
    return {
        "total": epochs * iterations_per_epoch,
        "warmup": round(recipe_cfg.warmup_epochs * scale),
        "milestones": [round(m * scale) for m in recipe_cfg.get("milestones", [])],
    }


def build_scheduler(optimizer: torch.optim.Optimizer, recipe_cfg, epochs: int,
                    iterations_per_epoch: int) -> lr_scheduler.LRScheduler:
    """Stepped once per iteration: linear warmup from ~0, then cosine to min_lr or x gamma at each milestone."""
    its = schedule_iterations(recipe_cfg, epochs, iterations_per_epoch)
    warmup = its["warmup"]
    if recipe_cfg.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(its["total"] - warmup, 1), eta_min=recipe_cfg.min_lr)
    else:
        main = lr_scheduler.MultiStepLR(optimizer, [m - warmup for m in its["milestones"]], gamma=recipe_cfg.gamma)
    if warmup == 0:
        return main
    # lr at warmup iteration i: (i + 1) / warmup of the peak, reached on the last warmup iteration.
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def build_loss(recipe_cfg) -> nn.Module:
    """Cross-entropy with label smoothing; takes class indices or (mixed) class probabilities as targets."""
    return nn.CrossEntropyLoss(label_smoothing=recipe_cfg.label_smoothing)


def build_mixer(recipe_cfg, num_classes: int) -> Callable | None:
    """(images, labels) -> (mixed images, class probabilities): MixUp or CutMix per batch; None when both are off."""
    mixers = []
    if recipe_cfg.mixup_alpha > 0:
        mixers.append(v2.MixUp(alpha=recipe_cfg.mixup_alpha, num_classes=num_classes))
    if recipe_cfg.cutmix_alpha > 0:
        mixers.append(v2.CutMix(alpha=recipe_cfg.cutmix_alpha, num_classes=num_classes))
    if len(mixers) == 2:
        return v2.RandomChoice(mixers, p=[1 - recipe_cfg.mix_switch_prob, recipe_cfg.mix_switch_prob])
    return mixers[0] if mixers else None

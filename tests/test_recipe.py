"""The recipes as PyTorch objects: decay groups, per-iteration schedules, and the modern recipe's augmentations
applied for real to the batches and targets the model trains on."""

import pytest
import torch
from conftest import TINY_MODEL
from timm.data.auto_augment import RandAugment
from torch import nn
from torchvision.transforms import v2

from roadmap import build_model, compose
from roadmap.training import recipe
from roadmap.training.data import build_splits
from roadmap.training.train import Trainer


def _lrs(scheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def test_no_weight_decay_on_biases_norms_and_layer_scale():
    cfg = compose([*TINY_MODEL, "+step=sep_downsample"])
    model = build_model(cfg.model)
    decayed, exempt = (group["params"] for group in recipe.param_groups(model, 0.05))
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim in (2, 4) for p in decayed)
    exempt_names = {names[id(p)] for p in exempt}
    assert any(n.endswith("layer_scale") for n in exempt_names) and any(n.endswith("bias") for n in exempt_names)
    assert len(decayed) + len(exempt) == len(list(model.parameters()))


@pytest.mark.parametrize("overrides, lr", [
    (["+step=modern_recipe", "budget=paper", "budget.batch=1024"], 4e-3 * 1024 / 4096),  # linear
    (["+step=modern_recipe", "budget=small", "budget.batch=1024"], 4e-3 * (1024 / 4096) ** 0.5),  # sqrt
    (["+step=modern_recipe", "budget.batch=1024"], 4e-3),  # constant: the Fashion-MNIST proxy's AdamW
    (["budget.batch=64"], 0.1 * 64 / 256),  # SGD: linear in every budget
    (["+step=modern_recipe", "budget=paper"], 4e-3),  # the paper's own batch: the recipe's own lr
])
def test_lr_scales_by_the_budgets_rule_for_the_optimizer(overrides, lr):
    cfg = compose(overrides)
    assert recipe.scaled_lr(cfg.recipe, cfg.budget) == pytest.approx(lr)


@pytest.mark.parametrize("overrides, rule", [
    (["budget.batch=64"], "0.1 x 64/256 (linear, fmnist budget)"),
    (["+step=modern_recipe", "budget=small"], "0.004 x sqrt(128/4096) (sqrt, small budget)"),
    (["+step=modern_recipe"], "0.004 (constant, fmnist budget)"),
    (["+step=modern_recipe", "budget.lr_scaling.adamw=sqrt"], "0.004 x sqrt(128/4096) (sqrt, fmnist budget)"),
])
def test_lr_rule_names_how_the_lr_was_scaled(overrides, rule):
    cfg = compose(overrides)
    assert recipe.lr_rule(cfg.recipe, cfg.budget) == rule


def test_warmup_cosine_per_iteration_keeps_the_proportions():
    cfg = compose(["+step=modern_recipe", "budget.epochs=30"])  # warmup: 20 of 300 epochs -> 2 of 30
    peak = recipe.scaled_lr(cfg.recipe, cfg.budget)
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=peak)
    lrs = _lrs(recipe.build_scheduler(optimizer, cfg.recipe, cfg.budget.epochs, iterations_per_epoch=10), 300)
    assert lrs[0] == pytest.approx(peak / 20) and lrs[19] == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:20]))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    assert lrs[-1] == pytest.approx(cfg.recipe.min_lr, abs=peak * 1e-4)


def test_step_schedule_milestones_scale_with_epochs():
    cfg = compose(["budget.epochs=9"])  # milestones 30, 60 of 90 epochs -> 3, 6 of 9
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    lrs = _lrs(recipe.build_scheduler(optimizer, cfg.recipe, cfg.budget.epochs, iterations_per_epoch=4), 36)
    assert lrs[:12] == [pytest.approx(0.1)] * 12
    assert lrs[12:24] == [pytest.approx(0.01)] * 12
    assert lrs[24:] == [pytest.approx(0.001)] * 12


def test_label_smoothing():
    loss = recipe.build_loss(compose(["+step=modern_recipe"]).recipe)
    logits, target = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    smoothed = 0.9 * nn.functional.one_hot(target, 10) + 0.1 / 10
    expected = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    assert loss(logits, target) == pytest.approx(expected.item(), rel=1e-5)


@pytest.fixture
def modern_trainer(fashion_root):
    cfg = compose([*TINY_MODEL, "+step=modern_recipe", f"data.root={fashion_root}", "data.val_size=100",
                   "budget.batch=64", "runtime.batch_per_device=64", "runtime.workers=0", "runtime.progress=false"])
    return Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), build_model(cfg.model))


def test_modern_recipe_augments_the_images(modern_trainer, monkeypatch):
    calls = []
    forward = RandAugment.__call__  # the paper's, timm's (tests/test_augment.py)
    monkeypatch.setattr(RandAugment, "__call__", lambda self, *a: calls.append(1) or forward(self, *a))
    torch.manual_seed(0)
    images, labels, _ = next(iter(modern_trainer.train_loader))  # (images, labels, loading seconds)
    assert len(calls) == len(images)  # RandAugment ran on every image
    images, _ = modern_trainer.to_device(images, labels, train=True)
    # Random erasing (p=0.25), on the device, writes exact zeros over a rectangle of the normalised image.
    erased = [(image == 0).all(dim=0).sum() >= 4 for image in images]
    assert 0 < sum(erased) < len(images)


def test_modern_recipe_mixes_batches_and_targets(modern_trainer):
    images, labels = modern_trainer.to_device(*next(iter(modern_trainer.train_loader))[:2], train=True)
    mixed_kinds = set()
    for seed in range(20):
        torch.manual_seed(seed)
        mixed, targets = modern_trainer.mixer(images, labels)
        assert targets.shape == (len(images), 10) and torch.allclose(targets.sum(1), torch.ones(len(images)))
        # Each image is mixed with the next one in the batch, both targets weighted by the same lambda.
        one_hot = nn.functional.one_hot(labels, 10).float()
        first_pair = (labels != labels.roll(1, 0)).nonzero()[0].item()
        lam = targets[first_pair, labels[first_pair]]
        assert 0 < lam < 1 and torch.allclose(targets, lam * one_hot + (1 - lam) * one_hot.roll(1, 0))
        partner = images.roll(1, 0)
        changed = mixed != images
        if torch.allclose(mixed, lam * images + (1 - lam) * partner, atol=1e-5):
            mixed_kinds.add("mixup")
        elif torch.equal(mixed[changed], partner[changed]):
            mixed_kinds.add("cutmix")  # a box pasted from the partner image
    assert mixed_kinds == {"mixup", "cutmix"}


def test_original_recipe_keeps_hard_labels(fashion_root):
    cfg = compose([*TINY_MODEL, f"data.root={fashion_root}", "data.val_size=100"])
    assert recipe.build_mixer(cfg.recipe, 10) is None
    assert recipe.build_loss(cfg.recipe).label_smoothing == 0
    assert not any(isinstance(t, (RandAugment, v2.RandAugment, v2.RandomErasing))
                   for t in build_splits(cfg.data, cfg.budget, cfg.recipe).train.transform.transforms)

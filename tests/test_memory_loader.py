"""The in-memory loader (`runtime.loader`): a small split whose only random transform is the flip is held as one
tensor and flipped a batch at a time; it gives the per-image transform's images, in the sampler's order."""

import pytest
import torch
from torch.utils.data import DistributedSampler, Subset

from roadmap import ConfigError, build_model, compose
from roadmap.training import recipe, train
from roadmap.training.data import InMemoryBatches, build_splits, in_memory_obstacle, stacked, without_flip


def _splits(overrides):
    cfg = compose(overrides)
    return build_splits(cfg.data, cfg.budget, cfg.recipe)


@pytest.mark.parametrize("hflip", [0.0, 1.0])
def test_held_images_flipped_a_batch_at_a_time_equal_the_per_image_transform(tiny_run, hflip):
    splits = _splits([*tiny_run, f"recipe.hflip={hflip}"])
    per_image, labels = stacked(splits.train)
    held, held_labels = stacked(without_flip(splits.train))
    (images, batch_labels), = InMemoryBatches(held, held_labels, len(held), hflip=hflip)
    torch.testing.assert_close(images, per_image, rtol=0, atol=1e-6)
    assert torch.equal(batch_labels, labels)


@pytest.mark.parametrize("split", ["train", "val", "test", "test shard"])
def test_a_stack_holds_the_per_image_transforms_images_and_draws_as_they_do(tiny_run, split):
    splits = _splits([*tiny_run, "data.image_size=36"])  # a resize of 28 px that rounding would show
    dataset = {"train": without_flip(splits.train), "val": splits.val, "test": splits.test,
               "test shard": Subset(splits.test, range(1, len(splits.test), 3))}[split]
    torch.manual_seed(0)
    per_image = torch.stack([dataset[i][0] for i in range(len(dataset))])
    after_per_image = torch.rand(4)
    torch.manual_seed(0)
    images, labels = stacked(dataset)
    assert torch.equal(torch.rand(4), after_per_image)  # the training run's random stream goes on unchanged
    assert type(images) is torch.Tensor and torch.equal(images, per_image)  # bit for bit
    assert torch.equal(labels, torch.tensor([dataset[i][1] for i in range(len(dataset))]))


def test_batches_follow_the_sampler_and_the_generator(tiny_run):
    images, labels = stacked(without_flip(_splits(tiny_run).train))
    sampler = DistributedSampler(range(len(images)), num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True)

    def epoch(seed):
        batches = InMemoryBatches(images, labels, 32, sampler, 0.5, torch.Generator().manual_seed(seed), timed=True)
        return list(batches)

    first, again, other = epoch(1), epoch(1), epoch(2)
    assert len(first) == len(images) // 32 and all(len(b[0]) == 32 and b[2].item() >= 0 for b in first)
    assert torch.equal(torch.cat([b[1] for b in first]), labels[list(sampler)][:len(first) * 32])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_only_small_data_without_random_crops_or_randaugment_is_held(tiny_run):
    def obstacle(overrides):
        cfg = compose([*tiny_run, *overrides])
        return in_memory_obstacle(cfg.data, cfg.budget, recipe.as_trained(cfg.recipe, cfg.budget))

    assert obstacle([]) is None
    assert obstacle(["recipe=modern"]) is None  # the Fashion-MNIST budget scales RandAugment and erasing to 0
    assert "crops each image" in obstacle(["budget.crop_scale=[0.5,1.0]"])
    assert "RandAugment" in obstacle(["recipe=modern", "budget.regularization=1.0"])
    assert "read from files" in obstacle(["data=imagefolder", "data.root=/nowhere", "data.num_classes=10"])


def test_the_trainer_holds_what_it_can_and_refuses_memory_where_it_cannot(tiny_run):
    def trainer(overrides):
        cfg = compose([*tiny_run, *overrides])
        cfg.recipe = recipe.as_trained(cfg.recipe, cfg.budget)
        return train.Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), build_model(cfg.model))

    assert isinstance(trainer([]).train_loader, InMemoryBatches) and trainer([]).workers == 0
    assert not isinstance(trainer(["runtime.loader=workers"]).train_loader, InMemoryBatches)
    assert not isinstance(trainer(["budget.crop_scale=[0.5,1.0]"]).train_loader, InMemoryBatches)
    with pytest.raises(ConfigError, match=r"^runtime.loader=memory: budget.crop_scale=\[0.5, 1.0\] crops"):
        trainer(["runtime.loader=memory", "budget.crop_scale=[0.5,1.0]"])

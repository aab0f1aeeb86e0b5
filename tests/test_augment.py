"""The modern recipe's RandAugment is the paper's, timm's rand-m9-mstd0.5-inc1 as timm's create_transform builds it;
torchvision's stays a named policy; records of runs without the paper's keep their fingerprints."""

import random

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, write_image_folder
from PIL import Image, ImageOps
from timm.data import create_transform
from timm.data.auto_augment import RandAugment
from torchvision.transforms import v2

from roadmap import build_model, compose
from roadmap.records.fingerprint import trained_config
from roadmap.training.augment import OnDevice, timm_hparams, timm_randaugment
from roadmap.training.data import build_splits, train_transform
from roadmap.training.train import Trainer

IMAGENET = ["data=imagefolder", "data.root=unused", "+step=modern_recipe"]


def _randaugment_of(transform):
    (found,) = [t for t in transform.transforms if isinstance(t, (RandAugment, v2.RandAugment))]
    return found


def _photo(seed: int, size: int = 224) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.BICUBIC)


def test_the_papers_randaugment_is_timms_create_transform():
    cfg = compose(IMAGENET)
    ours = _randaugment_of(train_transform(cfg.data, cfg.budget, cfg.recipe))
    theirs = _randaugment_of(create_transform(224, is_training=True, auto_augment="rand-m9-mstd0.5-inc1",
                                              interpolation="bicubic", mean=tuple(cfg.data.mean),
                                              std=tuple(cfg.data.std), re_prob=0.25))
    assert [(op.name, op.prob, op.magnitude, op.hparams) for op in ours.ops] == \
        [(op.name, op.prob, op.magnitude, op.hparams) for op in theirs.ops]
    image, compared = _photo(0), 0
    for seed in range(60):
        outputs = []
        for transform in (ours, theirs):
            random.seed(seed)
            np.random.seed(seed)
            try:
                outputs.append(np.asarray(transform(image)))
            except ValueError:  # timm's own posterize to 0 bits under Pillow >= 13 (test below)
                break
        if len(outputs) == 2:
            assert np.array_equal(*outputs), seed
            compared += 1
    assert compared >= 55


def test_the_papers_policy_draws_ops_magnitudes_and_probabilities():
    transform = timm_randaugment(9, timm_hparams(32, [0.5, 0.5, 0.5], "bicubic"))
    assert transform.num_layers == 2 and transform.choice_weights is None
    assert {op.name for op in transform.ops} == {
        "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
        "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
        "TranslateXRel", "TranslateYRel"}
    drawn = []
    for op in transform.ops:
        op.aug_fn = lambda image, *args, name=op.name, **kwargs: drawn.append(name) or image
        level_fn = op.level_fn or (lambda magnitude, hparams: ())
        op.level_fn = lambda magnitude, hparams, f=level_fn: drawn.append(magnitude) or f(magnitude, hparams)
    random.seed(0)
    np.random.seed(0)
    image, draws = Image.new("RGB", (4, 4)), 3000
    for _ in range(draws):
        transform(image)
    magnitudes = np.array([x for x in drawn if not isinstance(x, str)])
    names = [x for x in drawn if isinstance(x, str)]
    assert len(names) / (2 * draws) == pytest.approx(0.5, abs=0.03)  # each of 2 ops applied with probability 0.5
    assert magnitudes.mean() == pytest.approx(9, abs=0.05) and magnitudes.std() == pytest.approx(0.5, abs=0.05)
    assert magnitudes.max() <= 10  # clipped to timm's upper bound
    counts = np.array([names.count(op.name) for op in transform.ops])
    assert counts.min() > 0.7 * counts.mean()  # every op, drawn uniformly


def test_posterize_to_zero_bits_is_a_black_image():
    transform = timm_randaugment(9, timm_hparams(32, [0.5, 0.5, 0.5], "bicubic"))
    (posterize,) = [op for op in transform.ops if op.name == "PosterizeIncreasing"]
    posterize.prob, posterize.magnitude_std, image = 1.0, 0, _photo(1, 16)
    for magnitude, bits in [(10, 0), (7, 2), (2, 4)]:
        posterize.magnitude = magnitude
        expected = np.zeros_like(np.asarray(image)) if bits == 0 else np.asarray(ImageOps.posterize(image, bits))
        assert np.array_equal(np.asarray(posterize(image)), expected)


def test_torchvisions_randaugment_is_a_named_policy():
    cfg = compose([*IMAGENET, "recipe.randaugment_policy=torchvision"])
    transform = _randaugment_of(train_transform(cfg.data, cfg.budget, cfg.recipe))
    assert isinstance(transform, v2.RandAugment) and (transform.num_ops, transform.magnitude) == (2, 9)


def test_records_without_the_papers_randaugment_keep_their_fingerprint():
    def recipe(overrides):
        return trained_config(compose(overrides))["recipe"]

    assert recipe(IMAGENET)["randaugment_policy"] == "paper"
    # torchvision's, as every record before the setting; none at all (the Fashion-MNIST proxies' regularization 0)
    assert "randaugment_policy" not in recipe([*IMAGENET, "recipe.randaugment_policy=torchvision"])
    assert "randaugment_policy" not in recipe(["+step=modern_recipe"])
    assert "randaugment_policy" not in recipe([])


def test_loading_in_the_training_process_repeats_the_papers_draws(tmp_path):
    write_image_folder(tmp_path, num_classes=2, per_class=(12, 2), size=40)

    calls = []

    def first_batch(seed: int) -> torch.Tensor:
        cfg = compose([*TINY_MODEL, "data=imagefolder", f"data.root={tmp_path}", "data.num_classes=2",
                       "data.image_size=32", "data.val_size=4", "+step=modern_recipe", "budget=small",
                       "budget.batch=8", "runtime.workers=0", "runtime.progress=false", f"seed={seed}"])
        calls.append(seed)
        random.seed(len(calls))  # whatever ran before the trainer, different each time
        np.random.seed(len(calls))
        trainer = Trainer(cfg, build_splits(cfg.data, cfg.budget, cfg.recipe), build_model(cfg.model))
        return next(iter(trainer.train_loader))[0]

    first = first_batch(0)
    assert torch.equal(first, first_batch(0)) and not torch.equal(first, first_batch(1))


def test_on_the_device_a_batch_is_what_the_per_image_transform_made():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    images = torch.randint(0, 256, (16, 3, 24, 20), dtype=torch.uint8)
    per_image = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    eraser, on_device = v2.RandomErasing(p=0.5), OnDevice(mean, std, erasing=0.5)
    erased = set()
    for seed in range(4):
        torch.manual_seed(seed)
        expected = torch.stack([eraser(per_image(image)) for image in images])  # each image's draws in turn
        after = torch.rand(1)
        torch.manual_seed(seed)
        batch = on_device(images.contiguous(memory_format=torch.channels_last), train=True)
        assert torch.equal(batch, expected) and torch.equal(torch.rand(1), after)
        assert batch.is_contiguous(memory_format=torch.channels_last)
        erased.add(int((batch == 0).all(1).flatten(1).any(1).sum()))
    assert min(erased) > 0 and max(erased) < len(images)  # some images erased, not all
    torch.manual_seed(0)
    assert torch.equal(on_device(images, train=False), per_image(images))  # evaluation: no erasing

"""RandAugment as a recipe names it (`recipe.randaugment_policy`): the paper's, or torchvision's.

- `paper`: timm's `rand-m{M}-mstd0.5-inc1`, as the official ConvNeXt code trains (timm's `create_transform` with
  `auto_augment="rand-m9-mstd0.5-inc1"`): 2 ops per image, drawn with replacement from the increasing-severity set,
  each applied with probability 0.5 at a magnitude drawn from N(M, 0.5) and clipped to [0, 10]. Its draws come from
  Python's `random` and numpy's global generators (a loader worker seeds both, as it seeds torch).
- `torchvision`: `v2.RandAugment(num_ops=2, magnitude=M)`, every op applied at magnitude M.
"""

from collections.abc import Callable

import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2


def paper_policy(magnitude: int) -> str:
    """timm's name of the paper's RandAugment at `magnitude`."""
    return f"rand-m{magnitude}-mstd0.5-inc1"


def timm_hparams(image_size: int, mean, interpolation: str) -> dict:
    """The hyper-parameters timm's `create_transform` gives its RandAugment: translations up to 45% of the crop,
    the fill of geometric ops the data's mean, the recipe's interpolation."""
    from timm.data.transforms import str_to_pil_interp

    return {"translate_const": int(image_size * 0.45), "img_mean": tuple(min(255, round(255 * x)) for x in mean),
            "interpolation": str_to_pil_interp(interpolation)}


def _posterize(image: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    # PosterizeIncreasing keeps 0 bits at magnitude 10 (N(9, 0.5) reaches it for 2% of its draws). Pillow < 13 made
    # that a black image, which timm's policy was written against; Pillow 13 raises instead.
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return image.point([0] * 256 * len(image.getbands()))
    return ImageOps.posterize(image, bits_to_keep)


def posterize_under_any_pillow(randaugment):
    """timm's RandAugment `randaugment` with its posterize ops giving a black image at 0 bits; returns it."""
    for op in randaugment.ops:
        if op.name.startswith("Posterize"):
            op.aug_fn = _posterize
    return randaugment


def timm_randaugment(magnitude: int, hparams: dict):
    """timm's RandAugment of the paper's policy, its posterize working under any Pillow."""
    from timm.data.auto_augment import rand_augment_transform

    return posterize_under_any_pillow(rand_augment_transform(paper_policy(magnitude), hparams))


def randaugment(recipe_cfg, data_cfg) -> Callable:
    """The recipe's RandAugment, on PIL images (its geometric ops take bicubic interpolation on PIL images only)."""
    magnitude = recipe_cfg.randaugment_magnitude
    if recipe_cfg.randaugment_policy == "torchvision":
        return v2.RandAugment(num_ops=2, magnitude=magnitude, interpolation=v2.InterpolationMode(recipe_cfg.interpolation))
    return timm_randaugment(magnitude, timm_hparams(data_cfg.image_size, data_cfg.mean, recipe_cfg.interpolation))


class OnDevice:
    """The last steps of the per-image transforms, run a batch at a time where the model runs: uint8 images to float
    in [0, 1], normalised by the data's mean and std, and in training each image erased with probability
    `erasing` (`v2.RandomErasing`'s rectangle, drawn for each image in turn as the per-image transform draws it).
    Loader workers then decode and augment only, and hand on a quarter of the bytes."""

    def __init__(self, mean, std, erasing: float):
        self.mean, self.std = list(mean), list(std)
        self.eraser = v2.RandomErasing(p=erasing) if erasing > 0 else None

    def __call__(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        images = v2.functional.normalize(v2.functional.to_dtype(images, torch.float32, scale=True), self.mean,
                                         self.std)
        if train and self.eraser is not None:
            for image in images:
                if torch.rand(1) < self.eraser.p:
                    box = self.eraser.make_params([image])
                    if box["v"] is not None:
                        image[..., box["i"]:box["i"] + box["h"], box["j"]:box["j"] + box["w"]] = \
                            box["v"].to(image.device)
        return images

"""RandAugment as a recipe names it (`recipe.randaugment_policy`): the paper's, or torchvision's.

- `paper`: timm's `rand-m{M}-mstd0.5-inc1`, as the official ConvNeXt code trains (timm's `create_transform` with
  `auto_augment="rand-m9-mstd0.5-inc1"`): 2 ops per image, drawn with replacement from the increasing-severity set,
  each applied with probability 0.5 at a magnitude drawn from N(M, 0.5) and clipped to [0, 10]. Its draws come from
  Python's `random` and numpy's global generators (a loader worker seeds both, as it seeds torch).
- `torchvision`: `v2.RandAugment(num_ops=2, magnitude=M)`, every op applied at magnitude M.
"""

from collections.abc import Callable

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

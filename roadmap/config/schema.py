"""The type and allowed range of every setting in `conf/`: one dataclass per config group, one field per key.

`roadmap.config.validate` merges a composed config into these structured configs, so OmegaConf checks every type
(and rejects keys that no dataclass declares), then checks each field's `Check`. Settings that constrain each
other (warmup shorter than the recipe, the model's input channels those of the data, ...) are checked there too.
The model's switches are RoadmapNet's typed arguments, range-checked by `roadmap.network.model.check_arguments`.
Data and recipe configs differ in their keys: each has its dataclass, chosen by its `name`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, make_dataclass
from typing import Any, get_args, get_origin, get_type_hints

from omegaconf import MISSING

from roadmap.network.model import RoadmapNet

KEEP = ("weights", "all", "none")  # runtime.keep: what a completed run keeps (roadmap.records.checkpoint)
RANDAUGMENT_POLICIES = ("paper", "torchvision")  # recipe.randaugment_policy (roadmap.training.augment)
LR_SCALING_RULES = ("linear", "sqrt", "constant")  # budget.lr_scaling's rules (roadmap.training.recipe.scaled_lr)


@dataclass(frozen=True)
class Check:
    holds: Callable[[Any], bool]
    allowed: str  # what the value may be, completing "must be ..."


POSITIVE_INT = Check(lambda v: v > 0, "a positive integer")
POSITIVE = Check(lambda v: v > 0, "> 0")
NON_NEGATIVE = Check(lambda v: v >= 0, ">= 0")
PROBABILITY = Check(lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def one_of(*choices: str) -> Check:
    return Check(lambda v: v in choices, f"one of {', '.join(choices)}")


def setting(check: Check | None = None, default: Any = MISSING) -> Any:
    """A field whose value must satisfy `check` (types are the annotation's)."""
    return field(default=default, metadata={"check": check} if check else {})


@dataclass
class Roadmap:
    name: str = MISSING
    resnet_depths: list[int] = MISSING
    resnet_widths: list[int] = MISSING
    stage_ratio_depths: list[int] = MISSING
    stage_ratio_widths: list[int] = MISSING
    convnext_widths: list[int] = MISSING
    drop_path: float = MISSING


def _model_fields() -> list[tuple[str, Any, Any]]:
    """RoadmapNet's keyword arguments, sequences as lists: a switch added to the model is a setting at once."""
    hints = get_type_hints(RoadmapNet.__init__)
    return [(name, list[get_args(hints[name])[0]] if get_origin(hints[name]) is Sequence else hints[name], MISSING)
            for name in RoadmapNet.__init__.__kwdefaults__]


Model = make_dataclass("Model", _model_fields())


@dataclass
class Data:
    name: str = MISSING
    root: str = MISSING
    channels: int = setting(POSITIVE_INT)
    num_classes: int = setting(Check(lambda v: v >= 2, "an integer >= 2"))
    image_size: int = setting(POSITIVE_INT)
    mean: list[float] = MISSING
    std: list[float] = setting(Check(lambda v: all(s > 0 for s in v), "a list of numbers > 0"))
    val_size: int = setting(POSITIVE_INT)
    eval_crop_ratio: float = setting(Check(lambda v: 0 < v <= 1, "in (0, 1]"))


@dataclass
class Cifar(Data):
    download: bool = MISSING


@dataclass
class FashionMNIST(Cifar):
    packaged_dir: str = MISSING


@dataclass
class Shards(Data):
    shuffle_buffer: int = setting(Check(lambda v: v >= 0, "an integer >= 0 (0 or 1: no shuffle buffer)"))


@dataclass
class HubCopy(Data):
    train_split: str = MISSING
    test_split: str = MISSING
    image_column: str = MISSING
    label_column: str = MISSING
    cache_dir: str | None = None


DATA = {"fashion_mnist": FashionMNIST, "cifar10": Cifar, "cifar100": Cifar, "imagefolder": Data,
        "webdataset": Shards, "huggingface": HubCopy}


@dataclass
class Budget:
    name: str = MISSING
    epochs: int = setting(POSITIVE_INT)
    batch: int = setting(POSITIVE_INT)
    train_subset: int | None = setting(Check(lambda v: v is None or v > 0,
                                             "a positive integer or null (the whole train split)"))
    width: float = setting(POSITIVE)
    crop_scale: list[float] = setting(Check(lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1,
                                            "[min, max] with 0 < min <= max <= 1"))
    lr_scaling: dict[str, str] = setting(Check(lambda v: set(v.values()) <= set(LR_SCALING_RULES),
                                               "a rule per optimizer, each " + ", ".join(LR_SCALING_RULES)))
    zero_init_last: dict[str, bool] = MISSING  # per optimizer
    layer_scale: dict[str, float] = setting(Check(lambda v: all(x >= 0 for x in v.values()), "each >= 0 (0 = off)"))
    regularization: float = setting(Check(lambda v: 0 <= v <= 1, "in [0, 1]"))


@dataclass
class Recipe:
    name: str = MISSING
    optimizer: str = setting(one_of("sgd", "adamw"))
    lr: float = setting(POSITIVE)
    base_batch: int = setting(POSITIVE_INT)
    weight_decay: float = setting(NON_NEGATIVE)
    reference_epochs: int = setting(POSITIVE_INT)
    warmup_epochs: float = setting(NON_NEGATIVE)
    schedule: str = setting(one_of("step", "cosine"))
    min_lr: float = setting(NON_NEGATIVE)
    interpolation: str = setting(one_of("bilinear", "bicubic", "nearest"))
    hflip: float = setting(PROBABILITY)
    randaugment: bool = MISSING
    randaugment_policy: str = setting(one_of(*RANDAUGMENT_POLICIES))
    randaugment_magnitude: int = setting(Check(lambda v: 0 <= v <= 30, "in [0, 30]"))
    mixup_alpha: float = setting(NON_NEGATIVE)
    cutmix_alpha: float = setting(NON_NEGATIVE)
    mix_switch_prob: float = setting(PROBABILITY)
    random_erasing: float = setting(PROBABILITY)
    label_smoothing: float = setting(Check(lambda v: 0 <= v < 1, "in [0, 1)"))
    ema: bool = MISSING
    ema_decay: float = setting(Check(lambda v: 0 < v < 1, "in (0, 1)"))


@dataclass
class OriginalRecipe(Recipe):
    momentum: float = setting(Check(lambda v: 0 <= v < 1, "in [0, 1)"))
    milestones: list[float] = setting(Check(lambda v: list(v) == sorted(v) and all(m > 0 for m in v),
                                            "increasing epochs > 0"))
    gamma: float = setting(POSITIVE)


@dataclass
class ModernRecipe(Recipe):
    betas: list[float] = setting(Check(lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
                                       "[beta1, beta2], each in [0, 1)"))


RECIPES = {"original": OriginalRecipe, "modern": ModernRecipe}


@dataclass
class Runtime:
    device: str = MISSING
    amp: str = setting(one_of("auto", "bf16", "fp16", "off"))
    channels_last: bool = MISSING
    compile: bool = MISSING
    batch_per_device: int = setting(POSITIVE_INT)
    workers: Any = setting(Check(lambda v: v == "auto" or (type(v) is int and v >= 0),
                                 "auto or an integer >= 0 (0: load in the training process)"))
    loader: str = setting(one_of("auto", "memory", "workers"))
    sync_every: int = setting(POSITIVE_INT)
    threads: int | None = setting(Check(lambda v: v is None or v > 0, "a positive integer or null (PyTorch's default)"))
    deterministic: bool = MISSING
    sync_batchnorm: bool = MISSING
    progress: bool = MISSING
    keep: str = setting(one_of(*KEEP))


@dataclass
class TensorBoard:
    pass


@dataclass
class MLflow:
    tracking_uri: str = MISSING
    experiment: str = MISSING


@dataclass
class Logger:  # conf/logger/: each tracker chosen is a key
    tensorboard: TensorBoard | None = None
    mlflow: MLflow | None = None


@dataclass
class Search:  # conf/search/: a search of the design space (hydra/sweeper=optuna, roadmap.records.search)
    seeds: int = setting(POSITIVE_INT)  # runs per trial, seeds seed..seed+seeds-1; the objective is their mean
    # record field (result.json) -> maximize | minimize, in the order of the study's objectives
    objectives: dict[str, str] = setting(Check(lambda v: len(v) > 0 and set(v.values()) <= {"maximize", "minimize"},
                                               "a non-empty mapping of result.json fields to maximize or minimize"))


@dataclass
class Config:
    step: str = MISSING
    seed: int = setting(Check(lambda v: v >= 0, "an integer >= 0"))
    roadmap: Roadmap = MISSING
    model: Model = MISSING
    data: Data = MISSING
    budget: Budget = MISSING
    recipe: Recipe = MISSING
    runtime: Runtime = MISSING
    logger: Logger = field(default_factory=lambda: Logger())
    search: Search | None = None  # how a search runs its trials, not what each trains

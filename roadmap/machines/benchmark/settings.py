"""The benchmark's settings: one frozen object, parsed once from the command line."""

import argparse
from dataclasses import dataclass

import torch

import roadmap

DESCRIPTION = "How fast each roadmap step trains and infers, beside the reference implementations, in one run."


@dataclass(frozen=True)
class Settings:
    """Every setting of a benchmark run, as given on the command line (defaults resolved)."""

    steps: tuple[str, ...]
    roadmap: str
    reference: bool
    timm: bool
    batch: int
    size: int
    in_chans: int
    num_classes: int
    device: torch.device
    dtype: str
    channels_last: bool
    compile: bool
    optimizer: str
    reps: int
    warmup: int
    threads: int | None
    override: tuple[str, ...]
    memory: bool
    csv: str | None
    data_pipeline: bool
    data_override: tuple[str, ...]
    data_batches: int
    data_steps: int
    image_folder: bool
    folder_images: int
    folder_rounds: int
    folder_size: int
    folder_batch: int
    folder_workers: tuple[int, ...]
    folder_cache: str | None
    formats: bool
    train_imgs_per_s: tuple[float, ...]
    gpu_check: str | None
    no_models: bool
    verbose: bool


def timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.benchmark", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", nargs="+", default=None, metavar="STEP",
                   help=f"roadmap steps to time (default: all, {' '.join(roadmap.STEP_NAMES)})")
    p.add_argument("--roadmap", default="tiny", help="roadmap path (tiny: ResNet-50 -> ConvNeXt-T; base)")
    p.add_argument("--reference", action="store_true",
                   help="also time torchvision's resnet50/convnext_tiny (and timm's) in both memory formats")
    p.add_argument("--timm", action=argparse.BooleanOptionalAction, default=None,
                   help="with --reference, time timm's models too (default: when timm is importable)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32, help="input height and width")
    p.add_argument("--in-chans", type=int, default=3,
                   help="input channels (3 and 1000 classes: the references' own networks; the default run has 1, 10)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast, as run.py's amp")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="our models in channels_last (run.py's default) or NCHW; references run both")
    p.add_argument("--compile", action="store_true", help="also time every model under torch.compile")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--reps", type=int, default=5, help="timed rounds (median)")
    p.add_argument("--warmup", type=int, default=2, help="discarded rounds")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's, every core)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="Hydra overrides for our models, e.g. model.depths=[1,1,1,1]")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="measure each model's peak memory (one profiled training step; seconds per model on CPU)")
    p.add_argument("--csv", default=None, help="write one row per model to this CSV")
    p.add_argument("--data-pipeline", action="store_true", help="measure the default run's DataLoader")
    p.add_argument("--data-override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the run whose data pipeline is measured (default: the default run)")
    p.add_argument("--data-batches", type=int, default=20)
    p.add_argument("--data-steps", type=int, default=8)
    p.add_argument("--image-folder", action="store_true",
                   help="with --data-pipeline: the input pipeline on JPEGs of ImageNet's sizes, ours against timm's, "
                        "both recipes, training and evaluation, instead of the default run's loader")
    p.add_argument("--folder-images", type=int, default=256,
                   help="JPEGs generated for --image-folder, as many for training and evaluation (cached)")
    p.add_argument("--folder-rounds", type=int, default=3)
    p.add_argument("--folder-size", type=int, default=224, help="--image-folder's crop size in pixels")
    p.add_argument("--folder-batch", type=int, default=32, help="--image-folder's training batch (evaluation: x2)")
    p.add_argument("--folder-workers", type=int, nargs="*", default=[], metavar="W",
                   help="--image-folder's loader workers besides 1 (default: 2 and every core this process may use)")
    p.add_argument("--folder-cache", default=None,
                   help="where --image-folder's JPEGs are cached (default: the data root, data.root's default)")
    p.add_argument("--formats", action="store_true",
                   help="with --image-folder: also our loaders on the same JPEGs as WebDataset shards and as a local "
                        "Hugging Face copy, against the folder's (modern recipe)")
    p.add_argument("--train-imgs-per-s", type=float, nargs="*", default=[], metavar="IMGS_PER_S",
                   help="with --image-folder: training speeds (e.g. a GPU's) to give the cores that feed them")
    p.add_argument("--gpu-check", default=None, metavar="FOLDER",
                   help="with --image-folder: a GPU check's --out folder; its measured train img/s get their cores")
    p.add_argument("--no-models", action="store_true", help="skip the model table (e.g. with --data-pipeline)")
    p.add_argument("--verbose", action="store_true")
    return p


def parse_settings(argv: list[str] | None = None) -> Settings:
    """The settings of `argv` (default: the command line); exits with argparse's message on a bad one."""
    p = parser()
    args = p.parse_args(argv)
    steps = tuple(args.steps or roadmap.STEP_NAMES)
    unknown = [s for s in steps if s not in roadmap.STEP_NAMES]
    if unknown:
        p.error(f"unknown step {unknown[0]}; choose from {' '.join(roadmap.STEP_NAMES)}")
    if args.reps < 1 or args.warmup < 0 or args.batch < 1:
        p.error("--reps and --batch must be positive, --warmup non-negative")
    if min(args.folder_images, args.folder_batch, args.folder_size, *args.folder_workers) < 1 or \
            args.folder_images < 2 * args.folder_batch:
        p.error("--folder-images, --folder-batch, --folder-size and --folder-workers must be positive, "
                "--folder-images at least 2 x --folder-batch")
    return Settings(**vars(args) | {
        "steps": steps, "timm": timm_available() if args.timm is None else args.timm,
        "device": torch.device(args.device), "override": tuple(args.override),
        "data_override": tuple(args.data_override), "train_imgs_per_s": tuple(args.train_imgs_per_s),
        "folder_workers": tuple(args.folder_workers)})

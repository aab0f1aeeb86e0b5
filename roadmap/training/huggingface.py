"""A Hugging Face `datasets` copy on local disk (`data=huggingface`), read without network access.

`data.root` is either a folder written by `DatasetDict.save_to_disk` (it holds `dataset_dict.json`) or a folder of
Parquet files named by split as the Hub distributes them (`train-00000-of-00010.parquet`, ..., at its top or in
`data/`), which `datasets` converts once into Arrow files under `data.cache_dir` (null: its default cache).
"""

import io
import os
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from roadmap.errors import ConfigError
from roadmap.training.unreadable import UnreadableImages


class HubDataError(ConfigError):
    """A local copy that cannot be read as configured; the message is one line naming the path or setting."""


class HubImages(Dataset):
    """(PIL RGB image, class index) of one split of a `datasets.Dataset`, the image decoded here from its bytes: an
    image that cannot be decoded is reported, counted in `unreadable`, and the next one stands in for it."""

    def __init__(self, table, image_column: str, label_column: str, where: str):
        import datasets

        self.table = table.cast_column(image_column, datasets.Image(decode=False))
        self.image_column, self.label_column, self.where = image_column, label_column, where
        self.unreadable = UnreadableImages()

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int):
        for k in range(len(self)):
            row = self.table[(i + k) % len(self)]
            image = row[self.image_column]
            try:
                data = image["bytes"] if image["bytes"] is not None else Path(image["path"]).read_bytes()
                return Image.open(io.BytesIO(data)).convert("RGB"), row[self.label_column]
            except (OSError, SyntaxError, ValueError) as e:  # what PIL raises for a truncated or foreign file
                self.unreadable.report(f"{self.where}: row {(i + k) % len(self)}", e)
        raise HubDataError(f"{self.where}: no image of the split decodes")


def _parquet_files(root: Path, split: str) -> list[str]:
    for folder in (root, root / "data"):
        files = sorted(folder.glob(f"{split}-*.parquet")) or sorted(folder.glob(f"{split}/*.parquet"))
        if files:
            return [str(f) for f in files]
    return []


def load_splits(data_cfg) -> tuple[HubImages, HubImages]:
    """The configured train and test splits; HubDataError, before anything is trained, when they are not there."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # a local copy: never ask the Hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    root = Path(os.path.expanduser(str(data_cfg.root)))
    names = {"train": data_cfg.train_split, "test": data_cfg.test_split}
    if (root / "dataset_dict.json").is_file():
        copy = datasets.load_from_disk(str(root))
        missing = [f"data.{key}_split={name}" for key, name in names.items() if name not in copy]
        if missing:
            raise HubDataError(f"{', '.join(missing)}: {root} holds the splits {', '.join(copy)}")
        tables = {key: copy[name] for key, name in names.items()}
    else:
        files = {key: _parquet_files(root, name) for key, name in names.items()}
        missing = [f"data.{key}_split={names[key]}" for key, found in files.items() if not found]
        if missing:
            raise HubDataError(f"data.root={root}: neither a save_to_disk folder (dataset_dict.json) nor Parquet files "
                               f"of {' and '.join(missing)} ({{split}}-*.parquet, at its top or in data/)")
        cache = None if data_cfg.cache_dir is None else os.path.expanduser(str(data_cfg.cache_dir))
        tables = {key: datasets.load_dataset("parquet", data_files={names[key]: found}, split=names[key],
                                             cache_dir=cache) for key, found in files.items()}
    for key, table in tables.items():
        for setting, column in (("image_column", data_cfg.image_column), ("label_column", data_cfg.label_column)):
            if column not in table.column_names:
                raise HubDataError(f"data.{setting}={column}: not a column of {root}'s {names[key]} split "
                                   f"({', '.join(table.column_names)})")
    labels = tables["train"].features[data_cfg.label_column]
    classes = (labels.num_classes if isinstance(labels, datasets.ClassLabel)
               else max(tables["train"][data_cfg.label_column]) + 1)
    if classes != data_cfg.num_classes:
        raise HubDataError(f"data.num_classes={data_cfg.num_classes}: {root}'s {names['train']} split has {classes} "
                           f"classes; set data.num_classes={classes}")
    return tuple(HubImages(tables[key], data_cfg.image_column, data_cfg.label_column, f"{root} ({names[key]})")
                 for key in ("train", "test"))

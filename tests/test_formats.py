"""Sharded and Hugging Face data: WebDataset shards hold an image folder's splits, each process and loader worker
reads its own share of an epoch once, a run trains and resumes on them; a local `datasets` copy trains the same
way; a bad path, an empty shard and a corrupt image each stop in one line or are counted."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_MODEL, interrupt_at_second_epoch, run_cli, write_image_folder
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from roadmap import compose
from roadmap.errors import ConfigError
from roadmap.training import data, shards, train
from roadmap.training.data import build_splits, check_available

NUMBERED = v2.Compose([v2.ToImage()])  # the image's own pixels, which spell its number


def _numbered_folder(root, per_class=(30, 6), num_classes=3, corrupt: int | None = None):
    """An image folder whose image n (over both splits) is 4x4 pixels spelling n; image `corrupt` is not an image."""
    n = 0
    for split, count in zip(("train", "val"), per_class):
        for label in range(num_classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for _ in range(count):
                if n == corrupt:
                    (folder / f"{n}.png").write_bytes(b"not an image")
                else:
                    pixels = np.zeros((4, 4, 3), np.uint8)
                    pixels[0, 0, :2] = n % 256, n // 256
                    Image.fromarray(pixels).save(folder / f"{n}.png")
                n += 1
    return root


def _number(image: torch.Tensor) -> int:
    return int(image[0, 0, 0]) + 256 * int(image[1, 0, 0])


def _numbers(batches, rank=None, world=None) -> list[int]:
    return [_number(image) for images, *_ in batches for image in images]


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """A numbered folder (90 train, 18 val images) and its shards of 16 images, 20 held out."""
    root = tmp_path_factory.mktemp("numbered")
    folder = _numbered_folder(root / "folder")
    shards.write_shards(folder, root / "shards", val_size=20, images_per_shard=16)
    return folder, root / "shards"


def test_shards_hold_the_image_folders_splits(numbered):
    folder, out = numbered
    cfg = compose(["data=imagefolder", f"data.root={folder}", "data.num_classes=3", "data.val_size=20"])
    reference = build_splits(cfg.data, cfg.budget, cfg.recipe)
    index = shards.read_index(out)
    assert [len(s) for s in index["splits"].values()] == [5, 2, 2]  # 70 / 16, 20 / 16, 18 / 16 rounded up
    for split, ours in (("train", reference.train), ("heldout", reference.val), ("test", reference.test)):
        read = shards.ShardSplit(out, index["splits"][split], NUMBERED).batches(7, 0, 1, train=False)
        names = [ours.dataset.samples[i][0] for i in ours.indices]
        assert _numbers(read) == [int(os.path.basename(n).split(".")[0]) for n in names], split


@pytest.mark.parametrize("workers", [0, 2])
def test_every_process_and_worker_reads_its_share_once_per_epoch(numbered, workers):
    _, out = numbered
    split = shards.ShardSplit(out, shards.read_index(out)["splits"]["train"], NUMBERED)
    everything = set(_numbers(split.batches(7, 0, 1, train=False)))
    seen = []
    for epoch in (0, 1):
        per_rank = []
        for rank in (0, 1):
            batches = split.batches(8, rank, 2, train=True, seed=0, shuffle_buffer=10)
            batches.set_epoch(epoch)
            read = list(DataLoader(batches, batch_size=None, num_workers=workers))
            assert len(read) == len(batches) == 70 // 2 // 8 and all(len(b[0]) == 8 for b in read)
            per_rank.append(_numbers(read))
        assert not set(per_rank[0]) & set(per_rank[1]) and len(set(sum(per_rank, []))) == 64
        assert set(sum(per_rank, [])) <= everything
        seen.append(per_rank)
    assert seen[0] != seen[1]  # each epoch its own order
    again = split.batches(8, 0, 2, train=True, seed=0, shuffle_buffer=10)
    again.set_epoch(1)
    assert _numbers(DataLoader(again, batch_size=None, num_workers=workers)) == seen[1][0]  # resumable at an epoch


def test_evaluation_reads_every_image_once_across_processes(numbered):
    _, out = numbered
    split = shards.ShardSplit(out, shards.read_index(out)["splits"]["test"], NUMBERED)
    read = [_numbers(DataLoader(split.batches(4, rank, 2, train=False), batch_size=None, num_workers=2))
            for rank in (0, 1)]
    assert sorted(read[0] + read[1]) == list(range(90, 108))


def test_train_subset_takes_the_image_folders_first_images(numbered):
    folder, out = numbered
    subset = ["data.num_classes=3", "data.val_size=20", "budget.train_subset=25"]
    by_folder = compose(["data=imagefolder", f"data.root={folder}", *subset])
    by_shards = compose(["data=webdataset", f"data.root={out}", *subset])
    reference = build_splits(by_folder.data, by_folder.budget, by_folder.recipe).train
    split = build_splits(by_shards.data, by_shards.budget, by_shards.recipe).train
    assert len(split) == 25
    numbers = _numbers(shards.ShardSplit(out, split.shards, NUMBERED).batches(5, 0, 1, train=False))
    assert numbers == [int(os.path.basename(reference.dataset.samples[i][0]).split(".")[0])
                       for i in reference.indices]


@pytest.mark.parametrize("setting, message", [
    ("data.val_size=30", "data.val_size=30: the shards in .* hold out 20 images"),
    ("data.num_classes=4", "data.num_classes=4: the shards in .* hold 3 classes"),
])
def test_shards_and_config_that_disagree_stop_in_one_line(numbered, setting, message):
    _, out = numbered
    with pytest.raises(ConfigError, match=message):
        check_available(compose(["data=webdataset", f"data.root={out}", "data.num_classes=3", "data.val_size=20",
                                 setting]).data)


def test_a_bad_path_and_an_empty_shard_stop_before_training(numbered, tmp_path):
    _, out = numbered
    args = [*TINY_MODEL, "data=webdataset", "data.num_classes=3", "data.val_size=20"]
    missing = run_cli([*args, f"data.root={tmp_path / 'nowhere'}"], tmp_path)
    assert missing.returncode != 0 and "no index.json" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in out.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "heldout-000001.tar").write_bytes(b"")
    with pytest.raises(ConfigError, match="heldout-000001.tar: an empty shard"):
        check_available(compose([*args, f"data.root={broken}"]).data)
    assert not list(tmp_path.glob("outputs"))


def test_a_corrupt_image_is_counted_and_another_stands_in(tmp_path, capfd):
    folder = _numbered_folder(tmp_path / "folder", corrupt=3)
    shards.write_shards(folder, tmp_path / "shards", val_size=20, images_per_shard=16)
    index = shards.read_index(tmp_path / "shards")
    split = shards.ShardSplit(tmp_path / "shards", index["splits"]["train"], NUMBERED)
    batches = split.batches(10, 0, 1, train=True, seed=0)
    read = _numbers(DataLoader(batches, batch_size=None, num_workers=2))
    assert len(read) == 70 and 3 not in read and split.unreadable.count == 1
    key = [os.path.basename(p) for p, _ in ImageFolder(folder / "train").samples].index("3.png")
    assert f"image {key:08d} cannot be decoded" in capfd.readouterr().err  # the image's number in train/


def test_the_converter_writes_shards_and_refuses_a_folder_that_is_not_empty(numbered, tmp_path, capsys):
    folder, out = numbered
    assert shards.main([str(folder), str(tmp_path / "new"), "--val-size=20", "--images-per-shard=50"]) == 0
    assert capsys.readouterr().out.splitlines() == ["train: 70 images in 2 shards", "heldout: 20 images in 1 shards",
                                                    "test: 18 images in 1 shards"]
    assert shards.main([str(folder), str(out)]) == 2
    assert capsys.readouterr().err == f"error: {out}: not empty; shards are written into an empty or new folder\n"


def _learnable_shards(tmp_path):
    folder = write_image_folder(tmp_path / "folder", num_classes=3, per_class=(40, 10), size=32)
    shards.write_shards(folder, tmp_path / "shards", val_size=20, images_per_shard=25)
    return tmp_path / "shards"


RUN = [*TINY_MODEL, "data.num_classes=3", "data.image_size=32", "data.val_size=20", "budget=small", "budget.batch=20",
       "budget.epochs=3", "runtime.batch_per_device=20", "runtime.threads=1", "runtime.progress=false",
       "runtime.deterministic=true"]


def test_a_run_on_shards_learns_and_resumes_to_the_same_result(tmp_path, monkeypatch, capfd):
    overrides = [*RUN, "data=webdataset", f"data.root={_learnable_shards(tmp_path)}", "runtime.workers=2"]
    cfg = compose(overrides)
    whole = train.run(cfg, tmp_path / "whole", overrides)
    assert whole["status"] == "completed" and whole["splits"]["train"]["images"] == 100
    assert "unreadable_images" not in whole
    put_back = interrupt_at_second_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path / "resumed", overrides)
    put_back()
    capfd.readouterr()
    resumed = train.run(cfg, tmp_path / "resumed", overrides)
    assert "after epoch 1" in capfd.readouterr().err
    assert (resumed["test_acc1"], resumed["test_loss"]) == (whole["test_acc1"], whole["test_loss"])


def test_two_processes_train_on_shards(tmp_path):
    out = _learnable_shards(tmp_path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "run.py"), *RUN, "budget.epochs=1", "runtime.batch_per_device=10", "runtime.workers=1",
               "data=webdataset", f"data.root={out}", "hydra.run.dir=two"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["world_size"] == 2 and result["status"] == "completed"


def _hub_copy(tmp_path, corrupt: bool = False):
    import datasets

    folder = write_image_folder(tmp_path / "folder", num_classes=3, per_class=(40, 10), size=32)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=3)})
    tables = {}
    for split, name in (("train", "train"), ("val", "validation")):
        files = sorted((folder / split).glob("*/*.png"))
        images = [{"bytes": f.read_bytes(), "path": None} for f in files]
        if corrupt and split == "train":
            images[5] = {"bytes": b"not an image", "path": None}
        tables[name] = datasets.Dataset.from_dict(
            {"image": images, "label": [int(f.parent.name.removeprefix("class")) for f in files]}, features=features)
    return datasets.DatasetDict(tables)


def test_a_local_hub_copy_trains_from_save_to_disk_and_from_parquet_and_resumes(tmp_path, monkeypatch, capfd):
    copy = _hub_copy(tmp_path)
    copy.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    for name, table in copy.items():
        table.to_parquet(str(tmp_path / "hub" / "data" / f"{name}-00000-of-00001.parquet"))

    def overrides(root):
        return [*RUN, "budget.epochs=2", "data=huggingface", f"data.root={tmp_path / root}",
                f"data.cache_dir={tmp_path / 'cache'}", "runtime.workers=0"]
    whole = train.run(compose(overrides("saved")), tmp_path / "run_saved", overrides("saved"))
    put_back = interrupt_at_second_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train.run(compose(overrides("hub")), tmp_path / "run_hub", overrides("hub"))
    put_back()
    capfd.readouterr()
    resumed = train.run(compose(overrides("hub")), tmp_path / "run_hub", overrides("hub"))
    assert "after epoch 1" in capfd.readouterr().err
    assert whole["splits"]["test"]["images"] == resumed["splits"]["test"]["images"] == 30
    # the same images whichever way they are stored, and the Parquet run resumed from its first epoch's checkpoint
    assert (resumed["test_acc1"], resumed["test_loss"]) == (whole["test_acc1"], whole["test_loss"])


def test_a_hub_copy_that_disagrees_stops_in_one_line_and_a_corrupt_image_is_counted(tmp_path, capfd):
    copy = _hub_copy(tmp_path, corrupt=True)
    copy.save_to_disk(str(tmp_path / "saved"))
    base = ["data=huggingface", f"data.root={tmp_path / 'saved'}", "data.num_classes=3", "data.val_size=20"]
    with pytest.raises(ConfigError, match="data.test_split=test: .* holds the splits train, validation"):
        check_available(compose([*base, "data.test_split=test"]).data)
    with pytest.raises(ConfigError, match="data.num_classes=10: .* has 3 classes"):
        check_available(compose([*base, "data.num_classes=10"]).data)
    with pytest.raises(ConfigError, match="neither a save_to_disk folder"):
        check_available(compose([*base[:1], f"data.root={tmp_path}", *base[2:]]).data)
    train_split, _ = data.SOURCES["huggingface"](compose(base).data)
    images = [train_split[i] for i in range(len(train_split))]
    assert len(images) == 120 and train_split.unreadable.count == 1
    assert images[5][0].tobytes() == images[6][0].tobytes()  # the next image stands in
    assert "row 5 cannot be decoded" in capfd.readouterr().err


def test_a_format_whose_package_is_missing_says_what_to_install(numbered, monkeypatch):
    _, out = numbered
    find_spec = data.importlib.util.find_spec
    monkeypatch.setattr(data.importlib.util, "find_spec",
                        lambda name: None if name == "webdataset" else find_spec(name))
    with pytest.raises(ConfigError, match=r"data=webdataset reads with the webdataset package, .* pip install"):
        check_available(compose(["data=webdataset", f"data.root={out}", "data.num_classes=3", "data.val_size=20"]).data)


def test_the_shuffle_buffer_reorders_a_workers_images_and_keeps_them(numbered):
    _, out = numbered
    split = shards.ShardSplit(out, shards.read_index(out)["splits"]["train"], NUMBERED)
    plain, shuffled = (_numbers(split.batches(10, 0, 1, train=True, seed=0, shuffle_buffer=size)) for size in (0, 20))
    assert plain != shuffled and sorted(plain) == sorted(shuffled)


def test_a_run_records_how_many_images_it_could_not_decode(tmp_path):
    folder = write_image_folder(tmp_path / "folder", num_classes=3, per_class=(40, 10), size=32)
    next((folder / "train" / "class0").iterdir()).write_bytes(b"not an image")
    shards.write_shards(folder, tmp_path / "shards", val_size=20, images_per_shard=25)
    overrides = [*RUN, "budget.epochs=1", "data=webdataset", f"data.root={tmp_path / 'shards'}", "runtime.workers=0"]
    result = train.run(compose(overrides), tmp_path / "run", overrides)
    assert result["status"] == "completed" and result["unreadable_images"] == 1  # read once, in train or val

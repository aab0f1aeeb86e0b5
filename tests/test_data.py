"""Each data config loads from small files in the format torchvision reads, with honest splits."""

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from conftest import TINY_MODEL, write_cifar, write_fashion_mnist, write_image_folder

from roadmap import compose
from roadmap.training.data import DataError, build_splits, check_available


def _splits(overrides):
    cfg = compose([*TINY_MODEL, *overrides])
    return cfg, build_splits(cfg.data, cfg.budget, cfg.recipe)


def _check_sample(dataset, channels: int, size: int, num_classes: int) -> None:
    image, label = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (channels, size, size)  # normalised on the device
    assert 0 <= label < num_classes


def test_fashion_mnist_splits(fashion_root):
    cfg, splits = _splits([f"data.root={fashion_root}", "data.val_size=100", "budget.train_subset=300"])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (300, 100, 200)
    assert splits.description["test"]["source"] == "official test set"
    train_ids = set(splits.train.indices)
    assert train_ids.isdisjoint(splits.val.indices) and splits.train.dataset.train and not splits.test.dataset.train
    for dataset in (splits.train, splits.val, splits.test):
        _check_sample(dataset, 1, 32, 10)


def test_fashion_mnist_unpacks_the_debian_package(tmp_path):
    packaged = write_fashion_mnist(tmp_path / "usr-share", compressed=True)
    cfg, splits = _splits([f"data.root={tmp_path / 'cache'}", f"data.packaged_dir={packaged}", "data.val_size=100"])
    assert (tmp_path / "cache" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert (len(splits.train), len(splits.test)) == (500, 200)


def test_missing_fashion_mnist_says_what_to_do(tmp_path):
    cfg = compose([f"data.root={tmp_path}", f"data.packaged_dir={tmp_path / 'none'}", "data.download=false"])
    with pytest.raises(DataError, match="dataset-fashion-mnist.*data.root.*data.download=true") as error:
        check_available(cfg.data)
    assert "\n" not in str(error.value)


@pytest.fixture
def fake_download(monkeypatch):
    """torchvision's download of each Fashion-MNIST file, replaced: the URLs asked for, no network."""
    asked = []

    def download(url, download_root, filename=None, md5=None, **_):
        asked.append(url)
        write_fashion_mnist(Path(download_root))

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", download)
    return asked


def test_without_the_debian_package_the_default_run_downloads(tmp_path, fake_download):
    _, splits = _splits([f"data.root={tmp_path / 'cache'}", f"data.packaged_dir={tmp_path / 'none'}",
                         "data.val_size=100"])
    assert fake_download and all("fashion" in url.lower() for url in fake_download)
    assert (tmp_path / "cache" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert (len(splits.train), len(splits.test)) == (500, 200)


def test_with_the_debian_package_nothing_is_downloaded(tmp_path, fake_download):
    packaged = write_fashion_mnist(tmp_path / "usr-share", compressed=True)
    _splits([f"data.root={tmp_path / 'cache'}", f"data.packaged_dir={packaged}", "data.val_size=100"])
    assert fake_download == []


def test_a_failed_download_says_what_to_do_in_one_line(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download.*install the Debian package dataset-fashion-mnist") as e:
        _splits([f"data.root={tmp_path}", f"data.packaged_dir={tmp_path / 'none'}"])
    assert "\n" not in str(e.value)


def test_root_that_is_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    cfg = compose([f"data.root={tmp_path / 'file'}"])
    with pytest.raises(DataError, match="data.root"):
        check_available(cfg.data)


@pytest.mark.parametrize("name, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar(tmp_path, skip_cifar_checksums, name, num_classes):
    write_cifar(tmp_path, num_classes)
    cfg, splits = _splits([f"data={name}", f"data.root={tmp_path}", "data.val_size=50"])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (450, 50, 100)
    for dataset in (splits.train, splits.test):
        _check_sample(dataset, 3, 32, num_classes)


def test_missing_cifar(tmp_path):
    with pytest.raises(DataError, match="data.download=true"):
        check_available(compose(["data=cifar10", f"data.root={tmp_path}"]).data)


def test_image_folder(tmp_path):
    write_image_folder(tmp_path, num_classes=3, size=40)
    overrides = ["data=imagefolder", f"data.root={tmp_path}", "data.num_classes=3", "data.image_size=32",
                 "data.val_size=20"]
    cfg, splits = _splits(overrides)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (100, 20, 30)
    assert "val/" in splits.description["test"]["source"]
    for dataset in (splits.train, splits.val, splits.test):
        _check_sample(dataset, 3, 32, 3)
    with pytest.raises(DataError, match="data.num_classes=3"):
        _splits([*overrides[:-1], "data.num_classes=1000"])


def test_image_folder_without_train_and_val(tmp_path):
    with pytest.raises(DataError, match="train/ and val/"):
        check_available(compose(["data=imagefolder", f"data.root={tmp_path}"]).data)

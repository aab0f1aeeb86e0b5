"""Fixtures shared by the training tests: tiny datasets in the formats torchvision reads, tiny-run overrides."""

import atexit
import gzip
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent

# A network of a few thousand parameters: every test run takes seconds.
TINY_MODEL = ["model.depths=[1,1,1,1]", "model.widths=[8,16,32,64]"]


def learnable_images(n: int, size: int, channels: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, size, size, channels) whose class is a bright horizontal band's position, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.uint8)
    band = size // num_classes
    for image, label in zip(images, labels):
        image[label * band:(label + 1) * band] = 220
    return images, labels


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX (MNIST) encoding of a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(folder: Path, n_train: int = 600, n_test: int = 200, compressed: bool = False) -> Path:
    """Fashion-MNIST's four IDX files: torchvision's `<root>/FashionMNIST/raw/` layout, or Debian's flat `*.gz`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in [("train", n_train, 0), ("t10k", n_test, 1)]:
        images, labels = learnable_images(n, 28, 1, 10, seed)
        for name, array in [(f"{split}-images-idx3-ubyte", images[..., 0]), (f"{split}-labels-idx1-ubyte", labels)]:
            data = _idx_bytes(array)
            if compressed:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def write_cifar(root: Path, num_classes: int, n_train: int = 500, n_test: int = 100) -> Path:
    """CIFAR-10 / CIFAR-100 python-pickle files, as torchvision's CIFAR10 / CIFAR100 read them."""
    folder = root / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if num_classes == 10 else "fine_labels"
    train_files = [f"data_batch_{i}" for i in range(1, 6)] if num_classes == 10 else ["train"]
    images, labels = learnable_images(n_train + n_test, 32, 3, num_classes, 2)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # CIFAR stores each image as CHW rows
    chunks = np.array_split(np.arange(n_train), len(train_files))
    for name, idx in [*zip(train_files, chunks), ("test_batch" if num_classes == 10 else "test",
                                                   np.arange(n_train, n_train + n_test))]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows[idx], label_key: labels[idx].tolist()}, f)
    meta_name, names_key = ("batches.meta", "label_names") if num_classes == 10 else ("meta", "fine_label_names")
    with open(folder / meta_name, "wb") as f:
        pickle.dump({names_key: [f"class{i}" for i in range(num_classes)]}, f)
    return root


def write_image_folder(root: Path, num_classes: int = 3, per_class: tuple[int, int] = (40, 10), size: int = 40) -> Path:
    """`train/` and `val/` trees of PNG files, one folder per class, as torchvision's ImageFolder reads them."""
    for split, count in zip(("train", "val"), per_class):
        images, labels = learnable_images(count * num_classes, size, 3, num_classes, len(split))
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory) -> Path:
    """A data root holding a small learnable Fashion-MNIST (600 train, 200 test images)."""
    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist(root / "FashionMNIST" / "raw")
    return root


@pytest.fixture
def tiny_run(fashion_root) -> list[str]:
    """Overrides for a run of seconds: a tiny network, 2 epochs of 8 steps, one process thread, no workers."""
    return [*TINY_MODEL, f"data.root={fashion_root}", "data.val_size=100", "budget.batch=32", "budget.epochs=2",
            "runtime.batch_per_device=32", "runtime.workers=0", "runtime.threads=1", "runtime.progress=false"]


class _Preloaded:
    """The tests' one `tests/preloaded.py` process, started at the first command and ended with the tests."""

    def __init__(self):
        self.process, self.unread = None, b""

    def _answer(self, timeout: float | None = None) -> dict | None:
        """The parent's next answer; None if none comes within `timeout` seconds."""
        while b"\n" not in self.unread:
            if not select.select([self.process.stdout], [], [], timeout)[0]:
                return None
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"tests/preloaded.py exited with status {self.process.wait()}")
            self.unread += chunk
        line, self.unread = self.unread.split(b"\n", 1)
        return json.loads(line)

    def run(self, args: list[str], cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, str(REPO / "tests" / "preloaded.py")], cwd=REPO,
                                            env=os.environ | {"OMP_NUM_THREADS": "1"}, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, bufsize=0)
            self.unread = b""
            atexit.register(self.process.stdin.close)
        with tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            request = {"args": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            pid = self._answer()["pid"]
            exited = self._answer(timeout)
            if exited is None:
                os.kill(pid, signal.SIGKILL)
                self._answer()
            done = subprocess.CompletedProcess([sys.executable, str(REPO / "run.py"), *args],
                                               None if exited is None else exited["returncode"],
                                               out.read_text(), err.read_text())
        if exited is None:
            raise subprocess.TimeoutExpired(done.args, timeout, done.stdout, done.stderr)
        return done


_PRELOADED = _Preloaded()


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python run.py <args>` in `cwd`, one torch thread, output captured. On Linux the process is forked from one
    that has already imported what run.py imports (tests/preloaded.py), which saves seconds a command."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"} | (env or {})
    if sys.platform == "linux":
        return _PRELOADED.run(args, cwd, env, timeout)
    return subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def interrupt_at_second_epoch(monkeypatch):
    """Make `Trainer.train_one_epoch` raise KeyboardInterrupt at the second epoch, as a kill there would; returns
    the function that puts the real one back."""
    from roadmap.training import train

    original = train.Trainer.train_one_epoch

    def interrupted(self, epoch, *args, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "train_one_epoch", interrupted)
    return lambda: monkeypatch.setattr(train.Trainer, "train_one_epoch", original)


@pytest.fixture
def skip_cifar_checksums(monkeypatch):
    """torchvision checks CIFAR files against the md5 sums of the real ones; the tests' tiny files differ."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)

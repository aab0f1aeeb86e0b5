"""Writing a file so that a kill mid-write leaves the old one whole."""

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` a temporary file in the same folder, then rename it over `path`: a kill leaves the old file whole."""
    partial = path.with_name(f".{path.name}.partial{os.getpid()}")
    write(partial)
    os.replace(partial, path)

"""Images that cannot be decoded mid-epoch: counted across loader workers, each reported, another standing in."""

import multiprocessing
import sys


class UnreadableImages:
    """How many images of a split could not be decoded, counted by every loader worker (a shared integer that
    workers inherit); each one is reported on stderr as it is met."""

    def __init__(self):
        self._count = multiprocessing.Value("l", 0)

    def report(self, what: str, error: Exception) -> None:
        with self._count.get_lock():
            self._count.value += 1
        print(f"warning: {what} cannot be decoded ({error}); another image stands in for it", file=sys.stderr)

    @property
    def count(self) -> int:
        return self._count.value

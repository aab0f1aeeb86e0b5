"""A Python process that has done run.py's imports once and forks a child per `python run.py` command of the tests.

Importing torch, torchvision and Hydra takes seconds and the tests run run.py about a hundred times. Each child is
still its own process: its own working directory, environment, argv, stdout and stderr files and exit status, and
it runs run.py as `__main__` and exits through the interpreter's normal shutdown, as `python run.py` does. The
parent runs no torch operation, so no thread pool exists to be copied into a child.

Protocol, one JSON line each way: the tests send {"args", "cwd", "env", "stdout", "stderr"}; the parent answers
{"pid"} once the child exists and {"returncode"} once it has exited (negative: killed by that signal).
"""

import json
import os
import runpy
import sys
from pathlib import Path

RUN_PY = Path(__file__).resolve().parent.parent / "run.py"


def _become(request: dict, answers: int) -> None:
    """In the child: take the command's process state, then run run.py as `python run.py` would."""
    os.close(answers)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path in [(0, os.devnull), (1, request["stdout"]), (2, request["stderr"])]:
        target = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = open(0, closefd=False)
    sys.argv = [str(RUN_PY), *request["args"]]
    sys.path[0] = str(RUN_PY.parent)
    runpy.run_path(str(RUN_PY), run_name="__main__")


def serve() -> None:
    sys.path.insert(0, str(RUN_PY.parent))
    import run  # noqa: F401  the imports every command makes, done once here

    answers = os.dup(1)  # children write to their own files; only the parent answers on this
    requests = os.fdopen(os.dup(0), "r")
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            requests.close()
            _become(request, answers)
            sys.exit(0)  # run.py returned: the interpreter's shutdown, as at the end of `python run.py`
        os.write(answers, (json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(answers, (json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())


if __name__ == "__main__":
    serve()

"""`python -m analysis.gpu_check`: the GPU check, which lives in roadmap.machines.gpu_check (it measures the machine
and reads no run records); this name is kept as its command."""

import sys

from roadmap.machines.gpu_check.__main__ import main

if __name__ == "__main__":
    sys.exit(main())

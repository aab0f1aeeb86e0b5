"""`python -m analysis.benchmark`: the speed benchmark, which lives in roadmap.machines.benchmark (it measures the
machine and reads no run records); this name is kept as its command."""

from roadmap.machines.benchmark.__main__ import main

if __name__ == "__main__":
    main()

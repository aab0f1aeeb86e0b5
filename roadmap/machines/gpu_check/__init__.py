"""One command that proves the GPU path, in at most 8 minutes, its output the report:

    python -m analysis.gpu_check --out DIR           # one CUDA device
    python -m analysis.gpu_check --out DIR --smoke   # the same sequence on CPU at tiny sizes (the tests run it)

`plan` (sizes and time caps), `environment` (the machine), `steps` (every step: a bf16 training step, the fast path
against the plain network), `speed` (resnet and sep_downsample against torchvision/timm, eager and compiled, through
analysis.benchmark), `runs` (run.py on generated JPEGs, under torchrun, and a deterministic run killed and
resumed), `report` (report.md and CSVs), `errors` (an exception as one line), `wheels` (what a machine with only
torch and torchvision needs), `__main__` (the CLI). docs/gpu.md says how to run it on a borrowed GPU.
"""

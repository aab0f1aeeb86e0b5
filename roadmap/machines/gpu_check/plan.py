"""What the check runs, at which sizes and for how long: one frozen Plan for a CUDA device, one for --smoke on CPU."""

from dataclasses import dataclass

# The roadmap at a few thousand parameters: every stage layout of the tiny path, one or two blocks per stage.
TINY_ROADMAP = ["roadmap.resnet_depths=[1,1,1,1]", "roadmap.resnet_widths=[8,16,32,64]",
                "roadmap.stage_ratio_depths=[1,1,2,1]", "roadmap.stage_ratio_widths=[8,16,32,64]",
                "roadmap.convnext_widths=[16,32,64,128]"]


@dataclass(frozen=True)
class Plan:
    """Sizes, repetitions and time caps of one check. Caps are wall seconds per part; `budget_s` bounds them all."""

    smoke: bool
    device: str
    dtype: str  # bf16: autocast, as run.py's runtime.amp=auto on a GPU
    model_overrides: tuple[str, ...]  # for every network the check builds, and every run.py run
    # 1. every step: one training step at step_size, the fast path against the plain network at step_size and
    # crop_size (where the last stages' maps are smaller than the kernels, and roadmap.network.fast crops them)
    step_size: int
    crop_size: int
    step_batch: int
    # 2. speed of resnet and sep_downsample against torchvision and timm
    speed_size: int
    speed_batch: int
    speed_classes: int
    speed_reps: int
    speed_warmup: int
    compile_backend: str
    peak_matmul_n: int
    # 3-5. run.py on a folder of generated JPEGs
    image_size: int
    folder_images: int  # training images of the folder (data.val_size of them are held out for validation)
    unique_images: int  # generated; the others are hard links to them (decoding costs the same)
    val_size: int
    run_epochs: int
    loader_step: str
    loader_batch: int
    resume_step: str
    resume_images: int  # budget.train_subset of the deterministic runs
    resume_batch: int
    run_threads: int | None  # runtime.threads of run.py (None: PyTorch's default)
    # time caps (seconds)
    budget_s: float
    steps_cap_s: float
    speed_cap_s: float
    loader_cap_s: float
    torchrun_cap_s: float
    resume_cap_s: float


GPU = Plan(
    smoke=False, device="cuda", dtype="bf16", model_overrides=(),
    step_size=224, crop_size=32, step_batch=32,
    speed_size=224, speed_batch=128, speed_classes=1000, speed_reps=10, speed_warmup=2, compile_backend="inductor",
    peak_matmul_n=8192,
    image_size=224, folder_images=4352, unique_images=64, val_size=256, run_epochs=3,
    loader_step="resnet", loader_batch=256, resume_step="sep_downsample", resume_images=512, resume_batch=64,
    run_threads=None,
    budget_s=480, steps_cap_s=70, speed_cap_s=210, loader_cap_s=50, torchrun_cap_s=50, resume_cap_s=80,
)

# Every part at sizes this CPU runs in seconds. torch.compile traces with Dynamo but generates no code (backend
# "eager"): Inductor's C++ compilation would take minutes here.
SMOKE = Plan(
    smoke=True, device="cpu", dtype="bf16", model_overrides=tuple(TINY_ROADMAP),
    step_size=32, crop_size=32, step_batch=4,
    speed_size=32, speed_batch=2, speed_classes=10, speed_reps=1, speed_warmup=0, compile_backend="eager",
    peak_matmul_n=256,
    image_size=32, folder_images=112, unique_images=8, val_size=16, run_epochs=3,
    loader_step="resnet", loader_batch=16, resume_step="sep_downsample", resume_images=64, resume_batch=16,
    run_threads=1,
    # Caps that only stop a hang: the smoke's parts take seconds each, more on a busy machine.
    budget_s=900, steps_cap_s=180, speed_cap_s=180, loader_cap_s=120, torchrun_cap_s=120, resume_cap_s=240,
)

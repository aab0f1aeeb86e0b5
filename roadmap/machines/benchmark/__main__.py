"""The command line: `python -m analysis.benchmark --help`."""

import torch

from roadmap.machines.benchmark import folder, formats, pipeline, report
from roadmap.machines.benchmark.machine import load_average, matmul_peak_flops
from roadmap.machines.benchmark.models import build_cases
from roadmap.machines.benchmark.settings import Settings, parse_settings
from roadmap.machines.benchmark.timing import measure_peak_memory, peak_memory_kind, run_rounds


def time_models(settings: Settings) -> list[dict]:
    """Times every model, prints the table (and writes the CSV); returns its rows."""
    load_before = load_average()
    peak = matmul_peak_flops(settings.device, settings.dtype)
    cases = build_cases(settings)
    run_rounds(cases, settings)
    memory_kind = "not measured (--no-memory)"
    if settings.memory:
        memory_kind = peak_memory_kind(settings.device)
        for case in cases:
            case.peak_mem_mb = measure_peak_memory(case, settings)
    peak = max(peak, matmul_peak_flops(settings.device, settings.dtype))  # before and after: the less disturbed one
    loads = (load_before, load_average())
    rows = report.model_rows(cases, settings, peak, memory_kind)
    report.print_models(rows, settings, peak, memory_kind, loads)
    if settings.csv:
        report.write_csv(rows, settings.csv)
        print(f"\nwrote {settings.csv}")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Runs the benchmark `argv` asks for; returns the model rows and, with --image-folder, its rows."""
    settings = parse_settings(argv)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    rows = [] if settings.no_models else time_models(settings)
    if settings.data_pipeline and settings.image_folder:
        speed = folder.folder_speed(settings, rows)
        folder.print_folder(speed, settings)
        by_format = formats.format_speed(settings) if settings.formats else []
        if by_format:
            formats.print_formats(by_format, settings)
        return rows + speed.rows + speed.feeds + by_format
    if settings.data_pipeline:
        report.print_loader(pipeline.loader_speed(settings), settings)
    return rows


if __name__ == "__main__":
    main()

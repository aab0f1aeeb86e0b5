"""What a machine does with the roadmap: the speed benchmark (`python -m analysis.benchmark`) and the GPU check
(`python -m analysis.gpu_check`). The top layer, above the public API (roadmap/__init__.py): may import every other layer; none imports it."""
